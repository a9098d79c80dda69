import { describe, expect, it } from "vitest";
import { QuicTransportError } from "../errors.ts";
import { LossDetection, type AckRange, type SentPacket } from "./loss-detection.ts";
import { RttEstimator } from "./rtt-estimator.ts";
import type { PacketNumberSpace } from "./spaces.ts";

const CONFIRMED = { handshakeConfirmed: true, maxAckDelayMs: 25 };

function packet(packetNumber: number, timeSentMs: number, opts: Partial<SentPacket<string>> = {}): SentPacket<string> {
  return { packetNumber, timeSentMs, ackEliciting: true, inFlight: true, sizeBytes: 1000, pathId: 0, payload: `p${packetNumber}`, ...opts };
}

function send(ld: LossDetection<string>, space: PacketNumberSpace, packetNumber: number, timeSentMs: number, opts: Partial<SentPacket<string>> = {}): void {
  ld.onPacketSent(space, packet(packetNumber, timeSentMs, opts), timeSentMs);
}

function timerCtx(rtt: RttEstimator, over: Partial<Parameters<LossDetection<string>["lossDetectionTimer"]>[0]> = {}) {
  return { rtt, handshakeConfirmed: true, maxAckDelayMs: 25, peerAddressValidated: true, hasHandshakeKeys: true, isServer: true, ...over };
}

/** An estimator with smoothed_rtt 100 and rttvar 50. */
function rtt100(): RttEstimator {
  const rtt = new RttEstimator();
  rtt.update(100, 0, true, 25);
  return rtt;
}

