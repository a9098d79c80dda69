/**
 * qlog for the QUIC core, sans-I/O: a `QlogTrace` collects one connection's events with the
 * connection's monotonic `now` and serialises them as JSON Text Sequences (RFC 7464) text chunks.
 * Writing the chunks somewhere (QLOGDIR files) is qlog-file.ts's job; nothing here touches fs or a clock.
 *
 * Drafts followed, exactly and only these two (see README.md "qlog" for why and how they were read):
 *   - draft-ietf-quic-qlog-main-schema-13  (file schema `urn:ietf:params:qlog:file:sequential`,
 *     serialization_format `application/qlog+json-seq`, TraceSeq with event_schemas, §"JSON-SEQ")
 *   - draft-ietf-quic-qlog-quic-events-12  (event schema URI `urn:ietf:params:qlog:events:quic-12`,
 *     the `quic` namespace, tuple_assigned / migration_state_updated, recovery_metrics_updated)
 * The quic-events draft says implementations of a draft MUST append "-" and the draft number to the
 * event schema URI (§2.1 "Draft Event Schema Identification"), hence `quic-12`.
 *
 * Cost when off: the connection holds `qlog: QlogTrace | undefined` and every hook is
 * `this.qlog?.method(...)`: optional chaining skips the argument expressions too, so with qlog off a
 * hook is one undefined check and no frame is converted. All conversion to qlog shapes lives here.
 */
import type { ConnectionEvent } from "./events.ts";
import type { Frame } from "./frames.ts";
import type { Path, PathAddress, SocketAddress } from "./path.ts";
import type { Instant } from "./time.ts";
import type { TransportParameters } from "./transport-parameters.ts";

export const QLOG_MAIN_SCHEMA_DRAFT = "draft-ietf-quic-qlog-main-schema-13";
export const QLOG_QUIC_EVENTS_DRAFT = "draft-ietf-quic-qlog-quic-events-12";
export const QLOG_FILE_SCHEMA = "urn:ietf:params:qlog:file:sequential";
export const QLOG_SERIALIZATION_FORMAT = "application/qlog+json-seq";
export const QLOG_QUIC_EVENT_SCHEMA = "urn:ietf:params:qlog:events:quic-12";
/** RFC 7464 §2: every JSON text is preceded by RS (0x1E) and followed by LF. */
export const RECORD_SEPARATOR = "\u001e";

export type QlogVantagePoint = "client" | "server";

/** One qlog event as serialised (main schema §"Abstract Event Class"). */
export interface QlogEvent {
  time: number;
  name: string;
  data: Record<string, unknown>;
  tuple?: string;
}

/** Where finished chunks go (qlog-file.ts appends them to a file). Called synchronously; must not throw. */
export interface QlogSink {
  write(chunk: string): void;
  close(): void;
}

export interface QlogTraceOptions {
  vantagePoint: QlogVantagePoint;
  /** The client's first Destination Connection ID: group_id and file name (quic-events §1.1). */
  originalDestinationConnectionId: Uint8Array;
  /** The monotonic time the trace starts at: event times are relative to it (clock_type monotonic). */
  startedAt: Instant;
  /** Approximate wall-clock start (RFC 3339), supplied by the I/O layer; the core has no calendar clock. */
  wallClockTime?: string;
  title?: string;
  /**
   * Also put `qlog_version: "0.3"` and `qlog_format: "JSON-SEQ"` in the header, which qvis needs to open a
   * .sqlog at all (README "qlog": qvis compatibility). Extra header fields; the file stays main-schema-13 conformant.
   */
  qvisCompatible?: boolean;
  sink?: QlogSink;
  /** Events kept before a chunk is handed to the sink. */
  batchEvents?: number;
}

/** Context the connection hands to its factory when it is created. */
export interface QlogConnectionInfo {
  role: QlogVantagePoint;
  originalDestinationConnectionId: Buffer;
  now: Instant;
}

/** ConnectionConfig.qlog: called once per connection; undefined = no qlog for this one. */
export type QlogFactory = (info: QlogConnectionInfo) => QlogTrace | undefined;

export type QlogPacketType = "initial" | "handshake" | "0RTT" | "1RTT" | "retry" | "version_negotiation" | "stateless_reset" | "unknown";

