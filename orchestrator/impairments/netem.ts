/**
 * The kernel impairment path: `tc qdisc ... netem` for kernels that have sch_netem.
 * STYLE.md "Impairments": own what we touch, read back, undo a half-applied change.
 *
 * What we create, and nothing else:
 * - egress: a root netem qdisc with our handle `5171:` on the interface;
 * - ingress (netem only shapes egress): an ifb device `ifb-<iface>` (name cut to IFNAMSIZ), an
 *   `ingress` qdisc (handle ffff:, the only one it can have) with one u32 match-all filter that
 *   redirects every packet to the ifb, and a root netem `5171:` on the ifb (so ingress packets are
 *   delayed as the ifb's egress).
 *
 * Choices made on purpose (tc-netem(8)):
 * - `limit`: netem's default 1000 packets turns rate × delay above 1000 packets into loss that
 *   nobody asked for. We set limit = max(1000, 2 × ceil(rate × (delay + 3·jitter) / MTU)), with the
 *   requested rate, or the assumed link rate (10 Gbit/s by default) when none is requested.
 * - order: netem keeps packets in a queue sorted by send time, so jitter reorders. When
 *   `reorderPercent` is undefined we keep order by adding `rate` (the requested one, or 100gbit):
 *   with a rate, netem computes each packet's send time from the previous packet's
 *   (sch_netem.c netem_enqueue: `if (q->rate) ... now = last->time_to_send`), so no packet
 *   overtakes. The pfifo-child remedy of older man pages no longer keeps order on tfifo kernels.
 *   A consequence, as for any in-order jittery link: a packet behind a long-delayed one waits for
 *   it. With `reorderPercent` defined (also 0), jitter reorders freely and `reorder P% gap 1` is
 *   added when P > 0.
 * - correlated loss: `loss gemodel` (see netemOptions), not `loss random P C`.
 * - `seed`: netem's seeded PRNG (TCA_NETEM_PRNG_SEED) exists in Linux ≥ 6.6 and iproute2 ≥ 6.6;
 *   `probeNetem` reports `seedSupported` from `tc`'s netem usage text and we pass `seed N` only then.
 *   iproute2 6.1 (this project's Debian bookworm) has no `seed`.
 */
import type { ImpairmentSpec } from "../topology/model.ts";
import { NetemError } from "./netem-errors.ts";

export type Direction = "egress" | "ingress" | "both";
export type Exec = (argv: string[]) => Promise<{ exitCode: number; stdout: string; stderr: string }>;

/** Our qdisc handle ("5171" looks like "QMT-I"); a root qdisc with another non-zero handle is not ours. */
export const NETEM_HANDLE = "5171:";
export const INGRESS_HANDLE = "ffff:";
export const DEFAULT_ASSUMED_LINK_RATE_BITS_PER_SECOND = 10_000_000_000;
export const ORDER_KEEPING_RATE = "100gbit";
const MTU_BYTES = 1500;
const IFNAMSIZ = 15;

export interface NetemOptions {
  /** From `probeNetem`; `seed N` is passed only when true. */
  seedSupported?: boolean;
  /** Used for `limit` when the spec sets no rate. */
  assumedLinkRateBitsPerSecond?: number;
  /** "add" for a first application, "change" to update our qdisc in place. */
  verb?: "add" | "change";
}

export function ifbName(iface: string): string {
  return `ifb-${iface}`.slice(0, IFNAMSIZ);
}

/** limit ≥ 2 × ceil(rate × (delay + 3·jitter) / MTU), at least 1000: never hidden loss. */
export function netemLimitPackets(spec: ImpairmentSpec, assumedLinkRateBitsPerSecond = DEFAULT_ASSUMED_LINK_RATE_BITS_PER_SECOND): number {
  if (spec.limitPackets !== undefined) return spec.limitPackets;
  const rate = spec.rateBitsPerSecond ?? assumedLinkRateBitsPerSecond;
  const holdS = ((spec.delayMs ?? 0) + 3 * (spec.jitterMs ?? 0)) / 1000;
  return Math.max(1000, 2 * Math.ceil((rate * holdS) / (8 * MTU_BYTES)));
}

