/**
 * QUIC frames (RFC 9000 §19, DATAGRAM from RFC 9221 §4): parsing, encoding, and Table 3 properties.
 * Parsed byte fields (`data`, `token`, `connectionId`, ...) are views into the decrypted payload, not copies.
 */
import { QuicTransportError } from "./errors.ts";
import type { PacketType } from "./packet-header.ts";
import { ByteReader, ByteWriter, VARINT_MAX, varintLength } from "./varint.ts";

export interface AckRange {
  smallest: number;
  largest: number;
}

export interface EcnCounts {
  ect0: number;
  ect1: number;
  ce: number;
}

export type Frame =
  | { type: "padding"; /** Contiguous PADDING bytes collapsed into one frame. */ length: number }
  | { type: "ping" }
  /** RFC 9000 §19.3. `ranges` descending by `largest`; `ackDelay` is the raw encoded value (scale by ack_delay_exponent). */
  | { type: "ack"; ranges: AckRange[]; ackDelay: number; ecn?: EcnCounts }
  | { type: "reset_stream"; streamId: number; errorCode: number; finalSize: number }
  | { type: "stop_sending"; streamId: number; errorCode: number }
  | { type: "crypto"; offset: number; data: Uint8Array }
  | { type: "new_token"; token: Uint8Array }
  | { type: "stream"; streamId: number; offset: number; data: Uint8Array; fin: boolean }
  | { type: "max_data"; maximumData: number }
  | { type: "max_stream_data"; streamId: number; maximumStreamData: number }
  | { type: "max_streams"; bidi: boolean; maximumStreams: number }
  | { type: "data_blocked"; limit: number }
  | { type: "stream_data_blocked"; streamId: number; limit: number }
  | { type: "streams_blocked"; bidi: boolean; limit: number }
  | { type: "new_connection_id"; sequenceNumber: number; retirePriorTo: number; connectionId: Uint8Array; statelessResetToken: Uint8Array }
  | { type: "retire_connection_id"; sequenceNumber: number }
  | { type: "path_challenge"; data: Uint8Array }
  | { type: "path_response"; data: Uint8Array }
  | { type: "connection_close"; isApplication: boolean; errorCode: number; frameType: number; reason: string }
  | { type: "handshake_done" }
  | { type: "datagram"; data: Uint8Array };

export type FrameType = Frame["type"];

/** RFC 9000 §19: frame type codes (the base code where flag bits vary). */
export const FRAME_TYPE_CODES = {
  padding: 0x00, ping: 0x01, ack: 0x02, reset_stream: 0x04, stop_sending: 0x05, crypto: 0x06, new_token: 0x07,
  stream: 0x08, max_data: 0x10, max_stream_data: 0x11, max_streams: 0x12, data_blocked: 0x14,
  stream_data_blocked: 0x15, streams_blocked: 0x16, new_connection_id: 0x18, retire_connection_id: 0x19,
  path_challenge: 0x1a, path_response: 0x1b, connection_close: 0x1c, handshake_done: 0x1e, datagram: 0x30,
} as const satisfies Record<FrameType, number>;

export interface FrameProperties {
  /** RFC 9000 §13.2 / Table 3 "N": false for PADDING, ACK, CONNECTION_CLOSE. */
  ackEliciting: boolean;
  /** RFC 9000 §9.1 / Table 3 "P": PATH_CHALLENGE, PATH_RESPONSE, NEW_CONNECTION_ID, PADDING. */
  probing: boolean;
  /** Counts toward bytes in flight (RFC 9002 §2: ack-eliciting or PADDING; Table 3 "C" for ACK). */
  congestionControlled: boolean;
}

