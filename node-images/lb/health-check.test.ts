/**
 * Backend health checks (health-check.ts): the state machine in injected time, the probe's
 * classification against real peers on 127.0.0.0/8, and the monitor end to end: one healthy
 * backend, one that accepts TCP and never answers, one with nothing listening. New Initials avoid
 * the unhealthy ones, every probe is counted, and the hung one comes back once it answers.
 */
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MetricsRegistry } from "../common/metrics.ts";
import { backendGauge } from "./control.ts";
import { BackendHealth, HealthMonitor, probeHealthUrl, type HealthCheckSettings } from "./health-check.ts";
import { QuicLbRouter } from "./router.ts";

const QUIC_LB = { configId: 0, serverIdLength: 1, nonceLength: 7 };

/** A version 1 Initial with a client-chosen (unroutable) DCID: the router hashes the client address. */
function initial(): Buffer {
  const d = Buffer.alloc(1200);
  d[0] = 0xc0;
  d.writeUInt32BE(1, 1);
  d[5] = 8;
  Buffer.from("0123456789abcdef", "hex").copy(d, 6);
  return d;
}

function listen(server: TcpServer | HttpServer, at: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => resolve());
  });
}

/** Which backends new connections from `count` client addresses reach. */
function newConnectionOwners(router: QuicLbRouter, count: number): Map<string, number> {
  const owners = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const decision = router.route(initial(), { address: `127.0.${1 + (i >> 8)}.${i & 0xff}`, port: 40000 + i });
    const key = decision.action === "forward" ? decision.backend.id : `drop:${decision.reason}`;
    owners.set(key, (owners.get(key) ?? 0) + 1);
  }
  return owners;
}

