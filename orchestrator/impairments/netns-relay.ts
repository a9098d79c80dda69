/**
 * The userspace impairer for one interface of a Docker node, running inside the node's network
 * namespace (in the impairer sidecar, impairer-agent.ts). netns-steering.ts installs the nftables
 * rules that steer the interface's UDP through it; this file is the relay those rules point at.
 * It uses node:dgram only (no IP_TRANSPARENT): every address rewrite is done by the kernel's NAT,
 * and the relay learns what it cannot see from the conntrack table. For a flow between the node
 * n = A:s and a peer p = P:pp (A the node's address on the interface, S its subnet):
 *
 * - p sends first (entry W): prerouting DNATs p→n to the relay R:r (r from a small port range; the
 *   kernel takes the lowest port that keeps the reply tuple unique). The relay reads the flow's
 *   entry to learn s, impairs (ingress), and sends from the shadow address shadow(P):pp to A:s;
 *   postrouting SNATs the shadow block back onto S (prefix NAT), so the node sees P:pp → A:s
 *   (entry R). The node's replies A:s → P:pp match R's reply tuple and come back to the
 *   shadow(P):pp socket; the relay impairs them (egress) and sends them from R:r to P:pp: that is
 *   W's reply direction, so the kernel rewrites the source to A:s on the wire.
 * - n sends first (entry N): output DNATs n→p to R:r; the relay reads the entry for P:pp, impairs
 *   (egress) and sends from shadow(A):s' to P:pp, where s' is a free port (the node's socket may
 *   hold s on every address) that `mapNodePort(s', s)` has put in the steering's node_ports map;
 *   postrouting SNATs it to A:s (entry E). p's replies match E's reply tuple and reach the
 *   shadow(A):s' socket; the relay impairs them (ingress) and sends them from R:r to A:s: N's reply
 *   direction, so the node sees them from P:pp.
 *
 * So both ends see each other's real addresses and ports, and every datagram of the interface's
 * UDP crosses the relay once, in its direction's LinkImpairment (one per direction for the whole
 * interface, like netem's one queue per device). Flows a peer outside S starts are not steered (no
 * shadow address for it); IPv6 and TCP are not steered.
 */
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type { ImpairmentSpec } from "../topology/model.ts";
import { LinkImpairment, type ImpairmentCounters } from "./link-impairment.ts";
import { DeliveryScheduler, type LatenessStats, type UdpEndpoint } from "./delivery-scheduler.ts";
import { findByReply, parseConntrackTable } from "./conntrack-table.ts";

export interface NetnsRelayOptions {
  /** The node's address on the impaired interface (A). */
  nodeAddress: string;
  /** Where the steering rules DNAT to (R); a local address (the shadow block's last one). */
  relayAddress: string;
  relayPortBase: number;
  relayPortCount: number;
  /** shadow(P) for P in the interface's subnet, undefined outside it. */
  shadowOf: (address: string) => string | undefined;
  /** To the node. */
  ingress?: ImpairmentSpec;
  /** From the node. */
  egress?: ImpairmentSpec;
  /** Makes the steering SNAT shadow(A):shadowPort to A:nodePort (netns-steering.ts mapNodePort). */
  mapNodePort: (shadowPort: number, nodePort: number) => Promise<void>;
  /** The conntrack table's text; default /proc/net/nf_conntrack of this namespace. */
  readConntrack?: () => string;
  /** Forget a flow after this long without traffic. Default 180 s (conntrack's UDP stream timeout is 120 s). */
  idleTimeoutMs?: number;
}

export type RelayDropReason = "unknownFlow" | "noConntrackEntry" | "noShadowAddress";

export interface NetnsRelayStats {
  ingress: ImpairmentCounters;
  egress: ImpairmentCounters;
  flows: number;
  dropped: Record<RelayDropReason, number>;
  sendErrors: number;
  timerLatenessMs: LatenessStats;
}

interface Flow {
  /** Who sent the flow's first datagram. */
  startedBy: "node" | "peer";
  nodePort: number;
  peer: UdpEndpoint;
  /** The relay port the kernel DNAT'ed this flow to (its conntrack entry's reply source). */
  relaySocket: dgram.Socket;
  /** Where the relay sends the other half from: shadow(A):s (node started) or shadow(P):pp (peer started). */
  shadowSocket: dgram.Socket;
  lastActiveMs: number;
}

function key(e: UdpEndpoint): string {
  return `${e.address}:${e.port}`;
}

