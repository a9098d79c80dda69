/**
 * When each impaired datagram leaves: one deadline heap, one timer to the earliest deadline (not one
 * timer per packet). Used by both userspace relays (udp-impairer.ts for the local driver,
 * netns-relay.ts inside a Docker node's network namespace).
 *
 * setTimeout is only ms-accurate and fires late, so the timer is set to wake `SPIN_WINDOW_MS` early
 * and the last stretch is polled with setImmediate (which still lets I/O run). The lateness of every
 * send (actual − scheduled) is recorded: `latenessMs()`.
 */
import type dgram from "node:dgram";
import { performance } from "node:perf_hooks";
import { MinHeap } from "../../node-images/common/min-heap.ts";

export interface UdpEndpoint {
  address: string;
  port: number;
}

export interface LatenessStats {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

const SPIN_WINDOW_MS = 1.5;
const LATENESS_SAMPLES = 8192;

interface Pending {
  /** performance.now() clock, ms. */
  deadlineMs: number;
  /** Insertion order: equal deadlines leave in the order they arrived (no reordering unless asked). */
  sequence: number;
  socket: dgram.Socket;
  to: UdpEndpoint;
  payload: Buffer;
}

function earlier(a: Pending, b: Pending): boolean {
  return a.deadlineMs < b.deadlineMs || (a.deadlineMs === b.deadlineMs && a.sequence < b.sequence);
}

export class DeliveryScheduler {
  readonly #queue = new MinHeap<Pending>(earlier);
  #sequence = 0;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  readonly #lateness = new Float64Array(LATENESS_SAMPLES);
  #latenessCount = 0;
  #latenessMax = 0;
  #sendErrors = 0;
  #closed = false;

  /** Datagrams the OS refused to send (counted, never thrown). */
  get sendErrors(): number {
    return this.#sendErrors;
  }

  countSendError(): void {
    this.#sendErrors++;
  }

  /** Sends each delivery from `socket` to `to` at its time (performance.now() clock, ms). */
  schedule(deliveries: { atMs: number; payload: Buffer }[], socket: dgram.Socket, to: UdpEndpoint): void {
    if (deliveries.length === 0 || this.#closed) return;
    for (const d of deliveries) this.#queue.push({ deadlineMs: d.atMs, sequence: this.#sequence++, socket, to, payload: d.payload });
    // Due now (an unimpaired direction, a reordered packet): sent at once, not one event-loop turn later.
    if (this.#queue.peek()!.deadlineMs <= performance.now()) this.#flush();
    else this.#arm();
  }

  latenessMs(): LatenessStats {
    const n = Math.min(this.#latenessCount, LATENESS_SAMPLES);
    const sorted = Array.from(this.#lateness.subarray(0, n)).sort((a, b) => a - b);
    const q = (p: number): number => (n === 0 ? 0 : sorted[Math.min(n - 1, Math.floor(p * n))]!);
    return { count: this.#latenessCount, p50: q(0.5), p99: q(0.99), max: this.#latenessMax };
  }

  #arm(): void {
    if (this.#closed) return;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#immediate !== undefined) return; // already polling the last stretch
    const next = this.#queue.peek()?.deadlineMs;
    if (next === undefined) return;
    const remainingMs = next - performance.now();
    if (remainingMs > SPIN_WINDOW_MS) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#arm();
      }, remainingMs - SPIN_WINDOW_MS);
    } else {
      this.#immediate = setImmediate(() => {
        this.#immediate = undefined;
        this.#flush();
      });
    }
  }

  #flush(): void {
    const nowMs = performance.now();
    for (;;) {
      const next = this.#queue.peek()?.deadlineMs;
      if (next === undefined || next > nowMs) break;
      const item = this.#queue.pop()!;
      const latenessMs = nowMs - item.deadlineMs;
      this.#lateness[this.#latenessCount % LATENESS_SAMPLES] = latenessMs;
      this.#latenessCount++;
      this.#latenessMax = Math.max(this.#latenessMax, latenessMs);
      item.socket.send(item.payload, item.to.port, item.to.address, (error) => {
        if (error) this.#sendErrors++;
      });
    }
    this.#arm();
  }

  /** Drops what is still queued and stops the timer. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#queue.retain(() => false);
  }
}
