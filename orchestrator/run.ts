/**
 * Bring a run up, down, or report on it, through the Driver interface only.
 * A failed or interrupted `up` (AbortSignal, e.g. from SIGINT) removes everything the run created
 * (testcontainers: a failed wait tears down what it started). The current run is remembered in
 * `.cache/runs/current.json` so `down` and `status` find it without an id.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { AppliedImpairment, Driver, NetworkState, NodeState } from "./drivers/driver.ts";
import { DriverError, RunNotFoundError } from "./errors.ts";
import { planRun, type DriverKind, type RunPlan } from "./plan.ts";
import { generateRoleSecrets, planRoleConfigs, removeRoleFiles, roleDir, roleFiles, serverCertificateAddresses, writeRoleFiles, type NodeAddressing } from "./role-config.ts";
import type { NetworkSpec, NodeSpec } from "./topology/model.ts";
import type { Topology } from "./topology/model.ts";
import { formatDurationMs, formatRateBitsPerSecond } from "./topology/units.ts";
import type { ImpairmentSpec } from "./topology/model.ts";

export type Progress = (line: string) => void;

/** `qmt-<topology name>-<6 hex>`; the name part is cut so ids stay short enough for Docker names. */
export function newRunId(topologyName: string): string {
  return `qmt-${topologyName.slice(0, 24)}-${randomBytes(3).toString("hex")}`;
}

export interface CurrentRun {
  runId: string;
  driver: string;
  topologyName: string;
  topologyFile: string;
  /** ISO 8601, for humans only. */
  startedAt: string;
}

export function defaultStateDir(): string {
  return path.join(process.cwd(), ".cache", "runs");
}

const CURRENT_FILE = "current.json";

export async function readCurrentRun(stateDir = defaultStateDir()): Promise<CurrentRun | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(stateDir, CURRENT_FILE), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return JSON.parse(text) as CurrentRun;
}

export async function writeCurrentRun(run: CurrentRun, stateDir = defaultStateDir()): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  await writeFile(path.join(stateDir, CURRENT_FILE), `${JSON.stringify(run, null, 2)}\n`);
}

/** Forget the current run, only if it is `runId` (another `up` may have replaced it). */
export async function clearCurrentRun(runId: string | undefined, stateDir = defaultStateDir()): Promise<void> {
  const current = await readCurrentRun(stateDir);
  if (current !== undefined && (runId === undefined || current.runId === runId)) await rm(path.join(stateDir, CURRENT_FILE), { force: true });
}

export function driverKind(driver: Driver): DriverKind {
  return driver.name === "docker" ? "docker" : "local";
}

export interface UpResult {
  plan: RunPlan;
  networks: NetworkState[];
  nodes: NodeState[];
  impairments: AppliedImpairment[];
  /**
   * Planned impairments the engine cannot apply (docker on a kernel without sch_netem): `up`
   * goes on without them and says so on every line it prints, rather than failing the whole run.
   */
  skippedImpairments: { target: AppliedImpairment["target"]; reason: string }[];
}

export function describeImpairment(spec: ImpairmentSpec): string {
  const parts: string[] = [];
  if (spec.delayMs !== undefined) parts.push(`delay ${formatDurationMs(spec.delayMs)}`);
  if (spec.jitterMs !== undefined) parts.push(`jitter ${formatDurationMs(spec.jitterMs)}${spec.jitterDistribution ? ` ${spec.jitterDistribution}` : ""}`);
  if (spec.lossPercent !== undefined) parts.push(`loss ${spec.lossPercent}%${spec.lossCorrelationPercent !== undefined ? ` (correlation ${spec.lossCorrelationPercent}%)` : ""}`);
  if (spec.rateBitsPerSecond !== undefined) parts.push(`rate ${formatRateBitsPerSecond(spec.rateBitsPerSecond)}`);
  if (spec.reorderPercent !== undefined) parts.push(`reorder ${spec.reorderPercent}%`);
  if (spec.duplicatePercent !== undefined) parts.push(`duplicate ${spec.duplicatePercent}%`);
  if (spec.corruptPercent !== undefined) parts.push(`corrupt ${spec.corruptPercent}%`);
  if (spec.limitPackets !== undefined) parts.push(`limit ${spec.limitPackets}`);
  if (spec.seed !== undefined) parts.push(`seed ${spec.seed}`);
  return parts.join(", ");
}

