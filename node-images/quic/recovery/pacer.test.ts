import { describe, expect, it } from "vitest";
import { Pacer } from "./pacer.ts";
import { RttEstimator } from "./rtt-estimator.ts";

const MDS = 1200;

function rttOf(ms: number): RttEstimator {
  const rtt = new RttEstimator();
  rtt.update(ms, 0, true, 25);
  return rtt;
}

describe("Pacer (RFC 9002 §7.7)", () => {
  it("§7.7 lets a burst of ten datagrams out at once, then paces", () => {
    const pacer = new Pacer(MDS);
    const rtt = rttOf(100);
    const cwnd = 100 * MDS;
    for (let i = 0; i < 10; i++) {
      expect(pacer.nextSendTime(0, cwnd, rtt, MDS)).toBe(0);
      pacer.onPacketSent(0, MDS, cwnd, rtt);
    }
    expect(pacer.nextSendTime(0, cwnd, rtt, MDS)).toBeGreaterThan(0);
  });

  it("§7.7 paces at N × cwnd / smoothed_rtt with N = 1.25", () => {
    const pacer = new Pacer(MDS);
    const rtt = rttOf(100);
    const cwnd = 20 * MDS;
    let now = 0;
    let sent = 0;
    // Send as fast as the pacer allows for two seconds of virtual time.
    while (now < 2000) {
      now = pacer.nextSendTime(now, cwnd, rtt, MDS);
      if (now >= 2000) break;
      pacer.onPacketSent(now, MDS, cwnd, rtt);
      sent++;
    }
    const rateBytesPerMs = (1.25 * cwnd) / 100;
    // Burst of 10 datagrams plus the paced rate over 2 s.
    expect(sent * MDS).toBeGreaterThanOrEqual(10 * MDS + rateBytesPerMs * 2000 - MDS);
    expect(sent * MDS).toBeLessThanOrEqual(10 * MDS + rateBytesPerMs * 2000 + MDS);
    // Once the burst is spent, datagrams are spaced by MDS / rate.
    const next = pacer.nextSendTime(now, cwnd, rtt, MDS);
    pacer.onPacketSent(next, MDS, cwnd, rtt);
    expect(pacer.nextSendTime(next, cwnd, rtt, MDS) - next).toBeCloseTo(MDS / rateBytesPerMs, 6);
  });

  it("§7.7 an idle period refills no more than the burst allowance", () => {
    const pacer = new Pacer(MDS);
    const rtt = rttOf(10);
    const cwnd = 100 * MDS;
    for (let i = 0; i < 10; i++) pacer.onPacketSent(0, MDS, cwnd, rtt);
    let burst = 0;
    while (burst < 100 && pacer.nextSendTime(10_000, cwnd, rtt, MDS) === 10_000) {
      pacer.onPacketSent(10_000, MDS, cwnd, rtt);
      burst++;
    }
    expect(burst).toBe(10);
  });
});
