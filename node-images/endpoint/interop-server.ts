/**
 * The interop runner's server: serves the files under WWW_DIR over HTTP/0.9 (ALPN hq-interop) and HTTP/3
 * (ALPN h3) on PORT, with the testcase's twists (Retry, ChaCha20 only, a preferred address it also listens
 * on). It composes the stack and reports what happened as JSON lines; no protocol logic lives here.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Connection } from "../quic/connection.ts";
import type { EndpointEvent } from "../quic/endpoint.ts";
import { HQ_INTEROP_ALPN, HqServer } from "../quic/hq-interop.ts";
import { Http3Server, type Http3ServerRequest } from "../quic/http3/server.ts";
import { formatSocketAddress, socketAddressEquals, type SocketAddress } from "../quic/path.ts";
import { UdpEndpoint } from "../quic/udp-endpoint.ts";
import { InteropConfigError, type InteropConfig } from "./config.ts";
import { KeyLogFile } from "./key-log-file.ts";
import { formatPath, type LogLine } from "./log-line.ts";
import { fileUnderRoot } from "./rooted-path.ts";
import { H3_ALPN } from "./testcases.ts";

/** Large socket buffers: a 10 MB response leaves in bursts. */
const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;
const IDLE_TIMEOUT_MS = 30_000;
/** The runner's multiplexing test expects a bidirectional stream limit of at most 1000. */
const MAX_STREAMS_BIDI = 100;

/** What a connection did, for its closing log line (and the tests reading it). */
interface ConnectionRecord {
  keyUpdatesByPeer: number;
  keyUpdatesLocal: number;
  pathMigrations: Array<{ reason: string | undefined; to: string }>;
}

export function readServerCredentials(certsDir: string): { certificatePem: string; privateKeyPem: string } {
  const read = (file: string): string => {
    const path = join(certsDir, file);
    try {
      return readFileSync(path, "utf8");
    } catch (err) {
      throw new InteropConfigError(`CERTS_DIR: cannot read ${path}: ${(err as Error).message}`);
    }
  };
  return { certificatePem: read("cert.pem"), privateKeyPem: read("priv.key") };
}

