/**
 * The QUIC-LB routing decision (draft-ietf-quic-load-balancers-21), sans-I/O: a datagram and the
 * client's address in, a backend or a counted drop out. No per-connection state, so a restarted
 * LB routes an established connection exactly as before.
 *
 *   short header, DCID decodes to a known server ID        → that backend            route "cid"
 *   long header,  DCID decodes to a known server ID        → that backend            route "cid"
 *   long header,  DCID unroutable (client-chosen, §3.1)    → hash of client address  route "hash"
 *   short header, config rotation 0b111 (§2.2: 4-tuple)    → hash of client address  route "hash"
 *   short header, DCID unroutable (unknown config/server)  → hash, or drop by policy route "unroutable"
 *
 * The hash is rendezvous (highest random weight) hashing over the active backends: an Initial and
 * its retransmissions come from one client address and so reach one backend; a backend joining or
 * leaving moves only the clients that hash to it. Draining backends are left out of the hash (no
 * new connections) but keep their CID-routed traffic. So are backends failing their health checks
 * (health-check.ts), unless no active backend is healthy: then the hash fails open over every
 * active backend, as Envoy's panic threshold does, rather than refuse every new connection.
 *
 * Only the version-invariant fields are read (RFC 8999 §5): the header form bit, the version, and
 * the DCID. Version 1 specifics (Initial size, CID length limit) are checked only for version 1.
 */
import { configRotationOf, QuicLbCodec, UNROUTABLE_CONFIG_ID, type QuicLbConfig } from "../quic/quic-lb.ts";
import type { SocketAddress } from "../quic/path.ts";

/** Set through the control API (an operator's intent). Health is separate: `Backend.healthy`. */
export type BackendState = "active" | "draining";
export type RouteKind = "cid" | "hash" | "unroutable";

export const LB_DROP_REASONS = [
  "empty_datagram",
  "malformed_long_header",
  "malformed_short_header",
  "initial_too_small",
  "unroutable_short_header",
  "no_backend",
] as const;
export type LbDropReason = (typeof LB_DROP_REASONS)[number];

export interface BackendSpec {
  /** A stable name (the node name): also the `backend` metric label. */
  id: string;
  /** The server ID its CIDs carry, serverIdLength octets. */
  serverId: Uint8Array;
  /** Where tunnelled datagrams go (its private address). */
  address: SocketAddress;
  state?: BackendState;
}

export interface Backend {
  readonly id: string;
  readonly serverId: Buffer;
  readonly address: SocketAddress;
  state: BackendState;
  /** False after failed health checks (health-check.ts): out of the hash, CID traffic continues. */
  healthy: boolean;
  /** Precomputed per-backend seed of the rendezvous hash. */
  readonly hashSeed: number;
}

export type RouteDecision =
  | { action: "forward"; backend: Backend; route: RouteKind }
  | { action: "drop"; reason: LbDropReason };

export interface QuicLbRouterOptions {
  /** Active configurations, at most one per config rotation codepoint; all with one server ID length (§3.3 shared allocation). */
  configs: readonly QuicLbConfig[];
  backends?: readonly BackendSpec[];
  /**
   * Short-header packets whose DCID decodes to no backend: §3.1 says SHOULD drop; "hash" sends them
   * where the 4-tuple hashes, whose server answers with a stateless reset (RFC 9000 §10.3) so the
   * client learns at once that its server is gone. Default "hash".
   */
  unroutableShortHeader?: "hash" | "drop";
}

export class RouterError extends Error {
  override readonly name = "RouterError";
  readonly code: "BACKEND_EXISTS" | "SERVER_ID_IN_USE" | "BACKEND_NOT_FOUND" | "SERVER_ID_INVALID" | "CONFIG_INVALID";
  constructor(code: RouterError["code"], message: string) {
    super(message);
    this.code = code;
  }
}

const LONG_HEADER_BIT = 0x80;
const QUIC_VERSION_1 = 0x00000001;
/** RFC 9000 §17.2: a version 1 connection ID is at most 20 octets. */
const V1_MAX_CID_BYTES = 20;
/** RFC 9000 §14.1: a server discards a datagram carrying an Initial that is smaller than this. */
const V1_MIN_INITIAL_DATAGRAM_BYTES = 1200;
/** RFC 8999 §5.1: long header = first octet, version (4), DCID length (1), DCID, SCID length (1), SCID. */
const LONG_HEADER_DCID_OFFSET = 6;