/** What the connection knows about a packet it sent or received. */
export interface QlogPacketInfo {
  /** Our packet type names (packet-header.ts: "initial", "handshake", "0rtt", "1rtt", ...) or the qlog ones. */
  packetType: string;
  packetNumber: number;
  dcid?: Uint8Array;
  scid?: Uint8Array;
  /** 1-RTT only: the Key Phase bit (RFC 9001 §6); logged as key_phase_bit, the full phase is not tracked. */
  keyPhaseBit?: number;
  frames: readonly Frame[];
  /** Bytes of the whole packet on the wire (header, payload, AEAD tag). */
  lengthBytes: number;
  pathId: number;
  /** The path's 4-tuple: a tuple_assigned precedes the first event on a path. */
  pathAddress?: PathAddress;
  /** Bytes of PADDING added beyond `frames` (client Initials padded to 1200). */
  paddingBytes?: number;
  datagramId?: number;
}

/** A lost packet as loss detection keeps it (frames in their retransmission form). */
export interface QlogLostPacket {
  packetNumber: number;
  pathId: number;
  payload: ReadonlyArray<{ kind: string; [k: string]: unknown }>;
}

type QlogSpaceName = "initial" | "handshake" | "application";

const PACKET_TYPE_OF_SPACE: Record<QlogSpaceName, QlogPacketType> = { initial: "initial", handshake: "handshake", application: "1RTT" };
/** RFC 9002 §6.1.1: kPacketThreshold. */
const PACKET_THRESHOLD = 3;

/**
 * Drop reasons of the connection (DropReason) → packet_dropped triggers (quic-events-12 §5.7).
 * Unknown reasons (added later) map to "general"; the reason itself is kept in `details`.
 */
const DROP_TRIGGERS: Record<string, string> = {
  header_invalid: "invalid",
  unknown_connection_id: "connection_unknown",
  keys_unavailable: "key_unavailable",
  decrypt_failed: "decryption_failure",
  duplicate: "duplicate",
  zero_rtt_unsupported: "unsupported",
  unexpected_version_negotiation: "rejected",
  unexpected_retry: "rejected",
  closing: "general",
};

const TRANSPORT_ERROR_NAMES = [
  "no_error", "internal_error", "connection_refused", "flow_control_error", "stream_limit_error", "stream_state_error",
  "final_size_error", "frame_encoding_error", "transport_parameter_error", "connection_id_limit_error", "protocol_violation",
  "invalid_token", "application_error", "crypto_buffer_exceeded", "key_update_error", "aead_limit_reached", "no_viable_path",
];

export class QlogTrace {
  readonly vantagePoint: QlogVantagePoint;
  readonly groupId: string;
  private readonly startedAt: Instant;
  private readonly options: QlogTraceOptions;
  private pending: QlogEvent[] = [];
  private headerWritten = false;
  private finished = false;
  /** Time of the latest event (relative ms); events never go back in time (main schema §7.1). */
  private lastTimeMs = 0;
  private nextDatagramId = 0;
  /** The datagram being processed by receive(): its packets share its id (coalescing, quic-events §10). */
  private rxDatagramId: number | undefined;
  private eventTotal = 0;
  private connectionState: string | undefined;
  private congestionState: string | undefined;
  private readonly metrics: Record<string, number> = {};
  private readonly knownTuples = new Set<number>();
  private readonly batchEvents: number;
  /** RFC 9000 §18.2 ack_delay_exponent of each side (default 3), to log ACK delays in ms. */
  private readonly ackDelayExponent = { local: 3, remote: 3 };

  constructor(options: QlogTraceOptions) {
    this.options = options;
    this.vantagePoint = options.vantagePoint;
    this.groupId = Buffer.from(options.originalDestinationConnectionId).toString("hex");
    this.startedAt = options.startedAt;
    this.batchEvents = options.batchEvents ?? 256;
  }

  /** Events recorded so far (also those already handed out). */
  get eventCount(): number {
    return this.eventTotal;
  }

  get isFinished(): boolean {
    return this.finished;
  }

