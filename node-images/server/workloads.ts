/**
 * What the backend serves, over HTTP/3 (and the download over hq-interop):
 *
 * | request | answer |
 * |---|---|
 * | `GET /files/<bytes>` | a file of that size (one of the configured sizes), header `x-sha256` |
 * | `GET /stream?rate=<bytes/s>&ms=<duration>` | a constant-rate body: one chunk per tick (50 ms) until the duration ends |
 * | `GET /rr?bytes=<n>` | request/response: `n` bytes (≤ 64 KiB) and `x-server-time-ms`, the server's wall clock at receipt |
 * | `POST /echo` | the request body back |
 *
 * Unknown paths are 404, bad parameters 400: counted by `qmt_server_requests_total{workload,status}`.
 * One ticker drives every constant-rate stream (not a timer per connection: 10,000 of them).
 */
import { createHash } from "node:crypto";
import type { Counter } from "prom-client";
import type { MetricsRegistry } from "../common/metrics.ts";
import { SeededRandom } from "../common/seeded-random.ts";
import type { Http3ServerRequest, ResponseWriter } from "../quic/http3/server.ts";

export const STREAM_TICK_MS = 50;
export const MAX_STREAM_RATE_BYTES_PER_SECOND = 50 * 1024 * 1024;
export const MAX_STREAM_DURATION_MS = 3_600_000;
export const MAX_RR_BYTES = 64 * 1024;
export const WORKLOADS = ["files", "stream", "rr", "echo", "unknown"] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

export interface ServedFile {
  body: Buffer;
  sha256: string;
}

/** Deterministic file contents (seeded), so a client can check the hash the header announces. */
export function makeFiles(sizesBytes: readonly number[]): Map<number, ServedFile> {
  const files = new Map<number, ServedFile>();
  for (const size of sizesBytes) {
    const body = new SeededRandom(size).bytes(size);
    files.set(size, { body, sha256: createHash("sha256").update(body).digest("hex") });
  }
  return files;
}

interface ActiveStream {
  writer: ResponseWriter;
  bytesPerTick: number;
  endsAtMs: number;
}

export class WorkloadServer {
  readonly files: Map<number, ServedFile>;
  readonly counters = { streamTicksSkipped: 0, streamsAborted: 0 };
  private readonly streams = new Set<ActiveStream>();
  private readonly requests: Counter<"workload" | "status">;
  private readonly chunk: Buffer;
  private ticker: NodeJS.Timeout | undefined;

  constructor(options: { fileSizesBytes: readonly number[]; metrics: MetricsRegistry }) {
    this.files = makeFiles(options.fileSizesBytes);
    this.requests = options.metrics.counter("server_requests_total", "application requests served, by workload and HTTP status", ["workload", "status"]);
    this.chunk = Buffer.alloc(Math.ceil((MAX_STREAM_RATE_BYTES_PER_SECOND * STREAM_TICK_MS) / 1000), 0x61);
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  /** HTTP/3: answer one complete request. */
  handle(req: Http3ServerRequest, nowMs: () => number): void {
    const url = new URL(req.path, "https://backend.invalid");
    const count = (workload: WorkloadName, status: number): void => this.requests.inc({ workload, status: String(status) });
    const fail = (workload: WorkloadName, status: number, message: string): void => {
      count(workload, status);
      req.respond(status, [["content-type", "text/plain"]], Buffer.from(message));
    };
    if (url.pathname.startsWith("/files/") && req.method === "GET") {
      const file = this.files.get(Number(url.pathname.slice("/files/".length)));
      if (!file) return fail("files", 404, `no such file; sizes: ${[...this.files.keys()].join(", ")}`);
      count("files", 200);
      req.respond(200, [["x-sha256", file.sha256], ["content-length", String(file.body.length)]], file.body);
      return;
    }
    if (url.pathname === "/rr" && req.method === "GET") {
      const bytes = Number(url.searchParams.get("bytes") ?? "0");
      if (!Number.isInteger(bytes) || bytes < 0 || bytes > MAX_RR_BYTES) return fail("rr", 400, `bytes: expected an integer 0..${MAX_RR_BYTES}`);
      count("rr", 200);
      req.respond(200, [["x-server-time-ms", nowMs().toFixed(3)]], this.chunk.subarray(0, bytes));
      return;
    }
    if (url.pathname === "/echo" && req.method === "POST") {
      count("echo", 200);
      req.respond(200, [], req.body);
      return;
    }
    if (url.pathname === "/stream" && req.method === "GET") {
      const rate = Number(url.searchParams.get("rate") ?? "0");
      const ms = Number(url.searchParams.get("ms") ?? "0");
      if (!Number.isInteger(rate) || rate < 1 || rate > MAX_STREAM_RATE_BYTES_PER_SECOND) {
        return fail("stream", 400, `rate: expected bytes per second 1..${MAX_STREAM_RATE_BYTES_PER_SECOND}`);
      }
      if (!Number.isInteger(ms) || ms < 1 || ms > MAX_STREAM_DURATION_MS) return fail("stream", 400, `ms: expected a duration 1..${MAX_STREAM_DURATION_MS}`);
      count("stream", 200);
      const writer = req.respond(200, [["x-stream-rate", String(rate)]]);
      this.streams.add({ writer, bytesPerTick: Math.max(1, Math.round((rate * STREAM_TICK_MS) / 1000)), endsAtMs: nowMs() + ms });
      this.ensureTicker(nowMs);
      return;
    }
    fail("unknown", 404, "no such resource");
  }

  /** hq-interop (HTTP/0.9): `GET /<bytes>` or `GET /files/<bytes>` downloads a configured file. */
  hqBody(path: string): Uint8Array | undefined {
    const size = Number(path.replace(/^\/(files\/)?/, ""));
    const file = this.files.get(size);
    this.requests.inc({ workload: file ? "files" : "unknown", status: file ? "200" : "404" });
    return file?.body;
  }

  /** One tick: each stream gets its chunk, or skips it while its send buffer is full (backpressure). */
  tick(nowMs: number): void {
    for (const s of this.streams) {
      try {
        if (nowMs >= s.endsAtMs) {
          s.writer.end();
          this.streams.delete(s);
          continue;
        }
        if (s.writer.pendingBytes > 4 * s.bytesPerTick) {
          this.counters.streamTicksSkipped++;
          continue;
        }
        s.writer.write(this.chunk.subarray(0, s.bytesPerTick));
      } catch {
        // The stream was reset or its connection closed meanwhile: it is over (counted, not fatal).
        this.counters.streamsAborted++;
        this.streams.delete(s);
      }
    }
  }

  private ensureTicker(nowMs: () => number): void {
    if (this.ticker) return;
    this.ticker = setInterval(() => {
      this.tick(nowMs());
      if (this.streams.size === 0 && this.ticker) {
        clearInterval(this.ticker);
        this.ticker = undefined;
      }
    }, STREAM_TICK_MS);
  }

  stop(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    for (const s of this.streams) s.writer.end();
    this.streams.clear();
  }
}
