/**
 * Cloudflare quiche (through @matrixai/quic) as a black-box interop peer over real UDP.
 *
 *   node test/interop/quiche-peer.ts server --host 127.0.0.1 --port 0 --cert server.pem --key server.key.pem --alpn hq-interop
 *   node test/interop/quiche-peer.ts client --host 127.0.0.1 --port 4433 --ca ca.pem --alpn hq-interop --upload 10485760
 *   node test/interop/quiche-peer.ts client --host 127.0.0.1 --port 4433 --ca ca.pem --alpn hq-interop --download 10485760 --seed 7
 *
 * Stdout carries only JSON lines (one object per line); quiche/js-quic logs go to stderr (--log-level).
 *
 * Stream protocol, one request per client-initiated bidirectional stream: the first line is a command.
 *   "SINK\n" + payload + FIN         → reply {"bytes":N,"sha256":"<hex>"} + FIN   (N, sha256 of the payload)
 *   "SOURCE <n> <seed>\n" + FIN      → reply n bytes + FIN, the bytes being new SeededRandom(seed).bytes(n)
 *                                      (node-images/common/seeded-random.ts), so any peer can predict them.
 */
import { createHash, createHmac, randomFillSync, timingSafeEqual, type Hash } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import Logger, { LogLevel, StreamHandler } from "@matrixai/logger";
import { QUICClient, QUICServer, events as quicEvents } from "@matrixai/quic";
import { buildQuicheConfig, serverDefault } from "@matrixai/quic/config.js";
import type QUICConnection from "@matrixai/quic/QUICConnection.js";
import type QUICStream from "@matrixai/quic/QUICStream.js";
import { SeededRandom } from "../../node-images/common/seeded-random.ts";

/** A mistake in the command line: printed as one line, exit code 2. */
export class QuichePeerUsageError extends Error {
  override readonly name = "QuichePeerUsageError";
  readonly code = "QUICHE_PEER_USAGE";
}

/** A failed or mismatched transfer: reported as {"ok":false,...}, exit code 1. */
export class QuichePeerTransferError extends Error {
  override readonly name = "QuichePeerTransferError";
  readonly code = "QUICHE_PEER_TRANSFER_FAILED";
}

const COMMAND_LINE_MAX_BYTES = 256;
const SOURCE_CHUNK_BYTES = 64 * 1024;
const UPLOAD_CHUNK_BYTES = 64 * 1024;
/** Both sides close a connection after this long without a packet (quiche max_idle_timeout). */
const MAX_IDLE_TIMEOUT_MS = 30_000;
const DEFAULT_CLIENT_TIMEOUT_MS = 120_000;

const USAGE = `usage:
  node test/interop/quiche-peer.ts server --host 127.0.0.1 --port 0 --cert FILE --key FILE --alpn hq-interop [--alpn ...] [--log-level warn]
  node test/interop/quiche-peer.ts client --host 127.0.0.1 --port N --ca FILE --alpn hq-interop (--upload BYTES | --download BYTES) [--seed S]
        [--server-name localhost] [--local-host 127.0.0.1] [--timeout-ms 120000] [--log-level warn]
example:
  node test/interop/quiche-peer.ts client --host 127.0.0.1 --port 4433 --ca /tmp/certs/ca.pem --alpn hq-interop --download 1048576 --seed 7
`;

function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function makeLogger(levelName: string): Logger {
  const levels: Record<string, LogLevel> = {
    debug: LogLevel.DEBUG,
    info: LogLevel.INFO,
    warn: LogLevel.WARN,
    error: LogLevel.ERROR,
    silent: LogLevel.SILENT,
  };
  const level = levels[levelName];
  if (level === undefined) throw new QuichePeerUsageError(`--log-level: expected one of ${Object.keys(levels).join(", ")}, got "${levelName}"`);
  // StreamHandler writes to process.stderr, keeping stdout for our JSON lines.
  return new Logger("quiche-peer", level, [new StreamHandler()]);
}

/** SeededRandom(seed) as a sequence of chunks: the concatenation equals SeededRandom(seed).bytes(totalBytes). */
function* seededChunks(seed: number, totalBytes: number, chunkBytes: number): Generator<Buffer> {
  const random = new SeededRandom(seed);
  for (let remaining = totalBytes; remaining > 0; remaining -= chunkBytes) yield random.bytes(Math.min(chunkBytes, remaining));
}

function parseByteCount(flag: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new QuichePeerUsageError(`${flag}: expected a byte count like 10485760, got "${text}"`);
  return Number(text);
}