  /** The first record: QlogFileSeq (main schema §5) with one TraceSeq. */
  header(): Record<string, unknown> {
    const commonFields: Record<string, unknown> = {
      group_id: this.groupId,
      time_format: "relative_to_epoch",
      // main schema §7.1: a monotonic clock has an unknown epoch; times here start at the connection's start.
      reference_time: { clock_type: "monotonic", epoch: "unknown", ...(this.options.wallClockTime ? { wall_clock_time: this.options.wallClockTime } : {}) },
    };
    const header: Record<string, unknown> = {
      file_schema: QLOG_FILE_SCHEMA,
      serialization_format: QLOG_SERIALIZATION_FORMAT,
      title: this.options.title ?? `quic-migration-testbed ${this.vantagePoint} ${this.groupId}`,
      description: `qlog per ${QLOG_MAIN_SCHEMA_DRAFT} and ${QLOG_QUIC_EVENTS_DRAFT}`,
      trace: {
        common_fields: commonFields,
        vantage_point: { name: "quic-migration-testbed", type: this.vantagePoint },
        event_schemas: [QLOG_QUIC_EVENT_SCHEMA],
      },
    };
    if (this.options.qvisCompatible) {
      header.qlog_version = "0.3";
      header.qlog_format = "JSON-SEQ";
    }
    return header;
  }

  /** JSON-SEQ text of everything not handed out yet (the header first, once); "" when there is nothing. */
  takeChunk(): string {
    let out = "";
    if (!this.headerWritten) {
      this.headerWritten = true;
      out += RECORD_SEPARATOR + JSON.stringify(this.header()) + "\n";
    }
    for (const e of this.pending) out += RECORD_SEPARATOR + JSON.stringify(e) + "\n";
    this.pending = [];
    return out;
  }

  /** Hand everything to the sink and close it; later events are ignored. Idempotent. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const sink = this.options.sink;
    if (!sink) return;
    const chunk = this.takeChunk();
    if (chunk) sink.write(chunk);
    sink.close();
  }

  // ----------------------------------------------------------------------------------------------
  // Events (quic-events-12 section numbers in comments)
  // ----------------------------------------------------------------------------------------------

  /** §4.2 connection_started, §4.6 connection_state_updated (attempted), §4.7 tuple_assigned for the first tuple. */
  connectionStarted(now: Instant, path: PathAddress, ids: { dcid: Uint8Array; scid: Uint8Array }): void {
    this.emit(now, "quic:connection_started", {
      local: tupleEndpoint(path.local, ids.scid),
      remote: tupleEndpoint(path.remote, ids.dcid),
    });
    this.tupleAssigned(now, 0, path, ids);
    this.stateUpdated(now, "attempted");
  }

  /** §5.3 parameters_set, one instance per side (initiator local / remote). */
  parametersSet(now: Instant | undefined, initiator: "local" | "remote", tp: TransportParameters, extra: { tlsCipher?: string } = {}): void {
    const data: Record<string, unknown> = { initiator };
    this.ackDelayExponent[initiator] = tp.ackDelayExponent;
    if (extra.tlsCipher) data.tls_cipher = extra.tlsCipher;
    if (tp.originalDestinationConnectionId) data.original_destination_connection_id = hex(tp.originalDestinationConnectionId);
    if (tp.initialSourceConnectionId) data.initial_source_connection_id = hex(tp.initialSourceConnectionId);
    if (tp.retrySourceConnectionId) data.retry_source_connection_id = hex(tp.retrySourceConnectionId);
    if (tp.statelessResetToken) data.stateless_reset_token = hex(tp.statelessResetToken);
    data.disable_active_migration = tp.disableActiveMigration;
    data.max_idle_timeout = tp.maxIdleTimeoutMs;
    data.max_udp_payload_size = tp.maxUdpPayloadSize;
    data.ack_delay_exponent = tp.ackDelayExponent;
    data.max_ack_delay = tp.maxAckDelayMs;
    data.active_connection_id_limit = tp.activeConnectionIdLimit;
    data.initial_max_data = tp.initialMaxData;
    data.initial_max_stream_data_bidi_local = tp.initialMaxStreamDataBidiLocal;
    data.initial_max_stream_data_bidi_remote = tp.initialMaxStreamDataBidiRemote;
    data.initial_max_stream_data_uni = tp.initialMaxStreamDataUni;
    data.initial_max_streams_bidi = tp.initialMaxStreamsBidi;
    data.initial_max_streams_uni = tp.initialMaxStreamsUni;
    const pa = tp.preferredAddress;
    if (pa) {
      data.preferred_address = {
        ...(pa.ipv4 ? { ip_v4: pa.ipv4.address, port_v4: pa.ipv4.port } : {}),
        ...(pa.ipv6 ? { ip_v6: pa.ipv6.address, port_v6: pa.ipv6.port } : {}),
        connection_id: hex(pa.connectionId),
        stateless_reset_token: hex(pa.statelessResetToken),
      };
    }
    if (tp.unknown.length > 0) data.unknown_parameters = tp.unknown.map((u) => ({ id: u.id, value: hex(u.value) }));
    if (tp.maxDatagramFrameSize !== undefined) data.max_datagram_frame_size = tp.maxDatagramFrameSize;
    this.emit(now, "quic:parameters_set", data);
  }

