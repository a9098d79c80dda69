/**
 * Two Linux network namespaces joined by one veth pair, created for one test run and removed after it:
 *
 *   client ns  10.77.0.2/24 (veth0) ──── veth0  server ns: 10.77.0.1/24 (the client's gateway),
 *                                                          10.77.1.1/24 (original address),
 *                                                          10.77.2.1/24 (preferred address)
 *
 * The client reaches both server subnets through 10.77.0.1, so the two server addresses are two paths
 * as far as QUIC's 4-tuples go, over one wire that a capture in the server namespace sees whole. Private
 * ranges only (RFC 1918), and only inside namespaces this run created: nothing touches the host's links.
 *
 * Names carry a per-run random suffix (`qmtnet-<hex>-client`), so parallel runs do not collide; the
 * veth ends are created directly inside the namespaces (`ip link add ... netns`), so no name is ever
 * taken in the host namespace. `sweepLeftoverNamespaces()` removes namespaces of our prefix left by a
 * crashed run, once they are older than any run can be.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, statSync } from "node:fs";

export const NETNS_PREFIX = "qmtnet-";
/** A namespace of ours older than this belongs to a dead run (runs take seconds). */
const LEFTOVER_AGE_MS = 15 * 60_000;
const NETNS_DIR = "/run/netns";
const COMMAND_TIMEOUT_MS = 10_000;
const LINK_UP_DEADLINE_MS = 5_000;

export const NETNS_ADDRESSES = {
  client: "10.77.0.2",
  gateway: "10.77.0.1",
  serverOriginal: "10.77.1.1",
  serverPreferred: "10.77.2.1",
} as const;

export class NetnsError extends Error {
  override readonly name = "NetnsError";
  readonly code = "NETNS_FAILED";
}

/** Why namespaces cannot be used here, or undefined when they can (checked once, by creating one). */
export function netnsUnavailableReason(): string | undefined {
  if (process.platform !== "linux") return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return "network namespaces need root";
  const which = spawnSync("sh", ["-c", "command -v ip"], { encoding: "utf8" });
  if (which.status !== 0) return "iproute2 (`ip`) is not installed";
  const probe = `${NETNS_PREFIX}probe-${randomBytes(3).toString("hex")}`;
  const add = spawnSync("ip", ["netns", "add", probe], { encoding: "utf8", timeout: COMMAND_TIMEOUT_MS });
  if (add.status !== 0) return `\`ip netns add\` failed: ${(add.stderr || add.error?.message || "").trim()}`;
  const veth = spawnSync("ip", ["link", "add", "veth0", "netns", probe, "type", "veth", "peer", "name", "veth1", "netns", probe], { encoding: "utf8", timeout: COMMAND_TIMEOUT_MS });
  spawnSync("ip", ["netns", "del", probe], { timeout: COMMAND_TIMEOUT_MS });
  if (veth.status !== 0) return `veth pairs unavailable: ${(veth.stderr || "").trim()}`;
  return undefined;
}

export function hasCommand(name: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;
}

/** Runs a command to completion; throws NetnsError with its stderr when it fails. */
export function run(argv: readonly string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: COMMAND_TIMEOUT_MS });
  if (r.status !== 0) {
    throw new NetnsError(`\`${argv.join(" ")}\` failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.error?.message || "").trim()}`);
  }
  return r.stdout;
}

/** Removes namespaces of our prefix older than LEFTOVER_AGE_MS (a crashed run's); returns their names. */
export function sweepLeftoverNamespaces(nowMs = Date.now()): string[] {
  let names: string[];
  try {
    names = readdirSync(NETNS_DIR);
  } catch {
    return []; // no namespaces at all yet
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(NETNS_PREFIX)) continue;
    let ageMs: number;
    try {
      ageMs = nowMs - statSync(`${NETNS_DIR}/${name}`).mtimeMs;
    } catch {
      continue; // removed meanwhile
    }
    if (ageMs < LEFTOVER_AGE_MS) continue; // may belong to a run in progress
    if (spawnSync("ip", ["netns", "del", name], { timeout: COMMAND_TIMEOUT_MS }).status === 0) removed.push(name);
  }
  return removed;
}

