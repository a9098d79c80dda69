/**
 * The backend server, wired: one UdpEndpoint on the direct (preferred) addresses, the LB tunnel
 * beside it, HTTP/3 and hq-interop on top, the workloads, metrics and the control API. main.ts reads
 * the config and starts this; tests start it in-process.
 */
import { performance } from "node:perf_hooks";
import { ControlApi } from "../common/control-api.ts";
import type { MetricsRegistry } from "../common/metrics.ts";
import { bucketsAroundRtts, QuicConnectionMetrics } from "../common/quic-connection-metrics.ts";
import type { EndpointEvent } from "../quic/endpoint.ts";
import { HqServer, HQ_INTEROP_ALPN } from "../quic/hq-interop.ts";
import { Http3Server } from "../quic/http3/server.ts";
import { formatSocketAddress, socketAddressEquals, type SocketAddress } from "../quic/path.ts";
import { quicLbConnectionIdGenerator } from "../quic/quic-lb.ts";
import { UdpEndpoint } from "../quic/udp-endpoint.ts";
import type { ServerConfig } from "./config.ts";
import { serverControlRoutes } from "./control.ts";
import { LbTunnel } from "./lb-tunnel.ts";
import { WorkloadServer } from "./workloads.ts";

export interface BackendServerOptions {
  config: ServerConfig;
  metrics: MetricsRegistry;
  log: (entry: Record<string, unknown>) => void;
  /** What `POST /fail` does after answering (main.ts: exit on purpose). */
  crash: () => void;
}

const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;

export class BackendServer implements AsyncDisposable {
  readonly config: ServerConfig;
  readonly udp: UdpEndpoint;
  readonly tunnel: LbTunnel | undefined;
  readonly workloads: WorkloadServer;
  readonly connectionMetrics: QuicConnectionMetrics;
  control!: ControlApi;
  draining = false;
  private readonly startedAtMs = Date.now();

  private constructor(config: ServerConfig, udp: UdpEndpoint, tunnel: LbTunnel | undefined, workloads: WorkloadServer, connectionMetrics: QuicConnectionMetrics) {
    this.config = config;
    this.udp = udp;
    this.tunnel = tunnel;
    this.workloads = workloads;
    this.connectionMetrics = connectionMetrics;
  }