  /** §5.11 udp_datagrams_received (Extra): one per datagram handed to the connection. */
  datagramReceived(now: Instant, lengthBytes: number, path: { id: number; address: PathAddress }): number {
    this.tupleAssigned(now, path.id, path.address);
    const id = this.nextDatagramId++;
    this.rxDatagramId = id;
    this.emit(now, "quic:udp_datagrams_received", { count: 1, raw: [{ length: lengthBytes }], datagram_ids: [id] }, path.id);
    return id;
  }

  /** §5.5 packet_sent. */
  packetSent(now: Instant, p: QlogPacketInfo): void {
    if (p.pathAddress) this.tupleAssigned(now, p.pathId, p.pathAddress);
    this.emit(now, "quic:packet_sent", this.packetData(p, this.ackDelayExponent.local), p.pathId);
  }

  /** §5.6 packet_received. */
  packetReceived(now: Instant, p: QlogPacketInfo, trigger?: "keys_available"): void {
    const data = this.packetData(p.datagramId === undefined && !trigger ? { ...p, datagramId: this.rxDatagramId } : p, this.ackDelayExponent.remote);
    if (trigger) data.trigger = trigger;
    this.emit(now, "quic:packet_received", data, p.pathId);
  }

  /** §5.8 packet_buffered: a packet waiting for its keys. */
  packetBuffered(now: Instant, packetType: string, lengthBytes: number, pathId: number): void {
    this.emit(now, "quic:packet_buffered", { header: { packet_type: qlogPacketType(packetType) }, raw: { length: lengthBytes }, trigger: "keys_unavailable" }, pathId);
  }

  /** §5.7 packet_dropped, with the connection's own drop reason in `details`. Time: the latest event's. */
  packetDropped(reason: string, packetType?: QlogPacketType): void {
    const data: Record<string, unknown> = { trigger: DROP_TRIGGERS[reason] ?? "general", details: { reason } };
    if (packetType) data.header = { packet_type: packetType };
    this.emit(undefined, "quic:packet_dropped", data);
  }

  /**
   * §7.5 packet_lost. The trigger follows RFC 9002 §6.1: a packet PACKET_THRESHOLD or more below the
   * largest acknowledged one is lost by reordering, otherwise by time.
   */
  packetsLost(now: Instant, space: QlogSpaceName, lost: readonly QlogLostPacket[], largestAcked: number | undefined): void {
    for (const p of lost) {
      const byReordering = largestAcked !== undefined && largestAcked - p.packetNumber >= PACKET_THRESHOLD;
      this.emit(now, "quic:packet_lost", {
        header: { packet_type: PACKET_TYPE_OF_SPACE[space], packet_number: p.packetNumber },
        frames: p.payload.map(sentFrameToQlog),
        trigger: byReordering ? "reordering_threshold" : "time_threshold",
      }, p.pathId);
    }
  }

  /** §6.1 key_updated: keys of a level installed (trigger tls), or a 1-RTT key update. */
  keyUpdated(now: Instant | undefined, keyType: string, trigger: "tls" | "local_update" | "remote_update" | undefined, keyPhase?: number): void {
    const data: Record<string, unknown> = { key_type: keyType };
    if (keyPhase !== undefined) data.key_phase = keyPhase;
    if (trigger) data.trigger = trigger;
    this.emit(now, "quic:key_updated", data);
  }

  /** §6.2 key_discarded for both directions of a level (Initial, Handshake: RFC 9001 §4.9). Time: the latest event's. */
  keysDiscarded(level: "initial" | "handshake" | "application"): void {
    const name = level === "application" ? "1rtt" : level;
    for (const side of ["client", "server"]) this.emit(undefined, "quic:key_discarded", { key_type: `${side}_${name}_secret`, trigger: "tls" });
  }

