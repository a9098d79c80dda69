/**
 * The I/O adapter (aioquic's asyncio/protocol.py in spirit): UDP sockets from node:dgram, one timer,
 * and a monotonic clock around the sans-I/O Endpoint. Nothing else in node-images/quic touches
 * sockets, timers or the clock.
 *
 * A server may listen on several addresses (its original and its preferred address); each
 * datagram goes out of the socket bound to the transmit's local address.
 */
import { createSocket, type Socket } from "node:dgram";
import { performance } from "node:perf_hooks";
import type { Connection, ConnectionConfig, Transmit } from "./connection.ts";
import { Endpoint, type EndpointConfig, type EndpointEvent } from "./endpoint.ts";
import { formatSocketAddress, type PathAddress, type SocketAddress } from "./path.ts";
import { QlogDirectory } from "./qlog-file.ts";
import type { Instant } from "./time.ts";

/**
 * Datagrams one flush sends before it yields to the event loop (a few ms of sealing and sending): receiving
 * goes on between batches, so a burst of transmits never starves the sockets' reads.
 */
export const FLUSH_BATCH_DATAGRAMS = 256;

export interface UdpEndpointOptions extends EndpointConfig {
  /** Local addresses to bind; port 0 picks a free port. */
  bind: SocketAddress[];
  onEvent?: (event: EndpointEvent) => void;
  /** Socket buffer sizes (bulk transfers want large ones). */
  socketBufferBytes?: number;
  /** Write a qlog .sqlog per connection here (the role passes QLOGDIR); see qlog-file.ts. */
  qlogDir?: string;
  /** Add the qlog 0.3 header fields qvis needs to open the files (README: qlog). */
  qlogQvisCompatible?: boolean;
  /**
   * A backend behind a QUIC-LB (node-images/lb/README.md): transmits whose local address has no socket of
   * ours (the VIP) go to `send`, which encapsulates them back to the LB. Datagrams arriving through the
   * tunnel enter with receiveTunnelled().
   */
  tunnel?: { send(transmit: Transmit): void };
  /** Every datagram in and out with its path and size (metrics per path kind); keep it cheap. */
  onDatagram?: (direction: "in" | "out", path: PathAddress, bytes: number) => void;
}

export class UdpEndpoint implements AsyncDisposable {
  readonly endpoint: Endpoint;
  readonly sockets: Array<{ address: SocketAddress; socket: Socket }> = [];
  readonly counters = { datagramsIn: 0, datagramsOut: 0, sendErrors: 0 };
  private readonly onEvent: ((event: EndpointEvent) => void) | undefined;
  private readonly options: Pick<UdpEndpointOptions, "tunnel" | "onDatagram">;
  /** Set when `qlogDir` is given: one .sqlog per connection, client and server side. */
  readonly qlog: QlogDirectory | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt: Instant | undefined;
  private closed = false;
  private flushScheduled = false;

  private constructor(options: UdpEndpointOptions) {
    this.qlog = options.qlogDir ? new QlogDirectory(options.qlogDir, { qvisCompatible: options.qlogQvisCompatible }) : undefined;
    const qlog = this.qlog?.factory;
    this.endpoint = new Endpoint(qlog && options.server ? { ...options, server: { qlog, ...options.server } } : options);
    this.onEvent = options.onEvent;
    this.options = { tunnel: options.tunnel, onDatagram: options.onDatagram };
  }

  static async bind(options: UdpEndpointOptions): Promise<UdpEndpoint> {
    const ep = new UdpEndpoint(options);
    try {
      for (const address of options.bind) {
        const socket = createSocket({ type: address.address.includes(":") ? "udp6" : "udp4", reuseAddr: false });
        await new Promise<void>((resolve, reject) => {
          socket.once("error", reject);
          socket.bind(address.port, address.address, () => {
            socket.off("error", reject);
            resolve();
          });
        });
        if (options.socketBufferBytes) {
          socket.setRecvBufferSize(options.socketBufferBytes);
          socket.setSendBufferSize(options.socketBufferBytes);
        }
        const bound = socket.address();
        const local = { address: bound.address, port: bound.port };
        socket.on("message", (msg, rinfo) => ep.onDatagram(msg, local, { address: rinfo.address, port: rinfo.port }));
        // A send error (e.g. ICMP unreachable surfacing as ECONNREFUSED) is counted; QUIC recovers by itself.
        socket.on("error", () => ep.counters.sendErrors++);
        ep.sockets.push({ address: local, socket });
      }
    } catch (err) {
      await ep.close();
      throw err;
    }
    return ep;
  }

  now(): Instant {
    return performance.now();
  }

