/**
 * A client, a server with a public address (the VIP the handshake uses) and a preferred address, in the
 * simulated network, plus a wire log from a tap: what the migration tests read "the capture" from.
 */
import type { Connection, ConnectionConfig } from "../../node-images/quic/connection.ts";
import { Endpoint, type EndpointEvent } from "../../node-images/quic/endpoint.ts";
import type { ConnectionEvent } from "../../node-images/quic/events.ts";
import { formatSocketAddress, socketAddressEquals, type PathAddress, type SocketAddress } from "../../node-images/quic/path.ts";
import { SimulatedNetwork, type LinkConditions } from "../../node-images/quic/simulated-network.ts";
import type { Instant } from "../../node-images/quic/time.ts";
import { clientTls, serverTls } from "./pki-fixture.ts";
import { HashServer, StreamRequest } from "./sim-apps.ts";

export const VIP: SocketAddress = { address: "203.0.113.1", port: 443 };
export const PREFERRED4: SocketAddress = { address: "198.51.100.7", port: 4433 };
export const CLIENT: SocketAddress = { address: "192.0.2.10", port: 50000 };
export const CLIENT2: SocketAddress = { address: "192.0.2.20", port: 50001 };
export const VIP6: SocketAddress = { address: "2001:db8::1", port: 443 };
export const PREFERRED6: SocketAddress = { address: "2001:db8:1::7", port: 4433 };
export const CLIENT6: SocketAddress = { address: "2001:db8:2::10", port: 50000 };
export const ATTACKER: SocketAddress = { address: "233.252.0.66", port: 6666 };

export interface WireRecord {
  at: Instant;
  from: SocketAddress;
  to: SocketAddress;
  bytes: number;
  dropped: boolean;
  /** DCID of a short-header packet (first packet of the datagram), hex. */
  dcid: string | undefined;
}

export interface PairOptions {
  seed?: number;
  delayMs?: number;
  defaults?: LinkConditions;
  policy?: "follow" | "ignore" | "validate-only";
  preferred?: { ipv4?: SocketAddress; ipv6?: SocketAddress } | undefined;
  client?: SocketAddress;
  vip?: SocketAddress;
  server?: Partial<Omit<ConnectionConfig, "role" | "tls">>;
  clientConfig?: Partial<Omit<ConnectionConfig, "role" | "tls">>;
  statelessResetKey?: Buffer;
}

export class MigrationPair {
  readonly net: SimulatedNetwork;
  readonly server: Endpoint;
  readonly client: Endpoint;
  readonly app: HashServer;
  readonly conn: Connection;
  readonly wire: WireRecord[] = [];
  readonly clientEvents: ConnectionEvent[] = [];
  readonly requests: StreamRequest[] = [];
  readonly vip: SocketAddress;
  readonly clientAddress: SocketAddress;

  constructor(opts: PairOptions = {}) {
    this.vip = opts.vip ?? VIP;
    this.clientAddress = opts.client ?? CLIENT;
    this.net = new SimulatedNetwork({ seed: opts.seed ?? 1, defaults: opts.defaults ?? { delayMs: opts.delayMs ?? 10 } });
    const preferred = opts.preferred === undefined && !("preferred" in opts) ? { ipv4: PREFERRED4 } : opts.preferred;
    this.server = new Endpoint({
      server: { tls: serverTls(), preferredAddress: preferred, ...opts.server },
      statelessResetKey: opts.statelessResetKey,
    });
    this.client = new Endpoint();
    this.net.attach(this.vip, this.server);
    if (preferred?.ipv4) this.net.attach(preferred.ipv4, this.server);
    if (preferred?.ipv6) this.net.attach(preferred.ipv6, this.server);
    this.net.attach(this.clientAddress, this.client);
    this.net.tap((d) => {
      const short = d.datagram.length > 9 && (d.datagram[0]! & 0x80) === 0;
      this.wire.push({ at: d.at, from: d.from, to: d.to, bytes: d.datagram.length, dropped: d.dropped, dcid: short ? d.datagram.subarray(1, 9).toString("hex") : undefined });
    });
    this.app = new HashServer(this.server);
    this.conn = this.client.connect(
      { tls: clientTls(), preferredAddressPolicy: opts.policy, ...opts.clientConfig },
      { local: this.clientAddress, remote: this.vip },
      this.net.now,
    );
  }

