/**
 * A QUIC v1 connection, sans-I/O (STYLE.md; quinn-proto's Connection, aioquic's QuicConnection):
 * datagrams and the current time go in, datagrams, the next deadline and events come out.
 *
 *   conn.receive(datagram, path, now)   conn.pollTransmit(now)   conn.nextTimeout()
 *   conn.handleTimeout(now)             conn.pollEvent()
 *
 * No sockets, no timers, no clock here: the endpoint (endpoint.ts) or a simulated network drives it.
 */
import { randomBytes } from "node:crypto";
import {
  LocalConnectionIds,
  PeerConnectionIds,
  randomConnectionIdGenerator,
  type ConnectionIdGenerator,
} from "./connection-ids.ts";
import type { EncryptionLevel } from "./crypto/levels.ts";
import { CRYPTO_ERROR_BASE, QuicTransportError, TRANSPORT_ERROR_CODES } from "./errors.ts";
import type { CloseInitiator, ConnectionEvent } from "./events.ts";
import type { QlogFactory, QlogTrace } from "./qlog.ts";
import { encodedFrameLength, encodeFrame, parseFrames, FRAME_PROPERTIES, streamFrameOverhead, type Frame } from "./frames.ts";
import { KeyPhase } from "./key-phase.ts";
import { parseUnprotectedHeader, sealPacket, openPacket, type ParsedHeader } from "./packet-header.ts";
import { encodePacketNumberLength } from "./packet-number.ts";
import { deriveInitialSecrets, derivePacketKeys, type PacketKeys } from "./packet-protection.ts";
import { PacketSpace } from "./packet-space.ts";
import { Path, pathAddressEquals, type PathAddress, type SocketAddress } from "./path.ts";
import { Migration, type MigrationTimeline, type PreferredAddressPolicy } from "./migration.ts";
import type { RandomSource } from "./path-validation.ts";
import type { PreferredAddressEndpoint } from "./preferred-address.ts";
import { INITIAL_RTT_MS } from "./recovery/rtt-estimator.ts";
import { LossDetection, type SentPacket } from "./recovery/loss-detection.ts";
import type { PacketNumberSpace } from "./recovery/spaces.ts";
import { verifyRetryIntegrity } from "./retry.ts";
import { isStatelessReset, statelessResetToken } from "./stateless-reset.ts";
import { ConnectionRecvFlow, ConnectionSendFlow } from "./streams/flow-control.ts";
import { StreamMap } from "./streams/stream-map.ts";
import type { Instant } from "./time.ts";
import { TlsAlertError, TlsSession, type TlsConfig } from "./tls/tls-session.ts";
import {
  decodeTransportParameters,
  defaultTransportParameters,
  encodeTransportParameters,
  type TransportParameters,
} from "./transport-parameters.ts";
import { ByteWriter, ownedCopy, varintLength } from "./varint.ts";

export const QUIC_VERSION_1 = 0x00000001;
/** RFC 9000 §14.1: datagrams carrying Initial packets are at least this large. */
export const MIN_INITIAL_DATAGRAM_BYTES = 1200;
const AEAD_TAG_BYTES = 16;
/** Undecryptable packets kept while waiting for their keys (reordered handshake flights). */
const MAX_BUFFERED_PACKETS = 8;

export type Role = "client" | "server";

export interface ConnectionConfig {
  role: Role;
  /** TLS settings: ALPN, names, certificates, trust anchors. */
  tls: Omit<TlsConfig, "role" | "transportParameters">;
  /** Our transport parameters (RFC 9000 §18.2); CIDs and tokens are filled in by the connection. */
  transportParameters?: Partial<TransportParameters>;
  congestionControl?: "newreno" | "cubic";
  /** Largest UDP payload we send. 1200 is always safe (§14). */
  maxDatagramSizeBytes?: number;
  connectionIdLength?: number;
  connectionIdGenerator?: ConnectionIdGenerator;
  /** Key for stateless reset tokens (RFC 9000 §10.3.2); shared by the endpoint so tokens survive state loss. */
  statelessResetKey?: Buffer;
  /** qlog (qlog.ts): called once per connection; absent = no qlog work at all. */
  qlog?: QlogFactory;
  initialRttMs?: number;
  /** Per-stream send buffer (backpressure threshold). */
  streamSendBufferBytes?: number;
  /** Upper bound of the auto-tuned stream receive window. */
  maxStreamWindowBytes?: number;
  /** Upper bound of the auto-tuned connection receive window. */
  maxConnectionWindowBytes?: number;
  /** Server: the addresses to offer in preferred_address (RFC 9000 §9.6); the endpoint must listen there too. */
  preferredAddress?: { ipv4?: PreferredAddressEndpoint; ipv6?: PreferredAddressEndpoint };
  /** Client: what to do with a server's preferred address (default "follow"). */
  preferredAddressPolicy?: PreferredAddressPolicy;
  /** Unpredictable bytes for PATH_CHALLENGE (RFC 9000 §8.2.1); node:crypto by default, seeded in tests. */
  random?: RandomSource;
}

export interface Transmit {
  datagram: Buffer;
  path: PathAddress;
}

/** What a sent packet carried, so that loss and acknowledgement can act on it. */
type SentFrame =
  | { kind: "crypto"; offset: number; length: number }
  | { kind: "stream"; streamId: number; offset: number; length: number; fin: boolean }
  | { kind: "ack"; largest: number }
  | { kind: "max_data" }
  | { kind: "max_stream_data"; streamId: number }
  | { kind: "handshake_done" }
  | { kind: "control"; frame: Frame }
  | { kind: "ping" };

export type ConnectionState = "handshake" | "established" | "closing" | "draining" | "closed";

/** Counted drops, by reason: a malformed or unexpected packet is never an exception out of here. */
export type DropReason =
  | "header_invalid"
  | "unknown_connection_id"
  | "keys_unavailable"
  | "decrypt_failed"
  | "duplicate"
  | "zero_rtt_unsupported"
  | "unexpected_version_negotiation"
  | "unexpected_retry"
  | "closing"
  /** PA-13: a client discards packets from a server address it is not using or validating. */
  | "unknown_server_address"
  /** Too many paths at once and none could be evicted (a flood of new addresses). */
  | "path_limit";

export interface ConnectionStats {
  packetsSent: number;
  packetsReceived: number;
  bytesSent: number;
  bytesReceived: number;
  packetsLost: number;
  drops: Partial<Record<DropReason, number>>;
}

const SPACE_ORDER: readonly PacketNumberSpace[] = ["initial", "handshake", "application"];

export class Connection {
  readonly role: Role;
  state: ConnectionState = "handshake";
  readonly stats: ConnectionStats = { packetsSent: 0, packetsReceived: 0, bytesSent: 0, bytesReceived: 0, packetsLost: 0, drops: {} };
  /** Times of the handshake milestones (monotonic, ms); the migration timeline extends this. */
  readonly timeline: { started: Instant; handshakeCompleted?: Instant; handshakeConfirmed?: Instant; closed?: Instant } & MigrationTimeline;
  /** Path validation and migration (RFC 9000 §8.2, §9; preferred address §9.6). */
  readonly migration: Migration;

  private readonly config: ConnectionConfig;
  private readonly maxDatagramSizeBytes: number;
  private readonly tls: TlsSession;
  private readonly spaces: Record<PacketNumberSpace, PacketSpace>;
  private keyPhase: KeyPhase | undefined;
  private readonly localTransportParameters: TransportParameters;
  private peerTransportParameters: TransportParameters | undefined;
  readonly localCids: LocalConnectionIds;
  peerCids: PeerConnectionIds;
  /**
   * The DCID of the client's Initial that Initial keys derive from. The client checks the server's
   * original_destination_connection_id and a Retry's integrity tag against it; the server routes by it.
   */
  private readonly originalDestinationConnectionId: Buffer;
  private retrySourceConnectionId: Buffer | undefined;
  private retryToken: Buffer = Buffer.alloc(0);
  private receivedFirstServerPacket = false;
  readonly paths: Path[] = [];
  activePath: Path;
  private nextPathId = 1;
  private readonly loss = new LossDetection<SentFrame[]>();
  private streams: StreamMap | undefined;
  private sendFlow: ConnectionSendFlow | undefined;
  private readonly recvFlow: ConnectionRecvFlow;
  private readonly events: ConnectionEvent[] = [];
  private eventHead = 0;
  private handshakeDonePending = false;
  private maxDataPending = false;
  private readonly maxStreamDataPending = new Set<number>();
  /** A lost MAX_DATA / MAX_STREAM_DATA is repeated with the current limit (RFC 9000 §13.3). */
  private maxDataLost = false;
  private readonly maxStreamDataLost = new Set<number>();
  private readonly maxStreamDataRepeat = new Set<number>();
  /** The last STREAMS_BLOCKED limit queued, [bidi, uni]. */
  private readonly streamsBlockedSent: [number, number] = [-1, -1];
  private readonly controlFrames: Frame[] = [];
  private readonly datagramsOut: Buffer[] = [];
  private readonly readableNotified = new Set<number>();
  private readonly wantsWritable = new Set<number>();
  private readonly bufferedPackets: Array<{ datagram: Uint8Array; header: ParsedHeader; path: Path }> = [];
  private idleDeadline: Instant | undefined;
  private idleTimeoutMs = 0;
  private ackElicitingSentSinceReceive = false;
  private pacingDeadline: Instant | undefined;
  private closeDeadline: Instant | undefined;
  private closeFrame: Frame | undefined;
  private closeSendPending = false;
  private packetsSinceClose = 0;
  private peerCompletedAddressValidation: boolean;
  private handshakeKeysAvailable = false;
  private readonly resetKey: Buffer;
  /** qlog trace; every hook is `this.qlog?.…` so that off costs one undefined check. */
  private readonly qlog: QlogTrace | undefined;

