import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../common/seeded-random.ts";
import { QuicTransportError, TRANSPORT_ERROR_CODES } from "../errors.ts";
import { RecvStream } from "./recv-stream.ts";

function transportErrorCode(fn: () => void): number | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof QuicTransportError) return err.code;
    throw err;
  }
  return undefined;
}

function int(rng: SeededRandom, n: number): number {
  return Math.floor(rng.next() * n);
}

const { FINAL_SIZE_ERROR, FLOW_CONTROL_ERROR } = TRANSPORT_ERROR_CODES;

describe("stream reassembly (RFC 9000 §2.2)", () => {
  for (const seed of [1, 2, 3, 42, 9000]) {
    it(`out of order, overlapping and duplicated frames of a 1 MB payload reassemble byte for byte (seed ${seed})`, () => {
      const rng = new SeededRandom(seed);
      const payload = rng.bytes(1 << 20);
      // A covering set of frames with random sizes, plus overlapping extras and duplicates.
      const frames: Array<{ offset: number; length: number }> = [];
      for (let offset = 0; offset < payload.length; ) {
        const length = Math.min(1 + int(rng, 3000), payload.length - offset);
        frames.push({ offset, length });
        offset += length;
      }
      const covering = frames.length;
      for (let i = 0; i < covering / 2; i++) {
        const offset = int(rng, payload.length);
        frames.push({ offset, length: Math.min(1 + int(rng, 5000), payload.length - offset) });
      }
      for (let i = 0; i < covering / 4; i++) frames.push({ ...frames[int(rng, covering)]! });
      for (let i = frames.length - 1; i > 0; i--) {
        const j = int(rng, i + 1);
        [frames[i], frames[j]] = [frames[j]!, frames[i]!];
      }
      const stream = new RecvStream(0, { initialWindowBytes: 1 << 20, maxWindowBytes: 1 << 20 });
      const out: Buffer[] = [];
      let outBytes = 0;
      for (const f of frames) {
        const fin = f.offset + f.length === payload.length;
        stream.onStreamFrame(f.offset, payload.subarray(f.offset, f.offset + f.length), fin);
        if (rng.chancePercent(30)) {
          const data = stream.read(1 + int(rng, 20_000));
          if (data) {
            out.push(data);
            outBytes += data.length;
          }
        }
      }
      for (let data = stream.read(); data !== undefined; data = stream.read()) {
        out.push(data);
        outBytes += data.length;
      }
      expect(outBytes).toBe(payload.length);
      expect(Buffer.concat(out).equals(payload)).toBe(true);
      expect(stream.finished).toBe(true);
      expect(stream.state).toBe("data_read");
      expect(stream.highestReceivedOffset).toBe(payload.length);
    });
  }

  it("read() returns only contiguous bytes from the read offset", () => {
    const stream = new RecvStream(0, { initialWindowBytes: 100, maxWindowBytes: 100 });
    stream.onStreamFrame(5, Buffer.from("world"), false);
    expect(stream.readableBytes).toBe(0);
    expect(stream.read()).toBeUndefined();
    stream.onStreamFrame(0, Buffer.from("hello"), false);
    expect(stream.readableBytes).toBe(10);
    expect(stream.read(3)?.toString()).toBe("hel");
    expect(stream.read()?.toString()).toBe("loworld");
  });

  it("a flood of one-byte frames behind a gap is merged, not kept frame by frame", () => {
    const stream = new RecvStream(0, { initialWindowBytes: 1 << 20, maxWindowBytes: 1 << 20 });
    const payload = new SeededRandom(11).bytes(200_000);
    for (let offset = 1; offset < payload.length; offset++) stream.onStreamFrame(offset, payload.subarray(offset, offset + 1), false);
    const segments = (stream.toJSON() as { bufferedSegments: number }).bufferedSegments;
    expect(segments).toBeLessThan(200);
    stream.onStreamFrame(0, payload.subarray(0, 1), false);
    expect(stream.read()?.equals(payload)).toBe(true);
  });

  it("one-byte frames with gaps between them are bounded: too many gaps closes the connection", () => {
    const stream = new RecvStream(0, { initialWindowBytes: 1 << 20, maxWindowBytes: 1 << 20 });
    let error: QuicTransportError | undefined;
    for (let offset = 1; offset < 1 << 20 && error === undefined; offset += 2) {
      try {
        stream.onStreamFrame(offset, Buffer.alloc(1), false);
      } catch (err) {
        if (!(err instanceof QuicTransportError)) throw err;
        error = err;
      }
    }
    expect(error?.code).toBe(TRANSPORT_ERROR_CODES.INTERNAL_ERROR);
    expect((stream.toJSON() as { bufferedSegments: number }).bufferedSegments).toBe(2048);
  });

  it("received data is copied: the sender's buffer may be reused", () => {
    const stream = new RecvStream(0, { initialWindowBytes: 100, maxWindowBytes: 100 });
    const packet = Buffer.from("abc");
    stream.onStreamFrame(0, packet, false);
    packet.fill(0);
    expect(stream.read()?.toString()).toBe("abc");
  });
});

