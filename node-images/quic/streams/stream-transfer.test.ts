/**
 * The streams layer as a connection drives it: two StreamMaps with connection-level flow control,
 * packets built from sendable() with STREAM chunks, seeded loss and reordering in virtual time,
 * acknowledgements, MAX_DATA / MAX_STREAM_DATA / MAX_STREAMS updates. Control frames are delivered
 * reliably after one one-way delay (their retransmission is the connection's job).
 */
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../common/seeded-random.ts";
import { ConnectionRecvFlow, ConnectionSendFlow } from "./flow-control.ts";
import { StreamMap, type StreamLimits } from "./stream-map.ts";
import { streamIdIsBidirectional } from "./stream-id.ts";

interface Frame {
  streamId: number;
  offset: number;
  data: Buffer;
  fin: boolean;
}

const ONE_WAY_MS = 5;
const PACKET_BYTES = 1200;
const FRAME_OVERHEAD_BYTES = 24;

function limits(): StreamLimits {
  return {
    maxStreamsBidi: 4,
    maxStreamsUni: 4,
    initialMaxStreamDataBidiLocal: 16 * 1024,
    initialMaxStreamDataBidiRemote: 16 * 1024,
    initialMaxStreamDataUni: 16 * 1024,
    maxStreamWindowBytes: 256 * 1024,
    sendBufferBytes: 32 * 1024,
  };
}

interface Side {
  streams: StreamMap;
  sendFlow: ConnectionSendFlow;
  recvFlow: ConnectionRecvFlow;
  /** Bytes read per stream. */
  received: Map<number, Buffer[]>;
  finished: Set<number>;
}

function side(role: "client" | "server"): Side {
  return {
    streams: new StreamMap(role, limits(), limits()),
    sendFlow: new ConnectionSendFlow(64 * 1024),
    recvFlow: new ConnectionRecvFlow(64 * 1024, 1 << 20),
    received: new Map(),
    finished: new Set(),
  };
}

