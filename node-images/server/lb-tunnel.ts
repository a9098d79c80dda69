/**
 * The backend's side of the LB tunnel (node-images/lb/README.md, "Encapsulation"): a socket on the
 * private address receives the LB's tunnelled datagrams, which enter the QUIC endpoint as if they had
 * arrived on the VIP from the client; transmits from a VIP go back to the LB encapsulated. The LB
 * sends from its tunnel socket, so replies go to the address the last tunnelled datagram for that VIP
 * came from (stable across an LB restart with the same config).
 *
 * A malformed tunnel datagram is a counted drop, never an exception.
 */
import { createSocket, type Socket } from "node:dgram";
import type { Transmit } from "../quic/connection.ts";
import { formatSocketAddress, type PathAddress, type SocketAddress } from "../quic/path.ts";
import { decapsulate, encapsulate, type DecapsulateError } from "../lb/encapsulation.ts";

export type TunnelDropReason = `tunnel_${DecapsulateError}` | "tunnel_no_lb_for_vip" | "tunnel_send_failed";

export class LbTunnel implements AsyncDisposable {
  readonly address: SocketAddress;
  readonly counters = { datagramsIn: 0, datagramsOut: 0, bytesIn: 0, bytesOut: 0 };
  readonly drops: Partial<Record<TunnelDropReason, number>> = {};
  private readonly socket: Socket;
  /** VIP (formatted) → the LB tunnel address that last sent us a datagram for it. */
  private readonly lbByVip = new Map<string, SocketAddress>();
  private receiver: ((payload: Buffer, path: PathAddress) => void) | undefined;

  private constructor(socket: Socket, address: SocketAddress) {
    this.socket = socket;
    this.address = address;
  }

  static async bind(address: SocketAddress, socketBufferBytes?: number): Promise<LbTunnel> {
    const socket = createSocket({ type: address.address.includes(":") ? "udp6" : "udp4" });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(address.port, address.address, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    if (socketBufferBytes) {
      socket.setRecvBufferSize(socketBufferBytes);
      socket.setSendBufferSize(socketBufferBytes);
    }
    const bound = socket.address();
    const tunnel = new LbTunnel(socket, { address: bound.address, port: bound.port });
    socket.on("message", (msg, rinfo) => tunnel.onMessage(msg, { address: rinfo.address, port: rinfo.port }));
    // ICMP errors surface as socket errors; the LB may be restarting. Counted, QUIC retransmits.
    socket.on("error", () => tunnel.drop("tunnel_send_failed"));
    return tunnel;
  }

  /** Where decapsulated datagrams go: `path.local` is the VIP, `path.remote` the client. */
  onReceive(receiver: (payload: Buffer, path: PathAddress) => void): void {
    this.receiver = receiver;
  }

  /** UdpEndpointOptions.tunnel.send: a transmit from a VIP, back through the LB that carried its flow. */
  send(t: Transmit): void {
    const lb = this.lbByVip.get(formatSocketAddress(t.path.local));
    if (!lb) {
      this.drop("tunnel_no_lb_for_vip");
      return;
    }
    const datagram = encapsulate({ client: t.path.remote, vip: t.path.local }, t.datagram);
    this.counters.datagramsOut++;
    this.counters.bytesOut += t.datagram.length;
    this.socket.send(datagram, lb.port, lb.address, (err) => {
      if (err) this.drop("tunnel_send_failed");
    });
  }

  private onMessage(msg: Buffer, from: SocketAddress): void {
    const d = decapsulate(msg);
    if (!d.ok) {
      this.drop(`tunnel_${d.error}`);
      return;
    }
    this.counters.datagramsIn++;
    this.counters.bytesIn += d.payload.length;
    const key = formatSocketAddress(d.vip);
    const known = this.lbByVip.get(key);
    if (!known || known.port !== from.port || known.address !== from.address) this.lbByVip.set(key, from);
    this.receiver?.(d.payload, { local: d.vip, remote: d.client });
  }

  private drop(reason: TunnelDropReason): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
