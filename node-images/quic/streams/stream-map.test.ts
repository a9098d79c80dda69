import { describe, expect, it } from "vitest";
import { QuicTransportError, TRANSPORT_ERROR_CODES } from "../errors.ts";
import { StreamMap, type StreamLimits } from "./stream-map.ts";

const { STREAM_LIMIT_ERROR, STREAM_STATE_ERROR } = TRANSPORT_ERROR_CODES;

function limits(overrides: Partial<StreamLimits> = {}): StreamLimits {
  return {
    maxStreamsBidi: 10,
    maxStreamsUni: 10,
    initialMaxStreamDataBidiLocal: 1000,
    initialMaxStreamDataBidiRemote: 2000,
    initialMaxStreamDataUni: 3000,
    maxStreamWindowBytes: 1 << 20,
    sendBufferBytes: 64 * 1024,
    ...overrides,
  };
}

function transportError(fn: () => void): QuicTransportError | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof QuicTransportError) return err;
    throw err;
  }
  return undefined;
}

describe("opening streams (RFC 9000 §2.1, §4.6)", () => {
  it("our stream IDs count up per type from the role's base", () => {
    const client = new StreamMap("client", limits(), limits());
    expect([client.openStream(true), client.openStream(true), client.openStream(false), client.openStream(false)]).toEqual([0, 4, 2, 6]);
    const server = new StreamMap("server", limits(), limits());
    expect([server.openStream(true), server.openStream(false), server.openStream(true)]).toEqual([1, 3, 5]);
  });

  it("openStream is refused at the peer's MAX_STREAMS; MAX_STREAMS raises the limit and never lowers it", () => {
    const map = new StreamMap("client", limits(), limits({ maxStreamsBidi: 2, maxStreamsUni: 0 }));
    expect(map.openStream(true)).toBe(0);
    expect(map.openStream(true)).toBe(4);
    expect(map.openStream(true)).toBeUndefined();
    expect(map.openStream(false)).toBeUndefined();
    expect(map.peerStreamLimit(true)).toBe(2);
    map.onMaxStreams(true, 1);
    expect(map.peerStreamLimit(true)).toBe(2);
    map.onMaxStreams(true, 3);
    expect(map.openStream(true)).toBe(8);
    map.onMaxStreams(false, 1);
    expect(map.openStream(false)).toBe(2);
    expect(transportError(() => map.onMaxStreams(true, 2 ** 61))?.code).toBe(TRANSPORT_ERROR_CODES.FRAME_ENCODING_ERROR);
  });

  it("flow-control limits come from the right transport parameters (§18.2)", () => {
    const local = limits({ initialMaxStreamDataBidiLocal: 11, initialMaxStreamDataBidiRemote: 12, initialMaxStreamDataUni: 13 });
    const peer = limits({ initialMaxStreamDataBidiLocal: 21, initialMaxStreamDataBidiRemote: 22, initialMaxStreamDataUni: 23 });
    const map = new StreamMap("client", local, peer);
    const ourBidi = map.get(map.openStream(true)!)!;
    expect([ourBidi.send!.sendLimit, ourBidi.recv!.limit]).toEqual([22, 11]);
    const ourUni = map.get(map.openStream(false)!)!;
    expect([ourUni.send!.sendLimit, ourUni.recv]).toEqual([23, undefined]);
    const peerBidi = map.getOrCreateForFrame(1, "stream")!;
    expect([peerBidi.send!.sendLimit, peerBidi.recv!.limit]).toEqual([21, 12]);
    const peerUni = map.getOrCreateForFrame(3, "stream")!;
    expect([peerUni.send, peerUni.recv!.limit]).toEqual([undefined, 13]);
  });

  it("a peer stream opens the lower-numbered streams of its type implicitly (§3.2)", () => {
    const map = new StreamMap("server", limits(), limits());
    const entry = map.getOrCreateForFrame(12, "stream");
    expect(entry?.id).toBe(12);
    expect(map.drainOpened()).toEqual([0, 4, 8, 12]);
    expect(map.drainOpened()).toEqual([]);
    expect(map.get(4)?.recv).toBeDefined();
    expect(map.get(2)).toBeUndefined(); // other type untouched
    map.getOrCreateForFrame(6, "stream");
    expect(map.drainOpened()).toEqual([2, 6]);
    expect(map.size).toBe(6);
  });

  it("a peer stream beyond our MAX_STREAMS is STREAM_LIMIT_ERROR", () => {
    const map = new StreamMap("server", limits({ maxStreamsBidi: 3, maxStreamsUni: 1 }), limits());
    map.getOrCreateForFrame(8, "stream"); // index 2: the third stream
    expect(transportError(() => map.getOrCreateForFrame(12, "stream"))?.code).toBe(STREAM_LIMIT_ERROR);
    expect(transportError(() => map.getOrCreateForFrame(6, "reset_stream"))?.code).toBe(STREAM_LIMIT_ERROR);
    expect(map.getOrCreateForFrame(2, "stream")?.id).toBe(2);
  });
});

