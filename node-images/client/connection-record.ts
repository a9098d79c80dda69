/**
 * What the load generator keeps per connection and writes as one JSON line: the migration timeline,
 * bytes per path kind, request latencies, the longest gap in delivery (disruption, measured at the
 * application as the spec's last section asks), and the outcome with its reason.
 *
 * Bytes per path: paths are snapshotted on every event of the connection (≤ 4 paths, cheap), and a
 * path the stack has dropped keeps its last snapshot.
 */
import type { Connection } from "../quic/connection.ts";
import type { ConnectionEvent } from "../quic/events.ts";
import { socketAddressEquals, type SocketAddress } from "../quic/path.ts";
import type { Instant } from "../quic/time.ts";
import type { WorkloadKind } from "./config.ts";

export type ConnectionOutcome = "migrated" | "fell_back" | "stayed" | "failed";

export interface ConnectionLine {
  id: number;
  workload: WorkloadKind;
  outcome: ConnectionOutcome;
  reason: string | undefined;
  /** Monotonic ms relative to the connection's start. */
  timeline: Record<string, number | { at: number; reason: string }>;
  bytes: { original: { sent: number; received: number }; preferred: { sent: number; received: number } };
  requests: { completed: number; failed: number; latencyMs: { p50: number; p99: number; max: number } | undefined };
  longestGapMs: number | undefined;
  /**
   * Smoothed RTT of the new path when the first application data arrived on it after the move (what the
   * migration latency is divided by); without a move, of the active path at the end. Not the RTT at the end
   * after a move: a loaded client's closing burst inflated that to seconds (bench/scale-10k.bench.ts).
   */
  rttMs: number | undefined;
  migrationLatencyMs: number | undefined;
}

interface PathSnapshot {
  preferred: boolean;
  sent: number;
  received: number;
}

export class ConnectionRecord {
  readonly id: number;
  readonly workload: WorkloadKind;
  readonly conn: Connection;
  private readonly target: SocketAddress;
  private readonly paths = new Map<number, PathSnapshot>();
  readonly latenciesMs: number[] = [];
  requestsFailed = 0;
  private lastDeliveryAt: Instant | undefined;
  /** The new path's smoothed RTT at the first delivery after the move (ConnectionLine.rttMs). */
  private rttAfterMoveMs: number | undefined;
  longestGapMs: number | undefined;
  migrated = false;
  fellBack: string | undefined;
  closedReason: string | undefined;
  failure: string | undefined;
  /** When the workload stops and the client closes (set at handshake). */
  holdUntil: Instant | undefined;
  finished = false;

  constructor(id: number, workload: WorkloadKind, conn: Connection, target: SocketAddress) {
    this.id = id;
    this.workload = workload;
    this.conn = conn;
    this.target = target;
  }

  onQuicEvent(ev: ConnectionEvent): void {
    this.snapshotPaths();
    switch (ev.type) {
      case "pathMigrated":
        if (ev.reason === "preferred_address") this.migrated = true;
        return;
      case "migrationFellBack":
        this.fellBack = ev.reason;
        return;
      case "connectionClosed":
        if (!this.finished && this.failure === undefined) this.failure = `${ev.initiator}: ${ev.reason || `error 0x${ev.errorCode.toString(16)}`}`;
        this.closedReason = ev.reason;
        return;
      default:
        return;
    }
  }

  /** Application data arrived (a response chunk or a completed response). */
  delivered(at: Instant): void {
    if (this.migrated && this.rttAfterMoveMs === undefined && this.conn.activePath.rtt.hasSample) this.rttAfterMoveMs = this.conn.activePath.rtt.smoothedRttMs;
    if (this.lastDeliveryAt !== undefined) {
      const gap = at - this.lastDeliveryAt;
      if (this.longestGapMs === undefined || gap > this.longestGapMs) this.longestGapMs = gap;
    }
    this.lastDeliveryAt = at;
  }

  /** Data is expected from `at` on (a request left while none was outstanding): the workload's own pauses are no gap. */
  expectDataFrom(at: Instant): void {
    this.lastDeliveryAt = at;
  }

  snapshotPaths(): void {
    for (const p of this.conn.paths) {
      const s = this.paths.get(p.id);
      if (s) {
        s.sent = p.bytesSent;
        s.received = p.bytesReceived;
      } else {
        this.paths.set(p.id, { preferred: !socketAddressEquals(p.address.remote, this.target), sent: p.bytesSent, received: p.bytesReceived });
      }
    }
  }

  get outcome(): { outcome: ConnectionOutcome; reason: string | undefined } {
    if (this.failure !== undefined) return { outcome: "failed", reason: this.failure };
    if (this.migrated) return { outcome: "migrated", reason: undefined };
    if (this.fellBack !== undefined) return { outcome: "fell_back", reason: this.fellBack };
    const pa = this.conn.peerParameters?.preferredAddress;
    if (!pa) return { outcome: "stayed", reason: "no preferred address offered" };
    // Closed (end of the hold) while the preferred path was still being validated: no move, no fallback yet.
    if (this.conn.timeline.probeSent !== undefined) return { outcome: "stayed", reason: "path validation still pending at close" };
    return { outcome: "stayed", reason: `policy ${this.conn.migration.policy}` };
  }

  toLine(): ConnectionLine {
    this.snapshotPaths();
    const bytes = { original: { sent: 0, received: 0 }, preferred: { sent: 0, received: 0 } };
    for (const s of this.paths.values()) {
      const b = s.preferred ? bytes.preferred : bytes.original;
      b.sent += s.sent;
      b.received += s.received;
    }
    const t0 = this.conn.timeline.started;
    const timeline: ConnectionLine["timeline"] = {};
    for (const [k, v] of Object.entries(this.conn.timeline)) {
      if (typeof v === "number") timeline[k] = round(v - t0);
      else if (v && typeof v === "object" && "at" in v) timeline[k] = { at: round((v as { at: number }).at - t0), reason: String((v as { reason: unknown }).reason) };
    }
    const sorted = [...this.latenciesMs].sort((a, b) => a - b);
    const tl = this.conn.timeline;
    const { outcome, reason } = this.outcome;
    return {
      id: this.id,
      workload: this.workload,
      outcome,
      reason,
      timeline,
      bytes,
      requests: {
        completed: sorted.length,
        failed: this.requestsFailed,
        latencyMs: sorted.length > 0 ? { p50: round(quantile(sorted, 0.5)), p99: round(quantile(sorted, 0.99)), max: round(sorted[sorted.length - 1]!) } : undefined,
      },
      longestGapMs: this.longestGapMs === undefined ? undefined : round(this.longestGapMs),
      rttMs: this.rttAfterMoveMs !== undefined ? round(this.rttAfterMoveMs) : this.conn.activePath.rtt.hasSample ? round(this.conn.activePath.rtt.smoothedRttMs) : undefined,
      migrationLatencyMs: tl.firstDataOnNewPath !== undefined && tl.handshakeConfirmed !== undefined ? round(tl.firstDataOnNewPath - tl.handshakeConfirmed) : undefined,
    };
  }
}

/** Nearest-rank quantile of a sorted array. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
