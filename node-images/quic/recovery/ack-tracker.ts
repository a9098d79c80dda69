/**
 * Receiver-side ACK state of one packet number space (RFC 9000 §13.2): which packet numbers arrived, when an ACK
 * is due, and the ACK ranges to send. Ranges are kept largest first, as the ACK frame carries them (§19.3.1).
 */
import type { Instant } from "../time.ts";
import type { AckRange } from "./loss-detection.ts";

/** RFC 9000 §13.2.2: acknowledge at least every second ack-eliciting packet. */
export const ACK_ELICITING_THRESHOLD = 2;
export const DEFAULT_MAX_ACK_RANGES = 32;

export interface AckTrackerOptions {
  /** RFC 9000 §13.2.4: bound on the ranges kept and sent; the oldest are dropped first. */
  maxRanges?: number;
}

export interface AckTrackerState {
  maxRanges: number;
  ranges: AckRange[];
  minTrackedPn: number;
  largestReceivedTimeMs: Instant | null;
  largestAckElicitingPn: number;
  ackElicitingSinceAck: number;
  firstUnackedAckElicitingMs: Instant | null;
  immediateAckSinceMs: Instant | null;
}

export class AckTracker {
  readonly maxRanges: number;
  /** Received packet numbers, descending, disjoint and non-adjacent. */
  private ranges: AckRange[] = [];
  /** Packets below this are treated as duplicates: their ranges were pruned (RFC 9000 §13.2.3). */
  private minTrackedPn = 0;
  private largestReceivedTimeMs: Instant | undefined;
  private largestAckElicitingPn = -1;
  /** Ack-eliciting packets received since the last ACK we sent. */
  private ackElicitingSinceAck = 0;
  /** Receipt time of the oldest ack-eliciting packet not yet acknowledged. */
  private firstUnackedAckElicitingMs: Instant | undefined;
  /** When an immediate ACK became due (§13.2.1 reordering, §13.2.2 every second packet). */
  private immediateAckSinceMs: Instant | undefined;

  constructor(opts: AckTrackerOptions = {}) {
    this.maxRanges = opts.maxRanges ?? DEFAULT_MAX_ACK_RANGES;
  }

  largestReceived(): number | undefined {
    return this.ranges[0]?.largest;
  }

  /** The caller checks this before processing a packet (RFC 9000 §12.3: duplicates are discarded). */
  isDuplicate(pn: number): boolean {
    if (pn < this.minTrackedPn) return true;
    for (const range of this.ranges) {
      if (pn > range.largest) return false;
      if (pn >= range.smallest) return true;
    }
    return false;
  }

  /** Records an authenticated packet. Returns true when it makes an ACK due immediately. */
  onPacketReceived(pn: number, ackEliciting: boolean, now: Instant): boolean {
    if (this.isDuplicate(pn)) return false;
    const previousLargest = this.ranges[0]?.largest ?? -1;
    this.insert(pn);
    if (pn > previousLargest) this.largestReceivedTimeMs = now;
    if (!ackEliciting) return false;

    // RFC 9000 §13.2.1: ACK at once when an ack-eliciting packet arrives out of order: below an ack-eliciting packet
    // already received, or above the largest one with a gap in between.
    const reordered = this.largestAckElicitingPn >= 0 && (pn < this.largestAckElicitingPn || this.hasGapBelow(pn, this.largestAckElicitingPn));
    this.largestAckElicitingPn = Math.max(this.largestAckElicitingPn, pn);
    this.ackElicitingSinceAck++;
    this.firstUnackedAckElicitingMs ??= now;
    const immediate = reordered || this.ackElicitingSinceAck >= ACK_ELICITING_THRESHOLD;
    if (immediate) this.immediateAckSinceMs ??= now;
    return immediate;
  }

  /** When an ACK must be sent: `max_ack_delay` after the first unacknowledged ack-eliciting packet, or at once. */
  ackDeadline(maxAckDelayMs: number): Instant | undefined {
    if (this.firstUnackedAckElicitingMs === undefined) return undefined;
    return this.immediateAckSinceMs ?? this.firstUnackedAckElicitingMs + maxAckDelayMs;
  }

  shouldSendAck(now: Instant, maxAckDelayMs: number): boolean {
    const deadline = this.ackDeadline(maxAckDelayMs);
    return deadline !== undefined && deadline <= now;
  }

  /**
   * The ACK frame content (RFC 9000 §19.3): ranges largest first and the ACK Delay field, i.e. the time since the
   * largest packet arrived in µs scaled down by 2^ack_delay_exponent (§18.2).
   */
  buildAck(now: Instant, ackDelayExponent: number): { ranges: AckRange[]; ackDelay: number } | undefined {
    if (this.ranges.length === 0 || this.largestReceivedTimeMs === undefined) return undefined;
    const delayUs = Math.max(0, now - this.largestReceivedTimeMs) * 1000;
    return {
      ranges: this.ranges.map((r) => ({ smallest: r.smallest, largest: r.largest })),
      ackDelay: Math.floor(delayUs / 2 ** ackDelayExponent),
    };
  }

