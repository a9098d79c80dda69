/**
 * An HTTP/3 connection (RFC 9114) over one QUIC Connection, sans-I/O: it consumes QUIC events
 * (handleQuicEvent), reads and writes QUIC streams, and reports Http3Events. It owns the control
 * streams both ways (SETTINGS first, §6.2.1), the QPACK encoder/decoder streams (capacity 0),
 * request streams (§4.1 frame sequence, §4.3 pseudo-header checks), GOAWAY (§5.2), and turns
 * violations into connection errors (CONNECTION_CLOSE with the §8.1 code) or stream errors
 * (RESET_STREAM + STOP_SENDING). Nothing is thrown out of handleQuicEvent for peer input.
 *
 * The owner wakes the QUIC endpoint after calling into this (the writes only buffer).
 */
import type { Connection } from "../connection.ts";
import type { ConnectionEvent } from "../events.ts";
import type { Instant } from "../time.ts";
import { ByteReader, ByteWriter } from "../varint.ts";
import type { Http3Event } from "./events.ts";
import {
  decodeSettings, decodeSingleVarint, encodeFrame, encodeFrameHeader, encodeSettings, encodeSingleVarintFrame, FRAME_TYPES, FrameReader,
  greaseId, H3_ERROR_CODES, Http3Error, SETTINGS_IDS, STREAM_TYPES, type FrameReaderItem, type H3ErrorName, type Settings,
} from "./frames.ts";
import { validateFieldSection } from "./message.ts";
import { decodeFieldSection, encodeFieldSection, QpackDecoderStreamReceiver, QpackEncoderStreamReceiver, QpackError, type FieldLine } from "./qpack.ts";

export interface Http3ConnectionOptions {
  /** SETTINGS_MAX_FIELD_SECTION_SIZE we advertise and enforce (§4.2.2). */
  maxFieldSectionSizeBytes?: number;
  /** Send a reserved (grease) setting, frame and stream type, as RFC 9114 §7.2.4.1/§7.2.8/§6.2.3 suggest. */
  grease?: boolean;
}

type UniKind = "control" | "qpackEncoder" | "qpackDecoder" | "ignored";

interface PeerUniStream {
  kind: UniKind | undefined;
  typeBytes: Buffer;
  reader?: FrameReader;
}

interface RequestStream {
  reader: FrameReader;
  /** Receive side: what the next frame may be (§4.1). */
  phase: "headers" | "data" | "afterTrailers";
  contentLength: number | undefined;
  dataBytes: number;
  /** An interim (1xx) response was seen; a final one must follow (client side). */
  aborted: boolean;
  completed: boolean;
}

interface SendQueue {
  chunks: Buffer[];
  bytes: number;
  fin: boolean;
}

const MAX_FRAME_BYTES = 256 * 1024;

export class Http3Connection {
  readonly quic: Connection;
  readonly role: "client" | "server";
  peerSettings: Settings | undefined;
  /** GOAWAY ids (§5.2): what we announced and what the peer announced. */
  goawaySent: number | undefined;
  goawayReceived: number | undefined;
  /** The H3 error we closed the connection with, if any (for tests and logs). */
  localError: { code: H3ErrorName; reason: string } | undefined;
  private readonly options: Required<Http3ConnectionOptions>;
  private started = false;
  private controlStreamId: number | undefined;
  private readonly peerUni = new Map<number, PeerUniStream>();
  private readonly requests = new Map<number, RequestStream>();
  private readonly sendQueues = new Map<number, SendQueue>();
  private readonly encoderStreamReceiver = new QpackEncoderStreamReceiver(0);
  private readonly decoderStreamReceiver = new QpackDecoderStreamReceiver();
  private readonly events: Http3Event[] = [];
  private eventHead = 0;
  private seenControl = false;
  private seenEncoder = false;
  private seenDecoder = false;
  /** Largest client bidi stream ID the server has accepted (GOAWAY's id is the next one). */
  private largestAcceptedRequestId = -4;
  private closed = false;
  private lastAt: Instant = 0;
  /** Set whenever we hand QUIC something to send; the owner wakes the endpoint only then. */
  private wroteToQuic = false;

