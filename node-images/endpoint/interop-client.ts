/**
 * The interop runner's client: fetches the REQUESTS URLs over HTTP/0.9 (hq-interop) or HTTP/3 and writes each
 * body to DOWNLOADS_DIR under its URL path, with the testcase's twists (one connection per file, ChaCha20
 * only, an early key update, following the server's preferred address or migrating actively). Protocol
 * logic stays in node-images/quic; this composes it and waits on events, each wait with a deadline.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { dirname } from "node:path";
import type { Connection } from "../quic/connection.ts";
import type { EndpointEvent } from "../quic/endpoint.ts";
import type { ConnectionEvent } from "../quic/events.ts";
import { HqClient, type HqRequest } from "../quic/hq-interop.ts";
import { Http3Client, type Http3ClientRequest } from "../quic/http3/client.ts";
import { formatSocketAddress, type SocketAddress } from "../quic/path.ts";
import { UdpEndpoint } from "../quic/udp-endpoint.ts";
import { InteropConfigError, type InteropConfig } from "./config.ts";
import { KeyLogFile } from "./key-log-file.ts";
import { formatPath, type LogLine } from "./log-line.ts";
import { fileUnderRoot } from "./rooted-path.ts";
import { H3_ALPN } from "./testcases.ts";

const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;
const IDLE_TIMEOUT_MS = 30_000;
/** How long to wait for our CONNECTION_CLOSE to leave. */
const CLOSE_WAIT_MS = 3_000;
/** A connection that neither finishes nor closes by itself within this is given up (the idle timeout ends it first). */
const CONNECTION_DEADLINE_MS = 10 * 60_000;

export interface FileResult {
  url: string;
  bytes: number;
  error?: string;
}

export interface ConnectionResult {
  remote: string;
  alpn: string | undefined;
  handshakeMs: number | undefined;
  retried: boolean;
  keyUpdatesLocal: number;
  keyUpdatesByPeer: number;
  /** "none" when the server offered no preferred address; else the client's progress toward it. */
  preferredAddressState: string;
  activeMigration: "not_attempted" | "started" | "refused";
  pathMigrations: Array<{ reason: string | undefined; to: string }>;
  closeReason: string | undefined;
}

export interface ClientResult {
  ok: boolean;
  files: FileResult[];
  connections: ConnectionResult[];
  keyLogLines: number;
  qlogFiles: number;
}

/** One fetch in progress, whatever the HTTP version. */
interface Fetch {
  url: URL;
  readonly done: boolean;
  body(): Buffer;
  error(): string | undefined;
}

async function resolveServer(url: URL): Promise<SocketAddress> {
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port === "" ? 443 : Number(url.port);
  if (isIP(host)) return { address: host, port };
  const all = await lookup(host, { all: true });
  // The runner's server46 has both families; IPv4 first, as its other clients do.
  const chosen = all.find((a) => a.family === 4) ?? all[0];
  if (!chosen) throw new InteropConfigError(`REQUESTS: ${url.hostname} does not resolve`);
  return { address: chosen.address, port };
}

export class InteropClient {
  private readonly config: InteropConfig;
  private readonly log: LogLine;
  private readonly handlers = new Map<Connection, (e: EndpointEvent) => void>();
  private keyLog: KeyLogFile | undefined;
  private caPem: string | undefined;

  constructor(config: InteropConfig, log: LogLine) {
    this.config = config;
    this.log = log;
  }

