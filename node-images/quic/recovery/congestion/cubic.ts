/**
 * CUBIC congestion control (RFC 9438) on top of RFC 9002's loss signals: the cubic window W_cubic(t) = C(t-K)^3 + W_max
 * (§4.2), the Reno-friendly estimate W_est (§4.3), concave and convex growth towards W_cubic(t + RTT) (§4.4-4.5),
 * multiplicative decrease by beta_cubic (§4.6) and fast convergence (§4.7). Windows are kept in bytes; the formula
 * works in segments of max_datagram_size as the RFC writes it. Slow start is RFC 9002's, optionally with HyStart++
 * (RFC 9406, RFC 9438 §4.10).
 */
import type { Instant } from "../../time.ts";
import type { RttEstimator } from "../rtt-estimator.ts";
import type { AckedOrLostPacket, CongestionController } from "./congestion-controller.ts";
import { initialWindowBytes, minimumWindowBytes } from "./congestion-controller.ts";
import { HyStartPlusPlus, type HyStartState } from "./hystart.ts";
import { UNLIMITED_SSTHRESH_BYTES } from "./new-reno.ts";

/** RFC 9438 §5.1: C = 0.4 (segments / s^3). */
export const CUBIC_C = 0.4;
/** RFC 9438 §4.6: beta_cubic = 0.7. */
export const CUBIC_BETA = 0.7;
/** RFC 9438 §4.3: alpha_cubic = 3(1 - beta_cubic) / (1 + beta_cubic). */
export const CUBIC_ALPHA = (3 * (1 - CUBIC_BETA)) / (1 + CUBIC_BETA);

export interface CubicState {
  name: "cubic";
  maxDatagramSizeBytes: number;
  congestionWindowBytes: number;
  bytesInFlight: number;
  ssthreshBytes: number;
  recoveryStartTimeMs: Instant | null;
  wMaxBytes: number | null;
  epochStartMs: Instant | null;
  cwndEpochBytes: number;
  kSeconds: number;
  wEstBytes: number;
  hystart: HyStartState | null;
}

export interface CubicOptions {
  /** Leave slow start on RTT increase through HyStart++ (RFC 9406). Off by default. */
  hystart?: boolean;
}

export class Cubic implements CongestionController {
  readonly name = "cubic";
  readonly maxDatagramSizeBytes: number;
  private cwndBytes: number;
  private inFlightBytes = 0;
  private ssthreshBytes = UNLIMITED_SSTHRESH_BYTES;
  /** RFC 9002 §B.2 congestion_recovery_start_time; null outside any recovery period. */
  private recoveryStartTimeMs: Instant | null = null;
  /** RFC 9438 §4.1 W_max: the window just before the last reduction; null before any congestion event. */
  private wMaxBytes: number | null = null;
  /** Start of the current congestion avoidance stage (t = 0); null until the first ACK in congestion avoidance. */
  private epochStartMs: Instant | null = null;
  /** RFC 9438 §4.2 cwnd_epoch and K. */
  private cwndEpochBytes = 0;
  private kSecondsValue = 0;
  /** RFC 9438 §4.3 W_est. */
  private wEstBytesValue = 0;
  private hystart: HyStartPlusPlus | null;

  constructor(maxDatagramSizeBytes: number, opts: CubicOptions = {}) {
    this.maxDatagramSizeBytes = maxDatagramSizeBytes;
    this.hystart = opts.hystart ? new HyStartPlusPlus() : null;
    this.cwndBytes = initialWindowBytes(maxDatagramSizeBytes);
  }

  congestionWindowBytes(): number {
    return Math.floor(this.cwndBytes);
  }

  bytesInFlight(): number {
    return this.inFlightBytes;
  }

  slowStartThresholdBytes(): number {
    return this.ssthreshBytes;
  }

  /** W_max in bytes, or null before the first congestion event. */
  maxWindowBytes(): number | null {
    return this.wMaxBytes;
  }

  /** K in seconds for the current congestion avoidance stage (RFC 9438 §4.2 Figure 2). */
  kSeconds(): number {
    return this.kSecondsValue;
  }

