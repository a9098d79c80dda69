import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MetricsRegistry } from "../common/metrics.ts";
import type { Http3ServerRequest, ResponseWriter } from "../quic/http3/server.ts";
import { makeFiles, STREAM_TICK_MS, WorkloadServer } from "./workloads.ts";

/** A request double: records the response; a writer that records chunks (and may refuse). */
function request(path: string, method = "GET", body = Buffer.alloc(0)) {
  const out: { status?: number; headers?: ReadonlyArray<readonly [string, string]>; body?: Uint8Array; chunks: Buffer[]; ended: boolean; pending: number; failing: boolean } = {
    chunks: [],
    ended: false,
    pending: 0,
    failing: false,
  };
  const writer: ResponseWriter = {
    write(chunk) {
      if (out.failing) throw new Error("stream reset");
      out.chunks.push(Buffer.from(chunk));
      return true;
    },
    end() {
      out.ended = true;
    },
    get pendingBytes() {
      return out.pending;
    },
    ondrain: undefined,
  };
  const req = {
    path,
    method,
    body,
    respond(status: number, headers: ReadonlyArray<readonly [string, string]> = [], b?: Uint8Array) {
      out.status = status;
      out.headers = headers;
      out.body = b;
      return writer;
    },
  } as unknown as Http3ServerRequest;
  return { req, out };
}

describe("server workloads", () => {
  const metrics = new MetricsRegistry({ defaultMetrics: false });
  const w = new WorkloadServer({ fileSizesBytes: [1000, 4097], metrics });
  const clock = () => 1_000_000;

  it("files are deterministic and announce their SHA-256", () => {
    const a = makeFiles([4097]).get(4097)!;
    expect(a.body.equals(makeFiles([4097]).get(4097)!.body)).toBe(true);
    const { req, out } = request("/files/4097");
    w.handle(req, clock);
    expect(out.status).toBe(200);
    expect(out.headers).toContainEqual(["x-sha256", createHash("sha256").update(out.body!).digest("hex")]);
    const missing = request("/files/5");
    w.handle(missing.req, clock);
    expect(missing.out.status).toBe(404);
  });

  it("rr answers with the server time and the asked size; bad parameters are 400", () => {
    const { req, out } = request("/rr?bytes=10");
    w.handle(req, clock);
    expect(out.body?.length).toBe(10);
    expect(out.headers).toContainEqual(["x-server-time-ms", "1000000.000"]);
    const bad = request("/rr?bytes=-1");
    w.handle(bad.req, clock);
    expect(bad.out.status).toBe(400);
    const echo = request("/echo", "POST", Buffer.from("hello"));
    w.handle(echo.req, clock);
    expect(Buffer.from(echo.out.body!).toString()).toBe("hello");
  });

  it("a stream sends rate × tick per tick, skips ticks under backpressure, ends on time; a reset stream is dropped", () => {
    const s = new WorkloadServer({ fileSizesBytes: [], metrics });
    let now = 0;
    const { req, out } = request("/stream?rate=20000&ms=200");
    s.handle(req, () => now);
    s.stop(); // no real ticker in a unit test: drive tick() by hand
    const again = request("/stream?rate=20000&ms=200");
    s.handle(again.req, () => now);
    for (now = 0; now < 200; now += STREAM_TICK_MS) s.tick(now);
    expect(again.out.chunks.map((c) => c.length)).toEqual([1000, 1000, 1000, 1000]);
    again.out.pending = 10_000;
    s.tick(now - 1);
    expect(s.counters.streamTicksSkipped).toBe(1);
    s.tick(200);
    expect(again.out.ended).toBe(true);
    expect(out.ended).toBe(true);
    const failing = request("/stream?rate=1000&ms=1000");
    s.handle(failing.req, () => 0);
    failing.out.failing = true;
    s.tick(10);
    expect(s.counters.streamsAborted).toBe(1);
    expect(s.activeStreams).toBe(0);
    s.stop();
  });

  it("bad stream parameters and unknown paths are counted by workload and status", async () => {
    const bad = request("/stream?rate=0&ms=10");
    w.handle(bad.req, clock);
    expect(bad.out.status).toBe(400);
    const unknown = request("/nothing");
    w.handle(unknown.req, clock);
    expect(unknown.out.status).toBe(404);
    const text = await metrics.metrics();
    expect(text).toMatch(/qmt_server_requests_total\{workload="stream",status="400"\} 1/);
    expect(text).toMatch(/qmt_server_requests_total\{workload="unknown",status="404"\} 1/);
  });
});
