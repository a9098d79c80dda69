import { describe, expect, it } from "vitest";
import { MinHeap } from "./min-heap.ts";
import { SeededRandom } from "./seeded-random.ts";

describe("MinHeap", () => {
  it("pops 10,000 seeded random numbers in sorted order", () => {
    const r = new SeededRandom(1);
    const heap = new MinHeap<number>((a, b) => a < b);
    const xs = Array.from({ length: 10_000 }, () => r.nextUint32());
    for (const x of xs) heap.push(x);
    const out: number[] = [];
    for (let x = heap.pop(); x !== undefined; x = heap.pop()) out.push(x);
    expect(out).toEqual([...xs].sort((a, b) => a - b));
  });

  it("retain() keeps heap order", () => {
    const heap = new MinHeap<number>((a, b) => a < b);
    for (const x of [5, 3, 9, 1, 7, 2, 8]) heap.push(x);
    heap.retain((x) => x % 2 === 1);
    expect([heap.pop(), heap.pop(), heap.pop(), heap.pop(), heap.pop()]).toEqual([1, 3, 5, 7, 9]);
  });
});
