/**
 * The one interface the orchestrator speaks to an engine through (../../../shared/STYLE.md,
 * "A driver interface, two drivers"). Docker (dockerode) and local (processes on 127.0.0.0/8)
 * implement it; a Swarm driver (multi-host, overlay networks) is a new file, not edits everywhere.
 *
 * Every call takes an AbortSignal (containerlab's runtime interface: every call cancellable).
 * Every object a driver creates carries the labels of `runLabels()`, so `removeRun()` finds them all,
 * also after a crash.
 */
import type { ImpairmentSpec, NetworkSpec, NodeSpec } from "../topology/model.ts";

/** One prefix for every label we put on anything. */
export const LABEL_PREFIX = "io.qmt";
export const LABEL_RUN = `${LABEL_PREFIX}.run`;
export const LABEL_ROLE = `${LABEL_PREFIX}.role`;
export const LABEL_NODE = `${LABEL_PREFIX}.node`;
export const LABEL_NETWORK = `${LABEL_PREFIX}.network`;

export function runLabels(runId: string, extra: Record<string, string> = {}): Record<string, string> {
  return { [LABEL_RUN]: runId, ...extra };
}

export interface NetworkState {
  name: string;
  kind: NetworkSpec["kind"];
  subnet: string;
  /** Engine's id (docker network id; for local, the name). */
  id: string;
  /**
   * Where nodes bind on this network when it differs from `subnet` (the local driver's hidden
   * twin, whose relays forward `subnet` → `bindSubnet`); a node's host part is the same in both.
   */
  bindSubnet?: string;
}

export interface NodeState {
  name: string;
  role: NodeSpec["role"];
  /** Engine's id (container id, or pid as a string). */
  id: string;
  status: "created" | "running" | "exited" | "unknown";
  /** network name → IPv4 address actually assigned. */
  addresses: Record<string, string>;
  /** One line per impaired link, naming the mechanism, when the driver can tell (docker's userspace impairer). */
  impairments?: string[];
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Where an impairment is applied: a node's attachment to a network, in one direction. */
export interface ImpairmentTarget {
  node: string;
  network: string;
  direction: "egress" | "ingress" | "both";
}

/** What an impairment actually became, read back from the engine after applying it. */
export interface AppliedImpairment {
  target: ImpairmentTarget;
  spec: ImpairmentSpec;
  /** "netem" (kernel qdisc) or "userspace" (our in-path UDP relay). */
  mechanism: "netem" | "userspace";
  /** The commands run (netem) or the relay description (userspace), for logs and --dry-run. */
  detail: string[];
}

export interface Driver extends AsyncDisposable {
  readonly name: string;
  /** Is the engine reachable? Never throws; returns a reason when not. */
  probe(signal?: AbortSignal): Promise<{ ok: true } | { ok: false; reason: string }>;
  createNetwork(runId: string, spec: NetworkSpec, signal?: AbortSignal): Promise<NetworkState>;
  startNode(runId: string, spec: NodeSpec, signal?: AbortSignal): Promise<NodeState>;
  exec(runId: string, node: string, argv: string[], signal?: AbortSignal): Promise<ExecResult>;
  logs(runId: string, node: string, opts?: { tail?: number }, signal?: AbortSignal): Promise<string>;
  impair(runId: string, target: ImpairmentTarget, spec: ImpairmentSpec, signal?: AbortSignal): Promise<AppliedImpairment>;
  heal(runId: string, target: ImpairmentTarget, signal?: AbortSignal): Promise<void>;
  /** Everything this driver knows of a run, found by label (docker) or by the run's state file (local). */
  listRun(runId: string, signal?: AbortSignal): Promise<{ networks: NetworkState[]; nodes: NodeState[] }>;
  /** Remove every object labelled with the run id (or all runs when runId is undefined). Idempotent. */
  removeRun(runId: string | undefined, signal?: AbortSignal): Promise<{ removed: number }>;
}
