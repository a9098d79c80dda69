/**
 * The receiving part of a stream (RFC 9000 §3.2), sans I/O: reassembles STREAM frames that
 * arrive out of order, overlapping or duplicated, enforces the final size rules (§4.5) and the
 * stream flow-control limit (§4.1), and decides when to raise that limit (ReceiveWindow).
 */
import { QuicTransportError } from "../errors.ts";
import type { Instant } from "../time.ts";
import { MAX_VARINT, ReceiveWindow } from "./flow-control.ts";

export const RECV_STREAM_STATES = {
  recv: "recv",
  size_known: "size_known",
  data_recvd: "data_recvd",
  reset_recvd: "reset_recvd",
  data_read: "data_read",
  reset_read: "reset_read",
} as const;
export type RecvStreamState = (typeof RECV_STREAM_STATES)[keyof typeof RECV_STREAM_STATES];

export interface RecvStreamOptions {
  /** Our initial limit for this stream (initial_max_stream_data_* we advertised). */
  initialWindowBytes: number;
  /** Upper bound for window auto-tuning. */
  maxWindowBytes: number;
  /** Called once when the stream reaches a terminal state (data_read, reset_recvd or reset_read). */
  onTerminal?: (id: number) => void;
  /**
   * Called with bytes that count against connection flow control but will never be read
   * (RESET_STREAM, STOP_SENDING): the connection must treat them as consumed (§4.5).
   */
  onDiscarded?: (bytes: number) => void;
}

/** RFC 9000 frame types, for the frameType of the errors we raise. */
const FRAME_TYPE_STREAM = 0x08;
const FRAME_TYPE_RESET_STREAM = 0x04;

/**
 * Out-of-order data is held as segments, each costing ~100 bytes of bookkeeping. Tiny frames that
 * extend a small segment are merged into it, and a stream holds at most this many segments per
 * 512 bytes of window (never fewer than MIN_SEGMENTS): a peer cannot make us spend much more than
 * the window on one stream by sending one-byte frames with gaps between them (quic-go bounds gaps likewise).
 */
const MERGE_PIECE_BYTES = 256;
const MERGE_SEGMENT_BYTES = 2048;
const MIN_SEGMENTS = 1024;
const WINDOW_BYTES_PER_SEGMENT = 512;

interface Segment {
  offset: number;
  data: Buffer;
}

export class RecvStream {
  readonly id: number;
  private readonly window: ReceiveWindow;
  private readonly onTerminal: ((id: number) => void) | undefined;
  private readonly onDiscarded: ((bytes: number) => void) | undefined;
  private stateValue: RecvStreamState = "recv";
  private resetCodeValue: number | undefined;
  private stopSendingCodeValue: number | undefined;
  /** Received, not yet read data above readOffset: sorted, disjoint. */
  private segments: Segment[] = [];
  private readOffset = 0;
  /** Every byte below this has been received. */
  private contiguousEnd = 0;
  private highestReceived = 0;
  private finalSizeValue: number | undefined;
  /** Offset up to which data was read or discarded: what flow control may release. */
  private consumedOffset = 0;
  /** A read() returned the last bytes or observed the end (or the app stopped wanting data). */
  private endDelivered = false;

  constructor(id: number, opts: RecvStreamOptions) {
    this.id = id;
    this.window = new ReceiveWindow(opts.initialWindowBytes, opts.maxWindowBytes);
    this.onTerminal = opts.onTerminal;
    this.onDiscarded = opts.onDiscarded;
  }

  get state(): RecvStreamState {
    return this.stateValue;
  }

  get resetCode(): number | undefined {
    return this.resetCodeValue;
  }

  get stopSendingCode(): number | undefined {
    return this.stopSendingCodeValue;
  }

  get finalSize(): number | undefined {
    return this.finalSizeValue;
  }

  /** The limit we advertised (initial, then MAX_STREAM_DATA). */
  get limit(): number {
    return this.window.limit;
  }

  get windowBytes(): number {
    return this.window.windowBytes;
  }

  /** Highest offset received (or the final size after RESET_STREAM), for connection flow control (§4.1). */
  get highestReceivedOffset(): number {
    return this.highestReceived;
  }

  /** Contiguous bytes ready for read(). */
  get readableBytes(): number {
    return this.contiguousEnd - this.readOffset;
  }

  /** All data read up to the FIN (§3.2 "Data Read"). */
  get finished(): boolean {
    return this.stateValue === "data_read";
  }