/** The bytes of the file at `urlPath` under `root`, or undefined (no such regular file, or outside the root). */
export function readServedFile(root: string, urlPath: string): Buffer | undefined {
  const file = fileUnderRoot(root, urlPath);
  if (!file) return undefined;
  try {
    if (!statSync(file).isFile()) return undefined;
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

export class InteropServer implements AsyncDisposable {
  readonly udp: UdpEndpoint;
  readonly hq: HqServer;
  readonly h3: Http3Server;
  readonly keyLog: KeyLogFile | undefined;
  /** The preferred address as offered (its port resolved when PORT or PREFERRED_ADDRESS asked for 0). */
  readonly preferredAddress: SocketAddress | undefined;
  private readonly log: LogLine;
  private readonly records = new WeakMap<Connection, ConnectionRecord>();

  private constructor(udp: UdpEndpoint, keyLog: KeyLogFile | undefined, preferredAddress: SocketAddress | undefined, config: InteropConfig, log: LogLine) {
    this.udp = udp;
    this.keyLog = keyLog;
    this.preferredAddress = preferredAddress;
    this.log = log;
    this.hq = new HqServer({ wake: (c) => udp.wake(c), onRequest: (path) => readServedFile(config.wwwDir, path) });
    this.h3 = new Http3Server({ wake: (c) => udp.wake(c), onRequest: (req) => this.answerHttp3(req, config.wwwDir) });
  }

  static async start(config: InteropConfig, log: LogLine): Promise<InteropServer> {
    const credentials = readServerCredentials(config.certsDir);
    const behaviour = config.testcase.server;
    const keyLog = config.keyLogFile ? new KeyLogFile(config.keyLogFile) : undefined;
    let dispatch: (e: EndpointEvent) => void = () => {};
    const bindOriginal = async (address: string): Promise<UdpEndpoint> => {
      const preferred = config.preferredAddress;
      if (preferred && preferred.port !== 0 && preferred.port === config.port && (preferred.address === address || address === "::" || address === "0.0.0.0")) {
        throw new InteropConfigError(`PREFERRED_ADDRESS: ${formatSocketAddress(preferred)} collides with the original address ${address} port ${config.port}; use another port`);
      }
      return UdpEndpoint.bind({
        bind: preferred ? [{ address, port: config.port }, preferred] : [{ address, port: config.port }],
        socketBufferBytes: SOCKET_BUFFER_BYTES,
        qlogDir: config.qlogDir,
        requireRetry: behaviour.retry,
        server: {
          tls: {
            alpnProtocols: [HQ_INTEROP_ALPN, H3_ALPN],
            certificateChain: [credentials.certificatePem],
            privateKey: credentials.privateKeyPem,
            cipherSuites: behaviour.cipherSuites,
            keyLog: keyLog?.append,
          },
          transportParameters: { maxIdleTimeoutMs: IDLE_TIMEOUT_MS, initialMaxStreamsBidi: MAX_STREAMS_BIDI },
          // Set below, once the sockets are bound (a port 0 becomes the port the OS picked).
          preferredAddress: undefined,
        },
        onEvent: (e) => dispatch(e),
      });
    };
    let udp: UdpEndpoint;
    try {
      udp = await bindOriginal(config.bindAddress ?? "::");
    } catch (err) {
      // A host without IPv6 cannot bind "::": fall back to IPv4 only, unless the address was asked for.
      const code = (err as NodeJS.ErrnoException).code;
      if (config.bindAddress !== undefined || (code !== "EAFNOSUPPORT" && code !== "EADDRNOTAVAIL")) {
        keyLog?.close();
        throw err;
      }
      udp = await bindOriginal("0.0.0.0");
    }
    const preferred = config.preferredAddress ? udp.localAddresses[1] : undefined;
    if (preferred) {
      // RFC 9000 §9.6: offered to every new connection; the endpoint listens there (the second socket).
      udp.endpoint.config.server!.preferredAddress = preferred.address.includes(":") ? { ipv6: preferred } : { ipv4: preferred };
    }
    const server = new InteropServer(udp, keyLog, preferred, config, log);
    dispatch = (e) => server.onEndpointEvent(e);
    return server;
  }

  get localAddresses(): SocketAddress[] {
    return this.udp.localAddresses;
  }

  private onEndpointEvent(e: EndpointEvent): void {
    if (e.type === "connectionAccepted") {
      this.records.set(e.connection, { keyUpdatesByPeer: 0, keyUpdatesLocal: 0, pathMigrations: [] });
    } else if (e.type === "connection") {
      const record = this.records.get(e.connection);
      const ev = e.event;
      if (record && ev.type === "keyUpdated") {
        if (ev.initiator === "peer") record.keyUpdatesByPeer++;
        else record.keyUpdatesLocal++;
      } else if (record && ev.type === "pathMigrated") {
        record.pathMigrations.push({ reason: ev.reason, to: formatSocketAddress(ev.to.remote) });
        this.log({ event: "pathMigrated", reason: ev.reason, from: formatPath(ev.from), to: formatPath(ev.to) });
      }
    } else if (e.type === "connectionRemoved") {
      this.logConnection(e.connection);
    }
    // Each connection speaks the protocol its ALPN chose; removal reaches both so neither keeps state.
    if (e.type === "connection" && e.connection.alpn === HQ_INTEROP_ALPN) this.hq.handleEndpointEvent(e);
    else this.h3.handleEndpointEvent(e);
    if (e.type === "connectionRemoved") this.hq.handleEndpointEvent(e);
  }

  private answerHttp3(req: Http3ServerRequest, wwwDir: string): void {
    if (req.method !== "GET" && req.method !== "HEAD") {
      req.respond(405, [["allow", "GET, HEAD"]], new Uint8Array(0));
      return;
    }
    const body = readServedFile(wwwDir, req.path.split("?")[0]!);
    if (!body) {
      req.respond(404, [["content-type", "text/plain"]], Buffer.from("not found\n"));
      return;
    }
    req.respond(200, [["content-length", String(body.length)]], req.method === "HEAD" ? new Uint8Array(0) : body);
  }

  private logConnection(conn: Connection): void {
    const record = this.records.get(conn);
    const offered = this.preferredAddress;
    this.log({
      event: "connectionClosed",
      alpn: conn.alpn,
      handshakeMs: conn.timeline.handshakeCompleted !== undefined ? round(conn.timeline.handshakeCompleted - conn.timeline.started) : undefined,
      retried: conn.localParameters.retrySourceConnectionId !== undefined,
      keyUpdatesByPeer: record?.keyUpdatesByPeer ?? 0,
      keyUpdatesLocal: record?.keyUpdatesLocal ?? 0,
      pathMigrations: record?.pathMigrations ?? [],
      onPreferredAddress: offered !== undefined && socketAddressEquals(conn.activePath.address.local, offered),
      migration: conn.migration.stats,
      stats: { ...conn.stats },
    });
  }

  /** The endpoint's counters (Retry sent, accepted, drops) for the final log line. */
  summary(): Record<string, unknown> {
    return {
      endpoint: { ...this.udp.endpoint.counters, drops: { ...this.udp.endpoint.drops } },
      udp: { ...this.udp.counters },
      hq: { ...this.hq.counters },
      keyLogLines: this.keyLog?.linesWritten ?? 0,
      qlogFiles: this.udp.qlog?.files.length ?? 0,
    };
  }

  async close(): Promise<void> {
    // Connections still open get their closing line (and their qlog traces are finished by udp.close()).
    for (const conn of this.udp.endpoint.connections()) this.logConnection(conn);
    await this.udp.close();
    this.keyLog?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
