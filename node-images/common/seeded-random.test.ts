import { describe, expect, it } from "vitest";
import { SeededRandom } from "./seeded-random.ts";

describe("SeededRandom", () => {
  it("gives the same sequence for the same seed and another for another seed", () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const c = new SeededRandom(43);
    const seqA = Array.from({ length: 100 }, () => a.nextUint32());
    expect(Array.from({ length: 100 }, () => b.nextUint32())).toEqual(seqA);
    expect(Array.from({ length: 100 }, () => c.nextUint32())).not.toEqual(seqA);
  });

  it("is uniform enough: 2% chance over 100,000 draws lands in the 99.9% binomial interval", () => {
    const r = new SeededRandom(7);
    let hits = 0;
    const n = 100_000;
    for (let i = 0; i < n; i++) if (r.chancePercent(2)) hits++;
    const sd = Math.sqrt(n * 0.02 * 0.98);
    expect(Math.abs(hits - n * 0.02)).toBeLessThan(3.3 * sd);
  });

  it("normal draws have mean ~0 and standard deviation ~1", () => {
    const r = new SeededRandom(9);
    const xs = Array.from({ length: 50_000 }, () => r.nextNormal());
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length);
    expect(Math.abs(mean)).toBeLessThan(0.02);
    expect(Math.abs(sd - 1)).toBeLessThan(0.02);
  });
});
