/**
 * HTTP/3 frames (RFC 9114 §7), stream types (§6.2), settings (§7.2.4.1) and error codes (§8.1),
 * and an incremental frame reader for one stream. DATA payloads stream through in chunks; other
 * known frames are buffered whole (bounded); unknown and reserved (grease) types are skipped.
 */
import { ByteReader, ByteWriter, varintLength } from "../varint.ts";

/** RFC 9114 §8.1 and RFC 9204 §6. */
export const H3_ERROR_CODES = {
  H3_NO_ERROR: 0x100,
  H3_GENERAL_PROTOCOL_ERROR: 0x101,
  H3_INTERNAL_ERROR: 0x102,
  H3_STREAM_CREATION_ERROR: 0x103,
  H3_CLOSED_CRITICAL_STREAM: 0x104,
  H3_FRAME_UNEXPECTED: 0x105,
  H3_FRAME_ERROR: 0x106,
  H3_EXCESSIVE_LOAD: 0x107,
  H3_ID_ERROR: 0x108,
  H3_SETTINGS_ERROR: 0x109,
  H3_MISSING_SETTINGS: 0x10a,
  H3_REQUEST_REJECTED: 0x10b,
  H3_REQUEST_CANCELLED: 0x10c,
  H3_REQUEST_INCOMPLETE: 0x10d,
  H3_MESSAGE_ERROR: 0x10e,
  H3_CONNECT_ERROR: 0x10f,
  H3_VERSION_FALLBACK: 0x110,
  QPACK_DECOMPRESSION_FAILED: 0x200,
  QPACK_ENCODER_STREAM_ERROR: 0x201,
  QPACK_DECODER_STREAM_ERROR: 0x202,
} as const;
export type H3ErrorName = keyof typeof H3_ERROR_CODES;

export function h3ErrorName(code: number): string {
  for (const [name, value] of Object.entries(H3_ERROR_CODES)) if (value === code) return name;
  return `0x${code.toString(16)}`;
}

/** A protocol violation found while reading: a connection error unless `stream` is set (§8). */
export class Http3Error extends Error {
  override readonly name = "Http3Error";
  readonly code: H3ErrorName;
  readonly errorCode: number;
  constructor(code: H3ErrorName, reason: string) {
    super(`${code}: ${reason}`);
    this.code = code;
    this.errorCode = H3_ERROR_CODES[code];
  }
}

export const FRAME_TYPES = {
  DATA: 0x00,
  HEADERS: 0x01,
  CANCEL_PUSH: 0x03,
  SETTINGS: 0x04,
  PUSH_PROMISE: 0x05,
  GOAWAY: 0x07,
  MAX_PUSH_ID: 0x0d,
} as const;

/** §7.2.8: HTTP/2 frame types with no HTTP/3 meaning; receiving one is H3_FRAME_UNEXPECTED. */
export const RESERVED_HTTP2_FRAME_TYPES: ReadonlySet<number> = new Set([0x02, 0x06, 0x08, 0x09]);

export const STREAM_TYPES = {
  CONTROL: 0x00,
  PUSH: 0x01,
  QPACK_ENCODER: 0x02,
  QPACK_DECODER: 0x03,
} as const;

export const SETTINGS_IDS = {
  QPACK_MAX_TABLE_CAPACITY: 0x01,
  MAX_FIELD_SECTION_SIZE: 0x06,
  QPACK_BLOCKED_STREAMS: 0x07,
} as const;

/** §7.2.4.1 / §11.2.2: HTTP/2 setting identifiers; receiving one is H3_SETTINGS_ERROR. */
const RESERVED_HTTP2_SETTINGS: ReadonlySet<number> = new Set([0x00, 0x02, 0x03, 0x04, 0x05]);

/** §7.2.8 / §6.2.3: reserved "grease" identifiers 0x1f * N + 0x21. */
export function isGreaseId(id: number): boolean {
  return id >= 0x21 && (id - 0x21) % 0x1f === 0;
}

export function greaseId(n: number): number {
  return 0x1f * n + 0x21;
}

export type Settings = Map<number, number>;

export function encodeFrame(type: number, payload: Uint8Array): Buffer {
  const w = new ByteWriter(payload.length + 16);
  w.varint(type);
  w.varint(payload.length);
  w.bytes(payload);
  return w.finish();
}

/** The header of a DATA frame alone, so a body can follow without a copy. */
export function encodeFrameHeader(type: number, payloadLength: number): Buffer {
  const w = new ByteWriter(varintLength(type) + varintLength(payloadLength));
  w.varint(type);
  w.varint(payloadLength);
  return w.finish();
}

export function encodeSettings(settings: Iterable<readonly [number, number]>): Buffer {
  const w = new ByteWriter(64);
  for (const [id, value] of settings) {
    w.varint(id);
    w.varint(value);
  }
  return encodeFrame(FRAME_TYPES.SETTINGS, w.finish());
}

export function decodeSettings(payload: Uint8Array): Settings {
  const r = new ByteReader(payload);
  const settings: Settings = new Map();
  while (r.remaining > 0) {
    let id: number, value: number;
    try {
      id = r.varint();
      value = r.varint();
    } catch {
      throw new Http3Error("H3_FRAME_ERROR", "truncated SETTINGS payload");
    }
    if (RESERVED_HTTP2_SETTINGS.has(id)) throw new Http3Error("H3_SETTINGS_ERROR", `HTTP/2 setting 0x${id.toString(16)} in SETTINGS`);
    // §7.2.4: the same identifier twice is a connection error of type H3_SETTINGS_ERROR.
    if (settings.has(id)) throw new Http3Error("H3_SETTINGS_ERROR", `setting 0x${id.toString(16)} appears twice`);
    settings.set(id, value);
  }
  return settings;
}

