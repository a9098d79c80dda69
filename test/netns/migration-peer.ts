/**
 * Our QUIC stack as the two ends of a preferred-address move over real UDP, one process each, run inside the
 * network namespaces of netns-topology.ts (`ip netns exec`). Stdout carries JSON lines only.
 *
 *   server: listens on every --listen address and offers --preferred in its transport parameters
 *           (RFC 9000 §18.2). Serves XFER streams; on SIGTERM prints {"event":"stopped", connections: [...]}.
 *   client: opens --connections connections (--concurrency at a time), each from its own socket on --local
 *           to --remote, and runs one XFER exchange on each; prints one line per connection and a summary.
 *
 * The XFER stream: the client writes "XFER <download bytes>\n", then <upload bytes> bytes and FIN; the server
 * writes <download bytes> bytes back and FIN, while the upload comes in. Both directions carry STREAM frames
 * for the whole exchange, which is what the capture verdict looks at.
 *
 *   node test/netns/migration-peer.ts server --listen 10.77.1.1:4433 --listen 10.77.2.1:4433 \
 *        --preferred 10.77.2.1:4433 --cert server.pem --key server.key.pem
 *   node test/netns/migration-peer.ts client --remote 10.77.1.1:4433 --local 10.77.0.2 --ca ca.pem \
 *        [--policy follow|ignore|validate-only] [--download BYTES] [--upload BYTES] [--keylog FILE]
 *        [--upload-after-move] (the second half of the upload waits until the move is decided)
 *        [--connections N] [--concurrency N] [--timeout-ms MS]
 */
import { appendFileSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Connection } from "../../node-images/quic/connection.ts";
import type { EndpointEvent } from "../../node-images/quic/endpoint.ts";
import type { PreferredAddressPolicy } from "../../node-images/quic/migration.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import { UdpEndpoint } from "../../node-images/quic/udp-endpoint.ts";

const ALPN = ["hq-interop"];
const WRITE_CHUNK_BYTES = 32 * 1024;
const COMMAND_LINE_MAX_BYTES = 64;
const MAX_IDLE_TIMEOUT_MS = 30_000;
/**
 * Socket buffers as test/interop/our-stack-peer.ts sets them: with the kernel's default (~208 KiB) a 1 MB burst
 * over the veth overflowed the receiver's queue (Udp RcvbufErrors in /proc/net/snmp; ~15 % of datagrams).
 */
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;
const POLICIES: readonly PreferredAddressPolicy[] = ["follow", "ignore", "validate-only"];

export class MigrationPeerUsageError extends Error {
  override readonly name = "MigrationPeerUsageError";
  readonly code = "MIGRATION_PEER_USAGE";
}

function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function parseSocketAddress(flag: string, text: string): SocketAddress {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535) throw new MigrationPeerUsageError(`${flag}: expected an IPv4 address:port like 10.77.1.1:4433, got "${text}"`);
  return { address: m[1]!, port: Number(m[2]) };
}

function parseCount(flag: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new MigrationPeerUsageError(`${flag}: expected a non-negative integer, got "${text}"`);
  return Number(text);
}

/** What a report says about one connection's paths: where each went, how often, and its RTT. */
function describePaths(conn: Connection) {
  return conn.paths.map((p) => ({
    local: p.address.local,
    remote: p.address.remote,
    validated: p.validated,
    active: p === conn.activePath,
    nonProbingPacketsSent: p.nonProbingPacketsSent,
    nonProbingPacketsReceived: p.nonProbingPacketsReceived,
    minRttMs: p.rtt.minRttMs,
    smoothedRttMs: p.rtt.smoothedRttMs,
  }));
}

function describeConnection(conn: Connection) {
  return {
    state: conn.state,
    timeline: conn.timeline,
    preferredState: conn.migration.preferredState,
    migration: conn.migration.stats,
    paths: describePaths(conn),
    stats: conn.stats,
  };
}

// ---------------------------------------------------------------------------------------------
// Server

interface ServedStream {
  command: Buffer[];
  downloadRemaining: number | undefined;
  uploadBytes: number;
  finished: boolean;
}