/** Wait on a condition with a deadline (no fixed sleeps). */
async function until(what: string, condition: () => boolean | Promise<boolean>, deadlineMs = 5000): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`not within ${deadlineMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20)); // poll interval of a condition with a deadline
  }
}

function counterValue(text: string, name: string, labels: string): number {
  const m = new RegExp(`^${name}\\{${labels.replace(/[{}"]/g, (c) => `\\${c}`)}\\} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

describe("BackendHealth state machine (injected time)", () => {
  const settings = { unhealthyAfter: 3, healthyAfter: 2 };

  it("starts healthy; N consecutive failures make it unhealthy, at the time of the Nth", () => {
    const h = new BackendHealth(settings, 1_000);
    expect(h.state).toBe("healthy");
    expect(h.record("timeout", "no answer", 2_000)).toBeUndefined();
    expect(h.record("refused", "ECONNREFUSED", 3_000)).toBeUndefined();
    expect(h.record("http_error", "HTTP 503", 4_000)).toEqual({ from: "healthy", to: "unhealthy", atMs: 4_000, consecutive: 3, result: "http_error", detail: "HTTP 503" });
    expect([h.state, h.sinceMs, h.consecutiveFailures]).toEqual(["unhealthy", 4_000, 3]);
    // More failures change nothing.
    expect(h.record("malformed", "junk", 5_000)).toBeUndefined();
    expect(h.sinceMs).toBe(4_000);
  });

  it("a success breaks a failure streak (no flapping on isolated failures)", () => {
    const h = new BackendHealth(settings, 0);
    for (let t = 1; t <= 20; t++) expect(h.record(t % 3 === 0 ? "ok" : "timeout", "", t)).toBeUndefined();
    expect(h.state).toBe("healthy");
  });

  it("M consecutive successes make it healthy again; a failure in between restarts the count", () => {
    const h = new BackendHealth(settings, 0);
    for (let t = 1; t <= 3; t++) h.record("timeout", "", t);
    expect(h.record("ok", "HTTP 200", 10)).toBeUndefined();
    expect(h.record("timeout", "", 11)).toBeUndefined();
    expect(h.record("ok", "HTTP 200", 12)).toBeUndefined();
    expect(h.record("ok", "HTTP 200", 13)).toEqual({ from: "unhealthy", to: "healthy", atMs: 13, consecutive: 2, result: "ok", detail: "HTTP 200" });
    expect([h.state, h.consecutiveSuccesses, h.consecutiveFailures, h.lastCheckAtMs]).toEqual(["healthy", 2, 0, 13]);
  });

  it("thresholds of 1 switch on every change of result", () => {
    const h = new BackendHealth({ unhealthyAfter: 1, healthyAfter: 1 }, 0);
    expect(h.record("refused", "", 1)?.to).toBe("unhealthy");
    expect(h.record("ok", "", 2)?.to).toBe("healthy");
  });
});

/** Real peers on loopback: a health endpoint, a TCP server that never answers, one that answers junk. */
class Peers {
  readonly healthy: HttpServer;
  /** Accepts connections and never writes, until `answer` is set. */
  readonly hung: TcpServer;
  readonly junk: TcpServer;
  readonly failing: HttpServer;
  answer = false;
  readonly hungSockets = new Set<Socket>();
  refusedPort = 0;

  constructor() {
    this.healthy = createHttpServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}'));
    this.failing = createHttpServer((_req, res) => res.writeHead(503).end());
    this.hung = createTcpServer((socket) => {
      socket.on("error", () => undefined); // the prober aborting is expected
      socket.resume(); // read (and discard) the request, so the prober closing its end is seen here
      if (this.answer) {
        socket.end("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\nconnection: close\r\n\r\n{\"status\":\"ok\"}");
        return;
      }
      this.hungSockets.add(socket);
      socket.on("close", () => this.hungSockets.delete(socket));
    });
    this.junk = createTcpServer((socket) => {
      socket.on("error", () => undefined);
      socket.resume();
      socket.end("SSH-2.0-OpenSSH_9.6\r\n\r\n");
    });
  }

  async start(): Promise<void> {
    await listen(this.healthy, { host: "127.0.0.31", port: 0 });
    await listen(this.hung, { host: "127.0.0.32", port: 0 });
    await listen(this.junk, { host: "127.0.0.34", port: 0 });
    await listen(this.failing, { host: "127.0.0.35", port: 0 });
    // A port that was just free: nothing listens there now.
    const probe = createTcpServer();
    await listen(probe, { host: "127.0.0.33", port: 0 });
    this.refusedPort = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
  }

  url(server: HttpServer | TcpServer, host: string): string {
    return `http://${host}:${(server.address() as { port: number }).port}/healthz`;
  }

  get urls(): Record<"healthy" | "hung" | "refused" | "junk" | "failing", string> {
    return {
      healthy: this.url(this.healthy, "127.0.0.31"),
      hung: this.url(this.hung, "127.0.0.32"),
      refused: `http://127.0.0.33:${this.refusedPort}/healthz`,
      junk: this.url(this.junk, "127.0.0.34"),
      failing: this.url(this.failing, "127.0.0.35"),
    };
  }

  async stop(): Promise<void> {
    for (const s of this.hungSockets) s.destroy();
    for (const server of [this.healthy, this.failing]) server.closeAllConnections();
    await Promise.all([this.healthy, this.hung, this.junk, this.failing].map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

describe("health probes against real peers (127.0.0.0/8)", () => {
  const peers = new Peers();
  beforeAll(() => peers.start());
  afterAll(() => peers.stop());

  it("classifies ok, http_error, timeout, refused and malformed, each with a clear detail", async () => {
    const u = peers.urls;
    expect(await probeHealthUrl(u.healthy, 1000)).toEqual({ result: "ok", detail: "HTTP 200" });
    expect(await probeHealthUrl(u.failing, 1000)).toEqual({ result: "http_error", detail: "HTTP 503" });
    const started = performance.now();
    expect(await probeHealthUrl(u.hung, 150)).toEqual({ result: "timeout", detail: "no answer within 150 ms" });
    expect(performance.now() - started).toBeLessThan(2000);
    const refused = await probeHealthUrl(u.refused, 1000);
    expect(refused.result).toBe("refused");
    expect(refused.detail).toMatch(/^ECONNREFUSED/);
    const junk = await probeHealthUrl(u.junk, 1000);
    expect(junk.result).toBe("malformed");
    expect(junk.detail).toMatch(/^not an HTTP answer/);
  });

  it("a cancelled probe rejects with the cancel reason instead of producing a result", async () => {
    const cancel = new AbortController();
    const pending = probeHealthUrl(peers.urls.hung, 5000, cancel.signal);
    cancel.abort(new Error("stopped"));
    await expect(pending).rejects.toThrow("stopped");
  });
});

describe("HealthMonitor end to end: healthy, hung and refused backends", () => {
  const peers = new Peers();
  const settings: HealthCheckSettings = { intervalMs: 100, timeoutMs: 80, unhealthyAfter: 2, healthyAfter: 2 };
  const metrics = new MetricsRegistry({ defaultMetrics: false });
  const logs: Array<Record<string, unknown>> = [];
  let router: QuicLbRouter;
  let monitor: HealthMonitor;

  beforeAll(async () => {
    await peers.start();
    router = new QuicLbRouter({
      configs: [QUIC_LB],
      backends: ["healthy", "hung", "refused"].map((id, i) => ({ id, serverId: Buffer.from([i + 1]), address: { address: `127.0.0.${31 + i}`, port: 4434 } })),
    });
    monitor = new HealthMonitor({ router, settings, metrics, log: (entry) => logs.push({ at: new Date().toISOString(), ...entry }) });
    monitor.onTransition(backendGauge(metrics, router));
    // Before any check, every backend takes new connections (an LB restart routes at once).
    expect([...newConnectionOwners(router, 300).keys()].sort()).toEqual(["healthy", "hung", "refused"]);
    for (const id of ["healthy", "hung", "refused"] as const) monitor.watch(id, peers.urls[id]);
  });

  afterAll(async () => {
    await monitor.close();
    await peers.stop();
  });

  it("marks the hung and the refused backend unhealthy, logs why, and routes new Initials to the healthy one only", async () => {
    await until("hung and refused unhealthy", () => router.backend("hung")!.healthy === false && router.backend("refused")!.healthy === false);
    expect(router.backend("healthy")!.healthy).toBe(true);
    expect(router.hashFailingOpen).toBe(false);
    expect(newConnectionOwners(router, 300)).toEqual(new Map([["healthy", 300]]));

    const unhealthy = logs.filter((l) => l.event === "backendUnhealthy");
    expect(unhealthy.map((l) => l.backend).sort()).toEqual(["hung", "refused"]);
    expect(unhealthy.find((l) => l.backend === "hung")).toMatchObject({ result: "timeout", detail: "no answer within 80 ms", after: "2 consecutive failures", url: peers.urls.hung });
    expect(unhealthy.find((l) => l.backend === "refused")).toMatchObject({ result: "refused", detail: expect.stringMatching(/^ECONNREFUSED/) });
    for (const l of unhealthy) expect(Date.parse(String(l.since))).not.toBeNaN();
    // The first failure of a streak is logged once, before the state changes.
    expect(logs.filter((l) => l.event === "healthCheckFailed").map((l) => l.backend).sort()).toEqual(["hung", "refused"]);

    const text = await metrics.metrics();
    expect(counterValue(text, "qmt_lb_health_checks_total", 'result="ok"')).toBeGreaterThanOrEqual(2);
    expect(counterValue(text, "qmt_lb_health_checks_total", 'result="timeout"')).toBeGreaterThanOrEqual(2);
    expect(counterValue(text, "qmt_lb_health_checks_total", 'result="refused"')).toBeGreaterThanOrEqual(2);
    expect(counterValue(text, "qmt_lb_health_checks_total", 'result="malformed"')).toBe(0);
    expect(counterValue(text, "qmt_lb_health_checks_total", 'result="http_error"')).toBe(0);
    expect(text).toMatch(/^qmt_lb_backends\{state="unhealthy"\} 2$/m);
    expect(text).toMatch(/^qmt_lb_backends\{state="active"\} 1$/m);
    expect(monitor.view("hung")).toMatchObject({ state: "unhealthy", lastResult: "timeout", url: peers.urls.hung });

    // CID-routed traffic still reaches an unhealthy backend: its connections are bound to it.
    const cidToHung = Buffer.concat([Buffer.from([0x40, 0x00, 0x02]), Buffer.alloc(30)]);
    const decision = router.route(cidToHung, { address: "127.0.9.9", port: 5555 });
    expect(decision).toMatchObject({ action: "forward", route: "cid", backend: { id: "hung" } });
  });

  it("keeps at most one probe in flight per backend: the hung peer holds no pile of connections", () => {
    // One probe's connection, plus at most one whose close is still on its way over loopback.
    expect(peers.hungSockets.size).toBeLessThanOrEqual(2);
    expect(monitor.pendingCount).toBeLessThanOrEqual(3);
  });

  it("brings the hung backend back after it answers healthyAfter times in a row", async () => {
    peers.answer = true;
    await until("hung healthy again", () => router.backend("hung")!.healthy);
    expect(logs.filter((l) => l.event === "backendHealthy").map((l) => l.backend)).toEqual(["hung"]);
    expect(logs.find((l) => l.event === "backendHealthy")).toMatchObject({ after: "2 consecutive successes", result: "ok" });
    expect([...newConnectionOwners(router, 300).keys()].sort()).toEqual(["healthy", "hung"]);
    expect(await metrics.metrics()).toMatch(/^qmt_lb_backends\{state="unhealthy"\} 1$/m);
  });

  it("fails open when every active backend is unhealthy, rather than dropping every new connection", async () => {
    router.setHealthy("healthy", false);
    router.setHealthy("hung", false);
    expect(router.hashFailingOpen).toBe(true);
    expect([...newConnectionOwners(router, 300).keys()].sort()).toEqual(["healthy", "hung", "refused"]);
    // The monitor's next transitions put the real ones back; restore by hand for the next test.
    router.setHealthy("healthy", true);
    router.setHealthy("hung", true);
    expect(router.hashFailingOpen).toBe(false);
  });

  it("removing a backend clears its timer and aborts its probe; the rest keep being checked", async () => {
    peers.answer = false;
    await until("a probe to the hung peer is in flight", () => peers.hungSockets.size === 1);
    monitor.unwatch("hung");
    router.leave("hung");
    await until("the aborted probe's connection is closed", () => peers.hungSockets.size === 0);
    expect(monitor.view("hung")).toBeUndefined();
    const before = counterValue(await metrics.metrics(), "qmt_lb_health_checks_total", 'result="ok"');
    await until("the healthy backend is still checked", async () => counterValue(await metrics.metrics(), "qmt_lb_health_checks_total", 'result="ok"') >= before + 2);
    expect(peers.hungSockets.size).toBe(0);
  });

  it("close() leaves no timer and no probe behind", async () => {
    await monitor.close();
    expect(monitor.pendingCount).toBe(0);
    const after = await metrics.metrics();
    await new Promise((r) => setTimeout(r, 3 * settings.intervalMs)); // checking that nothing more happens needs elapsed time
    expect(await metrics.metrics()).toBe(after);
  });
});