describe("many streams over a lossy path", () => {
  for (const seed of [21, 22, 23]) {
    it(`requests and echoed responses arrive intact under flow control, stream limits, 5% loss and reordering (seed ${seed})`, () => {
      const rng = new SeededRandom(seed);
      const client = side("client");
      const server = side("server");
      const payloads = Array.from({ length: 24 }, () => rng.bytes(1 + Math.floor(rng.next() * 120_000)));
      const payloadOf = new Map<number, number>(); // client stream id → payload index
      const writtenBytes = new Map<string, number>(); // "role:stream id" → bytes written so far
      let nextPayload = 0;
      const events: Array<{ at: number; run: () => void }> = [];
      let now = 0;
      const schedule = (at: number, run: () => void): void => {
        events.push({ at, run });
      };

      /** Write `data` from `written` on, finishing when all is in. */
      const writeFrom = (s: Side, id: number, data: Buffer, complete: boolean): void => {
        const key = `${s.streams.role}:${id}`;
        const done = writtenBytes.get(key) ?? 0;
        const send = s.streams.get(id)?.send;
        if (!send || send.finalSize !== undefined) return; // finished or reset
        const n = done + send.write(data.subarray(done));
        writtenBytes.set(key, n);
        if (complete && n === data.length) send.finish();
      };

      const transmit = (from: Side, to: Side): void => {
        const packet: Frame[] = [];
        let room = PACKET_BYTES;
        for (const stream of from.streams.sendable(from.sendFlow.available())) {
          while (room > FRAME_OVERHEAD_BYTES) {
            const chunk = stream.nextChunk(room - FRAME_OVERHEAD_BYTES, from.sendFlow.available());
            if (!chunk) break;
            const newBytes = Math.max(0, chunk.offset + chunk.data.length - chunk.previouslySentEnd);
            if (newBytes > 0) from.sendFlow.consume(newBytes);
            packet.push({ streamId: stream.id, offset: chunk.offset, data: Buffer.from(chunk.data), fin: chunk.fin });
            room -= FRAME_OVERHEAD_BYTES + chunk.data.length;
          }
          if (room <= FRAME_OVERHEAD_BYTES) break;
        }
        if (packet.length === 0) return;
        if (rng.chancePercent(5)) {
          schedule(now + 3 * ONE_WAY_MS, () => {
            for (const f of packet) from.streams.get(f.streamId)?.send?.onLost(f.offset, f.data.length, f.fin);
          });
          return;
        }
        schedule(now + ONE_WAY_MS + Math.floor(rng.next() * 3), () => {
          for (const f of packet) {
            const s = to.streams.getOrCreateForFrame(f.streamId, "stream");
            if (!s?.recv) continue;
            const before = s.recv.highestReceivedOffset;
            s.recv.onStreamFrame(f.offset, f.data, f.fin);
            to.recvFlow.onBytesReceived(s.recv.highestReceivedOffset - before);
          }
          schedule(now + ONE_WAY_MS, () => {
            for (const f of packet) from.streams.get(f.streamId)?.send?.onAcked(f.offset, f.data.length, f.fin);
          });
        });
      };

      /** Read everything readable; the server echoes bidirectional requests; flow-control updates go back. */
      const readAll = (s: Side, peer: Side, echo: boolean): void => {
        for (const id of s.streams.drainOpened()) s.received.set(id, []);
        for (const [id, chunks] of s.received) {
          const recv = s.streams.get(id)?.recv;
          if (!recv) continue;
          for (let data = recv.read(); data; data = recv.read()) {
            chunks.push(data);
            s.recvFlow.onBytesConsumed(data.length);
          }
          if (recv.finished) s.finished.add(id);
          if (echo && streamIdIsBidirectional(id)) writeFrom(s, id, Buffer.concat(chunks), recv.finished);
          const limit = recv.maybeMaxStreamData(now, 2 * ONE_WAY_MS);
          if (limit !== undefined) schedule(now + ONE_WAY_MS, () => peer.streams.get(id)?.send?.updateSendLimit(limit));
          s.streams.collect(id);
        }
        s.recvFlow.onBytesConsumed(s.streams.takeDiscardedBytes());
        const maxData = s.recvFlow.maybeMaxData(now, 2 * ONE_WAY_MS);
        if (maxData !== undefined) schedule(now + ONE_WAY_MS, () => peer.sendFlow.updateLimit(maxData));
        for (const m of s.streams.pollMaxStreams()) schedule(now + ONE_WAY_MS, () => peer.streams.onMaxStreams(m.bidi, m.max));
      };

      const bidiCount = payloads.filter((_, i) => i % 3 !== 0).length;
      const done = (): boolean => server.finished.size === payloads.length && client.finished.size === bidiCount;
      for (let step = 0; step < 200_000 && !done(); step++) {
        now += 1;
        while (nextPayload < payloads.length) {
          const id = client.streams.openStream(nextPayload % 3 !== 0);
          if (id === undefined) break;
          payloadOf.set(id, nextPayload++);
          client.received.set(id, []);
        }
        for (const [id, index] of payloadOf) writeFrom(client, id, payloads[index]!, true);
        transmit(client, server);
        transmit(server, client);
        events.sort((a, b) => a.at - b.at);
        while (events.length > 0 && events[0]!.at <= now) events.shift()!.run();
        readAll(server, client, true);
        readAll(client, server, false);
      }

      expect(server.finished.size).toBe(payloads.length);
      expect(client.finished.size).toBe(bidiCount);
      for (const [id, index] of payloadOf) {
        expect(Buffer.concat(server.received.get(id)!).equals(payloads[index]!)).toBe(true);
        if (streamIdIsBidirectional(id)) expect(Buffer.concat(client.received.get(id)!).equals(payloads[index]!)).toBe(true);
      }
      const total = payloads.reduce((n, p) => n + p.length, 0);
      expect(server.recvFlow.received).toBe(total);
      // Let the last acknowledgements arrive: then every stream is forgotten on both sides.
      for (let step = 0; step < 1000 && events.length > 0; step++) {
        now += 1;
        transmit(client, server);
        transmit(server, client);
        events.sort((a, b) => a.at - b.at);
        while (events.length > 0 && events[0]!.at <= now) events.shift()!.run();
        readAll(server, client, true);
        readAll(client, server, false);
      }
      expect(client.streams.size).toBe(0);
      expect(server.streams.size).toBe(0);
    });
  }
});
