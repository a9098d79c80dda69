import { describe, expect, it } from "vitest";
import { QuicTransportError } from "./errors.ts";
import { decodePacketNumber, encodePacketNumberLength } from "./packet-number.ts";
import { ByteReader, ByteWriter, VARINT_MAX, varintLength } from "./varint.ts";

const hex = (s: string): Buffer => Buffer.from(s, "hex");

describe("RFC 9000 Appendix A.1: variable-length integers", () => {
  const examples: Array<[string, number]> = [
    ["c2197c5eff14e88c", 151288809941952652],
    ["9d7f3e7d", 494878333],
    ["7bbd", 15293],
    ["25", 37],
    ["4025", 37],
  ];
  for (const [encoded, value] of examples) {
    it(`decodes ${encoded} to ${value}`, () => {
      const r = new ByteReader(hex(encoded));
      expect(r.varint()).toBe(value);
      expect(r.remaining).toBe(0);
    });
  }

  it("encodes the examples in their shortest form", () => {
    for (const [encoded, value] of examples.slice(1, 4)) {
      const w = new ByteWriter(1);
      w.varint(value);
      expect(w.finish().toString("hex")).toBe(encoded);
    }
  });

  it("round-trips the boundaries of each length", () => {
    const values = [0, 63, 64, 16383, 16384, 2 ** 30 - 1, 2 ** 30, 2 ** 53 - 1, VARINT_MAX];
    const w = new ByteWriter(4);
    for (const v of values) w.varint(v);
    const r = new ByteReader(w.finish());
    for (const v of values) expect(r.varint()).toBe(v);
    expect(values.map(varintLength)).toEqual([1, 1, 2, 2, 4, 4, 8, 8, 8]);
  });

  it("throws FRAME_ENCODING_ERROR when reading past the end", () => {
    expect(() => new ByteReader(hex("c2197c")).varint()).toThrow(QuicTransportError);
    expect(() => new ByteReader(hex("01")).u16()).toThrow(expect.objectContaining({ code: 0x07 }));
    expect(() => new ByteReader(hex("0102")).bytes(3)).toThrow(QuicTransportError);
  });

  it("reads fixed-width integers and returns subarrays without copying", () => {
    const buf = hex("0102030405060708090a");
    const r = new ByteReader(buf);
    expect([r.u8(), r.u16(), r.u24()]).toEqual([0x01, 0x0203, 0x040506]);
    expect(r.u32()).toBe(0x0708090a);
    const view = new ByteReader(buf, 2).bytes(3);
    buf[2] = 0xff;
    expect(view[0]).toBe(0xff);
  });

  it("writes u32 values with the high bit set", () => {
    const w = new ByteWriter(1);
    w.u32(0xff000001);
    w.u24(0xabcdef);
    expect(w.finish().toString("hex")).toBe("ff000001abcdef");
  });
});

describe("RFC 9000 Appendix A.2/A.3: packet numbers", () => {
  it("A.2: 0xac5c02 after 0xabe8b3 takes 2 bytes, 0xace8fe takes 3", () => {
    expect(encodePacketNumberLength(0xac5c02, 0xabe8b3)).toBe(2);
    expect(encodePacketNumberLength(0xace8fe, 0xabe8b3)).toBe(3);
    expect(encodePacketNumberLength(0, undefined)).toBe(1);
  });

  it("A.3: 0x9b32 with largest 0xa82f30ea decodes to 0xa82f9b32", () => {
    expect(decodePacketNumber(0xa82f30ea, 0x9b32, 16)).toBe(0xa82f9b32);
  });

  it("decodes 4-byte truncated packet numbers with the top bit set", () => {
    expect(decodePacketNumber(0xfffffff0, 0xfffffffe, 32)).toBe(0xfffffffe);
    expect(decodePacketNumber(2 ** 40 + 0x7ffffff0, 0x80000005, 32)).toBe(2 ** 40 + 0x80000005);
  });

  it("round-trips random packet numbers through the chosen truncation", () => {
    const next = mulberry32(7);
    for (let i = 0; i < 2000; i++) {
      const largestAcked = next() * 1000 + (next() % 1000);
      const fullPn = largestAcked + 1 + (i % 2 === 0 ? next() % 100000 : next() % 2 ** 31);
      const length = encodePacketNumberLength(fullPn, largestAcked);
      const truncated = fullPn % 2 ** (8 * length);
      // The receiver has seen at least largestAcked.
      expect(decodePacketNumber(largestAcked, truncated, 8 * length)).toBe(fullPn);
    }
  });
});

/** Seeded 32-bit PRNG (mulberry32), returning integers in [0, 2^32). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}