function parseSeed(flag: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 0xffffffff) throw new QuichePeerUsageError(`${flag}: expected an integer seed in [0, 2^32), got "${text}"`);
  return Number(text);
}

// ---------------------------------------------------------------------------------------------
// Stream reading

interface StreamReader {
  /** Reads the command line (up to and excluding "\n"); the bytes after it stay buffered for readPayload. */
  readCommandLine(): Promise<string>;
  /** Feeds every remaining byte up to FIN to `onChunk`; returns the byte count. */
  readPayload(onChunk: (chunk: Uint8Array) => void): Promise<number>;
}

function streamReader(readable: ReadableStream<Uint8Array>): StreamReader {
  const reader = readable.getReader();
  let pending: Buffer = Buffer.alloc(0);
  return {
    async readCommandLine(): Promise<string> {
      for (;;) {
        const newline = pending.indexOf(0x0a);
        if (newline >= 0) {
          const line = pending.subarray(0, newline).toString("ascii");
          pending = pending.subarray(newline + 1);
          return line;
        }
        if (pending.length > COMMAND_LINE_MAX_BYTES) throw new QuichePeerTransferError(`no command line within ${COMMAND_LINE_MAX_BYTES} bytes`);
        const { value, done } = await reader.read();
        if (done) throw new QuichePeerTransferError("stream finished before a command line");
        pending = Buffer.concat([pending, value]);
      }
    },
    async readPayload(onChunk: (chunk: Uint8Array) => void): Promise<number> {
      let bytes = pending.length;
      if (pending.length > 0) onChunk(pending);
      pending = Buffer.alloc(0);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return bytes;
        bytes += value.byteLength;
        onChunk(value);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Server

async function serveStream(stream: QUICStream, connectionId: string): Promise<void> {
  const reader = streamReader(stream.readable);
  const writer = stream.writable.getWriter();
  const command = await reader.readCommandLine();
  const [verb, ...args] = command.split(" ");
  if (verb === "SINK" && args.length === 0) {
    const hash = createHash("sha256");
    const bytes = await reader.readPayload((chunk) => hash.update(chunk));
    await writer.write(Buffer.from(JSON.stringify({ bytes, sha256: hash.digest("hex") })));
    await writer.close();
    emit({ event: "streamServed", connectionId, streamId: stream.streamId, command: "SINK", bytes });
    return;
  }
  if (verb === "SOURCE" && args.length === 2) {
    const totalBytes = parseByteCount("SOURCE <n>", args[0]!);
    const seed = parseSeed("SOURCE <seed>", args[1]!);
    await reader.readPayload(() => {
      throw new QuichePeerTransferError("SOURCE request carries a payload");
    });
    for (const chunk of seededChunks(seed, totalBytes, SOURCE_CHUNK_BYTES)) await writer.write(chunk);
    await writer.close();
    emit({ event: "streamServed", connectionId, streamId: stream.streamId, command: "SOURCE", bytes: totalBytes });
    return;
  }
  throw new QuichePeerTransferError(`unknown command line "${command.slice(0, 64)}"`);
}

function watchConnection(connection: QUICConnection): void {
  const connectionId = connection.connectionId.toString();
  emit({ event: "connected", connectionId, remoteHost: connection.remoteHost, remotePort: connection.remotePort });
  connection.addEventListener(quicEvents.EventQUICConnectionStream.name, (event: Event) => {
    const stream = (event as quicEvents.EventQUICConnectionStream).detail;
    serveStream(stream, connectionId).catch((error: unknown) => {
      emit({ event: "streamFailed", connectionId, streamId: stream.streamId, error: String(error) });
      stream.cancel(error);
    });
  });
  connection.addEventListener(
    quicEvents.EventQUICConnectionStopped.name,
    () => {
      const error = connection.getConnectionError();
      emit({
        event: "closed",
        connectionId,
        isApp: error?.isApp ?? null,
        errorCode: error?.errorCode ?? null,
        reason: error ? Buffer.from(error.reason).toString("utf8") : null,
      });
    },
    { once: true },
  );
}

async function runServer(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "0" },
      cert: { type: "string" },
      key: { type: "string" },
      alpn: { type: "string", multiple: true },
      "log-level": { type: "string", default: "warn" },
    },
  });
  if (values.cert === undefined || values.key === undefined) throw new QuichePeerUsageError("server: --cert and --key are required");
  const alpn = values.alpn ?? ["hq-interop"];
  // Stateless retry tokens and connection IDs are HMACs under a per-process key (js-quic QUICServer.mintToken).
  const tokenKey = randomFillSync(Buffer.alloc(32));
  const config = {
    cert: readFileSync(values.cert, "utf8"),
    key: readFileSync(values.key, "utf8"),
    applicationProtos: alpn,
    verifyPeer: false,
    maxIdleTimeout: MAX_IDLE_TIMEOUT_MS,
  };
  // js-quic builds the quiche config per accepted connection, so an unusable key (BoringSSL rejects
  // RSASSA-PSS keys) would only surface as an uncaught error at the first Initial: check it up front.
  try {
    buildQuicheConfig({ ...serverDefault, ...config });
  } catch (error) {
    throw new QuichePeerUsageError(`server: quiche cannot use --cert/--key: ${error instanceof Error ? error.message : String(error)}`);
  }
  const server = new QUICServer({
    crypto: {
      key: tokenKey.buffer.slice(tokenKey.byteOffset, tokenKey.byteOffset + tokenKey.byteLength),
      ops: {
        async sign(key: ArrayBuffer, data: ArrayBuffer): Promise<ArrayBuffer> {
          const mac = createHmac("sha256", Buffer.from(key)).update(Buffer.from(data)).digest();
          return mac.buffer.slice(mac.byteOffset, mac.byteOffset + mac.byteLength);
        },
        async verify(key: ArrayBuffer, data: ArrayBuffer, signature: ArrayBuffer): Promise<boolean> {
          const expected = createHmac("sha256", Buffer.from(key)).update(Buffer.from(data)).digest();
          const actual = Buffer.from(signature);
          return actual.length === expected.length && timingSafeEqual(actual, expected);
        },
      },
    },
    config,
    logger: makeLogger(values["log-level"]),
  });
  server.addEventListener(quicEvents.EventQUICServerConnection.name, (event: Event) => {
    watchConnection((event as quicEvents.EventQUICServerConnection).detail);
  });
  server.addEventListener(quicEvents.EventQUICServerError.name, (event: Event) => {
    emit({ event: "serverError", error: String((event as quicEvents.EventQUICServerError).detail) });
  });
  await server.start({ host: values.host, port: Number(values.port) });
  emit({ event: "listening", host: server.host, port: server.port, alpn });

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    server
      .stop({ force: true })
      .then(() => {
        emit({ event: "stopped", signal });
        process.exit(0);
      })
      .catch((error: unknown) => {
        emit({ event: "stopFailed", error: String(error) });
        process.exit(1);
      });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

