/**
 * A set of byte offsets kept as sorted, disjoint, non-adjacent half-open ranges [start, end).
 * The send side of a stream uses it for acknowledged and lost byte ranges (RFC 9000 §13.3:
 * only what was lost and not since acknowledged is retransmitted).
 */
export interface ByteRange {
  start: number;
  end: number;
}

export class RangeSet {
  private ranges: ByteRange[] = [];

  get isEmpty(): boolean {
    return this.ranges.length === 0;
  }

  /** Number of disjoint ranges. */
  get count(): number {
    return this.ranges.length;
  }

  /** Total number of offsets covered. */
  get totalLength(): number {
    let total = 0;
    for (const r of this.ranges) total += r.end - r.start;
    return total;
  }

  /** The lowest range, or undefined when empty. */
  first(): ByteRange | undefined {
    const r = this.ranges[0];
    return r === undefined ? undefined : { start: r.start, end: r.end };
  }

  /** A copy of the ranges, lowest first. */
  toArray(): ByteRange[] {
    return this.ranges.map((r) => ({ start: r.start, end: r.end }));
  }

  /** Index of the first range whose end is >= offset (ranges touching offset merge). */
  private lowerBound(offset: number): number {
    let lo = 0;
    let hi = this.ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ranges[mid]!.end < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  add(start: number, end: number): void {
    if (end <= start) return;
    const i = this.lowerBound(start);
    let j = i;
    let newStart = start;
    let newEnd = end;
    while (j < this.ranges.length && this.ranges[j]!.start <= end) {
      newStart = Math.min(newStart, this.ranges[j]!.start);
      newEnd = Math.max(newEnd, this.ranges[j]!.end);
      j++;
    }
    this.ranges.splice(i, j - i, { start: newStart, end: newEnd });
  }

  remove(start: number, end: number): void {
    if (end <= start) return;
    let i = this.lowerBound(start);
    // lowerBound may return a range that only touches start; it is unaffected.
    if (i < this.ranges.length && this.ranges[i]!.end === start) i++;
    const replacement: ByteRange[] = [];
    let j = i;
    while (j < this.ranges.length && this.ranges[j]!.start < end) {
      const r = this.ranges[j]!;
      if (r.start < start) replacement.push({ start: r.start, end: start });
      if (r.end > end) replacement.push({ start: end, end: r.end });
      j++;
    }
    if (j > i) this.ranges.splice(i, j - i, ...replacement);
  }

  /** True when every offset of [start, end) is in the set. */
  containsRange(start: number, end: number): boolean {
    if (end <= start) return true;
    const i = this.lowerBound(start);
    const r = this.ranges[i];
    return r !== undefined && r.start <= start && r.end >= end;
  }

  clear(): void {
    this.ranges = [];
  }
}
