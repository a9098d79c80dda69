/**
 * A small HTTP/3 server API for the node roles: `onRequest(req)` once a request is complete, and
 * `req.respond(status, headers, body)` with a whole body or a streaming writer. It consumes
 * EndpointEvents (sans-I/O like the rest); `wake` lets the owner's endpoint send what was written.
 */
import type { Connection } from "../connection.ts";
import type { EndpointEvent } from "../endpoint.ts";
import type { Instant } from "../time.ts";
import { Http3Connection, type Http3ConnectionOptions } from "./connection.ts";
import type { Http3Event } from "./events.ts";
import type { FieldLine } from "./qpack.ts";

/** Above this many queued bytes a writer's write() returns false; `ondrain` fires once it is below again. */
const WRITER_HIGH_WATER_BYTES = 256 * 1024;

export interface ResponseWriter {
  /** Queue a body chunk as a DATA frame; false means "wait for ondrain before writing more". */
  write(chunk: Uint8Array): boolean;
  end(chunk?: Uint8Array): void;
  readonly pendingBytes: number;
  ondrain: (() => void) | undefined;
}

export class Http3ServerRequest {
  readonly connection: Http3Connection;
  readonly streamId: number;
  readonly headers: FieldLine[];
  readonly body: Buffer;
  readonly trailers: FieldLine[] | undefined;
  private responded = false;
  private readonly server: Http3Server;

  constructor(server: Http3Server, connection: Http3Connection, streamId: number, headers: FieldLine[], body: Buffer, trailers: FieldLine[] | undefined) {
    this.server = server;
    this.connection = connection;
    this.streamId = streamId;
    this.headers = headers;
    this.body = body;
    this.trailers = trailers;
  }

  header(name: string): string | undefined {
    return this.headers.find(([n]) => n === name)?.[1];
  }

  get method(): string {
    return this.header(":method") ?? "";
  }

  get path(): string {
    return this.header(":path") ?? "";
  }

  get authority(): string | undefined {
    return this.header(":authority") ?? this.header("host");
  }

  /** Send the response: with `body` it is complete; without, write the body through the returned writer. */
  respond(status: number, headers: ReadonlyArray<readonly [string, string]> = [], body?: Uint8Array): ResponseWriter {
    if (this.responded) throw new Http3UsageError(`stream ${this.streamId} already has a response`);
    this.responded = true;
    const fields: FieldLine[] = [[":status", String(status)], ...headers.map(([n, v]) => [n.toLowerCase(), v] as const)];
    const conn = this.connection;
    const id = this.streamId;
    if (body !== undefined) {
      conn.sendHeaders(id, fields);
      conn.sendData(id, body, { endStream: true });
      this.server.wakeConnection(conn);
      return closedWriter();
    }
    conn.sendHeaders(id, fields);
    this.server.wakeConnection(conn);
    const server = this.server;
    let ended = false;
    const writer: ResponseWriter = {
      write(chunk: Uint8Array): boolean {
        if (ended) throw new Http3UsageError(`write after end on stream ${id}`);
        conn.sendData(id, chunk);
        server.wakeConnection(conn);
        return conn.pendingSendBytes(id) < WRITER_HIGH_WATER_BYTES;
      },
      end(chunk?: Uint8Array): void {
        if (ended) return;
        ended = true;
        conn.sendData(id, chunk ?? new Uint8Array(0), { endStream: true });
        server.wakeConnection(conn);
        server.forgetWriter(conn, id);
      },
      get pendingBytes(): number {
        return conn.pendingSendBytes(id);
      },
      ondrain: undefined,
    };
    server.trackWriter(conn, id, writer);
    return writer;
  }
}

/** Misuse of the API by our own code (a bug), not a protocol error. */
export class Http3UsageError extends Error {
  override readonly name = "Http3UsageError";
  readonly code = "HTTP3_USAGE";
}

function closedWriter(): ResponseWriter {
  return {
    write: () => {
      throw new Http3UsageError("the response body was given whole");
    },
    end: () => {},
    pendingBytes: 0,
    ondrain: undefined,
  };
}

interface PartialRequest {
  headers: FieldLine[] | undefined;
  body: Buffer[];
  trailers: FieldLine[] | undefined;
}

