/**
 * HTTP/0.9 over QUIC, ALPN "hq-interop" (the QUIC interop runner's test protocol): on each
 * client-initiated bidirectional stream the client sends "GET /path\r\n" and FIN; the server sends
 * the file's bytes and FIN, or resets the stream when it has no such file. No headers, no status.
 * Sans-I/O: both sides consume endpoint/QUIC events and use `wake` to let the endpoint send.
 */
import type { Connection } from "./connection.ts";
import type { EndpointEvent } from "./endpoint.ts";
import type { ConnectionEvent } from "./events.ts";
import type { Instant } from "./time.ts";

export const HQ_INTEROP_ALPN = "hq-interop";
/** A request line longer than this is refused (the stream is reset), a guard against memory use. */
const MAX_REQUEST_LINE_BYTES = 8 * 1024;
const WRITE_CHUNK_BYTES = 64 * 1024;
/** Stream error codes we use (hq-interop defines none; these are HTTP/3's, for familiarity in captures). */
export const HQ_ERROR_CODES = { NOT_FOUND: 0x10c, BAD_REQUEST: 0x10e } as const;

/** Parse "GET /path\r\n" (a bare "\n" is tolerated); undefined when malformed. */
export function parseHqRequestLine(line: string): string | undefined {
  const m = /^GET (\/[^\s]*)\r?$/.exec(line);
  return m ? m[1] : undefined;
}

interface Outgoing {
  conn: Connection;
  streamId: number;
  data: Uint8Array;
  offset: number;
}

export interface HqServerOptions {
  /** The response body for a path, or undefined for "no such file" (the stream is reset). */
  onRequest: (path: string, conn: Connection) => Uint8Array | undefined;
  wake: (conn: Connection) => void;
}

export class HqServer {
  readonly counters = { requests: 0, notFound: 0, badRequests: 0 };
  private readonly options: HqServerOptions;
  private readonly lines = new Map<Connection, Map<number, Buffer>>();
  private readonly answered = new WeakMap<Connection, Set<number>>();
  private outgoing: Outgoing[] = [];

  constructor(options: HqServerOptions) {
    this.options = options;
  }

  handleEndpointEvent(e: EndpointEvent): void {
    if (e.type === "connectionRemoved") {
      this.lines.delete(e.connection);
      this.outgoing = this.outgoing.filter((o) => o.conn !== e.connection);
      return;
    }
    if (e.type !== "connection") return;
    this.handleQuicEvent(e.connection, e.event);
  }

  handleQuicEvent(conn: Connection, event: ConnectionEvent): void {
    if (event.type === "streamReadable") this.onReadable(conn, event.streamId);
    else if (event.type === "connectionClosed") this.lines.delete(conn);
    else if (event.type === "stopSendingReceived" || event.type === "streamReset") {
      this.outgoing = this.outgoing.filter((o) => !(o.conn === conn && o.streamId === event.streamId));
    }
    this.writeOutgoing();
  }

  private onReadable(conn: Connection, id: number): void {
    let streams = this.lines.get(conn);
    if (!streams) this.lines.set(conn, (streams = new Map()));
    let buf = streams.get(id) ?? Buffer.alloc(0);
    for (let d = conn.streamRead(id); d && d.length > 0; d = conn.streamRead(id)) buf = Buffer.concat([buf, d]);
    let answered = this.answered.get(conn);
    if (!answered) this.answered.set(conn, (answered = new Set()));
    if (answered.has(id)) return;
    const newline = buf.indexOf(0x0a);
    const fin = conn.streamIsFinished(id);
    if (newline < 0 && !fin && buf.length <= MAX_REQUEST_LINE_BYTES) {
      streams.set(id, buf);
      return;
    }
    streams.delete(id);
    answered.add(id);
    // Unidirectional or server-initiated streams carry no requests in HTTP/0.9.
    if ((id & 0x3) !== 0) return;
    const path = newline < 0 ? undefined : parseHqRequestLine(buf.subarray(0, newline).toString("latin1"));
    if (path === undefined) {
      this.counters.badRequests++;
      conn.streamReset(id, HQ_ERROR_CODES.BAD_REQUEST);
      this.options.wake(conn);
      return;
    }
    this.counters.requests++;
    const body = this.options.onRequest(path, conn);
    if (body === undefined) {
      this.counters.notFound++;
      conn.streamReset(id, HQ_ERROR_CODES.NOT_FOUND);
      this.options.wake(conn);
      return;
    }
    this.outgoing.push({ conn, streamId: id, data: body, offset: 0 });
  }