  /** An ACK with the current ranges went out: nothing ack-eliciting is waiting any more. */
  onAckSent(): void {
    this.ackElicitingSinceAck = 0;
    this.firstUnackedAckElicitingMs = undefined;
    this.immediateAckSinceMs = undefined;
  }

  /**
   * RFC 9000 §13.2.4: once a packet carrying our ACK is acknowledged, stop acknowledging packet numbers up to that ACK's
   * Largest Acknowledged. Later arrivals at or below it are treated as duplicates (§13.2.3).
   */
  onAckOfAckReceived(largestAckedInThatAck: number): void {
    if (largestAckedInThatAck < this.minTrackedPn) return;
    this.minTrackedPn = largestAckedInThatAck + 1;
    let keep = this.ranges.length;
    while (keep > 0 && this.ranges[keep - 1]!.largest < this.minTrackedPn) keep--;
    this.ranges.length = keep;
    const oldest = this.ranges[keep - 1];
    if (oldest && oldest.smallest < this.minTrackedPn) oldest.smallest = this.minTrackedPn;
  }

  toJSON(): AckTrackerState {
    return {
      maxRanges: this.maxRanges,
      ranges: this.ranges.map((r) => ({ smallest: r.smallest, largest: r.largest })),
      minTrackedPn: this.minTrackedPn,
      largestReceivedTimeMs: this.largestReceivedTimeMs ?? null,
      largestAckElicitingPn: this.largestAckElicitingPn,
      ackElicitingSinceAck: this.ackElicitingSinceAck,
      firstUnackedAckElicitingMs: this.firstUnackedAckElicitingMs ?? null,
      immediateAckSinceMs: this.immediateAckSinceMs ?? null,
    };
  }

  static fromJSON(state: AckTrackerState): AckTracker {
    const acks = new AckTracker({ maxRanges: state.maxRanges });
    acks.ranges = state.ranges.map((r) => ({ smallest: r.smallest, largest: r.largest }));
    acks.minTrackedPn = state.minTrackedPn;
    acks.largestReceivedTimeMs = state.largestReceivedTimeMs ?? undefined;
    acks.largestAckElicitingPn = state.largestAckElicitingPn;
    acks.ackElicitingSinceAck = state.ackElicitingSinceAck;
    acks.firstUnackedAckElicitingMs = state.firstUnackedAckElicitingMs ?? undefined;
    acks.immediateAckSinceMs = state.immediateAckSinceMs ?? undefined;
    return acks;
  }

  private insert(pn: number): void {
    const ranges = this.ranges;
    // Common case: the next packet in order extends the newest range.
    const newest = ranges[0];
    if (newest && pn === newest.largest + 1) {
      newest.largest = pn;
      return;
    }
    let i = 0;
    while (i < ranges.length && ranges[i]!.smallest > pn + 1) i++;
    // ranges[i] is the first range that pn touches or lies above.
    const at = ranges[i];
    if (at && pn >= at.smallest - 1 && pn <= at.largest + 1) {
      if (pn === at.smallest - 1) at.smallest = pn;
      else if (pn === at.largest + 1) at.largest = pn;
      // Merge with the next (older) range when the gap closed.
      const older = ranges[i + 1];
      if (older && older.largest + 1 >= at.smallest) {
        at.smallest = older.smallest;
        ranges.splice(i + 1, 1);
      }
      // Merge with the previous (newer) range.
      const newer = ranges[i - 1];
      if (newer && at.largest + 1 >= newer.smallest) {
        newer.smallest = at.smallest;
        ranges.splice(i, 1);
      }
      return;
    }
    ranges.splice(i, 0, { smallest: pn, largest: pn });
    if (ranges.length > this.maxRanges) {
      // §13.2.4: drop the oldest ranges; packets below what is kept count as duplicates from now on.
      ranges.length = this.maxRanges;
      this.minTrackedPn = Math.max(this.minTrackedPn, ranges[ranges.length - 1]!.smallest);
    }
  }

  /** A packet number between `lowerPn` (exclusive) and `pn` (exclusive) has not been received. */
  private hasGapBelow(pn: number, lowerPn: number): boolean {
    if (pn <= lowerPn + 1) return false;
    for (const range of this.ranges) {
      if (range.smallest <= lowerPn + 1 && range.largest >= pn - 1) return false;
      if (range.largest < lowerPn) break;
    }
    return true;
  }
}
