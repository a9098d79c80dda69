import { describe, expect, it } from "vitest";
import { RttEstimator } from "../rtt-estimator.ts";
import { Cubic, CUBIC_BETA } from "./cubic.ts";

const MSS = 1000;

/** A CUBIC sender in slow start grown to `segments` segments. */
function cubicAt(segments: number): Cubic {
  const cc = new Cubic(MSS);
  const extra = segments * MSS - cc.congestionWindowBytes();
  for (let i = 0; i < extra / MSS; i++) cc.onPacketSent(MSS, 0);
  cc.onPacketsAcked(Array.from({ length: extra / MSS }, () => ({ sizeBytes: MSS, timeSentMs: 0 })), 1, new RttEstimator(), false);
  expect(cc.congestionWindowBytes()).toBe(segments * MSS);
  return cc;
}

function rttOf(ms: number): RttEstimator {
  const rtt = new RttEstimator();
  rtt.update(ms, 0, true, 25);
  return rtt;
}

/** The RFC 9438 §4.2 formula, in segments, written out independently of the implementation. */
function wCubicSegments(tSeconds: number, wMaxSegments: number, cwndEpochSegments: number): number {
  const k = Math.cbrt((wMaxSegments - cwndEpochSegments) / 0.4);
  return 0.4 * (tSeconds - k) ** 3 + wMaxSegments;
}

/**
 * Acknowledges a full window per RTT, spread evenly (one ACK per packet, each sent one RTT earlier), from
 * `startMs` until `endMs`; calls `sample` at each whole-ms time.
 */
function ackSteadily(cc: Cubic, rtt: RttEstimator, rttMs: number, startMs: number, endMs: number, sample: (now: number) => void): void {
  let credit = 0;
  for (let now = startMs; now <= endMs; now++) {
    credit += cc.congestionWindowBytes() / rttMs;
    while (credit >= MSS) {
      credit -= MSS;
      cc.onPacketSent(MSS, now - rttMs);
      cc.onPacketsAcked([{ sizeBytes: MSS, timeSentMs: now - rttMs }], now, rtt, false);
    }
    sample(now);
  }
}

describe("CUBIC (RFC 9438)", () => {
  it("§4.6 multiplicative decrease by beta_cubic 0.7 sets W_max and K = cbrt((W_max - cwnd_epoch)/C)", () => {
    const cc = cubicAt(100);
    cc.onPacketSent(MSS, 1);
    cc.onPacketsLost([{ sizeBytes: MSS, timeSentMs: 1 }], 2, false);
    expect(cc.congestionWindowBytes()).toBe(100 * MSS * CUBIC_BETA);
    expect(cc.slowStartThresholdBytes()).toBe(70 * MSS);
    expect(cc.maxWindowBytes()).toBe(100 * MSS);
    // K is fixed when congestion avoidance starts.
    cc.onPacketSent(MSS, 3);
    cc.onPacketsAcked([{ sizeBytes: MSS, timeSentMs: 3 }], 4, rttOf(100), false);
    expect(cc.kSeconds()).toBeCloseTo(Math.cbrt(30 / 0.4), 10);
  });

  it("§4.2 the window follows W_cubic(t) = C(t-K)^3 + W_max in the concave and convex regions", () => {
    const cc = cubicAt(100);
    const rttMs = 100;
    const rtt = rttOf(rttMs);
    cc.onPacketSent(MSS, 0);
    cc.onPacketsLost([{ sizeBytes: MSS, timeSentMs: 0 }], 0, false);
    const epochStartMs = 1; // first ACK of a packet sent after the recovery start
    const samples = new Map<number, { cwndSegments: number; wEstSegments: number }>();
    const atSeconds = [0.5, 1, 2, 3, Math.cbrt(30 / 0.4), 5];
    ackSteadily(cc, rtt, rttMs, epochStartMs, 5001, (now) => {
      for (const t of atSeconds) if (now === epochStartMs + Math.round(t * 1000)) samples.set(t, { cwndSegments: cc.congestionWindowBytes() / MSS, wEstSegments: cc.renoFriendlyWindowBytes() / MSS });
    });
    for (const t of atSeconds) {
      const expected = wCubicSegments(t, 100, 70);
      // The window is steered towards W_cubic(t + RTT) by (target - cwnd)/cwnd per ACK (§4.4), a first-order lag of
      // one RTT: it stays within two segments below W_cubic(t) and never passes W_cubic(t + RTT).
      const { cwndSegments: got, wEstSegments } = samples.get(t)!;
      expect(got, `t=${t}`).toBeGreaterThanOrEqual(expected - 2);
      // Still the cubic region, not the Reno-friendly one.
      expect(wEstSegments, `t=${t}`).toBeLessThan(expected);
      expect(got, `t=${t}`).toBeLessThanOrEqual(wCubicSegments(t + rttMs / 1000, 100, 70) + 1);
    }
  });

  it("§4.3 in the Reno-friendly region (short RTT) the window follows W_est instead of W_cubic", () => {
    const cc = cubicAt(100);
    const rttMs = 5;
    const rtt = rttOf(rttMs);
    cc.onPacketSent(MSS, 0);
    cc.onPacketsLost([{ sizeBytes: MSS, timeSentMs: 0 }], 0, false);
    let atOneSecond = 0;
    ackSteadily(cc, rtt, rttMs, 1, 1001, (now) => {
      if (now === 1001) atOneSecond = cc.congestionWindowBytes();
    });
    // 200 RTTs at alpha_cubic = 0.529 segments per RTT until W_max, then 1 per RTT: well above W_cubic(1 s) ≈ 86.9.
    expect(wCubicSegments(1, 100, 70)).toBeLessThan(90);
    expect(atOneSecond / MSS).toBeGreaterThan(100);
    expect(atOneSecond).toBe(Math.floor(cc.renoFriendlyWindowBytes()));
  });

  it("§4.7 fast convergence lowers W_max to cwnd × (1 + beta)/2 when a loss comes before W_max is regained", () => {
    const cc = cubicAt(100);
    cc.onPacketSent(MSS, 0);
    cc.onPacketsLost([{ sizeBytes: MSS, timeSentMs: 0 }], 0, false);
    expect(cc.maxWindowBytes()).toBe(100 * MSS);
    cc.onPacketSent(MSS, 10);
    cc.onPacketsLost([{ sizeBytes: MSS, timeSentMs: 10 }], 20, false);
    expect(cc.maxWindowBytes()).toBeCloseTo(70 * MSS * (1 + CUBIC_BETA) / 2, 6);
    expect(cc.congestionWindowBytes()).toBe(Math.floor(70 * MSS * CUBIC_BETA));
  });

  it("RFC 9002 §7.3.2 reduces once per recovery period and §7.6.2 collapses to the minimum window on persistent congestion", () => {
    const cc = cubicAt(100);
    for (let i = 0; i < 3; i++) cc.onPacketSent(MSS, 0);
    cc.onPacketsLost([{ sizeBytes: MSS, timeSentMs: 0 }], 10, false);
    cc.onPacketsLost([{ sizeBytes: MSS, timeSentMs: 0 }], 11, false);
    expect(cc.congestionWindowBytes()).toBe(70 * MSS);
    cc.onPacketsLost([{ sizeBytes: MSS, timeSentMs: 0 }], 12, true);
    expect(cc.congestionWindowBytes()).toBe(2 * MSS);
    expect(cc.bytesInFlight()).toBe(0);
  });
});