  private writeOutgoing(): void {
    const woken = new Set<Connection>();
    this.outgoing = this.outgoing.filter((o) => {
      if (o.conn.isClosed) return false;
      woken.add(o.conn);
      try {
        while (o.offset < o.data.length) {
          const n = o.conn.streamWrite(o.streamId, o.data.subarray(o.offset, o.offset + WRITE_CHUNK_BYTES));
          if (n === 0) return true;
          o.offset += n;
        }
        o.conn.streamFinish(o.streamId);
      } catch {
        // The stream was stopped or reset by the peer meanwhile: drop what is left.
      }
      return false;
    });
    for (const c of woken) this.options.wake(c);
  }
}

export class HqRequest {
  readonly path: string;
  streamId: number | undefined;
  readonly chunks: Buffer[] = [];
  done = false;
  /** Set when the server reset the stream or the connection closed first. */
  error: string | undefined;
  completedAt: Instant | undefined;

  constructor(path: string) {
    this.path = path;
  }

  get body(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export class HqClient {
  readonly quic: Connection;
  private readonly wake: (conn: Connection) => void;
  private readonly queued: HqRequest[] = [];
  private readonly active = new Map<number, HqRequest>();
  private ready = false;

  constructor(quic: Connection, options: { wake: (conn: Connection) => void }) {
    this.quic = quic;
    this.wake = options.wake;
  }

  get(path: string): HqRequest {
    const req = new HqRequest(path);
    this.queued.push(req);
    this.pump();
    return req;
  }

  handleEndpointEvent(e: EndpointEvent): void {
    if (e.type === "connection" && e.connection === this.quic) this.handleQuicEvent(e.event);
  }

  handleQuicEvent(event: ConnectionEvent): void {
    switch (event.type) {
      case "handshakeCompleted":
        this.ready = true;
        break;
      case "streamReadable":
        this.onReadable(event.streamId, event.at);
        break;
      case "streamReset": {
        const req = this.active.get(event.streamId);
        if (req) this.fail(event.streamId, req, `stream reset by the server with code 0x${event.errorCode.toString(16)}`, event.at);
        break;
      }
      case "connectionClosed":
        for (const [id, req] of this.active) this.fail(id, req, `connection closed: ${event.reason || event.errorCode}`, event.at);
        for (const req of this.queued.splice(0)) {
          req.done = true;
          req.error = "connection closed before the request was sent";
        }
        return;
      default:
        break;
    }
    this.pump();
  }

  /** Open streams for queued requests as the handshake and the peer's stream limit allow. */
  pump(): void {
    while (this.ready && !this.quic.isClosed && this.queued.length > 0) {
      const id = this.quic.openStream(true);
      if (id === undefined) break;
      const req = this.queued.shift()!;
      req.streamId = id;
      this.active.set(id, req);
      // A request line is tiny; the send buffer always takes it whole.
      this.quic.streamWrite(id, Buffer.from(`GET ${req.path}\r\n`, "latin1"));
      this.quic.streamFinish(id);
    }
    this.wake(this.quic);
  }

  private onReadable(id: number, at: Instant): void {
    const req = this.active.get(id);
    for (let d = this.quic.streamRead(id); d && d.length > 0; d = this.quic.streamRead(id)) req?.chunks.push(d);
    if (req && this.quic.streamIsFinished(id)) {
      req.done = true;
      req.completedAt = at;
      this.active.delete(id);
    }
  }

  private fail(id: number, req: HqRequest, reason: string, at: Instant): void {
    req.done = true;
    req.error = reason;
    req.completedAt = at;
    this.active.delete(id);
  }
}
