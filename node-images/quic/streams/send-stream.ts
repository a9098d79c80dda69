/**
 * The sending part of a stream (RFC 9000 §3.1), sans I/O: the application writes into a bounded
 * buffer, the packet builder takes chunks for STREAM frames, acknowledgements free the buffer and
 * losses queue ranges for retransmission (§13.3).
 *
 * The buffer is a list of chunks, not one growing Buffer: an idle stream holds nothing, and bytes
 * are released as soon as everything below them is acknowledged.
 */
import { QuicTransportError } from "../errors.ts";
import { RangeSet } from "./range-set.ts";
import { QuicStreamUsageError } from "./stream-usage-error.ts";

export const SEND_STREAM_STATES = {
  ready: "ready",
  send: "send",
  data_sent: "data_sent",
  reset_sent: "reset_sent",
  data_recvd: "data_recvd",
  reset_recvd: "reset_recvd",
} as const;
export type SendStreamState = (typeof SEND_STREAM_STATES)[keyof typeof SEND_STREAM_STATES];

export interface SendStreamOptions {
  /** Bytes written and not yet acknowledged that the stream accepts before write() pushes back. */
  maxBufferedBytes: number;
  /** The peer's initial flow-control limit for this stream (initial_max_stream_data_*), default 0. */
  initialSendLimit?: number;
  /** Called once when the stream reaches a terminal state (data_recvd, reset_sent or reset_recvd). */
  onTerminal?: (id: number) => void;
}

export interface StreamChunk {
  offset: number;
  data: Uint8Array;
  fin: boolean;
  /** The highest offset sent on the stream before this chunk; bytes beyond it are new (connection flow control, §4.1). */
  previouslySentEnd: number;
}

/** Small writes are copied into shared 4 KiB blocks so that many tiny writes do not make many tiny chunks. */
const COALESCE_BLOCK_BYTES = 4096;
const SMALL_WRITE_BYTES = 1024;

interface BufferedChunk {
  offset: number;
  data: Buffer;
}

export class SendStream {
  readonly id: number;
  private readonly maxBufferedBytes: number;
  private readonly onTerminal: ((id: number) => void) | undefined;
  private stateValue: SendStreamState = "ready";
  private resetCodeValue: number | undefined;

  /** Unacknowledged written bytes, by offset; chunks[0] starts at or below ackedPrefix. */
  private chunks: BufferedChunk[] = [];
  /** Backing block of the last chunk when it is still being filled by small writes. */
  private tailBlock: Buffer | undefined;
  private tailLength = 0;
  /** Offset of the first byte still held in `chunks` (= writeOffset when empty). */
  private bufferStart = 0;
  /** Next offset the application writes. */
  private writeOffset = 0;
  /** Highest offset ever sent (new data starts here). */
  private sentEnd = 0;
  /** Every offset below this is acknowledged. */
  private ackedPrefix = 0;
  /** Acknowledged ranges above ackedPrefix. */
  private readonly acked = new RangeSet();
  /** Sent, declared lost, not acknowledged since: sent again before new data. */
  private readonly lost = new RangeSet();
  private finOffset: number | undefined;
  private finSent = false;
  private finAcked = false;
  private sendLimitBytes: number;
  private chunkCount = 0;

  constructor(id: number, opts: SendStreamOptions) {
    this.id = id;
    this.maxBufferedBytes = opts.maxBufferedBytes;
    this.sendLimitBytes = opts.initialSendLimit ?? 0;
    this.onTerminal = opts.onTerminal;
  }

  /** Chunks handed out so far, so a scheduler can tell whether the stream just sent. */
  get chunksSent(): number {
    return this.chunkCount;
  }

  get state(): SendStreamState {
    return this.stateValue;
  }

  get resetCode(): number | undefined {
    return this.resetCodeValue;
  }

  /** The final size: the FIN offset once finish() was called, or the bytes sent when reset (§4.5). */
  get finalSize(): number | undefined {
    if (this.stateValue === "reset_sent" || this.stateValue === "reset_recvd") return this.sentEnd;
    return this.finOffset;
  }

  /** Written and not yet released by acknowledgements. */
  get bufferedBytes(): number {
    return this.writeOffset - this.bufferStart;
  }

  get writableBytes(): number {
    if (!this.isWritable()) return 0;
    return Math.max(0, this.maxBufferedBytes - this.bufferedBytes);
  }

  /** The peer's MAX_STREAM_DATA for this stream. */
  get sendLimit(): number {
    return this.sendLimitBytes;
  }

  /** Offset the next chunk starts at (retransmission first), for frame overhead estimates. */
  get nextOffset(): number {
    return this.lost.first()?.start ?? this.sentEnd;
  }

  /** Highest offset sent so far. */
  get sentOffset(): number {
    return this.sentEnd;
  }

  /** The stream is blocked by the peer's MAX_STREAM_DATA at this offset (for STREAM_DATA_BLOCKED, §19.13). */
  get blockedAt(): number | undefined {
    if (!this.isSending()) return undefined;
    if (this.writeOffset > this.sendLimitBytes && this.sentEnd >= this.sendLimitBytes) return this.sendLimitBytes;
    return undefined;
  }

