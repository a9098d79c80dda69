/**
 * The endpoint's logic, sans-I/O like the connection (quinn-proto's Endpoint): it routes datagrams
 * to connections by connection ID, accepts new server connections, answers Version Negotiation,
 * sends Retry with address-validation tokens and stateless resets, and keeps one timer heap for
 * all connections. `udp-endpoint.ts` wraps it with sockets and one timer; the simulated network
 * drives it in virtual time.
 */
import { MinHeap } from "../common/min-heap.ts";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { Connection, QUIC_VERSION_1, MIN_INITIAL_DATAGRAM_BYTES, type ConnectionConfig, type Transmit } from "./connection.ts";
import type { ConnectionEvent } from "./events.ts";
import { parseUnprotectedHeader, encodeVersionNegotiation, type ParsedHeader } from "./packet-header.ts";
import { formatSocketAddress, type PathAddress, type SocketAddress } from "./path.ts";
import { encodeRetry } from "./retry.ts";
import { encodeStatelessReset, statelessResetToken } from "./stateless-reset.ts";
import type { Instant } from "./time.ts";

export interface EndpointConfig {
  /** Accept incoming connections with this configuration (a server). */
  server?: Omit<ConnectionConfig, "role" | "statelessResetKey" | "connectionIdLength">;
  /** Length of the connection IDs this endpoint issues (routing needs it for short headers). */
  connectionIdLength?: number;
  /** Require address validation with a Retry before accepting (RFC 9000 §8.1.2). */
  requireRetry?: boolean;
  /** Static key for stateless reset tokens; give the same key to every instance behind one address. */
  statelessResetKey?: Buffer;
  /** Key that authenticates address-validation tokens. */
  tokenKey?: Buffer;
  /** How long a Retry token stays valid. */
  retryTokenLifetimeMs?: number;
  maxConnections?: number;
  /** Stateless resets sent per second at most (they can be abused for amplification otherwise). */
  maxStatelessResetsPerSecond?: number;
}

export type EndpointDropReason =
  | "header_invalid"
  | "unknown_connection_id"
  | "initial_too_small"
  | "not_accepting"
  | "too_many_connections"
  | "invalid_token"
  | "unsupported_version"
  | "stateless_reset_rate_limited"
  | "initial_undecryptable";

export type EndpointEvent =
  | { type: "connectionAccepted"; at: Instant; connection: Connection }
  | { type: "connection"; connection: Connection; event: ConnectionEvent }
  | { type: "connectionRemoved"; at: Instant; connection: Connection };

interface Entry {
  connection: Connection;
  /** CIDs (hex) registered for routing. */
  routes: Set<string>;
  /** What `routes` was built from (see syncRoutes); -1 before the first build. */
  routesFingerprint: number;
  deadline: Instant | undefined;
}

const RETRY_TOKEN_PREFIX = 0x52; // 'R'

export class Endpoint {
  readonly config: EndpointConfig;
  readonly cidLength: number;
  readonly drops: Partial<Record<EndpointDropReason, number>> = {};
  readonly counters = { versionNegotiationSent: 0, retrySent: 0, statelessResetSent: 0, accepted: 0, connected: 0, retiredCidRouted: 0 };
  private readonly resetKey: Buffer;
  private readonly tokenKey: Buffer;
  private readonly byCid = new Map<string, Entry>();
  /** Recently retired CIDs, still routed for 3 PTO (see syncRoutes); pruned lazily. */
  private readonly retiredRoutes = new Map<string, { entry: Entry; until: Instant }>();
  private readonly entries = new Set<Entry>();
  private readonly entryOf = new WeakMap<Connection, Entry>();
  /** Connections that may have something to send. */
  private readonly dirty = new Set<Entry>();
  /** Datagrams the endpoint itself sends (VN, Retry, stateless reset). */
  private readonly ownTransmits: Transmit[] = [];
  private readonly events: EndpointEvent[] = [];
  private eventHead = 0;
  /** Min-heap of (deadline, entry); stale items are skipped when the entry's deadline changed. */
  private readonly timers = new MinHeap<{ at: Instant; entry: Entry }>((a, b) => a.at < b.at);
  private resetWindowStart = 0;
  private resetsInWindow = 0;

  constructor(config: EndpointConfig = {}) {
    this.config = config;
    this.cidLength = config.connectionIdLength ?? 8;
    this.resetKey = config.statelessResetKey ?? randomBytes(32);
    this.tokenKey = config.tokenKey ?? randomBytes(32);
  }

  get connectionCount(): number {
    return this.entries.size;
  }

  connections(): IterableIterator<Connection> {
    const it = this.entries.values();
    return (function* () {
      for (const e of it) yield e.connection;
    })();
  }

