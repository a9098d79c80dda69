/**
 * Measurements of the userspace impairer over real UDP sockets on 127.0.0.1. One-way delay is
 * measured with the impairer on the forward direction only and the sink in the same process (one
 * clock): arrival time − send time carried in the datagram.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UdpImpairer } from "../../orchestrator/impairments/udp-impairer.ts";
import { LinkImpairment, IPV4_UDP_HEADER_BYTES } from "../../orchestrator/impairments/link-impairment.ts";
import { lockTestResource } from "../docker/engine-lock.ts";
import { binomialInterval99 } from "./binomial.ts";
import { median, raiseSchedulingPriority, sendPaced, startProbeSink, waitFor, waitQuiet } from "./udp-probe.ts";

const LOOPBACK = "127.0.0.1";

describe("userspace UDP impairer", () => {
  let restorePriority = (): void => {};
  let lock: { release: () => Promise<void> } | undefined;
  beforeAll(async () => {
    lock = await lockTestResource("timing", 600_000); // not while the QEMU guest measures
    restorePriority = raiseSchedulingPriority();
  }, 660_000);
  afterAll(async () => {
    restorePriority();
    await lock?.release();
  });

  it("delays by 50 ms ± 5 ms (normal): median one-way delay within 0.5 ms of 50 ms; 2 % loss inside the 99 % binomial interval", async () => {
    const count = 2000;
    const measureOnce = async () => {
      await using sink = await startProbeSink();
      await using impairer = await UdpImpairer.start({
        listen: { address: LOOPBACK, port: 0 },
        target: { address: LOOPBACK, port: sink.port },
        // reorderPercent: 0 lets jitter reorder as netem's time-sorted queue does (no order clamp,
        // which would skew the delay distribution upwards).
        forward: { delayMs: 50, jitterMs: 5, jitterDistribution: "normal", lossPercent: 2, reorderPercent: 0, seed: 42 },
      });
      await sendPaced({ port: impairer.address.port, count, intervalMs: 2 });
      await waitQuiet(() => sink.arrivals.length, 250, 10_000);
      return { arrivals: [...sink.arrivals], stats: impairer.stats() };
    };
    // The same seeded experiment, repeated (at most 3 times) only while the machine provably
    // stalled this process during it: more than 1 % of the impairer's sends left over 2 ms late
    // (a starved process on a loaded 2-core machine delays everything, which is not the impairer's
    // delay). Every attempt is logged; the assertions below are the same for any attempt.
    let attempt = await measureOnce();
    for (let retry = 1; retry < 3 && attempt.stats.timerLatenessMs.p99 >= 2; retry++) {
      console.log(`attempt ${retry} discarded: the process was stalled (send lateness p99 ${attempt.stats.timerLatenessMs.p99.toFixed(1)} ms)`);
      attempt = await measureOnce();
    }
    const { arrivals, stats } = attempt;
    const medianMs = median(arrivals.map((a) => a.oneWayMs));
    console.log(JSON.stringify({ medianMs, received: arrivals.length, lateness: stats.timerLatenessMs }));
    expect(Math.abs(medianMs - 50)).toBeLessThan(0.5);
    const lost = count - new Set(arrivals.map((a) => a.sequence)).size;
    const { lo, hi } = binomialInterval99(count, 0.02);
    expect(lost).toBeGreaterThanOrEqual(lo);
    expect(lost).toBeLessThanOrEqual(hi);
    expect(stats.forward.dropped.loss).toBe(lost);
    // Its own overhead: half the sends leave within 0.5 ms of their deadline.
    expect(stats.timerLatenessMs.p50).toBeLessThan(0.5);
  });

  it("limits the rate to 1 Mbit/s: measured throughput within 5 %", async () => {
    await using sink = await startProbeSink();
    const rateBitsPerSecond = 1_000_000;
    await using impairer = await UdpImpairer.start({
      listen: { address: LOOPBACK, port: 0 },
      target: { address: LOOPBACK, port: sink.port },
      forward: { rateBitsPerSecond },
    });
    const bytes = 972; // 1000-byte IP packets
    // 2 Mbit/s offered for 1 s: twice the rate, so the queue never runs empty.
    await sendPaced({ port: impairer.address.port, count: 250, intervalMs: 4, bytes });
    await waitQuiet(() => sink.arrivals.length, 250, 10_000);
    const arrivals = sink.arrivals;
    expect(arrivals.length).toBe(250);
    const spanMs = arrivals.at(-1)!.arrivedAtMs - arrivals[0]!.arrivedAtMs;
    const measured = ((arrivals.length - 1) * (bytes + IPV4_UDP_HEADER_BYTES) * 8) / (spanMs / 1000);
    console.log(JSON.stringify({ measuredBitsPerSecond: measured }));
    expect(Math.abs(measured - rateBitsPerSecond) / rateBitsPerSecond).toBeLessThan(0.05);
  });

  it("drops on a full rate queue instead of growing without bound (limitPackets)", async () => {
    await using sink = await startProbeSink();
    await using impairer = await UdpImpairer.start({
      listen: { address: LOOPBACK, port: 0 },
      target: { address: LOOPBACK, port: sink.port },
      forward: { rateBitsPerSecond: 100_000, limitPackets: 5 },
    });
    await sendPaced({ port: impairer.address.port, count: 40, intervalMs: 0, bytes: 972 });
    await waitFor(() => impairer.stats().forward.received === 40, 5_000, "40 datagrams at the impairer");
    const stats = impairer.stats();
    expect(stats.forward.dropped.queueFull).toBeGreaterThan(0);
    expect(stats.forward.forwarded + stats.forward.dropped.queueFull).toBe(40);
  });

  it("reorders 10 %: the share of packets overtaking the 20 ms delay is inside the 99 % binomial interval", async () => {
    const count = 2000;
    const measureOnce = async () => {
      await using sink = await startProbeSink();
      await using impairer = await UdpImpairer.start({
        listen: { address: LOOPBACK, port: 0 },
        target: { address: LOOPBACK, port: sink.port },
        forward: { delayMs: 20, reorderPercent: 10, seed: 7 },
      });
      await sendPaced({ port: impairer.address.port, count, intervalMs: 1 });
      await waitQuiet(() => sink.arrivals.length, 200, 10_000);
      return { arrivals: [...sink.arrivals], stats: impairer.stats() };
    };
    // Repeated (at most 3 times) only while the process was provably stalled, as in the delay test:
    // a stalled send can push a reordered packet past the 10 ms line.
    let attempt = await measureOnce();
    for (let retry = 1; retry < 3 && attempt.stats.timerLatenessMs.p99 >= 2; retry++) {
      console.log(`attempt ${retry} discarded: the process was stalled (send lateness p99 ${attempt.stats.timerLatenessMs.p99.toFixed(1)} ms)`);
      attempt = await measureOnce();
    }
    const { arrivals, stats } = attempt;
    expect(arrivals.length).toBe(count);
    const early = arrivals.filter((a) => a.oneWayMs < 10).length;
    const { lo, hi } = binomialInterval99(count, 0.1);
    expect(early).toBeGreaterThanOrEqual(lo);
    expect(early).toBeLessThanOrEqual(hi);
    expect(stats.forward.reordered).toBe(early);
    // Out of order at the receiver: some sequence number arrives after a larger one.
    const sequences = arrivals.map((a) => a.sequence);
    expect(sequences.some((s, i) => i > 0 && s < sequences[i - 1]!)).toBe(true);
  });

  it("keeps order under jitter when reorder is not requested", async () => {
    await using sink = await startProbeSink();
    await using impairer = await UdpImpairer.start({
      listen: { address: LOOPBACK, port: 0 },
      target: { address: LOOPBACK, port: sink.port },
      forward: { delayMs: 10, jitterMs: 5, jitterDistribution: "uniform", seed: 3 },
    });
    await sendPaced({ port: impairer.address.port, count: 300, intervalMs: 1 });
    await waitQuiet(() => sink.arrivals.length, 200, 10_000);
    const sequences = sink.arrivals.map((a) => a.sequence);
    expect(sequences).toEqual([...sequences].sort((a, b) => a - b));
    expect(sequences.length).toBe(300);
  });

  it("duplicates 5 %: duplicates at the receiver inside the 99 % binomial interval", async () => {
    await using sink = await startProbeSink();
    await using impairer = await UdpImpairer.start({
      listen: { address: LOOPBACK, port: 0 },
      target: { address: LOOPBACK, port: sink.port },
      forward: { duplicatePercent: 5, seed: 11 },
    });
    const count = 2000;
    await sendPaced({ port: impairer.address.port, count, intervalMs: 0.5 });
    await waitQuiet(() => sink.arrivals.length, 200, 10_000);
    const duplicates = sink.arrivals.length - new Set(sink.arrivals.map((a) => a.sequence)).size;
    const { lo, hi } = binomialInterval99(count, 0.05);
    expect(duplicates).toBeGreaterThanOrEqual(lo);
    expect(duplicates).toBeLessThanOrEqual(hi);
    expect(impairer.stats().forward.duplicated).toBe(duplicates);
  });

  it("corrupts by flipping exactly one bit", () => {
    const link = new LinkImpairment({ corruptPercent: 100, seed: 5 });
    const original = Buffer.from("0123456789abcdef");
    for (let i = 0; i < 50; i++) {
      const [delivery] = link.admit(original, i);
      let flipped = 0;
      for (let j = 0; j < original.length; j++) {
        let x = original[j]! ^ delivery!.payload[j]!;
        while (x) {
          flipped += x & 1;
          x >>= 1;
        }
      }
      expect(flipped).toBe(1);
    }
    expect(original.toString()).toBe("0123456789abcdef");
    expect(link.counters.corrupted).toBe(50);
  });

  it("the same seed gives the same drop pattern, another seed another (virtual time)", () => {
    const pattern = (seed: number): number[] => {
      const link = new LinkImpairment({ lossPercent: 10, lossCorrelationPercent: 25, seed });
      const dropped: number[] = [];
      for (let i = 0; i < 5000; i++) if (link.admit(Buffer.alloc(10), i).length === 0) dropped.push(i);
      return dropped;
    };
    expect(pattern(99)).toEqual(pattern(99));
    expect(pattern(99)).not.toEqual(pattern(100));
  });

  it("the same seed gives the same drop pattern over real sockets", async () => {
    const run = async (): Promise<number[]> => {
      await using sink = await startProbeSink();
      await using impairer = await UdpImpairer.start({
        listen: { address: LOOPBACK, port: 0 },
        target: { address: LOOPBACK, port: sink.port },
        forward: { lossPercent: 5, seed: 1234 },
      });
      await sendPaced({ port: impairer.address.port, count: 500, intervalMs: 0.2 });
      await waitFor(() => impairer.stats().forward.received === 500, 5_000, "500 datagrams at the impairer");
      await waitQuiet(() => sink.arrivals.length, 100, 5_000);
      const got = new Set(sink.arrivals.map((a) => a.sequence));
      return Array.from({ length: 500 }, (_, i) => i).filter((i) => !got.has(i));
    };
    const first = await run();
    expect(first.length).toBeGreaterThan(0);
    expect(await run()).toEqual(first);
  });

  it("maps each client to its own upstream flow, impairs replies with the reverse spec, and updates live", async () => {
    await using sink = await startProbeSink();
    await using impairer = await UdpImpairer.start({
      listen: { address: LOOPBACK, port: 0 },
      target: { address: LOOPBACK, port: sink.port },
      reverse: { delayMs: 30 },
      idleTimeoutMs: 300,
    });
    const a = await sendPaced({ port: impairer.address.port, count: 5, intervalMs: 1 });
    const b = await sendPaced({ port: impairer.address.port, count: 3, intervalMs: 1 });
    await waitFor(() => a.echoes.length === 5 && b.echoes.length === 3, 3_000, "echoes to both clients");
    expect(impairer.stats().flows).toBe(2);
    expect(impairer.stats().reverse.forwarded).toBe(8);
    impairer.update({ reverse: {}, forward: { lossPercent: 100 } });
    const c = await sendPaced({ port: impairer.address.port, count: 5, intervalMs: 1 });
    await waitFor(() => impairer.stats().forward.dropped.loss === 5, 3_000, "5 drops after update");
    expect(c.echoes.length).toBe(0);
    await waitFor(() => impairer.stats().flows === 0, 3_000, "idle flows to be forgotten");
  });
});