// ---------------------------------------------------------------------------------------------
// Client

interface TransferResult {
  bytes: number;
  sha256: string;
}

async function upload(stream: QUICStream, totalBytes: number, seed: number): Promise<TransferResult> {
  const writer = stream.writable.getWriter();
  const reader = streamReader(stream.readable);
  const hash = createHash("sha256");
  await writer.write(Buffer.from("SINK\n", "ascii"));
  for (const chunk of seededChunks(seed, totalBytes, UPLOAD_CHUNK_BYTES)) {
    hash.update(chunk);
    await writer.write(chunk);
  }
  await writer.close();
  const reply: Buffer[] = [];
  await reader.readPayload((chunk) => reply.push(Buffer.from(chunk)));
  const sent: TransferResult = { bytes: totalBytes, sha256: hash.digest("hex") };
  const received = JSON.parse(Buffer.concat(reply).toString("utf8")) as Partial<TransferResult>;
  if (received.bytes !== sent.bytes || received.sha256 !== sent.sha256) {
    throw new QuichePeerTransferError(`server received ${received.bytes} bytes sha256 ${received.sha256}, sent ${sent.bytes} bytes sha256 ${sent.sha256}`);
  }
  return sent;
}

async function download(stream: QUICStream, totalBytes: number, seed: number): Promise<TransferResult> {
  const writer = stream.writable.getWriter();
  const reader = streamReader(stream.readable);
  await writer.write(Buffer.from(`SOURCE ${totalBytes} ${seed}\n`, "ascii"));
  await writer.close();
  const receivedHash = createHash("sha256");
  const bytes = await reader.readPayload((chunk) => receivedHash.update(chunk));
  const received: TransferResult = { bytes, sha256: receivedHash.digest("hex") };
  const expectedHash: Hash = createHash("sha256");
  for (const chunk of seededChunks(seed, totalBytes, SOURCE_CHUNK_BYTES)) expectedHash.update(chunk);
  const expected = expectedHash.digest("hex");
  if (received.bytes !== totalBytes || received.sha256 !== expected) {
    throw new QuichePeerTransferError(`received ${received.bytes} bytes sha256 ${received.sha256}, expected ${totalBytes} bytes sha256 ${expected}`);
  }
  return received;
}

