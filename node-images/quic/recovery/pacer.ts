/**
 * Pacing (RFC 9002 §7.7): a token bucket that refills at N × cwnd / smoothed_rtt with N = 1.25 and holds a burst of
 * about ten datagrams, so that a full window is spread over the RTT instead of leaving in one burst.
 */
import type { Instant } from "../time.ts";
import type { RttEstimator } from "./rtt-estimator.ts";

/** RFC 9002 §7.7: N, the pacing gain; above 1 so that the window is used up before the next RTT. */
export const PACING_GAIN = 1.25;
/** Burst allowance, in datagrams (RFC 9002 §7.7 allows small bursts; 10 matches the initial window). */
export const PACING_BURST_DATAGRAMS = 10;
/** Floor for smoothed_rtt in the rate, so a sub-millisecond loopback RTT does not divide by ~0. */
const MIN_PACING_RTT_MS = 0.001;

export interface PacerState {
  maxDatagramSizeBytes: number;
  tokensBytes: number;
  lastRefillMs: Instant | null;
}

export class Pacer {
  readonly maxDatagramSizeBytes: number;
  readonly burstBytes: number;
  private tokensBytes: number;
  private lastRefillMs: Instant | null = null;

  constructor(maxDatagramSizeBytes: number) {
    this.maxDatagramSizeBytes = maxDatagramSizeBytes;
    this.burstBytes = PACING_BURST_DATAGRAMS * maxDatagramSizeBytes;
    this.tokensBytes = this.burstBytes;
  }

  /** The pacing rate in bytes per millisecond. */
  static rateBytesPerMs(cwndBytes: number, rtt: RttEstimator): number {
    return (PACING_GAIN * cwndBytes) / Math.max(rtt.smoothedRttMs, MIN_PACING_RTT_MS);
  }

  /** When a packet of `packetBytes` may leave: `now` if it may leave at once. */
  nextSendTime(now: Instant, cwndBytes: number, rtt: RttEstimator, packetBytes: number): Instant {
    const rate = Pacer.rateBytesPerMs(cwndBytes, rtt);
    const tokens = this.tokensAt(now, rate);
    if (tokens >= packetBytes) return now;
    return now + (packetBytes - tokens) / rate;
  }

  onPacketSent(now: Instant, bytes: number, cwndBytes: number, rtt: RttEstimator): void {
    const rate = Pacer.rateBytesPerMs(cwndBytes, rtt);
    this.tokensBytes = this.tokensAt(now, rate) - bytes;
    // A probe may be sent regardless of pacing: remember at most one burst of debt.
    if (this.tokensBytes < -this.burstBytes) this.tokensBytes = -this.burstBytes;
    this.lastRefillMs = Math.max(now, this.lastRefillMs ?? now);
  }

  toJSON(): PacerState {
    return { maxDatagramSizeBytes: this.maxDatagramSizeBytes, tokensBytes: this.tokensBytes, lastRefillMs: this.lastRefillMs };
  }

  static fromJSON(state: PacerState): Pacer {
    const pacer = new Pacer(state.maxDatagramSizeBytes);
    pacer.tokensBytes = state.tokensBytes;
    pacer.lastRefillMs = state.lastRefillMs;
    return pacer;
  }

  private tokensAt(now: Instant, rateBytesPerMs: number): number {
    if (this.lastRefillMs === null) return this.tokensBytes;
    const elapsedMs = Math.max(0, now - this.lastRefillMs);
    return Math.min(this.burstBytes, this.tokensBytes + elapsedMs * rateBytesPerMs);
  }
}
