/**
 * The load generator: up to 10,000 concurrent QUIC connections in one process, over a few UDP
 * sockets (one UdpEndpoint; connections are demultiplexed by connection ID, not by socket). One
 * ticker drives the ramp, the request schedule, handshake deadlines and the end of each
 * connection's hold (no timer per connection). Each connection speaks HTTP/3 to the backend's
 * workloads (node-images/server/workloads.ts) and leaves one JSON line (connection-record.ts).
 */
import { createHash } from "node:crypto";
import type { Counter, Histogram } from "prom-client";
import { MinHeap } from "../common/min-heap.ts";
import type { MetricsRegistry } from "../common/metrics.ts";
import { bucketsAroundRtts, QuicConnectionMetrics } from "../common/quic-connection-metrics.ts";
import { SeededRandom } from "../common/seeded-random.ts";
import type { Connection } from "../quic/connection.ts";
import type { EndpointEvent } from "../quic/endpoint.ts";
import { Http3Client, type Http3ClientRequest } from "../quic/http3/client.ts";
import type { Http3Event } from "../quic/http3/events.ts";
import { formatSocketAddress, socketAddressEquals } from "../quic/path.ts";
import type { Instant } from "../quic/time.ts";
import { UdpEndpoint } from "../quic/udp-endpoint.ts";
import { WORKLOAD_KINDS, type ClientConfig, type WorkloadKind } from "./config.ts";
import { ConnectionRecord, quantile, type ConnectionLine, type ConnectionOutcome } from "./connection-record.ts";

const TICK_MS = 5;
/** Due items (requests, hold ends, deadlines) handled per tick at most; the rest wait for the next tick. */
const MAX_DUE_PER_TICK = 512;
const SOCKET_BUFFER_BYTES = 16 * 1024 * 1024;
const REQUEST_BUCKETS_SECONDS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];

interface Live {
  record: ConnectionRecord;
  h3: Http3Client;
  /** Requests in flight on this connection. */
  inFlight: Set<InFlight>;
  /** The workload has begun (after the handshake). */
  started: boolean;
}

interface InFlight {
  sentAt: Instant;
  echo?: Buffer;
  req: Http3ClientRequest;
}

type Due = { at: Instant; live: Live; what: "handshakeDeadline" | "request" | "holdEnd" };

export interface LoadSummary {
  event: "summary";
  connections: number;
  outcomes: Record<ConnectionOutcome, number>;
  successRate: number;
  requests: { completed: number; failed: number; latencyMs: { p50: number; p99: number } | undefined };
  migrationLatencyMs: { p50: number; p99: number } | undefined;
  migrationLatencyOverRtt: { p50: number; p99: number } | undefined;
  longestGapMs: { p50: number; p99: number; max: number } | undefined;
  bytes: { original: number; preferred: number };
  durationMs: number;
  failureReasons: Record<string, number>;
}

export class LoadGenerator implements AsyncDisposable {
  readonly config: ClientConfig;
  readonly udp: UdpEndpoint;
  readonly connectionMetrics: QuicConnectionMetrics;
  private readonly live = new Map<Connection, Live>();
  private readonly due = new MinHeap<Due>((a, b) => a.at < b.at);
  /**
   * What the summary needs of each finished connection, as running totals and one number per connection for the
   * quantiles: a finished connection's full line goes to the output and is not kept (10,000 of them would be
   * megabytes of timelines held for the whole run).
   */
  private readonly totals = {
    outcomes: { migrated: 0, fell_back: 0, stayed: 0, failed: 0 } as Record<ConnectionOutcome, number>,
    failureReasons: {} as Record<string, number>,
    requestLatencyP50sMs: [] as number[],
    migrationLatenciesMs: [] as number[],
    migrationOverRtt: [] as number[],
    longestGapsMs: [] as number[],
    requestsCompleted: 0,
    requestsFailed: 0,
    bytes: { original: 0, preferred: 0 },
  };
  private readonly writeLine: (line: object) => void;
  private readonly rng = new SeededRandom(0x5eed);
  private readonly outcomes: Counter<"outcome">;
  private readonly requestsCounter: Counter<"workload" | "result">;
  private readonly requestDuration: Histogram<"workload">;
  private readonly disruption: Histogram;
  private started = 0;
  private finished = 0;
  private startAt: Instant = 0;
  private ticker: NodeJS.Timeout | undefined;
  private done: (() => void) | undefined;
  private readonly donePromise: Promise<void>;
  private dispatch: (e: EndpointEvent) => void = () => {};