describe("frames on the wrong direction or on unopened streams (RFC 9000 §19)", () => {
  const cases: Array<[string, number, Parameters<StreamMap["getOrCreateForFrame"]>[1]]> = [
    ["STREAM on our send-only stream", 2, "stream"],
    ["RESET_STREAM on our send-only stream", 2, "reset_stream"],
    ["STREAM_DATA_BLOCKED on our send-only stream", 2, "stream_data_blocked"],
    ["MAX_STREAM_DATA on the peer's receive-only stream", 3, "max_stream_data"],
    ["STOP_SENDING on the peer's receive-only stream", 3, "stop_sending"],
    ["STREAM on our bidirectional stream not yet opened", 4, "stream"],
    ["MAX_STREAM_DATA on our stream not yet opened", 4, "max_stream_data"],
  ];
  for (const [name, id, kind] of cases) {
    it(`${name} is STREAM_STATE_ERROR`, () => {
      const map = new StreamMap("client", limits(), limits());
      map.openStream(true); // 0
      map.openStream(false); // 2
      expect(transportError(() => map.getOrCreateForFrame(id, kind))?.code).toBe(STREAM_STATE_ERROR);
    });
  }

  it("frames that fit the direction are accepted, and open peer bidirectional streams", () => {
    const map = new StreamMap("client", limits(), limits());
    map.openStream(false); // 2
    expect(map.getOrCreateForFrame(2, "stop_sending")?.send).toBeDefined();
    expect(map.getOrCreateForFrame(2, "max_stream_data")?.send).toBeDefined();
    expect(map.getOrCreateForFrame(1, "max_stream_data")?.send).toBeDefined();
    expect(map.getOrCreateForFrame(3, "stream_data_blocked")?.recv).toBeDefined();
  });
});