  static async start(options: BackendServerOptions): Promise<BackendServer> {
    const { config, metrics } = options;
    let preferred: SocketAddress | undefined = config.preferredAddress;
    const connectionMetrics = new QuicConnectionMetrics(metrics, {
      role: "server",
      // Traffic on the offered preferred address is "preferred"; the rest came through the VIP (or was never moved).
      pathKind: (p) => (preferred && socketAddressEquals(p.local, preferred) ? "preferred" : "original"),
      migrationLatencyBucketsSeconds: config.migrationLatencyBucketsMs ? bucketsAroundRtts(config.migrationLatencyBucketsMs) : undefined,
    });
    const workloads = new WorkloadServer({ fileSizesBytes: config.fileSizesBytes, metrics });
    const tunnel = config.tunnel ? await LbTunnel.bind(config.tunnel, SOCKET_BUFFER_BYTES) : undefined;
    const generator = config.serverId && config.quicLb[0] ? quicLbConnectionIdGenerator(config.quicLb[0], config.serverId) : undefined;
    const nowMs = (): number => performance.timeOrigin + performance.now();
    let dispatch: (e: EndpointEvent) => void = () => {};
    let udp: UdpEndpoint;
    try {
      udp = await UdpEndpoint.bind({
        bind: config.direct,
        socketBufferBytes: SOCKET_BUFFER_BYTES,
        qlogDir: config.qlogDir,
        // draft-ietf-quic-load-balancers-21: the LB decodes the server ID from CIDs of exactly this length.
        connectionIdLength: generator ? generator.codec.connectionIdLength : 8,
        statelessResetKey: config.statelessResetKey,
        maxConnections: config.maxConnections,
        server: {
          tls: { alpnProtocols: config.alpn, certificateChain: [config.tls.certificatePem], privateKey: config.tls.privateKeyPem },
          connectionIdGenerator: generator,
          preferredAddress: preferredAddressParameter(preferred),
          transportParameters: { maxIdleTimeoutMs: 30_000, initialMaxStreamsBidi: 100 },
        },
        tunnel: tunnel ? { send: (t) => tunnel.send(t) } : undefined,
        onDatagram: (direction, path, bytes) => connectionMetrics.onDatagram(direction, path, bytes),
        onEvent: (e) => dispatch(e),
      });
    } catch (err) {
      await tunnel?.close();
      throw err;
    }
    connectionMetrics.attach(udp.endpoint);
    if (tunnel) connectionMetrics.addDropSource("tunnel", tunnel.drops);
    // Port 0 in the config: offer the port the OS picked for that direct address.
    const preferredIndex = preferred ? config.direct.findIndex((d) => socketAddressEquals(d, preferred!)) : -1;
    if (preferredIndex >= 0) preferred = udp.localAddresses[preferredIndex];
    udp.endpoint.config.server!.preferredAddress = preferredAddressParameter(preferred);
    tunnel?.onReceive((payload, path) => udp.receiveTunnelled(payload, path));
    const server = new BackendServer(config, udp, tunnel, workloads, connectionMetrics);
    const h3 = new Http3Server({ wake: (c) => udp.wake(c), onRequest: (req) => workloads.handle(req, nowMs) });
    const hq = new HqServer({ wake: (c) => udp.wake(c), onRequest: (path) => workloads.hqBody(path) });
    dispatch = (e) => {
      connectionMetrics.onEndpointEvent(e);
      if (e.type === "connection" && e.connection.alpn === HQ_INTEROP_ALPN) hq.handleEndpointEvent(e);
      else h3.handleEndpointEvent(e);
      if (e.type === "connectionRemoved") hq.handleEndpointEvent(e);
    };
    server.setPreferredAddress = (address) => {
      preferred = address;
      udp.endpoint.config.server!.preferredAddress = preferredAddressParameter(address);
    };
    try {
      server.control = await ControlApi.start({
        address: { host: config.management.address, port: config.management.port },
        token: config.token,
        metrics,
        routes: serverControlRoutes({ server, crash: options.crash, log: options.log }),
        log: options.log,
      });
    } catch (err) {
      await server.closeData();
      throw err;
    }
    return server;
  }

  /** Offer `address` (one of the direct addresses) as preferred_address to new connections, or none. */
  setPreferredAddress: (address: SocketAddress | undefined) => void = () => {};

  get preferredAddress(): SocketAddress | undefined {
    const pa = this.udp.endpoint.config.server?.preferredAddress;
    const e = pa?.ipv4 ?? pa?.ipv6;
    return e ? { address: e.address, port: e.port } : undefined;
  }

  /** No new connections (Initials are dropped as too_many_connections); established ones carry on. */
  drain(): void {
    this.draining = true;
    this.udp.endpoint.config.maxConnections = 0;
  }

  activate(): void {
    this.draining = false;
    this.udp.endpoint.config.maxConnections = this.config.maxConnections;
  }

  status(): Record<string, unknown> {
    const ep = this.udp.endpoint;
    return {
      id: this.config.id,
      serverId: this.config.serverId?.toString("hex"),
      uptimeSeconds: (Date.now() - this.startedAtMs) / 1000,
      direct: this.udp.localAddresses.map(formatSocketAddress),
      tunnel: this.tunnel ? formatSocketAddress(this.tunnel.address) : undefined,
      preferredAddress: this.preferredAddress ? formatSocketAddress(this.preferredAddress) : null,
      draining: this.draining,
      connections: ep.connectionCount,
      endpoint: { ...ep.counters, drops: ep.drops },
      udp: this.udp.counters,
      tunnelCounters: this.tunnel ? { ...this.tunnel.counters, drops: this.tunnel.drops } : undefined,
      activeStreams: this.workloads.activeStreams,
    };
  }

  private async closeData(): Promise<void> {
    this.workloads.stop();
    await Promise.all([this.udp.close(), this.tunnel?.close()]);
  }

  async close(): Promise<void> {
    await Promise.all([this.control?.close(), this.closeData()]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function preferredAddressParameter(address: SocketAddress | undefined): { ipv4?: SocketAddress; ipv6?: SocketAddress } | undefined {
  if (!address) return undefined;
  return address.address.includes(":") ? { ipv6: address } : { ipv4: address };
}
