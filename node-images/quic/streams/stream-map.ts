/**
 * All streams of one connection, seen from one endpoint (RFC 9000 §2, §3, §4.6): opening our
 * streams within the peer's MAX_STREAMS, implicitly opening the peer's (§3.2), checking that a
 * frame fits the stream's direction, fair scheduling of sendable streams, and forgetting streams
 * once both halves are done so that long connections do not accumulate state.
 */
import { QuicTransportError } from "../errors.ts";
import { RecvStream } from "./recv-stream.ts";
import { SendStream } from "./send-stream.ts";
import {
  MAX_STREAM_COUNT,
  makeStreamId,
  streamIdInitiator,
  streamIdIsBidirectional,
  streamIndex,
  type StreamInitiator,
} from "./stream-id.ts";

/** One side's stream limits: its transport parameters (§18.2) plus local buffer sizes. */
export interface StreamLimits {
  /** initial_max_streams_bidi: streams of this type the other side may open. */
  maxStreamsBidi: number;
  maxStreamsUni: number;
  /** initial_max_stream_data_bidi_local: limit for bidirectional streams this side opened. */
  initialMaxStreamDataBidiLocal: number;
  /** initial_max_stream_data_bidi_remote: limit for bidirectional streams the other side opened. */
  initialMaxStreamDataBidiRemote: number;
  initialMaxStreamDataUni: number;
  /** Bound of receive window auto-tuning (only meaningful for the local side). */
  maxStreamWindowBytes: number;
  /** Per-stream send buffer (only meaningful for the local side). */
  sendBufferBytes: number;
}

/** Frames that name a stream, and so may open or address one. */
export type StreamFrameKind = "stream" | "reset_stream" | "stop_sending" | "max_stream_data" | "stream_data_blocked";

/** RFC 9000 §19: frame types for the errors' frameType field. */
const FRAME_TYPES: Record<StreamFrameKind, number> = {
  stream: 0x08,
  reset_stream: 0x04,
  stop_sending: 0x05,
  max_stream_data: 0x11,
  stream_data_blocked: 0x15,
};

/** Which half of the stream the frame addresses on our side (§19.4-§19.13). */
const FRAME_TARGET: Record<StreamFrameKind, "send" | "recv"> = {
  stream: "recv",
  reset_stream: "recv",
  stream_data_blocked: "recv",
  stop_sending: "send",
  max_stream_data: "send",
};

export interface StreamEntry {
  readonly id: number;
  /** Absent on a peer-initiated unidirectional stream. */
  readonly send?: SendStream;
  /** Absent on a locally initiated unidirectional stream. */
  readonly recv?: RecvStream;
}

interface PerDirection {
  bidi: number;
  uni: number;
}

function dir(bidi: boolean): keyof PerDirection {
  return bidi ? "bidi" : "uni";
}

export class StreamMap {
  readonly role: StreamInitiator;
  private readonly local: StreamLimits;
  private readonly peer: StreamLimits;
  private readonly streams = new Map<number, StreamEntry>();
  /** Streams with a live send half, in round-robin order (the next to serve first). */
  private readonly sendOrder = new Map<number, SendStream>();
  private readonly nextLocalIndex: PerDirection = { bidi: 0, uni: 0 };
  private readonly nextPeerIndex: PerDirection = { bidi: 0, uni: 0 };
  /** The peer's MAX_STREAMS for streams we open. */
  private readonly peerMaxStreams: PerDirection;
  /** The MAX_STREAMS we advertised for streams the peer opens. */
  private readonly localMaxStreams: PerDirection;
  private readonly closedPeerStreams: PerDirection = { bidi: 0, uni: 0 };
  private opened: number[] = [];
  private discardedBytes = 0;
  // One callback each per map, shared by all streams (no closure per stream).
  private readonly onSendTerminal = (id: number): void => {
    this.sendOrder.delete(id);
    this.collect(id);
  };
  private readonly onRecvTerminal = (id: number): void => {
    this.collect(id);
  };
  private readonly onDiscarded = (bytes: number): void => {
    this.discardedBytes += bytes;
  };

  constructor(role: StreamInitiator, local: StreamLimits, peer: StreamLimits) {
    this.role = role;
    this.local = local;
    this.peer = peer;
    this.peerMaxStreams = { bidi: peer.maxStreamsBidi, uni: peer.maxStreamsUni };
    this.localMaxStreams = { bidi: local.maxStreamsBidi, uni: local.maxStreamsUni };
  }