  /** True once nothing more will ever be sent or acknowledged on this stream that we need to track. */
  get isTerminal(): boolean {
    return this.stateValue === "data_recvd" || this.stateValue === "reset_sent" || this.stateValue === "reset_recvd";
  }

  private isWritable(): boolean {
    return (this.stateValue === "ready" || this.stateValue === "send") && this.finOffset === undefined;
  }

  private isSending(): boolean {
    return this.stateValue === "ready" || this.stateValue === "send" || this.stateValue === "data_sent";
  }

  /** Buffer application data; returns the bytes accepted (fewer than given when the buffer is full). */
  write(data: Uint8Array): number {
    if (this.finOffset !== undefined && this.isSending()) {
      throw new QuicStreamUsageError(`write on stream ${this.id} after finish()`);
    }
    const accepted = Math.min(data.length, this.writableBytes);
    if (accepted === 0) return 0;
    const piece = data.subarray(0, accepted);
    if (accepted < SMALL_WRITE_BYTES) this.appendSmall(piece);
    else this.appendChunk(Buffer.from(piece));
    this.writeOffset += accepted;
    return accepted;
  }

  private appendChunk(copy: Buffer): void {
    this.tailBlock = undefined;
    this.tailLength = 0;
    this.chunks.push({ offset: this.writeOffset, data: copy });
  }

  private appendSmall(piece: Uint8Array): void {
    const last = this.chunks[this.chunks.length - 1];
    const tailUsable = this.tailBlock !== undefined && last !== undefined && last.data.buffer === this.tailBlock.buffer;
    if (!tailUsable || this.tailBlock!.length - this.tailLength < piece.length) {
      this.tailBlock = Buffer.allocUnsafeSlow(COALESCE_BLOCK_BYTES);
      this.tailLength = 0;
      this.chunks.push({ offset: this.writeOffset, data: this.tailBlock.subarray(0, 0) });
    }
    const block = this.tailBlock!;
    block.set(piece, this.tailLength);
    this.tailLength += piece.length;
    const tail = this.chunks[this.chunks.length - 1]!;
    tail.data = block.subarray(0, this.tailLength);
  }

  /** No more data: the FIN goes out after the last byte (§3.1 "Send" → "Data Sent"). */
  finish(): void {
    if (!this.isSending() || this.finOffset !== undefined) return;
    this.finOffset = this.writeOffset;
  }

  /**
   * Abandon the stream (§3.1 → "Reset Sent", §19.4). Returns the final size to put in RESET_STREAM,
   * or undefined when no RESET_STREAM is due (already reset, or all data acknowledged).
   */
  reset(errorCode: number): number | undefined {
    if (!this.isSending()) return undefined;
    this.resetCodeValue = errorCode;
    this.stateValue = "reset_sent";
    this.releaseAll();
    this.onTerminal?.(this.id);
    return this.sentEnd;
  }

  /** The peer acknowledged our RESET_STREAM (§3.1 "Reset Sent" → "Reset Recvd"). */
  onResetAcked(): void {
    if (this.stateValue === "reset_sent") this.stateValue = "reset_recvd";
  }

  /**
   * RFC 9000 §3.5: STOP_SENDING obliges us to reset the stream, with the peer's error code unless
   * the application chooses another. Returns the RESET_STREAM final size, or undefined when none is due.
   */
  onStopSending(errorCode: number): number | undefined {
    return this.reset(errorCode);
  }

  /** RFC 9000 §4.1: MAX_STREAM_DATA never lowers the limit. */
  updateSendLimit(maxStreamData: number): void {
    if (maxStreamData > this.sendLimitBytes) this.sendLimitBytes = maxStreamData;
  }

  /** New bytes sendable now within the stream limit and `connectionCredit`. */
  private newBytesSendable(connectionCredit: number): number {
    return Math.max(0, Math.min(this.writeOffset, this.sendLimitBytes, this.sentEnd + connectionCredit) - this.sentEnd);
  }

  private finNeedsSending(): boolean {
    return this.finOffset !== undefined && !this.finSent && !this.finAcked;
  }

  /** Something nextChunk() would return, given `connectionCredit` bytes of connection-level credit for new data. */
  hasDataToSend(connectionCredit = Number.POSITIVE_INFINITY): boolean {
    if (!this.isSending()) return false;
    if (!this.lost.isEmpty) return true;
    if (this.newBytesSendable(connectionCredit) > 0) return true;
    return this.finNeedsSending() && this.sentEnd === this.finOffset;
  }