  async run(): Promise<ClientResult> {
    const { config } = this;
    const behaviour = config.testcase.client;
    if (config.caFile) {
      try {
        this.caPem = readFileSync(config.caFile, "utf8");
      } catch (err) {
        throw new InteropConfigError(`CA_FILE: cannot read ${config.caFile}: ${(err as Error).message}`);
      }
    } else {
      this.log({ event: "warning", message: "no CA_FILE and no CERTS_DIR/ca.pem: the server certificate is NOT verified (lab use)" });
    }
    mkdirSync(config.downloadsDir, { recursive: true });
    const remote = await resolveServer(config.requests[0]!);
    const bindAddress = config.bindAddress ?? (remote.address.includes(":") ? "::" : "0.0.0.0");
    // connectionmigration may migrate actively: a second local port to move to.
    const bind = behaviour.migrate ? [{ address: bindAddress, port: 0 }, { address: bindAddress, port: 0 }] : [{ address: bindAddress, port: 0 }];
    this.keyLog = config.keyLogFile ? new KeyLogFile(config.keyLogFile) : undefined;
    const udp = await UdpEndpoint.bind({
      bind,
      socketBufferBytes: SOCKET_BUFFER_BYTES,
      qlogDir: config.qlogDir,
      onEvent: (e) => {
        if (e.type === "connectionAccepted") return;
        this.handlers.get(e.connection)?.(e);
      },
    });
    const files: FileResult[] = [];
    const connections: ConnectionResult[] = [];
    try {
      const groups = behaviour.connectionPerRequest ? config.requests.map((u) => [u]) : [config.requests];
      for (const urls of groups) {
        const target = urls === config.requests ? remote : await resolveServer(urls[0]!);
        const outcome = await this.fetchOnOneConnection(udp, target, urls);
        files.push(...outcome.files);
        connections.push(outcome.connection);
      }
    } finally {
      await udp.close();
      this.keyLog?.close();
    }
    return {
      ok: files.length === config.requests.length && files.every((f) => f.error === undefined),
      files,
      connections,
      keyLogLines: this.keyLog?.linesWritten ?? 0,
      qlogFiles: udp.qlog?.files.length ?? 0,
    };
  }

  private async fetchOnOneConnection(udp: UdpEndpoint, remote: SocketAddress, urls: URL[]): Promise<{ files: FileResult[]; connection: ConnectionResult }> {
    const behaviour = this.config.testcase.client;
    const first = urls[0]!;
    const host = first.hostname.replace(/^\[(.*)\]$/, "$1");
    const conn = udp.connect(
      {
        tls: {
          alpnProtocols: [behaviour.alpn],
          // SNI and the certificate name: the URL's host name (an IP literal gets no SNI, RFC 6066 §3).
          serverName: isIP(host) ? undefined : host,
          ca: this.caPem ? [this.caPem] : undefined,
          insecureSkipCertificateVerification_DANGEROUS_LAB_ONLY: this.caPem === undefined,
          cipherSuites: behaviour.cipherSuites,
          keyLog: this.keyLog?.append,
        },
        transportParameters: { maxIdleTimeoutMs: IDLE_TIMEOUT_MS },
      },
      remote,
    );
    const record: ConnectionResult = {
      remote: formatSocketAddress(remote),
      alpn: undefined,
      handshakeMs: undefined,
      retried: false,
      keyUpdatesLocal: 0,
      keyUpdatesByPeer: 0,
      preferredAddressState: "none",
      activeMigration: "not_attempted",
      pathMigrations: [],
      closeReason: undefined,
    };
    const fetches: Fetch[] = [];
    let quicEventSink: (e: EndpointEvent) => void;
    let closeHttp: () => void;
    if (behaviour.alpn === H3_ALPN) {
      const h3 = new Http3Client(conn, { wake: (c) => udp.wake(c) });
      const authority = first.port === "" ? first.hostname : `${first.hostname}:${first.port}`;
      for (const url of urls) fetches.push(http3Fetch(url, h3.request({ path: url.pathname + url.search, authority })));
      quicEventSink = (e) => h3.handleEndpointEvent(e);
      closeHttp = () => h3.close(udp.now());
    } else {
      const hq = new HqClient(conn, { wake: (c) => udp.wake(c) });
      for (const url of urls) fetches.push(hqFetch(url, hq.get(url.pathname)));
      quicEventSink = (e) => hq.handleEndpointEvent(e);
      closeHttp = () => {
        conn.close(udp.now(), 0, "done");
        udp.wake(conn);
      };
    }

    let keyUpdateDone = !behaviour.keyUpdate;
    let removed = false;
    /** Re-checks the wait for "every fetch done, or the connection gone" (called from the event handler). */
    let wake: () => void = () => {};
    this.handlers.set(conn, (e) => {
      if (e.type === "connectionRemoved") {
        removed = true;
        wake();
        return;
      }
      if (e.type !== "connection") return;
      this.onQuicEvent(e.event, record);
      quicEventSink(e);
      // keyupdate: as early as the stack allows (handshake confirmed; RFC 9001 §6), within the first MB.
      if (!keyUpdateDone && conn.isHandshakeConfirmed && conn.initiateKeyUpdate(udp.now())) {
        keyUpdateDone = true;
        udp.wake(conn);
      }
      if (behaviour.migrate && e.event.type === "streamReadable") this.maybeMigrateActively(conn, udp, record);
      if (fetches.every((f) => f.done)) wake();
    });
    await waitUntil(() => removed || fetches.every((f) => f.done), (w) => (wake = w), CONNECTION_DEADLINE_MS);
    if (!removed && conn.state !== "closing" && conn.state !== "draining" && !conn.isClosed) {
      const sentBefore = udp.counters.datagramsOut;
      closeHttp();
      // Done once our CONNECTION_CLOSE has left (RFC 9000 §10.2: the closing period only answers stray
      // packets, and a peer that misses the close ends with its idle timeout). The flush runs as a microtask.
      await pollUntil(() => removed || udp.counters.datagramsOut > sentBefore, CLOSE_WAIT_MS);
    }
    this.handlers.delete(conn);
    record.alpn = conn.alpn;
    record.handshakeMs = conn.timeline.handshakeCompleted !== undefined ? Math.round((conn.timeline.handshakeCompleted - conn.timeline.started) * 100) / 100 : undefined;
    record.retried = conn.peerParameters?.retrySourceConnectionId !== undefined;
    record.preferredAddressState = conn.peerParameters?.preferredAddress ? conn.migration.preferredState : "none";
    return { files: fetches.map((f) => this.save(f)), connection: record };
  }

