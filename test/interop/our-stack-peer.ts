/**
 * Our QUIC stack (node-images/quic, over UdpEndpoint) as an interop peer speaking the SINK/SOURCE stream
 * protocol of quiche-peer.ts (see README.md), so it can face the quiche peer over real UDP:
 *
 *   OurStackClient: connect, then upload (SINK) or download (SOURCE) on one bidirectional stream each.
 *   OurStackServer: answers SINK with {"bytes":N,"sha256":"<hex>"} and SOURCE with SeededRandom(seed).bytes(n).
 *
 * Either side can start key updates (RFC 9001 §6) when a stream has moved given byte counts, which is how
 * the interop test checks that quiche follows a key update mid-transfer (quiche itself never starts one).
 *
 *   node test/interop/our-stack-peer.ts server --host 127.0.0.1 --port 0 --cert server.pem --key server.key.pem
 *   node test/interop/our-stack-peer.ts client --port N --ca ca.pem (--upload BYTES | --download BYTES) [--seed S]
 *        [--cipher-suite TLS_CHACHA20_POLY1305_SHA256] [--key-update-at BYTES ...]
 *
 * Stdout carries JSON lines only, as quiche-peer.ts does.
 */
import { createHash, type Hash } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { SeededRandom } from "../../node-images/common/seeded-random.ts";
import type { Connection } from "../../node-images/quic/connection.ts";
import type { CipherSuiteName } from "../../node-images/quic/crypto/cipher-suites.ts";
import type { EndpointEvent } from "../../node-images/quic/endpoint.ts";
import type { ConnectionEvent } from "../../node-images/quic/events.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import { UdpEndpoint } from "../../node-images/quic/udp-endpoint.ts";

/** The quiche peer's flow-control windows and datagram size (js-quic config.js defaults): 1350-byte UDP payloads. */
const DATAGRAM_SIZE_BYTES = 1350;
const WRITE_CHUNK_BYTES = 64 * 1024;
const COMMAND_LINE_MAX_BYTES = 256;
/** Large socket buffers keep loopback bursts from overflowing the kernel's default receive queue. */
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;
const MAX_IDLE_TIMEOUT_MS = 30_000;
/**
 * The server's per-stream send buffer. Smaller than the stack's 1 MiB default so that a SOURCE reply is written
 * in steps paced by acknowledgements (streamWritable events), which is when the server checks its key-update
 * schedule; 256 KiB is still far above the bandwidth-delay product of loopback.
 */
const SERVER_STREAM_SEND_BUFFER_BYTES = 256 * 1024;
const CIPHER_SUITE_NAMES: readonly CipherSuiteName[] = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];

export class OurStackPeerError extends Error {
  override readonly name = "OurStackPeerError";
  readonly code = "OUR_STACK_PEER_FAILED";
}

export class OurStackPeerUsageError extends Error {
  override readonly name = "OurStackPeerUsageError";
  readonly code = "OUR_STACK_PEER_USAGE";
}

export interface TransferReport {
  direction: "upload" | "download";
  bytes: number;
  sha256: string;
  /** From opening the stream to its reply's FIN. */
  transferMs: number;
  /** Key updates this side started during the transfer, and the byte counts at which they started. */
  keyUpdatesAtBytes: number[];
}

export interface ConnectionSummary {
  keyUpdatesLocal: number;
  keyUpdatesPeer: number;
  closed?: { initiator: string; errorCode: number; isApplication: boolean; reason: string };
}

/** The expected SOURCE/SINK payload: SeededRandom(seed).bytes(n), the quiche peer's definition (one byte per draw). */
export function seededPayload(seed: number, bytes: number): Buffer {
  return new SeededRandom(seed).bytes(bytes);
}

export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Digests of seeded payloads by "seed/bytes": SeededRandom makes ~10 M calls per 10 MB, worth doing once per payload. */
const seededSha256Cache = new Map<string, string>();