  private constructor(config: ClientConfig, udp: UdpEndpoint, metrics: MetricsRegistry, connectionMetrics: QuicConnectionMetrics, writeLine: (line: object) => void) {
    this.config = config;
    this.udp = udp;
    this.connectionMetrics = connectionMetrics;
    this.writeLine = writeLine;
    this.outcomes = metrics.counter("client_connection_outcomes_total", "finished connections by outcome (migrated, fell_back, stayed, failed)", ["outcome"]);
    this.requestsCounter = metrics.counter("client_requests_total", "workload requests by workload and result (ok, error)", ["workload", "result"]);
    this.requestDuration = metrics.histogram("client_request_duration_seconds", "request sent → response complete, by workload", REQUEST_BUCKETS_SECONDS, ["workload"]);
    this.disruption = metrics.histogram(
      "client_disruption_seconds",
      "per connection: the longest gap in application data delivery while data was expected",
      config.migrationLatencyBucketsMs ? bucketsAroundRtts(config.migrationLatencyBucketsMs) : REQUEST_BUCKETS_SECONDS,
    );
    this.donePromise = new Promise((resolve) => (this.done = resolve));
  }

  static async start(options: { config: ClientConfig; metrics: MetricsRegistry; writeLine: (line: object) => void }): Promise<LoadGenerator> {
    const { config, metrics } = options;
    const connectionMetrics = new QuicConnectionMetrics(metrics, {
      role: "client",
      pathKind: (p) => (socketAddressEquals(p.remote, config.target) ? "original" : "preferred"),
      migrationLatencyBucketsSeconds: config.migrationLatencyBucketsMs ? bucketsAroundRtts(config.migrationLatencyBucketsMs) : undefined,
    });
    let gen: LoadGenerator | undefined;
    const udp = await UdpEndpoint.bind({
      bind: config.bind,
      socketBufferBytes: SOCKET_BUFFER_BYTES,
      onDatagram: (direction, path, bytes) => connectionMetrics.onDatagram(direction, path, bytes),
      onEvent: (e) => gen?.dispatch(e),
    });
    connectionMetrics.attach(udp.endpoint);
    gen = new LoadGenerator(config, udp, metrics, connectionMetrics, options.writeLine);
    gen.dispatch = (e) => gen!.onEndpointEvent(e);
    return gen;
  }

  /** Start the ramp; resolves with the summary once every connection has finished. */
  async run(): Promise<LoadSummary> {
    this.startAt = this.udp.now();
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.tick();
    await this.donePromise;
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    const summary = this.summary();
    this.writeLine(summary);
    return summary;
  }

  status(): Record<string, unknown> {
    return {
      target: formatSocketAddress(this.config.target),
      local: this.udp.localAddresses.map(formatSocketAddress),
      started: this.started,
      live: this.live.size,
      finished: this.finished,
      udp: this.udp.counters,
      endpointDrops: this.udp.endpoint.drops,
    };
  }

  private tick(): void {
    const now = this.udp.now();
    const wanted = Math.min(this.config.connections, Math.floor(((now - this.startAt) * this.config.rampPerSecond) / 1000) + 1);
    // At most twice the ramp's share of one tick per tick: after a stall the backlog drains at twice the ramp
    // rate with the sockets read between ticks, not in one burst of handshakes (each a key share and a sealed
    // Initial) that stalls the loop again (bench/scale-10k.bench.ts, eventLoopLagMaxS).
    const maxStarts = Math.max(1, Math.ceil((2 * this.config.rampPerSecond * TICK_MS) / 1000));
    for (let n = 0; this.started < wanted && n < maxStarts; n++) this.startConnection(now);
    // Due work (requests, hold ends, deadlines) likewise at most MAX_DUE_PER_TICK per tick; the rest stays due.
    for (let i = 0; i < MAX_DUE_PER_TICK; i++) {
      const top = this.due.peek();
      if (!top || top.at > now) break;
      this.due.pop();
      this.onDue(top, now);
    }
  }

  private pickWorkload(): WorkloadKind {
    const mix = this.config.mix;
    const total = WORKLOAD_KINDS.reduce((s, k) => s + mix[k], 0);
    let r = this.rng.next() * total;
    for (const k of WORKLOAD_KINDS) {
      r -= mix[k];
      if (r < 0 && mix[k] > 0) return k;
    }
    return WORKLOAD_KINDS.find((k) => mix[k] > 0)!;
  }