/** A payload that is exactly one varint (GOAWAY, MAX_PUSH_ID, CANCEL_PUSH); otherwise H3_FRAME_ERROR (§7.1). */
export function decodeSingleVarint(payload: Uint8Array, frameName: string): number {
  const r = new ByteReader(payload);
  let v: number;
  try {
    v = r.varint();
  } catch {
    throw new Http3Error("H3_FRAME_ERROR", `${frameName} payload is not a varint`);
  }
  if (r.remaining !== 0) throw new Http3Error("H3_FRAME_ERROR", `${frameName} has ${r.remaining} trailing bytes`);
  return v;
}

export function encodeSingleVarintFrame(type: number, value: number): Buffer {
  const w = new ByteWriter(8);
  w.varint(value);
  return encodeFrame(type, w.finish());
}

export type FrameReaderItem =
  /** A complete known non-DATA frame. */
  | { kind: "frame"; type: number; payload: Buffer }
  /** The start of a DATA frame (length known), then its payload in chunks. */
  | { kind: "dataStart"; length: number }
  | { kind: "data"; chunk: Buffer }
  /** An unknown or grease frame, skipped (§9: unknown types MUST be ignored). */
  | { kind: "skipped"; type: number; length: number };

/**
 * Parses frames from a stream's bytes as they arrive. `maxFrameBytes` bounds buffered non-DATA
 * frames (a HEADERS larger than that is H3_EXCESSIVE_LOAD, §10.5).
 */
export class FrameReader {
  private header: Buffer = Buffer.alloc(0);
  private current: { type: number; remaining: number; chunks: Buffer[] | undefined; mode: "buffer" | "data" | "skip" } | undefined;
  private readonly maxFrameBytes: number;

  constructor(maxFrameBytes = 256 * 1024) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** True when a frame has started and not finished: a FIN now truncates it (H3_FRAME_ERROR, §7.1). */
  get inFrame(): boolean {
    return this.current !== undefined || this.header.length > 0;
  }

  push(data: Buffer, out: FrameReaderItem[]): void {
    let offset = 0;
    while (offset < data.length) {
      if (!this.current) {
        // Header: type varint, length varint; may arrive split over several pushes.
        const need = this.headerBytesNeeded(data, offset);
        if (need === undefined) {
          this.header = Buffer.concat([this.header, data.subarray(offset)]);
          return;
        }
        const take = need - this.header.length;
        const headerBytes = this.header.length > 0 ? Buffer.concat([this.header, data.subarray(offset, offset + take)]) : data.subarray(offset, offset + take);
        offset += take;
        this.header = Buffer.alloc(0);
        const r = new ByteReader(headerBytes);
        const type = r.varint();
        const length = r.varint();
        if (RESERVED_HTTP2_FRAME_TYPES.has(type)) throw new Http3Error("H3_FRAME_UNEXPECTED", `reserved HTTP/2 frame type 0x${type.toString(16)}`);
        if (type === FRAME_TYPES.DATA) {
          out.push({ kind: "dataStart", length });
          this.current = { type, remaining: length, chunks: undefined, mode: "data" };
        } else if (isKnownFrameType(type)) {
          if (length > this.maxFrameBytes) throw new Http3Error("H3_EXCESSIVE_LOAD", `frame 0x${type.toString(16)} of ${length} bytes exceeds ${this.maxFrameBytes}`);
          this.current = { type, remaining: length, chunks: [], mode: "buffer" };
        } else {
          out.push({ kind: "skipped", type, length });
          this.current = { type, remaining: length, chunks: undefined, mode: "skip" };
        }
        if (length === 0) this.finishFrame(out);
        continue;
      }
      const c = this.current;
      const n = Math.min(c.remaining, data.length - offset);
      const slice = data.subarray(offset, offset + n);
      offset += n;
      c.remaining -= n;
      if (c.mode === "data") out.push({ kind: "data", chunk: slice });
      else if (c.mode === "buffer") c.chunks!.push(slice);
      if (c.remaining === 0) this.finishFrame(out);
    }
  }

  private finishFrame(out: FrameReaderItem[]): void {
    const c = this.current!;
    this.current = undefined;
    if (c.mode === "buffer") out.push({ kind: "frame", type: c.type, payload: Buffer.concat(c.chunks!) });
  }

  /** Total header length once enough bytes are known, else undefined. */
  private headerBytesNeeded(data: Buffer, offset: number): number | undefined {
    const available = this.header.length + (data.length - offset);
    const byteAt = (i: number) => (i < this.header.length ? this.header[i]! : data[offset + i - this.header.length]!);
    if (available < 1) return undefined;
    const typeLength = 1 << (byteAt(0) >> 6);
    if (available < typeLength + 1) return undefined;
    const lengthLength = 1 << (byteAt(typeLength) >> 6);
    const total = typeLength + lengthLength;
    return available < total ? undefined : total;
  }
}

function isKnownFrameType(type: number): boolean {
  return type === FRAME_TYPES.HEADERS || type === FRAME_TYPES.CANCEL_PUSH || type === FRAME_TYPES.SETTINGS ||
    type === FRAME_TYPES.PUSH_PROMISE || type === FRAME_TYPES.GOAWAY || type === FRAME_TYPES.MAX_PUSH_ID;
}