const plain: FrameProperties = { ackEliciting: true, probing: false, congestionControlled: true };
export const FRAME_PROPERTIES: Record<FrameType, FrameProperties> = {
  padding: { ackEliciting: false, probing: true, congestionControlled: true },
  ping: plain,
  ack: { ackEliciting: false, probing: false, congestionControlled: false },
  reset_stream: plain, stop_sending: plain, crypto: plain, new_token: plain, stream: plain,
  max_data: plain, max_stream_data: plain, max_streams: plain, data_blocked: plain,
  stream_data_blocked: plain, streams_blocked: plain,
  new_connection_id: { ackEliciting: true, probing: true, congestionControlled: true },
  retire_connection_id: plain,
  path_challenge: { ackEliciting: true, probing: true, congestionControlled: true },
  path_response: { ackEliciting: true, probing: true, congestionControlled: true },
  connection_close: { ackEliciting: false, probing: false, congestionControlled: false },
  handshake_done: plain,
  datagram: plain, // RFC 9221 §5: ack-eliciting, congestion controlled.
};

/** Packet types in which frames may appear. */
type FramePacketType = "initial" | "0rtt" | "handshake" | "1rtt";
const I = 1, Z = 2, H = 4, O = 8; // Initial, 0-RTT, Handshake, 1-RTT
const PACKET_TYPE_BIT: Record<FramePacketType, number> = { initial: I, "0rtt": Z, handshake: H, "1rtt": O };

/** RFC 9000 §12.4 Table 3 "Pkts" column (RFC 9221 §4 for DATAGRAM). */
const ALLOWED_IN: Record<FrameType, number> = {
  padding: I | Z | H | O, ping: I | Z | H | O, ack: I | H | O,
  reset_stream: Z | O, stop_sending: Z | O, crypto: I | H | O, new_token: O, stream: Z | O,
  max_data: Z | O, max_stream_data: Z | O, max_streams: Z | O, data_blocked: Z | O,
  stream_data_blocked: Z | O, streams_blocked: Z | O, new_connection_id: Z | O, retire_connection_id: Z | O,
  path_challenge: Z | O, path_response: O,
  connection_close: I | Z | H | O, // 0x1d (application) only in 0-RTT and 1-RTT, checked below
  handshake_done: O, datagram: Z | O,
};

/** RFC 9000 §4.6 / §19.11: stream counts above 2^60 cannot be encoded as stream IDs. */
const MAX_STREAMS_LIMIT = 2 ** 60;

function encodingError(reason: string, frameType: number): QuicTransportError {
  return new QuicTransportError("FRAME_ENCODING_ERROR", reason, frameType);
}

function utf8(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
}

function frameTypeName(code: number): FrameType | undefined {
  if (code <= 0x1e) {
    if (code >= 0x08 && code <= 0x0f) return "stream";
    switch (code) {
      case 0x00: return "padding";
      case 0x01: return "ping";
      case 0x02: case 0x03: return "ack";
      case 0x04: return "reset_stream";
      case 0x05: return "stop_sending";
      case 0x06: return "crypto";
      case 0x07: return "new_token";
      case 0x10: return "max_data";
      case 0x11: return "max_stream_data";
      case 0x12: case 0x13: return "max_streams";
      case 0x14: return "data_blocked";
      case 0x15: return "stream_data_blocked";
      case 0x16: case 0x17: return "streams_blocked";
      case 0x18: return "new_connection_id";
      case 0x19: return "retire_connection_id";
      case 0x1a: return "path_challenge";
      case 0x1b: return "path_response";
      case 0x1c: case 0x1d: return "connection_close";
      case 0x1e: return "handshake_done";
    }
  }
  if (code === 0x30 || code === 0x31) return "datagram";
  return undefined;
}

/**
 * RFC 9000 §12.4 / §19: parse all frames of a decrypted payload. Throws QuicTransportError:
 * FRAME_ENCODING_ERROR for malformed or unknown frames, PROTOCOL_VIOLATION for a frame not
 * allowed in this packet type or an empty payload.
 */