/** sha256 of SeededRandom(seed).bytes(bytes), computed once per (seed, bytes). */
export function seededPayloadSha256(seed: number, bytes: number, payload?: Buffer): string {
  const key = `${seed}/${bytes}`;
  let digest = seededSha256Cache.get(key);
  if (digest === undefined) {
    digest = sha256Hex(payload ?? seededPayload(seed, bytes));
    seededSha256Cache.set(key, digest);
  }
  return digest;
}

/** Starts a key update once per threshold, retrying while RFC 9001 §6.1 does not allow one yet. */
class KeyUpdateSchedule {
  private readonly pendingAtBytes: number[];
  readonly startedAtBytes: number[] = [];

  constructor(atBytes: readonly number[]) {
    this.pendingAtBytes = [...atBytes].sort((a, b) => a - b);
  }

  get remaining(): number {
    return this.pendingAtBytes.length;
  }

  maybeStart(connection: Connection, movedBytes: number, now: number): void {
    const next = this.pendingAtBytes[0];
    if (next === undefined || movedBytes < next) return;
    if (connection.initiateKeyUpdate(now)) {
      this.pendingAtBytes.shift();
      this.startedAtBytes.push(movedBytes);
    }
  }
}

function watchKeyUpdates(summary: ConnectionSummary, event: ConnectionEvent): void {
  if (event.type === "keyUpdated") {
    if (event.initiator === "local") summary.keyUpdatesLocal++;
    else summary.keyUpdatesPeer++;
  } else if (event.type === "connectionClosed") {
    summary.closed = { initiator: event.initiator, errorCode: event.errorCode, isApplication: event.isApplication, reason: event.reason };
  }
}

function describeConnection(connection: Connection): string {
  const s = connection.stats;
  return `state=${connection.state} sent=${s.packetsSent} received=${s.packetsReceived} lost=${s.packetsLost} drops=${JSON.stringify(s.drops)}`;
}

// ---------------------------------------------------------------------------------------------
// Client

interface ClientRequest {
  direction: "upload" | "download";
  request: Buffer;
  written: number;
  streamId: number | undefined;
  replyBytes: number;
  replyChunks: Buffer[];
  replyHash: Hash;
  startedAt: number;
  keyUpdates: KeyUpdateSchedule;
  settle: (error: Error | undefined) => void;
}

export interface OurStackClientOptions {
  remote: SocketAddress;
  caPem: string;
  /** Checked against the certificate's DNS names; our interop certificates carry "localhost". */
  serverName?: string;
  alpn?: string[];
  /** Offer only these (RFC 8446 §4.1.2): the server must pick one of them. */
  cipherSuites?: CipherSuiteName[];
  localAddress?: string;
}

export class OurStackClient implements AsyncDisposable {
  readonly udp: UdpEndpoint;
  readonly connection: Connection;
  readonly summary: ConnectionSummary = { keyUpdatesLocal: 0, keyUpdatesPeer: 0 };
  handshakeMs = 0;
  private readonly requests = new Set<ClientRequest>();
  private handshakeWaiter: ((error: Error | undefined) => void) | undefined;

  private constructor(udp: UdpEndpoint, connection: Connection) {
    this.udp = udp;
    this.connection = connection;
  }

  /** Binds a socket, connects, and resolves once the handshake completed (rejects on close or after `timeoutMs`). */
  static async connect(options: OurStackClientOptions, timeoutMs: number): Promise<OurStackClient> {
    let client: OurStackClient | undefined;
    const pendingEvents: EndpointEvent[] = [];
    const udp = await UdpEndpoint.bind({
      bind: [{ address: options.localAddress ?? (options.remote.address.includes(":") ? "::1" : "127.0.0.1"), port: 0 }],
      socketBufferBytes: SOCKET_BUFFER_BYTES,
      onEvent: (event) => (client ? client.onEvent(event) : pendingEvents.push(event)),
    });
    const started = performance.now();
    try {
      const connection = udp.connect(
        {
          tls: {
            alpnProtocols: options.alpn ?? ["hq-interop"],
            serverName: options.serverName ?? "localhost",
            ca: [options.caPem],
            cipherSuites: options.cipherSuites,
          },
          maxDatagramSizeBytes: DATAGRAM_SIZE_BYTES,
          transportParameters: { maxIdleTimeoutMs: MAX_IDLE_TIMEOUT_MS },
        },
        options.remote,
      );
      client = new OurStackClient(udp, connection);
      for (const event of pendingEvents.splice(0)) client.onEvent(event);
      if (connection.state !== "established") {
        await client.waitFor(
          (settle) => {
            client!.handshakeWaiter = settle;
          },
          timeoutMs,
          "handshake",
        );
      }
      client.handshakeMs = performance.now() - started;
      return client;
    } catch (error) {
      await udp.close();
      throw error;
    }
  }

