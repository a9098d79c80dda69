import { describe, expect, it } from "vitest";
import { RttEstimator } from "./rtt-estimator.ts";

describe("RttEstimator (RFC 9002 §5)", () => {
  it("§6.2.2 starts from kInitialRtt 333 ms with rttvar kInitialRtt/2", () => {
    const rtt = new RttEstimator();
    expect(rtt.hasSample).toBe(false);
    expect(rtt.smoothedRttMs).toBe(333);
    expect(rtt.rttVarMs).toBe(166.5);
    expect(rtt.ptoBaseMs()).toBe(333 + 4 * 166.5);
  });

  it("§5.3 the first sample sets smoothed_rtt, rttvar = sample/2 and min_rtt, ignoring ack delay", () => {
    const rtt = new RttEstimator();
    rtt.update(100, 20, true, 25);
    expect(rtt.hasSample).toBe(true);
    expect(rtt.latestRttMs).toBe(100);
    expect(rtt.smoothedRttMs).toBe(100);
    expect(rtt.rttVarMs).toBe(50);
    expect(rtt.minRttMs).toBe(100);
  });

  it("§5.3 subtracts ack delay from later samples and updates with 1/8 and 1/4 gains", () => {
    const rtt = new RttEstimator();
    rtt.update(100, 0, true, 25);
    rtt.update(150, 20, true, 25);
    // adjusted_rtt = 130
    expect(rtt.rttVarMs).toBeCloseTo(0.75 * 50 + 0.25 * 30, 10);
    expect(rtt.smoothedRttMs).toBeCloseTo(0.875 * 100 + 0.125 * 130, 10);
    expect(rtt.minRttMs).toBe(100);
  });

  it("§5.3 caps ack delay at max_ack_delay only once the handshake is confirmed", () => {
    const confirmed = new RttEstimator();
    confirmed.update(100, 0, true, 25);
    confirmed.update(300, 100, true, 25);
    expect(confirmed.smoothedRttMs).toBeCloseTo(0.875 * 100 + 0.125 * 275, 10);

    const unconfirmed = new RttEstimator();
    unconfirmed.update(100, 0, false, 25);
    unconfirmed.update(300, 100, false, 25);
    expect(unconfirmed.smoothedRttMs).toBeCloseTo(0.875 * 100 + 0.125 * 200, 10);
  });

  it("§5.3 does not subtract ack delay when that would go below min_rtt", () => {
    const rtt = new RttEstimator();
    rtt.update(100, 0, true, 25);
    rtt.update(110, 20, true, 25);
    expect(rtt.smoothedRttMs).toBeCloseTo(0.875 * 100 + 0.125 * 110, 10);
  });

  it("§5.2 min_rtt uses the raw sample, without ack delay", () => {
    const rtt = new RttEstimator();
    rtt.update(100, 0, true, 25);
    rtt.update(80, 50, true, 25);
    expect(rtt.minRttMs).toBe(80);
  });

  it("§9.4 reset returns a migrated path to the initial estimate; state round-trips through JSON", () => {
    const rtt = new RttEstimator(200);
    rtt.update(40, 0, true, 25);
    rtt.update(60, 5, true, 25);
    const copy = RttEstimator.fromJSON(JSON.parse(JSON.stringify(rtt)));
    expect(copy.toJSON()).toEqual(rtt.toJSON());
    rtt.reset();
    expect(rtt.hasSample).toBe(false);
    expect(rtt.smoothedRttMs).toBe(200);
    expect(rtt.rttVarMs).toBe(100);
    expect(rtt.minRttMs).toBe(0);
  });
});