export class QuicLbRouter {
  private readonly codecs = new Map<number, QuicLbCodec>();
  private readonly serverIdLength: number;
  private readonly byId = new Map<string, Backend>();
  private readonly byServerId = new Map<string, Backend>();
  private readonly unroutableShortHeader: "hash" | "drop";
  /** Hash candidates in insertion order, rebuilt on membership or health changes (the hash walks it per packet). */
  private active: Backend[] = [];

  constructor(options: QuicLbRouterOptions) {
    if (options.configs.length === 0) throw new RouterError("CONFIG_INVALID", "at least one QUIC-LB configuration is required");
    for (const config of options.configs) {
      if (this.codecs.has(config.configId)) throw new RouterError("CONFIG_INVALID", `two configurations use config rotation ${config.configId}`);
      this.codecs.set(config.configId, new QuicLbCodec(config));
    }
    const lengths = new Set(options.configs.map((c) => c.serverIdLength));
    if (lengths.size !== 1) throw new RouterError("CONFIG_INVALID", "all configurations must share one server ID length (one server ID allocation)");
    this.serverIdLength = options.configs[0]!.serverIdLength;
    this.unroutableShortHeader = options.unroutableShortHeader ?? "hash";
    for (const spec of options.backends ?? []) this.join(spec);
  }

  /** Add a backend (idempotent for an identical spec). */
  join(spec: BackendSpec): Backend {
    if (spec.serverId.length !== this.serverIdLength) {
      throw new RouterError("SERVER_ID_INVALID", `backend ${spec.id}: server ID must be ${this.serverIdLength} octet(s), got ${spec.serverId.length}`);
    }
    const serverIdHex = Buffer.from(spec.serverId).toString("hex");
    const existing = this.byId.get(spec.id);
    if (existing) {
      const same = existing.serverId.toString("hex") === serverIdHex && existing.address.address === spec.address.address && existing.address.port === spec.address.port;
      if (!same) throw new RouterError("BACKEND_EXISTS", `backend ${spec.id} is already joined with another server ID or address`);
      if (spec.state) this.setState(spec.id, spec.state);
      return existing;
    }
    const owner = this.byServerId.get(serverIdHex);
    if (owner) throw new RouterError("SERVER_ID_IN_USE", `server ID ${serverIdHex} belongs to backend ${owner.id}`);
    const backend: Backend = {
      id: spec.id,
      serverId: Buffer.from(spec.serverId),
      address: { ...spec.address },
      state: spec.state ?? "active",
      healthy: true,
      hashSeed: fnv1a32(Buffer.from(spec.id, "utf8"), 0x811c9dc5),
    };
    this.byId.set(backend.id, backend);
    this.byServerId.set(serverIdHex, backend);
    this.rebuildActive();
    return backend;
  }

  leave(id: string): Backend {
    const backend = this.require(id);
    this.byId.delete(id);
    this.byServerId.delete(backend.serverId.toString("hex"));
    this.rebuildActive();
    return backend;
  }

  setState(id: string, state: BackendState): Backend {
    const backend = this.require(id);
    backend.state = state;
    this.rebuildActive();
    return backend;
  }

  /** Health checks mark a backend in or out of the hash for new connections; CID routing ignores health. */
  setHealthy(id: string, healthy: boolean): Backend {
    const backend = this.require(id);
    backend.healthy = healthy;
    this.rebuildActive();
    return backend;
  }

  /** True when every active backend is unhealthy and the hash therefore uses them all (fail open). */
  get hashFailingOpen(): boolean {
    return this.active.length > 0 && !this.active.some((b) => b.healthy);
  }

  backend(id: string): Backend | undefined {
    return this.byId.get(id);
  }

  backends(): Backend[] {
    return [...this.byId.values()];
  }

  /** The backend whose private address sent a tunnelled datagram (replies are accepted only from joined backends). */
  backendAt(address: SocketAddress): Backend | undefined {
    for (const b of this.byId.values()) if (b.address.port === address.port && b.address.address === address.address) return b;
    return undefined;
  }

  route(datagram: Uint8Array, client: SocketAddress): RouteDecision {
    if (datagram.length === 0) return { action: "drop", reason: "empty_datagram" };
    return (datagram[0]! & LONG_HEADER_BIT) !== 0 ? this.routeLong(datagram, client) : this.routeShort(datagram, client);
  }