  /** SINK: sends SeededRandom(seed).bytes(n); the server's {bytes, sha256} reply must match what was sent. */
  async upload(bytes: number, seed: number, opts: { timeoutMs: number; keyUpdateAtBytes?: number[] }): Promise<TransferReport> {
    const payload = seededPayload(seed, bytes);
    const expected = { bytes, sha256: seededPayloadSha256(seed, bytes, payload) };
    const request = this.startRequest("upload", Buffer.concat([Buffer.from("SINK\n", "ascii"), payload]), opts.keyUpdateAtBytes ?? []);
    await this.waitFor((settle) => (request.settle = settle), opts.timeoutMs, `upload of ${bytes} bytes`);
    const replyText = Buffer.concat(request.replyChunks).toString("utf8");
    let reply: unknown;
    try {
      reply = JSON.parse(replyText);
    } catch {
      throw new OurStackPeerError(`upload: the server's reply is not JSON: ${JSON.stringify(replyText.slice(0, 200))}`);
    }
    const r = reply as { bytes?: unknown; sha256?: unknown };
    if (r.bytes !== expected.bytes || r.sha256 !== expected.sha256) {
      throw new OurStackPeerError(`upload: server received ${String(r.bytes)} bytes sha256 ${String(r.sha256)}, sent ${expected.bytes} bytes sha256 ${expected.sha256}`);
    }
    return { direction: "upload", ...expected, transferMs: performance.now() - request.startedAt, keyUpdatesAtBytes: request.keyUpdates.startedAtBytes };
  }

  /** SOURCE: the reply must be exactly SeededRandom(seed).bytes(n). */
  async download(bytes: number, seed: number, opts: { timeoutMs: number; keyUpdateAtBytes?: number[] }): Promise<TransferReport> {
    const request = this.startRequest("download", Buffer.from(`SOURCE ${bytes} ${seed}\n`, "ascii"), opts.keyUpdateAtBytes ?? []);
    await this.waitFor((settle) => (request.settle = settle), opts.timeoutMs, `download of ${bytes} bytes`);
    const transferMs = performance.now() - request.startedAt;
    const received = { bytes: request.replyBytes, sha256: request.replyHash.digest("hex") };
    const expected = seededPayloadSha256(seed, bytes);
    if (received.bytes !== bytes || received.sha256 !== expected) {
      throw new OurStackPeerError(`download: received ${received.bytes} bytes sha256 ${received.sha256}, expected ${bytes} bytes sha256 ${expected}`);
    }
    return { direction: "download", ...received, transferMs, keyUpdatesAtBytes: request.keyUpdates.startedAtBytes };
  }