  /**
   * Nothing more to deliver or track: the receiving part may be forgotten. A finished stream counts
   * only once a read() has observed its end, so the application always gets to see `finished`.
   */
  get isTerminal(): boolean {
    return this.stateValue === "reset_recvd" || this.stateValue === "reset_read" || (this.stateValue === "data_read" && this.endDelivered);
  }

  private get discarding(): boolean {
    const s = this.stateValue;
    return this.stopSendingCodeValue !== undefined || s === "reset_recvd" || s === "reset_read" || s === "data_read";
  }

  onStreamFrame(offset: number, data: Uint8Array, fin: boolean): void {
    const end = offset + data.length;
    if (end > MAX_VARINT) {
      // §19.8: beyond 2^62-1 is FRAME_ENCODING_ERROR or FLOW_CONTROL_ERROR.
      throw new QuicTransportError("FLOW_CONTROL_ERROR", `stream ${this.id}: offset ${end} beyond 2^62-1`, FRAME_TYPE_STREAM);
    }
    this.checkFinalSize(end, fin, FRAME_TYPE_STREAM);
    if (end > this.window.limit) {
      throw new QuicTransportError("FLOW_CONTROL_ERROR", `stream ${this.id}: data up to ${end} exceeds MAX_STREAM_DATA ${this.window.limit}`, FRAME_TYPE_STREAM);
    }
    if (fin && this.finalSizeValue === undefined) {
      this.finalSizeValue = end;
      if (this.stateValue === "recv") this.stateValue = "size_known";
    }
    if (end > this.highestReceived) this.highestReceived = end;
    if (this.discarding) {
      this.discardUpTo(this.highestReceived);
    } else {
      this.insert(offset, data);
    }
    this.checkAllReceived();
  }

  /** RFC 9000 §4.5 final size rules, shared by STREAM and RESET_STREAM. */
  private checkFinalSize(end: number, fin: boolean, frameType: number): void {
    if (this.finalSizeValue !== undefined) {
      if (end > this.finalSizeValue) {
        throw new QuicTransportError("FINAL_SIZE_ERROR", `stream ${this.id}: data up to ${end} beyond final size ${this.finalSizeValue}`, frameType);
      }
      if (fin && end !== this.finalSizeValue) {
        throw new QuicTransportError("FINAL_SIZE_ERROR", `stream ${this.id}: final size changed from ${this.finalSizeValue} to ${end}`, frameType);
      }
    } else if (fin && end < this.highestReceived) {
      throw new QuicTransportError("FINAL_SIZE_ERROR", `stream ${this.id}: final size ${end} below data already received up to ${this.highestReceived}`, frameType);
    }
  }

  onResetStream(errorCode: number, finalSize: number): void {
    this.checkFinalSize(finalSize, true, FRAME_TYPE_RESET_STREAM);
    if (finalSize > this.window.limit) {
      throw new QuicTransportError("FLOW_CONTROL_ERROR", `stream ${this.id}: final size ${finalSize} exceeds MAX_STREAM_DATA ${this.window.limit}`, FRAME_TYPE_RESET_STREAM);
    }
    this.finalSizeValue = finalSize;
    this.highestReceived = finalSize;
    // §3.2: once all data is received (Data Recvd, Data Read) a reset changes nothing we must act on.
    if (this.stateValue !== "recv" && this.stateValue !== "size_known") return;
    this.resetCodeValue = errorCode;
    this.stateValue = "reset_recvd";
    this.discardUpTo(finalSize);
    this.onTerminal?.(this.id);
  }

  /** The application no longer wants data (§3.5): buffered and future data is discarded. */
  stopSending(errorCode: number): void {
    const s = this.stateValue;
    if ((s !== "recv" && s !== "size_known" && s !== "data_recvd") || this.stopSendingCodeValue !== undefined) return;
    this.stopSendingCodeValue = errorCode;
    this.discardUpTo(this.highestReceived);
    if (s === "data_recvd") {
      // Everything had arrived but was not read: drop it, the stream is done.
      this.stateValue = "data_read";
      this.deliverEnd();
      return;
    }
    this.checkAllReceived();
  }

  private discardUpTo(offset: number): void {
    this.segments = [];
    const delta = offset - this.consumedOffset;
    this.consumedOffset = Math.max(this.consumedOffset, offset);
    this.readOffset = Math.max(this.readOffset, offset);
    this.contiguousEnd = Math.max(this.contiguousEnd, this.readOffset);
    if (delta > 0) this.onDiscarded?.(delta);
  }

