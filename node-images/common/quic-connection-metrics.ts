/**
 * The QUIC connection metrics both the server and the client role export (node-images/README.md,
 * "Metrics"): they consume the endpoint's events and datagram observations, never a connection ID or
 * an address as a label, so cardinality stays bounded at 10,000 connections.
 *
 * Path kind: `preferred` is traffic on the server's preferred (direct) address, `original` everything
 * else (the handshake path through the LB's VIP). "LB savings" is then one query:
 *   sum(rate(qmt_path_bytes_total{path="preferred"}[1m])) / sum(rate(qmt_path_bytes_total[1m]))
 */
import type { Counter, Histogram } from "prom-client";
import type { Connection } from "../quic/connection.ts";
import type { EndpointEvent, Endpoint } from "../quic/endpoint.ts";
import type { PathAddress } from "../quic/path.ts";
import type { MetricsRegistry } from "./metrics.ts";

export type PathKind = "original" | "preferred";

type Collectable<M> = { collect: (this: M) => void };

/** Fallback / validation-failure reasons the stack emits (migration.ts); anything else is `other`. */
const KNOWN_REASONS = new Set([
  "preferred_address",
  "local_migration",
  "peer_migration",
  "fallback",
  "preferred_address_validation_timeout",
  "local_migration_validation_timeout",
  "peer_address_validation_timeout",
  "timeout",
]);

/** The reasons migration.ts gives up a move with (its fallBack calls). */
const FALLBACK_REASONS = ["preferred_address_validation_timeout", "local_migration_validation_timeout", "peer_address_validation_timeout"] as const;

export function reasonLabel(reason: string | undefined): string {
  return reason !== undefined && KNOWN_REASONS.has(reason) ? reason : "other";
}

/** Default migration-latency buckets (seconds) around loopback..WAN RTTs; roles pass their topology's. */
export const DEFAULT_MIGRATION_LATENCY_BUCKETS_SECONDS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5];
const HANDSHAKE_BUCKETS_SECONDS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];

/** Buckets around a list of RTTs: ×0.5, ×1, ×1.1, ×1.5, ×2, ×3, ×10 of each, sorted and deduplicated. */
export function bucketsAroundRtts(rttsMs: readonly number[]): number[] {
  const out = new Set<number>();
  for (const rtt of rttsMs) for (const f of [0.5, 1, 1.1, 1.5, 2, 3, 10]) out.add(Number(((rtt * f) / 1000).toPrecision(3)));
  return [...out].filter((b) => b > 0).sort((a, b) => a - b);
}

export interface QuicConnectionMetricsOptions {
  role: "server" | "client";
  /** Which path kind a datagram's path is. */
  pathKind: (path: PathAddress) => PathKind;
  migrationLatencyBucketsSeconds?: readonly number[];
}

export class QuicConnectionMetrics {
  private readonly options: QuicConnectionMetricsOptions;
  private readonly opened: Counter;
  private readonly closed: Counter<"initiator" | "error">;
  private readonly handshakes: Counter<"result">;
  private readonly handshakeDuration: Histogram;
  private readonly migrations: Counter<"result" | "reason">;
  private readonly migrationLatency: Histogram;
  private readonly validations: Counter<"result">;
  private readonly fallbacks: Counter<"reason">;
  private readonly pathBytes: Record<"in" | "out", Record<PathKind, Counter.Internal>>;
  private readonly pathPackets: Record<"in" | "out", Record<PathKind, Counter.Internal>>;
  /** Connection drops of connections already gone; live ones are summed at scrape time. */
  private readonly closedConnectionDrops: Record<string, number> = {};
  /** Connections not yet removed (their drop counters are read at scrape time). */
  private readonly live = new Set<Connection>();
  /** Connections not yet closed: qmt_connections_active. */
  private readonly open = new Set<Connection>();
  private endpoint: Endpoint | undefined;
  private readonly dropSources: Array<{ layer: string; drops: Readonly<Partial<Record<string, number>>> }> = [];

