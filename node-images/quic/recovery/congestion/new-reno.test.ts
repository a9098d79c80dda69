import { describe, expect, it } from "vitest";
import { RttEstimator } from "../rtt-estimator.ts";
import { createCongestionController } from "./congestion-controller.ts";
import { NewReno } from "./new-reno.ts";

const MDS = 1200;
const rtt = new RttEstimator();

function sent(cc: NewReno, count: number, timeSentMs: number): Array<{ sizeBytes: number; timeSentMs: number }> {
  const packets = [];
  for (let i = 0; i < count; i++) {
    cc.onPacketSent(MDS, timeSentMs);
    packets.push({ sizeBytes: MDS, timeSentMs });
  }
  return packets;
}

describe("NewReno (RFC 9002 §7, Appendix B)", () => {
  it("§7.2 starts at min(10 × max_datagram_size, max(14720, 2 × max_datagram_size))", () => {
    expect(createCongestionController("newreno", 1200).congestionWindowBytes()).toBe(12000);
    expect(createCongestionController("newreno", 1500).congestionWindowBytes()).toBe(14720);
    expect(createCongestionController("newreno", 9000).congestionWindowBytes()).toBe(18000);
  });

  it("§7.3.1 slow start grows the window by the bytes acknowledged", () => {
    const cc = new NewReno(MDS);
    const packets = sent(cc, 10, 0);
    expect(cc.canSend(MDS)).toBe(false);
    cc.onPacketsAcked(packets.slice(0, 4), 100, rtt, false);
    expect(cc.congestionWindowBytes()).toBe(12000 + 4 * MDS);
    expect(cc.bytesInFlight()).toBe(6 * MDS);
  });

  it("§7.8 does not grow the window while application limited", () => {
    const cc = new NewReno(MDS);
    cc.onPacketsAcked(sent(cc, 2, 0), 100, rtt, true);
    expect(cc.congestionWindowBytes()).toBe(12000);
  });

  it("§7.3.2 halves the window once per recovery period", () => {
    const cc = new NewReno(MDS);
    const before = sent(cc, 10, 0);
    cc.onPacketsLost(before.slice(0, 1), 100, false);
    expect(cc.slowStartThresholdBytes()).toBe(6000);
    expect(cc.congestionWindowBytes()).toBe(6000);
    // More losses of packets sent before recovery started: no further reduction.
    cc.onPacketsLost(before.slice(1, 3), 150, false);
    expect(cc.congestionWindowBytes()).toBe(6000);
    // Acks of packets sent before recovery started do not grow the window either.
    cc.onPacketsAcked(before.slice(3), 160, rtt, false);
    expect(cc.congestionWindowBytes()).toBe(6000);
    // A loss of a packet sent after the recovery start begins a new period.
    const after = sent(cc, 1, 200);
    cc.onPacketsLost(after, 300, false);
    expect(cc.congestionWindowBytes()).toBe(3000);
    expect(cc.bytesInFlight()).toBe(0);
  });

  it("§7.3.3 congestion avoidance adds one max_datagram_size per congestion window acknowledged", () => {
    const cc = new NewReno(MDS);
    cc.onPacketsLost(sent(cc, 1, 0), 10, false);
    const cwnd = cc.congestionWindowBytes();
    expect(cwnd).toBe(6000);
    const packets = sent(cc, 5, 20); // exactly one window (5 × 1200)
    cc.onPacketsAcked(packets.slice(0, 4), 120, rtt, false);
    expect(cc.congestionWindowBytes()).toBe(cwnd);
    cc.onPacketsAcked(packets.slice(4), 121, rtt, false);
    expect(cc.congestionWindowBytes()).toBe(cwnd + MDS);
  });

  it("§7.6.2 persistent congestion collapses the window to 2 × max_datagram_size", () => {
    const cc = new NewReno(MDS);
    cc.onPacketsLost(sent(cc, 3, 0), 1000, true);
    expect(cc.congestionWindowBytes()).toBe(2 * MDS);
    // Recovery is left: the next loss reduces again (not below the minimum).
    cc.onPacketsLost(sent(cc, 1, 1001), 1100, false);
    expect(cc.congestionWindowBytes()).toBe(2 * MDS);
  });

  it("§6.4 discarded packets leave bytes in flight without changing the window; reset starts over (§9.4)", () => {
    const cc = new NewReno(MDS);
    sent(cc, 3, 0);
    cc.onPacketsDiscarded(2 * MDS);
    expect(cc.bytesInFlight()).toBe(MDS);
    expect(cc.congestionWindowBytes()).toBe(12000);
    cc.onPacketsLost([{ sizeBytes: MDS, timeSentMs: 0 }], 10, false);
    cc.reset();
    expect(JSON.parse(JSON.stringify(cc))).toEqual(new NewReno(MDS).toJSON());
  });
});
