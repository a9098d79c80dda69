/**
 * The same measurements as udp-impairer.test.ts through the kernel: our netem on `lo` of a
 * throw-away network namespace, a paced UDP probe on 127.0.0.1 inside it (netem-probe-main.ts).
 * One-way delay: the sink is in the sending process (one clock); each datagram crosses lo's
 * egress netem once. Skipped where probeNetem says the kernel cannot (the reason is in the name).
 */
import { describe, expect, it } from "vitest";
import { execArgv } from "../../orchestrator/impairments/exec-argv.ts";
import { applyNetem, probeNetem, type Exec } from "../../orchestrator/impairments/netem.ts";
import type { ImpairmentSpec } from "../../orchestrator/topology/model.ts";
import { binomialInterval99 } from "./binomial.ts";
import { median, type ProbeArrival } from "./udp-probe.ts";

const probe = process.getuid?.() === 0 ? await probeNetem(execArgv) : { available: false, reason: "not root: cannot create a network namespace", seedSupported: false };
const reason = probe.available ? "" : ` (skipped: ${probe.reason})`;

async function measureInNetns(spec: ImpairmentSpec, count: number, intervalMs: number, bytes: number): Promise<ProbeArrival[]> {
  const netns = `qmt-netem-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  expect((await execArgv(["ip", "netns", "add", netns])).exitCode).toBe(0);
  try {
    const exec: Exec = (argv) => execArgv(["ip", "netns", "exec", netns, ...argv]);
    expect((await exec(["ip", "link", "set", "dev", "lo", "up"])).exitCode).toBe(0);
    await applyNetem(exec, "lo", spec, "egress", { seedSupported: probe.seedSupported });
    const script = new URL("./netem-probe-main.ts", import.meta.url).pathname;
    const result = await exec([process.execPath, script, String(count), String(intervalMs), String(bytes)]);
    expect(result.exitCode, result.stderr).toBe(0);
    return (JSON.parse(result.stdout) as { arrivals: ProbeArrival[] }).arrivals;
  } finally {
    await execArgv(["ip", "netns", "del", netns]);
  }
}

describe.skipIf(!probe.available)(`tc netem measurements in a throw-away netns${reason}`, () => {
  it("50 ms ± 5 ms (normal), 2 % loss: median one-way delay within 0.5 ms, loss inside the 99 % binomial interval", async () => {
    const count = 2000;
    const arrivals = await measureInNetns({ delayMs: 50, jitterMs: 5, jitterDistribution: "normal", lossPercent: 2, reorderPercent: 0, seed: 42 }, count, 2, 64);
    expect(Math.abs(median(arrivals.map((a) => a.oneWayMs)) - 50)).toBeLessThan(0.5);
    const lost = count - new Set(arrivals.map((a) => a.sequence)).size;
    const { lo, hi } = binomialInterval99(count, 0.02);
    expect(lost).toBeGreaterThanOrEqual(lo);
    expect(lost).toBeLessThanOrEqual(hi);
  });

  it("rate 1 Mbit/s measured within 5 %", async () => {
    const bytes = 972;
    const arrivals = await measureInNetns({ rateBitsPerSecond: 1_000_000 }, 250, 4, bytes);
    expect(arrivals.length).toBe(250);
    const spanS = (arrivals.at(-1)!.arrivedAtMs - arrivals[0]!.arrivedAtMs) / 1000;
    // netem on lo counts the 14-byte Ethernet header as well as IP + UDP.
    const measured = ((arrivals.length - 1) * (bytes + 28 + 14) * 8) / spanS;
    expect(Math.abs(measured - 1_000_000) / 1_000_000).toBeLessThan(0.05);
  });

  it("reorder 10 % with 20 ms delay: packets overtaking inside the 99 % binomial interval", async () => {
    const count = 2000;
    const arrivals = await measureInNetns({ delayMs: 20, reorderPercent: 10 }, count, 1, 64);
    const early = arrivals.filter((a) => a.oneWayMs < 10).length;
    const { lo, hi } = binomialInterval99(count, 0.1);
    expect(early).toBeGreaterThanOrEqual(lo);
    expect(early).toBeLessThanOrEqual(hi);
  });

  it("duplicate 5 %: duplicates inside the 99 % binomial interval", async () => {
    const count = 2000;
    const arrivals = await measureInNetns({ duplicatePercent: 5 }, count, 0.5, 64);
    const duplicates = arrivals.length - new Set(arrivals.map((a) => a.sequence)).size;
    const { lo, hi } = binomialInterval99(count, 0.05);
    expect(duplicates).toBeGreaterThanOrEqual(lo);
    expect(duplicates).toBeLessThanOrEqual(hi);
  });

  it.skipIf(!probe.seedSupported)("same seed, same drop pattern (needs tc/kernel netem seed, Linux ≥ 6.6, iproute2 ≥ 6.6)", async () => {
    const dropped = async (): Promise<number[]> => {
      const got = new Set((await measureInNetns({ lossPercent: 5, seed: 1234 }, 500, 0.2, 64)).map((a) => a.sequence));
      return Array.from({ length: 500 }, (_, i) => i).filter((i) => !got.has(i));
    };
    expect(await dropped()).toEqual(await dropped());
  });
});
