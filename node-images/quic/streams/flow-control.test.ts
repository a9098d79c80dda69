import { describe, expect, it } from "vitest";
import { QuicTransportError, TRANSPORT_ERROR_CODES } from "../errors.ts";
import { ConnectionRecvFlow, ConnectionSendFlow, ReceiveWindow } from "./flow-control.ts";

function transportErrorCode(fn: () => void): number | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof QuicTransportError) return err.code;
    throw err;
  }
  return undefined;
}

describe("connection-level flow control (RFC 9000 §4.1)", () => {
  it("data up to MAX_DATA is accepted, one byte more is FLOW_CONTROL_ERROR", () => {
    const flow = new ConnectionRecvFlow(1000, 1 << 20);
    flow.onBytesReceived(600);
    flow.onBytesReceived(400);
    expect(flow.received).toBe(1000);
    expect(transportErrorCode(() => flow.onBytesReceived(1))).toBe(TRANSPORT_ERROR_CODES.FLOW_CONTROL_ERROR);
  });

  it("the sender spends credit, is blocked at the limit, and MAX_DATA never lowers it", () => {
    const flow = new ConnectionSendFlow(100);
    expect(flow.available()).toBe(100);
    flow.consume(70);
    expect(flow.available()).toBe(30);
    expect(flow.blockedAt).toBeUndefined();
    flow.consume(30);
    expect(flow.blockedAt).toBe(100);
    flow.updateLimit(50);
    expect(flow.limit).toBe(100);
    flow.updateLimit(250);
    expect(flow.available()).toBe(150);
    expect(flow.blockedAt).toBeUndefined();
    expect(() => flow.consume(151)).toThrow(QuicTransportError);
  });

  it("MAX_DATA is offered once half the window is consumed (§4.2), raising the limit to consumed + window", () => {
    const flow = new ConnectionRecvFlow(1000, 1000);
    flow.onBytesReceived(1000);
    flow.onBytesConsumed(400);
    expect(flow.maybeMaxData(0, 10)).toBeUndefined();
    flow.onBytesConsumed(100);
    expect(flow.maybeMaxData(1, 10)).toBe(1500);
    // Nothing new consumed: no second update.
    expect(flow.maybeMaxData(2, 10)).toBeUndefined();
  });
});

describe("receive window auto-tuning", () => {
  it("doubles the window while the reader consumes half a window in under 2 RTT, bounded by maxWindowBytes", () => {
    const window = new ReceiveWindow(16_384, 1 << 20);
    const rttMs = 50;
    let now = 0;
    let consumed = 0;
    const sizes: number[] = [];
    window.maybeUpdate(consumed, now, rttMs);
    for (let step = 0; step < 200; step++) {
      // The reader takes half a window every half RTT: well under 2 RTT.
      consumed += window.windowBytes / 2;
      now += rttMs / 2;
      if (window.maybeUpdate(consumed, now, rttMs) !== undefined) sizes.push(window.windowBytes);
    }
    expect(sizes[0]).toBe(32_768);
    expect(Math.max(...sizes)).toBe(1 << 20);
    expect(window.windowBytes).toBe(1 << 20);
    expect(window.limit).toBe(consumed + (1 << 20));
  });

  it("keeps the window when the reader is slower than 2 RTT per half window", () => {
    const window = new ReceiveWindow(16_384, 1 << 20);
    const rttMs = 50;
    let now = 0;
    let consumed = 0;
    window.maybeUpdate(consumed, now, rttMs);
    let updates = 0;
    for (let step = 0; step < 50; step++) {
      consumed += 8192;
      now += 5 * rttMs;
      if (window.maybeUpdate(consumed, now, rttMs) !== undefined) updates++;
    }
    expect(updates).toBe(50);
    expect(window.windowBytes).toBe(16_384);
  });
});