  /** Closes with application error 0 (RFC 9000 §10.2) and waits a moment for the close to go out before unbinding. */
  async close(): Promise<void> {
    if (!this.connection.isClosed && this.connection.state !== "closing" && this.connection.state !== "draining") {
      this.connection.close(this.udp.now(), 0, "done");
      this.udp.wake(this.connection);
      // The CONNECTION_CLOSE goes out in the flush that wake() queued as a microtask, and dgram hands it to the
      // kernel on process.nextTick; one setImmediate runs after both (an ordering, not a timed wait), then unbind.
      await new Promise<void>((resolveSend) => setImmediate(resolveSend));
    }
    await this.udp.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private startRequest(direction: "upload" | "download", request: Buffer, keyUpdateAtBytes: number[]): ClientRequest {
    const r: ClientRequest = {
      direction,
      request,
      written: 0,
      streamId: undefined,
      replyBytes: 0,
      replyChunks: [],
      replyHash: createHash("sha256"),
      startedAt: performance.now(),
      keyUpdates: new KeyUpdateSchedule(keyUpdateAtBytes),
      settle: () => {},
    };
    this.requests.add(r);
    this.pump();
    return r;
  }

  private waitFor(arm: (settle: (error: Error | undefined) => void) => void, timeoutMs: number, what: string): Promise<void> {
    return new Promise<void>((resolveWait, rejectWait) => {
      const timer = setTimeout(() => {
        rejectWait(new OurStackPeerError(`${what}: not done within ${timeoutMs} ms (${describeConnection(this.connection)})`));
      }, timeoutMs);
      arm((error) => {
        clearTimeout(timer);
        if (error) rejectWait(error);
        else resolveWait();
      });
    });
  }

  private onEvent(event: EndpointEvent): void {
    if (event.type !== "connection" || event.connection !== this.connection) return;
    const e = event.event;
    watchKeyUpdates(this.summary, e);
    if (e.type === "handshakeCompleted") {
      this.handshakeWaiter?.(undefined);
      this.handshakeWaiter = undefined;
    }
    if (e.type === "connectionClosed") {
      const error = new OurStackPeerError(
        `connection closed by ${e.initiator}: ${e.isApplication ? "application" : "transport"} error 0x${e.errorCode.toString(16)} "${e.reason}" (${describeConnection(this.connection)})`,
      );
      this.handshakeWaiter?.(error);
      this.handshakeWaiter = undefined;
      for (const r of this.requests) r.settle(error);
      this.requests.clear();
      return;
    }
    this.pump();
  }

  /** Writes what the streams accept, reads what arrived, starts due key updates; then lets the endpoint send. */
  private pump(): void {
    const conn = this.connection;
    if (conn.state !== "established" || this.requests.size === 0) return;
    const now = this.udp.now();
    for (const r of [...this.requests]) {
      if (r.streamId === undefined) {
        r.streamId = conn.openStream(true);
        if (r.streamId === undefined) continue;
        r.startedAt = performance.now();
      }
      const id = r.streamId;
      while (r.written < r.request.length) {
        const n = conn.streamWrite(id, r.request.subarray(r.written, r.written + WRITE_CHUNK_BYTES));
        if (n === 0) break;
        r.written += n;
        if (r.written === r.request.length) conn.streamFinish(id);
      }
      for (let d = conn.streamRead(id); d && d.length > 0; d = conn.streamRead(id)) {
        r.replyBytes += d.length;
        if (r.direction === "download") r.replyHash.update(d);
        else if (r.replyBytes <= COMMAND_LINE_MAX_BYTES) r.replyChunks.push(d);
      }
      r.keyUpdates.maybeStart(conn, r.direction === "upload" ? r.written : r.replyBytes, now);
      if (conn.streamIsFinished(id)) {
        this.requests.delete(r);
        r.settle(
          r.keyUpdates.remaining > 0
            ? new OurStackPeerError(`${r.direction}: finished before ${r.keyUpdates.remaining} key update(s) could start (started at ${r.keyUpdates.startedAtBytes.join(", ")} bytes)`)
            : undefined,
        );
      }
    }
    this.udp.wake(conn);
  }
}

// ---------------------------------------------------------------------------------------------
// Server

interface ServedStream {
  commandBytes: Buffer[];
  command: string | undefined;
  /** SINK: hash of the payload received so far. */
  sinkHash: Hash | undefined;
  sinkBytes: number;
  /** Reply still to be written: a fixed buffer, or SOURCE bytes produced chunk by chunk. */
  replyPending: Buffer;
  source: { random: SeededRandom; remainingBytes: number } | undefined;
  replyDone: boolean;
  movedBytes: number;
}

interface ServedConnection {
  summary: ConnectionSummary;
  streams: Map<number, ServedStream>;
  keyUpdates: KeyUpdateSchedule;
  movedBytes: number;
}

export interface OurStackServerOptions {
  host?: string;
  port?: number;
  certPem: string;
  keyPem: string;
  alpn?: string[];
  /** Accept only these (server preference order). */
  cipherSuites?: CipherSuiteName[];
  /** Start a key update on each connection when it has moved (received + sent) these many stream bytes. */
  keyUpdateAtBytes?: number[];
  requireRetry?: boolean;
}

export interface ServedStreamRecord {
  streamId: number;
  command: "SINK" | "SOURCE";
  bytes: number;
  sha256?: string;
}

export class OurStackServer implements AsyncDisposable {
  readonly udp: UdpEndpoint;
  /** Protocol errors of the peers' requests (unknown command, oversized command line). */
  readonly errors: string[] = [];
  readonly served: Array<ServedStreamRecord & { connection: Connection }> = [];
  readonly connections = new Map<Connection, ServedConnection>();
  private readonly keyUpdateAtBytes: number[];