describe("closing and forgetting streams", () => {
  it("a stream is forgotten once both halves are done, and later frames for it return undefined", () => {
    const map = new StreamMap("client", limits(), limits());
    const id = map.openStream(true)!;
    const { send, recv } = map.get(id)!;
    send!.write(Buffer.from("ping"));
    send!.finish();
    const chunk = send!.nextChunk(100)!;
    send!.onAcked(chunk.offset, chunk.data.length, chunk.fin);
    expect(map.get(id)).toBeDefined(); // receive half still open
    recv!.onStreamFrame(0, Buffer.from("pong"), true);
    expect(recv!.read()?.toString()).toBe("pong");
    expect(map.get(id)).toBeUndefined();
    expect(map.isClosed(id)).toBe(true);
    expect(map.isClosed(4)).toBe(false);
    expect(map.getOrCreateForFrame(id, "stream")).toBeUndefined();
    expect(map.size).toBe(0);
  });

  it("a peer reset and our reset in answer to STOP_SENDING close a bidirectional stream; discarded bytes are reported", () => {
    const map = new StreamMap("server", limits(), limits());
    const s = map.getOrCreateForFrame(0, "stream")!;
    s.recv!.onStreamFrame(0, Buffer.alloc(100), false);
    s.recv!.onResetStream(1, 150);
    expect(map.takeDiscardedBytes()).toBe(150);
    expect(map.takeDiscardedBytes()).toBe(0);
    expect(map.get(0)).toBeDefined();
    map.getOrCreateForFrame(0, "stop_sending")!.send!.onStopSending(1);
    expect(map.get(0)).toBeUndefined();
  });

  it("MAX_STREAMS rises as peer streams close, keeping the number of open peer streams constant (§4.6)", () => {
    const map = new StreamMap("server", limits({ maxStreamsBidi: 2, maxStreamsUni: 2 }), limits());
    expect(map.pollMaxStreams()).toEqual([]);
    const a = map.getOrCreateForFrame(2, "stream")!; // peer uni, index 0
    map.getOrCreateForFrame(6, "stream"); // index 1
    expect(transportError(() => map.getOrCreateForFrame(10, "stream"))?.code).toBe(STREAM_LIMIT_ERROR);
    a.recv!.onStreamFrame(0, Buffer.from("x"), true);
    expect(map.pollMaxStreams()).toEqual([]); // not yet read
    a.recv!.read();
    expect(map.pollMaxStreams()).toEqual([{ bidi: false, max: 3 }]);
    expect(map.pollMaxStreams()).toEqual([]);
    expect(map.getOrCreateForFrame(10, "stream")?.id).toBe(10);
  });

  it("opening and finishing 100,000 streams of each kind leaves the map empty (memory bounded)", () => {
    const client = new StreamMap("client", limits({ maxStreamsBidi: 100, maxStreamsUni: 100 }), limits({ maxStreamsBidi: 100, maxStreamsUni: 100 }));
    const server = new StreamMap("server", limits({ maxStreamsBidi: 100, maxStreamsUni: 100 }), limits({ maxStreamsBidi: 100, maxStreamsUni: 100 }));
    const deliver = (from: StreamMap, to: StreamMap, id: number): void => {
      const send = from.get(id)!.send!;
      for (let chunk = send.nextChunk(1200); chunk; chunk = send.nextChunk(1200)) {
        to.getOrCreateForFrame(id, "stream")!.recv!.onStreamFrame(chunk.offset, chunk.data, chunk.fin);
        send.onAcked(chunk.offset, chunk.data.length, chunk.fin);
      }
    };
    for (let i = 0; i < 100_000; i++) {
      const bidi = i % 2 === 0;
      const id = client.openStream(bidi)!;
      expect(id).toBeDefined();
      const send = client.get(id)!.send!;
      send.write(Buffer.from("request"));
      send.finish();
      deliver(client, server, id);
      const serverSide = server.get(id)!;
      expect(serverSide.recv!.read()?.toString()).toBe("request");
      if (bidi) {
        serverSide.send!.write(Buffer.from("response"));
        serverSide.send!.finish();
        deliver(server, client, id);
        expect(client.get(id)!.recv!.read()?.toString()).toBe("response");
      }
      for (const m of server.pollMaxStreams()) client.onMaxStreams(m.bidi, m.max);
      server.drainOpened();
    }
    expect(client.size).toBe(0);
    expect(server.size).toBe(0);
    expect(Array.from(client.sendable())).toEqual([]);
    expect(client.peerStreamLimit(true)).toBe(50_100);
  });
});

describe("fair scheduling", () => {
  it("sendable() serves streams round-robin: a stream that sent moves to the back", () => {
    const map = new StreamMap("client", limits(), limits());
    const ids = [map.openStream(true)!, map.openStream(true)!, map.openStream(true)!];
    for (const id of ids) map.get(id)!.send!.write(Buffer.alloc(5000));
    const order: number[] = [];
    for (let packet = 0; packet < 6; packet++) {
      // One chunk per packet: take the first sendable stream only.
      for (const stream of map.sendable()) {
        stream.nextChunk(100);
        order.push(stream.id);
        break;
      }
    }
    expect(order).toEqual([0, 4, 8, 0, 4, 8]);
    // Looking without sending does not rotate.
    for (const stream of map.sendable()) {
      expect(stream.id).toBe(0);
      break;
    }
    for (const stream of map.sendable()) {
      expect(stream.id).toBe(0);
      break;
    }
  });

  it("sendable() skips streams with nothing to send, and those with only new data when the connection is blocked", () => {
    const map = new StreamMap("client", limits(), limits());
    const a = map.openStream(true)!;
    const b = map.openStream(true)!;
    map.openStream(true);
    map.get(a)!.send!.write(Buffer.alloc(10));
    const sb = map.get(b)!.send!;
    sb.write(Buffer.alloc(10));
    const c = sb.nextChunk(100)!;
    sb.onLost(c.offset, c.data.length, c.fin);
    expect(Array.from(map.sendable(), (s) => s.id)).toEqual([a, b]);
    expect(Array.from(map.sendable(0), (s) => s.id)).toEqual([b]);
  });

  it("toJSON reports the streams", () => {
    const map = new StreamMap("client", limits(), limits());
    map.openStream(true);
    const json = map.toJSON() as { open: number; streams: Array<{ id: number; send: { state: string } }> };
    expect(json.open).toBe(1);
    expect(json.streams[0]!.send.state).toBe("ready");
    expect(JSON.parse(JSON.stringify(map)).open).toBe(1);
  });
});