/** The netem options (after `netem`) for a spec. */
export function netemOptions(spec: ImpairmentSpec, opts: NetemOptions = {}): string[] {
  const args = ["limit", String(netemLimitPackets(spec, opts.assumedLinkRateBitsPerSecond))];
  const delayMs = spec.delayMs ?? 0;
  const jitterMs = spec.jitterMs ?? 0;
  if (delayMs > 0 || jitterMs > 0) {
    args.push("delay", ms(delayMs));
    if (jitterMs > 0) {
      args.push(ms(jitterMs));
      args.push("distribution", spec.jitterDistribution ?? "uniform");
    }
  }
  if (spec.lossPercent !== undefined && spec.lossPercent > 0) {
    if (spec.lossCorrelationPercent) {
      // The same two-state chain as the userspace impairer (link-impairment.ts): good→bad
      // p(1−ρ), bad→good (1−p)(1−ρ), loss 100 % in bad, 0 % in good. netem's `loss random P C`
      // would lower the loss rate as C grows.
      const p = spec.lossPercent / 100;
      const rho = spec.lossCorrelationPercent / 100;
      args.push("loss", "gemodel", percent(round6(100 * p * (1 - rho))), percent(round6(100 * (1 - p) * (1 - rho))), "100%", "0%");
    } else {
      args.push("loss", "random", percent(spec.lossPercent));
    }
  }
  if (spec.duplicatePercent !== undefined && spec.duplicatePercent > 0) args.push("duplicate", percent(spec.duplicatePercent));
  if (spec.corruptPercent !== undefined && spec.corruptPercent > 0) args.push("corrupt", percent(spec.corruptPercent));
  if (spec.reorderPercent !== undefined && spec.reorderPercent > 0) {
    args.push("reorder", percent(spec.reorderPercent));
    if (spec.reorderCorrelationPercent) args.push(percent(spec.reorderCorrelationPercent));
    args.push("gap", "1");
  }
  if (spec.rateBitsPerSecond !== undefined && spec.rateBitsPerSecond > 0) args.push("rate", `${spec.rateBitsPerSecond}bit`);
  else if (jitterMs > 0 && spec.reorderPercent === undefined) args.push("rate", ORDER_KEEPING_RATE); // keeps order, see the header
  if (opts.seedSupported && spec.seed !== undefined) args.push("seed", String(spec.seed));
  return args;
}

/** The argv lists that apply `spec` to `iface` in `direction`, in order. */
export function buildNetemCommands(iface: string, spec: ImpairmentSpec, direction: Direction, opts: NetemOptions = {}): string[][] {
  const verb = opts.verb ?? "add";
  const options = netemOptions(spec, opts);
  const commands: string[][] = [];
  if (direction === "egress" || direction === "both") {
    commands.push(["tc", "qdisc", verb, "dev", iface, "root", "handle", NETEM_HANDLE, "netem", ...options]);
  }
  if (direction === "ingress" || direction === "both") {
    const ifb = ifbName(iface);
    if (verb === "add") {
      commands.push(["ip", "link", "add", ifb, "type", "ifb"]);
      commands.push(["ip", "link", "set", "dev", ifb, "up"]);
      commands.push(["tc", "qdisc", "add", "dev", iface, "handle", INGRESS_HANDLE, "ingress"]);
      commands.push([
        "tc", "filter", "add", "dev", iface, "parent", INGRESS_HANDLE, "protocol", "all", "prio", "1",
        "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb,
      ]);
    }
    commands.push(["tc", "qdisc", verb, "dev", ifb, "root", "handle", NETEM_HANDLE, "netem", ...options]);
  }
  return commands;
}

/** The argv lists that remove what `buildNetemCommands(iface, _, direction)` added. */
export function buildNetemRemovalCommands(iface: string, direction: Direction): string[][] {
  const commands: string[][] = [];
  if (direction === "egress" || direction === "both") commands.push(["tc", "qdisc", "del", "dev", iface, "root", "handle", NETEM_HANDLE]);
  if (direction === "ingress" || direction === "both") {
    commands.push(["tc", "qdisc", "del", "dev", iface, "handle", INGRESS_HANDLE, "ingress"]);
    commands.push(["ip", "link", "del", ifbName(iface)]);
  }
  return commands;
}

/** One entry of `tc -j qdisc show dev X`. */
export interface TcQdisc {
  kind: string;
  handle: string;
  root?: boolean;
  parent?: string;
  options?: Record<string, unknown>;
}

