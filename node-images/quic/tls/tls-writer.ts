/** Growable writer for TLS presentation-language structures (RFC 8446 §3), with back-patched vector lengths. */
export class TlsWriter {
  private buffer: Buffer;
  private offset = 0;

  constructor(initialSize = 512) {
    this.buffer = Buffer.allocUnsafe(initialSize);
  }

  private reserve(n: number): void {
    if (this.offset + n <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.offset + n));
    this.buffer.copy(grown, 0, 0, this.offset);
    this.buffer = grown;
  }

  u8(v: number): this {
    this.reserve(1);
    this.buffer[this.offset++] = v;
    return this;
  }

  u16(v: number): this {
    this.reserve(2);
    this.buffer.writeUInt16BE(v, this.offset);
    this.offset += 2;
    return this;
  }

  u24(v: number): this {
    this.reserve(3);
    this.buffer.writeUIntBE(v, this.offset, 3);
    this.offset += 3;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.reserve(b.length);
    this.buffer.set(b, this.offset);
    this.offset += b.length;
    return this;
  }

  /** Writes a length-prefixed vector whose body `body` writes; the length is patched afterwards. */
  vector(lengthBytes: 1 | 2 | 3, body: (w: this) => void): this {
    this.reserve(lengthBytes);
    const at = this.offset;
    this.offset += lengthBytes;
    body(this);
    const length = this.offset - at - lengthBytes;
    if (length >= 2 ** (8 * lengthBytes)) throw new RangeError(`vector of ${length} bytes overflows a ${lengthBytes}-byte length`);
    this.buffer.writeUIntBE(length, at, lengthBytes);
    return this;
  }

  /** The bytes written so far (a view, valid until the next write). */
  finish(): Buffer {
    return this.buffer.subarray(0, this.offset);
  }
}