  /** Start a client connection. */
  connect(config: Omit<ConnectionConfig, "role" | "statelessResetKey" | "connectionIdLength">, path: PathAddress, now: Instant): Connection {
    const connection = Connection.connect({ ...config, statelessResetKey: this.resetKey, connectionIdLength: this.cidLength }, path, now);
    this.counters.connected++;
    this.track(connection, now);
    return connection;
  }

  /** The application did something on a connection (wrote, opened a stream): let it send. */
  wake(connection: Connection, now: Instant): void {
    const entry = this.entryOf.get(connection);
    if (entry) this.afterActivity(entry, now);
  }

  receive(datagram: Uint8Array, path: PathAddress, now: Instant): void {
    let header: ParsedHeader;
    try {
      header = parseUnprotectedHeader(datagram, 0, this.cidLength);
    } catch {
      this.drop("header_invalid");
      return;
    }
    const entry = this.routeByCid(Buffer.from(header.dcid).toString("hex"), now);
    if (entry) {
      entry.connection.receive(datagram, path, now);
      this.afterActivity(entry, now);
      return;
    }
    if (header.form === "short") {
      // RFC 9000 §10.3.1: a stateless reset carries an unpredictable DCID, so it cannot be routed by CID. A client
      // endpoint (a handful of connections) asks each whether the token is one of its peer's, the preferred
      // address's included (PA-15).
      if (!this.config.server && this.entries.size <= 64) {
        for (const entry of this.entries) {
          if (entry.connection.receiveStatelessReset(datagram, path, now)) {
            this.afterActivity(entry, now);
            return;
          }
        }
      }
      this.maybeStatelessReset(datagram, header, path, now);
      return;
    }
    if (header.type === "version_negotiation" || header.type === "retry") {
      this.drop("unknown_connection_id");
      return;
    }
    if (header.version !== QUIC_VERSION_1) {
      this.sendVersionNegotiation(datagram, header, path);
      return;
    }
    if (header.type !== "initial") {
      this.drop("unknown_connection_id");
      return;
    }
    this.acceptInitial(datagram, header, path, now);
  }

  pollTransmit(now: Instant): Transmit | undefined {
    const own = this.ownTransmits.shift();
    if (own) return own;
    for (const entry of this.dirty) {
      const t = entry.connection.pollTransmit(now);
      if (t) {
        // Round robin: move it to the back so others get a turn.
        this.dirty.delete(entry);
        this.dirty.add(entry);
        return t;
      }
      this.dirty.delete(entry);
      this.reschedule(entry);
    }
    return undefined;
  }

  nextTimeout(): Instant | undefined {
    for (let top = this.timers.peek(); top; top = this.timers.peek()) {
      if (this.entries.has(top.entry) && top.entry.deadline === top.at) return top.at;
      this.timers.pop();
    }
    return undefined;
  }

  handleTimeout(now: Instant): void {
    // Take every due entry first, then run each once: some deadlines (a due ACK, a pacing slot)
    // are met by the next pollTransmit, not by handleTimeout, and would otherwise come due again.
    const due: Entry[] = [];
    for (;;) {
      const at = this.nextTimeout();
      if (at === undefined || at > now) break;
      const { entry } = this.timers.pop()!;
      entry.deadline = undefined;
      due.push(entry);
    }
    for (const entry of due) {
      if (!this.entries.has(entry)) continue;
      entry.connection.handleTimeout(now);
      this.afterActivity(entry, now);
    }
  }

  pollEvent(): EndpointEvent | undefined {
    if (this.eventHead >= this.events.length) {
      this.events.length = 0;
      this.eventHead = 0;
      return undefined;
    }
    return this.events[this.eventHead++];
  }

  // ------------------------------------------------------------------------------------------

  private track(connection: Connection, now: Instant): Entry {
    const entry: Entry = { connection, routes: new Set(), routesFingerprint: -1, deadline: undefined };
    this.entries.add(entry);
    this.entryOf.set(connection, entry);
    this.afterActivity(entry, now);
    return entry;
  }

  private afterActivity(entry: Entry, now: Instant): void {
    const conn = entry.connection;
    this.syncRoutes(entry, now);
    for (let e = conn.pollEvent(); e; e = conn.pollEvent()) this.events.push({ type: "connection", connection: conn, event: e });
    if (conn.isClosed) {
      this.remove(entry, now);
      return;
    }
    this.dirty.add(entry);
    this.reschedule(entry);
  }

  private reschedule(entry: Entry): void {
    const at = entry.connection.nextTimeout();
    if (at === entry.deadline) return;
    entry.deadline = at;
    if (at === undefined) return;
    this.timers.push({ at, entry });
    // Stale items pile up when deadlines move often; drop them when they dominate.
    if (this.timers.size > 64 && this.timers.size > 4 * this.entries.size) {
      this.timers.retain((x) => this.entries.has(x.entry) && x.entry.deadline === x.at);
    }
  }