async function runClient(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      ca: { type: "string" },
      alpn: { type: "string", multiple: true },
      upload: { type: "string" },
      download: { type: "string" },
      seed: { type: "string", default: "1" },
      // js-quic defaults the server name to --host; quiche then checks the name against DNS SANs only, so an
      // IP literal never verifies. Our certificates carry "localhost" (test/interop/issue-certificates.ts).
      "server-name": { type: "string", default: "localhost" },
      "local-host": { type: "string" },
      "timeout-ms": { type: "string", default: String(DEFAULT_CLIENT_TIMEOUT_MS) },
      "log-level": { type: "string", default: "warn" },
    },
  });
  if (values.port === undefined || values.ca === undefined) throw new QuichePeerUsageError("client: --port and --ca are required");
  if ((values.upload === undefined) === (values.download === undefined)) throw new QuichePeerUsageError("client: exactly one of --upload and --download");
  const direction = values.upload !== undefined ? "upload" : "download";
  const totalBytes = parseByteCount(`--${direction}`, values.upload ?? values.download ?? "");
  const seed = parseSeed("--seed", values.seed);
  const timeoutMs = parseByteCount("--timeout-ms", values["timeout-ms"]);
  const alpn = values.alpn ?? ["hq-interop"];

  const deadline = setTimeout(() => {
    emit({ ok: false, error: `timed out after ${timeoutMs} ms` });
    process.exit(1);
  }, timeoutMs);
  deadline.unref();

  const handshakeStart = performance.now();
  const client = await QUICClient.createQUICClient(
    {
      host: values.host,
      port: Number(values.port),
      serverName: values["server-name"],
      // js-quic binds the client socket to "::" by default; stay on the loopback family of --host.
      localHost: values["local-host"] ?? (values.host.includes(":") ? "::1" : "127.0.0.1"),
      crypto: {
        ops: {
          async randomBytes(data: ArrayBuffer): Promise<void> {
            randomFillSync(new Uint8Array(data));
          },
        },
      },
      config: {
        ca: readFileSync(values.ca, "utf8"),
        verifyPeer: true,
        applicationProtos: alpn,
        maxIdleTimeout: MAX_IDLE_TIMEOUT_MS,
      },
      logger: makeLogger(values["log-level"]),
    },
    { timer: timeoutMs },
  );
  const handshakeMs = performance.now() - handshakeStart;
  try {
    const transferStart = performance.now();
    const stream = client.connection.newStream("bidi");
    const result = direction === "upload" ? await upload(stream, totalBytes, seed) : await download(stream, totalBytes, seed);
    const transferMs = performance.now() - transferStart;
    emit({ ok: true, direction, bytes: result.bytes, sha256: result.sha256, handshakeMs, transferMs });
    return 0;
  } finally {
    // RFC 9000 §10.2: close with application error 0 (NO_ERROR semantics for the application).
    await client.destroy({ isApp: true, errorCode: 0 });
  }
}

/** js-quic connection errors carry quiche's ConnectionError ({isApp, errorCode, reason}) in `data`. */
function connectionErrorOf(error: unknown): { isApp: boolean; errorCode: number; reason: string } | null {
  const data: unknown = error instanceof Error && "data" in error ? error.data : undefined;
  if (typeof data !== "object" || data === null || !("errorCode" in data) || typeof data.errorCode !== "number") return null;
  const reason = "reason" in data && data.reason instanceof Uint8Array ? Buffer.from(data.reason).toString("utf8") : "";
  return { isApp: "isApp" in data && data.isApp === true, errorCode: data.errorCode, reason };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const [mode, ...rest] = process.argv.slice(2);
  try {
    if (mode === "server") {
      await runServer(rest);
      return;
    }
    if (mode === "client") {
      const exitCode = await runClient(rest);
      process.exit(exitCode);
    }
    if (mode === "--help" || mode === "-h") {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    throw new QuichePeerUsageError(`expected mode "server" or "client", got "${mode ?? ""}"`);
  } catch (error) {
    if (error instanceof QuichePeerUsageError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`${error.message}\n${USAGE}`);
      process.exit(2);
    }
    emit({ ok: false, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error), connectionError: connectionErrorOf(error) });
    process.exit(1);
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