  /** Streams currently tracked. */
  get size(): number {
    return this.streams.size;
  }

  get(id: number): StreamEntry | undefined {
    return this.streams.get(id);
  }

  /** The peer's current MAX_STREAMS for our streams of this type (for STREAMS_BLOCKED, §19.14). */
  peerStreamLimit(bidi: boolean): number {
    return this.peerMaxStreams[dir(bidi)];
  }

  /** The stream existed and has been forgotten because both halves finished. */
  isClosed(id: number): boolean {
    if (this.streams.has(id)) return false;
    const bidi = streamIdIsBidirectional(id);
    const next = streamIdInitiator(id) === this.role ? this.nextLocalIndex[dir(bidi)] : this.nextPeerIndex[dir(bidi)];
    return streamIndex(id) < next;
  }

  /** Open one of our streams; undefined when the peer's MAX_STREAMS is reached (send STREAMS_BLOCKED, §4.6). */
  openStream(bidi: boolean): number | undefined {
    const d = dir(bidi);
    const index = this.nextLocalIndex[d];
    if (index >= this.peerMaxStreams[d]) return undefined;
    this.nextLocalIndex[d] = index + 1;
    const id = makeStreamId(this.role, bidi, index);
    this.create(id, true);
    return id;
  }

  /**
   * The stream a received frame addresses, opening peer streams implicitly (§3.2: lower-numbered
   * streams of the same type open too). Undefined for a stream that existed and was forgotten.
   */
  getOrCreateForFrame(id: number, frameKind: StreamFrameKind): StreamEntry | undefined {
    const frameType = FRAME_TYPES[frameKind];
    const bidi = streamIdIsBidirectional(id);
    const localInitiated = streamIdInitiator(id) === this.role;
    if (!bidi) {
      // §19.4-§19.13: receiving-part frames on our send-only stream, sending-part frames on the peer's receive-only one.
      const target = FRAME_TARGET[frameKind];
      if (localInitiated && target === "recv") {
        throw new QuicTransportError("STREAM_STATE_ERROR", `${frameKind} frame on send-only stream ${id}`, frameType);
      }
      if (!localInitiated && target === "send") {
        throw new QuicTransportError("STREAM_STATE_ERROR", `${frameKind} frame on receive-only stream ${id}`, frameType);
      }
    }
    const d = dir(bidi);
    const index = streamIndex(id);
    if (localInitiated) {
      if (index >= this.nextLocalIndex[d]) {
        throw new QuicTransportError("STREAM_STATE_ERROR", `${frameKind} frame on stream ${id} that we have not opened`, frameType);
      }
      return this.streams.get(id);
    }
    if (index >= this.localMaxStreams[d]) {
      throw new QuicTransportError("STREAM_LIMIT_ERROR", `peer opened stream ${id} beyond MAX_STREAMS ${this.localMaxStreams[d]}`, frameType);
    }
    if (index < this.nextPeerIndex[d]) return this.streams.get(id);
    const peerRole: StreamInitiator = this.role === "client" ? "server" : "client";
    for (let i = this.nextPeerIndex[d]; i <= index; i++) {
      const opened = makeStreamId(peerRole, bidi, i);
      this.create(opened, false);
      this.opened.push(opened);
    }
    this.nextPeerIndex[d] = index + 1;
    return this.streams.get(id);
  }

  private create(id: number, localInitiated: boolean): void {
    const bidi = streamIdIsBidirectional(id);
    let send: SendStream | undefined;
    let recv: RecvStream | undefined;
    if (bidi || localInitiated) {
      // §18.2: the peer's bidi_remote applies to streams we open, its bidi_local to streams it opened.
      const initialSendLimit = !bidi
        ? this.peer.initialMaxStreamDataUni
        : localInitiated
          ? this.peer.initialMaxStreamDataBidiRemote
          : this.peer.initialMaxStreamDataBidiLocal;
      send = new SendStream(id, { maxBufferedBytes: this.local.sendBufferBytes, initialSendLimit, onTerminal: this.onSendTerminal });
      this.sendOrder.set(id, send);
    }
    if (bidi || !localInitiated) {
      const initialWindowBytes = !bidi
        ? this.local.initialMaxStreamDataUni
        : localInitiated
          ? this.local.initialMaxStreamDataBidiLocal
          : this.local.initialMaxStreamDataBidiRemote;
      recv = new RecvStream(id, {
        initialWindowBytes,
        maxWindowBytes: this.local.maxStreamWindowBytes,
        onTerminal: this.onRecvTerminal,
        onDiscarded: this.onDiscarded,
      });
    }
    const entry: StreamEntry = send && recv ? { id, send, recv } : send ? { id, send } : { id, recv: recv! };
    this.streams.set(id, entry);
  }

