/**
 * Flow control (RFC 9000 §4): connection-level credit on both sides, and the receive-window
 * auto-tuning that the stream level (recv-stream.ts) shares.
 */
import { QuicTransportError } from "../errors.ts";
import type { Instant } from "../time.ts";

/** RFC 9000 §16: the largest value a variable-length integer carries. */
export const MAX_VARINT = 2 ** 62 - 1;

/**
 * The receiver's window and when to extend it (RFC 9000 §4.2: "a receiver MUST NOT wait until
 * the sender is blocked"; the spacing of updates is left to the implementation).
 *
 * An update is offered once half of the window has been consumed. Auto-tuning, as quic-go and
 * quinn do: if that half was consumed in less than about two round trips, the reader keeps up
 * with the network and the window is too small to fill the pipe, so it doubles, bounded by
 * `maxWindowBytes`.
 */
export class ReceiveWindow {
  /** The limit advertised to the peer (initial transport parameter, then MAX_DATA / MAX_STREAM_DATA). */
  limit: number;
  /** Current window size; the next limit is consumed + windowBytes. */
  windowBytes: number;
  readonly maxWindowBytes: number;
  private epochStart: Instant | undefined;
  private epochStartConsumed = 0;

  constructor(initialWindowBytes: number, maxWindowBytes: number) {
    this.limit = initialWindowBytes;
    this.windowBytes = initialWindowBytes;
    this.maxWindowBytes = Math.max(maxWindowBytes, initialWindowBytes);
  }

  /**
   * The new limit to advertise, or undefined when no update is due. `consumed` is the offset up to
   * which the application has taken (or we have discarded) the data.
   */
  maybeUpdate(consumed: number, now: Instant, smoothedRttMs: number): number | undefined {
    if (this.epochStart === undefined) {
      this.epochStart = now;
      this.epochStartConsumed = consumed;
    }
    const remaining = this.limit - consumed;
    if (remaining > this.windowBytes / 2) return undefined;
    const consumedInEpoch = consumed - this.epochStartConsumed;
    const elapsedMs = now - this.epochStart;
    // quic-go's rule: grow when the epoch's share of the window went by in under 4 × share × RTT,
    // i.e. half a window in under ~2 RTT.
    const fraction = consumedInEpoch / this.windowBytes;
    if (consumedInEpoch > 0 && smoothedRttMs > 0 && elapsedMs < 4 * fraction * smoothedRttMs) {
      this.windowBytes = Math.min(this.windowBytes * 2, this.maxWindowBytes);
    }
    this.epochStart = now;
    this.epochStartConsumed = consumed;
    const next = Math.min(consumed + this.windowBytes, MAX_VARINT);
    if (next <= this.limit) return undefined;
    this.limit = next;
    return next;
  }

  toJSON(): object {
    return { limit: this.limit, windowBytes: this.windowBytes, maxWindowBytes: this.maxWindowBytes };
  }
}

/** Sender side of connection-level flow control (RFC 9000 §4.1, MAX_DATA §19.9). */
export class ConnectionSendFlow {
  private limitBytes: number;
  private usedBytes = 0;

  constructor(initialMaxData: number) {
    this.limitBytes = initialMaxData;
  }

  /** The peer's current MAX_DATA. */
  get limit(): number {
    return this.limitBytes;
  }

  /** Sum of the highest offsets sent on all streams. */
  get used(): number {
    return this.usedBytes;
  }

  /** New stream bytes we may still send. */
  available(): number {
    return Math.max(0, this.limitBytes - this.usedBytes);
  }

  /** Account new (never sent before) stream bytes. */
  consume(bytes: number): void {
    if (bytes < 0 || this.usedBytes + bytes > this.limitBytes) {
      throw new QuicTransportError("INTERNAL_ERROR", `sending ${bytes} bytes exceeds MAX_DATA ${this.limitBytes} (used ${this.usedBytes})`);
    }
    this.usedBytes += bytes;
  }

  /** RFC 9000 §4.1: a MAX_DATA that does not increase the limit is ignored. */
  updateLimit(maxData: number): void {
    if (maxData > this.limitBytes) this.limitBytes = maxData;
  }

  /** The limit at which we are blocked (for DATA_BLOCKED, §19.12), or undefined when credit is left. */
  get blockedAt(): number | undefined {
    return this.usedBytes >= this.limitBytes ? this.limitBytes : undefined;
  }

  toJSON(): object {
    return { limit: this.limitBytes, used: this.usedBytes };
  }
}

/** Receiver side of connection-level flow control (RFC 9000 §4.1). */
export class ConnectionRecvFlow {
  private readonly window: ReceiveWindow;
  /** Sum over streams of the highest offset received (or final size), §4.1. */
  private receivedBytes = 0;
  /** Bytes the application read or that were discarded (reset, stop_sending). */
  private consumedBytes = 0;

  constructor(initialMaxData: number, maxWindowBytes: number) {
    this.window = new ReceiveWindow(initialMaxData, maxWindowBytes);
  }

  get limit(): number {
    return this.window.limit;
  }

  get received(): number {
    return this.receivedBytes;
  }

  get consumed(): number {
    return this.consumedBytes;
  }

  /** A stream's highest received offset grew by `newHighestOffsetDelta`; FLOW_CONTROL_ERROR beyond MAX_DATA (§4.1). */
  onBytesReceived(newHighestOffsetDelta: number): void {
    if (newHighestOffsetDelta <= 0) return;
    const total = this.receivedBytes + newHighestOffsetDelta;
    if (total > this.window.limit) {
      throw new QuicTransportError("FLOW_CONTROL_ERROR", `connection data ${total} exceeds MAX_DATA ${this.window.limit}`);
    }
    this.receivedBytes = total;
  }

  onBytesConsumed(bytes: number): void {
    if (bytes > 0) this.consumedBytes += bytes;
  }

  /** New MAX_DATA to send, or undefined (same auto-tuning as streams, see ReceiveWindow). */
  maybeMaxData(now: Instant, smoothedRttMs: number): number | undefined {
    return this.window.maybeUpdate(this.consumedBytes, now, smoothedRttMs);
  }

  toJSON(): object {
    return { ...this.window.toJSON(), received: this.receivedBytes, consumed: this.consumedBytes };
  }
}
