/**
 * A binary min-heap of items keyed by a deadline (ms, `performance.now()` clock), ties broken by
 * insertion order so equal deadlines leave in the order they arrived. One heap per impairer: one
 * timer to the earliest deadline instead of one timer per packet.
 */
interface Entry<T> {
  deadlineMs: number;
  sequence: number;
  item: T;
}

export class DeadlineQueue<T> {
  #heap: Entry<T>[] = [];
  #sequence = 0;

  get size(): number {
    return this.#heap.length;
  }

  push(deadlineMs: number, item: T): void {
    const heap = this.#heap;
    heap.push({ deadlineMs, sequence: this.#sequence++, item });
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  /** Earliest deadline, or undefined when empty. */
  peekDeadlineMs(): number | undefined {
    return this.#heap[0]?.deadlineMs;
  }

  /** Removes and returns the earliest item. */
  pop(): { deadlineMs: number; item: T } | undefined {
    const heap = this.#heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return { deadlineMs: top.deadlineMs, item: top.item };
  }

  clear(): void {
    this.#heap = [];
  }
}

function less<T>(a: Entry<T>, b: Entry<T>): boolean {
  return a.deadlineMs < b.deadlineMs || (a.deadlineMs === b.deadlineMs && a.sequence < b.sequence);
}
