import { describe, expect, it } from "vitest";
import { parseSchedule, runSchedule, ScheduleError, type ScheduleClock } from "../../orchestrator/impairments/schedule.ts";
import type { ImpairmentTarget } from "../../orchestrator/drivers/driver.ts";
import type { ImpairmentSpec } from "../../orchestrator/topology/model.ts";

const TIMELINE = `
- at: 20s
  node: client1
  network: public
  heal: true
- at: 10s
  node: client1
  network: public
  direction: egress
  impairment: { delayMs: 50, jitterMs: 5, jitterDistribution: normal, lossPercent: 2 }
- at: 10s
  node: server1
  network: public
  impairment: { lossPercent: 100 }
- at: 1500ms
  node: lb
  network: public
  impairment: { rateBitsPerSecond: 1000000 }
`;

/** Virtual time: sleeping jumps the clock. */
function virtualClock(): ScheduleClock {
  let nowMs = 0;
  return { now: () => nowMs, sleepUntil: async (ms) => void (nowMs = Math.max(nowMs, ms)) };
}

describe("impairment schedule", () => {
  it("parses durations and orders steps by time, file order for equal times", () => {
    const steps = parseSchedule(TIMELINE, "timeline.yaml");
    expect(steps.map((s) => [s.atMs, s.target.node, s.action.type])).toEqual([
      [1500, "lb", "impair"],
      [10_000, "client1", "impair"],
      [10_000, "server1", "impair"],
      [20_000, "client1", "heal"],
    ]);
    expect(steps[1]!.target).toEqual({ node: "client1", network: "public", direction: "egress" });
    expect(steps[2]!.target.direction).toBe("both");
    expect(steps[1]!.action).toEqual({ type: "impair", spec: { delayMs: 50, jitterMs: 5, jitterDistribution: "normal", lossPercent: 2 } });
  });

  it("names the file, the field path and what was expected", () => {
    expect(() => parseSchedule("- at: fast\n  node: a\n  network: n\n  heal: true\n", "t.yaml")).toThrow('t.yaml: [0].at: expected a duration like "10s", got "fast"');
    expect(() => parseSchedule("- at: 1s\n  node: a\n  network: n\n  impairment: { delay: 5 }\n", "t.yaml")).toThrow(/t\.yaml: \[0\]\.impairment/);
    expect(() => parseSchedule("- at: 1s\n  node: a\n  network: n\n", "t.yaml")).toThrow("t.yaml: [0]: expected exactly one of impairment or heal: true");
    try {
      parseSchedule("{}", "t.yaml");
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ScheduleError);
      expect((error as ScheduleError).code).toBe("SCHEDULE_INVALID");
    }
  });

  it("applies each change at its time and logs it, a failure included, without stopping", async () => {
    const calls: string[] = [];
    const apply = {
      impair: async (target: ImpairmentTarget, spec: ImpairmentSpec) => {
        if (target.node === "server1") throw new Error("no such node");
        calls.push(`impair ${target.node} ${JSON.stringify(spec)}`);
      },
      heal: async (target: ImpairmentTarget) => void calls.push(`heal ${target.node}`),
    };
    const logged: string[] = [];
    const entries = await runSchedule(parseSchedule(TIMELINE, "timeline.yaml"), apply, {
      clock: virtualClock(),
      log: (e) => logged.push(`${e.appliedAtMs} ${e.step.target.node} ${e.outcome}`),
    });
    expect(calls).toEqual(['impair lb {"rateBitsPerSecond":1000000}', 'impair client1 {"delayMs":50,"jitterMs":5,"jitterDistribution":"normal","lossPercent":2}', "heal client1"]);
    expect(logged).toEqual(["1500 lb applied", "10000 client1 applied", "10000 server1 failed", "20000 client1 applied"]);
    expect(entries[2]!.error).toBe("no such node");
  });

  it("on the real clock, each step happens no earlier than planned", async () => {
    const steps = parseSchedule("- at: 0ms\n  node: a\n  network: n\n  heal: true\n- at: 60ms\n  node: a\n  network: n\n  heal: true\n", "t.yaml");
    const entries = await runSchedule(steps, { impair: async () => undefined, heal: async () => undefined });
    expect(entries[1]!.appliedAtMs).toBeGreaterThanOrEqual(60 - 1e-6); // (floating-point rounding of now − start only)
    expect(entries[1]!.appliedAtMs).toBeLessThan(200);
  });

  it("stops when aborted", async () => {
    const steps = parseSchedule("- at: 10s\n  node: a\n  network: n\n  heal: true\n", "t.yaml");
    const controller = new AbortController();
    const running = runSchedule(steps, { impair: async () => undefined, heal: async () => undefined }, { signal: controller.signal });
    controller.abort();
    await expect(running).rejects.toThrow();
  });
});
