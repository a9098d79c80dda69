import { describe, expect, it } from "vitest";
import { RttEstimator } from "../rtt-estimator.ts";
import { Cubic } from "./cubic.ts";
import { HYSTART_CSS_GROWTH_DIVISOR, HYSTART_CSS_ROUNDS, HYSTART_N_RTT_SAMPLE, HyStartPlusPlus } from "./hystart.ts";

const RTT_MS = 100;

/** Ten ACKs in round `r`, each for a packet sent one RTT earlier, all with RTT sample `rttMs`. */
function round(h: HyStartPlusPlus, r: number, rttMs: number): Array<number | "exitSlowStart"> {
  const verdicts: Array<number | "exitSlowStart"> = [];
  for (let k = 0; k < 10; k++) {
    const now = r * RTT_MS + 0.5 + k;
    verdicts.push(h.onAck(rttMs, now - RTT_MS, now));
  }
  return verdicts;
}

describe("HyStart++ (RFC 9406)", () => {
  it("§4.2 enters Conservative Slow Start after N_RTT_SAMPLE samples once the round's min RTT rose by the threshold", () => {
    const h = new HyStartPlusPlus();
    expect(round(h, 0, 100)).toEqual(Array(10).fill(1));
    // +12 ms is below clamp(100/8, 4, 16) = 12.5 ms.
    expect(round(h, 1, 100)).toEqual(Array(10).fill(1));
    expect(round(h, 2, 112)).toEqual(Array(10).fill(1));
    // 112 → 125 is above 112 + 14: CSS from the 8th sample on, growth divided by 4.
    const verdicts = round(h, 3, 126.5);
    expect(verdicts.slice(0, HYSTART_N_RTT_SAMPLE - 1)).toEqual(Array(HYSTART_N_RTT_SAMPLE - 1).fill(1));
    expect(verdicts.slice(HYSTART_N_RTT_SAMPLE - 1)).toEqual(Array(10 - HYSTART_N_RTT_SAMPLE + 1).fill(HYSTART_CSS_GROWTH_DIVISOR));
    expect(h.inConservativeSlowStart).toBe(true);
  });

  it("§4.2 leaves slow start after CSS_ROUNDS rounds of Conservative Slow Start", () => {
    const h = new HyStartPlusPlus();
    round(h, 0, 100);
    round(h, 1, 120);
    expect(h.inConservativeSlowStart).toBe(true);
    for (let r = 2; r < 2 + HYSTART_CSS_ROUNDS - 1; r++) expect(round(h, r, 120)).toEqual(Array(10).fill(HYSTART_CSS_GROWTH_DIVISOR));
    expect(round(h, 2 + HYSTART_CSS_ROUNDS - 1, 120)[0]).toBe("exitSlowStart");
  });

  it("§4.2 returns to slow start when the RTT falls below the CSS baseline", () => {
    const h = new HyStartPlusPlus();
    round(h, 0, 100);
    round(h, 1, 120);
    const verdicts = round(h, 2, 100);
    expect(verdicts.at(-1)).toBe(1);
    expect(h.inConservativeSlowStart).toBe(false);
  });

  it("RFC 9438 §4.10 CUBIC with HyStart++ grows by a quarter in CSS and sets ssthresh = cwnd when it leaves slow start", () => {
    const cc = new Cubic(1000, { hystart: true });
    const rtt = new RttEstimator();
    const growthPerRound: number[] = [];
    for (let r = 0; r < 8; r++) {
      const before = cc.congestionWindowBytes();
      rtt.update(r === 0 ? 100 : 130, 0, true, 25);
      for (let k = 0; k < 10; k++) {
        const now = r * RTT_MS + 0.5 + k;
        cc.onPacketSent(1000, now - RTT_MS);
        cc.onPacketsAcked([{ sizeBytes: 1000, timeSentMs: now - RTT_MS }], now, rtt, false);
      }
      growthPerRound.push(cc.congestionWindowBytes() - before);
    }
    // Round 0 slow start (10 × 1000), round 1 enters CSS at its 8th ACK (7 × 1000 + 3 × 250), rounds 2-5 CSS.
    expect(growthPerRound.slice(0, 6)).toEqual([10_000, 7_750, 2_500, 2_500, 2_500, 2_500]);
    // The first ACK of round 6 ends CSS after CSS_ROUNDS rounds: ssthresh is the window at that moment.
    expect(cc.slowStartThresholdBytes()).toBe(10_000 + 10_000 + 7_750 + 4 * 2_500) // initial window 10 × 1000;
    expect(growthPerRound[6]).toBeLessThan(1_000);
  });
});