  private onQuicEvent(ev: ConnectionEvent, record: ConnectionResult): void {
    switch (ev.type) {
      case "keyUpdated":
        if (ev.initiator === "local") record.keyUpdatesLocal++;
        else record.keyUpdatesByPeer++;
        return;
      case "pathMigrated":
        record.pathMigrations.push({ reason: ev.reason, to: formatSocketAddress(ev.to.remote) });
        this.log({ event: "pathMigrated", reason: ev.reason, from: formatPath(ev.from), to: formatPath(ev.to) });
        return;
      case "migrationFellBack":
        this.log({ event: "migrationFellBack", path: formatPath(ev.path), reason: ev.reason });
        return;
      case "connectionClosed":
        record.closeReason = `${ev.initiator}: ${ev.isApplication ? "application" : "transport"} 0x${ev.errorCode.toString(16)} ${ev.reason}`.trim();
        return;
      default:
        return;
    }
  }

  /**
   * connectionmigration with a server that offered no preferred address (the current runner tells the server
   * "transfer"): move to our second local port once response data flows (RFC 9000 §9.2), validated first.
   */
  private maybeMigrateActively(conn: Connection, udp: UdpEndpoint, record: ConnectionResult): void {
    if (record.activeMigration !== "not_attempted" || !conn.isHandshakeConfirmed) return;
    if (conn.peerParameters?.preferredAddress) return; // the stack follows it by itself (policy "follow")
    const target = udp.localAddresses[1];
    if (!target) return;
    const started = conn.migrate(target, udp.now());
    record.activeMigration = started ? "started" : "refused";
    this.log({ event: "activeMigration", to: formatSocketAddress(target), started, disableActiveMigration: conn.peerParameters?.disableActiveMigration ?? false });
    udp.wake(conn);
  }

  private save(f: Fetch): FileResult {
    const url = f.url.href;
    const error = f.done ? f.error() : "no response before the connection ended";
    if (error !== undefined) return { url, bytes: 0, error };
    const file = fileUnderRoot(this.config.downloadsDir, f.url.pathname);
    if (!file) return { url, bytes: 0, error: `the URL path ${f.url.pathname} does not name a file under DOWNLOADS_DIR` };
    const body = f.body();
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, body);
    return { url, bytes: body.length };
  }
}

/** Resolve once `done()` holds (re-checked whenever the handler calls the registered wake) or at the deadline. */
function waitUntil(done: () => boolean, register: (wake: () => void) => void, deadlineMs: number): Promise<void> {
  if (done()) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, deadlineMs);
    register(() => {
      if (!done()) return;
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Check `done()` after each turn of the event loop until it holds or the deadline passes. */
function pollUntil(done: () => boolean, deadlineMs: number): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  return new Promise((resolve) => {
    const check = (): void => {
      if (done() || performance.now() > deadline) resolve();
      else setImmediate(check);
    };
    check();
  });
}

function hqFetch(url: URL, req: HqRequest): Fetch {
  return {
    url,
    get done() {
      return req.done;
    },
    body: () => req.body,
    error: () => req.error,
  };
}

function http3Fetch(url: URL, req: Http3ClientRequest): Fetch {
  return {
    url,
    get done() {
      return req.done;
    },
    body: () => req.body,
    error: () => (req.error ? req.error.message : req.status !== 200 ? `HTTP status ${req.status}` : undefined),
  };
}