  /**
   * `ids.odcid` is the DCID of the Initial that keys derive from; after a Retry the server also
   * gets the first Initial's DCID and its Retry's SCID, which its transport parameters carry (§7.3).
   */
  private constructor(
    config: ConnectionConfig,
    path: PathAddress,
    now: Instant,
    ids: { odcid: Buffer; peerCid: Buffer; serverValidated: boolean; retry?: { originalDestinationConnectionId: Buffer; retrySourceConnectionId: Buffer } },
  ) {
    this.config = config;
    this.role = config.role;
    this.timeline = { started: now };
    this.maxDatagramSizeBytes = config.maxDatagramSizeBytes ?? MIN_INITIAL_DATAGRAM_BYTES;
    this.resetKey = config.statelessResetKey ?? randomBytes(32);
    const cidLength = config.connectionIdLength ?? 8;
    this.localCids = new LocalConnectionIds(
      config.connectionIdGenerator ?? randomConnectionIdGenerator(cidLength),
      (cid) => statelessResetToken(this.resetKey, cid),
    );
    const ownInitialCid = this.localCids.issue(false);
    this.originalDestinationConnectionId = ids.odcid;
    this.spaces = {
      initial: new PacketSpace("initial"),
      handshake: new PacketSpace("handshake"),
      application: new PacketSpace("application"),
    };
    const initial = deriveInitialSecrets(ids.odcid);
    const initialKeys = this.deriveInitialKeys(initial);
    this.spaces.initial.readKeys = initialKeys.read;
    this.spaces.initial.writeKeys = initialKeys.write;

    this.localTransportParameters = {
      ...defaultTransportParameters(),
      maxIdleTimeoutMs: 30_000,
      initialMaxData: 1 << 20,
      initialMaxStreamDataBidiLocal: 256 * 1024,
      initialMaxStreamDataBidiRemote: 256 * 1024,
      initialMaxStreamDataUni: 256 * 1024,
      initialMaxStreamsBidi: 100,
      initialMaxStreamsUni: 100,
      activeConnectionIdLimit: 4,
      ...config.transportParameters,
      initialSourceConnectionId: ownInitialCid.connectionId,
    };
    if (this.role === "server") {
      this.localTransportParameters.originalDestinationConnectionId = ids.retry?.originalDestinationConnectionId ?? ids.odcid;
      this.localTransportParameters.retrySourceConnectionId = ids.retry?.retrySourceConnectionId;
      this.localTransportParameters.statelessResetToken = ownInitialCid.statelessResetToken;
    }
    if (this.role === "server" && config.preferredAddress && (config.preferredAddress.ipv4 || config.preferredAddress.ipv6)) {
      // PA-04: the preferred address carries the CID of sequence 1 and its reset token (§5.1.1); PA-03: never zero-length.
      const preferredCid = this.localCids.issue(false);
      this.localTransportParameters.preferredAddress = {
        ...config.preferredAddress,
        connectionId: preferredCid.connectionId,
        statelessResetToken: preferredCid.statelessResetToken,
      };
    }
    this.peerCids = new PeerConnectionIds(
      { sequenceNumber: 0, connectionId: ids.peerCid, statelessResetToken: undefined, inUseByPath: 0 },
      this.localTransportParameters.activeConnectionIdLimit,
    );
    this.recvFlow = new ConnectionRecvFlow(this.localTransportParameters.initialMaxData, config.maxConnectionWindowBytes ?? 16 << 20);
    const first = new Path(0, path, {
      validated: this.role === "client" || ids.serverValidated,
      congestionControl: config.congestionControl ?? "cubic",
      maxDatagramSizeBytes: this.maxDatagramSizeBytes,
      initialRttMs: config.initialRttMs,
    });
    this.paths.push(first);
    this.activePath = first;
    this.migration = this.createMigration(config);
    // quic-events-12 §1.1: the trace is named and grouped by the client's first DCID, also after a Retry.
    this.qlog = config.qlog?.({ role: this.role, originalDestinationConnectionId: ids.retry?.originalDestinationConnectionId ?? ids.odcid, now });
    if (this.qlog) {
      this.qlog.connectionStarted(now, path, { dcid: ids.peerCid, scid: ownInitialCid.connectionId });
      this.qlog.parametersSet(now, "local", this.localTransportParameters);
      for (const side of ["client", "server"]) this.qlog.keyUpdated(now, `${side}_initial_secret`, undefined);
    }
    // RFC 9002 §6.2.2.1: a server always considers the peer to have validated its address.
    this.peerCompletedAddressValidation = this.role === "server";
    this.tls = new TlsSession({
      ...config.tls,
      role: this.role,
      transportParameters: encodeTransportParameters(this.localTransportParameters, this.role),
    });
    this.idleTimeoutMs = this.localTransportParameters.maxIdleTimeoutMs;
    this.idleDeadline = this.idleTimeoutMs > 0 ? now + this.idleTimeoutMs : undefined;
  }

  /** A client connection toward `path.remote`. Call pollTransmit() to get its first Initial. */
  static connect(config: Omit<ConnectionConfig, "role">, path: PathAddress, now: Instant): Connection {
    // RFC 9000 §7.2: the client's first DCID is unpredictable, at least 8 bytes.
    const odcid = randomBytes(8);
    const conn = new Connection({ ...config, role: "client" }, path, now, { odcid, peerCid: odcid, serverValidated: true });
    conn.tls.start();
    conn.pumpTls(now);
    return conn;
  }

  /**
   * A server connection for a client's first Initial. The endpoint parsed `header` and calls
   * receive() with the datagram right after. `addressValidated` is true when a Retry token proved the address.
   */
  static accept(
    config: Omit<ConnectionConfig, "role">,
    header: { dcid: Uint8Array; scid: Uint8Array },
    path: PathAddress,
    now: Instant,
    opts: { addressValidated?: boolean; originalDestinationConnectionId?: Buffer; retrySourceConnectionId?: Buffer } = {},
  ): Connection {
    return new Connection({ ...config, role: "server" }, path, now, {
      odcid: ownedCopy(header.dcid),
      peerCid: ownedCopy(header.scid),
      serverValidated: opts.addressValidated ?? false,
      retry: opts.originalDestinationConnectionId && opts.retrySourceConnectionId
        ? { originalDestinationConnectionId: opts.originalDestinationConnectionId, retrySourceConnectionId: opts.retrySourceConnectionId }
        : undefined,
    });
  }

  // ------------------------------------------------------------------------------------------
  // Public sans-I/O interface
  // ------------------------------------------------------------------------------------------

  receive(datagram: Uint8Array, pathAddress: PathAddress, now: Instant): void {
    if (this.state === "closed" || this.state === "draining") return;
    // Frames acknowledged or handled on receipt are timed with this datagram's arrival.
    this.lastNow = Math.max(this.lastNow, now);
    const path = this.pathFor(pathAddress);
    if (!path) return;
    path.bytesReceived += datagram.length;
    this.stats.bytesReceived += datagram.length;
    this.qlog?.datagramReceived(now, datagram.length, path);
    let offset = 0;
    while (offset < datagram.length) {
      let header: ParsedHeader;
      try {
        header = parseUnprotectedHeader(datagram, offset, this.localCids.issued[0]!.connectionId.length);
      } catch (err) {
        this.countDrop("header_invalid", err);
        return;
      }
      try {
        this.receivePacket(datagram, header, path, now);
      } catch (err) {
        this.onError(err, now);
        return;
      }
      if (this.isTerminating()) return;
      offset = header.packetEnd;
    }
  }

  pollTransmit(now: Instant): Transmit | undefined {
    if (this.state === "closed" || this.state === "draining") return undefined;
    if (this.state === "closing") return this.transmitClose(now);
    const probe = this.keyPhase ? this.migration.probePath(now) : undefined;
    if (probe) {
      const t = this.buildProbeDatagram(probe, now);
      if (t) return t;
    }
    const path = this.activePath;
    const datagram = this.buildDatagram(path, now);
    if (!datagram) return undefined;
    path.bytesSent += datagram.length;
    this.stats.bytesSent += datagram.length;
    return { datagram, path: path.address };
  }

  nextTimeout(): Instant | undefined {
    if (this.state === "closed") return undefined;
    let next: Instant | undefined;
    const consider = (t: Instant | undefined): void => {
      if (t !== undefined && (next === undefined || t < next)) next = t;
    };
    consider(this.closeDeadline);
    if (this.state === "closing" || this.state === "draining") return next;
    consider(this.idleDeadline);
    consider(this.lossTimer());
    for (const name of SPACE_ORDER) {
      const space = this.spaces[name];
      if (!space.discarded) consider(space.acks.ackDeadline(this.localMaxAckDelayMs(name)));
    }
    if (this.pacingDeadline !== undefined && this.hasPendingData()) consider(this.pacingDeadline);
    consider(this.keyPhase?.previousReadDiscardAt);
    consider(this.migration.nextTimeout());
    return next;
  }

  handleTimeout(now: Instant): void {
    if (this.state === "closed") return;
    if (this.closeDeadline !== undefined && now >= this.closeDeadline) {
      this.state = "closed";
      this.timeline.closed ??= now;
      this.qlog?.closed(now);
      return;
    }
    if (this.state === "closing" || this.state === "draining") return;
    if (this.idleDeadline !== undefined && now >= this.idleDeadline) {
      // RFC 9000 §10.1: silently closed, no CONNECTION_CLOSE.
      this.enterClosed(now, "idle_timeout", TRANSPORT_ERROR_CODES.NO_ERROR, false, "idle timeout");
      return;
    }
    const lossAt = this.lossTimer();
    if (lossAt !== undefined && now >= lossAt) this.onLossTimer(now);
    if (this.pacingDeadline !== undefined && now >= this.pacingDeadline) this.pacingDeadline = undefined;
    this.keyPhase?.dropPreviousIfDue(now);
    this.migration.onTimeout(now);
  }

  pollEvent(): ConnectionEvent | undefined {
    if (this.eventHead >= this.events.length) {
      if (this.events.length > 0) {
        this.events.length = 0;
        this.eventHead = 0;
      }
      return undefined;
    }
    const event = this.events[this.eventHead++];
    // Path and migration events, state changes and closes reach qlog as the owner sees them.
    if (event) this.qlog?.connectionEvent(event, this.state, (a) => this.paths.find((p) => pathAddressEquals(p.address, a))?.id);
    return event;
  }

  /** Draining or closed: nothing more is sent or processed. */
  private isTerminating(): boolean {
    return this.state === "closed" || this.state === "draining";
  }

  get isClosed(): boolean {
    return this.state === "closed";
  }

  get isHandshakeConfirmed(): boolean {
    return this.timeline.handshakeConfirmed !== undefined;
  }

  get alpn(): string | undefined {
    return this.tls.alpn;
  }

  get peerParameters(): Readonly<TransportParameters> | undefined {
    return this.peerTransportParameters;
  }

  get localParameters(): Readonly<TransportParameters> {
    return this.localTransportParameters;
  }

  /** The DCID the client's first Initial carried (endpoints route by it until the handshake is done). */
  /** The current probe timeout (RFC 9002 §6.2.1) of the active path, in ms. */
  get probeTimeoutMs(): number {
    return this.ptoMs();
  }

