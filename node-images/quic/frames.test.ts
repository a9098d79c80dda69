import { describe, expect, it } from "vitest";
import { QuicTransportError } from "./errors.ts";
import { encodedFrameLength, encodeFrame, FRAME_PROPERTIES, parseFrames, streamFrameOverhead, type Frame, type FrameType } from "./frames.ts";
import { ByteWriter } from "./varint.ts";

/** Seeded 32-bit PRNG (mulberry32), integers in [0, 2^32). */
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

function randomFrames(seed: number) {
  const next = mulberry32(seed);
  const int = (max: number): number => next() % (max + 1);
  /** A varint value of random size class. */
  const v = (): number => [int(63), int(16383), next() % 2 ** 30, next() * 2 ** 20 + int(0xfffff)][int(3)]!;
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(255)));
  const make = (type: FrameType): Frame => {
    switch (type) {
      case "padding": return { type, length: 1 + int(40) };
      case "ping": case "handshake_done": return { type };
      case "ack": {
        let largest = v() + 1000;
        const ranges = [];
        for (let i = 0, n = 1 + int(5); i < n && largest >= 0; i++) {
          const smallest = Math.max(0, largest - int(100));
          ranges.push({ smallest, largest });
          largest = smallest - 2 - int(50);
        }
        return int(1) ? { type, ranges, ackDelay: v() } : { type, ranges, ackDelay: v(), ecn: { ect0: v(), ect1: v(), ce: v() } };
      }
      case "reset_stream": return { type, streamId: v(), errorCode: v(), finalSize: v() };
      case "stop_sending": return { type, streamId: v(), errorCode: v() };
      case "crypto": return { type, offset: v(), data: bytes(int(100)) };
      case "new_token": return { type, token: bytes(1 + int(60)) };
      case "stream": return { type, streamId: v(), offset: int(1) ? 0 : v(), data: bytes(int(200)), fin: int(1) === 1 };
      case "max_data": return { type, maximumData: v() };
      case "max_stream_data": return { type, streamId: v(), maximumStreamData: v() };
      case "max_streams": return { type, bidi: int(1) === 1, maximumStreams: v() };
      case "data_blocked": return { type, limit: v() };
      case "stream_data_blocked": return { type, streamId: v(), limit: v() };
      case "streams_blocked": return { type, bidi: int(1) === 1, limit: v() };
      case "new_connection_id": {
        const sequenceNumber = v();
        return { type, sequenceNumber, retirePriorTo: int(sequenceNumber), connectionId: bytes(1 + int(19)), statelessResetToken: bytes(16) };
      }
      case "retire_connection_id": return { type, sequenceNumber: v() };
      case "path_challenge": case "path_response": return { type, data: bytes(8) };
      case "connection_close": {
        const isApplication = int(1) === 1;
        return { type, isApplication, errorCode: v(), frameType: isApplication ? 0 : int(0x1e), reason: ["", "bye", "schön ☃", "x".repeat(int(80))][int(3)]! };
      }
      case "datagram": return { type, data: bytes(int(100)) };
    }
  };
  return { make, int };
}

const ALL_TYPES = Object.keys(FRAME_PROPERTIES) as FrameType[];

function encodeAll(frames: Frame[]): Buffer {
  const w = new ByteWriter(64);
  for (const f of frames) encodeFrame(w, f);
  return w.finish();
}

