/**
 * HyStart++ (RFC 9406): leaves slow start before the first loss when the RTT grows, through a Conservative Slow Start
 * (CSS) phase. Rounds are delimited by send time (a round ends when a packet sent after it began is acknowledged)
 * because congestion controllers here see bytes and times, not packet numbers. The pacing-based burst limit L is not
 * applied (we pace, RFC 9406 §4.3 allows L = infinity then).
 */
import type { Instant } from "../../time.ts";

/** RFC 9406 §4.3 constants. */
export const HYSTART_MIN_RTT_THRESH_MS = 4;
export const HYSTART_MAX_RTT_THRESH_MS = 16;
export const HYSTART_MIN_RTT_DIVISOR = 8;
export const HYSTART_N_RTT_SAMPLE = 8;
export const HYSTART_CSS_GROWTH_DIVISOR = 4;
export const HYSTART_CSS_ROUNDS = 5;

export interface HyStartState {
  roundStartMs: Instant | null;
  lastRoundMinRttMs: number | null;
  currentRoundMinRttMs: number | null;
  rttSampleCount: number;
  cssBaselineMinRttMs: number | null;
  cssRounds: number;
}

export class HyStartPlusPlus {
  private roundStartMs: Instant | null = null;
  private lastRoundMinRttMs: number | null = null;
  private currentRoundMinRttMs: number | null = null;
  private rttSampleCount = 0;
  /** Set while in Conservative Slow Start. */
  private cssBaselineMinRttMs: number | null = null;
  private cssRounds = 0;

  get inConservativeSlowStart(): boolean {
    return this.cssBaselineMinRttMs !== null;
  }

  /**
   * One acknowledgement in slow start, with the RTT sample it gave. Returns the divisor for slow start growth
   * (1, or CSS_GROWTH_DIVISOR in CSS), or "exitSlowStart" when CSS has lasted CSS_ROUNDS rounds (§4.2).
   */
  onAck(latestRttMs: number, ackedPacketSentMs: Instant, now: Instant): number | "exitSlowStart" {
    if (this.roundStartMs === null || ackedPacketSentMs >= this.roundStartMs) {
      // A new round: the acknowledged packet was sent after the current round began.
      if (this.roundStartMs !== null && this.inConservativeSlowStart && ++this.cssRounds >= HYSTART_CSS_ROUNDS) {
        this.reset();
        return "exitSlowStart";
      }
      this.roundStartMs = now;
      this.lastRoundMinRttMs = this.currentRoundMinRttMs;
      this.currentRoundMinRttMs = null;
      this.rttSampleCount = 0;
    }
    this.currentRoundMinRttMs = this.currentRoundMinRttMs === null ? latestRttMs : Math.min(this.currentRoundMinRttMs, latestRttMs);
    this.rttSampleCount++;
    if (this.rttSampleCount >= HYSTART_N_RTT_SAMPLE && this.lastRoundMinRttMs !== null) {
      if (this.cssBaselineMinRttMs === null) {
        const thresholdMs = Math.min(Math.max(this.lastRoundMinRttMs / HYSTART_MIN_RTT_DIVISOR, HYSTART_MIN_RTT_THRESH_MS), HYSTART_MAX_RTT_THRESH_MS);
        if (this.currentRoundMinRttMs >= this.lastRoundMinRttMs + thresholdMs) {
          this.cssBaselineMinRttMs = this.currentRoundMinRttMs; // §4.2: enter CSS
          this.cssRounds = 0;
        }
      } else if (this.currentRoundMinRttMs < this.cssBaselineMinRttMs) {
        this.cssBaselineMinRttMs = null; // §4.2: the RTT increase was spurious, back to slow start
      }
    }
    return this.inConservativeSlowStart ? HYSTART_CSS_GROWTH_DIVISOR : 1;
  }

  reset(): void {
    this.roundStartMs = null;
    this.lastRoundMinRttMs = null;
    this.currentRoundMinRttMs = null;
    this.rttSampleCount = 0;
    this.cssBaselineMinRttMs = null;
    this.cssRounds = 0;
  }

  toJSON(): HyStartState {
    return {
      roundStartMs: this.roundStartMs,
      lastRoundMinRttMs: this.lastRoundMinRttMs,
      currentRoundMinRttMs: this.currentRoundMinRttMs,
      rttSampleCount: this.rttSampleCount,
      cssBaselineMinRttMs: this.cssBaselineMinRttMs,
      cssRounds: this.cssRounds,
    };
  }

  static fromJSON(state: HyStartState): HyStartPlusPlus {
    const h = new HyStartPlusPlus();
    h.roundStartMs = state.roundStartMs;
    h.lastRoundMinRttMs = state.lastRoundMinRttMs;
    h.currentRoundMinRttMs = state.currentRoundMinRttMs;
    h.rttSampleCount = state.rttSampleCount;
    h.cssBaselineMinRttMs = state.cssBaselineMinRttMs;
    h.cssRounds = state.cssRounds;
    return h;
  }
}