export function parseTcQdiscJson(stdout: string): TcQdisc[] {
  const text = stdout.trim();
  if (text === "") return [];
  const parsed: unknown = JSON.parse(text);
  if (!Array.isArray(parsed)) throw new Error(`tc -j qdisc: expected a JSON array, got ${text.slice(0, 80)}`);
  return parsed as TcQdisc[];
}

/**
 * What applying to a device means given its qdiscs: "add" (nothing of ours), "change" (ours is
 * there). A root qdisc with a non-zero handle that is not ours is foreign: refuse. The kernel's
 * default root (handle "0:", e.g. noqueue, pfifo_fast, fq_codel, mq) is replaced by `add` and comes
 * back when we delete ours.
 */
export function planRootQdisc(dev: string, qdiscs: TcQdisc[]): "add" | "change" {
  const root = qdiscs.find((q) => q.root === true);
  if (root === undefined || root.handle === "0:") return "add";
  if (root.handle === NETEM_HANDLE && root.kind === "netem") return "change";
  throw new NetemError("NETEM_FOREIGN_QDISC", dev, `a root qdisc we did not create is in place (${root.kind} ${root.handle}); refusing to replace it. Remove it yourself or pick another interface.`);
}

/** Compares what the kernel reports for our netem with the spec; returns the differences. */
export function compareNetemReadback(dev: string, qdiscs: TcQdisc[], spec: ImpairmentSpec, opts: NetemOptions = {}): string[] {
  const ours = qdiscs.find((q) => q.kind === "netem" && q.handle === NETEM_HANDLE);
  if (ours === undefined) return [`${dev}: no netem ${NETEM_HANDLE} after applying`];
  const o = ours.options ?? {};
  const differences: string[] = [];
  const expectLimit = netemLimitPackets(spec, opts.assumedLinkRateBitsPerSecond);
  if (o["limit"] !== expectLimit) differences.push(`limit: expected ${expectLimit}, read ${String(o["limit"])}`);
  const delay = o["delay"] as { delay?: number; jitter?: number } | undefined;
  // tc -j reports delay and jitter in seconds; the kernel keeps them in ns/ticks, so allow 1 µs.
  const near = (seconds: number | undefined, expectedMs: number): boolean => Math.abs((seconds ?? 0) * 1000 - expectedMs) <= 0.001;
  if (!near(delay?.delay, spec.delayMs ?? 0)) differences.push(`delay: expected ${spec.delayMs ?? 0} ms, read ${(delay?.delay ?? 0) * 1000} ms`);
  if (!near(delay?.jitter, spec.jitterMs ?? 0)) differences.push(`jitter: expected ${spec.jitterMs ?? 0} ms, read ${(delay?.jitter ?? 0) * 1000} ms`);
  if (spec.lossCorrelationPercent) {
    if (o["loss-gemodel"] === undefined) differences.push("loss: expected a gemodel loss, read none");
  } else {
    const loss = o["loss-random"] as { loss?: number } | undefined;
    // tc -j reports percentages as fractions of 1.
    const lossPercent = (loss?.loss ?? 0) * 100;
    if (Math.abs(lossPercent - (spec.lossPercent ?? 0)) > 0.001) differences.push(`loss: expected ${spec.lossPercent ?? 0} %, read ${lossPercent} %`);
  }
  return differences;
}

async function run(exec: Exec, dev: string, argv: string[]): Promise<string> {
  const result = await exec(argv);
  if (result.exitCode !== 0) throw new NetemError("NETEM_COMMAND_FAILED", dev, `${argv.join(" ")} failed (exit ${result.exitCode}): ${result.stderr.trim()}`);
  return result.stdout;
}

async function showQdiscs(exec: Exec, dev: string): Promise<TcQdisc[]> {
  return parseTcQdiscJson(await run(exec, dev, ["tc", "-j", "qdisc", "show", "dev", dev]));
}

/**
 * Applies `spec` to `iface`: checks ownership, runs the commands, reads back and compares. On any
 * failure after a first `add`, removes what this call added and rethrows. Returns the commands run.
 */
