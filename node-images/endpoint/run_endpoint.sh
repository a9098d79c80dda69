#!/bin/sh
# QUIC Interop Runner entry point (README.md): the runner sets ROLE, TESTCASE, REQUESTS, SSLKEYLOGFILE and
# QLOGDIR; everything else is main.ts's business. Exit codes: 0, 1, 2 (bad variable), 127 (unsupported testcase).
set -eu
# The image links /run_endpoint.sh here: resolve the link to find main.ts beside the real file.
self=$(readlink -f -- "$0" 2>/dev/null || printf '%s' "$0")
here=$(CDPATH= cd -- "$(dirname -- "$self")" && pwd)

# In an image built on martenseemann/quic-network-simulator-endpoint, /setup.sh routes traffic through the
# network simulator and the client waits for the simulator to come up. Outside such an image neither exists.
if [ -x /setup.sh ]; then
  /setup.sh
fi
if [ "${ROLE:-}" = client ] && [ -x /wait-for-it.sh ]; then
  /wait-for-it.sh sim:57832 -s -t 30
fi

if ! command -v node >/dev/null 2>&1; then
  # Not 127: that code means "testcase unsupported" to the runner.
  echo "run_endpoint.sh: no node on PATH (Node 22.18+ runs our TypeScript directly; the Dockerfile installs Node 24)" >&2
  exit 1
fi
exec node "$here/main.ts"
