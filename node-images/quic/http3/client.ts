/**
 * A small HTTP/3 client API for the node roles: `request({method, path, authority, headers})`
 * returns an Http3ClientRequest whose fields fill in as events arrive (pollable in virtual time)
 * and whose `response` promise settles when the exchange ends. Sans-I/O: feed it the QUIC
 * connection's events; `wake` lets the owner's endpoint send.
 */
import type { Connection } from "../connection.ts";
import type { EndpointEvent } from "../endpoint.ts";
import type { ConnectionEvent } from "../events.ts";
import type { Instant } from "../time.ts";
import { Http3Connection, type Http3ConnectionOptions } from "./connection.ts";
import type { Http3Event } from "./events.ts";
import { h3ErrorName } from "./frames.ts";
import type { FieldLine } from "./qpack.ts";

export interface Http3RequestOptions {
  method?: string;
  path: string;
  authority: string;
  scheme?: string;
  headers?: ReadonlyArray<readonly [string, string]>;
  body?: Uint8Array;
}

export interface Http3Response {
  status: number;
  headers: FieldLine[];
  body: Buffer;
  trailers: FieldLine[] | undefined;
}

/** Why a request did not get a complete response: an H3 code name (H3_REQUEST_REJECTED, ...) and a reason. */
export class Http3RequestError extends Error {
  override readonly name = "Http3RequestError";
  readonly code: string;
  /** §5.2 / §8.1: the server did not process it; retrying on a new connection is safe. */
  readonly retryable: boolean;
  constructor(code: string, reason: string, retryable: boolean) {
    super(`${code}: ${reason}`);
    this.code = code;
    this.retryable = retryable;
  }
}

export class Http3ClientRequest {
  readonly options: Http3RequestOptions;
  streamId: number | undefined;
  status: number | undefined;
  headers: FieldLine[] | undefined;
  trailers: FieldLine[] | undefined;
  interim: FieldLine[][] = [];
  readonly chunks: Buffer[] = [];
  receivedBytes = 0;
  done = false;
  error: Http3RequestError | undefined;
  completedAt: Instant | undefined;
  private settle: { resolve: (r: Http3Response) => void; reject: (e: Error) => void } | undefined;
  private promise: Promise<Http3Response> | undefined;

  constructor(options: Http3RequestOptions) {
    this.options = options;
  }

  get body(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Created on first use, so an unobserved failure is not an unhandled rejection. */
  get response(): Promise<Http3Response> {
    if (!this.promise) {
      this.promise = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
      if (this.done) this.notify();
    }
    return this.promise;
  }

  finish(at: Instant, error?: Http3RequestError): void {
    if (this.done) return;
    this.done = true;
    this.completedAt = at;
    this.error = error;
    this.notify();
  }

  private notify(): void {
    if (!this.settle) return;
    if (this.error) this.settle.reject(this.error);
    else this.settle.resolve({ status: this.status ?? 0, headers: this.headers ?? [], body: this.body, trailers: this.trailers });
  }
}

export interface Http3ClientOptions extends Http3ConnectionOptions {
  wake: (conn: Connection) => void;
  onEvent?: (event: Http3Event) => void;
}

export class Http3Client {
  readonly quic: Connection;
  readonly h3: Http3Connection;
  private readonly options: Http3ClientOptions;
  private readonly queued: Http3ClientRequest[] = [];
  private readonly active = new Map<number, Http3ClientRequest>();
  private handshakeDone = false;
  private lastAt: Instant = 0;
  /**
   * The peer's MAX_STREAMS was reached: each failed open queues a STREAMS_BLOCKED frame in QUIC,
   * so retry only after the next QUIC event (one may carry new credit).
   */
  private streamsBlocked = false;

  constructor(quic: Connection, options: Http3ClientOptions) {
    this.quic = quic;
    this.options = options;
    this.h3 = new Http3Connection(quic, options);
  }

  get pendingCount(): number {
    return this.queued.length + this.active.size;
  }

  request(options: Http3RequestOptions): Http3ClientRequest {
    const req = new Http3ClientRequest(options);
    if (this.h3.goawayReceived !== undefined || this.h3.isClosed) {
      req.finish(this.lastAt, new Http3RequestError("H3_REQUEST_REJECTED", "the server sent GOAWAY or the connection is closed", true));
      return req;
    }
    this.queued.push(req);
    this.pump();
    return req;
  }

  /** Feed endpoint events; those of other connections are ignored. */
  handleEndpointEvent(e: EndpointEvent): void {
    if (e.type === "connection" && e.connection === this.quic) this.handleQuicEvent(e.event);
  }