export class NetnsTopology implements AsyncDisposable {
  readonly runId: string;
  readonly clientNs: string;
  readonly serverNs: string;
  private readonly created: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private disposed = false;

  private constructor(runId: string) {
    this.runId = runId;
    this.clientNs = `${NETNS_PREFIX}${runId}-client`;
    this.serverNs = `${NETNS_PREFIX}${runId}-server`;
  }

  /** Creates both namespaces and the link; anything half-made is removed again when a step fails. */
  static async create(): Promise<NetnsTopology> {
    sweepLeftoverNamespaces();
    const topo = new NetnsTopology(randomBytes(4).toString("hex"));
    try {
      await topo.build();
    } catch (error) {
      await topo.dispose();
      throw error;
    }
    return topo;
  }

  private async build(): Promise<void> {
    const { clientNs: c, serverNs: s } = this;
    for (const ns of [c, s]) {
      run(["ip", "netns", "add", ns]);
      this.created.push(ns);
      run(["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    run(["ip", "link", "add", "veth0", "netns", c, "type", "veth", "peer", "name", "veth0", "netns", s]);
    run(["ip", "-n", c, "addr", "add", `${NETNS_ADDRESSES.client}/24`, "dev", "veth0"]);
    for (const a of [NETNS_ADDRESSES.gateway, NETNS_ADDRESSES.serverOriginal, NETNS_ADDRESSES.serverPreferred]) {
      run(["ip", "-n", s, "addr", "add", `${a}/24`, "dev", "veth0"]);
    }
    for (const ns of [c, s]) run(["ip", "-n", ns, "link", "set", "veth0", "up"]);
    for (const subnet of ["10.77.1.0/24", "10.77.2.0/24"]) {
      run(["ip", "-n", c, "route", "add", subnet, "via", NETNS_ADDRESSES.gateway]);
    }
    await this.waitForLinkUp();
  }

  /** Both veth ends report carrier (operstate UP); a packet sent before that would be dropped. */
  private async waitForLinkUp(): Promise<void> {
    const deadline = performance.now() + LINK_UP_DEADLINE_MS;
    for (let attempt = 0; attempt < 500; attempt++) {
      const states = [this.clientNs, this.serverNs].map((ns) => {
        const links = JSON.parse(run(["ip", "-n", ns, "-j", "link", "show", "veth0"])) as Array<{ operstate?: string }>;
        return links[0]?.operstate;
      });
      if (states.every((s) => s === "UP")) return;
      if (performance.now() > deadline) throw new NetnsError(`veth0 not up within ${LINK_UP_DEADLINE_MS} ms (operstate ${states.join(", ")})`);
      await new Promise<void>((resolve) => setTimeout(resolve, 10));
    }
    throw new NetnsError("veth0 not up after 500 checks");
  }

  /** Starts `argv` inside a namespace (`ip netns exec` execs it, so the child's pid is the program's). */
  spawn(ns: string, argv: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    if (this.disposed) throw new NetnsError("topology already removed");
    const child = spawn("ip", ["netns", "exec", ns, ...argv], { stdio: ["ignore", "pipe", "pipe"], env: opts.env ?? process.env });
    this.children.add(child);
    child.once("exit", () => this.children.delete(child));
    return child;
  }

  /** Ends the children we started (by pid, SIGTERM then SIGKILL), then removes the namespaces. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await Promise.all([...this.children].map((child) => stopChild(child, 3_000)));
    const failures: string[] = [];
    for (const ns of this.created.reverse()) {
      const r = spawnSync("ip", ["netns", "del", ns], { encoding: "utf8", timeout: COMMAND_TIMEOUT_MS });
      if (r.status !== 0) failures.push(`${ns}: ${(r.stderr || "").trim()}`);
    }
    if (failures.length > 0) throw new NetnsError(`could not remove namespaces: ${failures.join("; ")}`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  /** Whether the namespaces still exist (for tests of the cleanup). */
  exists(): boolean {
    const list = run(["ip", "netns", "list"]);
    return [this.clientNs, this.serverNs].some((ns) => list.split("\n").some((l) => l.split(" ")[0] === ns));
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child has exited. */
export async function stopChild(child: ChildProcess, graceMs: number, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}