  /** W_est in bytes (RFC 9438 §4.3). */
  renoFriendlyWindowBytes(): number {
    return this.wEstBytesValue;
  }

  /** RFC 9438 §4.2 Figure 1: W_cubic(t) = C × (t - K)^3 + W_max, in bytes, t in seconds since the epoch. */
  wCubicBytes(tSeconds: number): number {
    const wMaxSegments = (this.wMaxBytes ?? this.cwndBytes) / this.maxDatagramSizeBytes;
    return (CUBIC_C * (tSeconds - this.kSecondsValue) ** 3 + wMaxSegments) * this.maxDatagramSizeBytes;
  }

  canSend(bytes: number): boolean {
    return this.inFlightBytes + bytes <= this.cwndBytes;
  }

  onPacketSent(bytes: number, _now: Instant): void {
    this.inFlightBytes += bytes;
  }

  onPacketsAcked(packets: readonly AckedOrLostPacket[], now: Instant, rtt: RttEstimator, appLimited: boolean): void {
    let slowStartDivisor = 1;
    if (this.hystart && !appLimited && rtt.hasSample && this.cwndBytes < this.ssthreshBytes) {
      // RFC 9406 §4.2: one RTT sample per acknowledgement, rounds by the newest packet it acknowledges.
      let newestSentMs = -Infinity;
      for (const p of packets) if (!this.inRecovery(p.timeSentMs)) newestSentMs = Math.max(newestSentMs, p.timeSentMs);
      if (newestSentMs !== -Infinity) {
        const verdict = this.hystart.onAck(rtt.latestRttMs, newestSentMs, now);
        if (verdict === "exitSlowStart") this.ssthreshBytes = this.cwndBytes;
        else slowStartDivisor = verdict;
      }
    }
    for (const p of packets) {
      this.inFlightBytes -= p.sizeBytes;
      // RFC 9002 §7.3.2 no growth for packets sent in the recovery period; RFC 9438 §5.8 none while app limited.
      if (this.inRecovery(p.timeSentMs) || appLimited) continue;
      if (this.cwndBytes < this.ssthreshBytes) {
        this.cwndBytes += p.sizeBytes / slowStartDivisor; // RFC 9438 §4.10, RFC 9406 §4.2 CSS growth
        continue;
      }
      this.congestionAvoidance(p.sizeBytes, now, rtt);
    }
  }

  onPacketsLost(packets: readonly AckedOrLostPacket[], now: Instant, persistentCongestion: boolean): void {
    if (packets.length === 0) return;
    let latestSentMs = -Infinity;
    for (const p of packets) {
      this.inFlightBytes -= p.sizeBytes;
      latestSentMs = Math.max(latestSentMs, p.timeSentMs);
    }
    this.onCongestionEvent(latestSentMs, now);
    if (persistentCongestion) {
      // RFC 9002 §7.6.2 and RFC 9438 §4.8: minimum window, slow start again up to ssthresh, a fresh epoch.
      this.cwndBytes = minimumWindowBytes(this.maxDatagramSizeBytes);
      this.recoveryStartTimeMs = null;
      this.epochStartMs = null;
    }
  }

  onPacketsDiscarded(bytes: number): void {
    this.inFlightBytes -= bytes;
  }

  reset(): void {
    this.cwndBytes = initialWindowBytes(this.maxDatagramSizeBytes);
    this.inFlightBytes = 0;
    this.ssthreshBytes = UNLIMITED_SSTHRESH_BYTES;
    this.recoveryStartTimeMs = null;
    this.wMaxBytes = null;
    this.epochStartMs = null;
    this.cwndEpochBytes = 0;
    this.kSecondsValue = 0;
    this.wEstBytesValue = 0;
    this.hystart?.reset();
  }

