/** The pure parts of the userspace impairer, in virtual time. */
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../node-images/common/seeded-random.ts";
import { LinkImpairment } from "../../orchestrator/impairments/link-impairment.ts";
import { binomialInterval99 } from "./binomial.ts";

describe("xoshiro128** (node-images/common/seeded-random.ts, the impairer's PRNG)", () => {
  it("matches the reference C implementation (xoshiro128starstar.c, compiled with gcc) from state {1, 2, 3, 4}", () => {
    const rng = SeededRandom.fromState([1, 2, 3, 4]);
    const first = Array.from({ length: 8 }, () => rng.nextUint32());
    expect(first).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849]);
    for (let i = 0; i < 992; i++) rng.nextUint32();
    expect(rng.nextUint32()).toBe(136054147);
  });

  it("next() is uniform on [0, 1): each decile holds its share within the 99 % binomial interval", () => {
    const rng = new SeededRandom(2024);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 10_000; i++) counts[Math.floor(rng.next() * 10)]!++;
    const { lo, hi } = binomialInterval99(10_000, 0.1);
    for (const c of counts) {
      expect(c).toBeGreaterThanOrEqual(lo);
      expect(c).toBeLessThanOrEqual(hi);
    }
  });
});

describe("link impairment model (virtual time)", () => {
  it("correlated loss keeps its rate and lengthens bursts to 1 / ((1 − P)(1 − ρ))", () => {
    const runs = (correlation: number): { lost: number; meanBurst: number } => {
      const link = new LinkImpairment({ lossPercent: 20, lossCorrelationPercent: correlation, seed: 8 });
      let lost = 0;
      let bursts = 0;
      let previousLost = false;
      for (let i = 0; i < 20_000; i++) {
        const isLost = link.admit(Buffer.alloc(1), i).length === 0;
        if (isLost) lost++;
        if (isLost && !previousLost) bursts++;
        previousLost = isLost;
      }
      return { lost, meanBurst: lost / bursts };
    };
    const independent = runs(0);
    const correlated = runs(75);
    const { lo, hi } = binomialInterval99(20_000, 0.2);
    expect(independent.lost).toBeGreaterThanOrEqual(lo);
    expect(independent.lost).toBeLessThanOrEqual(hi);
    // Correlated draws are not independent, so the binomial interval does not apply; ±10 % of the rate.
    expect(Math.abs(correlated.lost - 4000)).toBeLessThan(400);
    expect(Math.abs(independent.meanBurst - 1 / 0.8)).toBeLessThan(0.05);
    expect(Math.abs(correlated.meanBurst - 1 / (0.8 * 0.25))).toBeLessThan(0.5);
  });

  it("rate: serialisation of IP-sized packets back to back", () => {
    const link = new LinkImpairment({ rateBitsPerSecond: 8_000_000 }); // 1 byte per µs
    const times = Array.from({ length: 3 }, () => link.admit(Buffer.alloc(972), 0)[0]!.atMs);
    expect(times).toEqual([1, 2, 3]); // 1000-byte IP packets, 1 ms each
  });

  it("live update changes the delay of later packets only", () => {
    const link = new LinkImpairment({ delayMs: 10 });
    expect(link.admit(Buffer.alloc(1), 0)[0]!.atMs).toBe(10);
    link.update({ delayMs: 30 });
    expect(link.admit(Buffer.alloc(1), 1)[0]!.atMs).toBe(31);
  });
});