  private constructor(udp: UdpEndpoint, keyUpdateAtBytes: number[]) {
    this.udp = udp;
    this.keyUpdateAtBytes = keyUpdateAtBytes;
  }

  static async start(options: OurStackServerOptions): Promise<OurStackServer> {
    let server: OurStackServer | undefined;
    const udp = await UdpEndpoint.bind({
      bind: [{ address: options.host ?? "127.0.0.1", port: options.port ?? 0 }],
      socketBufferBytes: SOCKET_BUFFER_BYTES,
      requireRetry: options.requireRetry,
      server: {
        tls: {
          alpnProtocols: options.alpn ?? ["hq-interop"],
          certificateChain: [options.certPem],
          privateKey: options.keyPem,
          cipherSuites: options.cipherSuites,
        },
        maxDatagramSizeBytes: DATAGRAM_SIZE_BYTES,
        streamSendBufferBytes: SERVER_STREAM_SEND_BUFFER_BYTES,
        transportParameters: { maxIdleTimeoutMs: MAX_IDLE_TIMEOUT_MS },
      },
      onEvent: (event) => server?.onEvent(event),
    });
    server = new OurStackServer(udp, options.keyUpdateAtBytes ?? []);
    return server;
  }

  get address(): SocketAddress {
    return this.udp.localAddresses[0]!;
  }

  summaryOf(connection: Connection): ConnectionSummary | undefined {
    return this.connections.get(connection)?.summary;
  }

