/**
 * A one-client NAT on loopback, for rebind-port / rebind-addr (the interop runner's simulator rebinds the
 * client's NAT binding mid-transfer). The client talks to `address`; the relay forwards to the server from
 * an "outside" socket and sends replies back. After given amounts of server→client bytes it rebinds: a new
 * outside socket on a new port (and, for rebind-addr, a new address 127.0.0.x), the old one closed, as a NAT
 * that lost its binding. The server then sees the same connection arrive from a new address (RFC 9000 §9.3).
 */
import { createSocket, type Socket } from "node:dgram";
import type { SocketAddress } from "../../node-images/quic/path.ts";

export interface NatRebindingRelayOptions {
  server: SocketAddress;
  /** Rebind when the bytes relayed server→client first reach each of these (ascending). */
  rebindAtBytes: number[];
  /** "port": same address, new port; "address": a new loopback address 127.0.0.(10 + n) and a new port. */
  mode: "port" | "address";
}

function bindSocket(address: string): Promise<Socket> {
  const socket = createSocket("udp4");
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, address, () => {
      socket.off("error", reject);
      resolve(socket);
    });
  });
}

export class NatRebindingRelay implements AsyncDisposable {
  readonly counters = { toServer: 0, toClient: 0, bytesToClient: 0, rebinds: 0, droppedAfterRebind: 0 };
  /** Every outside address used, in order (what the server sees as the client). */
  readonly outsideAddresses: SocketAddress[] = [];
  private readonly options: NatRebindingRelayOptions;
  private readonly inside: Socket;
  private outside: Socket;
  private client: SocketAddress | undefined;
  private nextRebind = 0;
  private rebinding = false;

  private constructor(options: NatRebindingRelayOptions, inside: Socket, outside: Socket) {
    this.options = options;
    this.inside = inside;
    this.outside = outside;
  }

  static async start(options: NatRebindingRelayOptions): Promise<NatRebindingRelay> {
    const inside = await bindSocket("127.0.0.1");
    const outside = await bindSocket("127.0.0.1");
    const relay = new NatRebindingRelay(options, inside, outside);
    relay.watchOutside(outside);
    inside.on("message", (msg, rinfo) => {
      relay.client = { address: rinfo.address, port: rinfo.port };
      relay.counters.toServer++;
      relay.outside.send(msg, options.server.port, options.server.address);
    });
    return relay;
  }

  get address(): SocketAddress {
    const a = this.inside.address();
    return { address: a.address, port: a.port };
  }

  private watchOutside(socket: Socket): void {
    const a = socket.address();
    this.outsideAddresses.push({ address: a.address, port: a.port });
    socket.on("message", (msg) => {
      if (socket !== this.outside) {
        // Late replies to the old binding: a NAT that forgot it drops them.
        this.counters.droppedAfterRebind++;
        return;
      }
      if (!this.client) return;
      this.counters.toClient++;
      this.counters.bytesToClient += msg.length;
      this.inside.send(msg, this.client.port, this.client.address);
      const at = this.options.rebindAtBytes[this.nextRebind];
      if (at !== undefined && this.counters.bytesToClient >= at && !this.rebinding) {
        this.nextRebind++;
        void this.rebind();
      }
    });
  }

  private async rebind(): Promise<void> {
    this.rebinding = true;
    try {
      const address = this.options.mode === "address" ? `127.0.0.${10 + this.counters.rebinds}` : "127.0.0.1";
      const fresh = await bindSocket(address);
      const old = this.outside;
      this.outside = fresh;
      this.watchOutside(fresh);
      this.counters.rebinds++;
      old.close();
    } finally {
      this.rebinding = false;
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.inside, this.outside].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
