/** Bounds-checked reader for TLS presentation-language structures (RFC 8446 §3); any overrun is a decode_error. */
import { TlsAlertError } from "./tls-alert.ts";

export class TlsReader {
  private readonly bytes: Buffer;
  private offset: number;
  private readonly end: number;

  constructor(bytes: Buffer, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.offset = start;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.offset;
  }

  private need(n: number, what: string): void {
    if (this.end - this.offset < n) throw new TlsAlertError("decode_error", `truncated ${what}`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.bytes[this.offset++]!;
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.bytes.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  u24(what: string): number {
    this.need(3, what);
    const v = this.bytes.readUIntBE(this.offset, 3);
    this.offset += 3;
    return v;
  }

  /** A view (no copy) of the next n bytes. */
  bytesView(n: number, what: string): Buffer {
    this.need(n, what);
    const v = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }

  /** opaque x<min..2^(8*lengthBytes)-1>: a view of the body. */
  vector(lengthBytes: 1 | 2 | 3, what: string, minLength = 0): Buffer {
    const n = lengthBytes === 1 ? this.u8(what) : lengthBytes === 2 ? this.u16(what) : this.u24(what);
    if (n < minLength) throw new TlsAlertError("decode_error", `${what} shorter than ${minLength} bytes`);
    return this.bytesView(n, what);
  }

  /** A reader over the body of a length-prefixed vector. */
  subReader(lengthBytes: 1 | 2 | 3, what: string, minLength = 0): TlsReader {
    const body = this.vector(lengthBytes, what, minLength);
    return new TlsReader(body);
  }

  expectEnd(what: string): void {
    if (this.offset !== this.end) throw new TlsAlertError("decode_error", `${this.end - this.offset} trailing bytes after ${what}`);
  }
}