  /**
   * §7.2 recovery_metrics_updated with only the values that changed since the last one, and §7.3
   * congestion_state_updated when the controller's phase changes. `lossPersistent` is set when called after a loss.
   */
  recoveryMetrics(now: Instant, path: Path, loss?: { persistentCongestion: boolean }): void {
    const rtt = path.rtt;
    const cc = path.congestion;
    const current: Record<string, number> = {
      smoothed_rtt: rtt.smoothedRttMs,
      rtt_variance: rtt.rttVarMs,
      congestion_window: cc.congestionWindowBytes(),
      bytes_in_flight: cc.bytesInFlight(),
    };
    if (rtt.hasSample) {
      current.min_rtt = rtt.minRttMs;
      current.latest_rtt = rtt.latestRttMs;
    }
    const ssthresh = slowStartThreshold(cc);
    if (ssthresh !== undefined && Number.isFinite(ssthresh) && ssthresh < Number.MAX_SAFE_INTEGER / 2) current.ssthresh = ssthresh;
    const changed: Record<string, number> = {};
    let any = false;
    for (const [k, v] of Object.entries(current)) {
      if (this.metrics[k] !== v) {
        this.metrics[k] = v;
        changed[k] = v;
        any = true;
      }
    }
    if (any) this.emit(now, "quic:recovery_metrics_updated", changed, path.id);
    // RFC 9002 §7: slow start below ssthresh, congestion avoidance above, recovery right after a loss.
    const state = loss ? (loss.persistentCongestion ? "persistent_congestion" : "recovery")
      : this.congestionState === "recovery" || this.congestionState === "persistent_congestion"
        ? (changed.congestion_window !== undefined && changed.congestion_window > 0 ? phaseOf(current) : this.congestionState)
        : phaseOf(current);
    if (state !== this.congestionState) {
      const data: Record<string, unknown> = { new: state };
      if (this.congestionState) data.old = this.congestionState;
      if (loss) data.trigger = loss.persistentCongestion ? "persistent_congestion" : "loss";
      this.congestionState = state;
      this.emit(now, "quic:congestion_state_updated", data, path.id);
    }
  }

  /** §4.6 connection_state_updated, logged only on change. */
  stateUpdated(now: Instant | undefined, state: string): void {
    if (state === this.connectionState) return;
    const data: Record<string, unknown> = { new: state };
    if (this.connectionState) data.old = this.connectionState;
    this.connectionState = state;
    this.emit(now, "quic:connection_state_updated", data);
  }

  /** §4.7 tuple_assigned: path 0 is the default tuple "", others are their path id. Logged once per path. */
  tupleAssigned(now: Instant | undefined, pathId: number, address: PathAddress, cids?: { dcid?: Uint8Array; scid?: Uint8Array }): void {
    if (this.knownTuples.has(pathId)) return;
    this.knownTuples.add(pathId);
    this.emit(now, "quic:tuple_assigned", {
      tuple_id: tupleId(pathId),
      tuple_remote: tupleEndpoint(address.remote, cids?.dcid),
      tuple_local: tupleEndpoint(address.local, cids?.scid),
    });
  }

  /** §5.21 migration_state_updated (Extra). */
  migrationState(now: Instant, state: MigrationState, pathId: number | undefined, address?: PathAddress): void {
    const data: Record<string, unknown> = { new: state };
    if (pathId !== undefined) data.tuple_id = tupleId(pathId);
    if (address) {
      data.tuple_remote = tupleEndpoint(address.remote);
      data.tuple_local = tupleEndpoint(address.local);
    }
    this.emit(now, "quic:migration_state_updated", data);
  }