describe("receiving stream states (RFC 9000 §3.2)", () => {
  it("recv → size_known → data_recvd → data_read", () => {
    const stream = new RecvStream(0, { initialWindowBytes: 100, maxWindowBytes: 100 });
    expect(stream.state).toBe("recv");
    stream.onStreamFrame(3, Buffer.from("def"), true);
    expect(stream.state).toBe("size_known");
    expect(stream.finalSize).toBe(6);
    stream.onStreamFrame(0, Buffer.from("abc"), false);
    expect(stream.state).toBe("data_recvd");
    expect(stream.finished).toBe(false);
    expect(stream.read()?.toString()).toBe("abcdef");
    expect(stream.state).toBe("data_read");
    expect(stream.finished).toBe(true);
    expect(stream.isTerminal).toBe(true);
  });

  it("a FIN without data after everything was read finishes the stream; the next read() delivers the end", () => {
    let terminal = 0;
    const stream = new RecvStream(0, { initialWindowBytes: 100, maxWindowBytes: 100, onTerminal: () => terminal++ });
    stream.onStreamFrame(0, Buffer.from("ab"), false);
    expect(stream.read()?.toString()).toBe("ab");
    stream.onStreamFrame(2, new Uint8Array(0), true);
    expect(stream.finished).toBe(true);
    expect(terminal).toBe(0);
    expect(stream.read()).toBeUndefined();
    expect(terminal).toBe(1);
  });

  it("RESET_STREAM → reset_recvd discards buffered data, reports it as consumed, then reset_read", () => {
    let discarded = 0;
    let terminal = 0;
    const stream = new RecvStream(0, {
      initialWindowBytes: 1000,
      maxWindowBytes: 1000,
      onDiscarded: (n) => (discarded += n),
      onTerminal: () => terminal++,
    });
    stream.onStreamFrame(0, Buffer.alloc(100), false);
    stream.read(40);
    stream.onStreamFrame(200, Buffer.alloc(50), false);
    stream.onResetStream(7, 300);
    expect(stream.state).toBe("reset_recvd");
    expect(stream.resetCode).toBe(7);
    expect(stream.highestReceivedOffset).toBe(300);
    expect(discarded).toBe(260);
    expect(terminal).toBe(1);
    expect(stream.readableBytes).toBe(0);
    expect(stream.read()).toBeUndefined();
    expect(stream.state).toBe("reset_read");
    // Late data within the final size is ignored.
    stream.onStreamFrame(250, Buffer.alloc(50), false);
    expect(stream.read()).toBeUndefined();
  });

  it("stopSending discards buffered and later data, counting it as consumed", () => {
    let discarded = 0;
    const stream = new RecvStream(0, { initialWindowBytes: 1000, maxWindowBytes: 1000, onDiscarded: (n) => (discarded += n) });
    stream.onStreamFrame(0, Buffer.alloc(100), false);
    stream.stopSending(3);
    expect(stream.stopSendingCode).toBe(3);
    expect(discarded).toBe(100);
    stream.onStreamFrame(100, Buffer.alloc(50), true);
    expect(discarded).toBe(150);
    expect(stream.readableBytes).toBe(0);
    expect(stream.state).toBe("data_read");
    expect(stream.isTerminal).toBe(true);
  });
});

describe("stopSending after all data arrived", () => {
  it("drops the unread data and finishes the stream so it can be forgotten", () => {
    let discarded = 0;
    let terminal = 0;
    const stream = new RecvStream(0, { initialWindowBytes: 1000, maxWindowBytes: 1000, onDiscarded: (n) => (discarded += n), onTerminal: () => terminal++ });
    stream.onStreamFrame(0, Buffer.alloc(10), true);
    expect(stream.state).toBe("data_recvd");
    stream.stopSending(1);
    expect([stream.state, discarded, terminal, stream.readableBytes]).toEqual(["data_read", 10, 1, 0]);
  });
});

