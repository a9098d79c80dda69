/**
 * NewReno congestion control as RFC 9002 §7 and Appendix B specify it: slow start, congestion avoidance, one window
 * reduction per recovery period, persistent congestion collapse to the minimum window.
 */
import type { Instant } from "../../time.ts";
import type { RttEstimator } from "../rtt-estimator.ts";
import type { AckedOrLostPacket, CongestionController } from "./congestion-controller.ts";
import { initialWindowBytes, LOSS_REDUCTION_FACTOR, minimumWindowBytes } from "./congestion-controller.ts";

/** Stands for "infinite" ssthresh in serialisable state (JSON has no Infinity). */
export const UNLIMITED_SSTHRESH_BYTES = Number.MAX_SAFE_INTEGER;

export interface NewRenoState {
  name: "newreno";
  maxDatagramSizeBytes: number;
  congestionWindowBytes: number;
  bytesInFlight: number;
  ssthreshBytes: number;
  recoveryStartTimeMs: Instant | null;
  bytesAckedInAvoidance: number;
}

export class NewReno implements CongestionController {
  readonly name = "newreno";
  readonly maxDatagramSizeBytes: number;
  private cwndBytes: number;
  private inFlightBytes = 0;
  private ssthreshBytes = UNLIMITED_SSTHRESH_BYTES;
  /** RFC 9002 §B.2 congestion_recovery_start_time; null outside any recovery period. */
  private recoveryStartTimeMs: Instant | null = null;
  /** Bytes acknowledged in congestion avoidance not yet turned into window growth (§7.3.3, no fractional bytes). */
  private bytesAckedInAvoidance = 0;

  constructor(maxDatagramSizeBytes: number) {
    this.maxDatagramSizeBytes = maxDatagramSizeBytes;
    this.cwndBytes = initialWindowBytes(maxDatagramSizeBytes);
  }

  congestionWindowBytes(): number {
    return this.cwndBytes;
  }

  bytesInFlight(): number {
    return this.inFlightBytes;
  }

  slowStartThresholdBytes(): number {
    return this.ssthreshBytes;
  }

  canSend(bytes: number): boolean {
    return this.inFlightBytes + bytes <= this.cwndBytes;
  }

  onPacketSent(bytes: number, _now: Instant): void {
    this.inFlightBytes += bytes;
  }

  /** RFC 9002 §B.5. */
  onPacketsAcked(packets: readonly AckedOrLostPacket[], _now: Instant, _rtt: RttEstimator, appLimited: boolean): void {
    for (const p of packets) {
      this.inFlightBytes -= p.sizeBytes;
      // §7.3.2: no growth for packets sent during the recovery period; §7.8: none while application limited.
      if (this.inRecovery(p.timeSentMs) || appLimited) continue;
      if (this.cwndBytes < this.ssthreshBytes) {
        this.cwndBytes += p.sizeBytes; // §7.3.1 slow start
      } else {
        // §7.3.3: one max_datagram_size per congestion window acknowledged.
        this.bytesAckedInAvoidance += p.sizeBytes;
        if (this.bytesAckedInAvoidance >= this.cwndBytes) {
          this.bytesAckedInAvoidance -= this.cwndBytes;
          this.cwndBytes += this.maxDatagramSizeBytes;
        }
      }
    }
  }

  /** RFC 9002 §B.8 and §B.6. */
  onPacketsLost(packets: readonly AckedOrLostPacket[], now: Instant, persistentCongestion: boolean): void {
    if (packets.length === 0) return;
    let latestSentMs = -Infinity;
    for (const p of packets) {
      this.inFlightBytes -= p.sizeBytes;
      latestSentMs = Math.max(latestSentMs, p.timeSentMs);
    }
    this.onCongestionEvent(latestSentMs, now);
    if (persistentCongestion) {
      // §7.6.2: collapse to the minimum window and leave recovery.
      this.cwndBytes = minimumWindowBytes(this.maxDatagramSizeBytes);
      this.recoveryStartTimeMs = null;
      this.bytesAckedInAvoidance = 0;
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
    this.bytesAckedInAvoidance = 0;
  }

  toJSON(): NewRenoState {
    return {
      name: this.name,
      maxDatagramSizeBytes: this.maxDatagramSizeBytes,
      congestionWindowBytes: this.cwndBytes,
      bytesInFlight: this.inFlightBytes,
      ssthreshBytes: this.ssthreshBytes,
      recoveryStartTimeMs: this.recoveryStartTimeMs,
      bytesAckedInAvoidance: this.bytesAckedInAvoidance,
    };
  }

  static fromJSON(state: NewRenoState): NewReno {
    const cc = new NewReno(state.maxDatagramSizeBytes);
    cc.cwndBytes = state.congestionWindowBytes;
    cc.inFlightBytes = state.bytesInFlight;
    cc.ssthreshBytes = state.ssthreshBytes;
    cc.recoveryStartTimeMs = state.recoveryStartTimeMs;
    cc.bytesAckedInAvoidance = state.bytesAckedInAvoidance;
    return cc;
  }

  /** RFC 9002 §B.4 InCongestionRecovery(). */
  private inRecovery(sentTimeMs: Instant): boolean {
    return this.recoveryStartTimeMs !== null && sentTimeMs <= this.recoveryStartTimeMs;
  }

  /** RFC 9002 §B.6 OnCongestionEvent(): at most one reduction per recovery period. */
  private onCongestionEvent(sentTimeMs: Instant, now: Instant): void {
    if (this.inRecovery(sentTimeMs)) return;
    this.recoveryStartTimeMs = now;
    this.ssthreshBytes = Math.floor(this.cwndBytes * LOSS_REDUCTION_FACTOR);
    this.cwndBytes = Math.max(this.ssthreshBytes, minimumWindowBytes(this.maxDatagramSizeBytes));
    this.bytesAckedInAvoidance = 0;
  }
}