export function parseFrames(payload: Uint8Array, packetType: PacketType): Frame[] {
  if (packetType === "retry" || packetType === "version_negotiation") {
    throw new QuicTransportError("PROTOCOL_VIOLATION", `${packetType} packets carry no frames`);
  }
  // RFC 9000 §12.4: a packet must contain at least one frame.
  if (payload.length === 0) throw new QuicTransportError("PROTOCOL_VIOLATION", "packet without frames");
  const allowedBit = PACKET_TYPE_BIT[packetType];
  const r = new ByteReader(payload);
  const frames: Frame[] = [];
  while (r.remaining > 0) {
    const start = r.offset;
    const code = r.varint();
    if (r.offset - start !== varintLength(code)) {
      // RFC 9000 §12.4: frame types use the shortest encoding.
      throw new QuicTransportError("PROTOCOL_VIOLATION", "frame type not minimally encoded", code);
    }
    const type = frameTypeName(code);
    if (type === undefined) throw encodingError(`unknown frame type 0x${code.toString(16)}`, code);
    if ((ALLOWED_IN[type] & allowedBit) === 0 || (code === 0x1d && (allowedBit & (I | H)) !== 0)) {
      throw new QuicTransportError("PROTOCOL_VIOLATION", `${type} frame not allowed in ${packetType} packet`, code);
    }
    try {
      frames.push(parseFrameBody(r, code, type, payload));
    } catch (err) {
      if (err instanceof QuicTransportError && err.frameType === 0 && code !== 0) {
        // Add the frame type for CONNECTION_CLOSE (RFC 9000 §19.19).
        throw new QuicTransportError(err.code, `${type}: ${err.message}`, code);
      }
      throw err;
    }
  }
  return frames;
}

function parseFrameBody(r: ByteReader, code: number, type: FrameType, payload: Uint8Array): Frame {
  switch (type) {
    case "padding": {
      let length = 1;
      while (r.offset < payload.length && payload[r.offset] === 0) {
        r.offset++;
        length++;
      }
      return { type, length };
    }
    case "ping":
    case "handshake_done":
      return { type };
    case "ack": {
      // RFC 9000 §19.3.
      const largestAcknowledged = r.varint();
      const ackDelay = r.varint();
      const rangeCount = r.varint();
      const firstRange = r.varint();
      let smallest = largestAcknowledged - firstRange;
      if (smallest < 0) throw encodingError("first ACK range below zero", code);
      const ranges: AckRange[] = [{ smallest, largest: largestAcknowledged }];
      // Each further range takes at least 2 bytes, which bounds the loop by the payload size.
      if (rangeCount > r.remaining / 2) throw encodingError("ACK range count exceeds the frame", code);
      for (let i = 0; i < rangeCount; i++) {
        const gap = r.varint();
        const length = r.varint();
        const largest = smallest - gap - 2;
        smallest = largest - length;
        if (smallest < 0) throw encodingError("ACK range below zero", code);
        ranges.push({ smallest, largest });
      }
      if (code === 0x03) {
        const ecn = { ect0: r.varint(), ect1: r.varint(), ce: r.varint() };
        return { type, ranges, ackDelay, ecn };
      }
      return { type, ranges, ackDelay };
    }
    case "reset_stream":
      return { type, streamId: r.varint(), errorCode: r.varint(), finalSize: r.varint() };
    case "stop_sending":
      return { type, streamId: r.varint(), errorCode: r.varint() };
    case "crypto": {
      const offset = r.varint();
      const length = r.varint();
      // RFC 9000 §19.6: offset + length must not exceed 2^62 - 1.
      if (offset + length > VARINT_MAX) throw new QuicTransportError("FRAME_ENCODING_ERROR", "CRYPTO data beyond 2^62-1", code);
      return { type, offset, data: r.bytes(length) };
    }
    case "new_token": {
      const length = r.varint();
      // RFC 9000 §19.7: an empty token is a FRAME_ENCODING_ERROR.
      if (length === 0) throw encodingError("empty NEW_TOKEN", code);
      return { type, token: r.bytes(length) };
    }
    case "stream": {
      // RFC 9000 §19.8: OFF (0x04), LEN (0x02), FIN (0x01) bits.
      const streamId = r.varint();
      const offset = code & 0x04 ? r.varint() : 0;
      const length = code & 0x02 ? r.varint() : r.remaining;
      if (offset + length > VARINT_MAX) throw encodingError("STREAM data beyond 2^62-1", code);
      return { type, streamId, offset, data: r.bytes(length), fin: (code & 0x01) !== 0 };
    }
    case "max_data":
      return { type, maximumData: r.varint() };
    case "max_stream_data":
      return { type, streamId: r.varint(), maximumStreamData: r.varint() };
    case "max_streams": {
      const maximumStreams = r.varint();
      if (maximumStreams > MAX_STREAMS_LIMIT) throw encodingError("MAX_STREAMS above 2^60", code); // §19.11
      return { type, bidi: code === 0x12, maximumStreams };
    }
    case "data_blocked":
      return { type, limit: r.varint() };
    case "stream_data_blocked":
      return { type, streamId: r.varint(), limit: r.varint() };
    case "streams_blocked": {
      const limit = r.varint();
      if (limit > MAX_STREAMS_LIMIT) throw encodingError("STREAMS_BLOCKED above 2^60", code); // §19.14
      return { type, bidi: code === 0x16, limit };
    }
    case "new_connection_id": {
      // RFC 9000 §19.15.
      const sequenceNumber = r.varint();
      const retirePriorTo = r.varint();
      if (retirePriorTo > sequenceNumber) throw encodingError("Retire Prior To exceeds Sequence Number", code);
      const length = r.u8();
      if (length < 1 || length > 20) throw encodingError(`connection ID length ${length} outside 1..20`, code);
      const connectionId = r.bytes(length);
      return { type, sequenceNumber, retirePriorTo, connectionId, statelessResetToken: r.bytes(16) };
    }
    case "retire_connection_id":
      return { type, sequenceNumber: r.varint() };
    case "path_challenge":
    case "path_response":
      return { type, data: r.bytes(8) };
    case "connection_close": {
      // RFC 9000 §19.19: 0x1c carries the triggering frame type, 0x1d does not.
      const isApplication = code === 0x1d;
      const errorCode = r.varint();
      const frameType = isApplication ? 0 : r.varint();
      const reason = utf8(r.bytes(r.varint()));
      return { type, isApplication, errorCode, frameType, reason };
    }
    case "datagram": {
      // RFC 9221 §4: 0x31 has a Length field, 0x30 runs to the end of the packet.
      const length = code === 0x31 ? r.varint() : r.remaining;
      return { type, data: r.bytes(length) };
    }
  }
}