  get localAddresses(): SocketAddress[] {
    return this.sockets.map((s) => s.address);
  }

  connect(config: Omit<ConnectionConfig, "role" | "statelessResetKey" | "connectionIdLength">, remote: SocketAddress, localIndex = 0): Connection {
    const local = this.sockets[localIndex]?.address;
    if (!local) throw new RangeError(`no bound socket #${localIndex}`);
    // The core has no clock; certificate validity is checked against the wall clock given here.
    const tls = { ...config.tls, verificationTimeUnixMs: config.tls.verificationTimeUnixMs ?? Date.now() };
    const conn = this.endpoint.connect({ qlog: this.qlog?.factory, ...config, tls }, { local, remote }, this.now());
    this.flush();
    return conn;
  }

  /** After the application acted on a connection (write, open, close), let it send. */
  wake(connection: Connection): void {
    this.endpoint.wake(connection, this.now());
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // After the event loop's poll phase, not after each datagram's callback (a microtask): every datagram the
    // sockets had ready is received first, so one flush answers them all, as quinn and aioquic do with a batch.
    // With a flush per datagram, a bulk receiver sent an ACK-only datagram for every second packet (16 MB as in
    // bench/quic-throughput.bench.ts: 7,300 ACK-only datagrams for 14,600 data datagrams; about 1,000 now), each
    // sealed, sent, opened and processed. The ACK rules (RFC 9000 §13.2) are the core's and unchanged; the ACK leaves
    // at the end of the batch (the check phase of the same event-loop turn).
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** A datagram that reached us through an LB tunnel, already decapsulated: `path.local` is the VIP. */
  receiveTunnelled(datagram: Buffer, path: PathAddress): void {
    this.onDatagram(datagram, path.local, path.remote);
  }

  private onDatagram(msg: Buffer, local: SocketAddress, remote: SocketAddress): void {
    if (this.closed) return;
    this.counters.datagramsIn++;
    this.options.onDatagram?.("in", { local, remote }, msg.length);
    this.endpoint.receive(msg, { local, remote }, this.now());
    this.scheduleFlush();
  }

  /**
   * Send what is ready (at most FLUSH_BATCH_DATAGRAMS, then the rest after the sockets were read again), deliver
   * events, re-arm the timer.
   */
  flush(): void {
    if (this.closed) return;
    const now = this.now();
    let sent = 0;
    for (;;) {
      if (sent === FLUSH_BATCH_DATAGRAMS) {
        // More to send: continue in the next check phase, after the poll phase has read the sockets. One flush
        // that drained everything once ran for 1-3 s at 10,000 client connections (a timer due for thousands
        // of them at once): the sockets were not read meanwhile and the kernel dropped what overflowed their
        // receive buffers, which made more retransmissions due (bench/scale-10k.bench.ts, eventLoopLagMaxS).
        this.scheduleFlush();
        break;
      }
      const t = this.endpoint.pollTransmit(now);
      if (!t) break;
      sent++;
      const socket = this.socketFor(t.path.local);
      this.options.onDatagram?.("out", t.path, t.datagram.length);
      if (!socket && this.options.tunnel) {
        this.counters.datagramsOut++;
        this.options.tunnel.send(t);
        continue;
      }
      if (!socket) {
        this.counters.sendErrors++;
        continue;
      }
      this.counters.datagramsOut++;
      socket.send(t.datagram, t.path.remote.port, t.path.remote.address);
    }
    for (let e = this.endpoint.pollEvent(); e; e = this.endpoint.pollEvent()) this.onEvent?.(e);
    this.armTimer();
  }

  private socketFor(local: SocketAddress): Socket | undefined {
    const key = formatSocketAddress(local);
    return this.sockets.find((s) => formatSocketAddress(s.address) === key)?.socket;
  }

  private armTimer(): void {
    const at = this.endpoint.nextTimeout();
    if (at === this.timerAt) return;
    // Keep an armed timer that fires no later than the new deadline; it re-arms when it fires. In a bulk
    // transfer the deadline moves with almost every packet, and clearTimeout + setTimeout each time was
    // ~2% of the throughput profile (bench/quic-throughput.bench.ts).
    if (this.timer && at !== undefined && this.timerAt !== undefined && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = undefined;
      // Timers may fire a fraction of a millisecond early; the deadline itself has passed by then.
      this.endpoint.handleTimeout(Math.max(this.now(), at));
      this.flush();
    }, Math.max(0, at - this.now()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all(this.sockets.map((s) => new Promise<void>((resolve) => s.socket.close(() => resolve()))));
    // Connections still open at shutdown: their traces end here, with what they have.
    await this.qlog?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
