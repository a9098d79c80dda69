/**
 * A simulated network in virtual time (quinn-proto's test `Pair`, grown to many hosts): endpoints
 * attach at addresses, datagrams cross links with seeded delay, jitter, loss, duplication,
 * reordering, a rate limit and black holes, and `run()` jumps the clock to the next event.
 * A thousand lossy handshakes take about a second of real time and are the same on every run.
 */
import { MinHeap } from "../common/min-heap.ts";
import { SeededRandom } from "../common/seeded-random.ts";
import type { Endpoint } from "./endpoint.ts";
import { formatSocketAddress, type SocketAddress } from "./path.ts";
import type { Instant } from "./time.ts";

export interface LinkConditions {
  delayMs: number;
  jitterMs?: number;
  lossPercent?: number;
  duplicatePercent?: number;
  /** A reordered datagram is held back by an extra `reorderDelayMs` (default: one delay). */
  reorderPercent?: number;
  reorderDelayMs?: number;
  rateBitsPerSecond?: number;
  /** Every datagram vanishes (an unreachable address). */
  blackhole?: boolean;
  /** Datagrams larger than this are dropped (path MTU). */
  mtuBytes?: number;
}

interface InFlight {
  deliverAt: Instant;
  seq: number;
  datagram: Buffer;
  from: SocketAddress;
  to: SocketAddress;
}

export interface SimulationStats {
  sent: number;
  delivered: number;
  lost: number;
  duplicated: number;
  reordered: number;
  undeliverable: number;
  bytesDelivered: number;
}

/** Observer for every datagram put on the wire: tests that read "the capture" use it. */
export type WireTap = (d: { at: Instant; from: SocketAddress; to: SocketAddress; datagram: Buffer; dropped: boolean }) => void;

export class SimulatedNetwork {
  now: Instant = 0;
  readonly stats: SimulationStats = { sent: 0, delivered: 0, lost: 0, duplicated: 0, reordered: 0, undeliverable: 0, bytesDelivered: 0 };
  private readonly random: SeededRandom;
  private readonly defaults: LinkConditions;
  private readonly hosts = new Map<string, Endpoint>();
  /** Per-direction overrides keyed "fromIp>toIp" (ports ignored: a link joins hosts). */
  private readonly links = new Map<string, LinkConditions>();
  private readonly linkFreeAt = new Map<string, Instant>();
  private readonly queue = new MinHeap<InFlight>(before);
  private seq = 0;
  private readonly taps: WireTap[] = [];

  constructor(opts: { seed: number; defaults: LinkConditions }) {
    this.random = new SeededRandom(opts.seed);
    this.defaults = opts.defaults;
  }

  attach(address: SocketAddress, endpoint: Endpoint): void {
    this.hosts.set(formatSocketAddress(address), endpoint);
  }

  detach(address: SocketAddress): void {
    this.hosts.delete(formatSocketAddress(address));
  }

  /** Conditions from `fromIp` to `toIp` (one direction). */
  setLink(fromIp: string, toIp: string, conditions: LinkConditions): void {
    this.links.set(`${fromIp}>${toIp}`, conditions);
  }

  tap(observer: WireTap): void {
    this.taps.push(observer);
  }

  conditions(from: SocketAddress, to: SocketAddress): LinkConditions {
    return this.links.get(`${from.address}>${to.address}`) ?? this.defaults;
  }

  /** Put a datagram on the wire now. */
  send(from: SocketAddress, to: SocketAddress, datagram: Buffer): void {
    this.stats.sent++;
    const c = this.conditions(from, to);
    const dropped = c.blackhole === true || (c.mtuBytes !== undefined && datagram.length > c.mtuBytes) || this.random.chancePercent(c.lossPercent ?? 0);
    for (const t of this.taps) t({ at: this.now, from, to, datagram, dropped });
    if (dropped) {
      this.stats.lost++;
      return;
    }
    const copies = this.random.chancePercent(c.duplicatePercent ?? 0) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    let departAt = this.now;
    if (c.rateBitsPerSecond) {
      const key = `${from.address}>${to.address}`;
      const start = Math.max(this.now, this.linkFreeAt.get(key) ?? 0);
      departAt = start + (datagram.length * 8 * 1000) / c.rateBitsPerSecond;
      this.linkFreeAt.set(key, departAt);
    }
    for (let i = 0; i < copies; i++) {
      let delay = c.delayMs;
      if (c.jitterMs) delay = Math.max(0, delay + (this.random.next() * 2 - 1) * c.jitterMs);
      if (this.random.chancePercent(c.reorderPercent ?? 0)) {
        delay += c.reorderDelayMs ?? c.delayMs;
        this.stats.reordered++;
      }
      this.queue.push({ deliverAt: departAt + delay, seq: this.seq++, datagram, from, to });
    }
  }

  /**
   * Advance virtual time event by event until `until()` holds, `maxTimeMs` of virtual time has
   * passed, or nothing is left to happen. Bounded in steps so a bug cannot spin forever.
   */
  run(opts: { until?: () => boolean; maxTimeMs: number; maxSteps?: number }): { done: boolean; steps: number } {
    const end = this.now + opts.maxTimeMs;
    const maxSteps = opts.maxSteps ?? 50_000_000;
    let steps = 0;
    for (; steps < maxSteps; steps++) {
      this.flushAll();
      if (opts.until?.()) return { done: true, steps };
      // What until() made the application write goes out now, before the clock jumps to the next event.
      this.flushAll();
      const next = this.nextEventTime();
      if (next === undefined || next > end) {
        this.now = Math.max(this.now, Math.min(end, next ?? end));
        return { done: opts.until?.() ?? false, steps };
      }
      this.now = Math.max(this.now, next);
      this.deliverDue();
      for (const ep of this.hosts.values()) {
        const t = ep.nextTimeout();
        if (t !== undefined && t <= this.now) ep.handleTimeout(this.now);
      }
    }
    return { done: opts.until?.() ?? false, steps };
  }

  private nextEventTime(): Instant | undefined {
    let next = this.queue.peek()?.deliverAt;
    for (const ep of new Set(this.hosts.values())) {
      const t = ep.nextTimeout();
      if (t !== undefined && (next === undefined || t < next)) next = t;
    }
    return next;
  }

  private deliverDue(): void {
    for (let d = this.queue.peek(); d && d.deliverAt <= this.now; d = this.queue.peek()) {
      this.queue.pop();
      const ep = this.hosts.get(formatSocketAddress(d.to));
      if (!ep) {
        this.stats.undeliverable++;
        continue;
      }
      this.stats.delivered++;
      this.stats.bytesDelivered += d.datagram.length;
      ep.receive(d.datagram, { local: d.to, remote: d.from }, this.now);
    }
  }

  /** Send everything every endpoint has to send now. */
  flushAll(): void {
    for (const ep of new Set(this.hosts.values())) this.flush(ep);
  }

  flush(ep: Endpoint): void {
    for (let i = 0; i < 1_000_000; i++) {
      const t = ep.pollTransmit(this.now);
      if (!t) return;
      this.send(t.path.local, t.path.remote, t.datagram);
    }
  }
}

function before(a: InFlight, b: InFlight): boolean {
  return a.deliverAt < b.deliverAt || (a.deliverAt === b.deliverAt && a.seq < b.seq);
}
