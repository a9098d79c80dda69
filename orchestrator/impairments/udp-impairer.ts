/**
 * An in-path UDP relay that impairs one link in both directions with the same knobs as netem
 * (link-impairment.ts): for kernels without sch_netem, and for the local driver, where nodes are
 * processes on 127.0.0.0/8.
 *
 * Steering: the relay listens on `listen` (the address peers are given) and forwards to `target`
 * (where the real node listens). Each client source address:port gets its own upstream socket, so
 * the target sees one distinct peer per client and its replies come back through that socket; they
 * are impaired with the `reverse` spec and sent to the client from `listen`, so the client sees
 * replies from the address it sent to. A flow idle for `idleTimeoutMs` is forgotten.
 *
 * Timing: every pending datagram sits in one deadline heap; one timer runs to the earliest
 * deadline. setTimeout is only ms-accurate and fires late, so the timer is set to wake
 * `SPIN_WINDOW_MS` early and the last stretch is polled with setImmediate (which still lets I/O
 * run). The lateness of every send (actual − scheduled) is recorded: `stats().timerLatenessMs`.
 */
import dgram from "node:dgram";
import { performance } from "node:perf_hooks";
import type { ImpairmentSpec } from "../topology/model.ts";
import { MinHeap } from "../../node-images/common/min-heap.ts";
import { LinkImpairment, type ImpairmentCounters } from "./link-impairment.ts";

export interface UdpEndpoint {
  address: string;
  port: number;
}

export interface UdpImpairerOptions {
  /** Where peers send; port 0 picks a free port. */
  listen: UdpEndpoint;
  /** The real receiver. */
  target: UdpEndpoint;
  /** Impairment of client → target datagrams. */
  forward?: ImpairmentSpec;
  /** Impairment of target → client datagrams. */
  reverse?: ImpairmentSpec;
  /** Address the per-flow upstream sockets bind to; defaults to `listen.address`. */
  upstreamAddress?: string;
  /** Forget a flow after this long without traffic either way. Default 30 s. */
  idleTimeoutMs?: number;
}

export interface UdpImpairerStats {
  forward: ImpairmentCounters;
  reverse: ImpairmentCounters;
  flows: number;
  /** Datagrams that could not be sent by the OS (counted, never thrown). */
  sendErrors: number;
  timerLatenessMs: { count: number; p50: number; p99: number; max: number };
}

const SPIN_WINDOW_MS = 1.5;
const LATENESS_SAMPLES = 8192;

interface Flow {
  client: UdpEndpoint;
  upstream: dgram.Socket;
  lastActiveMs: number;
}

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

export class UdpImpairer implements AsyncDisposable {
  readonly #options: UdpImpairerOptions;
  readonly #listenSocket: dgram.Socket;
  readonly #flows = new Map<string, Flow>();
  #forward: LinkImpairment;
  #reverse: LinkImpairment;
  /** One heap, one timer to the earliest deadline (not one timer per packet). */
  readonly #queue = new MinHeap<Pending>(earlier);
  #sequence = 0;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  readonly #sweeper: NodeJS.Timeout;
  readonly #lateness = new Float64Array(LATENESS_SAMPLES);
  #latenessCount = 0;
  #latenessMax = 0;
  #sendErrors = 0;
  #closed = false;