  get originalDcid(): Buffer {
    return this.originalDestinationConnectionId;
  }

  // ------------------------------------------------------------------------------------------
  // Application interface: streams, datagrams, close, key update
  // ------------------------------------------------------------------------------------------

  /** Open a stream; undefined when the peer's MAX_STREAMS limit is reached (a STREAMS_BLOCKED is queued). */
  openStream(bidirectional = true): number | undefined {
    const streams = this.requireStreams();
    const id = streams.openStream(bidirectional);
    if (id === undefined) {
      // RFC 9000 §4.6: say once per limit that we are blocked; repeated attempts add nothing.
      const limit = streams.peerStreamLimit(bidirectional);
      const queued = this.controlFrames.some((f) => f.type === "streams_blocked" && f.bidi === bidirectional && f.limit === limit);
      if (!queued && this.streamsBlockedSent[bidirectional ? 0 : 1] !== limit) {
        this.streamsBlockedSent[bidirectional ? 0 : 1] = limit;
        this.controlFrames.push({ type: "streams_blocked", bidi: bidirectional, limit });
      }
    }
    return id;
  }

  /** Buffer data on a stream; returns the bytes accepted (less than given = backpressure, wait for streamWritable). */
  streamWrite(streamId: number, data: Uint8Array): number {
    const stream = this.requireStreams().get(streamId)?.send;
    if (!stream) throw new QuicStreamUsageError(`stream ${streamId} has no send side`);
    const accepted = stream.write(data);
    if (accepted < data.length) this.wantsWritable.add(streamId);
    return accepted;
  }

  streamFinish(streamId: number): void {
    const stream = this.requireStreams().get(streamId)?.send;
    if (!stream) throw new QuicStreamUsageError(`stream ${streamId} has no send side`);
    stream.finish();
  }

  /** Read contiguous bytes; undefined when nothing is readable now. */
  streamRead(streamId: number, maxBytes?: number): Buffer | undefined {
    const recv = this.streams?.get(streamId)?.recv;
    if (!recv) return undefined;
    const data = recv.read(maxBytes);
    if (data && data.length > 0) {
      this.recvFlow.onBytesConsumed(data.length);
      this.maxStreamDataPending.add(streamId);
      this.maxDataPending = true;
    }
    if (recv.readableBytes === 0) this.readableNotified.delete(streamId);
    if (recv.finished) this.streams!.collect(streamId);
    return data;
  }

  /** All of the stream's data has been read and its FIN received. */
  streamIsFinished(streamId: number): boolean {
    const recv = this.streams?.get(streamId)?.recv;
    if (recv) return recv.finished;
    // A finished stream removes itself once both halves are done.
    return this.streams?.isClosed(streamId) ?? false;
  }

  streamReset(streamId: number, errorCode: number): void {
    const send = this.requireStreams().get(streamId)?.send;
    if (!send) return;
    const finalSize = send.reset(errorCode);
    if (finalSize !== undefined) this.controlFrames.push({ type: "reset_stream", streamId, errorCode, finalSize });
  }

  streamStopSending(streamId: number, errorCode: number): void {
    const recv = this.requireStreams().get(streamId)?.recv;
    if (!recv) return;
    recv.stopSending(errorCode);
    this.controlFrames.push({ type: "stop_sending", streamId, errorCode });
    this.returnDiscardedCredit();
  }

  /** RFC 9221: unreliable datagram; false when the peer does not accept them or it is too large. */
  sendDatagram(data: Uint8Array): boolean {
    const limit = this.peerTransportParameters?.maxDatagramFrameSize ?? 0;
    if (limit === 0 || data.length + 1 + varintLength(data.length) > Math.min(limit, this.maxDatagramSizeBytes - 64)) return false;
    this.datagramsOut.push(Buffer.from(data));
    return true;
  }

  /** Start a key update (RFC 9001 §6); false when not permitted yet (handshake unconfirmed, or the last update not yet acknowledged). */
  initiateKeyUpdate(now: Instant): boolean {
    if (!this.keyPhase || !this.isHandshakeConfirmed || !this.keyPhase.canInitiate()) return false;
    this.keyPhase.initiate();
    this.events.push({ type: "keyUpdated", at: now, keyPhase: this.keyPhase.phase, initiator: "local" });
    return true;
  }

  /** Close the connection (RFC 9000 §10.2). Application close unless `transport` is set. */
  close(now: Instant, errorCode = 0, reason = "", opts: { transport?: boolean } = {}): void {
    if (this.state === "closing" || this.state === "draining" || this.state === "closed") return;
    const isApplication = !opts.transport;
    this.startClosing(now, { errorCode, reason, isApplication, frameType: 0 }, "local");
  }

  /** State for inspection and, later, handoff between backends: plain data. */
  toJSON(): object {
    return {
      role: this.role,
      state: this.state,
      timeline: this.timeline,
      localCids: this.localCids.toJSON(),
      peerCids: this.peerCids.toJSON(),
      paths: this.paths.map((p) => p.toJSON()),
      activePathId: this.activePath.id,
      migration: this.migration.toJSON(),
      streams: this.streams?.toJSON(),
      stats: this.stats,
    };
  }

  // ------------------------------------------------------------------------------------------
  // Receiving
  // ------------------------------------------------------------------------------------------

  private pathFor(address: PathAddress): Path | undefined {
    const known = this.paths.find((p) => pathAddressEquals(p.address, address));
    if (known) return known;
    if (this.role === "client") {
      // PA-13: a client only hears the server on addresses it uses or validates (§9).
      this.countDrop("unknown_server_address");
      return undefined;
    }
    // A new 4-tuple. Migration (path validation, §9) decides whether it becomes active; until then it is a
    // candidate that never receives more than 3× what it sent us unless its address is already proven (PA-20, PA-27).
    const path = this.migration.admitPath(address, { validated: false, amplificationLimited: !this.migration.peerAddressProven(address.remote) });
    if (!path) this.countDrop("path_limit");
    return path;
  }

  /** A new path with fresh RTT estimate and congestion state (RFC 9000 §9.4; PA-14). */
  private newPath(address: PathAddress, opts: { validated: boolean; amplificationLimited: boolean }): Path {
    const path = new Path(this.nextPathId++, address, {
      ...opts,
      congestionControl: this.config.congestionControl ?? "cubic",
      maxDatagramSizeBytes: this.maxDatagramSizeBytes,
      initialRttMs: this.config.initialRttMs,
    });
    this.paths.push(path);
    return path;
  }

  private createMigration(config: ConnectionConfig): Migration {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the host reads live connection state
    const conn = this;
    return new Migration(
      {
        role: this.role,
        paths: this.paths,
        get activePath() {
          return conn.activePath;
        },
        set activePath(p: Path) {
          conn.activePath = p;
        },
        get peerCids() {
          return conn.peerCids;
        },
        localCids: this.localCids,
        timeline: this.timeline,
        random: config.random ?? randomBytes,
        emit: (e) => this.events.push(e),
        newPath: (address, opts) => this.newPath(address, opts),
        ptoMs: (path) => path.rtt.ptoBaseMs() + (this.isHandshakeConfirmed ? this.peerMaxAckDelayMs() : 0),
        initialPtoMs: () => (this.config.initialRttMs ?? INITIAL_RTT_MS) * 3 + this.peerMaxAckDelayMs(),
        peerPreferredAddress: () => this.peerTransportParameters?.preferredAddress,
        peerDisablesActiveMigration: () => this.peerTransportParameters?.disableActiveMigration ?? false,
        isHandshakeConfirmed: () => this.isHandshakeConfirmed,
      },
      config.preferredAddressPolicy ?? "follow",
    );
  }

  /**
   * A datagram the endpoint could not route: is it a stateless reset from our peer (RFC 9000 §10.3.1)? Only on a
   * path we use or validate, and only with a token of a CID the peer gave us (the preferred address's too: PA-15).
   */
  receiveStatelessReset(datagram: Uint8Array, pathAddress: PathAddress, now: Instant): boolean {
    if (this.state === "closed" || this.state === "draining") return false;
    if (!this.paths.some((p) => pathAddressEquals(p.address, pathAddress))) return false;
    if (!isStatelessReset(datagram, (t) => this.peerCids.isStatelessResetToken(t))) return false;
    this.enterClosed(now, "stateless_reset", TRANSPORT_ERROR_CODES.NO_ERROR, false, "stateless reset");
    return true;
  }

  /**
   * Client active migration (RFC 9000 §9.2): validate a path from `newLocal` and move there when it validates,
   * staying put if it does not. False when not permitted now (see Migration.migrate).
   */
  migrate(newLocal: SocketAddress, now: Instant): boolean {
    return this.migration.migrate(newLocal, now);
  }