  private startConnection(now: Instant): void {
    const id = this.started++;
    let conn: Connection;
    try {
      conn = this.udp.connect(
        {
          tls: { alpnProtocols: ["h3"], serverName: this.config.serverName, ca: [this.config.caPem] },
          preferredAddressPolicy: this.config.preferredAddressPolicy,
          transportParameters: { maxIdleTimeoutMs: 30_000 },
        },
        this.config.target,
        id % this.udp.sockets.length,
      );
    } catch (err) {
      // Counted as a failed connection with the reason; the run goes on.
      this.finished++;
      this.outcomes.inc({ outcome: "failed" });
      const reason = `connect: ${(err as Error).message}`;
      this.totals.outcomes.failed++;
      this.totals.failureReasons[reason] = (this.totals.failureReasons[reason] ?? 0) + 1;
      this.writeLine({ id, outcome: "failed", reason });
      this.checkDone();
      return;
    }
    const record = new ConnectionRecord(id, this.pickWorkload(), conn, this.config.target);
    const h3 = new Http3Client(conn, { wake: (c) => this.udp.wake(c), onEvent: (ev) => this.onHttp3Event(live, ev) });
    const live: Live = { record, h3, inFlight: new Set(), started: false };
    this.live.set(conn, live);
    this.connectionMetrics.onConnectionStarted(conn);
    this.due.push({ at: now + this.config.handshakeTimeoutMs, live, what: "handshakeDeadline" });
  }

  private onEndpointEvent(e: EndpointEvent): void {
    this.connectionMetrics.onEndpointEvent(e);
    const live = this.live.get(e.connection);
    if (!live) return;
    if (e.type === "connectionRemoved") {
      this.finish(live);
      return;
    }
    if (e.type !== "connection") return;
    live.record.onQuicEvent(e.event);
    live.h3.handleQuicEvent(e.event);
    // The connection's story ends when it closes; the closing period (RFC 9000 §10.2) adds nothing to it.
    if (e.event.type === "connectionClosed") {
      this.finish(live);
      return;
    }
    if (e.event.type === "handshakeCompleted" && !live.started) {
      live.started = true;
      live.record.holdUntil = e.event.at + this.config.holdMs;
      this.due.push({ at: live.record.holdUntil, live, what: "holdEnd" });
      this.beginWorkload(live, e.event.at);
    }
  }

  private beginWorkload(live: Live, now: Instant): void {
    const c = this.config;
    switch (live.record.workload) {
      case "rr":
      case "echo":
        this.sendRequest(live, now);
        return;
      case "stream":
        this.sendRequest(live, now, { path: `/stream?rate=${c.stream.rateBytesPerSecond}&ms=${c.holdMs}` });
        return;
      case "download":
        this.sendRequest(live, now, { path: `/files/${c.download.bytes}` });
        return;
    }
  }

  private sendRequest(live: Live, now: Instant, override?: { path: string }): void {
    if (live.record.finished || live.record.conn.isClosed) return;
    const c = this.config;
    let req: Http3ClientRequest;
    let echo: Buffer | undefined;
    const authority = c.serverName;
    if (live.record.workload === "echo") {
      echo = Buffer.alloc(c.echo.bytes, live.record.id & 0xff);
      req = live.h3.request({ method: "POST", path: "/echo", authority, body: echo });
    } else {
      req = live.h3.request({ path: override?.path ?? `/rr?bytes=${c.rr.bytes}`, authority, headers: [["x-client-time-ms", now.toFixed(3)]] });
    }
    // The gap clock runs from the moment data is expected.
    if (live.inFlight.size === 0) live.record.expectDataFrom(now);
    if (req.done) {
      this.onRequestDone(live, { sentAt: now, req, echo }, now);
      return;
    }
    live.inFlight.add({ sentAt: now, req, echo });
  }

  private onHttp3Event(live: Live, ev: Http3Event): void {
    if (ev.type === "dataReceived") {
      live.record.delivered(ev.at);
      return;
    }
    if (ev.type !== "messageCompleted" && ev.type !== "streamResetByPeer" && ev.type !== "streamAborted" && ev.type !== "connectionClosed" && ev.type !== "goawayReceived") return;
    // Settle every request the client API has finished (it finishes them before or after this event).
    queueMicrotask(() => {
      for (const f of live.inFlight) {
        if (!f.req.done) continue;
        live.inFlight.delete(f);
        this.onRequestDone(live, f, f.req.completedAt ?? ev.at);
      }
    });
  }

