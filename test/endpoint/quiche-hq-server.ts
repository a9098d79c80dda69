/**
 * Cloudflare quiche (through @matrixai/quic, in this process) serving files over HTTP/0.9, ALPN hq-interop:
 * "GET /path\r\n" + FIN in, the file + FIN out. js-quic gives raw streams only, which is all HTTP/0.9 needs.
 * quiche sends a Retry for every token-less Initial (test/interop/README.md), so every client is retried.
 */
import { createHmac, randomFillSync, timingSafeEqual } from "node:crypto";
import Logger, { LogLevel, StreamHandler } from "@matrixai/logger";
import { QUICServer, events as quicEvents } from "@matrixai/quic";
import type QUICStream from "@matrixai/quic/QUICStream.js";
import type { IssuedCertificate } from "../../node-images/common/pki.ts";
import { parseHqRequestLine } from "../../node-images/quic/hq-interop.ts";

const MAX_REQUEST_BYTES = 8 * 1024;
const WRITE_CHUNK_BYTES = 64 * 1024;

async function readAll(readable: ReadableStream<Uint8Array>, limitBytes: number): Promise<Buffer> {
  const reader = readable.getReader();
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return Buffer.concat(chunks);
    total += value.byteLength;
    if (total > limitBytes) throw new Error(`request longer than ${limitBytes} bytes`);
    chunks.push(Buffer.from(value));
  }
}

/** js-quic's Retry tokens are HMACs it asks us to make (its `crypto.ops`). */
function hmacOps() {
  const mac = (key: ArrayBuffer, data: ArrayBuffer): Buffer => createHmac("sha256", Buffer.from(key)).update(Buffer.from(data)).digest();
  return {
    async sign(key: ArrayBuffer, data: ArrayBuffer): Promise<ArrayBuffer> {
      const m = mac(key, data);
      const out = new ArrayBuffer(m.length);
      new Uint8Array(out).set(m);
      return out;
    },
    async verify(key: ArrayBuffer, data: ArrayBuffer, signature: ArrayBuffer): Promise<boolean> {
      const expected = mac(key, data);
      const actual = Buffer.from(signature);
      return actual.length === expected.length && timingSafeEqual(actual, expected);
    },
  };
}

export class QuicheHqServer implements AsyncDisposable {
  readonly errors: string[] = [];
  readonly requests: string[] = [];
  private readonly server: QUICServer;

  private constructor(server: QUICServer) {
    this.server = server;
  }

  static async start(files: ReadonlyMap<string, Buffer>, leaf: IssuedCertificate): Promise<QuicheHqServer> {
    const key = randomFillSync(Buffer.alloc(32));
    const server = new QUICServer({
      crypto: { key: key.buffer.slice(key.byteOffset, key.byteOffset + 32), ops: hmacOps() },
      config: { cert: leaf.certPem, key: leaf.keyPem, applicationProtos: ["hq-interop"], verifyPeer: false, maxIdleTimeout: 30_000 },
      logger: new Logger("quiche-hq-server", LogLevel.WARN, [new StreamHandler()]),
    });
    const wrapper = new QuicheHqServer(server);
    server.addEventListener(quicEvents.EventQUICServerConnection.name, (event: Event) => {
      const conn = (event as quicEvents.EventQUICServerConnection).detail;
      conn.addEventListener(quicEvents.EventQUICConnectionStream.name, (e: Event) => {
        const stream = (e as quicEvents.EventQUICConnectionStream).detail;
        wrapper.serve(stream, files).catch((err: unknown) => wrapper.errors.push(String(err)));
      });
    });
    await server.start({ host: "127.0.0.1", port: 0 });
    return wrapper;
  }

  get port(): number {
    return this.server.port;
  }

  private async serve(stream: QUICStream, files: ReadonlyMap<string, Buffer>): Promise<void> {
    const request = await readAll(stream.readable, MAX_REQUEST_BYTES);
    const newline = request.indexOf(0x0a);
    const path = newline < 0 ? undefined : parseHqRequestLine(request.subarray(0, newline).toString("latin1"));
    if (path !== undefined) this.requests.push(path);
    const body = path === undefined ? undefined : files.get(path.slice(1));
    const writer = stream.writable.getWriter();
    if (body) for (let o = 0; o < body.length; o += WRITE_CHUNK_BYTES) await writer.write(body.subarray(o, o + WRITE_CHUNK_BYTES));
    await writer.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.server.stop({ force: true });
  }
}