  async close(): Promise<void> {
    await this.udp.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private onEvent(event: EndpointEvent): void {
    if (event.type === "connectionAccepted") {
      this.connections.set(event.connection, {
        summary: { keyUpdatesLocal: 0, keyUpdatesPeer: 0 },
        streams: new Map(),
        keyUpdates: new KeyUpdateSchedule(this.keyUpdateAtBytes),
        movedBytes: 0,
      });
      return;
    }
    if (event.type !== "connection") return;
    const served = this.connections.get(event.connection);
    if (!served) return;
    const e = event.event;
    watchKeyUpdates(served.summary, e);
    if (e.type === "streamReadable") this.readStream(event.connection, served, e.streamId);
    if (e.type === "streamReadable" || e.type === "streamWritable") this.writeReplies(event.connection, served);
    // A key update refused earlier (RFC 9001 §6.1: nothing of the current phase acknowledged yet) is retried on every event.
    else if (served.keyUpdates.remaining > 0 && event.connection.state === "established") {
      served.keyUpdates.maybeStart(event.connection, served.movedBytes, this.udp.now());
      this.udp.wake(event.connection);
    }
  }

  private readStream(conn: Connection, served: ServedConnection, streamId: number): void {
    let s = served.streams.get(streamId);
    if (!s) {
      s = { commandBytes: [], command: undefined, sinkHash: undefined, sinkBytes: 0, replyPending: Buffer.alloc(0), source: undefined, replyDone: false, movedBytes: 0 };
      served.streams.set(streamId, s);
    }
    for (let d = conn.streamRead(streamId); d && d.length > 0; d = conn.streamRead(streamId)) {
      served.movedBytes += d.length;
      if (s.command === undefined) {
        s.commandBytes.push(d);
        const pending = Buffer.concat(s.commandBytes);
        const newline = pending.indexOf(0x0a);
        if (newline < 0) {
          if (pending.length > COMMAND_LINE_MAX_BYTES) this.fail(conn, streamId, `no command line within ${COMMAND_LINE_MAX_BYTES} bytes`);
          continue;
        }
        s.command = pending.subarray(0, newline).toString("ascii");
        s.commandBytes = [];
        this.startCommand(conn, streamId, s, pending.subarray(newline + 1));
      } else if (s.sinkHash) {
        s.sinkHash.update(d);
        s.sinkBytes += d.length;
      } else {
        this.fail(conn, streamId, `${s.command.split(" ")[0]} request carries a payload`);
      }
    }
    if (s.sinkHash && conn.streamIsFinished(streamId)) {
      const sha256 = s.sinkHash.digest("hex");
      s.sinkHash = undefined;
      s.replyPending = Buffer.from(JSON.stringify({ bytes: s.sinkBytes, sha256 }));
      this.served.push({ connection: conn, streamId, command: "SINK", bytes: s.sinkBytes, sha256 });
    }
    this.udp.wake(conn);
  }

  private startCommand(conn: Connection, streamId: number, s: ServedStream, rest: Buffer): void {
    const [verb, ...args] = s.command!.split(" ");
    if (verb === "SINK" && args.length === 0) {
      s.sinkHash = createHash("sha256").update(rest);
      s.sinkBytes = rest.length;
      return;
    }
    if (verb === "SOURCE" && args.length === 2 && /^\d+$/.test(args[0]!) && /^\d+$/.test(args[1]!) && rest.length === 0) {
      s.source = { random: new SeededRandom(Number(args[1])), remainingBytes: Number(args[0]) };
      this.served.push({ connection: conn, streamId, command: "SOURCE", bytes: Number(args[0]) });
      return;
    }
    this.fail(conn, streamId, `unknown command line ${JSON.stringify(s.command!.slice(0, 64))}`);
  }

  private fail(conn: Connection, streamId: number, reason: string): void {
    this.errors.push(`stream ${streamId}: ${reason}`);
    conn.streamReset(streamId, 1);
    conn.streamStopSending(streamId, 1);
    this.connections.get(conn)?.streams.delete(streamId);
  }

  private writeReplies(conn: Connection, served: ServedConnection): void {
    if (conn.state !== "established") return;
    for (const [streamId, s] of served.streams) {
      if (s.replyDone || (s.source === undefined && s.replyPending.length === 0)) continue;
      for (;;) {
        if (s.replyPending.length === 0 && s.source && s.source.remainingBytes > 0) {
          const n = Math.min(WRITE_CHUNK_BYTES, s.source.remainingBytes);
          s.replyPending = s.source.random.bytes(n);
          s.source.remainingBytes -= n;
        }
        if (s.replyPending.length === 0) break;
        const accepted = conn.streamWrite(streamId, s.replyPending);
        s.replyPending = s.replyPending.subarray(accepted);
        served.movedBytes += accepted;
        if (accepted === 0) break;
      }
      if (s.replyPending.length === 0 && (s.source === undefined || s.source.remainingBytes === 0)) {
        conn.streamFinish(streamId);
        s.replyDone = true;
        served.streams.delete(streamId);
      }
    }
    served.keyUpdates.maybeStart(conn, served.movedBytes, this.udp.now());
    this.udp.wake(conn);
  }
}

// ---------------------------------------------------------------------------------------------
// Command line (the test uses the classes in-process; this is for running a peer by hand)

const USAGE = `usage:
  node test/interop/our-stack-peer.ts server --host 127.0.0.1 --port 0 --cert FILE --key FILE [--alpn hq-interop] [--cipher-suite NAME ...] [--key-update-at BYTES ...]
  node test/interop/our-stack-peer.ts client --host 127.0.0.1 --port N --ca FILE (--upload BYTES | --download BYTES) [--seed S] [--cipher-suite NAME ...] [--key-update-at BYTES ...]
example:
  node test/interop/our-stack-peer.ts client --port 4433 --ca /tmp/qmt-certs/ca.pem --download 10485760 --seed 7 --key-update-at 5000000
`;

function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function parseCount(flag: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new OurStackPeerUsageError(`${flag}: expected a non-negative integer, got "${text}"`);
  return Number(text);
}

function parseSuites(names: string[] | undefined): CipherSuiteName[] | undefined {
  if (names === undefined) return undefined;
  return names.map((n) => {
    if (!(CIPHER_SUITE_NAMES as readonly string[]).includes(n)) throw new OurStackPeerUsageError(`--cipher-suite: expected one of ${CIPHER_SUITE_NAMES.join(", ")}, got "${n}"`);
    return n as CipherSuiteName;
  });
}

async function main(): Promise<void> {
  const [mode, ...argv] = process.argv.slice(2);
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "0" },
      cert: { type: "string" },
      key: { type: "string" },
      ca: { type: "string" },
      alpn: { type: "string", multiple: true },
      "cipher-suite": { type: "string", multiple: true },
      "key-update-at": { type: "string", multiple: true },
      upload: { type: "string" },
      download: { type: "string" },
      seed: { type: "string", default: "1" },
      "server-name": { type: "string", default: "localhost" },
      "timeout-ms": { type: "string", default: "120000" },
    },
  });
  const cipherSuites = parseSuites(values["cipher-suite"]);
  const keyUpdateAtBytes = (values["key-update-at"] ?? []).map((t) => parseCount("--key-update-at", t));
  if (mode === "server") {
    if (values.cert === undefined || values.key === undefined) throw new OurStackPeerUsageError("server: --cert and --key are required");
    const server = await OurStackServer.start({
      host: values.host,
      port: parseCount("--port", values.port),
      certPem: readFileSync(values.cert, "utf8"),
      keyPem: readFileSync(values.key, "utf8"),
      alpn: values.alpn,
      cipherSuites,
      keyUpdateAtBytes,
    });
    emit({ event: "listening", ...server.address });
    const stop = (signal: string): void => {
      void server.close().then(() => {
        emit({ event: "stopped", signal, served: server.served.map(({ connection: _c, ...record }) => record), errors: server.errors });
        process.exit(0);
      });
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    return;
  }
  if (mode === "client") {
    if (values.ca === undefined) throw new OurStackPeerUsageError("client: --ca is required");
    if ((values.upload === undefined) === (values.download === undefined)) throw new OurStackPeerUsageError("client: exactly one of --upload and --download");
    const timeoutMs = parseCount("--timeout-ms", values["timeout-ms"]);
    const client = await OurStackClient.connect(
      { remote: { address: values.host, port: parseCount("--port", values.port) }, caPem: readFileSync(values.ca, "utf8"), serverName: values["server-name"], alpn: values.alpn, cipherSuites },
      timeoutMs,
    );
    try {
      const seed = parseCount("--seed", values.seed);
      const report = values.upload !== undefined
        ? await client.upload(parseCount("--upload", values.upload), seed, { timeoutMs, keyUpdateAtBytes })
        : await client.download(parseCount("--download", values.download!), seed, { timeoutMs, keyUpdateAtBytes });
      emit({ ok: true, ...report, handshakeMs: client.handshakeMs, retry: client.connection.peerParameters?.retrySourceConnectionId !== undefined });
    } finally {
      await client.close();
    }
    process.exit(0);
  }
  if (mode === "--help" || mode === "-h") {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  throw new OurStackPeerUsageError(`expected mode "server" or "client", got "${mode ?? ""}"`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    await main();
  } catch (error) {
    if (error instanceof OurStackPeerUsageError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`${error.message}\n${USAGE}`);
      process.exit(2);
    }
    emit({ ok: false, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
    process.exit(1);
  }
}
