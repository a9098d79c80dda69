/**
 * An impairment timeline: a YAML list of changes applied in order at given offsets from the start,
 * each one logged with the time it was planned for and the time it happened.
 *
 *   - at: 10s
 *     node: client1
 *     network: public
 *     direction: both          # egress | ingress | both (default both)
 *     impairment: { delayMs: 50, jitterMs: 5, jitterDistribution: normal, lossPercent: 2 }
 *   - at: 20s
 *     node: client1
 *     network: public
 *     heal: true
 *
 * `at` is a duration ("1500ms", "10s", "2m") or a number of seconds. Steps run in `at` order
 * (file order for equal times). Impairment keys are those of ImpairmentSpec.
 */
import { parse } from "yaml";
import { z } from "zod";
import type { ImpairmentTarget } from "../drivers/driver.ts";
import type { ImpairmentSpec } from "../topology/model.ts";

export class ScheduleError extends Error {
  override readonly name = "ScheduleError";
  readonly code = "SCHEDULE_INVALID";
  readonly file: string;
  readonly fieldPath: string;
  constructor(file: string, fieldPath: string, expected: string) {
    super(`${file}: ${fieldPath}: ${expected}`);
    this.file = file;
    this.fieldPath = fieldPath;
  }
}

export type ScheduleAction = { type: "impair"; spec: ImpairmentSpec } | { type: "heal" };

export interface ScheduleStep {
  atMs: number;
  target: ImpairmentTarget;
  action: ScheduleAction;
}

export interface ScheduleLogEntry {
  step: ScheduleStep;
  /** When it was applied, ms from the start of the run of the schedule. */
  appliedAtMs: number;
  outcome: "applied" | "failed";
  error?: string;
}

const percent = z.number().min(0).max(100);
const impairmentSchema = z
  .object({
    delayMs: z.number().min(0).optional(),
    jitterMs: z.number().min(0).optional(),
    jitterDistribution: z.enum(["uniform", "normal", "pareto", "paretonormal"]).optional(),
    lossPercent: percent.optional(),
    lossCorrelationPercent: percent.optional(),
    rateBitsPerSecond: z.number().positive().optional(),
    reorderPercent: percent.optional(),
    reorderCorrelationPercent: percent.optional(),
    duplicatePercent: percent.optional(),
    corruptPercent: percent.optional(),
    limitPackets: z.number().int().positive().optional(),
    seed: z.number().int().optional(),
  })
  .strict();

const stepSchema = z
  .object({
    at: z.union([z.string(), z.number().min(0)]),
    node: z.string().min(1),
    network: z.string().min(1),
    direction: z.enum(["egress", "ingress", "both"]).default("both"),
    impairment: impairmentSchema.optional(),
    heal: z.literal(true).optional(),
  })
  .strict();

/** "1500ms" | "10s" | "2m" | seconds → ms; undefined when not a duration. */
export function parseDurationMs(value: string | number): number | undefined {
  if (typeof value === "number") return value * 1000;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(value.trim());
  if (match === null) return undefined;
  const amount = Number(match[1]);
  return match[2] === "ms" ? amount : match[2] === "s" ? amount * 1000 : amount * 60_000;
}

export function parseSchedule(text: string, file: string): ScheduleStep[] {
  let document: unknown;
  try {
    document = parse(text);
  } catch (error) {
    throw new ScheduleError(file, "(document)", `not valid YAML: ${(error as Error).message}`);
  }
  if (!Array.isArray(document)) throw new ScheduleError(file, "(document)", "expected a list of steps");
  const steps = document.map((raw, index): ScheduleStep => {
    const parsed = stepSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new ScheduleError(file, `[${index}]${issue.path.map((p) => `.${String(p)}`).join("")}`, issue.message);
    }
    const step = parsed.data;
    const atMs = parseDurationMs(step.at);
    if (atMs === undefined) throw new ScheduleError(file, `[${index}].at`, `expected a duration like "10s", got ${JSON.stringify(step.at)}`);
    if ((step.impairment === undefined) === (step.heal === undefined)) throw new ScheduleError(file, `[${index}]`, "expected exactly one of impairment or heal: true");
    const target: ImpairmentTarget = { node: step.node, network: step.network, direction: step.direction };
    const action: ScheduleAction = step.impairment !== undefined ? { type: "impair", spec: stripUndefined(step.impairment) } : { type: "heal" };
    return { atMs, target, action };
  });
  // Array.prototype.sort is stable: equal times keep file order.
  return steps.sort((a, b) => a.atMs - b.atMs);
}

export interface ScheduleClock {
  /** ms since an arbitrary origin. */
  now(): number;
  /** Resolves at `ms` on this clock (rejects when `signal` aborts). */
  sleepUntil(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: ScheduleClock = {
  now: () => performance.now(),
  sleepUntil: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      signal?.throwIfAborted();
      let timer: NodeJS.Timeout | undefined;
      // setTimeout runs on the loop's whole-millisecond clock and can fire up to ~1 ms before `ms` on
      // performance.now() (a CI run saw a 60 ms step at 59.17 ms): re-arm for the rest until it has passed.
      const arm = (): void => {
        const remaining = ms - performance.now();
        if (remaining <= 0) {
          signal?.removeEventListener("abort", onAbort);
          resolve();
          return;
        }
        timer = setTimeout(arm, Math.max(1, Math.ceil(remaining)));
      };
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      arm();
    }),
};

/**
 * Applies the steps in order, each at its time. A failed step is logged and the timeline goes on
 * (an experiment should not silently stop changing); the caller sees every failure in the log.
 */
export async function runSchedule(
  steps: ScheduleStep[],
  apply: { impair(target: ImpairmentTarget, spec: ImpairmentSpec): Promise<unknown>; heal(target: ImpairmentTarget): Promise<void> },
  opts: { clock?: ScheduleClock; signal?: AbortSignal; log?: (entry: ScheduleLogEntry) => void } = {},
): Promise<ScheduleLogEntry[]> {
  const clock = opts.clock ?? realClock;
  const startMs = clock.now();
  const entries: ScheduleLogEntry[] = [];
  for (const step of steps) {
    await clock.sleepUntil(startMs + step.atMs, opts.signal);
    let entry: ScheduleLogEntry;
    try {
      if (step.action.type === "impair") await apply.impair(step.target, step.action.spec);
      else await apply.heal(step.target);
      entry = { step, appliedAtMs: clock.now() - startMs, outcome: "applied" };
    } catch (error) {
      entry = { step, appliedAtMs: clock.now() - startMs, outcome: "failed", error: (error as Error).message };
    }
    entries.push(entry);
    opts.log?.(entry);
  }
  return entries;
}

function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
