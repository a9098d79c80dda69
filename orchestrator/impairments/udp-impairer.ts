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
 * Timing: delivery-scheduler.ts (one deadline heap, one timer); the lateness of every send
 * (actual − scheduled) is in `stats().timerLatenessMs`.
 */
import dgram from "node:dgram";
import { performance } from "node:perf_hooks";
import type { ImpairmentSpec } from "../topology/model.ts";
import { LinkImpairment, type ImpairmentCounters } from "./link-impairment.ts";
import { DeliveryScheduler, type LatenessStats, type UdpEndpoint } from "./delivery-scheduler.ts";

export type { UdpEndpoint } from "./delivery-scheduler.ts";

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
  timerLatenessMs: LatenessStats;
}

interface Flow {
  client: UdpEndpoint;
  upstream: dgram.Socket;
  lastActiveMs: number;
}


export class UdpImpairer implements AsyncDisposable {
  readonly #options: UdpImpairerOptions;
  readonly #listenSocket: dgram.Socket;
  readonly #flows = new Map<string, Flow>();
  #forward: LinkImpairment;
  #reverse: LinkImpairment;
  readonly #scheduler = new DeliveryScheduler();
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  private constructor(options: UdpImpairerOptions, listenSocket: dgram.Socket) {
    this.#options = options;
    this.#listenSocket = listenSocket;
    this.#forward = new LinkImpairment(options.forward ?? {});
    this.#reverse = new LinkImpairment(options.reverse ?? {}, (options.reverse?.seed ?? 1) ^ 0x5eed);
    listenSocket.on("message", (msg, rinfo) => this.#onClientDatagram(msg, { address: rinfo.address, port: rinfo.port }));
    listenSocket.on("error", () => this.#scheduler.countSendError());
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
    return {
      forward: structuredClone(this.#forward.counters),
      reverse: structuredClone(this.#reverse.counters),
      flows: this.#flows.size,
      sendErrors: this.#scheduler.sendErrors,
      timerLatenessMs: this.#scheduler.latenessMs(),
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
      upstream.on("error", () => this.#scheduler.countSendError());
      const created: Flow = { client, upstream, lastActiveMs: nowMs };
      upstream.on("message", (reply) => {
        created.lastActiveMs = performance.now();
        this.#scheduler.schedule(this.#reverse.admit(reply, created.lastActiveMs), this.#listenSocket, created.client);
      });
      this.#flows.set(key, created);
      flow = created;
    }
    flow.lastActiveMs = nowMs;
    this.#scheduler.schedule(this.#forward.admit(payload, nowMs), flow.upstream, this.#options.target);
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
    this.#scheduler.close();
    const sockets = [this.#listenSocket, ...[...this.#flows.values()].map((f) => f.upstream)];
    this.#flows.clear();
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
