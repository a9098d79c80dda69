import { describe, expect, it } from "vitest";
import { huffmanDecode, huffmanEncode, HuffmanDecodeError } from "./huffman.ts";
import { decodeFieldSection, encodeFieldSection, QpackDecoderStreamReceiver, QpackEncoderStreamReceiver, QpackError } from "./qpack.ts";
import { QPACK_STATIC_TABLE } from "./qpack-static-table.ts";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

function qpackErrorOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    if (err instanceof QpackError) return err.code;
    throw err;
  }
  return undefined;
}

describe("Huffman code (RFC 7541 §5.2, reused by RFC 9204 §4.1.2)", () => {
  // RFC 7541 Appendix C.4 (requests) and C.6 (responses), the Huffman-coded string literals.
  const vectors: Array<[string, string]> = [
    ["www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"],
    ["no-cache", "a8eb 1064 9cbf"],
    ["custom-key", "25a8 49e9 5ba9 7d7f"],
    ["custom-value", "25a8 49e9 5bb8 e8b4 bf"],
    ["302", "6402"],
    ["private", "aec3 771a 4b"],
    ["Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"],
    ["https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"],
    ["307", "640e ff"],
    ["Mon, 21 Oct 2013 20:13:22 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff"],
    ["gzip", "9bd9 ab"],
    ["foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
      "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07"],
  ];
  it.each(vectors)("RFC 7541 Appendix C: %s", (text, coded) => {
    expect(huffmanEncode(Buffer.from(text)).toString("hex")).toBe(hex(coded).toString("hex"));
    expect(huffmanDecode(hex(coded)).toString()).toBe(text);
  });

  it("round-trips every byte value", () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    expect(huffmanDecode(huffmanEncode(all)).equals(all)).toBe(true);
  });

  it("rejects padding of 8 bits or more, padding that is not all ones, and EOS inside the string (§5.2)", () => {
    expect(() => huffmanDecode(hex("ff"))).toThrow(HuffmanDecodeError); // 8 one-bits: too long as padding
    expect(() => huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4fe"))).toThrow(HuffmanDecodeError); // last bit 0
    expect(() => huffmanDecode(hex("ffff ffff"))).toThrow(HuffmanDecodeError); // EOS (30 ones) decoded
  });
});