  private constructor(options: UdpImpairerOptions, listenSocket: dgram.Socket) {
    this.#options = options;
    this.#listenSocket = listenSocket;
    this.#forward = new LinkImpairment(options.forward ?? {});
    this.#reverse = new LinkImpairment(options.reverse ?? {}, (options.reverse?.seed ?? 1) ^ 0x5eed);
    listenSocket.on("message", (msg, rinfo) => this.#onClientDatagram(msg, { address: rinfo.address, port: rinfo.port }));
    listenSocket.on("error", () => this.#sendErrors++);
    const idleMs = options.idleTimeoutMs ?? 30_000;
    this.#sweeper = setInterval(() => this.#sweepIdle(idleMs), Math.max(50, idleMs / 2));
    this.#sweeper.unref();
  }

  static async start(options: UdpImpairerOptions): Promise<UdpImpairer> {
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(options.listen.port, options.listen.address, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    return new UdpImpairer(options, socket);
  }

  get address(): UdpEndpoint {
    const a = this.#listenSocket.address();
    return { address: a.address, port: a.port };
  }

  get target(): UdpEndpoint {
    return { ...this.#options.target };
  }

  /** Live reconfiguration; a direction left out keeps its spec. Counters and PRNG streams continue. */
  update(specs: { forward?: ImpairmentSpec; reverse?: ImpairmentSpec }): void {
    if (specs.forward !== undefined) this.#forward.update(specs.forward);
    if (specs.reverse !== undefined) this.#reverse.update(specs.reverse);
  }

  get specs(): { forward: ImpairmentSpec; reverse: ImpairmentSpec } {
    return { forward: this.#forward.spec, reverse: this.#reverse.spec };
  }

  stats(): UdpImpairerStats {
    const n = Math.min(this.#latenessCount, LATENESS_SAMPLES);
    const sorted = Array.from(this.#lateness.subarray(0, n)).sort((a, b) => a - b);
    const q = (p: number): number => (n === 0 ? 0 : sorted[Math.min(n - 1, Math.floor(p * n))]!);
    return {
      forward: structuredClone(this.#forward.counters),
      reverse: structuredClone(this.#reverse.counters),
      flows: this.#flows.size,
      sendErrors: this.#sendErrors,
      timerLatenessMs: { count: this.#latenessCount, p50: q(0.5), p99: q(0.99), max: this.#latenessMax },
    };
  }

  #onClientDatagram(payload: Buffer, client: UdpEndpoint): void {
    if (this.#closed) return;
    const key = `${client.address}:${client.port}`;
    let flow = this.#flows.get(key);
    const nowMs = performance.now();
    if (flow === undefined) {
      const upstream = dgram.createSocket("udp4");
      upstream.bind(0, this.#options.upstreamAddress ?? this.#options.listen.address);
      upstream.on("error", () => this.#sendErrors++);
      const created: Flow = { client, upstream, lastActiveMs: nowMs };
      upstream.on("message", (reply) => {
        created.lastActiveMs = performance.now();
        this.#enqueue(this.#reverse.admit(reply, created.lastActiveMs), this.#listenSocket, created.client);
      });
      this.#flows.set(key, created);
      flow = created;
    }
    flow.lastActiveMs = nowMs;
    this.#enqueue(this.#forward.admit(payload, nowMs), flow.upstream, this.#options.target);
  }

  #enqueue(deliveries: { atMs: number; payload: Buffer }[], socket: dgram.Socket, to: UdpEndpoint): void {
    if (deliveries.length === 0) return;
    for (const d of deliveries) this.#queue.push({ deadlineMs: d.atMs, sequence: this.#sequence++, socket, to, payload: d.payload });
    this.#arm();
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
      const deadlineMs = item.deadlineMs;
      const latenessMs = nowMs - deadlineMs;
      this.#lateness[this.#latenessCount % LATENESS_SAMPLES] = latenessMs;
      this.#latenessCount++;
      this.#latenessMax = Math.max(this.#latenessMax, latenessMs);
      item.socket.send(item.payload, item.to.port, item.to.address, (error) => {
        if (error) this.#sendErrors++;
      });
    }
    this.#arm();
  }

  #sweepIdle(idleMs: number): void {
    const nowMs = performance.now();
    for (const [key, flow] of this.#flows) {
      if (nowMs - flow.lastActiveMs > idleMs) {
        this.#flows.delete(key);
        flow.upstream.close();
      }
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#queue.retain(() => false);
    const sockets = [this.#listenSocket, ...[...this.#flows.values()].map((f) => f.upstream)];
    this.#flows.clear();
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