  /**
   * The next STREAM frame's content: lost ranges first, then new data; at most `maxBytes` bytes, and
   * new data bounded by the stream's send limit and `connectionCredit`. Chunks never span two buffer
   * chunks, so no bytes are copied.
   */
  nextChunk(maxBytes: number, connectionCredit = Number.POSITIVE_INFINITY): StreamChunk | undefined {
    if (!this.isSending()) return undefined;
    const previouslySentEnd = this.sentEnd;
    const lostRange = this.lost.first();
    if (lostRange !== undefined) {
      if (maxBytes <= 0) return undefined;
      const data = this.slice(lostRange.start, Math.min(lostRange.end, lostRange.start + maxBytes));
      const end = lostRange.start + data.length;
      this.lost.remove(lostRange.start, end);
      const fin = end === this.finOffset && this.finNeedsSending();
      if (fin) this.finSent = true;
      this.chunkCount++;
      return { offset: lostRange.start, data, fin, previouslySentEnd };
    }
    const sendable = Math.min(this.newBytesSendable(connectionCredit), Math.max(0, maxBytes));
    if (sendable > 0) {
      const start = this.sentEnd;
      const data = this.slice(start, start + sendable);
      this.sentEnd = start + data.length;
      const fin = this.sentEnd === this.finOffset && this.finNeedsSending();
      this.afterSend(fin);
      return { offset: start, data, fin, previouslySentEnd };
    }
    if (this.finNeedsSending() && this.sentEnd === this.finOffset) {
      // A FIN without data (§19.8: a STREAM frame may be empty when it carries FIN).
      this.afterSend(true);
      return { offset: this.sentEnd, data: new Uint8Array(0), fin: true, previouslySentEnd };
    }
    return undefined;
  }

  private afterSend(fin: boolean): void {
    if (fin) this.finSent = true;
    if (this.stateValue === "ready") this.stateValue = "send";
    if (this.finSent && this.sentEnd === this.finOffset) this.stateValue = "data_sent";
    this.chunkCount++;
  }

  /** Bytes [start, end) from the buffer, cut at the end of the chunk that holds `start`. */
  private slice(start: number, end: number): Uint8Array {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.chunks[mid]!.offset <= start) lo = mid;
      else hi = mid - 1;
    }
    const chunk = this.chunks[lo];
    if (chunk === undefined || chunk.offset > start || chunk.offset + chunk.data.length <= start) {
      throw new QuicTransportError("INTERNAL_ERROR", `stream ${this.id}: offset ${start} is not buffered`);
    }
    const from = start - chunk.offset;
    return chunk.data.subarray(from, Math.min(chunk.data.length, end - chunk.offset));
  }

  /** STREAM frame [offset, offset + length) (and FIN) acknowledged: release buffer, maybe → "Data Recvd". */
  onAcked(offset: number, length: number, fin: boolean): void {
    if (!this.isSending()) return;
    const end = offset + length;
    this.lost.remove(offset, end);
    if (end > this.ackedPrefix) {
      if (offset <= this.ackedPrefix) {
        this.ackedPrefix = end;
      } else {
        this.acked.add(offset, end);
      }
      for (let first = this.acked.first(); first !== undefined && first.start <= this.ackedPrefix; first = this.acked.first()) {
        this.ackedPrefix = Math.max(this.ackedPrefix, first.end);
        this.acked.remove(0, this.ackedPrefix);
      }
      this.releaseAcked();
    }
    if (fin && this.finOffset !== undefined) {
      this.finAcked = true;
      this.finSent = true;
    }
    if (this.finAcked && this.ackedPrefix >= this.finOffset!) {
      this.stateValue = "data_recvd";
      this.releaseAll();
      this.onTerminal?.(this.id);
    }
  }

  /** STREAM frame declared lost: queue the parts not acknowledged since for retransmission. */
  onLost(offset: number, length: number, fin: boolean): void {
    if (!this.isSending()) return;
    const start = Math.max(offset, this.ackedPrefix);
    const end = offset + length;
    if (end > start) {
      this.lost.add(start, end);
      for (const r of this.acked.toArray()) {
        if (r.start >= end) break;
        this.lost.remove(r.start, r.end);
      }
    }
    if (fin && !this.finAcked) this.finSent = false;
  }

  private releaseAcked(): void {
    let drop = 0;
    while (drop < this.chunks.length) {
      const c = this.chunks[drop]!;
      if (c.offset + c.data.length > this.ackedPrefix) break;
      drop++;
    }
    if (drop === 0) return;
    const lastDropped = this.chunks[drop - 1]!;
    if (this.tailBlock !== undefined && lastDropped.data.buffer === this.tailBlock.buffer) this.tailBlock = undefined;
    this.chunks.splice(0, drop);
    this.bufferStart = this.chunks[0]?.offset ?? this.writeOffset;
    // Fully acked tail: later small writes start a fresh block.
    if (this.chunks.length === 0) this.tailLength = 0;
  }

  private releaseAll(): void {
    this.chunks = [];
    this.tailBlock = undefined;
    this.tailLength = 0;
    this.bufferStart = this.writeOffset;
    this.lost.clear();
    this.acked.clear();
  }

  toJSON(): object {
    return {
      id: this.id,
      state: this.stateValue,
      writeOffset: this.writeOffset,
      sentOffset: this.sentEnd,
      ackedOffset: this.ackedPrefix,
      bufferedBytes: this.bufferedBytes,
      sendLimit: this.sendLimitBytes,
      lostBytes: this.lost.totalLength,
      finalSize: this.finalSize,
      finAcked: this.finAcked,
      resetCode: this.resetCodeValue,
    };
  }
}