  toJSON(): CubicState {
    return {
      name: this.name,
      maxDatagramSizeBytes: this.maxDatagramSizeBytes,
      congestionWindowBytes: this.cwndBytes,
      bytesInFlight: this.inFlightBytes,
      ssthreshBytes: this.ssthreshBytes,
      recoveryStartTimeMs: this.recoveryStartTimeMs,
      wMaxBytes: this.wMaxBytes,
      epochStartMs: this.epochStartMs,
      cwndEpochBytes: this.cwndEpochBytes,
      kSeconds: this.kSecondsValue,
      wEstBytes: this.wEstBytesValue,
      hystart: this.hystart?.toJSON() ?? null,
    };
  }

  static fromJSON(state: CubicState): Cubic {
    const cc = new Cubic(state.maxDatagramSizeBytes);
    cc.hystart = state.hystart ? HyStartPlusPlus.fromJSON(state.hystart) : null;
    cc.cwndBytes = state.congestionWindowBytes;
    cc.inFlightBytes = state.bytesInFlight;
    cc.ssthreshBytes = state.ssthreshBytes;
    cc.recoveryStartTimeMs = state.recoveryStartTimeMs;
    cc.wMaxBytes = state.wMaxBytes;
    cc.epochStartMs = state.epochStartMs;
    cc.cwndEpochBytes = state.cwndEpochBytes;
    cc.kSecondsValue = state.kSeconds;
    cc.wEstBytesValue = state.wEstBytes;
    return cc;
  }

  private congestionAvoidance(ackedBytes: number, now: Instant, rtt: RttEstimator): void {
    const mss = this.maxDatagramSizeBytes;
    if (this.epochStartMs === null) {
      // RFC 9438 §4.2: a new congestion avoidance stage. Without a prior congestion event W_max is the current window.
      this.epochStartMs = now;
      this.cwndEpochBytes = this.cwndBytes;
      this.wMaxBytes ??= this.cwndBytes;
      this.kSecondsValue = Math.cbrt((this.wMaxBytes - this.cwndEpochBytes) / mss / CUBIC_C);
      this.wEstBytesValue = this.cwndEpochBytes;
    }
    const tSeconds = (now - this.epochStartMs) / 1000;
    // RFC 9438 §4.3: W_est grows by alpha_cubic segments per window acknowledged; alpha is 1 once W_est reaches W_max.
    const alpha = this.wEstBytesValue < (this.wMaxBytes ?? 0) ? CUBIC_ALPHA : 1;
    this.wEstBytesValue += (alpha * mss * ackedBytes) / this.cwndBytes;
    if (this.wCubicBytes(tSeconds) < this.wEstBytesValue) {
      this.cwndBytes = this.wEstBytesValue; // Reno-friendly region
      return;
    }
    // RFC 9438 §4.4-4.5: grow towards W_cubic(t + RTT), clamped to [cwnd, 1.5 cwnd].
    const targetBytes = Math.min(Math.max(this.wCubicBytes(tSeconds + rtt.smoothedRttMs / 1000), this.cwndBytes), 1.5 * this.cwndBytes);
    this.cwndBytes += ((targetBytes - this.cwndBytes) * ackedBytes) / this.cwndBytes;
  }

  private inRecovery(sentTimeMs: Instant): boolean {
    return this.recoveryStartTimeMs !== null && sentTimeMs <= this.recoveryStartTimeMs;
  }

  /** RFC 9438 §4.6 multiplicative decrease and §4.7 fast convergence, once per recovery period (RFC 9002 §7.3.2). */
  private onCongestionEvent(sentTimeMs: Instant, now: Instant): void {
    if (this.inRecovery(sentTimeMs)) return;
    this.recoveryStartTimeMs = now;
    this.hystart?.reset(); // RFC 9406 §4.2: a loss ends slow start and CSS
    const cwndBytes = this.cwndBytes;
    this.wMaxBytes = this.wMaxBytes !== null && cwndBytes < this.wMaxBytes ? (cwndBytes * (1 + CUBIC_BETA)) / 2 : cwndBytes;
    this.ssthreshBytes = Math.max(Math.floor(cwndBytes * CUBIC_BETA), minimumWindowBytes(this.maxDatagramSizeBytes));
    this.cwndBytes = this.ssthreshBytes;
    this.epochStartMs = null;
  }
}