describe("final size (RFC 9000 §4.5)", () => {
  const make = (): RecvStream => new RecvStream(0, { initialWindowBytes: 10_000, maxWindowBytes: 10_000 });

  it("a changed final size is FINAL_SIZE_ERROR", () => {
    const stream = make();
    stream.onStreamFrame(0, Buffer.alloc(100), true);
    stream.onStreamFrame(0, Buffer.alloc(100), true); // the same final size again is fine
    expect(transportErrorCode(() => stream.onStreamFrame(0, Buffer.alloc(120), true))).toBe(FINAL_SIZE_ERROR);
    expect(transportErrorCode(() => stream.onStreamFrame(0, Buffer.alloc(80), true))).toBe(FINAL_SIZE_ERROR);
  });

  it("data beyond the final size is FINAL_SIZE_ERROR", () => {
    const stream = make();
    stream.onStreamFrame(50, Buffer.alloc(50), true);
    expect(transportErrorCode(() => stream.onStreamFrame(90, Buffer.alloc(11), false))).toBe(FINAL_SIZE_ERROR);
  });

  it("a final size below data already received is FINAL_SIZE_ERROR", () => {
    const stream = make();
    stream.onStreamFrame(100, Buffer.alloc(100), false);
    expect(transportErrorCode(() => stream.onStreamFrame(0, Buffer.alloc(150), true))).toBe(FINAL_SIZE_ERROR);
  });

  it("RESET_STREAM with a different final size, or below received data, is FINAL_SIZE_ERROR", () => {
    const known = make();
    known.onStreamFrame(0, Buffer.alloc(100), true);
    expect(transportErrorCode(() => known.onResetStream(0, 99))).toBe(FINAL_SIZE_ERROR);
    const unknown = make();
    unknown.onStreamFrame(0, Buffer.alloc(100), false);
    expect(transportErrorCode(() => unknown.onResetStream(0, 99))).toBe(FINAL_SIZE_ERROR);
    unknown.onResetStream(0, 100);
    expect(unknown.state).toBe("reset_recvd");
  });
});

describe("stream flow control (RFC 9000 §4.1)", () => {
  it("data up to MAX_STREAM_DATA is accepted, beyond it is FLOW_CONTROL_ERROR", () => {
    const stream = new RecvStream(0, { initialWindowBytes: 1000, maxWindowBytes: 1000 });
    stream.onStreamFrame(0, Buffer.alloc(1000), false);
    expect(transportErrorCode(() => stream.onStreamFrame(1000, Buffer.alloc(1), false))).toBe(FLOW_CONTROL_ERROR);
    expect(transportErrorCode(() => stream.onStreamFrame(5000, Buffer.alloc(0), true))).toBe(FLOW_CONTROL_ERROR);
  });

  it("a RESET_STREAM final size beyond MAX_STREAM_DATA is FLOW_CONTROL_ERROR", () => {
    const stream = new RecvStream(0, { initialWindowBytes: 1000, maxWindowBytes: 1000 });
    expect(transportErrorCode(() => stream.onResetStream(0, 1001))).toBe(FLOW_CONTROL_ERROR);
  });

  it("MAX_STREAM_DATA moves with reads; the window grows while the reader keeps up, bounded by maxWindowBytes", () => {
    const initial = 16 * 1024;
    const max = 256 * 1024;
    const stream = new RecvStream(0, { initialWindowBytes: initial, maxWindowBytes: max });
    const rttMs = 40;
    let now = 0;
    let offset = 0;
    const limits: number[] = [];
    for (let round = 0; round < 400; round++) {
      // The sender fills whatever the limit allows; the reader drains it at once; 10 ms pass.
      const room = stream.limit - offset;
      stream.onStreamFrame(offset, Buffer.alloc(room), false);
      offset += room;
      expect(stream.read()?.length).toBe(room);
      now += 10;
      const limit = stream.maybeMaxStreamData(now, rttMs);
      if (limit !== undefined) limits.push(limit);
    }
    expect(limits.length).toBeGreaterThan(0);
    for (let i = 1; i < limits.length; i++) expect(limits[i]!).toBeGreaterThan(limits[i - 1]!);
    expect(stream.windowBytes).toBe(max);
    expect(stream.limit - offset).toBeLessThanOrEqual(max);
    expect(transportErrorCode(() => stream.onStreamFrame(offset, Buffer.alloc(stream.limit - offset + 1), false))).toBe(FLOW_CONTROL_ERROR);
  });

  it("the window stays at its initial size when the application does not read", () => {
    const stream = new RecvStream(0, { initialWindowBytes: 1000, maxWindowBytes: 100_000 });
    stream.onStreamFrame(0, Buffer.alloc(1000), false);
    expect(stream.maybeMaxStreamData(10, 40)).toBeUndefined();
    expect(stream.limit).toBe(1000);
  });

  it("no MAX_STREAM_DATA once the final size is known", () => {
    const stream = new RecvStream(0, { initialWindowBytes: 1000, maxWindowBytes: 1000 });
    stream.onStreamFrame(0, Buffer.alloc(900), true);
    stream.read();
    expect(stream.maybeMaxStreamData(10, 40)).toBeUndefined();
  });
});
