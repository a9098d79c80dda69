/**
 * RTT estimation (RFC 9002 §5). One estimator per path: a new path starts from kInitialRtt (§9.4 of RFC 9002 and
 * RFC 9000 §9.4). All state is plain numbers so it serialises with the connection.
 */

/** RFC 9002 §6.2.2: kInitialRtt. */
export const INITIAL_RTT_MS = 333;
/** RFC 9002 §6.1.2: kGranularity, the timer granularity. */
export const GRANULARITY_MS = 1;

export interface RttEstimatorState {
  initialRttMs: number;
  latestRttMs: number;
  smoothedRttMs: number;
  rttVarMs: number;
  minRttMs: number;
  hasSample: boolean;
}

export class RttEstimator {
  readonly initialRttMs: number;
  latestRttMs = 0;
  smoothedRttMs: number;
  rttVarMs: number;
  minRttMs = 0;
  private sampled = false;

  constructor(initialRttMs: number = INITIAL_RTT_MS) {
    this.initialRttMs = initialRttMs;
    // RFC 9002 §5.3: before the first sample, smoothed_rtt = kInitialRtt and rttvar = kInitialRtt / 2.
    this.smoothedRttMs = initialRttMs;
    this.rttVarMs = initialRttMs / 2;
  }

  get hasSample(): boolean {
    return this.sampled;
  }

  /**
   * RFC 9002 §5.3. `ackDelayMs` is the peer's reported delay, already decoded to milliseconds; the caller passes 0
   * for Initial packets (§5.3 "MAY ignore"). It is capped at max_ack_delay once the handshake is confirmed and never
   * subtracted when that would take the sample below min_rtt.
   */
  update(latestRttMs: number, ackDelayMs: number, handshakeConfirmed: boolean, maxAckDelayMs: number): void {
    this.latestRttMs = latestRttMs;
    if (!this.sampled) {
      // RFC 9002 §5.3: the first sample sets the estimate directly and ignores ack delay.
      this.sampled = true;
      this.minRttMs = latestRttMs;
      this.smoothedRttMs = latestRttMs;
      this.rttVarMs = latestRttMs / 2;
      return;
    }
    // RFC 9002 §5.2: min_rtt ignores ack delay.
    this.minRttMs = Math.min(this.minRttMs, latestRttMs);
    const ackDelayUsedMs = handshakeConfirmed ? Math.min(ackDelayMs, maxAckDelayMs) : ackDelayMs;
    const adjustedRttMs = latestRttMs >= this.minRttMs + ackDelayUsedMs ? latestRttMs - ackDelayUsedMs : latestRttMs;
    this.rttVarMs = 0.75 * this.rttVarMs + 0.25 * Math.abs(this.smoothedRttMs - adjustedRttMs);
    this.smoothedRttMs = 0.875 * this.smoothedRttMs + 0.125 * adjustedRttMs;
  }

  /** RFC 9002 §6.2.1: smoothed_rtt + max(4*rttvar, kGranularity), without max_ack_delay and without backoff. */
  ptoBaseMs(): number {
    return this.smoothedRttMs + Math.max(4 * this.rttVarMs, GRANULARITY_MS);
  }

  /** Back to the state of a path that has no sample yet (RFC 9000 §9.4 on migration). */
  reset(): void {
    this.latestRttMs = 0;
    this.smoothedRttMs = this.initialRttMs;
    this.rttVarMs = this.initialRttMs / 2;
    this.minRttMs = 0;
    this.sampled = false;
  }

  toJSON(): RttEstimatorState {
    return {
      initialRttMs: this.initialRttMs,
      latestRttMs: this.latestRttMs,
      smoothedRttMs: this.smoothedRttMs,
      rttVarMs: this.rttVarMs,
      minRttMs: this.minRttMs,
      hasSample: this.sampled,
    };
  }

  static fromJSON(state: RttEstimatorState): RttEstimator {
    const rtt = new RttEstimator(state.initialRttMs);
    rtt.latestRttMs = state.latestRttMs;
    rtt.smoothedRttMs = state.smoothedRttMs;
    rtt.rttVarMs = state.rttVarMs;
    rtt.minRttMs = state.minRttMs;
    rtt.sampled = state.hasSample;
    return rtt;
  }
}
