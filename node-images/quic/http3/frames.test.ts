import { describe, expect, it } from "vitest";
import {
  decodeSettings, decodeSingleVarint, encodeFrame, encodeSettings, FrameReader, greaseId, Http3Error, isGreaseId, type FrameReaderItem,
} from "./frames.ts";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

function h3ErrorOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    if (err instanceof Http3Error) return err.code;
    throw err;
  }
  return undefined;
}

describe("HTTP/3 frames (RFC 9114 §7)", () => {
  it("reads frames split at every byte boundary, streams DATA, skips unknown and grease types", () => {
    const wire = Buffer.concat([
      encodeSettings([[0x06, 16384], [greaseId(2), 7]]),
      encodeFrame(greaseId(5), Buffer.from("ignored")),
      encodeFrame(0x21 + 0x1f * 1000, Buffer.alloc(0)),
      encodeFrame(0x00, Buffer.from("hello")),
      encodeFrame(0x01, hex("0000d1")),
    ]);
    for (let split = 0; split <= wire.length; split++) {
      const out: FrameReaderItem[] = [];
      const r = new FrameReader();
      r.push(wire.subarray(0, split), out);
      r.push(wire.subarray(split), out);
      expect(r.inFrame).toBe(false);
      const kinds = out.map((i) => (i.kind === "frame" ? `frame:${i.type}` : i.kind));
      expect(kinds.filter((k) => k !== "data")).toEqual(["frame:4", "skipped", "skipped", "dataStart", "frame:1"]);
      const data = Buffer.concat(out.flatMap((i) => (i.kind === "data" ? [i.chunk] : [])));
      expect(data.toString()).toBe("hello");
    }
  });

  it("reports a frame cut off by the end of the stream (inFrame) for H3_FRAME_ERROR (§7.1)", () => {
    const r = new FrameReader();
    r.push(hex("01 05 0000"), []);
    expect(r.inFrame).toBe(true);
  });

  it("HTTP/2 frame types 0x02, 0x06, 0x08, 0x09 are H3_FRAME_UNEXPECTED (§7.2.8)", () => {
    for (const t of [0x02, 0x06, 0x08, 0x09]) expect(h3ErrorOf(() => new FrameReader().push(encodeFrame(t, Buffer.alloc(0)), []))).toBe("H3_FRAME_UNEXPECTED");
  });

  it("an oversized HEADERS frame is H3_EXCESSIVE_LOAD before it is buffered", () => {
    expect(h3ErrorOf(() => new FrameReader(1024).push(hex("01 4800"), []))).toBe("H3_EXCESSIVE_LOAD");
  });

  it("SETTINGS: duplicates and HTTP/2 identifiers are H3_SETTINGS_ERROR, truncation H3_FRAME_ERROR (§7.2.4)", () => {
    expect([...decodeSettings(hex("0100 06 4640 0700"))]).toEqual([[1, 0], [6, 0x640], [7, 0]]);
    expect(h3ErrorOf(() => decodeSettings(hex("0600 0601")))).toBe("H3_SETTINGS_ERROR");
    for (const id of ["00", "02", "03", "04", "05"]) expect(h3ErrorOf(() => decodeSettings(hex(`${id}00`)))).toBe("H3_SETTINGS_ERROR");
    expect(h3ErrorOf(() => decodeSettings(hex("06")))).toBe("H3_FRAME_ERROR");

  });

  it("GOAWAY-style payloads must be exactly one varint (H3_FRAME_ERROR)", () => {
    expect(decodeSingleVarint(hex("4004"), "GOAWAY")).toBe(4);
    expect(h3ErrorOf(() => decodeSingleVarint(hex(""), "GOAWAY"))).toBe("H3_FRAME_ERROR");
    expect(h3ErrorOf(() => decodeSingleVarint(hex("0400"), "GOAWAY"))).toBe("H3_FRAME_ERROR");
  });

  it("grease identifiers are 0x1f * N + 0x21 (§7.2.8)", () => {
    expect([0, 1, 2].map(greaseId)).toEqual([0x21, 0x40, 0x5f]);
    expect(isGreaseId(0x40)).toBe(true);
    expect(isGreaseId(0x41)).toBe(false);
  });
});