async function bindSocket(address: string, port: number): Promise<dgram.Socket> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, address, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  return socket;
}

export class NetnsUdpRelay implements AsyncDisposable {
  readonly #options: NetnsRelayOptions;
  readonly #relaySockets: dgram.Socket[];
  /** `${relayPort}|${from}` → flow (datagrams arriving on a relay socket). */
  readonly #byRelay = new Map<string, Flow>();
  /** `${shadow socket}|${from}` → flow (datagrams arriving on a shadow socket). */
  readonly #byShadow = new Map<string, Flow>();
  /** Shadow sockets by their address:port, shared by the flows that use them. */
  readonly #shadowSockets = new Map<string, Promise<dgram.Socket>>();
  #ingress: LinkImpairment;
  #egress: LinkImpairment;
  readonly #scheduler = new DeliveryScheduler();
  readonly #dropped: Record<RelayDropReason, number> = { unknownFlow: 0, noConntrackEntry: 0, noShadowAddress: 0 };
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  private constructor(options: NetnsRelayOptions, relaySockets: dgram.Socket[]) {
    this.#options = options;
    this.#relaySockets = relaySockets;
    this.#ingress = new LinkImpairment(options.ingress ?? {});
    this.#egress = new LinkImpairment(options.egress ?? {}, (options.egress?.seed ?? 1) ^ 0x5eed);
    for (const socket of relaySockets) {
      socket.on("message", (msg, rinfo) => this.#onRelayDatagram(socket, msg, { address: rinfo.address, port: rinfo.port }));
      socket.on("error", () => this.#scheduler.countSendError());
    }
    const idleMs = options.idleTimeoutMs ?? 180_000;
    this.#sweeper = setInterval(() => this.#sweepIdle(idleMs), Math.max(50, idleMs / 2));
    this.#sweeper.unref();
  }

  /** Binds the relay ports (before the steering rules point at them). */
  static async start(options: NetnsRelayOptions): Promise<NetnsUdpRelay> {
    const sockets: dgram.Socket[] = [];
    try {
      for (let i = 0; i < options.relayPortCount; i++) sockets.push(await bindSocket(options.relayAddress, options.relayPortBase + i));
    } catch (error) {
      await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      throw error;
    }
    return new NetnsUdpRelay(options, sockets);
  }

  /** Live reconfiguration; a direction left out keeps its spec. Counters and PRNG streams continue. */
  update(specs: { ingress?: ImpairmentSpec; egress?: ImpairmentSpec }): void {
    if (specs.ingress !== undefined) this.#ingress.update(specs.ingress);
    if (specs.egress !== undefined) this.#egress.update(specs.egress);
  }

  get specs(): { ingress: ImpairmentSpec; egress: ImpairmentSpec } {
    return { ingress: this.#ingress.spec, egress: this.#egress.spec };
  }

  stats(): NetnsRelayStats {
    return {
      ingress: structuredClone(this.#ingress.counters),
      egress: structuredClone(this.#egress.counters),
      flows: this.#byRelay.size,
      dropped: { ...this.#dropped },
      sendErrors: this.#scheduler.sendErrors,
      timerLatenessMs: this.#scheduler.latenessMs(),
    };
  }

  #onRelayDatagram(relaySocket: dgram.Socket, payload: Buffer, from: UdpEndpoint): void {
    if (this.#closed) return;
    const nowMs = performance.now();
    const relayPort = relaySocket.address().port;
    const flowKey = `${relayPort}|${key(from)}`;
    const flow = this.#byRelay.get(flowKey);
    if (flow !== undefined) {
      flow.lastActiveMs = nowMs;
      this.#forwardFromRelay(flow, payload, nowMs);
      return;
    }
    // A new flow: the conntrack entry that DNAT'ed it here says where it was going.
    const entry = findByReply(parseConntrackTable(this.#readConntrack()), { address: this.#options.relayAddress, port: relayPort }, from);
    if (entry === undefined) {
      this.#dropped.noConntrackEntry++;
      return;
    }
    const startedBy = from.address === this.#options.nodeAddress ? "node" : "peer";
    const nodePort = startedBy === "node" ? from.port : entry.original.dst.port;
    const peer = startedBy === "node" ? entry.original.dst : from;
    const shadowAddress = this.#options.shadowOf(startedBy === "node" ? this.#options.nodeAddress : peer.address);
    if (shadowAddress === undefined) {
      this.#dropped.noShadowAddress++;
      return;
    }
    // The first datagram of a flow waits for its shadow socket (a bind, and for a node socket's
    // first flow an `nft add element`, a few ms); its delivery time is still computed from its
    // arrival, so unless that takes longer than the delay asked for, the delay it sees is exact.
    const opening = startedBy === "node" ? this.#shadowSocket(shadowAddress, 0, nodePort) : this.#shadowSocket(shadowAddress, peer.port, undefined);
    void opening.then(
      (shadowSocket) => {
        if (this.#closed) return;
        let created = this.#byRelay.get(flowKey);
        if (created === undefined) {
          created = { startedBy, nodePort, peer, relaySocket, shadowSocket, lastActiveMs: nowMs };
          this.#byRelay.set(flowKey, created);
          const far = startedBy === "node" ? peer : { address: this.#options.nodeAddress, port: nodePort };
          this.#byShadow.set(`${shadowAddress}:${shadowSocket.address().port}|${key(far)}`, created);
        }
        this.#forwardFromRelay(created, payload, nowMs);
      },
      () => this.#scheduler.countSendError(),
    );
  }

  /** A datagram the kernel steered to a relay port: the node's (egress) or a peer's (ingress). */
  #forwardFromRelay(flow: Flow, payload: Buffer, nowMs: number): void {
    if (flow.startedBy === "node") this.#scheduler.schedule(this.#egress.admit(payload, nowMs), flow.shadowSocket, flow.peer);
    else this.#scheduler.schedule(this.#ingress.admit(payload, nowMs), flow.shadowSocket, { address: this.#options.nodeAddress, port: flow.nodePort });
  }

  /** A datagram arriving at a shadow socket: the other half of a flow, sent back through its relay port. */
  #onShadowDatagram(shadowKey: string, payload: Buffer, from: UdpEndpoint): void {
    if (this.#closed) return;
    const flow = this.#byShadow.get(`${shadowKey}|${key(from)}`);
    if (flow === undefined) {
      this.#dropped.unknownFlow++;
      return;
    }
    const nowMs = performance.now();
    flow.lastActiveMs = nowMs;
    // Node started: a peer's reply, to the node (ingress), leaving through N's reply direction.
    // Peer started: the node's reply, to the peer (egress), leaving through W's reply direction.
    if (flow.startedBy === "node") this.#scheduler.schedule(this.#ingress.admit(payload, nowMs), flow.relaySocket, { address: this.#options.nodeAddress, port: flow.nodePort });
    else this.#scheduler.schedule(this.#egress.admit(payload, nowMs), flow.relaySocket, flow.peer);
  }

  /**
   * The shadow socket for a peer endpoint (shadow(P):pp, `port` = pp) or for a node port
   * (shadow(A):s', `port` 0 and `nodePort` = s: any free port, mapped to s by the steering).
   */
  #shadowSocket(address: string, port: number, nodePort: number | undefined): Promise<dgram.Socket> {
    const socketKey = nodePort === undefined ? `${address}:${port}` : `${address}:node:${nodePort}`;
    let socket = this.#shadowSockets.get(socketKey);
    if (socket === undefined) {
      socket = bindSocket(address, port).then(async (s) => {
        const shadowKey = `${address}:${s.address().port}`;
        s.on("message", (msg, rinfo) => this.#onShadowDatagram(shadowKey, msg, { address: rinfo.address, port: rinfo.port }));
        s.on("error", () => this.#scheduler.countSendError());
        if (nodePort !== undefined) {
          try {
            await this.#options.mapNodePort(s.address().port, nodePort);
          } catch (error) {
            s.close();
            throw error;
          }
        }
        return s;
      });
      socket.catch(() => this.#shadowSockets.delete(socketKey));
      this.#shadowSockets.set(socketKey, socket);
    }
    return socket;
  }

  #readConntrack(): string {
    return this.#options.readConntrack?.() ?? readFileSync("/proc/net/nf_conntrack", "utf8");
  }

  #sweepIdle(idleMs: number): void {
    const nowMs = performance.now();
    for (const [k, flow] of this.#byRelay) if (nowMs - flow.lastActiveMs > idleMs) this.#byRelay.delete(k);
    for (const [k, flow] of this.#byShadow) if (nowMs - flow.lastActiveMs > idleMs) this.#byShadow.delete(k);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#scheduler.close();
    const shadows = await Promise.allSettled([...this.#shadowSockets.values()]);
    const sockets = [...this.#relaySockets, ...shadows.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []))];
    this.#byRelay.clear();
    this.#byShadow.clear();
    this.#shadowSockets.clear();
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
