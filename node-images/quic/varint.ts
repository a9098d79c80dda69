/**
 * Byte-level reading and writing for the QUIC wire format, including variable-length
 * integers (RFC 9000 §16). Varints decode to a JS number: values above 2^53 lose precision.
 * Such values only appear as "infinite" limits (e.g. max_streams near 2^60), where that is harmless.
 */
import { QuicTransportError } from "./errors.ts";

/** RFC 9000 §16: the largest encodable varint, 2^62 - 1. */
export const VARINT_MAX = 2 ** 62 - 1;

function truncated(): QuicTransportError {
  return new QuicTransportError("FRAME_ENCODING_ERROR", "truncated input");
}

export class ByteReader {
  readonly buf: Uint8Array;
  offset: number;
  /** Reads stop here (exclusive). */
  readonly end: number;

  constructor(buf: Uint8Array, offset = 0, end = buf.length) {
    this.buf = buf;
    this.offset = offset;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.offset;
  }

  u8(): number {
    if (this.offset >= this.end) throw truncated();
    return this.buf[this.offset++]!;
  }

  u16(): number {
    if (this.offset + 2 > this.end) throw truncated();
    const b = this.buf, o = this.offset;
    this.offset = o + 2;
    return (b[o]! << 8) | b[o + 1]!;
  }

  u24(): number {
    if (this.offset + 3 > this.end) throw truncated();
    const b = this.buf, o = this.offset;
    this.offset = o + 3;
    return (b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]!;
  }

  u32(): number {
    if (this.offset + 4 > this.end) throw truncated();
    const b = this.buf, o = this.offset;
    this.offset = o + 4;
    return ((b[o]! << 24) >>> 0) + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
  }

  /** RFC 9000 §16 / Appendix A.1. */
  varint(): number {
    if (this.offset >= this.end) throw truncated();
    const b = this.buf;
    const o = this.offset;
    const first = b[o]!;
    const prefix = first >> 6;
    const length = 1 << prefix;
    if (o + length > this.end) throw truncated();
    this.offset = o + length;
    let v = first & 0x3f;
    if (length === 1) return v;
    if (length === 2) return (v << 8) | b[o + 1]!;
    if (length === 4) return v * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
    // 8 bytes: combine two 32-bit halves (high part has 30 bits).
    const high = v * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
    const low = ((b[o + 4]! << 24) >>> 0) + ((b[o + 5]! << 16) | (b[o + 6]! << 8) | b[o + 7]!);
    return high * 0x100000000 + low;
  }

  /** A view into the underlying buffer (no copy). */
  bytes(n: number): Uint8Array {
    if (n < 0 || this.offset + n > this.end) throw truncated();
    const out = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }
}

/** RFC 9000 §16: bytes needed to encode v. */
export function varintLength(v: number): number {
  if (v < 0x40) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x40000000) return 4;
  if (v <= VARINT_MAX) return 8;
  throw new RangeError(`varint out of range: ${v}`);
}

/**
 * RFC 9000 §16: write v into buf at offset using `length` bytes (default: shortest); returns the offset after it.
 * The caller guarantees the room.
 */
export function writeVarint(buf: Buffer, offset: number, v: number, length = varintLength(v)): number {
  if (length === 1) {
    buf[offset] = v;
  } else if (length === 2) {
    buf[offset] = 0x40 | (v >>> 8);
    buf[offset + 1] = v;
  } else if (length === 4) {
    buf.writeUInt32BE(v + 0x80000000, offset);
  } else if (v >= 2 ** 62) {
    // 2^62 - 1 is not representable as a double; it rounds up to 2^62, which means "the maximum".
    buf.fill(0xff, offset, offset + 8);
  } else {
    const high = Math.floor(v / 0x100000000);
    buf.writeUInt32BE(high >>> 0, offset);
    buf[offset] = 0xc0 | (buf[offset]! & 0x3f);
    buf.writeUInt32BE((v - high * 0x100000000) >>> 0, offset + 4);
  }
  return offset + length;
}

/**
 * A copy in memory of its own, for small values kept for a connection's lifetime (connection IDs,
 * tokens, transport parameters). Buffer.from() of a small value is a slice of a shared 64 KiB pool,
 * and one long-lived slice keeps the whole pool alive: about 11 KB per idle connection before this
 * (bench/quic-memory.bench.ts).
 */
export function ownedCopy(src: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(src.length);
  out.set(src);
  return out;
}

export class ByteWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialCapacity = 256) {
    this.buf = Buffer.allocUnsafe(Math.max(16, initialCapacity));
  }

  get length(): number {
    return this.pos;
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.reserve(2);
    this.buf[this.pos++] = v >>> 8;
    this.buf[this.pos++] = v;
  }

  u24(v: number): void {
    this.reserve(3);
    this.buf[this.pos++] = v >>> 16;
    this.buf[this.pos++] = v >>> 8;
    this.buf[this.pos++] = v;
  }

  u32(v: number): void {
    this.reserve(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
  }

  /** RFC 9000 §16: shortest encoding. Values must be integers in [0, 2^62-1]. */
  varint(v: number): void {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`);
    this.varintWithLength(v, varintLength(v));
  }

  /** Encode v using exactly `length` bytes (1, 2, 4 or 8), e.g. for a length field patched later. */
  varintWithLength(v: number, length: number): void {
    this.reserve(length);
    this.pos = writeVarint(this.buf, this.pos, v, length);
  }

  bytes(data: Uint8Array): void {
    this.reserve(data.length);
    this.buf.set(data, this.pos);
    this.pos += data.length;
  }

  /** Zero bytes (PADDING). */
  zeros(n: number): void {
    this.reserve(n);
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
  }

  /** The bytes written so far: a view into the writer's buffer (no copy), valid until the next write. */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