export async function up(
  topology: Topology,
  driver: Driver,
  opts: { runId: string; signal?: AbortSignal; onProgress?: Progress; stateDir?: string },
): Promise<UpResult> {
  const progress = opts.onProgress ?? (() => {});
  const stateDir = opts.stateDir ?? defaultStateDir();
  const plan = planRun(topology, { runId: opts.runId, driver: driverKind(driver), stateDir: path.resolve(stateDir) });
  const result: UpResult = { plan, networks: [], nodes: [], impairments: [], skippedImpairments: [] };
  await writeCurrentRun({ runId: opts.runId, driver: driver.name, topologyName: topology.name, topologyFile: topology.file, startedAt: new Date().toISOString() }, opts.stateDir);
  try {
    for (const network of plan.networks) {
      opts.signal?.throwIfAborted();
      progress(`network ${network.name} (${network.kind} ${network.subnet})`);
      result.networks.push(await driver.createNetwork(opts.runId, network, opts.signal));
    }
    await writeRunRoleFiles(plan, result.networks, stateDir);
    // Nodes start concurrently (each start is mostly waiting on the engine). Every start is
    // awaited, also after one failed, so the cleanup below never races a start still in flight.
    opts.signal?.throwIfAborted();
    const starts = await Promise.allSettled(plan.nodes.map((node) => {
      progress(`node ${node.name} (${node.role})`);
      return driver.startNode(opts.runId, node, opts.signal);
    }));
    for (const start of starts) if (start.status === "rejected") throw start.reason;
    for (const start of starts) if (start.status === "fulfilled") result.nodes.push(start.value);
    for (const impairment of plan.impairments) {
      opts.signal?.throwIfAborted();
      progress(`impair ${impairment.target.node}/${impairment.target.network} ${impairment.target.direction}: ${describeImpairment(impairment.spec)}`);
      try {
        result.impairments.push(await driver.impair(opts.runId, impairment.target, impairment.spec, opts.signal));
      } catch (error) {
        if (!(error instanceof DriverError && error.code === "NETEM_UNAVAILABLE")) throw error;
        progress(`WARNING: ${impairment.target.node}/${impairment.target.network} left unimpaired: ${error.message}`);
        result.skippedImpairments.push({ target: impairment.target, reason: error.message });
      }
    }
    opts.signal?.throwIfAborted();
  } catch (error) {
    progress(`up failed, removing run ${opts.runId}`);
    try {
      // Not the (possibly aborted) signal: cleanup must run to the end.
      const { removed } = await driver.removeRun(opts.runId);
      await removeRoleFiles(stateDir, opts.runId);
      progress(`removed ${removed} object(s) of run ${opts.runId}`);
      await clearCurrentRun(opts.runId, opts.stateDir);
    } catch (cleanupError) {
      progress(`cleanup of run ${opts.runId} failed too: ${(cleanupError as Error).message}; run \`down --run ${opts.runId}\``);
    }
    throw error;
  }
  return result;
}

/**
 * The role configs with the addresses the driver gave the networks and fresh secrets, written to
 * `<stateDir>/<runId>/roles/` before any node starts (a role reads its file once, at start).
 */