describe("frames: round trip (RFC 9000 §19, RFC 9221 §4)", () => {
  it("round-trips 3,000 seeded random frames of every type, with encodedFrameLength exact", () => {
    const { make } = randomFrames(1);
    for (let i = 0; i < 3000; i++) {
      const type = ALL_TYPES[i % ALL_TYPES.length]!;
      const frame = make(type);
      const w = new ByteWriter(16);
      encodeFrame(w, frame);
      const encoded = w.finish();
      expect(encoded.length).toBe(encodedFrameLength(frame));
      const parsed = parseFrames(encoded, "1rtt");
      expect(parsed).toHaveLength(1);
      expect(parsed[0]).toEqual(frame);
    }
  });

  it("parses several frames in one payload and collapses contiguous PADDING", () => {
    const payload = encodeAll([{ type: "ping" }, { type: "padding", length: 5 }, { type: "max_data", maximumData: 9 }, { type: "padding", length: 2 }]);
    expect(parseFrames(payload, "1rtt")).toEqual([
      { type: "ping" }, { type: "padding", length: 5 }, { type: "max_data", maximumData: 9 }, { type: "padding", length: 2 },
    ]);
  });

  it("streamFrameOverhead matches the encoded STREAM frame size", () => {
    for (const [id, offset, length] of [[0, 0, 0], [4, 1, 100], [1 << 20, 2 ** 40, 1300]] as const) {
      const frame: Frame = { type: "stream", streamId: id, offset, data: Buffer.alloc(length), fin: false };
      expect(streamFrameOverhead(id, offset, length) + length).toBe(encodedFrameLength(frame));
    }
  });

  it("reads a STREAM frame without Length to the end of the packet (RFC 9000 §19.8)", () => {
    expect(parseFrames(Buffer.from("0d0405616263", "hex"), "1rtt")).toEqual([
      { type: "stream", streamId: 4, offset: 5, data: Buffer.from("abc"), fin: true },
    ]);
  });
});