  /**
   * Forget the stream if both halves are done (send: all data acknowledged or reset; receive: end
   * read or reset). Streams also collect themselves when a half finishes; calling this is always safe.
   */
  collect(id: number): boolean {
    const entry = this.streams.get(id);
    if (entry === undefined) return false;
    if (entry.send !== undefined && !entry.send.isTerminal) return false;
    if (entry.recv !== undefined && !entry.recv.isTerminal) return false;
    this.streams.delete(id);
    this.sendOrder.delete(id);
    if (streamIdInitiator(id) !== this.role) this.closedPeerStreams[dir(streamIdIsBidirectional(id))]++;
    return true;
  }

  /** RFC 9000 §19.11: MAX_STREAMS never lowers the limit; beyond 2^60 is FRAME_ENCODING_ERROR. */
  onMaxStreams(bidi: boolean, max: number): void {
    if (max > MAX_STREAM_COUNT) {
      throw new QuicTransportError("FRAME_ENCODING_ERROR", `MAX_STREAMS ${max} exceeds 2^60`, bidi ? 0x12 : 0x13);
    }
    const d = dir(bidi);
    if (max > this.peerMaxStreams[d]) this.peerMaxStreams[d] = max;
  }

  /**
   * MAX_STREAMS updates to send: as the peer's streams close, the limit rises by as many, so the
   * peer may keep the initially allowed number open (§4.6). Each returned value is advertised.
   */
  pollMaxStreams(): Array<{ bidi: boolean; max: number }> {
    const out: Array<{ bidi: boolean; max: number }> = [];
    for (const bidi of [true, false]) {
      const d = dir(bidi);
      const initial = bidi ? this.local.maxStreamsBidi : this.local.maxStreamsUni;
      const desired = Math.min(initial + this.closedPeerStreams[d], MAX_STREAM_COUNT);
      if (desired > this.localMaxStreams[d]) {
        this.localMaxStreams[d] = desired;
        out.push({ bidi, max: desired });
      }
    }
    return out;
  }

  /** Peer streams opened (explicitly or implicitly) since the last call, lowest first. */
  drainOpened(): number[] {
    if (this.opened.length === 0) return [];
    const out = this.opened;
    this.opened = [];
    return out;
  }

  /** Received bytes that were discarded unread (RESET_STREAM, STOP_SENDING) since the last call: count them as consumed for MAX_DATA (§4.5). */
  takeDiscardedBytes(): number {
    const n = this.discardedBytes;
    this.discardedBytes = 0;
    return n;
  }

  /**
   * Streams with something to send, in round-robin order: a stream that sent a chunk (nextChunk)
   * while yielded moves to the back, so each call starts with the stream served least recently.
   * `connectionCredit` leaves out streams that only have new data when the connection is blocked.
   */
  *sendable(connectionCredit = Number.POSITIVE_INFINITY): Generator<SendStream, void, undefined> {
    if (this.sendOrder.size === 0) return;
    const snapshot = Array.from(this.sendOrder.values());
    const served: SendStream[] = [];
    let current: SendStream | undefined;
    let chunksBefore = 0;
    try {
      for (const stream of snapshot) {
        if (!stream.hasDataToSend(connectionCredit)) continue;
        current = stream;
        chunksBefore = stream.chunksSent;
        yield stream;
        if (stream.chunksSent !== chunksBefore) served.push(stream);
        current = undefined;
      }
    } finally {
      // Also reached when the caller stops iterating early (packet full).
      if (current !== undefined && current.chunksSent !== chunksBefore) served.push(current);
      for (const stream of served) {
        if (!this.sendOrder.delete(stream.id)) continue;
        this.sendOrder.set(stream.id, stream);
      }
    }
  }

  toJSON(): object {
    return {
      role: this.role,
      open: this.streams.size,
      nextLocalIndex: { ...this.nextLocalIndex },
      nextPeerIndex: { ...this.nextPeerIndex },
      peerMaxStreams: { ...this.peerMaxStreams },
      localMaxStreams: { ...this.localMaxStreams },
      closedPeerStreams: { ...this.closedPeerStreams },
      streams: Array.from(this.streams.values(), (e) => ({ id: e.id, send: e.send?.toJSON(), recv: e.recv?.toJSON() })),
    };
  }
}