  /** Keep the grace table bounded: sweep when it outgrows the live connections. */
  private pruneRetiredRoutes(now: Instant): void {
    if (this.retiredRoutes.size <= 4 * this.entries.size + 64) return;
    for (const [key, r] of this.retiredRoutes) if (r.until < now || !this.entries.has(r.entry)) this.retiredRoutes.delete(key);
  }

  private routeByCid(key: string, now: Instant): Entry | undefined {
    const entry = this.byCid.get(key);
    if (entry) return entry;
    const retired = this.retiredRoutes.get(key);
    if (!retired) return undefined;
    if (retired.until < now || !this.entries.has(retired.entry)) {
      this.retiredRoutes.delete(key);
      return undefined;
    }
    this.counters.retiredCidRouted++;
    return retired.entry;
  }

  private syncRoutes(entry: Entry, now: Instant): void {
    const conn = entry.connection;
    // Runs after every datagram: rebuild (hex strings, Sets) only when the inputs changed. `issued` only
    // grows and `retired` only goes from false to true, so (count, retired count, ODCID wanted) changes
    // whenever the wanted set does. It was ~3% of the throughput profile (bench/quic-throughput.bench.ts).
    const issued = conn.localCids.issued;
    let retiredCount = 0;
    for (const c of issued) if (c.retired) retiredCount++;
    const wantsOdcid = conn.role === "server" && !conn.isHandshakeConfirmed;
    const fingerprint = issued.length * 65536 + retiredCount * 2 + (wantsOdcid ? 1 : 0);
    if (fingerprint === entry.routesFingerprint) return;
    entry.routesFingerprint = fingerprint;
    const wanted = new Set<string>();
    for (const c of conn.localCids.issued) if (!c.retired) wanted.add(c.connectionId.toString("hex"));
    // The client's first Initials (and their retransmissions) carry the original DCID until the handshake is done.
    if (conn.role === "server" && !conn.isHandshakeConfirmed) wanted.add(conn.originalDcid.toString("hex"));
    for (const key of entry.routes) {
      if (!wanted.has(key)) {
        entry.routes.delete(key);
        if (this.byCid.get(key) === entry) {
          this.byCid.delete(key);
          // Packets the peer sent with this CID before it retired it may still be in flight, e.g. on the old
          // path while the client moves to the preferred address and both server sockets are read in no
          // fixed order: keep them routable for 3 PTO rather than answer them with a stateless reset.
          this.retiredRoutes.set(key, { entry, until: now + 3 * conn.probeTimeoutMs });
          this.pruneRetiredRoutes(now);
        }
      }
    }
    for (const key of wanted) {
      if (!entry.routes.has(key)) {
        entry.routes.add(key);
        this.byCid.set(key, entry);
      }
    }
  }

  private remove(entry: Entry, now: Instant): void {
    for (const key of entry.routes) if (this.byCid.get(key) === entry) this.byCid.delete(key);
    entry.routes.clear();
    this.entries.delete(entry);
    this.dirty.delete(entry);
    this.pruneRetiredRoutes(now);
    entry.deadline = undefined;
    this.events.push({ type: "connectionRemoved", at: now, connection: entry.connection });
  }

  private acceptInitial(datagram: Uint8Array, header: ParsedHeader, path: PathAddress, now: Instant): void {
    const server = this.config.server;
    if (!server) {
      this.drop("not_accepting");
      return;
    }
    // RFC 9000 §14.1: a server discards an Initial in a datagram smaller than 1200 bytes.
    if (datagram.length < MIN_INITIAL_DATAGRAM_BYTES) {
      this.drop("initial_too_small");
      return;
    }
    // RFC 9000 §7.2: the client's first DCID is at least 8 bytes.
    if (header.dcid.length < 8) {
      this.drop("header_invalid");
      return;
    }
    if (this.config.maxConnections !== undefined && this.entries.size >= this.config.maxConnections) {
      this.drop("too_many_connections");
      return;
    }
    let validated: { odcid: Buffer; rscid: Buffer } | undefined;
    const token = header.token ?? new Uint8Array(0);
    if (token.length > 0) {
      validated = this.openRetryToken(token, path.remote, Buffer.from(header.dcid), now);
      if (!validated) {
        // RFC 9000 §8.1.3: an invalid token from Retry → drop (or close with INVALID_TOKEN); we drop.
        this.drop("invalid_token");
        return;
      }
    } else if (this.config.requireRetry) {
      this.sendRetry(header, path, now);
      return;
    }
    const connection = Connection.accept(
      { ...server, statelessResetKey: this.resetKey, connectionIdLength: this.cidLength },
      { dcid: header.dcid, scid: header.scid! },
      path,
      now,
      validated ? { addressValidated: true, originalDestinationConnectionId: validated.odcid, retrySourceConnectionId: validated.rscid } : {},
    );
    connection.receive(datagram, path, now);
    // Keep no state for an Initial that does not authenticate (corrupted, or garbage with a plausible
    // header): otherwise each one would hold a Connection until its idle timeout (test/quic/fuzz.test.ts).
    if (connection.stats.packetsReceived === 0) {
      this.drop("initial_undecryptable");
      return;
    }
    this.counters.accepted++;
    this.events.push({ type: "connectionAccepted", at: now, connection });
    this.track(connection, now);
  }