export interface Http3ServerOptions extends Http3ConnectionOptions {
  onRequest: (req: Http3ServerRequest) => void;
  /** Let the endpoint send: `(conn) => endpoint.wake(conn, now)` or `udpEndpoint.wake(conn)`. */
  wake: (conn: Connection) => void;
  /** Every HTTP/3 event, for logs and tests. */
  onEvent?: (conn: Http3Connection, event: Http3Event) => void;
}

export class Http3Server {
  readonly connections = new Map<Connection, Http3Connection>();
  private readonly options: Http3ServerOptions;
  private readonly partial = new Map<Http3Connection, Map<number, PartialRequest>>();
  private readonly writers = new Map<Http3Connection, Map<number, ResponseWriter>>();
  private draining = false;

  constructor(options: Http3ServerOptions) {
    this.options = options;
  }

  handleEndpointEvent(e: EndpointEvent): void {
    if (e.type === "connectionAccepted") {
      this.connections.set(e.connection, new Http3Connection(e.connection, this.options));
      return;
    }
    if (e.type === "connectionRemoved") {
      const h3 = this.connections.get(e.connection);
      if (h3) this.forget(h3);
      this.connections.delete(e.connection);
      return;
    }
    const h3 = this.connections.get(e.connection);
    if (!h3) return;
    h3.handleQuicEvent(e.event);
    if (e.event.type === "handshakeCompleted" && this.draining) h3.sendGoaway();
    for (let ev = h3.pollEvent(); ev; ev = h3.pollEvent()) this.onHttp3Event(h3, ev);
    this.notifyDrained(h3);
    this.wakeConnection(h3);
  }

  /** §5.2 graceful shutdown: GOAWAY on every connection; accepted requests still get answers. */
  goaway(): void {
    this.draining = true;
    for (const h3 of this.connections.values()) {
      h3.sendGoaway();
      this.wakeConnection(h3);
    }
  }

  /** Close every connection now with an HTTP/3 code. */
  closeAll(now: Instant): void {
    for (const h3 of this.connections.values()) {
      h3.close(now);
      this.wakeConnection(h3);
    }
  }

  /** Wake the endpoint only when the connection has something new to send. */
  wakeConnection(conn: Http3Connection): void {
    if (conn.takeSendActivity()) this.options.wake(conn.quic);
  }

  trackWriter(conn: Http3Connection, id: number, writer: ResponseWriter): void {
    let m = this.writers.get(conn);
    if (!m) this.writers.set(conn, (m = new Map()));
    m.set(id, writer);
  }

  forgetWriter(conn: Http3Connection, id: number): void {
    this.writers.get(conn)?.delete(id);
  }

  private notifyDrained(h3: Http3Connection): void {
    const m = this.writers.get(h3);
    if (!m) return;
    for (const w of m.values()) if (w.ondrain && w.pendingBytes < WRITER_HIGH_WATER_BYTES / 2) w.ondrain();
  }

  private forget(h3: Http3Connection): void {
    this.partial.delete(h3);
    this.writers.delete(h3);
  }

  private onHttp3Event(h3: Http3Connection, ev: Http3Event): void {
    this.options.onEvent?.(h3, ev);
    let streams = this.partial.get(h3);
    if (!streams) this.partial.set(h3, (streams = new Map()));
    switch (ev.type) {
      case "headersReceived": {
        const p = streams.get(ev.streamId) ?? { headers: undefined, body: [], trailers: undefined };
        if (ev.isTrailers) p.trailers = ev.headers;
        else p.headers = ev.headers;
        streams.set(ev.streamId, p);
        return;
      }
      case "dataReceived":
        streams.get(ev.streamId)?.body.push(ev.data);
        return;
      case "messageCompleted": {
        const p = streams.get(ev.streamId);
        streams.delete(ev.streamId);
        if (!p?.headers) return;
        this.options.onRequest(new Http3ServerRequest(this, h3, ev.streamId, p.headers, Buffer.concat(p.body), p.trailers));
        return;
      }
      case "streamResetByPeer":
      case "streamAborted":
        streams.delete(ev.streamId);
        this.writers.get(h3)?.delete(ev.streamId);
        return;
      case "connectionClosed":
        this.forget(h3);
        return;
      default:
        return;
    }
  }
}
