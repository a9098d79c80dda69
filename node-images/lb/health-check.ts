/**
 * Active health checks of the LB's backends: per backend an optional HTTP URL (the backend's
 * `GET /healthz` on its management address: no token, no details), polled every `intervalMs` with a
 * per-request timeout. `unhealthyAfter` consecutive failures take the backend out of the hash for
 * new connections (like draining); `healthyAfter` consecutive successes put it back.
 *
 * CID-routed traffic keeps reaching an unhealthy backend: those connections are bound to it (its
 * server ID is in their CIDs, and no other backend holds their keys), so sending them elsewhere
 * could only end them with a stateless reset, while a failing health endpoint (a stuck management
 * listener, a lost route on the management network) does not mean the QUIC side is down.
 *
 * Every probe ends in one result, counted in `qmt_lb_health_checks_total{result}`:
 *   ok          a 2xx answer within the timeout
 *   http_error  any other HTTP status (the backend said it is not well)
 *   timeout     no complete answer within timeoutMs (a peer that accepts and never answers)
 *   refused     no connection (ECONNREFUSED, unreachable, unknown host)
 *   malformed   connected, but what came back is not HTTP (parse error, closed or reset mid-answer)
 *
 * `BackendHealth` is the state machine alone, with time passed in (tests drive it without a
 * clock); `HealthMonitor` owns the timers and the requests: at most one probe in flight per
 * backend, timers cleared and requests aborted on removal and on close.
 */
import { request, type ClientRequest } from "node:http";
import type { Counter } from "prom-client";
import type { MetricsRegistry } from "../common/metrics.ts";
import type { QuicLbRouter } from "./router.ts";

export const HEALTH_CHECK_RESULTS = ["ok", "timeout", "refused", "http_error", "malformed"] as const;
export type HealthCheckResult = (typeof HEALTH_CHECK_RESULTS)[number];
export type BackendHealthState = "healthy" | "unhealthy";

export interface HealthCheckSettings {
  /** Time from one probe's start to the next one's. */
  intervalMs: number;
  /** Per-request limit (connect + headers + body); at most intervalMs, so probes never overlap. */
  timeoutMs: number;
  /** Consecutive failures that make a healthy backend unhealthy. */
  unhealthyAfter: number;
  /** Consecutive successes that make an unhealthy backend healthy again. */
  healthyAfter: number;
}

export const DEFAULT_HEALTH_CHECK: HealthCheckSettings = { intervalMs: 1000, timeoutMs: 500, unhealthyAfter: 3, healthyAfter: 2 };

export interface HealthTransition {
  from: BackendHealthState;
  to: BackendHealthState;
  atMs: number;
  /** The streak that caused it (failures for → unhealthy, successes for → healthy). */
  consecutive: number;
  result: HealthCheckResult;
  detail: string;
}

/**
 * The per-backend state machine: a backend starts healthy (an LB restarted mid-run routes at once,
 * as before the restart; the first probe runs immediately) and changes state only after a streak.
 */
export class BackendHealth {
  state: BackendHealthState = "healthy";
  consecutiveFailures = 0;
  consecutiveSuccesses = 0;
  lastResult: HealthCheckResult | undefined;
  lastDetail = "";
  lastCheckAtMs: number | undefined;
  /** When the current state began. */
  sinceMs: number;
  private readonly unhealthyAfter: number;
  private readonly healthyAfter: number;

  constructor(settings: Pick<HealthCheckSettings, "unhealthyAfter" | "healthyAfter">, nowMs: number) {
    this.unhealthyAfter = settings.unhealthyAfter;
    this.healthyAfter = settings.healthyAfter;
    this.sinceMs = nowMs;
  }

  /** Take one probe's result; returns the transition when the state changed. */
  record(result: HealthCheckResult, detail: string, nowMs: number): HealthTransition | undefined {
    this.lastResult = result;
    this.lastDetail = detail;
    this.lastCheckAtMs = nowMs;
    if (result === "ok") {
      this.consecutiveSuccesses++;
      this.consecutiveFailures = 0;
      if (this.state === "unhealthy" && this.consecutiveSuccesses >= this.healthyAfter) return this.change("healthy", this.consecutiveSuccesses, result, detail, nowMs);
    } else {
      this.consecutiveFailures++;
      this.consecutiveSuccesses = 0;
      if (this.state === "healthy" && this.consecutiveFailures >= this.unhealthyAfter) return this.change("unhealthy", this.consecutiveFailures, result, detail, nowMs);
    }
    return undefined;
  }

  private change(to: BackendHealthState, consecutive: number, result: HealthCheckResult, detail: string, nowMs: number): HealthTransition {
    const transition: HealthTransition = { from: this.state, to, atMs: nowMs, consecutive, result, detail };
    this.state = to;
    this.sinceMs = nowMs;
    return transition;
  }
}

export interface ProbeOutcome {
  result: HealthCheckResult;
  /** One line for logs and /status: the status code, or what went wrong. */
  detail: string;
}