  private routeLong(datagram: Uint8Array, client: SocketAddress): RouteDecision {
    if (datagram.length < LONG_HEADER_DCID_OFFSET) return { action: "drop", reason: "malformed_long_header" };
    const version = ((datagram[1]! << 24) | (datagram[2]! << 16) | (datagram[3]! << 8) | datagram[4]!) >>> 0;
    const dcidLength = datagram[5]!;
    const dcidEnd = LONG_HEADER_DCID_OFFSET + dcidLength;
    // The SCID length octet must follow the DCID (RFC 8999 §5.1).
    if (dcidEnd + 1 > datagram.length) return { action: "drop", reason: "malformed_long_header" };
    if (version === QUIC_VERSION_1) {
      if (dcidLength > V1_MAX_CID_BYTES) return { action: "drop", reason: "malformed_long_header" };
      // RFC 9000 §17.2.2: Initial is long packet type 0b00 (bits 0x30). §14.1: the server would drop it anyway.
      const isInitial = (datagram[0]! & 0x30) === 0;
      if (isInitial && datagram.length < V1_MIN_INITIAL_DATAGRAM_BYTES) return { action: "drop", reason: "initial_too_small" };
    }
    const dcid = datagram.subarray(LONG_HEADER_DCID_OFFSET, dcidEnd);
    const backend = this.backendForCid(dcid);
    // §3.1: long headers with unroutable DCIDs MUST use the fallback algorithm (ours: the address hash).
    if (backend) return { action: "forward", backend, route: "cid" };
    return this.byHash(client, "hash");
  }

  private routeShort(datagram: Uint8Array, client: SocketAddress): RouteDecision {
    if (datagram.length < 2) return { action: "drop", reason: "malformed_short_header" };
    const configId = configRotationOf(datagram[1]!);
    // §2.2: 0b111 asks for routing by the 4-tuple, consistently beyond the handshake.
    if (configId === UNROUTABLE_CONFIG_ID) return this.byHash(client, "hash");
    const codec = this.codecs.get(configId);
    if (codec && datagram.length < 1 + codec.connectionIdLength) return { action: "drop", reason: "malformed_short_header" };
    const backend = codec ? this.lookup(codec.decodeServerId(datagram.subarray(1, 1 + codec.connectionIdLength))) : undefined;
    if (backend) return { action: "forward", backend, route: "cid" };
    if (this.unroutableShortHeader === "drop") return { action: "drop", reason: "unroutable_short_header" };
    return this.byHash(client, "unroutable");
  }

  private backendForCid(dcid: Uint8Array): Backend | undefined {
    if (dcid.length === 0) return undefined;
    const codec = this.codecs.get(configRotationOf(dcid[0]!));
    return codec ? this.lookup(codec.decodeServerId(dcid)) : undefined;
  }

  private lookup(serverId: Buffer | undefined): Backend | undefined {
    return serverId ? this.byServerId.get(serverId.toString("hex")) : undefined;
  }

  /** Rendezvous hashing: the active backend with the highest mix(client, backend) wins. */
  private byHash(client: SocketAddress, route: RouteKind): RouteDecision {
    if (this.active.length === 0) return { action: "drop", reason: "no_backend" };
    const key = clientHash(client);
    let best = this.active[0]!;
    let bestScore = -1;
    for (const backend of this.active) {
      const score = fmix32(key ^ backend.hashSeed);
      if (score > bestScore || (score === bestScore && backend.id < best.id)) {
        best = backend;
        bestScore = score;
      }
    }
    return { action: "forward", backend: best, route };
  }

  private require(id: string): Backend {
    const backend = this.byId.get(id);
    if (!backend) throw new RouterError("BACKEND_NOT_FOUND", `no backend ${id}`);
    return backend;
  }

  private rebuildActive(): void {
    const active = [...this.byId.values()].filter((b) => b.state === "active");
    const healthy = active.filter((b) => b.healthy);
    // Fail open: when health checks fail everywhere (a broken health URL, the checker's own network),
    // refusing every new connection is worse than trying the backends that may still serve.
    this.active = healthy.length > 0 ? healthy : active;
  }
}

/** FNV-1a over the address text and port: cheap, deterministic across restarts and processes. */
function clientHash(client: SocketAddress): number {
  let h = 0x811c9dc5;
  const text = client.address;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (client.port & 0xff), 0x01000193);
  h = Math.imul(h ^ (client.port >>> 8), 0x01000193);
  return h >>> 0;
}

function fnv1a32(bytes: Uint8Array, seed: number): number {
  let h = seed;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}

/** MurmurHash3's finaliser: spreads FNV's weak low bits so every backend's score is uniform. */
function fmix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