async function writeRunRoleFiles(plan: RunPlan, networks: NetworkState[], stateDir: string): Promise<void> {
  if (plan.roles.length === 0) return;
  const addressing = networkAddressing(plan.networks, networks);
  const configured = new Set(plan.roles.map((r) => r.node));
  // As the plan saw them: the configured nodes without the command the plan gave them (local).
  const nodes = plan.nodes.map((n) => (configured.has(n.name) ? { ...n, command: undefined } : { ...n, command: n.command ?? [] }));
  const secrets = generateRoleSecrets(serverCertificateAddresses(nodes, plan.networks, addressing));
  const configs = planRoleConfigs(plan.topology.file, nodes, plan.networks, addressing, { dir: plan.roleFilesDir, wildcardClientBind: plan.driver === "docker" }, secrets);
  const files = roleFiles(configs, secrets);
  await writeRoleFiles(roleDir(path.resolve(stateDir), plan.runId), files);
  for (const node of plan.nodes) {
    const config = configs.find((c) => c.node === node.name);
    if (config === undefined) continue;
    node.env.QMT_CONTROL_TOKEN = secrets.token;
    if (plan.driver === "docker") {
      // The container gets its own config and the PEMs its role reads, under plan.roleFilesDir.
      const names = [config.file, "ca.pem", ...(config.role === "server" ? ["server.pem", "server.key"] : [])];
      node.files = names.map((name) => ({ path: path.posix.join(plan.roleFilesDir, name), content: files.get(name)!, mode: name.endsWith(".key") ? 0o600 : 0o644 }));
    }
  }
}

/**
 * A node's address as the driver placed it: the topology's own when the network kept its subnet
 * (docker), else the same host octet in the driver's /24 (the local driver's 127.A.i.0/24, and its
 * hidden twin for binding).
 */
export function networkAddressing(planned: NetworkSpec[], created: NetworkState[]): NodeAddressing {
  const place = (node: NodeSpec, network: string, which: "published" | "bind"): string => {
    const ipv4 = node.addresses.find((a) => a.network === network)?.ipv4;
    const spec = planned.find((n) => n.name === network);
    const state = created.find((n) => n.name === network);
    if (ipv4 === undefined || spec === undefined || state === undefined) throw new DriverError("orchestrator", "DRIVER_FAILED", `node ${node.name}: no address on network ${network} to write into its role config`);
    const subnet = which === "bind" ? (state.bindSubnet ?? state.subnet) : state.subnet;
    if (subnet === spec.subnet) return ipv4;
    return `${subnet.split("/")[0]!.split(".").slice(0, 3).join(".")}.${ipv4.split(".")[3]!}`;
  };
  return { published: (node, network) => place(node, network, "published"), bind: (node, network) => place(node, network, "bind") };
}

async function resolveRunId(runId: string | undefined, stateDir: string | undefined): Promise<string> {
  if (runId !== undefined) return runId;
  const current = await readCurrentRun(stateDir);
  if (current === undefined) throw new RunNotFoundError(undefined, "name one with --run ID, or start one with `up`");
  return current.runId;
}

/** Remove one run (default: the current one), or every run of this driver with `all`. */
export async function down(driver: Driver, runId?: string, opts: { all?: boolean; signal?: AbortSignal; stateDir?: string } = {}): Promise<{ runId: string | undefined; removed: number }> {
  if (opts.all === true) {
    const { removed } = await driver.removeRun(undefined, opts.signal);
    await clearCurrentRun(undefined, opts.stateDir);
    // Role files of runs whose objects are gone (docker keeps none of its own on the host).
    const stateDir = opts.stateDir ?? defaultStateDir();
    for (const entry of await readdir(stateDir, { withFileTypes: true }).catch(() => [])) {
      // A local run's dir (it has the local driver's state file) is that driver's to remove.
      if (entry.isDirectory() && entry.name.startsWith("qmt-") && !existsSync(path.join(stateDir, entry.name, "local-state.json"))) await removeRoleFiles(stateDir, entry.name);
    }
    return { runId: undefined, removed };
  }
  const id = await resolveRunId(runId, opts.stateDir);
  const { removed } = await driver.removeRun(id, opts.signal);
  await removeRoleFiles(opts.stateDir ?? defaultStateDir(), id);
  await clearCurrentRun(id, opts.stateDir);
  return { runId: id, removed };
}

export async function status(driver: Driver, runId?: string, opts: { signal?: AbortSignal; stateDir?: string } = {}): Promise<{ runId: string; networks: NetworkState[]; nodes: NodeState[] }> {
  const id = await resolveRunId(runId, opts.stateDir);
  const listed = await driver.listRun(id, opts.signal);
  return { runId: id, ...listed };
}

/** The run id a node-level command (impair, heal, logs, exec) acts on. */
export async function currentRunId(runId: string | undefined, stateDir?: string): Promise<string> {
  return resolveRunId(runId, stateDir);
}
