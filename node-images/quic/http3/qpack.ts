/**
 * QPACK (RFC 9204) with a dynamic table of capacity 0: field sections use the static table and
 * literals only. We advertise SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0, so a peer's field section that
 * references the dynamic table, or an encoder-stream insert, is an error (§2.2.3, §4.3, §4.5.1.1).
 * Errors are thrown as QpackError; the HTTP/3 connection turns them into connection errors.
 */
import { huffmanDecode, huffmanEncode, huffmanEncodedLength, HuffmanDecodeError } from "./huffman.ts";
import { findStatic, QPACK_STATIC_TABLE } from "./qpack-static-table.ts";

export const QPACK_ERROR_CODES = {
  QPACK_DECOMPRESSION_FAILED: 0x200,
  QPACK_ENCODER_STREAM_ERROR: 0x201,
  QPACK_DECODER_STREAM_ERROR: 0x202,
} as const;
export type QpackErrorName = keyof typeof QPACK_ERROR_CODES;

export class QpackError extends Error {
  override readonly name = "QpackError";
  readonly code: QpackErrorName;
  readonly errorCode: number;
  constructor(code: QpackErrorName, reason: string) {
    super(`${code}: ${reason}`);
    this.code = code;
    this.errorCode = QPACK_ERROR_CODES[code];
  }
}

/** A field line: name (lowercase for HTTP/3) and value, as bytes decoded as latin1 strings. */
export type FieldLine = readonly [name: string, value: string];

/** Signals "need more bytes" inside the incremental instruction parsers. */
class Truncated extends Error {}

/** RFC 7541 §5.1 prefixed integer, with a cap that keeps values exact in a double. */
function readPrefixedInt(buf: Uint8Array, pos: { offset: number }, prefixBits: number, onError: () => Error): number {
  if (pos.offset >= buf.length) throw new Truncated();
  const max = (1 << prefixBits) - 1;
  let value = buf[pos.offset++]! & max;
  if (value < max) return value;
  let multiplier = 1;
  for (;;) {
    if (pos.offset >= buf.length) throw new Truncated();
    const b = buf[pos.offset++]!;
    value += (b & 0x7f) * multiplier;
    if (value > Number.MAX_SAFE_INTEGER / 2) throw onError();
    if ((b & 0x80) === 0) return value;
    multiplier *= 128;
  }
}