async function runServer(values: { listen: string[]; preferred: string; cert: string; key: string; "qlog-dir"?: string }): Promise<void> {
  const listen = values.listen.map((t) => parseSocketAddress("--listen", t));
  const preferred = parseSocketAddress("--preferred", values.preferred);
  const streams = new Map<Connection, Map<number, ServedStream>>();
  const errors: string[] = [];
  let udp: UdpEndpoint | undefined;

  const pump = (conn: Connection): void => {
    const perConn = streams.get(conn);
    if (!perConn || conn.state !== "established" || !udp) return;
    for (const [id, s] of perConn) {
      for (let d = conn.streamRead(id); d && d.length > 0; d = conn.streamRead(id)) {
        if (s.downloadRemaining !== undefined) {
          s.uploadBytes += d.length;
          continue;
        }
        s.command.push(d);
        const pending = Buffer.concat(s.command);
        const newline = pending.indexOf(0x0a);
        if (newline < 0) {
          if (pending.length > COMMAND_LINE_MAX_BYTES) {
            errors.push(`stream ${id}: no command line within ${COMMAND_LINE_MAX_BYTES} bytes`);
            conn.streamReset(id, 1);
            perConn.delete(id);
          }
          continue;
        }
        const m = /^XFER (\d+)$/.exec(pending.subarray(0, newline).toString("ascii"));
        if (!m) {
          errors.push(`stream ${id}: unknown command ${JSON.stringify(pending.subarray(0, newline).toString("ascii").slice(0, 40))}`);
          conn.streamReset(id, 1);
          perConn.delete(id);
          break;
        }
        s.downloadRemaining = Number(m[1]);
        s.uploadBytes = pending.length - newline - 1;
      }
      while (s.downloadRemaining !== undefined && s.downloadRemaining > 0) {
        const n = conn.streamWrite(id, Buffer.alloc(Math.min(WRITE_CHUNK_BYTES, s.downloadRemaining), 0x5a));
        if (n === 0) break;
        s.downloadRemaining -= n;
      }
      // FIN only once the whole upload is in: the client's "reply finished" then means both directions arrived.
      if (s.downloadRemaining === 0 && !s.finished && conn.streamIsFinished(id)) {
        conn.streamFinish(id);
        s.finished = true;
      }
    }
    udp.wake(conn);
  };

  const onEvent = (event: EndpointEvent): void => {
    if (event.type === "connectionAccepted") {
      streams.set(event.connection, new Map());
      return;
    }
    if (event.type !== "connection") return;
    const e = event.event;
    const perConn = streams.get(event.connection);
    if (e.type === "streamOpened" || e.type === "streamReadable") {
      if (perConn && !perConn.has(e.streamId)) perConn.set(e.streamId, { command: [], downloadRemaining: undefined, uploadBytes: 0, finished: false });
    }
    if (e.type === "streamReadable" || e.type === "streamWritable" || e.type === "streamOpened") pump(event.connection);
  };

  const certPem = readFileSync(values.cert, "utf8");
  const keyPem = readFileSync(values.key, "utf8");
  udp = await UdpEndpoint.bind({
    bind: listen,
    qlogDir: values["qlog-dir"],
    socketBufferBytes: SOCKET_BUFFER_BYTES,
    server: {
      tls: { alpnProtocols: ALPN, certificateChain: [certPem], privateKey: keyPem },
      preferredAddress: { ipv4: preferred },
      transportParameters: { maxIdleTimeoutMs: MAX_IDLE_TIMEOUT_MS },
    },
    onEvent,
  });
  emit({ event: "listening", addresses: udp.localAddresses, preferred });
  const stop = (signal: string): void => {
    const server = udp!;
    const connections = [...server.endpoint.connections()].map((c) => ({
      ...describeConnection(c),
      uploadBytes: [...(streams.get(c)?.values() ?? [])].reduce((sum, s) => sum + s.uploadBytes, 0),
    }));
    void server.close().then(() => {
      emit({ event: "stopped", signal, connections, errors, endpointDrops: server.endpoint.drops, counters: server.counters });
      process.exit(0);
    });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

// ---------------------------------------------------------------------------------------------
// Client

export interface ClientConnectionReport {
  ok: boolean;
  error?: string;
  index: number;
  local: SocketAddress;
  downloadBytes: number;
  uploadBytes: number;
  /** performance.now() of this process; differences only. */
  migrationLatencyMs: number | undefined;
  connection: ReturnType<typeof describeConnection>;
}

interface ClientOptions {
  remote: SocketAddress;
  local: string;
  caPem: string;
  serverName: string;
  policy: PreferredAddressPolicy;
  downloadBytes: number;
  uploadBytes: number;
  keyLogFile: string | undefined;
  /** Hold the second half of the upload until the move settled, so STREAM frames cross both paths whatever the timing. */
  uploadAfterMove: boolean;
  timeoutMs: number;
  qlogDir: string | undefined;
}

async function runClientConnection(index: number, o: ClientOptions): Promise<ClientConnectionReport> {
  let conn: Connection | undefined;
  let check: () => void = () => {};
  const udp = await UdpEndpoint.bind({ bind: [{ address: o.local, port: 0 }], qlogDir: o.qlogDir, socketBufferBytes: SOCKET_BUFFER_BYTES, onEvent: (e) => onEvent(e) });
  let streamId: number | undefined;
  let uploadWritten = 0;
  let downloadReceived = 0;
  let closedReason: string | undefined;
  const request = Buffer.from(`XFER ${o.downloadBytes}\n`, "ascii");
  const upload = Buffer.alloc(Math.min(WRITE_CHUNK_BYTES, Math.max(1, o.uploadBytes)), 0xa5);

  function pump(): void {
    if (!conn || conn.state !== "established") return;
    if (streamId === undefined) {
      streamId = conn.openStream(true);
      if (streamId === undefined) return;
      conn.streamWrite(streamId, request); // 64 bytes at most: always fits the first window
    }
    // "none" also before the handshake has told the client whether there is a preferred address.
    const state = conn.migration.preferredState;
    const moveDecided = state === "moved" || state === "failed" || state === "unreachable" || state === "ignored" || (state === "none" && conn.isHandshakeConfirmed);
    const uploadLimit = o.uploadAfterMove && !moveDecided ? Math.floor(o.uploadBytes / 2) : o.uploadBytes;
    while (uploadWritten < uploadLimit) {
      const n = conn.streamWrite(streamId, upload.subarray(0, Math.min(upload.length, uploadLimit - uploadWritten)));
      if (n === 0) break;
      uploadWritten += n;
    }
    if (uploadWritten === o.uploadBytes && !conn.streamIsFinished(streamId)) conn.streamFinish(streamId);
    for (let d = conn.streamRead(streamId); d && d.length > 0; d = conn.streamRead(streamId)) downloadReceived += d.length;
    udp.wake(conn);
  }

  function onEvent(event: EndpointEvent): void {
    if (event.type !== "connection" || event.connection !== conn) return;
    const e = event.event;
    if (e.type === "connectionClosed") closedReason = `closed by ${e.initiator}: error 0x${e.errorCode.toString(16)} "${e.reason}"`;
    else pump();
    check();
  }

  const migrationSettled = (c: Connection): boolean =>
    o.policy !== "follow" || c.timeline.firstDataOnNewPath !== undefined || c.timeline.fallback !== undefined;
  const done = (): boolean => streamId !== undefined && conn!.streamIsFinished(streamId) && uploadWritten === o.uploadBytes && migrationSettled(conn!);
  let error: string | undefined;
  try {
    conn = udp.connect(
      {
        tls: {
          alpnProtocols: ALPN,
          serverName: o.serverName,
          ca: [o.caPem],
          keyLog: o.keyLogFile === undefined ? undefined : (line: string) => appendFileSync(o.keyLogFile!, `${line}\n`),
        },
        preferredAddressPolicy: o.policy,
        transportParameters: { maxIdleTimeoutMs: MAX_IDLE_TIMEOUT_MS },
      },
      o.remote,
    );
    await new Promise<void>((resolveDone, rejectDone) => {
      const timer = setTimeout(() => rejectDone(new Error(`not done within ${o.timeoutMs} ms (download ${downloadReceived}/${o.downloadBytes}, upload ${uploadWritten}/${o.uploadBytes}, state ${conn!.state})`)), o.timeoutMs);
      check = () => {
        if (closedReason !== undefined) {
          clearTimeout(timer);
          rejectDone(new Error(closedReason));
        } else if (done()) {
          clearTimeout(timer);
          resolveDone();
        }
      };
      check();
    });
    if (downloadReceived !== o.downloadBytes) error = `downloaded ${downloadReceived} bytes, asked for ${o.downloadBytes}`;
  } catch (err) {
    error = err instanceof Error ? err.message : String(err);
  }
  const c = conn!;
  const t = c.timeline;
  const report: ClientConnectionReport = {
    ok: error === undefined,
    ...(error === undefined ? {} : { error }),
    index,
    local: udp.localAddresses[0]!,
    downloadBytes: downloadReceived,
    uploadBytes: uploadWritten,
    // The spec's migration latency: first_data_on_new_path − handshake_confirmed (client side).
    migrationLatencyMs: t.firstDataOnNewPath !== undefined && t.handshakeConfirmed !== undefined ? t.firstDataOnNewPath - t.handshakeConfirmed : undefined,
    connection: describeConnection(c),
  };
  if (!c.isClosed && c.state !== "closing" && c.state !== "draining") {
    c.close(udp.now(), 0, "done");
    udp.wake(c);
    // The CONNECTION_CLOSE goes out in the flush wake() queued as a microtask; dgram hands it to the kernel on
    // nextTick; one setImmediate runs after both (an ordering, not a timed wait).
    await new Promise<void>((r) => setImmediate(r));
  }
  await udp.close();
  return report;
}

async function runClient(values: Record<string, string | undefined>, uploadAfterMove: boolean): Promise<boolean> {
  const policy = values.policy ?? "follow";
  if (!(POLICIES as readonly string[]).includes(policy)) throw new MigrationPeerUsageError(`--policy: expected one of ${POLICIES.join(", ")}, got "${policy}"`);
  if (values.ca === undefined || values.remote === undefined || values.local === undefined) throw new MigrationPeerUsageError("client: --remote, --local and --ca are required");
  const options: ClientOptions = {
    remote: parseSocketAddress("--remote", values.remote),
    local: values.local,
    caPem: readFileSync(values.ca, "utf8"),
    serverName: values["server-name"] ?? "localhost",
    policy: policy as PreferredAddressPolicy,
    downloadBytes: parseCount("--download", values.download ?? "0"),
    uploadBytes: parseCount("--upload", values.upload ?? "0"),
    keyLogFile: values.keylog,
    uploadAfterMove,
    timeoutMs: parseCount("--timeout-ms", values["timeout-ms"] ?? "20000"),
    qlogDir: values["qlog-dir"],
  };
  const connections = parseCount("--connections", values.connections ?? "1");
  const concurrency = Math.max(1, Math.min(connections, parseCount("--concurrency", values.concurrency ?? "1")));
  const started = performance.now();
  let next = 0;
  let failures = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < connections; i = next++) {
      const report = await runClientConnection(i, options);
      if (!report.ok) failures++;
      emit({ event: "connection", ...report });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  emit({ event: "done", connections, failures, wallMs: performance.now() - started });
  return failures === 0;
}

const USAGE = `usage:
  node test/netns/migration-peer.ts server --listen ADDR:PORT [--listen ADDR:PORT ...] --preferred ADDR:PORT --cert FILE --key FILE [--qlog-dir DIR]
  node test/netns/migration-peer.ts client --remote ADDR:PORT --local ADDR --ca FILE [--policy follow|ignore|validate-only]
       [--download BYTES] [--upload BYTES] [--keylog FILE] [--upload-after-move] [--connections N] [--concurrency N] [--timeout-ms MS] [--qlog-dir DIR]
example:
  node test/netns/migration-peer.ts client --remote 10.77.1.1:4433 --local 10.77.0.2 --ca /tmp/certs/ca.pem --download 1000000 --upload 1000000
`;

async function main(): Promise<void> {
  const [mode, ...argv] = process.argv.slice(2);
  if (mode === "--help" || mode === "-h") {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: "string", multiple: true },
      preferred: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      remote: { type: "string" },
      local: { type: "string" },
      ca: { type: "string" },
      "server-name": { type: "string" },
      policy: { type: "string" },
      download: { type: "string" },
      upload: { type: "string" },
      keylog: { type: "string" },
      "upload-after-move": { type: "boolean" },
      connections: { type: "string" },
      concurrency: { type: "string" },
      "timeout-ms": { type: "string" },
      "qlog-dir": { type: "string" },
    },
  });
  if (mode === "server") {
    if (!values.listen?.length || values.preferred === undefined || values.cert === undefined || values.key === undefined) {
      throw new MigrationPeerUsageError("server: --listen, --preferred, --cert and --key are required");
    }
    await runServer({ listen: values.listen, preferred: values.preferred, cert: values.cert, key: values.key, "qlog-dir": values["qlog-dir"] });
    return;
  }
  if (mode === "client") {
    const { listen: _listen, "upload-after-move": uploadAfterMove, ...single } = values;
    process.exit((await runClient(single, uploadAfterMove === true)) ? 0 : 1);
  }
  throw new MigrationPeerUsageError(`expected mode "server" or "client", got "${mode ?? ""}"`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    await main();
  } catch (error) {
    if (error instanceof MigrationPeerUsageError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`${error.message}\n${USAGE}`);
      process.exit(2);
    }
    emit({ event: "failed", error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
    process.exit(1);
  }
}