  private sendVersionNegotiation(datagram: Uint8Array, header: ParsedHeader, path: PathAddress): void {
    // RFC 9000 §6.1: only for datagrams large enough to be a first Initial, to limit amplification.
    if (datagram.length < MIN_INITIAL_DATAGRAM_BYTES) {
      this.drop("unsupported_version");
      return;
    }
    this.counters.versionNegotiationSent++;
    this.ownTransmits.push({ datagram: encodeVersionNegotiation(header.scid!, header.dcid, [QUIC_VERSION_1]), path });
  }

  private sendRetry(header: ParsedHeader, path: PathAddress, now: Instant): void {
    const rscid = randomBytes(this.cidLength);
    const token = this.sealRetryToken(path.remote, Buffer.from(header.dcid), rscid, now);
    this.counters.retrySent++;
    this.ownTransmits.push({
      datagram: encodeRetry({ version: QUIC_VERSION_1, dcid: header.scid!, scid: rscid, token, originalDestinationConnectionId: header.dcid }),
      path,
    });
  }

  /** Token = 'R' | issued-at (ms, 8 bytes) | odcid length | odcid | rscid length | rscid | HMAC(address, all before). */
  private sealRetryToken(client: SocketAddress, odcid: Buffer, rscid: Buffer, now: Instant): Buffer {
    const body = Buffer.alloc(1 + 8 + 1 + odcid.length + 1 + rscid.length);
    let o = body.writeUInt8(RETRY_TOKEN_PREFIX, 0);
    o = body.writeDoubleBE(now, o);
    o = body.writeUInt8(odcid.length, o);
    o += odcid.copy(body, o);
    o = body.writeUInt8(rscid.length, o);
    rscid.copy(body, o);
    return Buffer.concat([body, this.tokenMac(client, body)]);
  }

  private openRetryToken(token: Uint8Array, client: SocketAddress, dcid: Buffer, now: Instant): { odcid: Buffer; rscid: Buffer } | undefined {
    const t = Buffer.from(token);
    if (t.length < 1 + 8 + 1 + 1 + 32 || t[0] !== RETRY_TOKEN_PREFIX) return undefined;
    const body = t.subarray(0, t.length - 32);
    const mac = t.subarray(t.length - 32);
    if (!timingSafeEqual(mac, this.tokenMac(client, body))) return undefined;
    const issuedAt = body.readDoubleBE(1);
    if (now - issuedAt > (this.config.retryTokenLifetimeMs ?? 10_000) || issuedAt > now + 1000) return undefined;
    const odcidLength = body[9]!;
    if (10 + odcidLength + 1 > body.length) return undefined;
    const odcid = Buffer.from(body.subarray(10, 10 + odcidLength));
    const rscidLength = body[10 + odcidLength]!;
    const rscid = Buffer.from(body.subarray(11 + odcidLength, 11 + odcidLength + rscidLength));
    // The client must address its new Initial to the Retry's source CID (RFC 9000 §17.2.5.2).
    if (!rscid.equals(dcid)) return undefined;
    return { odcid, rscid };
  }

  private tokenMac(client: SocketAddress, body: Buffer): Buffer {
    return createHmac("sha256", this.tokenKey).update(formatSocketAddress(client)).update(body).digest();
  }

  private maybeStatelessReset(datagram: Uint8Array, header: ParsedHeader, path: PathAddress, now: Instant): void {
    this.drop("unknown_connection_id");
    // RFC 9000 §10.3: a reset must be smaller than the packet that triggered it and at least 21 bytes,
    // so tiny packets get none (which also ends reset loops).
    if (datagram.length < 43 || header.dcid.length !== this.cidLength) return;
    if (now - this.resetWindowStart >= 1000) {
      this.resetWindowStart = now;
      this.resetsInWindow = 0;
    }
    if (this.resetsInWindow >= (this.config.maxStatelessResetsPerSecond ?? 100)) {
      this.drop("stateless_reset_rate_limited");
      return;
    }
    this.resetsInWindow++;
    this.counters.statelessResetSent++;
    const token = statelessResetToken(this.resetKey, Buffer.from(header.dcid));
    this.ownTransmits.push({ datagram: encodeStatelessReset(token, datagram.length), path });
  }

  private drop(reason: EndpointDropReason): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
  }
}
