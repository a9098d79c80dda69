import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../common/seeded-random.ts";
import { RangeSet } from "./range-set.ts";
import { RecvStream } from "./recv-stream.ts";
import { SendStream, type StreamChunk } from "./send-stream.ts";
import { QuicStreamUsageError } from "./stream-usage-error.ts";

function int(rng: SeededRandom, n: number): number {
  return Math.floor(rng.next() * n);
}

function drain(stream: SendStream, maxBytes: number): StreamChunk[] {
  const out: StreamChunk[] = [];
  for (let chunk = stream.nextChunk(maxBytes); chunk !== undefined; chunk = stream.nextChunk(maxBytes)) {
    out.push(chunk);
    if (out.length > 100_000) throw new Error("nextChunk does not terminate");
  }
  return out;
}

describe("send buffer backpressure", () => {
  it("write() accepts up to the buffer room, returns 0 when full, and acknowledgements make room again", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 1000, initialSendLimit: 10_000 });
    expect(stream.write(Buffer.alloc(600))).toBe(600);
    expect(stream.write(Buffer.alloc(600))).toBe(400);
    expect(stream.bufferedBytes).toBe(1000);
    expect(stream.writableBytes).toBe(0);
    expect(stream.write(Buffer.alloc(1))).toBe(0);
    const chunks = drain(stream, 700);
    // Small writes share one block, so a chunk may cover both.
    expect(chunks.map((c) => [c.offset, c.data.length])).toEqual([
      [0, 700],
      [700, 300],
    ]);
    // Sent but unacknowledged bytes still occupy the buffer.
    expect(stream.writableBytes).toBe(0);
    stream.onAcked(700, 300, false);
    expect(stream.writableBytes).toBe(0); // bytes below are not yet acknowledged
    stream.onAcked(0, 700, false);
    expect(stream.bufferedBytes).toBe(0);
    expect(stream.writableBytes).toBe(1000);
  });

  it("large writes are kept as separate chunks and a STREAM chunk never spans two (zero copy)", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 10_000, initialSendLimit: 10_000 });
    stream.write(Buffer.alloc(2000));
    stream.write(Buffer.alloc(3000));
    expect(drain(stream, 2500).map((c) => [c.offset, c.data.length])).toEqual([
      [0, 2000],
      [2000, 2500],
      [4500, 500],
    ]);
  });

  it("write() copies: the application may reuse its buffer", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 10_000, initialSendLimit: 10_000 });
    const big = Buffer.alloc(2000, 1);
    const small = Buffer.alloc(10, 2);
    stream.write(big);
    stream.write(small);
    big.fill(9);
    small.fill(9);
    const data = Buffer.concat(drain(stream, 5000).map((c) => c.data));
    expect(data.equals(Buffer.concat([Buffer.alloc(2000, 1), Buffer.alloc(10, 2)]))).toBe(true);
  });

  it("write after finish is the application's bug", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 100 });
    stream.finish();
    expect(() => stream.write(Buffer.alloc(1))).toThrow(QuicStreamUsageError);
  });
});

describe("stream flow control on the sending side (RFC 9000 §4.1)", () => {
  it("new data stops at MAX_STREAM_DATA, reports blockedAt, and resumes after an increase that never lowers", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 10_000, initialSendLimit: 300 });
    stream.write(Buffer.alloc(1000));
    expect(drain(stream, 200).map((c) => [c.offset, c.data.length])).toEqual([
      [0, 200],
      [200, 100],
    ]);
    expect(stream.hasDataToSend()).toBe(false);
    expect(stream.blockedAt).toBe(300);
    stream.updateSendLimit(100);
    expect(stream.sendLimit).toBe(300);
    stream.updateSendLimit(800);
    expect(stream.blockedAt).toBeUndefined();
    expect(drain(stream, 1000).map((c) => [c.offset, c.data.length])).toEqual([[300, 500]]);
    expect(stream.blockedAt).toBe(800);
  });

  it("new data respects the connection credit; previouslySentEnd tells new bytes from retransmitted ones", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 10_000, initialSendLimit: 10_000 });
    stream.write(Buffer.alloc(1000));
    const first = stream.nextChunk(1000, 250)!;
    expect([first.offset, first.data.length, first.previouslySentEnd]).toEqual([0, 250, 0]);
    expect(stream.hasDataToSend(0)).toBe(false);
    expect(stream.nextChunk(1000, 0)).toBeUndefined();
    stream.onLost(0, 250, false);
    expect(stream.hasDataToSend(0)).toBe(true);
    const again = stream.nextChunk(1000, 0)!;
    expect([again.offset, again.data.length, again.previouslySentEnd]).toEqual([0, 250, 250]);
  });
});

