/**
 * A sender and a receiver built from the recovery modules alone (no crypto, no frames) over a seeded lossy,
 * reordering, duplicating channel in virtual time: every payload must arrive and bytes in flight must drain to 0.
 */
import { describe, expect, it } from "vitest";
import type { Instant } from "../time.ts";
import { AckTracker } from "./ack-tracker.ts";
import { createCongestionController, restoreCongestionController, type CongestionControllerState, type CongestionControlName } from "./congestion/congestion-controller.ts";
import { LossDetection, type AckRange, type SentPacket } from "./loss-detection.ts";
import { Pacer } from "./pacer.ts";
import { RttEstimator } from "./rtt-estimator.ts";

const DATAGRAM_BYTES = 1200;
const MESSAGES_PER_PACKET = 10;
const ACK_DELAY_EXPONENT = 3;
const MAX_ACK_DELAY_MS = 25;

type Datagram = { kind: "data"; packetNumber: number; messages: number[] } | { kind: "ack"; ranges: AckRange[]; ackDelay: number };

/** mulberry32: a small seeded PRNG so every run of a seed is identical. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface ChannelOptions {
  lossRate: number;
  duplicateRate: number;
  delayMs: number;
  jitterMs: number;
  /** Everything sent in [fromMs, toMs) is dropped. */
  blackout?: { fromMs: Instant; toMs: Instant };
}

/** Passes state through JSON, as a handoff to another server would. */
function viaJson<S>(value: { toJSON(): unknown }): S {
  return JSON.parse(JSON.stringify(value)) as S;
}

/** `handoffEvery`: every that many steps, rebuild every recovery object from its JSON state. */
type Variant = CongestionControlName | "cubic+hystart";

function run(seed: number, cc: Variant, channel: ChannelOptions, messageCount: number, handoffEvery = 0) {
  const random = prng(seed);
  const inTransit: Array<{ at: Instant; to: "sender" | "receiver"; datagram: Datagram }> = [];
  let dropped = 0;
  const transmit = (now: Instant, to: "sender" | "receiver", datagram: Datagram) => {
    const blackedOut = channel.blackout !== undefined && now >= channel.blackout.fromMs && now < channel.blackout.toMs;
    if (random() < channel.lossRate || blackedOut) {
      dropped++;
      return;
    }
    const copies = random() < channel.duplicateRate ? 2 : 1;
    for (let i = 0; i < copies; i++) inTransit.push({ at: now + channel.delayMs + random() * channel.jitterMs, to, datagram });
  };

  // Sender.
  let loss = new LossDetection<number[]>();
  let rtt = new RttEstimator();
  let congestion = cc === "cubic+hystart" ? createCongestionController("cubic", DATAGRAM_BYTES, { hystart: true }) : createCongestionController(cc, DATAGRAM_BYTES);
  let pacer = new Pacer(DATAGRAM_BYTES);
  const pending: number[] = Array.from({ length: messageCount }, (_, i) => i);
  let nextPacketNumber = 0;
  let probesPending = 0;
  let packetsDeclaredLost = 0;
  let persistentCongestionEvents = 0;
  const timerCtx = { rtt, handshakeConfirmed: true, maxAckDelayMs: MAX_ACK_DELAY_MS, peerAddressValidated: true, hasHandshakeKeys: true, isServer: true };
  const requeue = (lost: SentPacket<number[]>[]) => {
    packetsDeclaredLost += lost.length;
    for (let i = lost.length - 1; i >= 0; i--) pending.unshift(...lost[i]!.payload);
  };
  const sendPacket = (now: Instant, messages: number[]) => {
    const p: SentPacket<number[]> = { packetNumber: nextPacketNumber++, timeSentMs: now, ackEliciting: true, inFlight: true, sizeBytes: DATAGRAM_BYTES, pathId: 0, payload: messages };
    loss.onPacketSent("application", p, now);
    congestion.onPacketSent(DATAGRAM_BYTES, now);
    pacer.onPacketSent(now, DATAGRAM_BYTES, congestion.congestionWindowBytes(), rtt);
    transmit(now, "receiver", { kind: "data", packetNumber: p.packetNumber, messages });
  };

  // Receiver.
  let acks = new AckTracker();
  const delivered = new Set<number>();

  let minWindowSeen = Infinity;
  let now = 0;
  let steps = 0;
  for (; steps < 200_000 && now < 600_000; steps++) {
    if (handoffEvery > 0 && steps % handoffEvery === 0) {
      loss = LossDetection.fromJSON(viaJson(loss));
      rtt = RttEstimator.fromJSON(viaJson(rtt));
      timerCtx.rtt = rtt;
      congestion = restoreCongestionController(viaJson<CongestionControllerState>(congestion));
      pacer = Pacer.fromJSON(viaJson(pacer));
      acks = AckTracker.fromJSON(viaJson(acks));
    }
    inTransit.sort((a, b) => a.at - b.at);
    while (inTransit.length > 0 && inTransit[0]!.at <= now) {
      const { to, datagram } = inTransit.shift()!;
      if (to === "receiver" && datagram.kind === "data") {
        if (acks.isDuplicate(datagram.packetNumber)) continue;
        acks.onPacketReceived(datagram.packetNumber, true, now);
        for (const m of datagram.messages) delivered.add(m);
      } else if (to === "sender" && datagram.kind === "ack") {
        const ackDelayMs = (datagram.ackDelay * 2 ** ACK_DELAY_EXPONENT) / 1000;
        const result = loss.onAckReceived("application", datagram.ranges, ackDelayMs, rtt, timerCtx, now);
        congestion.onPacketsAcked(result.newlyAcked, now, rtt, pending.length === 0);
        congestion.onPacketsLost(result.lost, now, result.persistentCongestion);
        if (result.persistentCongestion) {
          persistentCongestionEvents++;
          minWindowSeen = Math.min(minWindowSeen, congestion.congestionWindowBytes());
        }
        requeue(result.lost);
      }
    }
    if (acks.shouldSendAck(now, MAX_ACK_DELAY_MS)) {
      const ack = acks.buildAck(now, ACK_DELAY_EXPONENT)!;
      acks.onAckSent();
      transmit(now, "sender", { kind: "ack", ...ack });
    }
    const timer = loss.lossDetectionTimer(timerCtx);
    if (timer !== undefined && timer <= now) {
      const fired = loss.onLossDetectionTimeout(timerCtx, now);
      congestion.onPacketsLost(fired.lost, now, false);
      requeue(fired.lost);
      probesPending = Math.max(probesPending, fired.probeCount);
    }
    // Probes ignore the congestion window and pacing (RFC 9002 §7.5); they carry new data or repeat the oldest packet.
    for (; probesPending > 0; probesPending--) {
      const oldest = loss.inFlight("application")[0];
      sendPacket(now, pending.length > 0 ? pending.splice(0, MESSAGES_PER_PACKET) : [...(oldest?.payload ?? [])]);
    }
    let paceAt: Instant | undefined;
    while (pending.length > 0 && congestion.canSend(DATAGRAM_BYTES)) {
      const at = pacer.nextSendTime(now, congestion.congestionWindowBytes(), rtt, DATAGRAM_BYTES);
      if (at > now) {
        paceAt = at;
        break;
      }
      sendPacket(now, pending.splice(0, MESSAGES_PER_PACKET));
    }

    if (delivered.size === messageCount && pending.length === 0 && loss.bytesInFlight() === 0) break;
    const next = [inTransit.reduce((min, d) => Math.min(min, d.at), Infinity), acks.ackDeadline(MAX_ACK_DELAY_MS) ?? Infinity, loss.lossDetectionTimer(timerCtx) ?? Infinity, paceAt ?? Infinity];
    const nextAt = Math.min(...next);
    if (nextAt === Infinity) break;
    now = Math.max(now, nextAt);
  }
  return { delivered: delivered.size, lossBytesInFlight: loss.bytesInFlight(), ccBytesInFlight: congestion.bytesInFlight(), dropped, packetsDeclaredLost, persistentCongestionEvents, minWindowSeen, packetsSent: nextPacketNumber, now, steps };
}