describe("frames: validation", () => {
  const code = (fn: () => unknown): number | undefined => {
    try {
      fn();
    } catch (err) {
      if (err instanceof QuicTransportError) return err.code;
      throw err;
    }
    return undefined;
  };
  const PROTOCOL_VIOLATION = 0x0a, FRAME_ENCODING_ERROR = 0x07;

  it("rejects frames not allowed in the packet type with PROTOCOL_VIOLATION (RFC 9000 Table 3)", () => {
    const stream = encodeAll([{ type: "stream", streamId: 0, offset: 0, data: Buffer.of(1), fin: false }]);
    expect(code(() => parseFrames(stream, "initial"))).toBe(PROTOCOL_VIOLATION);
    expect(code(() => parseFrames(stream, "handshake"))).toBe(PROTOCOL_VIOLATION);
    expect(parseFrames(stream, "0rtt")).toHaveLength(1);
    const ack = encodeAll([{ type: "ack", ranges: [{ smallest: 0, largest: 0 }], ackDelay: 0 }]);
    expect(code(() => parseFrames(ack, "0rtt"))).toBe(PROTOCOL_VIOLATION);
    expect(parseFrames(ack, "initial")).toHaveLength(1);
    const appClose = encodeAll([{ type: "connection_close", isApplication: true, errorCode: 1, frameType: 0, reason: "" }]);
    expect(code(() => parseFrames(appClose, "initial"))).toBe(PROTOCOL_VIOLATION);
    const transportClose = encodeAll([{ type: "connection_close", isApplication: false, errorCode: 1, frameType: 0, reason: "" }]);
    expect(parseFrames(transportClose, "initial")).toHaveLength(1);
    for (const type of ["handshake_done", "new_token", "path_response"] as const) {
      const f = type === "new_token" ? { type, token: Buffer.of(1) } : type === "path_response" ? { type, data: Buffer.alloc(8) } : { type };
      expect(code(() => parseFrames(encodeAll([f]), "0rtt"))).toBe(PROTOCOL_VIOLATION);
    }
    expect(code(() => parseFrames(encodeAll([{ type: "datagram", data: Buffer.of(1) }]), "handshake"))).toBe(PROTOCOL_VIOLATION);
  });

  it("rejects an unknown frame type with FRAME_ENCODING_ERROR and an empty payload with PROTOCOL_VIOLATION", () => {
    expect(code(() => parseFrames(Buffer.of(0x1f), "1rtt"))).toBe(FRAME_ENCODING_ERROR);
    expect(code(() => parseFrames(Buffer.of(0x40, 0x40), "1rtt"))).toBe(FRAME_ENCODING_ERROR);
    expect(code(() => parseFrames(Buffer.alloc(0), "1rtt"))).toBe(PROTOCOL_VIOLATION);
  });

  it("checks the value ranges of §19", () => {
    // NEW_CONNECTION_ID with a zero-length and a 21-byte connection ID, and Retire Prior To > Sequence Number.
    expect(code(() => parseFrames(Buffer.concat([Buffer.of(0x18, 1, 0, 0), Buffer.alloc(16)]), "1rtt"))).toBe(FRAME_ENCODING_ERROR);
    expect(code(() => parseFrames(Buffer.concat([Buffer.of(0x18, 1, 0, 21), Buffer.alloc(37)]), "1rtt"))).toBe(FRAME_ENCODING_ERROR);
    expect(code(() => parseFrames(Buffer.concat([Buffer.of(0x18, 1, 2, 4), Buffer.alloc(20)]), "1rtt"))).toBe(FRAME_ENCODING_ERROR);
    // MAX_STREAMS and STREAMS_BLOCKED above 2^60.
    const above = Buffer.from("d000000000000100", "hex"); // 2^60 + 256 (2^60 + 1 is not a double)
    expect(code(() => parseFrames(Buffer.concat([Buffer.of(0x12), above]), "1rtt"))).toBe(FRAME_ENCODING_ERROR);
    expect(code(() => parseFrames(Buffer.concat([Buffer.of(0x17), above]), "1rtt"))).toBe(FRAME_ENCODING_ERROR);
    expect(parseFrames(Buffer.concat([Buffer.of(0x12), Buffer.from("d000000000000000", "hex")]), "1rtt")).toHaveLength(1);
    // ACK whose first range goes below zero; empty NEW_TOKEN.
    expect(code(() => parseFrames(Buffer.of(0x02, 3, 0, 0, 4), "1rtt"))).toBe(FRAME_ENCODING_ERROR);
    expect(code(() => parseFrames(Buffer.of(0x07, 0), "1rtt"))).toBe(FRAME_ENCODING_ERROR);
    // A frame type with a longer encoding than necessary (RFC 9000 §12.4).
    expect(code(() => parseFrames(Buffer.of(0x40, 0x01), "1rtt"))).toBe(PROTOCOL_VIOLATION);
  });

  it("records the offending frame type on the error", () => {
    try {
      parseFrames(Buffer.of(0x18, 1, 2, 4), "1rtt");
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(QuicTransportError);
      expect((err as QuicTransportError).frameType).toBe(0x18);
    }
  });

  it("marks ACK, PADDING and CONNECTION_CLOSE not ack-eliciting and the §9.1 probing frames as probing", () => {
    const nonEliciting = ALL_TYPES.filter((t) => !FRAME_PROPERTIES[t].ackEliciting).sort();
    expect(nonEliciting).toEqual(["ack", "connection_close", "padding"]);
    const probing = ALL_TYPES.filter((t) => FRAME_PROPERTIES[t].probing).sort();
    expect(probing).toEqual(["new_connection_id", "padding", "path_challenge", "path_response"]);
  });
});

describe("frames: mutation", () => {
  it("truncated or bit-flipped payloads only ever throw QuicTransportError (50,000 seeded cases)", () => {
    const { make, int } = randomFrames(42);
    const started = performance.now();
    let thrown = 0;
    for (let i = 0; i < 50_000; i++) {
      const frames = [make(ALL_TYPES[int(ALL_TYPES.length - 1)]!), make(ALL_TYPES[int(ALL_TYPES.length - 1)]!)];
      const encoded = Buffer.from(encodeAll(frames));
      const mutated = int(1) ? encoded.subarray(0, int(encoded.length)) : encoded;
      for (let flips = int(3); flips > 0 && mutated.length > 0; flips--) {
        const at = int(mutated.length - 1);
        mutated[at] = mutated[at]! ^ (1 << int(7));
      }
      try {
        parseFrames(mutated, (["initial", "0rtt", "handshake", "1rtt"] as const)[int(3)]!);
      } catch (err) {
        if (!(err instanceof QuicTransportError)) throw err;
        thrown++;
      }
    }
    expect(thrown).toBeGreaterThan(1000);
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});