/** Errors that mean no connection was made. */
const NOT_CONNECTED_CODES = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN"]);
/** A health answer is a status line and a few octets; a longer body is not what we asked for. */
const MAX_HEALTH_BODY_BYTES = 64 * 1024;

/**
 * One GET of `url`, bounded by `timeoutMs` (AbortSignal.timeout covers connect, headers and body).
 * Never throws for the peer's behaviour; `cancel` (shutdown, removal) rejects with its reason.
 *
 * node:http with no agent rather than fetch: an aborted fetch leaves its socket open in undici's
 * pool (until its 300 s headers timeout), so a peer that never answers would collect one socket per
 * probe; here every probe owns one connection and destroys it when it ends, whatever the outcome.
 */
export function probeHealthUrl(url: string, timeoutMs: number, cancel?: AbortSignal): Promise<ProbeOutcome> {
  return new Promise((resolve, reject) => {
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = cancel ? AbortSignal.any([timeout, cancel]) : timeout;
    let settled = false;
    const finish = (outcome: ProbeOutcome | { cancelled: unknown }): void => {
      if (settled) return;
      settled = true;
      req.destroy();
      if ("cancelled" in outcome) reject(outcome.cancelled);
      else resolve(outcome);
    };
    const failed = (err: unknown): void => {
      if (cancel?.aborted) return finish({ cancelled: cancel.reason });
      if (timeout.aborted) return finish({ result: "timeout", detail: `no answer within ${timeoutMs} ms` });
      const code = typeof (err as { code?: unknown })?.code === "string" ? (err as { code: string }).code : undefined;
      const message = err instanceof Error ? err.message : String(err);
      if (code && NOT_CONNECTED_CODES.has(code)) return finish({ result: "refused", detail: `${code}: ${message}` });
      finish({ result: "malformed", detail: `not an HTTP answer: ${code ? `${code}: ` : ""}${message}` });
    };
    let req: ClientRequest;
    try {
      req = request(url, { method: "GET", agent: false, signal, headers: { accept: "application/json", connection: "close" } }, (res) => {
        let bytes = 0;
        res.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > MAX_HEALTH_BODY_BYTES) finish({ result: "malformed", detail: `body over ${MAX_HEALTH_BODY_BYTES} bytes` });
        });
        res.on("error", failed);
        // The status is the answer; the body is read to its end (bounded) so the answer is complete.
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          finish(status >= 200 && status < 300 ? { result: "ok", detail: `HTTP ${status}` } : { result: "http_error", detail: `HTTP ${status}` });
        });
      });
    } catch (err) {
      // An URL node:http refuses (config validation should have caught it): a result, not a crash.
      settled = true;
      resolve({ result: "malformed", detail: `cannot request ${url}: ${err instanceof Error ? err.message : String(err)}` });
      return;
    }
    req.on("error", failed);
    req.end();
  });
}

export type HealthProbe = (url: string, timeoutMs: number, cancel: AbortSignal) => Promise<ProbeOutcome>;

export interface HealthMonitorOptions {
  router: QuicLbRouter;
  settings: HealthCheckSettings;
  metrics: MetricsRegistry;
  log: (entry: Record<string, unknown>) => void;
  /** Default probeHealthUrl; tests may pass their own. */
  probe?: HealthProbe;
  /** Wall clock in ms (state times in /status and logs). Default Date.now. */
  nowMs?: () => number;
}

interface Watch {
  url: string;
  health: BackendHealth;
  timer: NodeJS.Timeout | undefined;
  cancel: AbortController;
  inFlight: Promise<void> | undefined;
}

export interface BackendHealthView {
  url: string;
  state: BackendHealthState;
  since: string;
  consecutiveFailures: number;
  consecutiveSuccesses: number;
  lastResult: HealthCheckResult | undefined;
  lastDetail: string;
  lastCheckAt: string | undefined;
}

export class HealthMonitor implements AsyncDisposable {
  readonly settings: HealthCheckSettings;
  private readonly router: QuicLbRouter;
  private readonly log: (entry: Record<string, unknown>) => void;
  private readonly probe: HealthProbe;
  private readonly nowMs: () => number;
  private readonly checks: Counter<"result">;
  private readonly watches = new Map<string, Watch>();
  private readonly listeners: Array<(backendId: string, transition: HealthTransition) => void> = [];
  private closed = false;

  constructor(options: HealthMonitorOptions) {
    if (options.settings.timeoutMs > options.settings.intervalMs) throw new RangeError("health check timeoutMs must be at most intervalMs");
    this.settings = { ...options.settings };
    this.router = options.router;
    this.log = options.log;
    this.probe = options.probe ?? probeHealthUrl;
    this.nowMs = options.nowMs ?? Date.now;
    this.checks = options.metrics.counter("lb_health_checks_total", "Backend health check probes, by result (ok, timeout, refused, http_error, malformed).", ["result"]);
    // Every result is a series from the first scrape, even before a backend has a health URL.
    for (const result of HEALTH_CHECK_RESULTS) this.checks.inc({ result }, 0);
  }