function writePrefixedInt(out: number[], prefixBits: number, flags: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  value -= max;
  while (value >= 128) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

/** RFC 9204 §4.1.2: a string literal whose H flag sits just above a `prefixBits`-bit length. */
function writeStringLiteral(out: number[], prefixBits: number, flags: number, text: string, huffman: boolean | undefined): void {
  const raw = Buffer.from(text, "latin1");
  const useHuffman = huffman ?? huffmanEncodedLength(raw) < raw.length;
  const bytes = useHuffman ? huffmanEncode(raw) : raw;
  writePrefixedInt(out, prefixBits, flags | (useHuffman ? 1 << prefixBits : 0), bytes.length);
  for (const b of bytes) out.push(b);
}

function readStringLiteral(buf: Uint8Array, pos: { offset: number }, prefixBits: number, maxBytes: number): string {
  const decompressionFailed = () => new QpackError("QPACK_DECOMPRESSION_FAILED", "string length too large");
  const huffman = (buf[pos.offset]! >> prefixBits) & 1;
  const length = readPrefixedInt(buf, pos, prefixBits, decompressionFailed);
  if (length > maxBytes) throw new QpackError("QPACK_DECOMPRESSION_FAILED", `string literal of ${length} bytes exceeds ${maxBytes}`);
  if (pos.offset + length > buf.length) throw new Truncated();
  const bytes = buf.subarray(pos.offset, pos.offset + length);
  pos.offset += length;
  if (!huffman) return Buffer.from(bytes).toString("latin1");
  try {
    return huffmanDecode(bytes).toString("latin1");
  } catch (err) {
    if (err instanceof HuffmanDecodeError) throw new QpackError("QPACK_DECOMPRESSION_FAILED", err.message);
    throw err;
  }
}

export interface EncodeOptions {
  /** Force Huffman on (true) or off (false); default: whichever is shorter, per string. */
  huffman?: boolean;
}

/**
 * Encode a field section with Required Insert Count 0 and Base 0 (RFC 9204 §4.5.1), using an
 * Indexed Field Line for exact static matches, a Literal with Static Name Reference when only the
 * name matches, and a Literal with Literal Name otherwise.
 */
export function encodeFieldSection(fields: readonly FieldLine[], opts: EncodeOptions = {}): Buffer {
  const out: number[] = [0x00, 0x00];
  for (const [name, value] of fields) {
    const match = findStatic(name, value);
    if (match?.exact) {
      // §4.5.2: 1 T=1 index(6)
      writePrefixedInt(out, 6, 0xc0, match.index);
    } else if (match) {
      // §4.5.4: 0 1 N=0 T=1 index(4), then the value with a 7-bit length prefix.
      writePrefixedInt(out, 4, 0x50, match.index);
      writeStringLiteral(out, 7, 0x00, value, opts.huffman);
    } else {
      // §4.5.6: 0 0 1 N=0 H len(3) name, then the value.
      writeStringLiteral(out, 3, 0x20, name, opts.huffman);
      writeStringLiteral(out, 7, 0x00, value, opts.huffman);
    }
  }
  return Buffer.from(out);
}

export interface DecodeOptions {
  /** The SETTINGS_QPACK_MAX_TABLE_CAPACITY we advertised (0: no dynamic table). */
  maxTableCapacity?: number;
  /** Largest name or value accepted, a guard against memory exhaustion. */
  maxStringBytes?: number;
}

/**
 * Decode a complete field section (the payload of a HEADERS frame). With no dynamic table, a
 * non-zero Required Insert Count or any dynamic reference fails with QPACK_DECOMPRESSION_FAILED.
 */
export function decodeFieldSection(data: Uint8Array, opts: DecodeOptions = {}): FieldLine[] {
  const maxStringBytes = opts.maxStringBytes ?? 64 * 1024;
  const maxEntries = Math.floor((opts.maxTableCapacity ?? 0) / 32);
  const fail = (reason: string) => new QpackError("QPACK_DECOMPRESSION_FAILED", reason);
  const pos = { offset: 0 };
  try {
    const encodedInsertCount = readPrefixedInt(data, pos, 8, () => fail("Required Insert Count too large"));
    // §4.5.1.1: with MaxEntries 0 only an encoded value of 0 is valid; we never insert, so any
    // other value references a dynamic table we did not allow.
    if (encodedInsertCount !== 0) {
      throw fail(maxEntries === 0
        ? `Required Insert Count ${encodedInsertCount} (encoded) with a dynamic table capacity of 0`
        : `Required Insert Count ${encodedInsertCount} (encoded) references dynamic entries we never received`);
    }
    const signBit = pos.offset < data.length ? data[pos.offset]! & 0x80 : 0;
    const deltaBase = readPrefixedInt(data, pos, 7, () => fail("Delta Base too large"));
    // §4.5.1.2: Base = RIC - DeltaBase - 1 when the sign is set, which with RIC 0 is negative: an error.
    if (signBit) throw fail(`negative Base (Required Insert Count 0, Delta Base ${deltaBase}, sign 1)`);
    const fields: FieldLine[] = [];
    while (pos.offset < data.length) {
      const first = data[pos.offset]!;
      if (first & 0x80) {
        // §4.5.2 Indexed Field Line: 1 T index(6)
        if (!(first & 0x40)) throw fail("Indexed Field Line references the dynamic table");
        const index = readPrefixedInt(data, pos, 6, () => fail("index too large"));
        fields.push(staticEntry(index));
      } else if (first & 0x40) {
        // §4.5.4 Literal Field Line with Name Reference: 0 1 N T index(4)
        if (!(first & 0x10)) throw fail("Literal Field Line references a dynamic table name");
        const index = readPrefixedInt(data, pos, 4, () => fail("index too large"));
        const name = staticEntry(index)[0];
        fields.push([name, readStringLiteral(data, pos, 7, maxStringBytes)]);
      } else if (first & 0x20) {
        // §4.5.6 Literal Field Line with Literal Name: 0 0 1 N H len(3)
        const name = readStringLiteral(data, pos, 3, maxStringBytes);
        fields.push([name, readStringLiteral(data, pos, 7, maxStringBytes)]);
      } else {
        // §4.5.3 Indexed Field Line with Post-Base Index (0001) and §4.5.5 Literal with
        // Post-Base Name Reference (0000): both need the dynamic table.
        throw fail("post-base reference to the dynamic table");
      }
    }
    return fields;
  } catch (err) {
    if (err instanceof Truncated) throw fail("truncated field section");
    throw err;
  }
}

function staticEntry(index: number): FieldLine {
  const entry = QPACK_STATIC_TABLE[index];
  // §3.1: an index past the static table is QPACK_DECOMPRESSION_FAILED on a request stream.
  if (!entry) throw new QpackError("QPACK_DECOMPRESSION_FAILED", `static table index ${index} out of range (0-98)`);
  return entry;
}

/**
 * The peer's encoder stream (RFC 9204 §4.3), read by our decoder. With capacity 0 the only
 * acceptable instruction is Set Dynamic Table Capacity 0; inserts cannot fit (§4.3.1, §3.2.2).
 */
export class QpackEncoderStreamReceiver {
  private pending: Buffer = Buffer.alloc(0);
  private readonly maxTableCapacity: number;

  constructor(maxTableCapacity = 0) {
    this.maxTableCapacity = maxTableCapacity;
  }

  /** Consume bytes; throws QpackError(QPACK_ENCODER_STREAM_ERROR) on an instruction we cannot honour. */
  receive(data: Uint8Array): void {
    this.pending = this.pending.length === 0 ? Buffer.from(data) : Buffer.concat([this.pending, data]);
    const fail = (reason: string) => new QpackError("QPACK_ENCODER_STREAM_ERROR", reason);
    while (this.pending.length > 0) {
      const first = this.pending[0]!;
      const pos = { offset: 0 };
      try {
        if ((first & 0xe0) === 0x20) {
          // §4.3.1 Set Dynamic Table Capacity: 0 0 1 capacity(5)
          const capacity = readPrefixedInt(this.pending, pos, 5, () => fail("capacity too large"));
          if (capacity > this.maxTableCapacity) throw fail(`dynamic table capacity ${capacity} exceeds our limit ${this.maxTableCapacity}`);
        } else if (first & 0x80) {
          throw fail("Insert with Name Reference into a dynamic table of capacity 0");
        } else if (first & 0x40) {
          throw fail("Insert with Literal Name into a dynamic table of capacity 0");
        } else {
          throw fail("Duplicate of an entry in an empty dynamic table");
        }
      } catch (err) {
        if (err instanceof Truncated) return;
        throw err;
      }
      this.pending = this.pending.subarray(pos.offset);
    }
  }
}

/**
 * The peer's decoder stream (RFC 9204 §4.4), read by our encoder. We never insert or reference
 * dynamic entries, so Section Acknowledgment and Insert Count Increment are errors (§4.4.1,
 * §4.4.3); Stream Cancellation is harmless.
 */
export class QpackDecoderStreamReceiver {
  private pending: Buffer = Buffer.alloc(0);

  receive(data: Uint8Array): void {
    this.pending = this.pending.length === 0 ? Buffer.from(data) : Buffer.concat([this.pending, data]);
    const fail = (reason: string) => new QpackError("QPACK_DECODER_STREAM_ERROR", reason);
    while (this.pending.length > 0) {
      const first = this.pending[0]!;
      const pos = { offset: 0 };
      try {
        if (first & 0x80) {
          const streamId = readPrefixedInt(this.pending, pos, 7, () => fail("stream ID too large"));
          throw fail(`Section Acknowledgment for stream ${streamId}, which carried no dynamic references`);
        } else if (first & 0x40) {
          // §4.4.2 Stream Cancellation: nothing to release without a dynamic table.
          readPrefixedInt(this.pending, pos, 6, () => fail("stream ID too large"));
        } else {
          const increment = readPrefixedInt(this.pending, pos, 6, () => fail("increment too large"));
          throw fail(`Insert Count Increment of ${increment} beyond the 0 entries we inserted`);
        }
      } catch (err) {
        if (err instanceof Truncated) return;
        throw err;
      }
      this.pending = this.pending.subarray(pos.offset);
    }
  }
}