describe("retransmission (RFC 9000 §13.3)", () => {
  it("after loss only the unacknowledged ranges are sent again", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 10_000, initialSendLimit: 10_000 });
    stream.write(Buffer.alloc(1000));
    const sent = drain(stream, 100);
    expect(sent.length).toBe(10);
    // Acknowledge 100-200 and 500-700, then lose every packet.
    stream.onAcked(100, 100, false);
    stream.onAcked(500, 100, false);
    stream.onAcked(600, 100, false);
    for (const c of sent) stream.onLost(c.offset, c.data.length, c.fin);
    // A late acknowledgement of a lost range removes it from the retransmission queue.
    stream.onAcked(900, 50, false);
    const resent = drain(stream, 1000);
    expect(resent.map((c) => [c.offset, c.data.length])).toEqual([
      [0, 100],
      [200, 300],
      [700, 200],
      [950, 50],
    ]);
    expect(resent.every((c) => c.previouslySentEnd === 1000)).toBe(true);
  });

  it("a lost FIN is sent again, alone when its data was acknowledged; all acknowledged → data_recvd", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 10_000, initialSendLimit: 10_000 });
    stream.write(Buffer.from("hello"));
    stream.finish();
    const [chunk] = drain(stream, 100);
    expect(chunk!.fin).toBe(true);
    expect(stream.state).toBe("data_sent");
    stream.onLost(0, 5, true);
    const retry = stream.nextChunk(3);
    expect([retry!.offset, retry!.data.length, retry!.fin]).toEqual([0, 3, false]);
    stream.onAcked(0, 3, false);
    const rest = stream.nextChunk(100);
    expect([rest!.offset, rest!.data.length, rest!.fin]).toEqual([3, 2, true]);
    stream.onAcked(3, 2, false);
    expect(stream.state).toBe("data_sent");
    // Ack of data without FIN, then a lost FIN-only retransmission.
    stream.onLost(3, 2, true);
    const [finOnly] = drain(stream, 100);
    expect([finOnly!.offset, finOnly!.data.length, finOnly!.fin]).toEqual([5, 0, true]);
    stream.onAcked(5, 0, true);
    expect(stream.state).toBe("data_recvd");
    expect(stream.isTerminal).toBe(true);
    expect(stream.bufferedBytes).toBe(0);
  });

  for (const seed of [7, 8, 9]) {
    it(`random writes over a lossy, reordering channel arrive intact (seed ${seed})`, () => {
      const rng = new SeededRandom(seed);
      const payload = rng.bytes(300_000);
      const sender = new SendStream(0, { maxBufferedBytes: 64 * 1024, initialSendLimit: 32 * 1024 });
      const receiver = new RecvStream(0, { initialWindowBytes: 32 * 1024, maxWindowBytes: 256 * 1024 });
      let written = 0;
      const inFlight: StreamChunk[] = [];
      const received: Buffer[] = [];
      let now = 0;
      for (let step = 0; step < 200_000 && !(sender.state === "data_recvd"); step++) {
        now += 1;
        if (written < payload.length) {
          const piece = payload.subarray(written, written + 1 + int(rng, rng.chancePercent(50) ? 20 : 5000));
          written += sender.write(piece);
          if (written === payload.length) sender.finish();
        }
        const chunk = sender.nextChunk(1 + int(rng, 1400));
        if (chunk) inFlight.push({ ...chunk, data: Buffer.from(chunk.data) });
        if (inFlight.length > 0 && rng.chancePercent(60)) {
          const f = inFlight.splice(int(rng, inFlight.length), 1)[0]!;
          if (rng.chancePercent(10)) {
            sender.onLost(f.offset, f.data.length, f.fin);
          } else {
            receiver.onStreamFrame(f.offset, f.data, f.fin);
            if (rng.chancePercent(90)) sender.onAcked(f.offset, f.data.length, f.fin);
            else sender.onLost(f.offset, f.data.length, f.fin); // the ack was lost
          }
        }
        const data = receiver.read();
        if (data) received.push(data);
        const limit = receiver.maybeMaxStreamData(now, 5);
        if (limit !== undefined) sender.updateSendLimit(limit);
      }
      expect(sender.state).toBe("data_recvd");
      expect(receiver.finished).toBe(true);
      expect(Buffer.concat(received).equals(payload)).toBe(true);
    });
  }
});

