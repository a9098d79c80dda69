/**
 * Two sans-I/O Endpoints in one process joined by direct calls (quinn-proto's test `Pair`, with no
 * latency and no loss): every datagram one side polls is handed to the other's receive() at once.
 * The handshake and memory benchmarks use it so that they measure the stack, not sockets or a
 * simulated network's queue. The clock is the real monotonic one (performance.now()).
 */
import { performance } from "node:perf_hooks";
import { Endpoint, type EndpointConfig } from "../node-images/quic/endpoint.ts";
import type { SocketAddress } from "../node-images/quic/path.ts";

export const PAIR_SERVER: SocketAddress = { address: "127.0.0.1", port: 4433 };
export const PAIR_CLIENT: SocketAddress = { address: "127.0.0.2", port: 50000 };

export class InMemoryPair {
  readonly client: Endpoint;
  readonly server: Endpoint;
  datagrams = 0;

  constructor(serverConfig: EndpointConfig, clientConfig: EndpointConfig = {}) {
    this.server = new Endpoint(serverConfig);
    this.client = new Endpoint(clientConfig);
  }

  now(): number {
    return performance.now();
  }

  /**
   * Pass datagrams both ways until neither side has anything to send (or `maxRounds` rounds),
   * then run due timers once. Returns the number of datagrams moved.
   */
  drive(maxRounds = 64): number {
    let moved = 0;
    for (let round = 0; round < maxRounds; round++) {
      const now = this.now();
      let n = 0;
      for (let t = this.client.pollTransmit(now); t; t = this.client.pollTransmit(now)) {
        this.server.receive(t.datagram, { local: t.path.remote, remote: t.path.local }, now);
        n++;
      }
      for (let t = this.server.pollTransmit(now); t; t = this.server.pollTransmit(now)) {
        this.client.receive(t.datagram, { local: t.path.remote, remote: t.path.local }, now);
        n++;
      }
      moved += n;
      if (n === 0) break;
    }
    const now = this.now();
    for (const ep of [this.client, this.server]) {
      const at = ep.nextTimeout();
      if (at !== undefined && at <= now) ep.handleTimeout(now);
    }
    // Events are not used here; drain them so the queues do not grow.
    while (this.client.pollEvent());
    while (this.server.pollEvent());
    this.datagrams += moved;
    return moved;
  }
}
