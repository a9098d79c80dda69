/**
 * Small applications for protocol tests in the simulated network: a server that answers each
 * stream with the SHA-256 of what it received (or streams N seeded bytes back), and a client that
 * uploads or downloads and checks the bytes. They drive connections only through the public API.
 */
import { createHash } from "node:crypto";
import { SeededRandom } from "../../node-images/common/seeded-random.ts";
import type { Connection } from "../../node-images/quic/connection.ts";
import type { Endpoint, EndpointEvent } from "../../node-images/quic/endpoint.ts";
import type { Instant } from "../../node-images/quic/time.ts";

export function seededBytes(seed: number, length: number): Buffer {
  const r = new SeededRandom(seed);
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i + 4 <= length; i += 4) out.writeUInt32LE(r.nextUint32(), i);
  for (let i = length - (length % 4); i < length; i++) out[i] = r.nextUint32() & 0xff;
  return out;
}

/** Answers "SINK\n…" with {bytes, sha256} and "SOURCE n seed\n" with n seeded bytes. */
export class HashServer {
  readonly endpoint: Endpoint;
  readonly errors: string[] = [];
  private readonly received = new Map<Connection, Map<number, Buffer[]>>();
  private readonly answered = new WeakMap<Connection, Set<number>>();
  private readonly outgoing: Array<{ conn: Connection; streamId: number; data: Buffer; offset: number }> = [];

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }

  pump(now: Instant): void {
    for (let e = this.endpoint.pollEvent(); e; e = this.endpoint.pollEvent()) this.onEvent(e, now);
    this.writeOutgoing(now);
  }

  private onEvent(e: EndpointEvent, now: Instant): void {
    if (e.type !== "connection") return;
    const { connection: conn, event } = e;
    if (event.type === "streamReadable") {
      let streams = this.received.get(conn);
      if (!streams) this.received.set(conn, (streams = new Map()));
      let chunks = streams.get(event.streamId);
      if (!chunks) streams.set(event.streamId, (chunks = []));
      for (let d = conn.streamRead(event.streamId); d && d.length > 0; d = conn.streamRead(event.streamId)) chunks.push(d);
      if (conn.streamIsFinished(event.streamId)) {
        streams.delete(event.streamId);
        let answered = this.answered.get(conn);
        if (!answered) this.answered.set(conn, (answered = new Set()));
        if (answered.has(event.streamId)) {
          this.errors.push(`stream ${event.streamId} reported readable after it was answered`);
          return;
        }
        answered.add(event.streamId);
        this.answer(conn, event.streamId, Buffer.concat(chunks), now);
      }
      this.endpoint.wake(conn, now);
    } else if (event.type === "streamWritable") {
      this.writeOutgoing(now);
    } else if (event.type === "connectionClosed") {
      this.received.delete(conn);
    }
  }

  private answer(conn: Connection, streamId: number, request: Buffer, now: Instant): void {
    const newline = request.indexOf(0x0a);
    const command = request.subarray(0, newline < 0 ? request.length : newline).toString("latin1").split(" ");
    let reply: Buffer;
    if (command[0] === "SINK") {
      const body = request.subarray(newline + 1);
      reply = Buffer.from(JSON.stringify({ bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") }));
    } else if (command[0] === "SOURCE") {
      reply = seededBytes(Number(command[2] ?? 0), Number(command[1] ?? 0));
    } else {
      this.errors.push(`unknown command ${command[0]}`);
      reply = Buffer.from("ERR");
    }
    this.outgoing.push({ conn, streamId, data: reply, offset: 0 });
    this.writeOutgoing(now);
  }

  private writeOutgoing(now: Instant): void {
    for (let i = 0; i < this.outgoing.length; ) {
      const o = this.outgoing[i]!;
      if (o.conn.isClosed) {
        this.outgoing.splice(i, 1);
        continue;
      }
      while (o.offset < o.data.length) {
        const n = o.conn.streamWrite(o.streamId, o.data.subarray(o.offset, o.offset + 65536));
        if (n === 0) break;
        o.offset += n;
      }
      if (o.offset >= o.data.length) {
        o.conn.streamFinish(o.streamId);
        this.outgoing.splice(i, 1);
      } else {
        i++;
      }
      this.endpoint.wake(o.conn, now);
    }
  }
}

export interface TransferResult {
  ok: boolean;
  reply: Buffer;
  finishedAt?: Instant;
}

/** One request on one new bidirectional stream; collects the reply. */
export class StreamRequest {
  readonly conn: Connection;
  readonly endpoint: Endpoint;
  streamId: number | undefined;
  private readonly request: Buffer;
  private offset = 0;
  private readonly chunks: Buffer[] = [];
  done = false;
  finishedAt: Instant | undefined;

  constructor(endpoint: Endpoint, conn: Connection, request: Buffer) {
    this.endpoint = endpoint;
    this.conn = conn;
    this.request = request;
  }

  get reply(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Call after every simulation step; opens the stream once the handshake is done. */
  pump(now: Instant): void {
    if (this.done || this.conn.isClosed) return;
    if (this.streamId === undefined) {
      if (this.conn.state !== "established") return;
      this.streamId = this.conn.openStream(true);
      if (this.streamId === undefined) return;
    }
    const id = this.streamId;
    while (this.offset < this.request.length) {
      const n = this.conn.streamWrite(id, this.request.subarray(this.offset, this.offset + 65536));
      if (n === 0) break;
      this.offset += n;
      if (this.offset === this.request.length) this.conn.streamFinish(id);
    }
    for (let d = this.conn.streamRead(id); d && d.length > 0; d = this.conn.streamRead(id)) this.chunks.push(d);
    if (this.conn.streamIsFinished(id)) {
      this.done = true;
      this.finishedAt = now;
    }
    this.endpoint.wake(this.conn, now);
  }
}

/** Drain client-side endpoint events (they are not needed by StreamRequest, which polls the connection). */
export function drainEvents(endpoint: Endpoint, into?: EndpointEvent[]): void {
  for (let e = endpoint.pollEvent(); e; e = endpoint.pollEvent()) into?.push(e);
}