  constructor(metrics: MetricsRegistry, options: QuicConnectionMetricsOptions) {
    this.options = options;
    const open = this.open;
    const active = metrics.gauge("connections_active", "QUIC connections open now");
    // prom-client calls a metric's `collect` (the constructor option, kept as a property) before each scrape.
    (active as unknown as Collectable<typeof active>).collect = function () {
      this.set(open.size);
    };
    this.opened = metrics.counter("connections_opened_total", "QUIC connections started (client) or accepted (server)");
    this.closed = metrics.counter("connections_closed_total", "QUIC connections closed", ["initiator", "error"]);
    this.handshakes = metrics.counter("handshakes_total", "handshakes by result (completed, failed)", ["result"]);
    this.handshakeDuration = metrics.histogram("handshake_duration_seconds", "from the first Initial to handshake completion", HANDSHAKE_BUCKETS_SECONDS);
    this.migrations = metrics.counter("migrations_total", "active path changes (result migrated) and moves given up (result fell_back), by reason", ["result", "reason"]);
    this.migrationLatency = metrics.histogram(
      "migration_latency_seconds",
      "client: first_data_on_new_path - handshake_confirmed; server: server_switched - handshake_confirmed (spec timeline)",
      options.migrationLatencyBucketsSeconds ?? DEFAULT_MIGRATION_LATENCY_BUCKETS_SECONDS,
    );
    this.validations = metrics.counter("path_validations_total", "path validations by result (succeeded, failed)", ["result"]);
    this.fallbacks = metrics.counter("migration_fallbacks_total", "moves given up, the connection staying on its path (PA-10)", ["reason"]);
    // Known label values at 0 from the first scrape (Prometheus practice), so a rate over fallbacks
    // is 0 rather than absent when none happened: the reasons migration.ts falls back with.
    for (const reason of FALLBACK_REASONS) {
      this.fallbacks.inc({ reason }, 0);
      this.migrations.inc({ result: "fell_back", reason }, 0);
    }
    const bytes = metrics.counter("path_bytes_total", "UDP payload bytes by direction (sent, received) and path kind (original, preferred)", ["direction", "path"]);
    const packets = metrics.counter("path_packets_total", "UDP datagrams by direction and path kind", ["direction", "path"]);
    const child = (c: Counter<"direction" | "path">, d: "sent" | "received", p: PathKind) => c.labels({ direction: d, path: p });
    this.pathBytes = {
      in: { original: child(bytes, "received", "original"), preferred: child(bytes, "received", "preferred") },
      out: { original: child(bytes, "sent", "original"), preferred: child(bytes, "sent", "preferred") },
    };
    this.pathPackets = {
      in: { original: child(packets, "received", "original"), preferred: child(packets, "received", "preferred") },
      out: { original: child(packets, "sent", "original"), preferred: child(packets, "sent", "preferred") },
    };
    // Zero series exist from the start, so a query over path kinds never misses one.
    for (const d of ["in", "out"] as const) for (const p of ["original", "preferred"] as const) {
      this.pathBytes[d][p].inc(0);
      this.pathPackets[d][p].inc(0);
    }
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- prom-client calls collect with the metric as `this`
    const self = this;
    const drops = metrics.counter("drops_total", "datagrams and packets dropped, by layer (endpoint, connection) and reason", ["layer", "reason"]);
    (drops as unknown as Collectable<typeof drops>).collect = function () {
      this.reset();
      for (const [reason, n] of Object.entries(self.endpoint?.drops ?? {})) this.inc({ layer: "endpoint", reason }, n ?? 0);
      const sums: Record<string, number> = { ...self.closedConnectionDrops };
      for (const c of self.live) for (const [r, n] of Object.entries(c.stats.drops)) sums[r] = (sums[r] ?? 0) + (n ?? 0);
      for (const [reason, n] of Object.entries(sums)) this.inc({ layer: "connection", reason }, n);
      for (const { layer, drops } of self.dropSources) for (const [reason, n] of Object.entries(drops)) this.inc({ layer, reason }, n ?? 0);
    };
  }

  /** The endpoint whose drop counters are exported. */
  attach(endpoint: Endpoint): void {
    this.endpoint = endpoint;
  }

  /** Another layer's drop counters (a record of reason → count, read at scrape time), e.g. the LB tunnel's. */
  addDropSource(layer: string, drops: Readonly<Partial<Record<string, number>>>): void {
    this.dropSources.push({ layer, drops });
  }

  onDatagram(direction: "in" | "out", path: PathAddress, bytes: number): void {
    const kind = this.options.pathKind(path);
    this.pathBytes[direction][kind].inc(bytes);
    this.pathPackets[direction][kind].inc();
  }

  /** A client connection was started (the server counts connectionAccepted events). */
  onConnectionStarted(conn: Connection): void {
    this.opened.inc();
    this.live.add(conn);
    this.open.add(conn);
  }

  onEndpointEvent(e: EndpointEvent): void {
    if (e.type === "connectionAccepted") {
      this.onConnectionStarted(e.connection);
      return;
    }
    const conn = e.connection;
    if (e.type === "connectionRemoved") {
      this.open.delete(conn);
      if (!this.live.delete(conn)) return;
      for (const [r, n] of Object.entries(conn.stats.drops)) this.closedConnectionDrops[r] = (this.closedConnectionDrops[r] ?? 0) + (n ?? 0);
      return;
    }
    const ev = e.event;
    switch (ev.type) {
      case "handshakeCompleted":
        this.handshakes.inc({ result: "completed" });
        this.handshakeDuration.observe(Math.max(0, ev.at - conn.timeline.started) / 1000);
        return;
      case "pathValidated":
        this.validations.inc({ result: "succeeded" });
        return;
      case "pathValidationFailed":
        this.validations.inc({ result: "failed" });
        return;
      case "pathMigrated":
        this.migrations.inc({ result: "migrated", reason: reasonLabel(ev.reason) });
        if (this.options.role === "server" && ev.reason === "preferred_address" && conn.timeline.handshakeConfirmed !== undefined) {
          this.migrationLatency.observe(Math.max(0, ev.at - conn.timeline.handshakeConfirmed) / 1000);
        }
        return;
      case "newPathFirstDataSent":
        if (this.options.role === "client" && conn.timeline.handshakeConfirmed !== undefined && conn.timeline.firstDataOnNewPath === ev.at) {
          this.migrationLatency.observe(Math.max(0, ev.at - conn.timeline.handshakeConfirmed) / 1000);
        }
        return;
      case "migrationFellBack":
        this.migrations.inc({ result: "fell_back", reason: reasonLabel(ev.reason) });
        this.fallbacks.inc({ reason: reasonLabel(ev.reason) });
        return;
      case "connectionClosed": {
        this.open.delete(conn);
        if (conn.timeline.handshakeCompleted === undefined) this.handshakes.inc({ result: "failed" });
        const error = ev.errorCode === 0 ? "none" : ev.isApplication ? "application" : "transport";
        this.closed.inc({ initiator: ev.initiator, error });
        return;
      }
      default:
        return;
    }
  }
}