  constructor(quic: Connection, options: Http3ConnectionOptions = {}) {
    this.quic = quic;
    this.role = quic.role;
    this.options = { maxFieldSectionSizeBytes: options.maxFieldSectionSizeBytes ?? 64 * 1024, grease: options.grease ?? true };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** True (once) when QUIC has new data, frames or a close to send since the last call. */
  takeSendActivity(): boolean {
    const wrote = this.wroteToQuic;
    this.wroteToQuic = false;
    return wrote;
  }

  pollEvent(): Http3Event | undefined {
    if (this.eventHead >= this.events.length) {
      this.events.length = 0;
      this.eventHead = 0;
      return undefined;
    }
    return this.events[this.eventHead++];
  }

  /** Feed one QUIC event for this connection. */
  handleQuicEvent(event: ConnectionEvent): void {
    this.lastAt = event.at;
    if (this.closed) return;
    try {
      this.dispatch(event);
    } catch (err) {
      if (err instanceof Http3Error || err instanceof QpackError) {
        this.connectionError(err.code, err.message.slice(err.code.length + 2), event.at);
        return;
      }
      throw err;
    }
    this.flush();
  }

  /** Open our control and QPACK streams once QUIC streams exist (called on handshakeCompleted; idempotent). */
  start(): void {
    if (this.started || this.closed) return;
    // QUIC streams exist once the peer's transport parameters arrived (handshakeCompleted at the latest).
    if (this.quic.peerParameters === undefined) return;
    this.started = true;
    const control = this.quic.openStream(false);
    const encoder = this.quic.openStream(false);
    const decoder = this.quic.openStream(false);
    if (control === undefined || encoder === undefined || decoder === undefined) {
      this.connectionError("H3_STREAM_CREATION_ERROR", "peer allows too few unidirectional streams (§6.2: at least 3)", this.lastAt);
      return;
    }
    this.controlStreamId = control;
    const settings: Array<[number, number]> = [
      [SETTINGS_IDS.QPACK_MAX_TABLE_CAPACITY, 0],
      [SETTINGS_IDS.QPACK_BLOCKED_STREAMS, 0],
      [SETTINGS_IDS.MAX_FIELD_SECTION_SIZE, this.options.maxFieldSectionSizeBytes],
    ];
    if (this.options.grease) settings.push([greaseId(7), 0x1a2a]);
    const first = [uniStreamType(STREAM_TYPES.CONTROL), encodeSettings(settings)];
    // §7.2.8: a reserved frame type after SETTINGS exercises the peer's "ignore unknown frames".
    if (this.options.grease) first.push(encodeFrame(greaseId(3), Buffer.from("grease")));
    // A GOAWAY asked for before the handshake goes right after SETTINGS (§5.2).
    if (this.goawaySent !== undefined) first.push(encodeSingleVarintFrame(FRAME_TYPES.GOAWAY, this.goawaySent));
    this.enqueue(control, Buffer.concat(first), false);
    this.enqueue(encoder, uniStreamType(STREAM_TYPES.QPACK_ENCODER), false);
    this.enqueue(decoder, uniStreamType(STREAM_TYPES.QPACK_DECODER), false);
    this.flush();
  }

  // ------------------------------------------------------------------------------------------
  // Sending
  // ------------------------------------------------------------------------------------------

  /** Client: open a request stream; undefined when the peer's stream limit is reached or a GOAWAY forbids it. */
  openRequestStream(): number | undefined {
    if (this.role !== "client" || this.closed) return undefined;
    this.start();
    const id = this.quic.openStream(true);
    if (id === undefined) return undefined;
    this.requests.set(id, newRequestStream());
    return id;
  }

  sendHeaders(streamId: number, fields: readonly FieldLine[], opts: { endStream?: boolean } = {}): void {
    const block = encodeFieldSection(fields);
    this.enqueue(streamId, encodeFrame(FRAME_TYPES.HEADERS, block), opts.endStream ?? false);
    this.flush();
  }

  /** Queue a DATA frame (the H3 layer buffers; see pendingSendBytes for backpressure). */
  sendData(streamId: number, data: Uint8Array, opts: { endStream?: boolean } = {}): void {
    const parts: Buffer[] = [];
    if (data.length > 0) parts.push(encodeFrameHeader(FRAME_TYPES.DATA, data.length), Buffer.from(data));
    this.enqueue(streamId, parts.length > 0 ? Buffer.concat(parts) : Buffer.alloc(0), opts.endStream ?? false);
    this.flush();
  }

  endStream(streamId: number): void {
    this.enqueue(streamId, Buffer.alloc(0), true);
    this.flush();
  }

  /** Bytes queued above QUIC's send buffer for this stream. */
  pendingSendBytes(streamId: number): number {
    return this.sendQueues.get(streamId)?.bytes ?? 0;
  }

  /** Abort a request stream in both directions with an H3 code (a stream error, §8). */
  abortStream(streamId: number, code: H3ErrorName, reason: string): void {
    const r = this.requests.get(streamId);
    if (r) r.aborted = true;
    this.sendQueues.delete(streamId);
    const errorCode = H3_ERROR_CODES[code];
    this.quic.streamReset(streamId, errorCode);
    this.quic.streamStopSending(streamId, errorCode);
    this.wroteToQuic = true;
    this.events.push({ type: "streamAborted", at: this.lastAt, streamId, errorCode, reason });
    this.maybeRelease(streamId);
  }

  /**
   * §5.2: announce that no request from `id` on will be processed. The server default is the
   * next stream after the largest it accepted; a later GOAWAY may only lower it.
   */
  sendGoaway(id?: number): void {
    if (this.closed) return;
    this.start();
    const value = id ?? (this.role === "server" ? this.largestAcceptedRequestId + 4 : 0);
    if (this.goawaySent !== undefined && value > this.goawaySent) return;
    this.goawaySent = value;
    if (this.controlStreamId !== undefined) this.enqueue(this.controlStreamId, encodeSingleVarintFrame(FRAME_TYPES.GOAWAY, value), false);
    this.flush();
  }

  /** Requests (server: accepted; client: opened) whose exchange has not finished. */
  get activeRequestCount(): number {
    let n = 0;
    for (const r of this.requests.values()) if (!r.aborted) n++;
    return n;
  }

  /** Close the connection with an HTTP/3 code (H3_NO_ERROR for a graceful end). */
  close(now: Instant, code: H3ErrorName = "H3_NO_ERROR", reason = ""): void {
    if (this.closed) return;
    this.flush();
    this.quic.close(now, H3_ERROR_CODES[code], reason);
    this.wroteToQuic = true;
  }

  /** Push queued bytes into QUIC streams as far as their send buffers allow. */
  flush(): void {
    for (const [id, q] of this.sendQueues) {
      while (q.chunks.length > 0) {
        const chunk = q.chunks[0]!;
        let n: number;
        try {
          n = this.quic.streamWrite(id, chunk);
        } catch {
          // The stream was reset or stopped under us (STOP_SENDING): nothing more goes out on it.
          this.sendQueues.delete(id);
          break;
        }
        q.bytes -= n;
        if (n > 0) this.wroteToQuic = true;
        if (n < chunk.length) {
          q.chunks[0] = chunk.subarray(n);
          break;
        }
        q.chunks.shift();
      }
      if (q.chunks.length === 0 && q.fin) {
        try {
          this.quic.streamFinish(id);
          this.wroteToQuic = true;
        } catch {
          // Already reset: the FIN has no meaning any more.
        }
        this.sendQueues.delete(id);
        this.finished.add(id);
        this.maybeRelease(id);
      }
    }
  }

  /** Request streams whose sending side we finished (FIN queued into QUIC). */
  private readonly finished = new Set<number>();

  /** A request stream is done once the peer's message completed and our side is finished (or it was aborted). */
  private maybeRelease(id: number): void {
    const r = this.requests.get(id);
    if (r && (r.aborted || (r.completed && this.finished.has(id)))) {
      this.requests.delete(id);
      this.finished.delete(id);
      this.released.add(id);
    }
  }

  /** Request streams we are done with: late data on them is read and dropped, never a new request. */
  private readonly released = new Set<number>();

  private enqueue(streamId: number, data: Buffer, fin: boolean): void {
    if (this.finished.has(streamId)) return;
    let q = this.sendQueues.get(streamId);
    if (!q) this.sendQueues.set(streamId, (q = { chunks: [], bytes: 0, fin: false }));
    if (data.length > 0) {
      q.chunks.push(data);
      q.bytes += data.length;
    }
    if (fin) q.fin = true;
  }

  // ------------------------------------------------------------------------------------------
  // Receiving
  // ------------------------------------------------------------------------------------------

  private dispatch(event: ConnectionEvent): void {
    switch (event.type) {
      case "handshakeCompleted":
        this.start();
        return;
      case "streamReadable":
        return this.onReadable(event.streamId, event.at);
      case "streamWritable":
        return;
      case "streamReset":
        return this.onPeerReset(event.streamId, event.errorCode, "receive", event.at);
      case "stopSendingReceived":
        this.sendQueues.delete(event.streamId);
        if (this.isCriticalLocalStream(event.streamId)) throw new Http3Error("H3_CLOSED_CRITICAL_STREAM", `STOP_SENDING on our critical stream ${event.streamId}`);
        if (this.requests.has(event.streamId)) this.events.push({ type: "streamResetByPeer", at: event.at, streamId: event.streamId, errorCode: event.errorCode, direction: "send" });
        return;
      case "connectionClosed":
        this.closed = true;
        this.events.push({ type: "connectionClosed", at: event.at, initiator: event.initiator, errorCode: event.errorCode, isApplication: event.isApplication, reason: event.reason });
        return;
      default:
        return;
    }
  }

  private isCriticalLocalStream(id: number): boolean {
    // Our three unidirectional streams are the first three we opened (§6.2.1, RFC 9204 §4.2).
    return isUni(id) && isLocal(id, this.role) && id >> 2 < 3;
  }

  private onPeerReset(id: number, errorCode: number, direction: "receive", at: Instant): void {
    const uni = this.peerUni.get(id);
    if (uni) {
      if (uni.kind === "control" || uni.kind === "qpackEncoder" || uni.kind === "qpackDecoder") {
        throw new Http3Error("H3_CLOSED_CRITICAL_STREAM", `peer reset its ${uni.kind} stream`);
      }
      return;
    }
    const r = this.requests.get(id);
    if (r && !r.aborted) {
      r.aborted = true;
      this.events.push({ type: "streamResetByPeer", at, streamId: id, errorCode, direction });
    }
  }

  private onReadable(id: number, at: Instant): void {
    const chunks: Buffer[] = [];
    for (let d = this.quic.streamRead(id); d && d.length > 0; d = this.quic.streamRead(id)) chunks.push(d);
    const fin = this.quic.streamIsFinished(id);
    if (isUni(id)) {
      if (isLocal(id, this.role)) return;
      return this.onPeerUni(id, chunks, fin, at);
    }
    // §6.1: only clients open bidirectional streams in HTTP/3.
    if (!isClientInitiated(id)) throw new Http3Error("H3_STREAM_CREATION_ERROR", `server-initiated bidirectional stream ${id}`);
    let r = this.requests.get(id);
    if (!r) {
      if (this.role === "client" || this.released.has(id)) return; // late data on a stream we are done with
      if (this.goawaySent !== undefined && id >= this.goawaySent) {
        // §5.2: requests at or above the GOAWAY id are rejected, and the client may retry them.
        this.requests.set(id, { ...newRequestStream(), aborted: true });
        this.abortStream(id, "H3_REQUEST_REJECTED", "after GOAWAY");
        return;
      }
      r = newRequestStream();
      this.requests.set(id, r);
      this.largestAcceptedRequestId = Math.max(this.largestAcceptedRequestId, id);
    }
    if (r.aborted) return;
    const items: FrameReaderItem[] = [];
    for (const c of chunks) r.reader.push(c, items);
    for (const item of items) {
      this.onRequestItem(id, r, item, at);
      if (r.aborted || this.closed) return;
    }
    if (fin && !r.completed) this.onRequestFin(id, r, at);
  }

  private onRequestItem(id: number, r: RequestStream, item: FrameReaderItem, at: Instant): void {
    if (item.kind === "skipped") return;
    if (item.kind === "dataStart") {
      // §4.1: DATA before HEADERS, or after trailers, is an invalid frame sequence.
      if (r.phase !== "data") throw new Http3Error("H3_FRAME_UNEXPECTED", `DATA frame ${r.phase === "headers" ? "before HEADERS" : "after trailers"} on stream ${id}`);
      return;
    }
    if (item.kind === "data") {
      r.dataBytes += item.chunk.length;
      if (r.contentLength !== undefined && r.dataBytes > r.contentLength) {
        return this.abortStream(id, "H3_MESSAGE_ERROR", `DATA exceeds content-length ${r.contentLength}`);
      }
      this.events.push({ type: "dataReceived", at, streamId: id, data: item.chunk });
      return;
    }
    switch (item.type) {
      case FRAME_TYPES.HEADERS: {
        if (r.phase === "afterTrailers") throw new Http3Error("H3_FRAME_UNEXPECTED", `HEADERS after trailers on stream ${id}`);
        if (item.payload.length > this.options.maxFieldSectionSizeBytes) return this.abortStream(id, "H3_EXCESSIVE_LOAD", "field section too large");
        const fields = decodeFieldSection(item.payload, { maxTableCapacity: 0 });
        const isTrailers = r.phase === "data";
        const kind = isTrailers ? "trailers" : this.role === "server" ? "request" : "response";
        const problem = validateFieldSection(fields, kind);
        if (problem) return this.abortStream(id, "H3_MESSAGE_ERROR", problem);
        if (!isTrailers) {
          const status = fields.find(([n]) => n === ":status")?.[1];
          // §4.1: interim (1xx) responses precede the final one; stay in the headers phase.
          if (this.role === "client" && status !== undefined && status.startsWith("1")) {
            this.events.push({ type: "headersReceived", at, streamId: id, headers: fields, isTrailers: false });
            return;
          }
          const cl = fields.filter(([n]) => n === "content-length");
          if (cl.length > 0) {
            const values = new Set(cl.map(([, v]) => v.trim()));
            const v = [...values][0]!;
            if (values.size > 1 || !/^\d+$/.test(v)) return this.abortStream(id, "H3_MESSAGE_ERROR", `invalid content-length ${[...values].join(",")}`);
            r.contentLength = Number(v);
          }
        }
        r.phase = isTrailers ? "afterTrailers" : "data";
        this.events.push({ type: "headersReceived", at, streamId: id, headers: fields, isTrailers });
        return;
      }
      case FRAME_TYPES.PUSH_PROMISE:
        // §7.2.5: only servers push; we never sent MAX_PUSH_ID, so any push ID exceeds it.
        if (this.role === "server") throw new Http3Error("H3_FRAME_UNEXPECTED", "PUSH_PROMISE from a client");
        throw new Http3Error("H3_ID_ERROR", "PUSH_PROMISE without MAX_PUSH_ID");
      default:
        // §7.2.4, §7.2.6, §7.2.7, §7.2.3: control-stream frames on a request stream.
        throw new Http3Error("H3_FRAME_UNEXPECTED", `frame 0x${item.type.toString(16)} on request stream ${id}`);
    }
  }

  private onRequestFin(id: number, r: RequestStream, at: Instant): void {
    // §7.1: a stream that ends inside a frame is H3_FRAME_ERROR.
    if (r.reader.inFrame) throw new Http3Error("H3_FRAME_ERROR", `stream ${id} ended inside a frame`);
    if (r.phase === "headers") return this.abortStream(id, "H3_REQUEST_INCOMPLETE", "stream ended before a header section");
    if (r.contentLength !== undefined && r.dataBytes !== r.contentLength) {
      return this.abortStream(id, "H3_MESSAGE_ERROR", `content-length ${r.contentLength} but ${r.dataBytes} bytes of DATA`);
    }
    r.completed = true;
    this.events.push({ type: "messageCompleted", at, streamId: id });
    this.maybeRelease(id);
  }

  private onPeerUni(id: number, chunks: Buffer[], fin: boolean, at: Instant): void {
    let s = this.peerUni.get(id);
    if (!s) this.peerUni.set(id, (s = { kind: undefined, typeBytes: Buffer.alloc(0) }));
    let data = Buffer.concat(chunks);
    if (s.kind === undefined) {
      const all = Buffer.concat([s.typeBytes, data]);
      if (all.length === 0 || all.length < 1 << (all[0]! >> 6)) {
        s.typeBytes = all;
        if (fin) s.kind = "ignored";
        return;
      }
      const r = new ByteReader(all);
      const type = r.varint();
      data = all.subarray(r.offset);
      s.kind = this.classifyUni(id, type);
    }
    if (s.kind === "ignored") return;
    if (fin) throw new Http3Error("H3_CLOSED_CRITICAL_STREAM", `peer closed its ${s.kind} stream`);
    if (s.kind === "qpackEncoder") return this.encoderStreamReceiver.receive(data);
    if (s.kind === "qpackDecoder") return this.decoderStreamReceiver.receive(data);
    const items: FrameReaderItem[] = [];
    s.reader!.push(data, items);
    for (const item of items) this.onControlItem(item, at);
  }

  private classifyUni(id: number, type: number): UniKind {
    const once = (seen: boolean, name: string): void => {
      // §6.2.1 / RFC 9204 §4.2: a second stream of a critical type is H3_STREAM_CREATION_ERROR.
      if (seen) throw new Http3Error("H3_STREAM_CREATION_ERROR", `second ${name} stream (${id})`);
    };
    switch (type) {
      case STREAM_TYPES.CONTROL:
        once(this.seenControl, "control");
        this.seenControl = true;
        this.peerUni.get(id)!.reader = new FrameReader(MAX_FRAME_BYTES);
        return "control";
      case STREAM_TYPES.QPACK_ENCODER:
        once(this.seenEncoder, "QPACK encoder");
        this.seenEncoder = true;
        return "qpackEncoder";
      case STREAM_TYPES.QPACK_DECODER:
        once(this.seenDecoder, "QPACK decoder");
        this.seenDecoder = true;
        return "qpackDecoder";
      case STREAM_TYPES.PUSH:
        // §6.2.2: clients never push; a server may push only up to our MAX_PUSH_ID, which we never sent.
        if (this.role === "server") throw new Http3Error("H3_STREAM_CREATION_ERROR", "push stream from a client");
        throw new Http3Error("H3_ID_ERROR", "push stream without MAX_PUSH_ID");
      default:
        // §6.2 / §9: unknown (and grease) stream types: stop reading, keep the connection.
        this.quic.streamStopSending(id, H3_ERROR_CODES.H3_STREAM_CREATION_ERROR);
        this.wroteToQuic = true;
        return "ignored";
    }
  }

  private onControlItem(item: FrameReaderItem, at: Instant): void {
    if (item.kind === "skipped") {
      if (!this.peerSettings) throw new Http3Error("H3_MISSING_SETTINGS", "first frame on the control stream is not SETTINGS");
      return;
    }
    const type = item.kind === "frame" ? item.type : FRAME_TYPES.DATA;
    // §6.2.1: SETTINGS must be the first frame of the control stream.
    if (!this.peerSettings && type !== FRAME_TYPES.SETTINGS) throw new Http3Error("H3_MISSING_SETTINGS", `first control frame is 0x${type.toString(16)}, not SETTINGS`);
    if (item.kind !== "frame") throw new Http3Error("H3_FRAME_UNEXPECTED", "DATA frame on the control stream");
    switch (item.type) {
      case FRAME_TYPES.SETTINGS: {
        if (this.peerSettings) throw new Http3Error("H3_FRAME_UNEXPECTED", "second SETTINGS frame");
        this.peerSettings = decodeSettings(item.payload);
        this.events.push({ type: "settingsReceived", at, settings: this.peerSettings });
        return;
      }
      case FRAME_TYPES.GOAWAY: {
        const id = decodeSingleVarint(item.payload, "GOAWAY");
        // §5.2: a server's GOAWAY carries a client-initiated bidirectional stream ID; it never increases.
        if (this.role === "client" && id % 4 !== 0) throw new Http3Error("H3_ID_ERROR", `GOAWAY id ${id} is not a client-initiated bidirectional stream`);
        if (this.goawayReceived !== undefined && id > this.goawayReceived) throw new Http3Error("H3_ID_ERROR", `GOAWAY id rose from ${this.goawayReceived} to ${id}`);
        this.goawayReceived = id;
        this.events.push({ type: "goawayReceived", at, id });
        return;
      }
      case FRAME_TYPES.MAX_PUSH_ID:
        if (this.role === "client") throw new Http3Error("H3_FRAME_UNEXPECTED", "MAX_PUSH_ID from a server");
        decodeSingleVarint(item.payload, "MAX_PUSH_ID");
        return;
      case FRAME_TYPES.CANCEL_PUSH: {
        const pushId = decodeSingleVarint(item.payload, "CANCEL_PUSH");
        // §7.2.3: we neither promised a push nor allowed one, so any push ID is unknown.
        throw new Http3Error("H3_ID_ERROR", `CANCEL_PUSH for push ${pushId}, which does not exist`);
      }
      default:
        throw new Http3Error("H3_FRAME_UNEXPECTED", `frame 0x${item.type.toString(16)} on the control stream`);
    }
  }

  private connectionError(code: H3ErrorName, reason: string, at: Instant): void {
    if (this.closed) return;
    this.localError = { code, reason };
    this.quic.close(at, H3_ERROR_CODES[code], reason);
    this.wroteToQuic = true;
    // The QUIC connectionClosed event follows through the owner's event loop and sets `closed`.
  }
}

function newRequestStream(): RequestStream {
  return { reader: new FrameReader(MAX_FRAME_BYTES), phase: "headers", contentLength: undefined, dataBytes: 0, aborted: false, completed: false };
}

function uniStreamType(type: number): Buffer {
  const w = new ByteWriter(8);
  w.varint(type);
  return w.finish();
}

function isUni(id: number): boolean {
  return (id & 0x2) !== 0;
}

function isClientInitiated(id: number): boolean {
  return (id & 0x1) === 0;
}

function isLocal(id: number, role: "client" | "server"): boolean {
  return isClientInitiated(id) === (role === "client");
}