describe("recovery over a seeded lossy channel", () => {
  for (const cc of ["newreno", "cubic", "cubic+hystart"] as const) {
    it(`${cc}: every payload arrives and bytes in flight drain to 0 (20 seeds, 10% loss, reorder, duplication)`, () => {
      const channel = { lossRate: 0.1, duplicateRate: 0.02, delayMs: 20, jitterMs: 15 };
      for (let seed = 1; seed <= 20; seed++) {
        const result = run(seed, cc, channel, 2000);
        expect(result.delivered, `seed ${seed}`).toBe(2000);
        expect(result.lossBytesInFlight, `seed ${seed}`).toBe(0);
        expect(result.ccBytesInFlight, `seed ${seed}`).toBe(0);
        // The channel did lose packets and recovery noticed.
        expect(result.dropped, `seed ${seed}`).toBeGreaterThan(0);
        expect(result.packetsDeclaredLost, `seed ${seed}`).toBeGreaterThan(0);
      }
    });
  }

  it("is deterministic for a seed, and unchanged when all state is rebuilt from JSON every few steps (handoff)", () => {
    const channel = { lossRate: 0.2, duplicateRate: 0.05, delayMs: 10, jitterMs: 30 };
    for (const cc of ["newreno", "cubic", "cubic+hystart"] as const) {
      const plain = run(7, cc, channel, 500);
      expect(plain.delivered).toBe(500);
      expect(run(7, cc, channel, 500)).toEqual(plain);
      expect(run(7, cc, channel, 500, 3)).toEqual(plain);
    }
  });

  it("§7.6 a two-second blackout is declared persistent congestion, collapses the window, and the transfer still completes", () => {
    for (const cc of ["newreno", "cubic"] as const) {
      const result = run(3, cc, { lossRate: 0.02, duplicateRate: 0, delayMs: 30, jitterMs: 5, blackout: { fromMs: 300, toMs: 2300 } }, 3000);
      expect(result.delivered, cc).toBe(3000);
      expect(result.lossBytesInFlight, cc).toBe(0);
      expect(result.ccBytesInFlight, cc).toBe(0);
      expect(result.persistentCongestionEvents, cc).toBeGreaterThan(0);
      expect(result.minWindowSeen, cc).toBe(2 * DATAGRAM_BYTES);
    }
  });
});