  handleQuicEvent(event: ConnectionEvent): void {
    this.lastAt = event.at;
    this.streamsBlocked = false;
    if (event.type === "handshakeCompleted") this.handshakeDone = true;
    this.h3.handleQuicEvent(event);
    for (let ev = this.h3.pollEvent(); ev; ev = this.h3.pollEvent()) this.onHttp3Event(ev);
    this.pump();
  }

  /** Open streams for queued requests (after the handshake, within the peer's stream limit). */
  pump(): void {
    while (this.handshakeDone && !this.streamsBlocked && !this.h3.isClosed && this.queued.length > 0) {
      const id = this.h3.openRequestStream();
      if (id === undefined) {
        this.streamsBlocked = true;
        this.h3.takeSendActivity();
        this.options.wake(this.quic); // let the STREAMS_BLOCKED go out
        break;
      }
      const req = this.queued.shift()!;
      req.streamId = id;
      this.active.set(id, req);
      const o = req.options;
      const fields: FieldLine[] = [
        [":method", o.method ?? "GET"],
        [":scheme", o.scheme ?? "https"],
        [":authority", o.authority],
        [":path", o.path],
        ...(o.headers ?? []).map(([n, v]) => [n.toLowerCase(), v] as const),
      ];
      const hasBody = o.body !== undefined && o.body.length > 0;
      this.h3.sendHeaders(id, fields, { endStream: !hasBody });
      if (hasBody) this.h3.sendData(id, o.body!, { endStream: true });
    }
    if (this.h3.takeSendActivity()) this.options.wake(this.quic);
  }

  /** Close with H3_NO_ERROR (or a given code). */
  close(now: Instant): void {
    this.h3.close(now);
    if (this.h3.takeSendActivity()) this.options.wake(this.quic);
  }

  private onHttp3Event(ev: Http3Event): void {
    this.options.onEvent?.(ev);
    switch (ev.type) {
      case "headersReceived": {
        const req = this.active.get(ev.streamId);
        if (!req) return;
        if (ev.isTrailers) req.trailers = ev.headers;
        else {
          const status = Number(ev.headers.find(([n]) => n === ":status")?.[1]);
          if (status < 200) req.interim.push(ev.headers);
          else {
            req.status = status;
            req.headers = ev.headers;
          }
        }
        return;
      }
      case "dataReceived": {
        const req = this.active.get(ev.streamId);
        if (!req) return;
        req.chunks.push(ev.data);
        req.receivedBytes += ev.data.length;
        return;
      }
      case "messageCompleted":
        this.active.get(ev.streamId)?.finish(ev.at);
        this.active.delete(ev.streamId);
        return this.closeIfDrained(ev.at);
      case "streamResetByPeer":
      case "streamAborted": {
        const req = this.active.get(ev.streamId);
        if (!req) return;
        if (ev.type === "streamResetByPeer" && ev.direction === "send" && req.status === undefined) {
          // §4.1.1: STOP_SENDING alone (e.g. H3_NO_ERROR after an early response) does not end the response.
          if (ev.errorCode === 0x100) return;
        }
        this.active.delete(ev.streamId);
        const code = h3ErrorName(ev.errorCode);
        // §8.1: H3_REQUEST_REJECTED means the request was not processed.
        req.finish(ev.at, new Http3RequestError(code, ev.type === "streamAborted" ? ev.reason : "reset by the server", code === "H3_REQUEST_REJECTED"));
        return this.closeIfDrained(ev.at);
      }
      case "goawayReceived": {
        // §5.2: requests on streams at or above the id were not processed; unsent ones never will be.
        for (const [id, req] of this.active) {
          if (id >= ev.id) {
            this.active.delete(id);
            req.finish(ev.at, new Http3RequestError("H3_REQUEST_REJECTED", `stream ${id} at or above GOAWAY ${ev.id}`, true));
          }
        }
        for (const req of this.queued.splice(0)) req.finish(ev.at, new Http3RequestError("H3_REQUEST_REJECTED", "GOAWAY before the request was sent", true));
        return this.closeIfDrained(ev.at);
      }
      case "connectionClosed": {
        const code = ev.isApplication ? h3ErrorName(ev.errorCode) : `QUIC 0x${ev.errorCode.toString(16)}`;
        for (const req of [...this.active.values(), ...this.queued.splice(0)]) {
          req.finish(ev.at, new Http3RequestError(code, `connection closed (${ev.initiator}): ${ev.reason}`, false));
        }
        this.active.clear();
        return;
      }
      default:
        return;
    }
  }

  /** After a GOAWAY, close once every accepted request has its answer (§5.2). */
  private closeIfDrained(at: Instant): void {
    if (this.h3.goawayReceived !== undefined && this.active.size === 0 && this.queued.length === 0 && !this.h3.isClosed) {
      this.h3.close(at, "H3_NO_ERROR", "drained after GOAWAY");
    }
  }
}
