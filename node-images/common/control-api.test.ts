import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ControlApi, ControlApiError, parseBody } from "./control-api.ts";
import { MetricNameError, MetricsRegistry } from "./metrics.ts";

const TOKEN = "t0ken-for-tests-0123456789";

interface Reply {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON of any shape, asserted field by field
  text: string;
}

function call(api: ControlApi, method: string, path: string, options: { token?: string | null; body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...options.headers };
    const token = options.token === undefined ? TOKEN : options.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (options.body !== undefined) headers["content-type"] ??= "application/json";
    const req = request({ host: api.address.host, port: api.address.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body, text });
      });
    });
    req.on("error", reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

describe("control API", () => {
  const metrics = new MetricsRegistry({ defaultMetrics: false });
  let api: ControlApi;
  const items = new Map<string, number>();

  beforeAll(async () => {
    api = await ControlApi.start({
      address: { host: "127.0.0.1", port: 0 },
      token: TOKEN,
      metrics,
      maxBodyBytes: 1024,
      log: () => undefined,
      routes: [
        { method: "GET", path: "/status", handle: () => ({ body: { ok: true, items: Object.fromEntries(items) } }) },
        {
          method: "POST",
          path: "/items/:name",
          handle: ({ params, body }) => {
            const b = parseBody(z.strictObject({ count: z.number().int().min(0) }), body);
            if (items.has(params.name!)) throw new ControlApiError("CONFLICT", `${params.name} exists`);
            items.set(params.name!, b.count);
            return { status: 201, body: { name: params.name, count: b.count } };
          },
        },
        {
          method: "POST",
          path: "/crash",
          handle: () => {
            throw new TypeError("a bug in a handler");
          },
        },
      ],
    });
  });
  afterAll(() => api.close());

  it("serves a route with the right token", async () => {
    const r = await call(api, "GET", "/status");
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ ok: true, items: {} });
  });

  it("rejects a missing, wrong or differently sized token with 401 UNAUTHORIZED, counted", async () => {
    for (const token of [null, "wrong", `${TOKEN}x`, TOKEN.slice(0, -1)]) {
      const r = await call(api, "GET", "/status", { token });
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe("UNAUTHORIZED");
    }
    const text = await metrics.metrics();
    expect(text).toMatch(/qmt_control_requests_total\{route="\/status",outcome="UNAUTHORIZED"\} 4/);
  });

  it("malformed JSON is 400 MALFORMED_JSON and counted; the server keeps serving", async () => {
    const r = await call(api, "POST", "/items/a", { body: "{not json" });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("MALFORMED_JSON");
    expect(await metrics.metrics()).toMatch(/qmt_control_requests_total\{route="\/items\/:name",outcome="MALFORMED_JSON"\} 1/);
    expect((await call(api, "GET", "/status")).status).toBe(200);
  });

  it("a body failing the schema is 400 INVALID_REQUEST naming the field", async () => {
    const r = await call(api, "POST", "/items/a", { body: JSON.stringify({ count: -1 }) });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "INVALID_REQUEST", message: expect.stringMatching(/^count:/) });
    const extra = await call(api, "POST", "/items/a", { body: JSON.stringify({ count: 1, what: 2 }) });
    expect(extra.body.error.code).toBe("INVALID_REQUEST");
  });

  it("handler errors keep their stable codes (201 then 409 CONFLICT)", async () => {
    expect((await call(api, "POST", "/items/b", { body: JSON.stringify({ count: 2 }) })).status).toBe(201);
    const again = await call(api, "POST", "/items/b", { body: JSON.stringify({ count: 2 }) });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("CONFLICT");
  });

  it("a body over the limit is 413 BODY_TOO_LARGE, with or without a declared length", async () => {
    const big = JSON.stringify({ count: 1, pad: "x".repeat(5000) });
    const declared = await call(api, "POST", "/items/c", { body: big });
    expect(declared.status).toBe(413);
    expect(declared.body.error.code).toBe("BODY_TOO_LARGE");
    const chunked = await call(api, "POST", "/items/c", { body: big, headers: { "transfer-encoding": "chunked" } });
    expect(chunked.status).toBe(413);
    expect((await call(api, "GET", "/status")).status).toBe(200);
  });

  it("a non-JSON content type is 415, an unknown path 404, a wrong method 405", async () => {
    expect((await call(api, "POST", "/items/d", { body: "count=1", headers: { "content-type": "text/plain" } })).body.error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
    const missing = await call(api, "GET", "/nope");
    expect([missing.status, missing.body.error.code]).toEqual([404, "NOT_FOUND"]);
    const method = await call(api, "DELETE", "/status");
    expect([method.status, method.body.error.code]).toEqual([405, "METHOD_NOT_ALLOWED"]);
    expect((await call(api, "GET", "/items/%E0%A4%A")).status).toBe(404);
  });

  it("a handler that throws an unexpected error answers 500 INTERNAL and the server stays up", async () => {
    const r = await call(api, "POST", "/crash");
    expect(r.status).toBe(500);
    expect(r.body.error.code).toBe("INTERNAL");
    expect((await call(api, "GET", "/status")).status).toBe(200);
  });

  it("serves /metrics without a token, in the Prometheus text format", async () => {
    const r = await call(api, "GET", "/metrics", { token: null });
    expect(r.status).toBe(200);
    expect(r.text).toContain("# TYPE qmt_control_requests_total counter");
  });

  it("answers GET /healthz without a token and without details; other methods are 405; counted", async () => {
    const r = await call(api, "GET", "/healthz", { token: null });
    expect([r.status, r.body]).toEqual([200, { status: "ok" }]);
    const post = await call(api, "POST", "/healthz", { token: null });
    expect([post.status, post.body.error.code]).toEqual([405, "METHOD_NOT_ALLOWED"]);
    const text = (await call(api, "GET", "/metrics", { token: null })).text;
    expect(text).toMatch(/qmt_control_requests_total\{route="\/healthz",outcome="ok"\} 1/);
    expect(text).toMatch(/qmt_control_requests_total\{route="\/healthz",outcome="METHOD_NOT_ALLOWED"\} 1/);
  });

  it("refuses a token shorter than 16 characters", async () => {
    await expect(ControlApi.start({ address: { host: "127.0.0.1", port: 0 }, token: "short", routes: [] })).rejects.toThrow(/at least 16/);
  });
});

describe("MetricsRegistry", () => {
  it("prefixes every name with qmt_ and enforces unit suffixes", async () => {
    const m = new MetricsRegistry();
    m.counter("x_packets_total", "help").inc();
    m.histogram("x_latency_seconds", "help", [0.01, 0.1]).observe(0.05);
    const text = await m.metrics();
    expect(text).toContain("qmt_x_packets_total 1");
    expect(text).toContain("qmt_process_resident_memory_bytes");
    expect(() => m.counter("x_packets", "help")).toThrow(MetricNameError);
    expect(() => m.histogram("x_latency_ms", "help", [1])).toThrow(MetricNameError);
    expect(() => m.gauge("qmt_double", "help")).toThrow(MetricNameError);
    expect(() => m.gauge("Bad-Name", "help")).toThrow(MetricNameError);
    // The same name twice returns the same metric (parts built twice in one process).
    expect(m.counter("x_packets_total", "help")).toBe(m.counter("x_packets_total", "help"));
  });
});