  get serverConn(): Connection {
    const c = [...this.server.connections()][0];
    if (!c) throw new Error("no server connection");
    return c;
  }

  request(body: Buffer): StreamRequest {
    const r = new StreamRequest(this.client, this.conn, body);
    this.requests.push(r);
    return r;
  }

  run(until: () => boolean, maxTimeMs = 10_000): boolean {
    return this.net.run({
      maxTimeMs,
      until: () => {
        this.app.pump(this.net.now);
        for (const r of this.requests) r.pump(this.net.now);
        for (let e: EndpointEvent | undefined = this.client.pollEvent(); e; e = this.client.pollEvent()) {
          if (e.type === "connection") this.clientEvents.push(e.event);
        }
        return until();
      },
    }).done;
  }

  /** Datagrams on the wire from `from` to `to` (addresses and ports), optionally in a time window. */
  datagrams(from: SocketAddress, to: SocketAddress, window: { after?: Instant; before?: Instant } = {}): WireRecord[] {
    return this.wire.filter((w) => socketAddressEquals(w.from, from) && socketAddressEquals(w.to, to)
      && (window.after === undefined || w.at > window.after) && (window.before === undefined || w.at < window.before));
  }

  /** Bytes this endpoint put on the wire toward / received from an address (PA-27's measure). */
  bytesBetween(from: string, to: string): number {
    return this.wire.filter((w) => formatSocketAddress(w.from) === from && formatSocketAddress(w.to) === to).reduce((n, w) => n + w.bytes, 0);
  }

  pathOf(conn: Connection, address: PathAddress) {
    return conn.paths.find((p) => socketAddressEquals(p.address.local, address.local) && socketAddressEquals(p.address.remote, address.remote));
  }
}

export function sink(body: Buffer): Buffer {
  return Buffer.concat([Buffer.from("SINK\n"), body]);
}

/**
 * A NAT in front of the client endpoint (for rebinding tests): the client keeps using `inside`; the network
 * sees `outside` once set, or a new port per datagram while `hopping` (a flood of new addresses).
 */
export class RebindingNat {
  outside: SocketAddress | undefined;
  hopping = false;
  private nextPort = 40000;
  private readonly inner: Endpoint;
  private readonly inside: SocketAddress;
  private readonly net: SimulatedNetwork;

  constructor(net: SimulatedNetwork, inner: Endpoint, inside: SocketAddress) {
    this.net = net;
    this.inner = inner;
    this.inside = inside;
  }

  /** The NAT's public side: the network delivers datagrams for any of its ports here. */
  attachOutside(address: SocketAddress): void {
    this.net.attach(address, this as unknown as Endpoint);
  }

  receive(datagram: Uint8Array, path: PathAddress, now: Instant): void {
    this.inner.receive(datagram, { local: this.inside, remote: path.remote }, now);
  }

  pollTransmit(now: Instant) {
    const t = this.inner.pollTransmit(now);
    if (!t) return t;
    if (this.hopping) {
      const local = { address: this.inside.address, port: this.nextPort++ };
      this.attachOutside(local);
      return { ...t, path: { local, remote: t.path.remote } };
    }
    return this.outside ? { ...t, path: { local: this.outside, remote: t.path.remote } } : t;
  }

  nextTimeout(): Instant | undefined {
    return this.inner.nextTimeout();
  }

  handleTimeout(now: Instant): void {
    this.inner.handleTimeout(now);
  }
}