  private checkAllReceived(): void {
    if (this.stateValue !== "size_known" || this.contiguousEnd !== this.finalSizeValue) return;
    this.stateValue = "data_recvd";
    if (this.stopSendingCodeValue !== undefined) {
      // Discarded after STOP_SENDING: nothing is left for the application, the stream is done.
      this.stateValue = "data_read";
      this.deliverEnd();
    } else if (this.readOffset === this.finalSizeValue) {
      // Everything was read already (e.g. a FIN without data): `finished` is true, and the next read() delivers the end.
      this.stateValue = "data_read";
    }
  }

  private deliverEnd(): void {
    if (this.endDelivered) return;
    this.endDelivered = true;
    this.onTerminal?.(this.id);
  }

  /** Index of the first segment that ends after `offset`. */
  private segmentAfter(offset: number): number {
    let lo = 0;
    let hi = this.segments.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const s = this.segments[mid]!;
      if (s.offset + s.data.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Store the parts of [offset, offset + data.length) not already held or read. */
  private insert(offset: number, data: Uint8Array): void {
    const end = offset + data.length;
    let cur = Math.max(offset, this.readOffset);
    let i = this.segmentAfter(cur);
    while (cur < end) {
      const s = this.segments[i];
      if (s !== undefined && s.offset <= cur) {
        cur = s.offset + s.data.length;
        i++;
        continue;
      }
      const gapEnd = s === undefined ? end : Math.min(end, s.offset);
      const piece = data.subarray(cur - offset, gapEnd - offset);
      const prev = this.segments[i - 1];
      if (prev !== undefined && prev.offset + prev.data.length === cur && piece.length < MERGE_PIECE_BYTES && prev.data.length < MERGE_SEGMENT_BYTES) {
        prev.data = Buffer.concat([prev.data, piece]);
      } else {
        if (this.segments.length >= Math.max(MIN_SEGMENTS, Math.ceil(this.window.windowBytes / WINDOW_BYTES_PER_SEGMENT))) {
          throw new QuicTransportError("INTERNAL_ERROR", `stream ${this.id}: too many gaps in received data`, FRAME_TYPE_STREAM);
        }
        this.segments.splice(i, 0, { offset: cur, data: Buffer.from(piece) });
        i++;
      }
      cur = gapEnd;
    }
    // Advance the contiguous end over segments that now join it.
    for (let j = this.segmentAfter(this.contiguousEnd); j < this.segments.length; j++) {
      const s = this.segments[j]!;
      if (s.offset > this.contiguousEnd) break;
      this.contiguousEnd = Math.max(this.contiguousEnd, s.offset + s.data.length);
    }
  }

  /** Contiguous bytes from the read offset, at most maxBytes; undefined when none are readable. */
  read(maxBytes = Number.POSITIVE_INFINITY): Buffer | undefined {
    if (this.stateValue === "reset_recvd") {
      // §3.2: the application has seen the reset.
      this.stateValue = "reset_read";
      return undefined;
    }
    const n = Math.min(this.readableBytes, maxBytes);
    if (n <= 0) {
      if (this.stateValue === "data_read") this.deliverEnd();
      return undefined;
    }
    const pieces: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const s = this.segments[0]!;
      if (s.data.length <= left) {
        pieces.push(s.data);
        left -= s.data.length;
        this.segments.shift();
      } else {
        pieces.push(s.data.subarray(0, left));
        this.segments[0] = { offset: s.offset + left, data: s.data.subarray(left) };
        left = 0;
      }
    }
    this.readOffset += n;
    this.consumedOffset = this.readOffset;
    if (this.stateValue === "data_recvd" && this.readOffset === this.finalSizeValue) {
      this.stateValue = "data_read";
      this.deliverEnd();
    }
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, n);
  }

  /**
   * A new MAX_STREAM_DATA limit to advertise after the application read, or undefined. Not sent once
   * the final size is known (§3.2 "Size Known": no more flow control updates are needed).
   */
  maybeMaxStreamData(now: Instant, smoothedRttMs: number): number | undefined {
    if (this.stateValue !== "recv" || this.stopSendingCodeValue !== undefined) return undefined;
    return this.window.maybeUpdate(this.consumedOffset, now, smoothedRttMs);
  }

  toJSON(): object {
    return {
      id: this.id,
      state: this.stateValue,
      readOffset: this.readOffset,
      readableBytes: this.readableBytes,
      highestReceivedOffset: this.highestReceived,
      bufferedSegments: this.segments.length,
      finalSize: this.finalSizeValue,
      resetCode: this.resetCodeValue,
      stopSendingCode: this.stopSendingCodeValue,
      window: this.window.toJSON(),
    };
  }
}