describe("sending stream states (RFC 9000 §3.1)", () => {
  it("ready → send → data_sent, with FIN on the last chunk", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 100, initialSendLimit: 100 });
    expect(stream.state).toBe("ready");
    stream.write(Buffer.from("abc"));
    stream.nextChunk(2);
    expect(stream.state).toBe("send");
    stream.finish();
    expect(stream.finalSize).toBe(3);
    const last = stream.nextChunk(10)!;
    expect([last.offset, last.data.length, last.fin]).toEqual([2, 1, true]);
    expect(stream.state).toBe("data_sent");
    expect(stream.hasDataToSend()).toBe(false);
  });

  it("a FIN on an empty stream goes out as an empty STREAM frame even with no flow-control credit", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 100, initialSendLimit: 0 });
    stream.finish();
    expect(stream.hasDataToSend(0)).toBe(true);
    const chunk = stream.nextChunk(100, 0)!;
    expect([chunk.offset, chunk.data.length, chunk.fin]).toEqual([0, 0, true]);
  });

  it("reset() → reset_sent with the final size of the bytes sent; nothing more is sent", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 1000, initialSendLimit: 1000 });
    stream.write(Buffer.alloc(500));
    stream.nextChunk(200);
    expect(stream.reset(9)).toBe(200);
    expect(stream.state).toBe("reset_sent");
    expect(stream.resetCode).toBe(9);
    expect(stream.finalSize).toBe(200);
    expect(stream.bufferedBytes).toBe(0);
    expect(stream.writableBytes).toBe(0);
    expect(stream.hasDataToSend()).toBe(false);
    expect(stream.nextChunk(1000)).toBeUndefined();
    expect(stream.reset(9)).toBeUndefined();
    stream.onResetAcked();
    expect(stream.state).toBe("reset_recvd");
  });

  it("STOP_SENDING obliges a reset with the peer's code (§3.5); after data_recvd it changes nothing", () => {
    const stream = new SendStream(0, { maxBufferedBytes: 1000, initialSendLimit: 1000 });
    stream.write(Buffer.alloc(10));
    stream.nextChunk(100);
    expect(stream.onStopSending(4)).toBe(10);
    expect(stream.state).toBe("reset_sent");
    expect(stream.resetCode).toBe(4);

    const done = new SendStream(4, { maxBufferedBytes: 1000, initialSendLimit: 1000 });
    done.finish();
    done.nextChunk(100);
    done.onAcked(0, 0, true);
    expect(done.state).toBe("data_recvd");
    expect(done.onStopSending(4)).toBeUndefined();
    expect(done.state).toBe("data_recvd");
  });
});

describe("RangeSet", () => {
  it("adds, merges and removes ranges like a reference bitmap (seeded)", () => {
    const rng = new SeededRandom(5);
    const set = new RangeSet();
    const bitmap = new Uint8Array(500);
    for (let i = 0; i < 2000; i++) {
      const start = int(rng, 500);
      const end = Math.min(500, start + int(rng, 40));
      if (rng.chancePercent(50)) {
        set.add(start, end);
        bitmap.fill(1, start, end);
      } else {
        set.remove(start, end);
        bitmap.fill(0, start, end);
      }
      const fromSet = new Uint8Array(500);
      for (const r of set.toArray()) fromSet.fill(1, r.start, r.end);
      expect(Buffer.from(fromSet).equals(Buffer.from(bitmap))).toBe(true);
      const ranges = set.toArray();
      for (let k = 1; k < ranges.length; k++) expect(ranges[k]!.start).toBeGreaterThan(ranges[k - 1]!.end);
    }
  });
});