/** RFC 9000 §19.8: bytes of a STREAM frame besides its data (type, ID, offset when non-zero, length). */
export function streamFrameOverhead(streamId: number, offset: number, dataLength: number): number {
  return 1 + varintLength(streamId) + (offset > 0 ? varintLength(offset) : 0) + varintLength(dataLength);
}

/** Exact number of bytes `encodeFrame` writes for `f`. */
export function encodedFrameLength(f: Frame): number {
  switch (f.type) {
    case "padding": return f.length;
    case "ping": case "handshake_done": return 1;
    case "ack": {
      const first = f.ranges[0]!;
      let n = 1 + varintLength(first.largest) + varintLength(f.ackDelay) + varintLength(f.ranges.length - 1) + varintLength(first.largest - first.smallest);
      for (let i = 1; i < f.ranges.length; i++) {
        const range = f.ranges[i]!;
        n += varintLength(f.ranges[i - 1]!.smallest - range.largest - 2) + varintLength(range.largest - range.smallest);
      }
      if (f.ecn) n += varintLength(f.ecn.ect0) + varintLength(f.ecn.ect1) + varintLength(f.ecn.ce);
      return n;
    }
    case "reset_stream": return 1 + varintLength(f.streamId) + varintLength(f.errorCode) + varintLength(f.finalSize);
    case "stop_sending": return 1 + varintLength(f.streamId) + varintLength(f.errorCode);
    case "crypto": return 1 + varintLength(f.offset) + varintLength(f.data.length) + f.data.length;
    case "new_token": return 1 + varintLength(f.token.length) + f.token.length;
    case "stream": return streamFrameOverhead(f.streamId, f.offset, f.data.length) + f.data.length;
    case "max_data": return 1 + varintLength(f.maximumData);
    case "max_stream_data": return 1 + varintLength(f.streamId) + varintLength(f.maximumStreamData);
    case "max_streams": return 1 + varintLength(f.maximumStreams);
    case "data_blocked": return 1 + varintLength(f.limit);
    case "stream_data_blocked": return 1 + varintLength(f.streamId) + varintLength(f.limit);
    case "streams_blocked": return 1 + varintLength(f.limit);
    case "new_connection_id":
      return 1 + varintLength(f.sequenceNumber) + varintLength(f.retirePriorTo) + 1 + f.connectionId.length + 16;
    case "retire_connection_id": return 1 + varintLength(f.sequenceNumber);
    case "path_challenge": case "path_response": return 9;
    case "connection_close": {
      const reasonLength = Buffer.byteLength(f.reason, "utf8");
      return 1 + varintLength(f.errorCode) + (f.isApplication ? 0 : varintLength(f.frameType)) + varintLength(reasonLength) + reasonLength;
    }
    case "datagram": return 1 + varintLength(f.data.length) + f.data.length;
  }
}