  private receivePacket(datagram: Uint8Array, header: ParsedHeader, path: Path, now: Instant): void {
    if (this.state === "closing") {
      this.countDrop("closing");
      // RFC 9000 §10.2.1: answer with CONNECTION_CLOSE, at a decreasing rate.
      this.packetsSinceClose++;
      if ((this.packetsSinceClose & (this.packetsSinceClose - 1)) === 0) this.closeSendPending = true;
      return;
    }
    if (header.form === "long" && header.type === "version_negotiation") {
      this.onVersionNegotiation(header, now);
      return;
    }
    if (header.form === "long" && header.type === "retry") {
      this.onRetry(datagram, header, now);
      return;
    }
    if (header.form === "long" && header.version !== QUIC_VERSION_1) {
      this.countDrop("header_invalid");
      return;
    }
    if (header.type === "0rtt") {
      this.countDrop("zero_rtt_unsupported");
      return;
    }
    if (!this.isOurDcid(header.dcid)) {
      this.countDrop("unknown_connection_id");
      return;
    }
    const spaceName: PacketNumberSpace = header.type === "initial" ? "initial" : header.type === "handshake" ? "handshake" : "application";
    const space = this.spaces[spaceName];
    if (space.discarded) {
      this.countDrop("keys_unavailable");
      return;
    }
    const opened = this.openWithKeys(datagram, header, space, now);
    if (opened === "no_keys") {
      if (this.bufferedPackets.length < MAX_BUFFERED_PACKETS) {
        this.bufferedPackets.push({ datagram: datagram.subarray(0, header.packetEnd), header, path });
        this.qlog?.packetBuffered(now, header.type, header.packetEnd - (header.offset ?? 0), path.id);
      } else {
        this.countDrop("keys_unavailable");
      }
      return;
    }
    if (opened === undefined) {
      if (header.form === "short" && isStatelessReset(datagram.subarray(header.offset ?? 0, header.packetEnd), (t) => this.peerCids.isStatelessResetToken(t))) {
        this.enterClosed(now, "stateless_reset", TRANSPORT_ERROR_CODES.NO_ERROR, false, "stateless reset");
        return;
      }
      this.countDrop("decrypt_failed");
      return;
    }
    const { packetNumber, payload } = opened;
    if (space.acks.isDuplicate(packetNumber)) {
      this.countDrop("duplicate");
      return;
    }
    this.stats.packetsReceived++;
    if (this.role === "client" && header.form === "long" && !this.receivedFirstServerPacket) {
      // RFC 9000 §7.2: the client switches to the server's chosen SCID.
      this.receivedFirstServerPacket = true;
      this.peerCids.replaceInitial(ownedCopy(header.scid!));
    }
    const frames = parseFrames(payload, header.type === "1rtt" ? "1rtt" : header.type);
    this.qlog?.packetReceived(now, {
      packetType: header.type, packetNumber, dcid: header.dcid, scid: header.scid, keyPhaseBit: (opened as { keyPhase?: 0 | 1 }).keyPhase,
      frames, lengthBytes: header.packetEnd - (header.offset ?? 0), pathId: path.id,
    });
    let ackEliciting = false;
    let nonProbing = false;
    const largest = packetNumber > space.largestReceived;
    for (const frame of frames) {
      if (FRAME_PROPERTIES[frame.type].ackEliciting) ackEliciting = true;
      if (!FRAME_PROPERTIES[frame.type].probing) nonProbing = true;
      this.handleFrame(frame, space, path, header, now);
      if (this.streams) for (const id of this.streams.drainOpened()) this.events.push({ type: "streamOpened", at: now, streamId: id });
      if (this.state !== "handshake" && this.state !== "established") break;
    }
    space.largestReceived = Math.max(space.largestReceived, packetNumber);
    space.acks.onPacketReceived(packetNumber, ackEliciting, now);
    if (this.keyPhase && spaceName === "application") {
      this.keyPhase.largestReceivedInPhase = Math.max(this.keyPhase.largestReceivedInPhase, packetNumber);
    }
    this.ackElicitingSentSinceReceive = false;
    this.resetIdleTimer(now);
    // PA-28: a non-probing packet with the largest PN may move the peer's path (§9.3).
    if (spaceName === "application" && this.state === "established") this.migration.onPacketReceived(path, nonProbing, largest, now);
    if (spaceName === "handshake" && this.role === "server") {
      // RFC 9000 §8.1: a Handshake packet proves the client's address; §4.9.1: the server drops Initial keys.
      this.activePath.validated = true;
      this.discardSpace("initial");
    }
  }

  /** Decrypt with the space's keys; "no_keys" when they are not installed yet. */
  private openWithKeys(
    datagram: Uint8Array,
    header: ParsedHeader,
    space: PacketSpace,
    now: Instant,
  ): { packetNumber: number; payload: Buffer } | "no_keys" | undefined {
    if (space.name !== "application") {
      if (!space.readKeys) return "no_keys";
      return openPacket(datagram, header, space.readKeys, space.largestReceived);
    }
    const kp = this.keyPhase;
    if (!kp) return "no_keys";
    const readPhase = kp.readPhase;
    const opened = openPacket(datagram, header, (bit) => (bit === readPhase ? kp.read : kp.nextRead), space.largestReceived);
    if (opened) {
      if (opened.keyPhase !== readPhase) {
        if (!this.isHandshakeConfirmed) {
          throw new QuicTransportError("KEY_UPDATE_ERROR", "key update before the handshake was confirmed");
        }
        const initiator = kp.onNextPhaseAuthenticated(now, this.ptoMs());
        if (initiator === "peer") this.events.push({ type: "keyUpdated", at: now, keyPhase: kp.phase, initiator: "peer" });
      }
      return opened;
    }
    // A reordered packet of the previous phase (RFC 9001 §6.5).
    if (kp.previousRead) return openPacket(datagram, header, kp.previousRead, space.largestReceived);
    return undefined;
  }

  private isOurDcid(dcid: Uint8Array): boolean {
    if (this.localCids.has(dcid)) return true;
    // Until the handshake is done the client's Initial (and 0-RTT) packets use the original DCID.
    return this.role === "server" && Buffer.compare(this.originalDestinationConnectionId, dcid) === 0;
  }

  private handleFrame(frame: Frame, space: PacketSpace, path: Path, header: ParsedHeader, now: Instant): void {
    switch (frame.type) {
      case "padding":
      case "ping":
        return;
      case "ack":
        return this.onAck(frame, space, now);
      case "crypto":
        return this.onCrypto(frame, space, now);
      case "stream":
        return this.onStream(frame, now);
      case "reset_stream": {
        const s = this.requireStreams().getOrCreateForFrame(frame.streamId, "reset_stream");
        if (!s?.recv) return;
        const before = s.recv.highestReceivedOffset;
        s.recv.onResetStream(frame.errorCode, frame.finalSize);
        this.recvFlow.onBytesReceived(Math.max(0, s.recv.highestReceivedOffset - before));
        this.events.push({ type: "streamReset", at: now, streamId: frame.streamId, errorCode: frame.errorCode });
        this.returnDiscardedCredit();
        return;
      }
      case "stop_sending": {
        const s = this.requireStreams().getOrCreateForFrame(frame.streamId, "stop_sending");
        if (!s?.send) return;
        // RFC 9000 §3.5: answer STOP_SENDING with RESET_STREAM.
        const finalSize = s.send.onStopSending(frame.errorCode);
        if (finalSize !== undefined) this.controlFrames.push({ type: "reset_stream", streamId: frame.streamId, errorCode: frame.errorCode, finalSize });
        this.events.push({ type: "stopSendingReceived", at: now, streamId: frame.streamId, errorCode: frame.errorCode });
        return;
      }
      case "max_data":
        this.sendFlow?.updateLimit(frame.maximumData);
        return;
      case "max_stream_data": {
        const s = this.requireStreams().getOrCreateForFrame(frame.streamId, "max_stream_data");
        s?.send?.updateSendLimit(frame.maximumStreamData);
        return;
      }
      case "max_streams":
        this.requireStreams().onMaxStreams(frame.bidi, frame.maximumStreams);
        return;
      case "data_blocked":
      case "streams_blocked":
        return;
      case "stream_data_blocked":
        this.requireStreams().getOrCreateForFrame(frame.streamId, "stream_data_blocked");
        return;
      case "new_token":
        if (this.role === "server") throw new QuicTransportError("PROTOCOL_VIOLATION", "client sent NEW_TOKEN", 0x07);
        return;
      case "new_connection_id":
        this.peerCids.onNewConnectionId(frame);
        return;
      case "retire_connection_id": {
        const retired = this.localCids.onRetire(frame.sequenceNumber, header.dcid);
        if (retired) this.localCids.topUp(this.peerActiveConnectionIdLimit());
        return;
      }
      case "path_challenge":
        // RFC 9000 §8.2.2: echo on the path the challenge arrived on (PA-22).
        this.migration.onPathChallenge(path, frame.data, now);
        return;
      case "path_response":
        this.migration.onPathResponse(path, frame.data, now);
        return;
      case "connection_close":
        this.onConnectionClose(frame, now);
        return;
      case "handshake_done":
        if (this.role === "server") throw new QuicTransportError("PROTOCOL_VIOLATION", "client sent HANDSHAKE_DONE", 0x1e);
        this.onHandshakeConfirmed(now);
        return;
      case "datagram":
        if ((this.localTransportParameters.maxDatagramFrameSize ?? 0) === 0) {
          throw new QuicTransportError("PROTOCOL_VIOLATION", "DATAGRAM frame without max_datagram_frame_size", 0x30);
        }
        this.events.push({ type: "datagramReceived", at: now, data: Buffer.from(frame.data) });
        return;
    }
  }

  private onAck(frame: Extract<Frame, { type: "ack" }>, space: PacketSpace, now: Instant): void {
    const ackDelayMs = space.name === "application" ? (frame.ackDelay * 2 ** this.peerAckDelayExponent()) / 1000 : 0;
    const result = this.loss.onAckReceived(space.name, frame.ranges, ackDelayMs, this.activePath.rtt, {
      handshakeConfirmed: this.isHandshakeConfirmed,
      maxAckDelayMs: this.peerMaxAckDelayMs(),
      peerAddressValidated: this.peerCompletedAddressValidation || space.name === "handshake",
    }, now);
    if (space.name === "handshake" && this.role === "client") this.peerCompletedAddressValidation = true;
    const byPath = new Map<number, Array<{ sizeBytes: number; timeSentMs: Instant }>>();
    for (const p of result.newlyAcked) {
      for (const f of p.payload) this.onFrameAcked(f, space);
      if (this.keyPhase && space.name === "application" && this.keyPhase.firstSentInPhase !== undefined && p.packetNumber >= this.keyPhase.firstSentInPhase) {
        this.keyPhase.acknowledgedInPhase = true;
      }
      if (p.inFlight) {
        let list = byPath.get(p.pathId);
        if (!list) byPath.set(p.pathId, (list = []));
        list.push(p);
      }
    }
    for (const [pathId, packets] of byPath) {
      const path = this.paths.find((x) => x.id === pathId);
      path?.congestion.onPacketsAcked(packets, now, path.rtt, !this.hasPendingData());
    }
    this.qlog?.recoveryMetrics(now, this.activePath);
    this.onPacketsLost(result.lost, space, now, result.persistentCongestion);
  }

  private onPacketsLost(lost: SentPacket<SentFrame[]>[], space: PacketSpace, now: Instant, persistentCongestion: boolean): void {
    if (lost.length === 0) return;
    this.stats.packetsLost += lost.length;
    this.qlog?.packetsLost(now, space.name, lost, this.loss.largestAcked(space.name));
    const byPath = new Map<number, SentPacket<SentFrame[]>[]>();
    for (const p of lost) {
      for (const f of p.payload) this.onFrameLost(f, space);
      if (p.inFlight) {
        let list = byPath.get(p.pathId);
        if (!list) byPath.set(p.pathId, (list = []));
        list.push(p);
      }
    }
    for (const [pathId, packets] of byPath) {
      this.paths.find((x) => x.id === pathId)?.congestion.onPacketsLost(packets, now, persistentCongestion);
    }
    this.qlog?.recoveryMetrics(now, this.activePath, { persistentCongestion });
  }