describe("LossDetection (RFC 9002 §6, Appendix A)", () => {
  it("§6.1.1 declares a packet lost three packets below the largest acked", () => {
    const ld = new LossDetection<string>();
    const rtt = new RttEstimator();
    for (let pn = 0; pn <= 4; pn++) send(ld, "application", pn, pn);
    const result = ld.onAckReceived("application", [{ smallest: 4, largest: 4 }], 0, rtt, CONFIRMED, 100);
    expect(result.newlyAcked.map((p) => p.packetNumber)).toEqual([4]);
    expect(result.largestAckedNewly).toBe(true);
    expect(result.lost.map((p) => p.packetNumber)).toEqual([0, 1]);
    expect(ld.bytesInFlight()).toBe(2000);
  });

  it("§A.7 acknowledges exactly the packets inside the ACK ranges (randomised against a set model)", () => {
    let x = 0.5;
    const random = () => (x = (x + 0.6180339887498949) % 1);
    for (let round = 0; round < 200; round++) {
      // Thresholds high enough that nothing is declared lost: only acknowledgement is under test.
      const ld = new LossDetection<string>({ packetThreshold: 1e9, timeThreshold: 1e6 });
      const rtt = new RttEstimator();
      const outstanding = new Set<number>();
      for (let pn = 0; pn < 60; pn++) {
        send(ld, "application", pn, pn);
        outstanding.add(pn);
      }
      for (let ack = 0; ack < 5; ack++) {
        const ranges: AckRange[] = [];
        let top = 59 - Math.floor(random() * 5);
        while (top >= 0 && ranges.length < 6) {
          const smallest = Math.max(0, top - Math.floor(random() * 8));
          ranges.push({ smallest, largest: top });
          top = smallest - 2 - Math.floor(random() * 8);
        }
        const expected = [...outstanding].filter((pn) => ranges.some((r) => r.smallest <= pn && pn <= r.largest)).sort((a, b) => a - b);
        const result = ld.onAckReceived("application", ranges, 0, rtt, CONFIRMED, 100 + ack);
        expect(result.newlyAcked.map((p) => p.packetNumber)).toEqual(expected);
        expect(result.lost).toEqual([]);
        for (const pn of expected) outstanding.delete(pn);
        expect(ld.inFlight("application").map((p) => p.packetNumber)).toEqual([...outstanding].sort((a, b) => a - b));
        expect(ld.bytesInFlight()).toBe(outstanding.size * 1000);
      }
    }
  });

  it("§6.1.2 arms the loss timer at time_sent + 9/8 × max(smoothed_rtt, latest_rtt) and declares the loss when it fires", () => {
    const ld = new LossDetection<string>();
    const rtt = new RttEstimator();
    for (let pn = 0; pn <= 4; pn++) send(ld, "application", pn, pn);
    ld.onAckReceived("application", [{ smallest: 4, largest: 4 }], 0, rtt, CONFIRMED, 100);
    // First sample: latest = smoothed = 96 ms, loss delay 108 ms; packets 2 and 3 are not yet lost.
    const lossDelayMs = (9 / 8) * 96;
    const ctx = timerCtx(rtt);
    expect(ld.lossDetectionTimer(ctx)).toBeCloseTo(2 + lossDelayMs, 10);
    const fired = ld.onLossDetectionTimeout(ctx, 2 + lossDelayMs);
    expect(fired.lost.map((p) => p.packetNumber)).toEqual([2]);
    expect(fired.lostSpace).toBe("application");
    expect(fired.probeCount).toBe(0);
    expect(ld.lossDetectionTimer(ctx)).toBeCloseTo(3 + lossDelayMs, 10);
  });

  it("§6.1.2 a loss timer fired exactly at its deadline always declares the loss (fractional times)", () => {
    // Weyl sequence with full double-precision fractions (binary-exact values would hide rounding).
    let x = 0.1234;
    const random = () => (x = (x + 0.6180339887498949) % 1);
    for (let i = 0; i < 2000; i++) {
      const ld = new LossDetection<string>();
      const rtt = new RttEstimator();
      const t0 = random() * 1000;
      send(ld, "application", 0, t0);
      const t1 = t0 + random();
      send(ld, "application", 1, t1);
      // latest_rtt ≥ 20 ms, so packet 0 (≤ 1 ms older) is not yet lost when the ACK arrives: the loss timer is armed.
      const ack = ld.onAckReceived("application", [{ smallest: 1, largest: 1 }], 0, rtt, CONFIRMED, t1 + 20 + random() * 100);
      expect(ack.lost).toEqual([]);
      const deadline = ld.lossDetectionTimer(timerCtx(rtt))!;
      expect(ld.onLossDetectionTimeout(timerCtx(rtt), deadline).lost.map((p) => p.packetNumber)).toEqual([0]);
    }
  });

  it("§6.1.2 floors the time threshold at kGranularity", () => {
    const ld = new LossDetection<string>();
    const rtt = new RttEstimator();
    send(ld, "application", 0, 0);
    send(ld, "application", 1, 0.1);
    ld.onAckReceived("application", [{ smallest: 1, largest: 1 }], 0, rtt, CONFIRMED, 0.3);
    // 9/8 × 0.2 ms would be 0.225 ms; the floor is 1 ms.
    expect(ld.lossDetectionTimer(timerCtx(rtt))).toBeCloseTo(1, 10);
  });

  it("§5.1 takes an RTT sample only when the largest acknowledged is newly acked and ack-eliciting packets were acked", () => {
    const ld = new LossDetection<string>();
    const rtt = new RttEstimator();
    send(ld, "application", 0, 0, { ackEliciting: false, inFlight: false });
    ld.onAckReceived("application", [{ smallest: 0, largest: 0 }], 0, rtt, CONFIRMED, 50);
    expect(rtt.hasSample).toBe(false);
    send(ld, "application", 1, 60);
    ld.onAckReceived("application", [{ smallest: 0, largest: 1 }], 0, rtt, CONFIRMED, 100);
    expect(rtt.latestRttMs).toBe(40);
    const again = ld.onAckReceived("application", [{ smallest: 0, largest: 1 }], 0, rtt, CONFIRMED, 200);
    expect(again.newlyAcked).toEqual([]);
    expect(rtt.latestRttMs).toBe(40);
  });

  it("§13.1 (RFC 9000) an ACK of a packet never sent is a PROTOCOL_VIOLATION", () => {
    const ld = new LossDetection<string>();
    send(ld, "application", 0, 0);
    let caught: unknown;
    try {
      ld.onAckReceived("application", [{ smallest: 0, largest: 1 }], 0, new RttEstimator(), CONFIRMED, 10);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(QuicTransportError);
    expect((caught as QuicTransportError).codeName).toBe("PROTOCOL_VIOLATION");
  });

  it("§6.2.1 PTO = smoothed_rtt + max(4 rttvar, 1 ms) + max_ack_delay for application data, with exponential backoff", () => {
    const ld = new LossDetection<string>();
    const rtt = rtt100();
    send(ld, "application", 0, 0);
    const ctx = timerCtx(rtt);
    expect(ld.lossDetectionTimer(ctx)).toBe(100 + 200 + 25);
    const first = ld.onLossDetectionTimeout(ctx, 325);
    expect(first).toEqual({ lost: [], probeSpace: "application", probeCount: 2 });
    expect(ld.ptoCount).toBe(1);
    expect(ld.lossDetectionTimer(ctx)).toBe(2 * (100 + 200 + 25));
    ld.onLossDetectionTimeout(ctx, 650);
    expect(ld.lossDetectionTimer(ctx)).toBe(4 * (100 + 200 + 25));
    // An acknowledgement resets the backoff (§6.2.1).
    send(ld, "application", 1, 700);
    ld.onAckReceived("application", [{ smallest: 1, largest: 1 }], 0, rtt, CONFIRMED, 800);
    expect(ld.ptoCount).toBe(0);
  });

  it("§6.2.1 arms no application-data PTO before the handshake is confirmed", () => {
    const ld = new LossDetection<string>();
    const rtt = rtt100();
    send(ld, "application", 0, 0);
    expect(ld.lossDetectionTimer(timerCtx(rtt, { handshakeConfirmed: false }))).toBeUndefined();
    // A Handshake packet in flight still gets its PTO, without max_ack_delay.
    send(ld, "handshake", 0, 10);
    expect(ld.lossDetectionTimer(timerCtx(rtt, { handshakeConfirmed: false }))).toBe(10 + 300);
    expect(ld.onLossDetectionTimeout(timerCtx(rtt, { handshakeConfirmed: false }), 310).probeSpace).toBe("handshake");
  });

  it("§6.2.1 picks the space whose PTO expires first, Initial and Handshake without max_ack_delay", () => {
    const ld = new LossDetection<string>();
    const rtt = rtt100();
    send(ld, "handshake", 0, 0);
    send(ld, "initial", 0, 5);
    send(ld, "application", 0, 1);
    expect(ld.lossDetectionTimer(timerCtx(rtt))).toBe(300);
    expect(ld.onLossDetectionTimeout(timerCtx(rtt), 300).probeSpace).toBe("handshake");
  });

  it("§6.2.2.1 arms the anti-deadlock PTO at a client whose address the server has not validated", () => {
    const ld = new LossDetection<string>();
    const rtt = new RttEstimator();
    send(ld, "initial", 0, 0);
    ld.onAckReceived("initial", [{ smallest: 0, largest: 0 }], 0, rtt, { ...CONFIRMED, handshakeConfirmed: false, peerAddressValidated: false }, 50);
    const client = { isServer: false, peerAddressValidated: false, handshakeConfirmed: false, hasHandshakeKeys: false };
    // Nothing in flight, but the client must keep probing so an amplification-limited server can continue.
    expect(ld.lossDetectionTimer(timerCtx(rtt, client))).toBe(50 + rtt.ptoBaseMs());
    const probe = ld.onLossDetectionTimeout(timerCtx(rtt, client), 50 + rtt.ptoBaseMs());
    expect(probe).toEqual({ lost: [], probeSpace: "initial", probeCount: 1 });
    // Backed off from the timeout, and a Handshake probe once Handshake keys exist.
    const withKeys = { ...client, hasHandshakeKeys: true };
    expect(ld.lossDetectionTimer(timerCtx(rtt, withKeys))).toBe(50 + rtt.ptoBaseMs() + 2 * rtt.ptoBaseMs());
    expect(ld.onLossDetectionTimeout(timerCtx(rtt, withKeys), 50 + 3 * rtt.ptoBaseMs()).probeSpace).toBe("handshake");
    // A server, or a validated client, arms nothing with nothing in flight.
    expect(ld.lossDetectionTimer(timerCtx(rtt, { ...client, peerAddressValidated: true }))).toBeUndefined();
    expect(ld.lossDetectionTimer(timerCtx(rtt, { ...client, isServer: true }))).toBeUndefined();
  });

  it("§6.2.2.1 a server at its anti-amplification limit arms no PTO", () => {
    const ld = new LossDetection<string>();
    const rtt = rtt100();
    send(ld, "initial", 0, 0);
    expect(ld.lossDetectionTimer(timerCtx(rtt, { atAmplificationLimit: true }))).toBeUndefined();
    expect(ld.onLossDetectionTimeout(timerCtx(rtt, { atAmplificationLimit: true }), 1000).probeCount).toBe(0);
    expect(ld.lossDetectionTimer(timerCtx(rtt))).toBe(300);
  });

  /** Packet 0 gives the first RTT sample at t=100 (smoothed 100, rttvar 50). */
  function afterFirstSample(): { ld: LossDetection<string>; rtt: RttEstimator } {
    const ld = new LossDetection<string>();
    const rtt = new RttEstimator();
    send(ld, "application", 0, 0);
    ld.onAckReceived("application", [{ smallest: 0, largest: 0 }], 0, rtt, CONFIRMED, 100);
    return { ld, rtt };
  }

  it("§7.6.2 declares persistent congestion when ack-eliciting losses span the persistent congestion duration", () => {
    const { ld, rtt } = afterFirstSample();
    for (const [pn, t] of [[1, 200], [2, 700], [3, 1200], [4, 1300]] as const) send(ld, "application", pn, t);
    const result = ld.onAckReceived("application", [{ smallest: 4, largest: 4 }], 0, rtt, CONFIRMED, 1400);
    expect(result.lost.map((p) => p.packetNumber)).toEqual([1, 2, 3]);
    // (100 + max(4 × 37.5, 1) + 25) × 3 = 825 ms ≤ 1200 - 200.
    const durationMs = (rtt.smoothedRttMs + 4 * rtt.rttVarMs + 25) * 3;
    expect(1000).toBeGreaterThanOrEqual(durationMs);
    expect(result.persistentCongestion).toBe(true);
  });

  it("§7.6.2 no persistent congestion when a packet between the losses was acknowledged", () => {
    const { ld, rtt } = afterFirstSample();
    for (const [pn, t] of [[1, 200], [2, 700], [3, 1200], [4, 1300]] as const) send(ld, "application", pn, t);
    const result = ld.onAckReceived("application", [{ smallest: 4, largest: 4 }, { smallest: 2, largest: 2 }], 0, rtt, CONFIRMED, 1400);
    expect(result.lost.map((p) => p.packetNumber)).toEqual([1, 3]);
    expect(result.persistentCongestion).toBe(false);
  });

  it("§7.6.2 no persistent congestion when the losses span less than the duration", () => {
    const { ld, rtt } = afterFirstSample();
    for (const [pn, t] of [[1, 1000], [2, 1100], [3, 1200], [4, 1300]] as const) send(ld, "application", pn, t);
    const result = ld.onAckReceived("application", [{ smallest: 4, largest: 4 }], 0, rtt, CONFIRMED, 1400);
    expect(result.lost.map((p) => p.packetNumber)).toEqual([1, 2, 3]);
    expect(result.persistentCongestion).toBe(false);
  });

  it("§7.6.2 no persistent congestion from packets sent before the first RTT sample", () => {
    const ld = new LossDetection<string>();
    const rtt = new RttEstimator();
    for (const [pn, t] of [[0, 0], [1, 500], [2, 1000], [3, 1300]] as const) send(ld, "application", pn, t);
    const result = ld.onAckReceived("application", [{ smallest: 3, largest: 3 }], 0, rtt, CONFIRMED, 1400);
    expect(result.lost.map((p) => p.packetNumber)).toEqual([0, 1, 2]);
    expect(result.persistentCongestion).toBe(false);
  });

  it("§6.4 discarding a space returns its in-flight packets and resets the PTO backoff", () => {
    const ld = new LossDetection<string>();
    const rtt = rtt100();
    send(ld, "initial", 0, 0);
    send(ld, "initial", 1, 1, { ackEliciting: false, inFlight: false });
    send(ld, "handshake", 0, 2);
    ld.onLossDetectionTimeout(timerCtx(rtt), 300);
    expect(ld.ptoCount).toBe(1);
    const dropped = ld.discardSpace("initial");
    expect(dropped.map((p) => p.packetNumber)).toEqual([0]);
    expect(ld.bytesInFlight()).toBe(1000);
    expect(ld.ptoCount).toBe(0);
    expect(ld.lossDetectionTimer(timerCtx(rtt))).toBe(2 + 300);
  });

  it("keeps its state as plain data", () => {
    const ld = new LossDetection<string>();
    send(ld, "application", 0, 0);
    const json = JSON.parse(JSON.stringify(ld)) as { bytesInFlight: number; spaces: { application: { sent: unknown[] } } };
    expect(json.bytesInFlight).toBe(1000);
    expect(json.spaces.application.sent).toEqual([packet(0, 0)]);
  });
});