  /** Called after every state change (the backends gauge listens). */
  onTransition(listener: (backendId: string, transition: HealthTransition) => void): void {
    this.listeners.push(listener);
  }

  /**
   * Check `backendId` at `url` from now on (replacing an earlier URL), or stop checking it when
   * `url` is undefined. The backend must be joined to the router.
   */
  watch(backendId: string, url: string | undefined): void {
    const existing = this.watches.get(backendId);
    if (existing && existing.url === url) return;
    if (existing) this.unwatch(backendId);
    if (url === undefined || this.closed) return;
    const watch: Watch = { url, health: new BackendHealth(this.settings, this.nowMs()), timer: undefined, cancel: new AbortController(), inFlight: undefined };
    this.watches.set(backendId, watch);
    this.schedule(backendId, watch, 0);
  }

  /** Stop checking (backend left, or its URL was removed): timer cleared, probe aborted, back in the hash. */
  unwatch(backendId: string): void {
    const watch = this.watches.get(backendId);
    if (!watch) return;
    this.watches.delete(backendId);
    clearTimeout(watch.timer);
    watch.cancel.abort(new Error(`health checks of ${backendId} stopped`));
    // Without checks there is nothing to hold it out of the hash.
    if (this.router.backend(backendId)?.healthy === false) this.router.setHealthy(backendId, true);
  }

  view(backendId: string): BackendHealthView | undefined {
    const w = this.watches.get(backendId);
    if (!w) return undefined;
    const h = w.health;
    return {
      url: w.url,
      state: h.state,
      since: new Date(h.sinceMs).toISOString(),
      consecutiveFailures: h.consecutiveFailures,
      consecutiveSuccesses: h.consecutiveSuccesses,
      lastResult: h.lastResult,
      lastDetail: h.lastDetail,
      lastCheckAt: h.lastCheckAtMs === undefined ? undefined : new Date(h.lastCheckAtMs).toISOString(),
    };
  }

  /** How many backends have a timer or a probe pending (for tests: bounded, nothing left after close). */
  get pendingCount(): number {
    let n = 0;
    for (const w of this.watches.values()) if (w.timer !== undefined || w.inFlight !== undefined) n++;
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    const inFlight = [...this.watches.values()].map((w) => w.inFlight).filter((p) => p !== undefined);
    for (const id of [...this.watches.keys()]) this.unwatch(id);
    await Promise.all(inFlight);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private schedule(backendId: string, watch: Watch, delayMs: number): void {
    watch.timer = setTimeout(() => {
      watch.timer = undefined;
      watch.inFlight = this.runProbe(backendId, watch).finally(() => (watch.inFlight = undefined));
    }, delayMs);
  }

  private async runProbe(backendId: string, watch: Watch): Promise<void> {
    const startedMs = performance.now();
    let outcome: ProbeOutcome;
    try {
      outcome = await this.probe(watch.url, this.settings.timeoutMs, watch.cancel.signal);
    } catch (err) {
      if (watch.cancel.signal.aborted) return; // removed or shutting down: not a result
      // A probe that throws is our bug, not the backend's: count it as malformed and say so.
      outcome = { result: "malformed", detail: `probe failed: ${err instanceof Error ? err.message : String(err)}` };
      this.log({ event: "healthProbeFailed", backend: backendId, url: watch.url, error: err instanceof Error ? err.stack : String(err) });
    }
    if (watch.cancel.signal.aborted || this.watches.get(backendId) !== watch) return;
    this.checks.inc({ result: outcome.result });
    const health = watch.health;
    const wasFailing = health.consecutiveFailures > 0;
    const transition = health.record(outcome.result, outcome.detail, this.nowMs());
    if (outcome.result !== "ok" && !wasFailing && !transition) {
      // First failure of a streak: one line now, so a dead backend is visible before it is marked unhealthy.
      this.log({ event: "healthCheckFailed", backend: backendId, url: watch.url, result: outcome.result, detail: outcome.detail, failuresUntilUnhealthy: this.settings.unhealthyAfter - 1 });
    }
    if (transition) this.apply(backendId, watch, transition);
    const elapsedMs = performance.now() - startedMs;
    this.schedule(backendId, watch, Math.max(0, this.settings.intervalMs - elapsedMs));
  }

  private apply(backendId: string, watch: Watch, t: HealthTransition): void {
    if (!this.router.backend(backendId)) return;
    this.router.setHealthy(backendId, t.to === "healthy");
    this.log({
      event: t.to === "healthy" ? "backendHealthy" : "backendUnhealthy",
      backend: backendId,
      url: watch.url,
      since: new Date(t.atMs).toISOString(),
      after: `${t.consecutive} consecutive ${t.to === "healthy" ? "successes" : "failures"}`,
      result: t.result,
      detail: t.detail,
      // Every active backend unhealthy: the hash uses them all rather than drop new connections.
      hashFailingOpen: this.router.hashFailingOpen,
    });
    for (const listener of this.listeners) listener(backendId, t);
  }
}