export async function applyNetem(exec: Exec, iface: string, spec: ImpairmentSpec, direction: Direction, opts: NetemOptions = {}): Promise<string[][]> {
  const devices: string[] = [];
  if (direction !== "ingress") devices.push(iface);
  const ingress = direction !== "egress";
  let verb: "add" | "change" = "add";
  if (direction !== "ingress") verb = planRootQdisc(iface, await showQdiscs(exec, iface));
  if (ingress) {
    const onIface = await showQdiscs(exec, iface);
    const ifbExists = (await exec(["ip", "link", "show", "dev", ifbName(iface)])).exitCode === 0;
    const hasIngress = onIface.some((q) => q.kind === "ingress");
    if (hasIngress && !ifbExists) throw new NetemError("NETEM_FOREIGN_QDISC", iface, "an ingress qdisc we did not create is in place; refusing to replace it");
    const ingressVerb = ifbExists ? planRootQdisc(ifbName(iface), await showQdiscs(exec, ifbName(iface))) : "add";
    if (direction === "both" && ingressVerb !== verb) throw new NetemError("NETEM_FOREIGN_QDISC", iface, `egress is "${verb}" but ingress is "${ingressVerb}"; heal first`);
    verb = ingressVerb;
    devices.push(ifbName(iface));
  }
  const commands = buildNetemCommands(iface, spec, direction, { ...opts, verb });
  const done: string[][] = [];
  try {
    for (const argv of commands) {
      await run(exec, iface, argv);
      done.push(argv);
    }
    for (const dev of devices) {
      const differences = compareNetemReadback(dev, await showQdiscs(exec, dev), spec, opts);
      if (differences.length > 0) throw new NetemError("NETEM_READBACK_MISMATCH", dev, differences.join("; "));
    }
  } catch (error) {
    if (verb === "add" && done.length > 0) await undo(exec, iface, direction);
    throw error;
  }
  return commands;
}

/**
 * Undoes a first application that failed part-way. Safe because `applyNetem` only takes the "add"
 * path when nothing of ours and nothing foreign was there: every removal targets our handle or our
 * ifb; removals of things that never got added fail harmlessly and are ignored.
 */
async function undo(exec: Exec, iface: string, direction: Direction): Promise<void> {
  for (const argv of buildNetemRemovalCommands(iface, direction)) await exec(argv);
}

/** Removes our netem from `iface` in `direction`, only if it is ours. Idempotent. */
export async function removeNetem(exec: Exec, iface: string, direction: Direction): Promise<void> {
  if (direction !== "ingress") {
    const root = (await showQdiscs(exec, iface)).find((q) => q.kind === "netem" && q.handle === NETEM_HANDLE);
    if (root !== undefined) await run(exec, iface, ["tc", "qdisc", "del", "dev", iface, "root", "handle", NETEM_HANDLE]);
  }
  if (direction !== "egress" && (await exec(["ip", "link", "show", "dev", ifbName(iface)])).exitCode === 0) {
    await run(exec, iface, ["tc", "qdisc", "del", "dev", iface, "handle", INGRESS_HANDLE, "ingress"]);
    await run(exec, iface, ["ip", "link", "del", ifbName(iface)]);
  }
}

/**
 * Can this kernel run netem? Creates a throw-away network namespace, adds netem on its `lo`,
 * removes the namespace (whatever happened). Also reports whether `tc` knows `seed`.
 */
export async function probeNetem(exec: Exec): Promise<{ available: boolean; reason?: string; seedSupported: boolean }> {
  const netns = `qmt-probe-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  const help = await exec(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "help"]);
  const seedSupported = /\bseed\b/.test(help.stdout + help.stderr);
  const created = await exec(["ip", "netns", "add", netns]);
  if (created.exitCode !== 0) return { available: false, reason: `cannot create a network namespace to probe: ${created.stderr.trim()}`, seedSupported };
  try {
    const added = await exec(["ip", "netns", "exec", netns, "tc", "qdisc", "add", "dev", "lo", "root", "handle", NETEM_HANDLE, "netem", "delay", "1ms"]);
    if (added.exitCode !== 0) {
      const unknown = /unknown/i.test(added.stderr);
      return { available: false, reason: unknown ? `kernel has no sch_netem (tc: ${added.stderr.trim()})` : `tc netem failed: ${added.stderr.trim()}`, seedSupported };
    }
    return { available: true, seedSupported };
  } finally {
    await exec(["ip", "netns", "del", netns]);
  }
}

function ms(value: number): string {
  return `${value}ms`;
}

function round6(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}

function percent(value: number): string {
  return `${value}%`;
}