  /**
   * Events the connection reports to its owner, mapped to qlog: state changes, ALPN, key updates,
   * closes, and the path events of migration (the timeline of ../../shared/spec/preferred-address.md):
   * pathProbeSent → probing_started, pathValidated → probing_successful, pathValidationFailed →
   * probing_abandoned, pathMigrated → tuple_assigned + migration_started, oldPathRetired →
   * migration_complete, migrationFellBack → migration_abandoned. `state` is the
   * connection's state when the event is polled; `pathIdOf` finds a path's id from its address.
   */
  connectionEvent(e: ConnectionEvent, state: string, pathIdOf: (a: PathAddress) => number | undefined): void {
    switch (e.type) {
      case "handshakeCompleted":
        this.stateUpdated(e.at, "handshake_complete");
        if (e.alpn !== undefined) this.emit(e.at, "quic:alpn_information", { chosen_alpn: { string_value: e.alpn } });
        return;
      case "handshakeConfirmed":
        this.stateUpdated(e.at, "handshake_confirmed");
        return;
      case "keyUpdated":
        for (const side of ["client", "server"]) {
          this.keyUpdated(e.at, `${side}_1rtt_secret`, e.initiator === "local" ? "local_update" : "remote_update", e.keyPhase);
        }
        return;
      case "pathProbeSent": {
        const id = pathIdOf(e.path);
        if (id !== undefined) this.tupleAssigned(e.at, id, e.path);
        this.migrationState(e.at, "probing_started", id, e.path);
        return;
      }
      case "pathValidated": {
        const id = pathIdOf(e.path);
        this.migrationState(e.at, "probing_successful", id, e.path);
        return;
      }
      case "pathValidationFailed": {
        const id = pathIdOf(e.path);
        this.migrationState(e.at, "probing_abandoned", id, e.path);
        return;
      }
      case "pathMigrated": {
        const id = pathIdOf(e.to);
        if (id !== undefined) this.tupleAssigned(e.at, id, e.to);
        this.migrationState(e.at, "migration_started", id, e.to);
        return;
      }
      case "oldPathRetired":
        // The old path's CID is retired and acknowledged: the move is done (timeline `oldPathRetired`).
        this.migrationState(e.at, "migration_complete", undefined);
        return;
      case "migrationFellBack": {
        const id = pathIdOf(e.path);
        this.migrationState(e.at, "migration_abandoned", id, e.path);
        return;
      }
      case "connectionClosed":
        this.connectionClosed(e, state);
        return;
      default:
        return;
    }
  }

  /** §4.3 connection_closed, then the state it leaves the connection in. */
  private connectionClosed(e: Extract<ConnectionEvent, { type: "connectionClosed" }>, state: string): void {
    const data: Record<string, unknown> = {};
    if (e.initiator === "local") data.initiator = "local";
    else if (e.initiator === "peer") data.initiator = "remote";
    if (e.isApplication) {
      data.application_error = "unknown";
      data.error_code = e.errorCode;
    } else if (e.errorCode >= 0x100 && e.errorCode < 0x200) {
      data.connection_error = `crypto_error_0x${e.errorCode.toString(16)}`;
    } else {
      const name = TRANSPORT_ERROR_NAMES[e.errorCode];
      data.connection_error = name ?? "unknown";
      if (!name) data.error_code = e.errorCode;
    }
    if (e.reason) data.reason = e.reason;
    data.trigger = e.initiator === "idle_timeout" ? "idle_timeout"
      : e.initiator === "stateless_reset" ? "stateless_reset"
        : e.initiator === "handshake_timeout" ? "idle_timeout"
          : e.isApplication ? "application"
            : e.errorCode === 0 ? "unspecified" : "error";
    this.emit(e.at, "quic:connection_closed", data);
    this.stateUpdated(e.at, state === "handshake" || state === "established" ? "closed" : state);
    if (state === "closed") this.finish();
  }

  /** The closing or draining period ended (RFC 9000 §10.2): the connection's state is gone. */
  closed(now: Instant): void {
    this.stateUpdated(now, "closed");
    this.finish();
  }

  /** Next datagram id for coalescing (quic-events §10): packets sharing one were in one datagram. */
  datagramId(): number {
    return this.nextDatagramId++;
  }

  // ----------------------------------------------------------------------------------------------

  private packetData(p: QlogPacketInfo, ackDelayExponent: number): Record<string, unknown> {
    const packetType = qlogPacketType(p.packetType);
    const header: Record<string, unknown> = { packet_type: packetType, packet_number: p.packetNumber };
    if (p.keyPhaseBit !== undefined && packetType === "1RTT") header.key_phase_bit = p.keyPhaseBit === 1;
    if (packetType !== "1RTT" && packetType !== "unknown") header.version = "00000001";
    if (p.scid) header.scid = hex(p.scid);
    if (p.dcid) header.dcid = hex(p.dcid);
    const frames = p.frames.map((f) => frameToQlog(f, ackDelayExponent));
    if (p.paddingBytes && p.paddingBytes > 0) frames.push({ frame_type: "padding", raw: { payload_length: p.paddingBytes } });
    const data: Record<string, unknown> = { header, frames, raw: { length: p.lengthBytes } };
    if (p.datagramId !== undefined) data.datagram_id = p.datagramId;
    return data;
  }

  private emit(now: Instant | undefined, name: string, data: Record<string, unknown>, pathId?: number): void {
    if (this.finished) return;
    const relative = now === undefined ? this.lastTimeMs : now - this.startedAt;
    // Round to 1 µs: more digits are noise and cost bytes. Never earlier than the previous event.
    const time = Math.max(this.lastTimeMs, Math.round(relative * 1000) / 1000);
    this.lastTimeMs = time;
    const event: QlogEvent = { time, name, data };
    if (pathId !== undefined && pathId !== 0) event.tuple = tupleId(pathId);
    this.pending.push(event);
    this.eventTotal++;
    const sink = this.options.sink;
    if (sink && this.pending.length >= this.batchEvents) sink.write(this.takeChunk());
  }
}

