/**
 * The LB's sockets: VIP sockets face clients, one tunnel socket faces the backends on the private
 * network. Client datagram → QuicLbRouter decision → encapsulated to the backend. Backend reply
 * (encapsulated) → checked (a joined backend, a VIP we own) → sent from that VIP to the client.
 * Every datagram is counted by route or by drop reason; nothing here throws on input.
 */
import { createSocket, type Socket } from "node:dgram";
import type { MetricsRegistry } from "../common/metrics.ts";
import { formatSocketAddress, type SocketAddress } from "../quic/path.ts";
import { decapsulate, encapsulate } from "./encapsulation.ts";
import { LB_DROP_REASONS, type QuicLbRouter, type RouteKind } from "./router.ts";

export const DATA_PLANE_DROP_REASONS = [
  ...LB_DROP_REASONS,
  "reply_malformed",
  "reply_from_unknown_backend",
  "reply_vip_unknown",
  "send_failed",
] as const;
export type DataPlaneDropReason = (typeof DATA_PLANE_DROP_REASONS)[number];

export interface DataPlaneOptions {
  vips: SocketAddress[];
  tunnel: SocketAddress;
  router: QuicLbRouter;
  metrics: MetricsRegistry;
  socketBufferBytes?: number;
}

export interface DataPlaneCounters {
  packets: Record<RouteKind, number>;
  bytes: Record<RouteKind, number>;
  replyPackets: number;
  replyBytes: number;
  drops: Partial<Record<DataPlaneDropReason, number>>;
}

export class LbDataPlane implements AsyncDisposable {
  readonly vipSockets: Array<{ address: SocketAddress; socket: Socket }> = [];
  tunnelSocket: { address: SocketAddress; socket: Socket } | undefined;
  readonly counters: DataPlaneCounters = {
    packets: { cid: 0, hash: 0, unroutable: 0 },
    bytes: { cid: 0, hash: 0, unroutable: 0 },
    replyPackets: 0,
    replyBytes: 0,
    drops: {},
  };
  private readonly router: QuicLbRouter;
  private readonly metric: ReturnType<typeof lbDataPlaneMetrics>;
  private closed = false;

  private constructor(options: DataPlaneOptions) {
    this.router = options.router;
    this.metric = lbDataPlaneMetrics(options.metrics);
    // Pre-create every label value so each series is present (at 0) from the first scrape.
    for (const route of ["cid", "hash", "unroutable"] as const) {
      this.metric.packets.inc({ route }, 0);
      this.metric.bytes.inc({ route }, 0);
    }
    for (const reason of DATA_PLANE_DROP_REASONS) this.metric.drops.inc({ reason }, 0);
  }

  static async bind(options: DataPlaneOptions): Promise<LbDataPlane> {
    const plane = new LbDataPlane(options);
    try {
      for (const vip of options.vips) {
        const bound = await bindSocket(vip, options.socketBufferBytes, () => plane.drop("send_failed"));
        bound.socket.on("message", (msg, rinfo) => plane.onClientDatagram(msg, bound.address, { address: rinfo.address, port: rinfo.port }));
        plane.vipSockets.push(bound);
      }
      const tunnel = await bindSocket(options.tunnel, options.socketBufferBytes, () => plane.drop("send_failed"));
      tunnel.socket.on("message", (msg, rinfo) => plane.onBackendDatagram(msg, { address: rinfo.address, port: rinfo.port }));
      plane.tunnelSocket = tunnel;
    } catch (err) {
      await plane.close();
      throw err;
    }
    return plane;
  }

  private onClientDatagram(msg: Buffer, vip: SocketAddress, client: SocketAddress): void {
    if (this.closed) return;
    const decision = this.router.route(msg, client);
    if (decision.action === "drop") return this.drop(decision.reason);
    const { backend, route } = decision;
    this.counters.packets[route]++;
    this.counters.bytes[route] += msg.length;
    this.metric.packets.inc({ route });
    this.metric.bytes.inc({ route }, msg.length);
    this.metric.backendPackets.inc({ backend: backend.id });
    this.send(this.tunnelSocket!.socket, encapsulate({ client, vip }, msg), backend.address);
  }

  private onBackendDatagram(msg: Buffer, from: SocketAddress): void {
    if (this.closed) return;
    // Only joined backends (any state) may make the LB send from its VIP: the tunnel is not an open relay.
    if (!this.router.backendAt(from)) return this.drop("reply_from_unknown_backend");
    const d = decapsulate(msg);
    if (!d.ok) return this.drop("reply_malformed");
    const vipKey = formatSocketAddress(d.vip);
    const vip = this.vipSockets.find((v) => formatSocketAddress(v.address) === vipKey);
    if (!vip) return this.drop("reply_vip_unknown");
    this.counters.replyPackets++;
    this.counters.replyBytes += d.payload.length;
    this.metric.replyPackets.inc();
    this.metric.replyBytes.inc(d.payload.length);
    this.send(vip.socket, d.payload, d.client);
  }

  private send(socket: Socket, datagram: Uint8Array, to: SocketAddress): void {
    socket.send(datagram, to.port, to.address, (err) => {
      if (err) this.drop("send_failed");
    });
  }

  private drop(reason: DataPlaneDropReason): void {
    this.counters.drops[reason] = (this.counters.drops[reason] ?? 0) + 1;
    this.metric.drops.inc({ reason });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = [...this.vipSockets, ...(this.tunnelSocket ? [this.tunnelSocket] : [])];
    await Promise.all(all.map((s) => new Promise<void>((resolve) => s.socket.close(() => resolve()))));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function lbDataPlaneMetrics(m: MetricsRegistry) {
  return {
    packets: m.counter("lb_packets_total", "Client datagrams forwarded to a backend, by route (cid, hash, unroutable).", ["route"]),
    bytes: m.counter("lb_bytes_total", "Bytes of client datagrams forwarded to a backend (QUIC payload, without the tunnel header), by route.", ["route"]),
    backendPackets: m.counter("lb_backend_packets_total", "Client datagrams forwarded, by backend id.", ["backend"]),
    replyPackets: m.counter("lb_reply_packets_total", "Backend datagrams sent to clients from a VIP."),
    replyBytes: m.counter("lb_reply_bytes_total", "Bytes of backend datagrams sent to clients from a VIP (QUIC payload)."),
    drops: m.counter("lb_drops_total", "Datagrams dropped by the LB, by reason.", ["reason"]),
  };
}

async function bindSocket(
  address: SocketAddress,
  bufferBytes: number | undefined,
  onError: () => void,
): Promise<{ address: SocketAddress; socket: Socket }> {
  const socket = createSocket({ type: address.address.includes(":") ? "udp6" : "udp4" });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(address.port, address.address, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  if (bufferBytes) {
    socket.setRecvBufferSize(bufferBytes);
    socket.setSendBufferSize(bufferBytes);
  }
  // Send failures reach send()'s callback; any other socket error is counted rather than crashing the process.
  socket.on("error", onError);
  const bound = socket.address();
  return { address: { address: bound.address, port: bound.port }, socket };
}