  private onFrameAcked(f: SentFrame, space: PacketSpace): void {
    switch (f.kind) {
      case "crypto":
        space.cryptoSend.onAcked(f.offset, f.length, false);
        return;
      case "stream": {
        const send = this.streams?.get(f.streamId)?.send;
        if (!send) return;
        send.onAcked(f.offset, f.length, f.fin);
        if (this.wantsWritable.has(f.streamId) && send.writableBytes > 0) {
          this.wantsWritable.delete(f.streamId);
          this.events.push({ type: "streamWritable", at: this.lastNow, streamId: f.streamId });
        }
        this.streams?.collect(f.streamId);
        return;
      }
      case "ack":
        // While several paths are open, packets on a slower one arrive after faster ones were acknowledged
        // (a PATH_RESPONSE, say): keep tracking them instead of calling them duplicates (RFC 9000 §13.2.3).
        if (this.paths.length === 1) space.acks.onAckOfAckReceived(f.largest);
        return;
      case "control":
        if (f.frame.type === "retire_connection_id") this.migration.onRetireAcked(f.frame.sequenceNumber, this.lastNow);
        return;
      default:
        return;
    }
  }

  private onFrameLost(f: SentFrame, space: PacketSpace): void {
    switch (f.kind) {
      case "crypto":
        space.cryptoSend.onLost(f.offset, f.length, false);
        return;
      case "stream":
        this.streams?.get(f.streamId)?.send?.onLost(f.offset, f.length, f.fin);
        return;
      case "max_data":
        this.maxDataLost = true;
        return;
      case "max_stream_data":
        if (this.streams?.get(f.streamId)?.recv) this.maxStreamDataLost.add(f.streamId);
        return;
      case "handshake_done":
        this.handshakeDonePending = true;
        return;
      case "control":
        this.requeueControl(f.frame);
        return;
      case "ack":
      case "ping":
        return;
    }
  }

  /** Lost control frames are sent again unless they no longer matter. */
  private requeueControl(frame: Frame): void {
    switch (frame.type) {
      case "path_response":
        return; // §8.2.2: never retransmitted; a new challenge gets a new response.
      case "path_challenge":
        return; // The validator sends new challenges on its own schedule (PA-25).
      case "new_connection_id":
        if (this.localCids.bySequence(frame.sequenceNumber)?.retired) return;
        break;
      case "retire_connection_id":
      case "reset_stream":
      case "stop_sending":
      case "max_streams":
      case "streams_blocked":
      case "data_blocked":
      case "stream_data_blocked":
      case "new_token":
        break;
      default:
        break;
    }
    this.controlFrames.push(frame);
  }

  private onCrypto(frame: Extract<Frame, { type: "crypto" }>, space: PacketSpace, now: Instant): void {
    try {
      space.cryptoRecv.onStreamFrame(frame.offset, frame.data, false);
    } catch (err) {
      if (err instanceof QuicTransportError && err.code === TRANSPORT_ERROR_CODES.FLOW_CONTROL_ERROR) {
        throw new QuicTransportError("CRYPTO_BUFFER_EXCEEDED", "CRYPTO data beyond the buffer", 0x06);
      }
      throw err;
    }
    for (let data = space.cryptoRecv.read(); data && data.length > 0; data = space.cryptoRecv.read()) {
      this.tls.receive(space.level, data);
    }
    // The CRYPTO buffer slides with what TLS consumed (a fixed window, never grown: RTT 0).
    space.cryptoRecv.maybeMaxStreamData(now, 0);
    this.pumpTls(now);
  }

  private onStream(frame: Extract<Frame, { type: "stream" }>, now: Instant): void {
    const streams = this.requireStreams();
    const s = streams.getOrCreateForFrame(frame.streamId, "stream");
    if (!s) return;
    if (!s.recv) throw new QuicTransportError("STREAM_STATE_ERROR", `STREAM frame on send-only stream ${frame.streamId}`, 0x08);
    const before = s.recv.highestReceivedOffset;
    const readableBefore = s.recv.readableBytes;
    const stateBefore = s.recv.state;
    s.recv.onStreamFrame(frame.offset, frame.data, frame.fin);
    this.recvFlow.onBytesReceived(Math.max(0, s.recv.highestReceivedOffset - before));
    this.returnDiscardedCredit();
    // Notify on progress only: a duplicate of data already read must not look like a new request.
    const progressed = s.recv.readableBytes > readableBefore || s.recv.state !== stateBefore;
    if (progressed && (s.recv.readableBytes > 0 || s.recv.finished || s.recv.state === "data_recvd") && !this.readableNotified.has(frame.streamId)) {
      this.readableNotified.add(frame.streamId);
      this.events.push({ type: "streamReadable", at: now, streamId: frame.streamId });
    }
  }

  /** Bytes of reset or stopped streams never get read: give their connection credit back (§4.5). */
  private returnDiscardedCredit(): void {
    const n = this.streams?.takeDiscardedBytes() ?? 0;
    if (n > 0) {
      this.recvFlow.onBytesConsumed(n);
      this.maxDataPending = true;
    }
  }

  private onConnectionClose(frame: Extract<Frame, { type: "connection_close" }>, now: Instant): void {
    // RFC 9000 §10.2.2: enter draining; send nothing more.
    this.events.push({
      type: "connectionClosed",
      at: now,
      initiator: "peer",
      errorCode: frame.errorCode,
      isApplication: frame.isApplication,
      reason: frame.reason,
    });
    this.state = "draining";
    this.timeline.closed = now;
    this.closeDeadline = now + 3 * this.ptoMs();
  }

  private onVersionNegotiation(header: ParsedHeader, now: Instant): void {
    // RFC 9000 §6.2: only a client that has received nothing else acts on it; we only speak v1.
    if (this.role !== "client" || this.receivedFirstServerPacket) {
      this.countDrop("unexpected_version_negotiation");
      return;
    }
    const versions = header.supportedVersions ?? [];
    if (versions.includes(QUIC_VERSION_1)) {
      this.countDrop("unexpected_version_negotiation");
      return;
    }
    this.enterClosed(now, "peer", TRANSPORT_ERROR_CODES.CONNECTION_REFUSED, false, `no common version (server offers ${versions.map((v) => "0x" + v.toString(16)).join(", ")})`);
  }

  private onRetry(datagram: Uint8Array, header: ParsedHeader, now: Instant): void {
    // RFC 9000 §17.2.5.2: at most one Retry, only before any other server packet, with a valid integrity tag.
    if (this.role !== "client" || this.receivedFirstServerPacket || this.retrySourceConnectionId) {
      this.countDrop("unexpected_retry");
      return;
    }
    const packet = datagram.subarray(header.offset ?? 0, header.packetEnd);
    if (!verifyRetryIntegrity(packet, this.originalDestinationConnectionId) || !header.token || header.token.length === 0) {
      this.countDrop("unexpected_retry");
      return;
    }
    this.retrySourceConnectionId = ownedCopy(header.scid!);
    this.retryToken = ownedCopy(header.token);
    this.peerCids.replaceInitial(this.retrySourceConnectionId);
    const keys = this.deriveInitialKeys(deriveInitialSecrets(this.retrySourceConnectionId));
    const initial = this.spaces.initial;
    initial.readKeys = keys.read;
    initial.writeKeys = keys.write;
    // Everything sent in Initial packets so far is resent under the new keys.
    for (const p of this.loss.discardSpace("initial")) {
      if (p.inFlight) this.activePath.congestion.onPacketsDiscarded(p.sizeBytes);
      for (const f of p.payload) this.onFrameLost(f, initial);
    }
    void now;
  }

  // ------------------------------------------------------------------------------------------
  // TLS
  // ------------------------------------------------------------------------------------------

  private pumpTls(now: Instant): void {
    for (let out = this.tls.pollOutput(); out; out = this.tls.pollOutput()) {
      this.spaces[out.level].cryptoSend.write(out.data);
    }
    for (let s = this.tls.pollSecret(); s; s = this.tls.pollSecret()) this.installSecret(s.level, s.direction, s.secret, s.suite);
    if (!this.peerTransportParameters && this.tls.peerTransportParameters) this.applyPeerTransportParameters(this.tls.peerTransportParameters);
    if (this.tls.handshakeComplete && this.timeline.handshakeCompleted === undefined) {
      this.timeline.handshakeCompleted = now;
      this.state = "established";
      this.events.push({ type: "handshakeCompleted", at: now, alpn: this.tls.alpn });
      // PA-30: a client issues its spare CIDs with its Finished, so that the server has a fresh one for the
      // preferred path when the client's first probe arrives there (one RTT before HANDSHAKE_DONE would allow).
      if (this.role === "client" && this.peerTransportParameters) this.localCids.topUp(this.peerActiveConnectionIdLimit());
      if (this.role === "server") {
        // RFC 9001 §4.1.2: the server's handshake is confirmed when it completes.
        this.handshakeDonePending = true;
        this.onHandshakeConfirmed(now);
      }
    }
  }

  private pendingAppSecrets: { read?: Buffer; write?: Buffer; suite?: import("./crypto/cipher-suites.ts").CipherSuite } = {};

  private installSecret(level: EncryptionLevel, direction: "read" | "write", secret: Buffer, suite: import("./crypto/cipher-suites.ts").CipherSuite): void {
    this.qlog?.keyUpdated(undefined, `${(direction === "write") === (this.role === "client") ? "client" : "server"}_${level === "application" ? "1rtt" : level}_secret`, "tls", level === "application" ? 0 : undefined);
    if (level === "application") {
      this.pendingAppSecrets[direction] = secret;
      this.pendingAppSecrets.suite = suite;
      if (this.pendingAppSecrets.read && this.pendingAppSecrets.write) {
        this.keyPhase = new KeyPhase(suite, this.pendingAppSecrets.read, this.pendingAppSecrets.write);
        this.pendingAppSecrets = {};
        this.retryBufferedPackets();
      }
      return;
    }
    const keys = derivePacketKeys(suite, secret);
    if (direction === "read") this.spaces[level].readKeys = keys;
    else this.spaces[level].writeKeys = keys;
    if (level === "handshake" && this.spaces.handshake.readKeys && this.spaces.handshake.writeKeys) {
      this.handshakeKeysAvailable = true;
      this.retryBufferedPackets();
    }
  }