/** RFC 9000 §19: append `f`. STREAM and DATAGRAM frames always carry a Length field. */
export function encodeFrame(w: ByteWriter, f: Frame): void {
  switch (f.type) {
    case "padding": w.zeros(f.length); return;
    case "ping": w.u8(0x01); return;
    case "handshake_done": w.u8(0x1e); return;
    case "ack": {
      const first = f.ranges[0]!;
      w.u8(f.ecn ? 0x03 : 0x02);
      w.varint(first.largest);
      w.varint(f.ackDelay);
      w.varint(f.ranges.length - 1);
      w.varint(first.largest - first.smallest);
      for (let i = 1; i < f.ranges.length; i++) {
        const range = f.ranges[i]!;
        w.varint(f.ranges[i - 1]!.smallest - range.largest - 2); // Gap
        w.varint(range.largest - range.smallest); // ACK Range Length
      }
      if (f.ecn) {
        w.varint(f.ecn.ect0);
        w.varint(f.ecn.ect1);
        w.varint(f.ecn.ce);
      }
      return;
    }
    case "reset_stream": w.u8(0x04); w.varint(f.streamId); w.varint(f.errorCode); w.varint(f.finalSize); return;
    case "stop_sending": w.u8(0x05); w.varint(f.streamId); w.varint(f.errorCode); return;
    case "crypto": w.u8(0x06); w.varint(f.offset); w.varint(f.data.length); w.bytes(f.data); return;
    case "new_token": w.u8(0x07); w.varint(f.token.length); w.bytes(f.token); return;
    case "stream": {
      w.u8(0x08 | (f.offset > 0 ? 0x04 : 0) | 0x02 | (f.fin ? 0x01 : 0));
      w.varint(f.streamId);
      if (f.offset > 0) w.varint(f.offset);
      w.varint(f.data.length);
      w.bytes(f.data);
      return;
    }
    case "max_data": w.u8(0x10); w.varint(f.maximumData); return;
    case "max_stream_data": w.u8(0x11); w.varint(f.streamId); w.varint(f.maximumStreamData); return;
    case "max_streams": w.u8(f.bidi ? 0x12 : 0x13); w.varint(f.maximumStreams); return;
    case "data_blocked": w.u8(0x14); w.varint(f.limit); return;
    case "stream_data_blocked": w.u8(0x15); w.varint(f.streamId); w.varint(f.limit); return;
    case "streams_blocked": w.u8(f.bidi ? 0x16 : 0x17); w.varint(f.limit); return;
    case "new_connection_id":
      w.u8(0x18);
      w.varint(f.sequenceNumber);
      w.varint(f.retirePriorTo);
      w.u8(f.connectionId.length);
      w.bytes(f.connectionId);
      w.bytes(f.statelessResetToken);
      return;
    case "retire_connection_id": w.u8(0x19); w.varint(f.sequenceNumber); return;
    case "path_challenge": w.u8(0x1a); w.bytes(f.data); return;
    case "path_response": w.u8(0x1b); w.bytes(f.data); return;
    case "connection_close": {
      const reason = Buffer.from(f.reason, "utf8");
      w.u8(f.isApplication ? 0x1d : 0x1c);
      w.varint(f.errorCode);
      if (!f.isApplication) w.varint(f.frameType);
      w.varint(reason.length);
      w.bytes(reason);
      return;
    }
    case "datagram": w.u8(0x31); w.varint(f.data.length); w.bytes(f.data); return;
  }
}