describe("QPACK field sections with a dynamic table of capacity 0 (RFC 9204)", () => {
  it("RFC 9204 Appendix B.1: Literal Field Line with Name Reference, encoded byte for byte", () => {
    // B.1 stream 0 HEADERS: 0000 | 510b 2f69 6e64 6578 2e68 746d 6c  (:path=/index.html)
    const b1 = hex("0000 510b 2f69 6e64 6578 2e68 746d 6c");
    expect(encodeFieldSection([[":path", "/index.html"]], { huffman: false }).equals(b1)).toBe(true);
    expect(decodeFieldSection(b1)).toEqual([[":path", "/index.html"]]);
  });

  it("encodes exact static matches as Indexed Field Lines (§4.5.2, Appendix A indexes)", () => {
    // :method GET = 17, :scheme https = 23, :path / = 1, :status 200 = 25: 1 T=1 index(6) → 0xc0 | index.
    const block = encodeFieldSection([[":method", "GET"], [":scheme", "https"], [":path", "/"], [":status", "200"]]);
    expect(block.toString("hex")).toBe("0000d1d7c1d9");
    expect(decodeFieldSection(block)).toEqual([[":method", "GET"], [":scheme", "https"], [":path", "/"], [":status", "200"]]);
    // An index past 62 needs a continuation byte: x-frame-options: sameorigin = 98 → ff 23.
    expect(encodeFieldSection([["x-frame-options", "sameorigin"]]).toString("hex")).toBe("0000ff23");
  });

  it("uses Huffman for literals when shorter, and literal names for unknown fields (§4.5.6)", () => {
    const fields: Array<[string, string]> = [[":authority", "www.example.com"], ["custom-key", "custom-value"]];
    const block = encodeFieldSection(fields);
    // :authority is static index 0 with name reference: 0x50, then H=1 length 12 (0x8c) and C.4.1's coded value.
    expect(block.subarray(0, 4).toString("hex")).toBe("0000508c");
    expect(block.subarray(4, 16).toString("hex")).toBe("f1e3c2e5f23a6ba0ab90f4ff");
    expect(decodeFieldSection(block)).toEqual(fields);
    expect(decodeFieldSection(encodeFieldSection(fields, { huffman: false }))).toEqual(fields);
  });

  it("the static table has RFC 9204 Appendix A's 99 entries", () => {
    expect(QPACK_STATIC_TABLE.length).toBe(99);
    expect(QPACK_STATIC_TABLE[0]).toEqual([":authority", ""]);
    expect(QPACK_STATIC_TABLE[17]).toEqual([":method", "GET"]);
    expect(QPACK_STATIC_TABLE[25]).toEqual([":status", "200"]);
    expect(QPACK_STATIC_TABLE[98]).toEqual(["x-frame-options", "sameorigin"]);
  });

  it("RFC 9204 Appendix B.2's dynamic references are QPACK_DECOMPRESSION_FAILED when we allowed no table", () => {
    // B.2 stream 4: 0381 10 11 (Required Insert Count 2, post-base indexes 0 and 1).
    expect(qpackErrorOf(() => decodeFieldSection(hex("0381 1011")))).toBe("QPACK_DECOMPRESSION_FAILED");
    // B.3-style: Required Insert Count 0 but an Indexed Field Line with T=0 (dynamic, relative index 0).
    expect(qpackErrorOf(() => decodeFieldSection(hex("0000 80")))).toBe("QPACK_DECOMPRESSION_FAILED");
    // Literal with dynamic name reference (T=0), and post-base forms 0001xxxx / 0000xxxx.
    expect(qpackErrorOf(() => decodeFieldSection(hex("0000 4001 61")))).toBe("QPACK_DECOMPRESSION_FAILED");
    expect(qpackErrorOf(() => decodeFieldSection(hex("0000 10")))).toBe("QPACK_DECOMPRESSION_FAILED");
    expect(qpackErrorOf(() => decodeFieldSection(hex("0000 0001 61")))).toBe("QPACK_DECOMPRESSION_FAILED");
    // Sign bit set with Required Insert Count 0 gives a negative Base (§4.5.1.2).
    expect(qpackErrorOf(() => decodeFieldSection(hex("0080 d1")))).toBe("QPACK_DECOMPRESSION_FAILED");
  });

  it("garbage is QPACK_DECOMPRESSION_FAILED, never another exception", () => {
    const cases = [
      "", "00", "0000 ff", "0000 ff80808080808080808001", "0000 5f", "0000 510b 2f69", "0000 2f", "0000 c0ff",
      "0000 ff40", // static index 63+64 = 127 > 98
      "0000 5185 ffffffffff", // Huffman string that decodes EOS
    ];
    for (const c of cases) expect(qpackErrorOf(() => decodeFieldSection(hex(c))), c).toBe("QPACK_DECOMPRESSION_FAILED");
    // Seeded random bytes after a valid prefix: a QpackError or a decoded list, nothing else.
    let x = 12345;
    for (let i = 0; i < 2000; i++) {
      const n = 1 + (i % 40);
      const b = Buffer.alloc(n + 2);
      for (let j = 2; j < b.length; j++) b[j] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
      try {
        decodeFieldSection(b);
      } catch (err) {
        expect(err).toBeInstanceOf(QpackError);
      }
    }
  });

  it("encoder stream: Set Dynamic Table Capacity 0 is fine; B.2's capacity 220 and inserts are QPACK_ENCODER_STREAM_ERROR", () => {
    const ok = new QpackEncoderStreamReceiver(0);
    ok.receive(hex("20"));
    ok.receive(hex("3f")); // a split instruction: waits for more
    expect(qpackErrorOf(() => ok.receive(hex("bd01")))).toBe("QPACK_ENCODER_STREAM_ERROR"); // 3fbd01 = capacity 220 (B.2)
    // B.2's first insert: c00f 7777 772e ... (Insert With Name Reference, static index 0)
    expect(qpackErrorOf(() => new QpackEncoderStreamReceiver(0).receive(hex("c00f7777772e6578616d706c652e636f6d")))).toBe("QPACK_ENCODER_STREAM_ERROR");
    // B.4: 4a63 7573 ... (Insert With Literal Name), and B.3's Duplicate (02).
    expect(qpackErrorOf(() => new QpackEncoderStreamReceiver(0).receive(hex("4a637573746f6d2d6b65790c637573746f6d2d76616c7565")))).toBe("QPACK_ENCODER_STREAM_ERROR");
    expect(qpackErrorOf(() => new QpackEncoderStreamReceiver(0).receive(hex("02")))).toBe("QPACK_ENCODER_STREAM_ERROR");
  });

  it("decoder stream: Stream Cancellation is fine; B.2's Section Acknowledgment (84) and Insert Count Increment are QPACK_DECODER_STREAM_ERROR", () => {
    const d = new QpackDecoderStreamReceiver();
    d.receive(hex("48")); // Stream Cancellation, stream 8 (B.5)
    expect(qpackErrorOf(() => new QpackDecoderStreamReceiver().receive(hex("84")))).toBe("QPACK_DECODER_STREAM_ERROR");
    expect(qpackErrorOf(() => new QpackDecoderStreamReceiver().receive(hex("01")))).toBe("QPACK_DECODER_STREAM_ERROR");
  });
});