  private onRequestDone(live: Live, f: InFlight, at: Instant): void {
    const w = live.record.workload;
    let ok = !f.req.error && f.req.status === 200;
    if (ok && w === "download") {
      const announced = f.req.headers?.find(([n]) => n === "x-sha256")?.[1];
      ok = announced !== undefined && createHash("sha256").update(f.req.body).digest("hex") === announced;
    }
    if (ok && w === "echo") ok = f.echo !== undefined && f.req.body.equals(f.echo);
    // A request cut off by the end of the hold (the client closed) is neither a success nor a failure.
    if (!ok && live.record.finished) return;
    if (ok) {
      const latencyMs = at - f.sentAt;
      live.record.latenciesMs.push(latencyMs);
      live.record.delivered(at);
      this.requestDuration.observe({ workload: w }, latencyMs / 1000);
      this.requestsCounter.inc({ workload: w, result: "ok" });
    } else {
      live.record.requestsFailed++;
      this.requestsCounter.inc({ workload: w, result: "error" });
    }
    if (live.record.finished) return;
    if (w === "rr" || w === "echo") {
      const interval = w === "rr" ? this.config.rr.intervalMs : this.config.echo.intervalMs;
      const next = Math.max(f.sentAt + interval, at);
      if (live.record.holdUntil === undefined || next < live.record.holdUntil) this.due.push({ at: next, live, what: "request" });
    }
  }

  private onDue(d: Due, now: Instant): void {
    const { live } = d;
    if (!this.live.has(live.record.conn)) return;
    switch (d.what) {
      case "handshakeDeadline":
        if (live.record.conn.timeline.handshakeCompleted === undefined) {
          live.record.failure = "handshake_timeout";
          live.record.conn.close(now, 0, "handshake timeout");
          this.udp.wake(live.record.conn);
        }
        return;
      case "request":
        this.sendRequest(live, now);
        return;
      case "holdEnd":
        live.record.finished = true;
        // In-flight requests at the end are not failures of the connection.
        live.h3.close(now);
        this.finish(live);
        return;
    }
  }

  private finish(live: Live): void {
    if (!this.live.delete(live.record.conn)) return;
    const line = live.record.toLine();
    this.addToTotals(line);
    this.outcomes.inc({ outcome: line.outcome });
    if (line.longestGapMs !== undefined) this.disruption.observe(line.longestGapMs / 1000);
    this.writeLine(line);
    this.finished++;
    this.checkDone();
  }

  private checkDone(): void {
    if (this.finished >= this.config.connections && this.started >= this.config.connections) this.done?.();
  }

  private addToTotals(l: ConnectionLine): void {
    const t = this.totals;
    t.outcomes[l.outcome]++;
    if (l.outcome === "failed") t.failureReasons[l.reason ?? "unknown"] = (t.failureReasons[l.reason ?? "unknown"] ?? 0) + 1;
    if (l.requests.latencyMs) t.requestLatencyP50sMs.push(l.requests.latencyMs.p50);
    t.requestsCompleted += l.requests.completed;
    t.requestsFailed += l.requests.failed;
    if (l.migrationLatencyMs !== undefined) {
      t.migrationLatenciesMs.push(l.migrationLatencyMs);
      if (l.rttMs) t.migrationOverRtt.push(l.migrationLatencyMs / l.rttMs);
    }
    if (l.longestGapMs !== undefined) t.longestGapsMs.push(l.longestGapMs);
    t.bytes.original += l.bytes.original.sent + l.bytes.original.received;
    t.bytes.preferred += l.bytes.preferred.sent + l.bytes.preferred.received;
  }

  summary(): LoadSummary {
    const t = this.totals;
    const outcomes = { ...t.outcomes };
    const gaps = t.longestGapsMs;
    const q = (values: number[]) => {
      if (values.length === 0) return undefined;
      const xs = [...values].sort((a, b) => a - b);
      return { p50: quantile(xs, 0.5), p99: quantile(xs, 0.99) };
    };
    const g = q(gaps);
    const max = gaps.reduce((m, x) => Math.max(m, x), -Infinity);
    const total = this.config.connections;
    return {
      event: "summary",
      connections: total,
      outcomes,
      successRate: total === 0 ? 0 : (total - outcomes.failed) / total,
      requests: { completed: t.requestsCompleted, failed: t.requestsFailed, latencyMs: q(t.requestLatencyP50sMs) },
      migrationLatencyMs: q(t.migrationLatenciesMs),
      migrationLatencyOverRtt: q(t.migrationOverRtt),
      longestGapMs: g ? { ...g, max } : undefined,
      bytes: { ...t.bytes },
      durationMs: this.udp.now() - this.startAt,
      failureReasons: { ...t.failureReasons },
    };
  }

  async close(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    await this.udp.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