  /**
   * The server's 1-RTT write key comes before its read key (it may send 0.5-RTT data); the KeyPhase needs both,
   * so a server with only the write secret keeps it pending until the client's Finished gives the read secret.
   */
  private retryBufferedPackets(): void {
    if (this.bufferedPackets.length === 0) return;
    const packets = this.bufferedPackets.splice(0);
    for (const p of packets) {
      try {
        this.receivePacket(p.datagram, p.header, p.path, this.lastNow);
      } catch (err) {
        this.onError(err, this.lastNow);
        return;
      }
    }
  }

  private applyPeerTransportParameters(raw: Buffer): void {
    const tp = decodeTransportParameters(raw, this.role === "client" ? "server" : "client");
    // RFC 9000 §7.3: authenticate the connection IDs used during the handshake.
    const peerInitialScid = this.peerCids.available.find((c) => c.sequenceNumber === 0)?.connectionId;
    if (!tp.initialSourceConnectionId || !peerInitialScid || Buffer.compare(tp.initialSourceConnectionId, peerInitialScid) !== 0) {
      throw new QuicTransportError("TRANSPORT_PARAMETER_ERROR", "initial_source_connection_id does not match the packets");
    }
    if (this.role === "client") {
      if (!tp.originalDestinationConnectionId || Buffer.compare(tp.originalDestinationConnectionId, this.originalDestinationConnectionId) !== 0) {
        throw new QuicTransportError("TRANSPORT_PARAMETER_ERROR", "original_destination_connection_id does not match");
      }
      const retryOk = this.retrySourceConnectionId
        ? tp.retrySourceConnectionId !== undefined && Buffer.compare(tp.retrySourceConnectionId, this.retrySourceConnectionId) === 0
        : tp.retrySourceConnectionId === undefined;
      if (!retryOk) throw new QuicTransportError("TRANSPORT_PARAMETER_ERROR", "retry_source_connection_id does not match");
      if (tp.statelessResetToken) this.peerCids.setInitialResetToken(tp.statelessResetToken);
      // PA-04: the preferred address's CID is sequence 1, as if from NEW_CONNECTION_ID.
      if (tp.preferredAddress) this.peerCids.addPreferredAddressCid(tp.preferredAddress.connectionId, tp.preferredAddress.statelessResetToken);
    }
    this.peerTransportParameters = tp;
    this.qlog?.parametersSet(undefined, "remote", tp);
    const local = this.localTransportParameters;
    this.streams = new StreamMap(
      this.role,
      {
        maxStreamsBidi: local.initialMaxStreamsBidi,
        maxStreamsUni: local.initialMaxStreamsUni,
        initialMaxStreamDataBidiLocal: local.initialMaxStreamDataBidiLocal,
        initialMaxStreamDataBidiRemote: local.initialMaxStreamDataBidiRemote,
        initialMaxStreamDataUni: local.initialMaxStreamDataUni,
        maxStreamWindowBytes: this.config.maxStreamWindowBytes ?? 16 << 20,
        sendBufferBytes: this.config.streamSendBufferBytes ?? 1 << 20,
      },
      {
        maxStreamsBidi: tp.initialMaxStreamsBidi,
        maxStreamsUni: tp.initialMaxStreamsUni,
        initialMaxStreamDataBidiLocal: tp.initialMaxStreamDataBidiLocal,
        initialMaxStreamDataBidiRemote: tp.initialMaxStreamDataBidiRemote,
        initialMaxStreamDataUni: tp.initialMaxStreamDataUni,
        maxStreamWindowBytes: 0,
        sendBufferBytes: 0,
      },
    );
    this.sendFlow = new ConnectionSendFlow(tp.initialMaxData);
    // RFC 9000 §10.1: the effective idle timeout is the minimum of both, where either is non-zero.
    const peerIdle = tp.maxIdleTimeoutMs;
    const localIdle = local.maxIdleTimeoutMs;
    this.idleTimeoutMs = peerIdle > 0 && localIdle > 0 ? Math.min(peerIdle, localIdle) : Math.max(peerIdle, localIdle);
  }

  private onHandshakeConfirmed(now: Instant): void {
    if (this.timeline.handshakeConfirmed !== undefined) return;
    this.timeline.handshakeConfirmed = now;
    this.events.push({ type: "handshakeConfirmed", at: now });
    // RFC 9001 §4.9.2: Handshake keys are discarded once the handshake is confirmed.
    this.discardSpace("handshake");
    this.peerCompletedAddressValidation = true;
    // RFC 9000 §5.1.1: offer spare connection IDs up to the peer's limit (PA-30 builds on this).
    this.localCids.topUp(this.peerActiveConnectionIdLimit());
    // PA-05: a client moves to the preferred address only now.
    this.migration.onHandshakeConfirmed(now);
  }