/** quic-events-12 §5.21 MigrationState. */
export type MigrationState = "probing_started" | "probing_abandoned" | "probing_successful" | "migration_started" | "migration_abandoned" | "migration_complete";

/** quic-events-12 §8.6 PacketType from our names. */
function qlogPacketType(t: string): QlogPacketType {
  switch (t) {
    case "0rtt":
      return "0RTT";
    case "1rtt":
      return "1RTT";
    case "initial":
    case "handshake":
    case "retry":
    case "version_negotiation":
    case "stateless_reset":
    case "0RTT":
    case "1RTT":
      return t;
    default:
      return "unknown";
  }
}

function tupleId(pathId: number): string {
  return pathId === 0 ? "" : String(pathId);
}

function tupleEndpoint(a: SocketAddress, cid?: Uint8Array): Record<string, unknown> {
  const out: Record<string, unknown> = a.address.includes(":") ? { ip_v6: a.address, port_v6: a.port } : { ip_v4: a.address, port_v4: a.port };
  if (cid && cid.length > 0) out.connection_ids = [hex(cid)];
  return out;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

function slowStartThreshold(cc: object): number | undefined {
  const f = (cc as { slowStartThresholdBytes?: () => number }).slowStartThresholdBytes;
  return typeof f === "function" ? f.call(cc) : undefined;
}

function phaseOf(m: Record<string, number>): string {
  return m.ssthresh !== undefined && m.congestion_window! >= m.ssthresh ? "congestion_avoidance" : "slow_start";
}

/** quic-events-12 §8.13 ($QuicFrame): a frame as the wire carried it, data as lengths only. */
export function frameToQlog(f: Frame, ackDelayExponent = 3): Record<string, unknown> {
  switch (f.type) {
    case "padding":
      return { frame_type: "padding", raw: { payload_length: f.length } };
    case "ping":
    case "handshake_done":
      return { frame_type: f.type };
    case "ack":
      return {
        frame_type: "ack",
        // In ms (quic-events-12 AckFrame); on the wire it is µs >> ack_delay_exponent (RFC 9000 §19.3).
        ack_delay: (f.ackDelay * 2 ** ackDelayExponent) / 1000,
        acked_ranges: f.ranges.map((r) => (r.smallest === r.largest ? [r.smallest] : [r.smallest, r.largest])),
        ...(f.ecn ? { ect0: f.ecn.ect0, ect1: f.ecn.ect1, ce: f.ecn.ce } : {}),
      };
    case "reset_stream":
      return { frame_type: "reset_stream", stream_id: f.streamId, error: "unknown", error_code: f.errorCode, final_size: f.finalSize };
    case "stop_sending":
      return { frame_type: "stop_sending", stream_id: f.streamId, error: "unknown", error_code: f.errorCode };
    case "crypto":
      return { frame_type: "crypto", offset: f.offset, raw: { length: f.data.length } };
    case "new_token":
      return { frame_type: "new_token", token: { raw: { length: f.token.length } } };
    case "stream":
      return { frame_type: "stream", stream_id: f.streamId, offset: f.offset, fin: f.fin, raw: { length: f.data.length } };
    case "max_data":
      return { frame_type: "max_data", maximum: f.maximumData };
    case "max_stream_data":
      return { frame_type: "max_stream_data", stream_id: f.streamId, maximum: f.maximumStreamData };
    case "max_streams":
      return { frame_type: "max_streams", stream_type: f.bidi ? "bidirectional" : "unidirectional", maximum: f.maximumStreams };
    case "data_blocked":
      return { frame_type: "data_blocked", limit: f.limit };
    case "stream_data_blocked":
      return { frame_type: "stream_data_blocked", stream_id: f.streamId, limit: f.limit };
    case "streams_blocked":
      return { frame_type: "streams_blocked", stream_type: f.bidi ? "bidirectional" : "unidirectional", limit: f.limit };
    case "new_connection_id":
      return {
        frame_type: "new_connection_id",
        sequence_number: f.sequenceNumber,
        retire_prior_to: f.retirePriorTo,
        connection_id: hex(f.connectionId),
        stateless_reset_token: hex(f.statelessResetToken),
      };
    case "retire_connection_id":
      return { frame_type: "retire_connection_id", sequence_number: f.sequenceNumber };
    case "path_challenge":
    case "path_response":
      return { frame_type: f.type, data: hex(f.data) };
    case "connection_close": {
      const out: Record<string, unknown> = { frame_type: "connection_close", error_space: f.isApplication ? "application" : "transport" };
      if (f.isApplication) {
        out.error = "unknown";
        out.error_code = f.errorCode;
      } else if (f.errorCode >= 0x100 && f.errorCode < 0x200) {
        out.error = `crypto_error_0x${f.errorCode.toString(16)}`;
      } else {
        out.error = TRANSPORT_ERROR_NAMES[f.errorCode] ?? "unknown";
        if (!TRANSPORT_ERROR_NAMES[f.errorCode]) out.error_code = f.errorCode;
        out.trigger_frame_type = f.frameType;
      }
      if (f.reason) out.reason = f.reason;
      return out;
    }
    case "datagram":
      return { frame_type: "datagram", raw: { length: f.data.length } };
  }
}

/** A lost packet's frames as the connection tracks them for retransmission (connection.ts SentFrame). */
function sentFrameToQlog(s: { kind: string; [k: string]: unknown }): Record<string, unknown> {
  switch (s.kind) {
    case "crypto":
      return { frame_type: "crypto", offset: s.offset, raw: { length: s.length } };
    case "stream":
      return { frame_type: "stream", stream_id: s.streamId, offset: s.offset, fin: s.fin, raw: { length: s.length } };
    case "ack":
      return { frame_type: "ack" };
    case "max_data":
    case "handshake_done":
    case "ping":
      return { frame_type: s.kind };
    case "max_stream_data":
      return { frame_type: "max_stream_data", stream_id: s.streamId };
    case "control":
      return frameToQlog(s.frame as Frame);
    default:
      return { frame_type: "unknown" };
  }
}

/** Split a JSON-SEQ text into its records (RFC 7464 §2.2): for readers and tests. Throws on a malformed sequence. */
export function parseJsonSeq(text: string): unknown[] {
  if (text.length === 0) return [];
  if (text[0] !== RECORD_SEPARATOR) throw new SyntaxError("JSON-SEQ text must start with RS (0x1E)");
  const out: unknown[] = [];
  for (const record of text.slice(1).split(RECORD_SEPARATOR)) {
    if (!record.endsWith("\n")) throw new SyntaxError("JSON-SEQ record must end with LF");
    out.push(JSON.parse(record));
  }
  return out;
}

/**
 * qvis (quiclog/qvis) reads qlog 0.3 names (`transport:`, `recovery:`, `security:` categories). This maps
 * a quic-events-12 .sqlog to that vocabulary and adds the 0.3 header fields, for viewing only: the result
 * is no longer main-schema-13 qlog. Events qvis never knew keep their name.
 */
export function convertForQvis(text: string): string {
  const records = parseJsonSeq(text) as Array<Record<string, unknown>>;
  let out = "";
  records.forEach((r, i) => {
    let rec = r;
    if (i === 0) {
      rec = { qlog_version: "0.3", qlog_format: "JSON-SEQ", ...r };
    } else if (typeof r.name === "string") {
      rec = { ...r, name: QVIS_NAMES[r.name] ?? r.name };
    }
    out += RECORD_SEPARATOR + JSON.stringify(rec) + "\n";
  });
  return out;
}

const QVIS_NAMES: Record<string, string> = {
  "quic:connection_started": "transport:connection_started",
  "quic:connection_closed": "transport:connection_closed",
  "quic:connection_state_updated": "transport:connection_state_updated",
  "quic:parameters_set": "transport:parameters_set",
  "quic:alpn_information": "transport:alpn_information",
  "quic:packet_sent": "transport:packet_sent",
  "quic:packet_received": "transport:packet_received",
  "quic:packet_dropped": "transport:packet_dropped",
  "quic:packet_buffered": "transport:packet_buffered",
  "quic:udp_datagrams_received": "transport:datagrams_received",
  "quic:key_updated": "security:key_updated",
  "quic:key_discarded": "security:key_discarded",
  "quic:recovery_metrics_updated": "recovery:metrics_updated",
  "quic:congestion_state_updated": "recovery:congestion_state_updated",
  "quic:packet_lost": "recovery:packet_lost",
};
