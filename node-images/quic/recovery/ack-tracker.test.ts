import { describe, expect, it } from "vitest";
import { AckTracker } from "./ack-tracker.ts";

describe("AckTracker (RFC 9000 §13.2)", () => {
  it("§13.2.1 delays the ACK of one ack-eliciting packet by at most max_ack_delay", () => {
    const acks = new AckTracker();
    expect(acks.onPacketReceived(0, true, 10)).toBe(false);
    expect(acks.ackDeadline(25)).toBe(35);
    expect(acks.shouldSendAck(34, 25)).toBe(false);
    expect(acks.shouldSendAck(35, 25)).toBe(true);
  });

  it("§13.2.1 packets that are not ack-eliciting never make an ACK due", () => {
    const acks = new AckTracker();
    acks.onPacketReceived(0, false, 0);
    acks.onPacketReceived(1, false, 1);
    expect(acks.ackDeadline(25)).toBeUndefined();
    // ...but they are acknowledged when an ACK is sent anyway.
    expect(acks.buildAck(2, 3)?.ranges).toEqual([{ smallest: 0, largest: 1 }]);
  });

  it("§13.2.2 acknowledges immediately after the second ack-eliciting packet", () => {
    const acks = new AckTracker();
    acks.onPacketReceived(0, true, 10);
    expect(acks.onPacketReceived(1, true, 12)).toBe(true);
    expect(acks.ackDeadline(25)).toBe(12);
    acks.onAckSent();
    expect(acks.ackDeadline(25)).toBeUndefined();
    expect(acks.onPacketReceived(2, true, 20)).toBe(false);
  });

  it("§13.2.1 acknowledges immediately a packet that arrives above a gap", () => {
    const acks = new AckTracker();
    acks.onPacketReceived(0, true, 0);
    acks.onAckSent();
    expect(acks.onPacketReceived(2, true, 5)).toBe(true);
    expect(acks.ackDeadline(25)).toBe(5);
  });

  it("§13.2.1 acknowledges immediately a packet below the largest ack-eliciting one received", () => {
    const acks = new AckTracker();
    acks.onPacketReceived(0, true, 0);
    acks.onPacketReceived(2, true, 1);
    acks.onAckSent();
    expect(acks.onPacketReceived(1, true, 3)).toBe(true);
  });

  it("§19.3.1 builds descending ranges, merges them as gaps fill, and encodes ACK Delay with the exponent", () => {
    const acks = new AckTracker();
    for (const pn of [0, 1, 2, 5, 6, 9]) acks.onPacketReceived(pn, true, pn);
    expect(acks.buildAck(9, 3)?.ranges).toEqual([{ smallest: 9, largest: 9 }, { smallest: 5, largest: 6 }, { smallest: 0, largest: 2 }]);
    acks.onPacketReceived(4, true, 10);
    acks.onPacketReceived(3, true, 11);
    const ack = acks.buildAck(14, 3);
    expect(ack?.ranges).toEqual([{ smallest: 9, largest: 9 }, { smallest: 0, largest: 6 }]);
    // The largest (9) arrived at t=9: 5 ms = 5000 µs, / 2^3.
    expect(ack?.ackDelay).toBe(625);
  });

  it("§12.3 detects duplicates", () => {
    const acks = new AckTracker();
    for (const pn of [0, 1, 5]) acks.onPacketReceived(pn, true, 0);
    expect([0, 1, 2, 4, 5, 6].map((pn) => acks.isDuplicate(pn))).toEqual([true, true, false, false, true, false]);
  });

  it("§13.2.4 bounds the number of ranges, dropping the oldest", () => {
    const acks = new AckTracker({ maxRanges: 3 });
    for (const pn of [0, 2, 4, 6, 8]) acks.onPacketReceived(pn, true, pn);
    expect(acks.buildAck(8, 3)?.ranges).toEqual([{ smallest: 8, largest: 8 }, { smallest: 6, largest: 6 }, { smallest: 4, largest: 4 }]);
    // Below what is tracked now counts as duplicate, so it is not acknowledged again after being forgotten.
    expect(acks.isDuplicate(1)).toBe(true);
  });

  it("§13.2.4 stops acknowledging up to the Largest Acknowledged of an ACK that was itself acknowledged", () => {
    const acks = new AckTracker();
    for (const pn of [0, 1, 2, 3, 4, 5, 6, 9]) acks.onPacketReceived(pn, true, pn);
    acks.onAckOfAckReceived(5);
    expect(acks.buildAck(10, 3)?.ranges).toEqual([{ smallest: 9, largest: 9 }, { smallest: 6, largest: 6 }]);
    expect(acks.isDuplicate(3)).toBe(true);
    acks.onAckOfAckReceived(9);
    expect(acks.buildAck(10, 3)).toBeUndefined();
    acks.onPacketReceived(10, true, 11);
    expect(acks.buildAck(11, 3)?.ranges).toEqual([{ smallest: 10, largest: 10 }]);
  });

  it("keeps its state as plain data that restores to the same behaviour", () => {
    const acks = new AckTracker({ maxRanges: 4 });
    for (const pn of [0, 1, 3, 7]) acks.onPacketReceived(pn, true, pn);
    acks.onAckOfAckReceived(0);
    const copy = AckTracker.fromJSON(JSON.parse(JSON.stringify(acks)));
    expect(copy.toJSON()).toEqual(acks.toJSON());
    expect(copy.ackDeadline(25)).toBe(acks.ackDeadline(25));
    expect(copy.buildAck(10, 3)).toEqual(acks.buildAck(10, 3));
    expect(copy.onPacketReceived(8, true, 11)).toBe(acks.onPacketReceived(8, true, 11));
    expect(copy.isDuplicate(0)).toBe(true);
  });
});