  private discardSpace(name: PacketNumberSpace): void {
    const space = this.spaces[name];
    if (space.discarded) return;
    space.discard();
    this.qlog?.keysDiscarded(name);
    for (const p of this.loss.discardSpace(name)) {
      if (p.inFlight) this.paths.find((x) => x.id === p.pathId)?.congestion.onPacketsDiscarded(p.sizeBytes);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Sending
  // ------------------------------------------------------------------------------------------

  private lastNow: Instant = 0;

  private buildDatagram(path: Path, now: Instant): Buffer | undefined {
    this.lastNow = now;
    const budget = Math.min(this.maxDatagramSizeBytes, path.amplificationBudget());
    if (budget < 64) return undefined;
    const congestionOk = path.congestion.canSend(this.maxDatagramSizeBytes);
    const pacedUntil = congestionOk ? path.pacer.nextSendTime(now, path.congestion.congestionWindowBytes(), path.rtt, this.maxDatagramSizeBytes) : now;
    const paced = pacedUntil > now;
    if (paced) this.pacingDeadline = pacedUntil;

    const packets: Array<{ space: PacketSpace; frames: Frame[]; sent: SentFrame[]; ackEliciting: boolean; size: number; packet: Buffer; pn: number }> = [];
    let used = 0;
    let needsPadding = false;
    for (const name of SPACE_ORDER) {
      const space = this.spaces[name];
      const writeKeys = name === "application" ? this.keyPhase?.write : space.writeKeys;
      if (space.discarded || !writeKeys) continue;
      // 1-RTT packets wait until the handshake completes (client) or keys exist (server: 0.5-RTT allowed).
      const probe = space.probesPending > 0;
      const mayElicit = probe || (congestionOk && !paced);
      const remaining = budget - used;
      const header = this.headerLength(space, remaining);
      const room = remaining - header - AEAD_TAG_BYTES;
      if (room < 24) break;
      const content = this.collectFrames(space, room, now, mayElicit);
      if (content.frames.length === 0) continue;
      if (probe) space.probesPending--;
      if (name === "initial" && (this.role === "client" || content.ackEliciting)) needsPadding = true;
      const pn = space.nextPacketNumber++;
      const payload = this.encodeFrames(content.frames);
      const packet = this.seal(space, pn, payload, writeKeys, 0);
      packets.push({ space, frames: content.frames, sent: content.sent, ackEliciting: content.ackEliciting, size: packet.length, packet, pn });
      used += packet.length;
      if (name === "application") break;
    }
    if (packets.length === 0) return undefined;
    // RFC 9000 §8.2.1 (PA-26): a datagram with PATH_CHALLENGE or PATH_RESPONSE is padded to 1200 bytes too,
    // unless the amplification limit (the budget) forbids it.
    const carriesPathFrames = packets.some((p) => p.frames.some((f) => f.type === "path_challenge" || f.type === "path_response"));
    const padTo = needsPadding ? MIN_INITIAL_DATAGRAM_BYTES : carriesPathFrames ? Math.min(MIN_INITIAL_DATAGRAM_BYTES, budget) : 0;
    // RFC 9000 §14.1: pad datagrams carrying (ack-eliciting) Initial packets to 1200 bytes, inside the last packet.
    if (padTo > 0 && used < padTo) {
      const last = packets[packets.length - 1]!;
      const deficit = padTo - used;
      const writeKeys = last.space.name === "application" ? this.keyPhase!.write : last.space.writeKeys!;
      const payload = this.encodeFrames(last.frames);
      let padded = this.seal(last.space, last.pn, payload, writeKeys, payload.length + deficit);
      // The Length field may have grown by a byte (too long), and a tiny payload (a PING probe) was already padded
      // for the header-protection sample (too short): correct either way, so the datagram is exactly padTo (§14.1).
      const missBytes = used - last.size + padded.length - padTo;
      if (missBytes !== 0) {
        padded = this.seal(last.space, last.pn, payload, writeKeys, payload.length + deficit - missBytes);
      }
      used += padded.length - last.size;
      last.packet = padded;
      last.size = padded.length;
    }
    for (const p of packets) this.onPacketSent(p.space, p.pn, p.sent, p.ackEliciting, p.size, path, now);
    if (this.qlog) this.qlogPacketsSent(this.qlog, packets, path, now);
    const app = packets[packets.length - 1]!;
    if (app.space.name === "application") this.migration.onPacketSent(path, app.frames.some((f) => !FRAME_PROPERTIES[f.type].probing), now);
    // RFC 9001 §4.9.1: a client discards Initial keys when it first sends a Handshake packet.
    if (this.role === "client" && packets.some((p) => p.space.name === "handshake")) this.discardSpace("initial");
    return packets.length === 1 ? packets[0]!.packet : Buffer.concat(packets.map((p) => p.packet));
  }

  /**
   * A probing-only datagram on a path that is not the active one (RFC 9000 §9.1; PA-08): PATH_RESPONSE and/or
   * PATH_CHALLENGE, padded to 1200 bytes within the amplification budget (PA-26, PA-27), with the path's own
   * peer CID (PA-29). It is not congestion controlled and yields no RTT sample for the active path: the
   * validator retries challenges and a response is never retransmitted.
   */
  private buildProbeDatagram(path: Path, now: Instant): Transmit | undefined {
    this.lastNow = now;
    const keys = this.keyPhase!.write;
    const cid = this.peerCids.forPath(path.id);
    const space = this.spaces.application;
    const budget = Math.min(this.maxDatagramSizeBytes, path.amplificationBudget());
    const overhead = 1 + (cid?.connectionId.length ?? 0) + 4 + AEAD_TAG_BYTES;
    // Without a CID of its own for this path or the budget for even a bare probe, the frames are dropped
    // (counted in migration.stats.probesNotSent); the validator's next retry may find both.
    const canSend = cid !== undefined && budget >= overhead + 9;
    const frames = this.migration.probeFrames(path, now, canSend);
    if (!canSend || frames.length === 0) return undefined;
    const pn = space.nextPacketNumber++;
    const payload = this.encodeFrames(frames);
    const padTo = Math.min(MIN_INITIAL_DATAGRAM_BYTES, budget);
    let packet = this.seal(space, pn, payload, keys, 0, cid.connectionId);
    if (packet.length < padTo) packet = this.seal(space, pn, payload, keys, payload.length + padTo - packet.length, cid.connectionId);
    this.stats.packetsSent++;
    // Recorded so that its acknowledgement is not an ACK of an unsent packet; neither in flight nor an RTT sample.
    this.loss.onPacketSent("application", { packetNumber: pn, timeSentMs: now, ackEliciting: false, inFlight: false, sizeBytes: packet.length, pathId: path.id, payload: [] }, now);
    path.bytesSent += packet.length;
    this.stats.bytesSent += packet.length;
    return { datagram: packet, path: path.address };
  }

  /** qlog packet_sent for one datagram's packets (they share a datagram_id) and the metrics they moved. */
  private qlogPacketsSent(qlog: QlogTrace, packets: ReadonlyArray<{ space: PacketSpace; pn: number; frames: Frame[]; size: number }>, path: Path, now: Instant): void {
    const datagramId = qlog.datagramId();
    const dcid = this.currentPeerCid();
    for (const p of packets) {
      const long = p.space.name !== "application";
      qlog.packetSent(now, {
        packetType: long ? p.space.name : "1rtt", packetNumber: p.pn, dcid, scid: long ? this.localCids.issued[0]!.connectionId : undefined,
        keyPhaseBit: long ? undefined : this.keyPhase?.phase, frames: p.frames, lengthBytes: p.size, pathId: path.id, pathAddress: path.address, datagramId,
      });
    }
    qlog.recoveryMetrics(now, path);
  }

  private onPacketSent(space: PacketSpace, pn: number, sent: SentFrame[], ackEliciting: boolean, size: number, path: Path, now: Instant): void {
    this.stats.packetsSent++;
    this.loss.onPacketSent(space.name, { packetNumber: pn, timeSentMs: now, ackEliciting, inFlight: ackEliciting, sizeBytes: size, pathId: path.id, payload: sent }, now);
    if (ackEliciting) {
      path.congestion.onPacketSent(size, now);
      path.pacer.onPacketSent(now, size, path.congestion.congestionWindowBytes(), path.rtt);
      space.lastAckElicitingSentAt = now;
      if (!this.ackElicitingSentSinceReceive) {
        // RFC 9000 §10.1: restart the idle timer on the first ack-eliciting packet after receiving.
        this.ackElicitingSentSinceReceive = true;
        this.resetIdleTimer(now);
      }
    }
    if (space.name === "application" && this.keyPhase && this.keyPhase.firstSentInPhase === undefined) {
      this.keyPhase.firstSentInPhase = pn;
    }
  }

  private headerLength(space: PacketSpace, remaining: number): number {
    const dcid = this.currentPeerCid().length;
    const pnLength = encodePacketNumberLength(space.nextPacketNumber, this.loss.largestAcked(space.name) ?? -1);
    if (space.name === "application") return 1 + dcid + pnLength;
    const scid = this.localCids.issued[0]!.connectionId.length;
    const token = space.name === "initial" && this.role === "client" ? varintLength(this.retryToken.length) + this.retryToken.length : space.name === "initial" ? 1 : 0;
    return 1 + 4 + 1 + dcid + 1 + scid + token + varintLength(remaining) + pnLength;
  }

  private seal(space: PacketSpace, pn: number, payload: Buffer, keys: PacketKeys, minPayloadLength: number, dcid: Buffer = this.currentPeerCid()): Buffer {
    if (space.name === "application") {
      return sealPacket(
        { type: "1rtt", dcid, packetNumber: pn, largestAcked: this.loss.largestAcked("application"), keyPhase: this.keyPhase!.phase, payload, minPayloadLength },
        keys,
      );
    }
    return sealPacket(
      {
        type: space.name,
        version: QUIC_VERSION_1,
        dcid,
        scid: this.localCids.issued[0]!.connectionId,
        token: space.name === "initial" ? (this.role === "client" ? this.retryToken : Buffer.alloc(0)) : undefined,
        packetNumber: pn,
        largestAcked: this.loss.largestAcked(space.name),
        payload,
        minPayloadLength,
      },
      keys,
    );
  }

  private currentPeerCid(): Buffer {
    const cid = this.peerCids.forPath(this.activePath.id);
    if (!cid) throw new QuicTransportError("INTERNAL_ERROR", "no peer connection ID for the active path");
    return cid.connectionId;
  }

  private encodeFrames(frames: Frame[]): Buffer {
    const w = new ByteWriter(1200);
    for (const f of frames) encodeFrame(w, f);
    return w.finish();
  }

  /** Frames for one packet of a space, at most `room` bytes. */
  private collectFrames(space: PacketSpace, room: number, now: Instant, mayElicit: boolean): { frames: Frame[]; sent: SentFrame[]; ackEliciting: boolean } {
    const frames: Frame[] = [];
    const sent: SentFrame[] = [];
    let left = room;
    const add = (f: Frame, s: SentFrame | undefined): boolean => {
      const n = encodedFrameLength(f);
      if (n > left) return false;
      frames.push(f);
      if (s) sent.push(s);
      left -= n;
      return true;
    };
    const maxAckDelayMs = this.localMaxAckDelayMs(space.name);
    const ackDue = space.acks.shouldSendAck(now, maxAckDelayMs);
    // Piggyback an ACK on any packet we send anyway (cheap, speeds up recovery).
    const ack = space.acks.buildAck(now, this.localTransportParameters.ackDelayExponent);
    // The ACK is reserved first (it must fit) but only committed if it is due or rides along with
    // something else: an ACK-only packet that nothing asked for would be sent again and again.
    let ackAdded = false;
    if (ack && (ackDue || mayElicit)) {
      const frame: Frame = { type: "ack", ranges: ack.ranges, ackDelay: ack.ackDelay };
      ackAdded = add(frame, { kind: "ack", largest: ack.ranges[0]!.largest });
    }
    const commitAck = (): void => {
      if (ackAdded) space.acks.onAckSent();
    };
    if (!mayElicit) {
      commitAck();
      return { frames, sent, ackEliciting: false };
    }
    const before = frames.length;

    if (space.name === "application") this.collectControlFrames(add);
    // CRYPTO data (retransmissions first).
    while (left > 16) {
      // CRYPTO frame overhead: type (1) + offset (≤ 4 below 2^30) + length (2 below 16384).
      const chunk = space.cryptoSend.nextChunk(left - 7);
      if (!chunk) break;
      add({ type: "crypto", offset: chunk.offset, data: chunk.data }, { kind: "crypto", offset: chunk.offset, length: chunk.data.length });
    }
    if (space.name === "application") {
      while (this.datagramsOut.length > 0) {
        const d = this.datagramsOut[0]!;
        if (!add({ type: "datagram", data: d }, undefined)) break;
        this.datagramsOut.shift();
      }
      this.collectStreamFrames(add, () => left);
    }
    let ackEliciting = frames.length > before && frames.slice(before).some((f) => FRAME_PROPERTIES[f.type].ackEliciting);
    if (!ackEliciting && space.probesPending > 0 && left >= 1) {
      add({ type: "ping" }, { kind: "ping" });
      ackEliciting = true;
    }
    if (ackAdded && !ackDue && frames.length === before) {
      // Only the optional piggyback ACK: send nothing.
      return { frames: [], sent: [], ackEliciting: false };
    }
    commitAck();
    return { frames, sent, ackEliciting };
  }

  private collectControlFrames(add: (f: Frame, s: SentFrame | undefined) => boolean): void {
    // PATH_RESPONSE / PATH_CHALLENGE for the active path ride first (PA-22; a peer's move validated on the active path).
    if (this.keyPhase) for (const f of this.migration.probeFrames(this.activePath, this.lastNow, true)) add(f, { kind: "control", frame: f });
    if (this.handshakeDonePending && this.role === "server") {
      if (add({ type: "handshake_done" }, { kind: "handshake_done" })) this.handshakeDonePending = false;
    }
    while (this.controlFrames.length > 0) {
      const f = this.controlFrames[0]!;
      if (!add(f, { kind: "control", frame: f })) break;
      this.controlFrames.shift();
    }
    for (const seq of this.localCids.pendingAnnouncements.splice(0)) {
      const c = this.localCids.bySequence(seq);
      if (!c || c.retired) continue;
      const f: Frame = {
        type: "new_connection_id",
        sequenceNumber: c.sequenceNumber,
        retirePriorTo: this.localCids.retirePriorTo,
        connectionId: c.connectionId,
        statelessResetToken: c.statelessResetToken,
      };
      if (!add(f, { kind: "control", frame: f })) this.localCids.pendingAnnouncements.push(seq);
    }
    for (const seq of this.peerCids.pendingRetirements.splice(0)) {
      const f: Frame = { type: "retire_connection_id", sequenceNumber: seq };
      if (!add(f, { kind: "control", frame: f })) this.peerCids.pendingRetirements.push(seq);
    }
    if (!this.streams) return;
    const srtt = this.activePath.rtt.smoothedRttMs;
    if (this.maxDataPending || this.maxDataLost) {
      const lost = this.maxDataLost;
      this.maxDataPending = false;
      this.maxDataLost = false;
      const limit = this.recvFlow.maybeMaxData(this.lastNow, srtt) ?? (lost ? this.recvFlow.limit : undefined);
      if (limit !== undefined && !add({ type: "max_data", maximumData: limit }, { kind: "max_data" })) {
        this.maxDataPending = true;
        this.maxDataLost = lost;
      }
    }
    for (const id of this.maxStreamDataLost) {
      this.maxStreamDataLost.delete(id);
      this.maxStreamDataPending.add(id);
      this.maxStreamDataRepeat.add(id);
    }
    for (const id of this.maxStreamDataPending) {
      const recv = this.streams.get(id)?.recv;
      this.maxStreamDataPending.delete(id);
      const repeat = this.maxStreamDataRepeat.delete(id);
      if (!recv) continue;
      const limit = recv.maybeMaxStreamData(this.lastNow, srtt) ?? (repeat && recv.state === "recv" ? recv.limit : undefined);
      if (limit === undefined) continue;
      if (!add({ type: "max_stream_data", streamId: id, maximumStreamData: limit }, { kind: "max_stream_data", streamId: id })) {
        this.maxStreamDataPending.add(id);
        if (repeat) this.maxStreamDataRepeat.add(id);
        break;
      }
    }
    for (const m of this.streams.pollMaxStreams()) {
      const f: Frame = { type: "max_streams", bidi: m.bidi, maximumStreams: m.max };
      if (!add(f, { kind: "control", frame: f })) this.controlFrames.push(f);
    }
  }

  private collectStreamFrames(add: (f: Frame, s: SentFrame | undefined) => boolean, left: () => number): void {
    if (!this.streams || !this.sendFlow) return;
    for (const stream of this.streams.sendable(this.sendFlow.available())) {
      for (;;) {
        const room = left();
        const overhead = streamFrameOverhead(stream.id, stream.nextOffset, room);
        if (room <= overhead + 1) return;
        const newCredit = this.sendFlow.available();
        const chunk = stream.nextChunk(room - overhead, newCredit);
        if (!chunk) break;
        const newBytes = Math.max(0, chunk.offset + chunk.data.length - chunk.previouslySentEnd);
        if (newBytes > 0) this.sendFlow.consume(newBytes);
        add(
          { type: "stream", streamId: stream.id, offset: chunk.offset, data: chunk.data, fin: chunk.fin },
          { kind: "stream", streamId: stream.id, offset: chunk.offset, length: chunk.data.length, fin: chunk.fin },
        );
      }
    }
  }

  private hasPendingData(): boolean {
    if (this.controlFrames.length > 0 || this.datagramsOut.length > 0 || this.handshakeDonePending) return true;
    if (this.maxDataLost || this.maxStreamDataLost.size > 0) return true;
    for (const name of SPACE_ORDER) {
      const s = this.spaces[name];
      if (!s.discarded && s.cryptoSend.hasDataToSend()) return true;
    }
    if (!this.streams) return false;
    for (const _ of this.streams.sendable(this.sendFlow?.available() ?? 0)) return true;
    return false;
  }

  // ------------------------------------------------------------------------------------------
  // Timers, loss, closing
  // ------------------------------------------------------------------------------------------

  private lossTimer(): Instant | undefined {
    return this.loss.lossDetectionTimer(this.recoveryContext());
  }

  private recoveryContext() {
    return {
      rtt: this.activePath.rtt,
      handshakeConfirmed: this.isHandshakeConfirmed,
      maxAckDelayMs: this.peerMaxAckDelayMs(),
      peerAddressValidated: this.peerCompletedAddressValidation,
      hasHandshakeKeys: this.handshakeKeysAvailable && !this.spaces.handshake.discarded,
      isServer: this.role === "server",
      // RFC 9002 §6.2.2.1: a server blocked by the amplification limit arms no PTO.
      atAmplificationLimit: this.activePath.amplificationBudget() < 64,
    };
  }

  private onLossTimer(now: Instant): void {
    const result = this.loss.onLossDetectionTimeout(this.recoveryContext(), now);
    if (result.lost.length > 0) {
      // Time-threshold losses are reported for one space at a time.
      this.onPacketsLost(result.lost, this.spaces[result.lostSpace ?? "application"], now, false);
    }
    if (result.probeSpace) {
      const space = this.spaces[result.probeSpace];
      space.probesPending = Math.max(space.probesPending, result.probeCount);
      // Resend unacknowledged handshake data in the probes: under loss this finishes handshakes sooner.
      if (result.probeSpace !== "application") {
        for (const p of this.loss.inFlight(result.probeSpace)) for (const f of p.payload) if (f.kind === "crypto") this.onFrameLost(f, space);
      }
    }
  }

  private ptoMs(): number {
    const rtt = this.activePath.rtt;
    return rtt.ptoBaseMs() + (this.isHandshakeConfirmed ? this.peerMaxAckDelayMs() : 0);
  }

  private resetIdleTimer(now: Instant): void {
    if (this.idleTimeoutMs <= 0) return;
    // RFC 9000 §10.1: at least 3 PTO so that a few probes can go out before giving up.
    this.idleDeadline = now + Math.max(this.idleTimeoutMs, 3 * this.ptoMs());
  }

  private localMaxAckDelayMs(space: PacketNumberSpace): number {
    // RFC 9000 §13.2.1: Initial and Handshake packets are acknowledged immediately.
    return space === "application" ? this.localTransportParameters.maxAckDelayMs : 0;
  }

  private peerMaxAckDelayMs(): number {
    return this.peerTransportParameters?.maxAckDelayMs ?? 25;
  }

  private peerAckDelayExponent(): number {
    return this.peerTransportParameters?.ackDelayExponent ?? 3;
  }

  private peerActiveConnectionIdLimit(): number {
    // We keep a few spare CIDs at most; more is memory for nothing at 10,000 connections.
    return Math.min(this.peerTransportParameters?.activeConnectionIdLimit ?? 2, 8);
  }

  private requireStreams(): StreamMap {
    if (!this.streams) throw new QuicStreamUsageError("streams are not available before the peer's transport parameters arrive");
    return this.streams;
  }

  private countDrop(reason: DropReason, err?: unknown): void {
    this.stats.drops[reason] = (this.stats.drops[reason] ?? 0) + 1;
    this.qlog?.packetDropped(reason);
    void err;
  }

  private onError(err: unknown, now: Instant): void {
    if (err instanceof QuicTransportError) {
      this.startClosing(now, { errorCode: err.code, reason: err.message, isApplication: false, frameType: err.frameType }, "local");
      return;
    }
    if (err instanceof TlsAlertError) {
      this.startClosing(now, { errorCode: CRYPTO_ERROR_BASE + err.alert, reason: err.message, isApplication: false, frameType: 0x06 }, "local");
      return;
    }
    // Our own bug: close with INTERNAL_ERROR rather than throw out of the core, and keep the message.
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    this.startClosing(now, { errorCode: TRANSPORT_ERROR_CODES.INTERNAL_ERROR, reason: message.slice(0, 200), isApplication: false, frameType: 0 }, "local");
    this.internalErrors.push(err);
  }

  /** Bugs caught at the core boundary (never thrown to the endpoint); tests assert this stays empty. */
  readonly internalErrors: unknown[] = [];

  private startClosing(now: Instant, c: { errorCode: number; reason: string; isApplication: boolean; frameType: number }, initiator: CloseInitiator): void {
    // RFC 9000 §10.2.3: before the handshake is confirmed an application close is sent as APPLICATION_ERROR.
    const inAppSpace = this.keyPhase !== undefined && this.isHandshakeConfirmed;
    const frame: Frame = c.isApplication && !inAppSpace
      ? { type: "connection_close", isApplication: false, errorCode: TRANSPORT_ERROR_CODES.APPLICATION_ERROR, frameType: 0, reason: "" }
      : { type: "connection_close", isApplication: c.isApplication, errorCode: c.errorCode, frameType: c.frameType, reason: c.reason.slice(0, 256) };
    this.closeFrame = frame;
    this.closeSendPending = true;
    this.state = "closing";
    this.timeline.closed = now;
    this.closeDeadline = now + 3 * this.ptoMs();
    this.events.push({ type: "connectionClosed", at: now, initiator, errorCode: c.errorCode, isApplication: c.isApplication, reason: c.reason });
  }

  private enterClosed(now: Instant, initiator: CloseInitiator, errorCode: number, isApplication: boolean, reason: string): void {
    this.state = "closed";
    this.timeline.closed = now;
    this.closeDeadline = undefined;
    this.events.push({ type: "connectionClosed", at: now, initiator, errorCode, isApplication, reason });
  }

  private transmitClose(now: Instant): Transmit | undefined {
    if (!this.closeSendPending || !this.closeFrame) return undefined;
    this.closeSendPending = false;
    const packets: Buffer[] = [];
    let clientInitial: { space: PacketSpace; pn: number; payload: Buffer; keys: PacketKeys } | undefined;
    for (const name of SPACE_ORDER) {
      const space = this.spaces[name];
      const keys = name === "application" ? (this.isHandshakeConfirmed ? this.keyPhase?.write : undefined) : space.writeKeys;
      if (space.discarded || !keys) continue;
      const frame = name !== "application" && this.closeFrame.type === "connection_close" && this.closeFrame.isApplication
        ? { ...this.closeFrame, isApplication: false, errorCode: TRANSPORT_ERROR_CODES.APPLICATION_ERROR, reason: "" }
        : this.closeFrame;
      const payload = this.encodeFrames([frame]);
      const needsPadding = name === "initial" && this.role === "client";
      if (needsPadding) clientInitial = { space, pn: space.nextPacketNumber, payload, keys };
      packets.push(this.seal(space, space.nextPacketNumber++, payload, keys, needsPadding ? MIN_INITIAL_DATAGRAM_BYTES - 64 : 0));
      this.qlog?.packetSent(now, { packetType: name === "application" ? "1rtt" : name, packetNumber: space.nextPacketNumber - 1, frames: [frame], lengthBytes: packets[packets.length - 1]!.length, pathId: this.activePath.id });
    }
    if (packets.length === 0) return undefined;
    let datagram = Buffer.concat(packets);
    // RFC 9000 §14.1: a client's datagram with an Initial is at least 1200 bytes, also when the Initial is alone.
    if (clientInitial && datagram.length < MIN_INITIAL_DATAGRAM_BYTES) {
      const c = clientInitial;
      packets[0] = this.seal(c.space, c.pn, c.payload, c.keys, MIN_INITIAL_DATAGRAM_BYTES - 64 + MIN_INITIAL_DATAGRAM_BYTES - datagram.length);
      datagram = Buffer.concat(packets);
    }
    const path = this.activePath;
    if (datagram.length > path.amplificationBudget()) return undefined;
    path.bytesSent += datagram.length;
    void now;
    return { datagram, path: path.address };
  }

  private deriveInitialKeys(secrets: { client: Buffer; server: Buffer }): { read: PacketKeys; write: PacketKeys } {
    const suite = INITIAL_SUITE;
    const clientKeys = derivePacketKeys(suite, secrets.client);
    const serverKeys = derivePacketKeys(suite, secrets.server);
    return this.role === "client" ? { read: serverKeys, write: clientKeys } : { read: clientKeys, write: serverKeys };
  }
}

import { CIPHER_SUITES } from "./crypto/cipher-suites.ts";
/** RFC 9001 §5.2: Initial packets use AES-128-GCM. */
const INITIAL_SUITE = CIPHER_SUITES.TLS_AES_128_GCM_SHA256;

/** An application used the stream API wrongly (unknown stream, wrong direction): the app's bug, not the peer's. */
export class QuicStreamUsageError extends Error {
  override readonly name = "QuicStreamUsageError";
  readonly code = "STREAM_USAGE";
}
