/**
 * QUIC transport parameters (RFC 9000 §18, §7.4), plus max_datagram_frame_size (RFC 9221 §3).
 */
import { QuicTransportError } from "./errors.ts";
import { decodePreferredAddress, encodePreferredAddress, type PreferredAddress } from "./preferred-address.ts";
import { ByteReader, ByteWriter, ownedCopy, varintLength } from "./varint.ts";

/** RFC 9000 §18.2 Table 6 and RFC 9221 §3. */
export const TRANSPORT_PARAMETER_IDS = {
  original_destination_connection_id: 0x00,
  max_idle_timeout: 0x01,
  stateless_reset_token: 0x02,
  max_udp_payload_size: 0x03,
  initial_max_data: 0x04,
  initial_max_stream_data_bidi_local: 0x05,
  initial_max_stream_data_bidi_remote: 0x06,
  initial_max_stream_data_uni: 0x07,
  initial_max_streams_bidi: 0x08,
  initial_max_streams_uni: 0x09,
  ack_delay_exponent: 0x0a,
  max_ack_delay: 0x0b,
  disable_active_migration: 0x0c,
  preferred_address: 0x0d,
  active_connection_id_limit: 0x0e,
  initial_source_connection_id: 0x0f,
  retry_source_connection_id: 0x10,
  max_datagram_frame_size: 0x20,
} as const;

const ID = TRANSPORT_PARAMETER_IDS;

export interface UnknownTransportParameter {
  id: number;
  value: Buffer;
}

export interface TransportParameters {
  /** Server only. */
  originalDestinationConnectionId?: Buffer;
  /** 0 = no idle timeout. */
  maxIdleTimeoutMs: number;
  /** Server only; 16 bytes. */
  statelessResetToken?: Buffer;
  maxUdpPayloadSize: number;
  initialMaxData: number;
  initialMaxStreamDataBidiLocal: number;
  initialMaxStreamDataBidiRemote: number;
  initialMaxStreamDataUni: number;
  initialMaxStreamsBidi: number;
  initialMaxStreamsUni: number;
  ackDelayExponent: number;
  maxAckDelayMs: number;
  disableActiveMigration: boolean;
  /** Server only (PA-01). */
  preferredAddress?: PreferredAddress;
  activeConnectionIdLimit: number;
  initialSourceConnectionId?: Buffer;
  /** Server only, after a Retry. */
  retrySourceConnectionId?: Buffer;
  /** RFC 9221: undefined = DATAGRAM frames not supported. */
  maxDatagramFrameSize?: number;
  /** Parameters we do not know, kept in order (GREASE, 31 * N + 27, is dropped). */
  unknown: UnknownTransportParameter[];
}

/** RFC 9000 §18.2: the value of every parameter when it is absent. */
export function defaultTransportParameters(): TransportParameters {
  return {
    maxIdleTimeoutMs: 0,
    maxUdpPayloadSize: 65527,
    initialMaxData: 0,
    initialMaxStreamDataBidiLocal: 0,
    initialMaxStreamDataBidiRemote: 0,
    initialMaxStreamDataUni: 0,
    initialMaxStreamsBidi: 0,
    initialMaxStreamsUni: 0,
    ackDelayExponent: 3,
    maxAckDelayMs: 25,
    disableActiveMigration: false,
    activeConnectionIdLimit: 2,
    unknown: [],
  };
}

type Role = "client" | "server";

/** RFC 9000 §18.2: parameters only a server may send. */
const SERVER_ONLY = new Set<number>([
  ID.original_destination_connection_id, ID.stateless_reset_token, ID.preferred_address, ID.retry_source_connection_id,
]);

/** RFC 9000 §18.1: reserved (GREASE) identifiers are 31 * N + 27. */
export function isReservedTransportParameter(id: number): boolean {
  return id >= 27 && (id - 27) % 31 === 0;
}

/** RFC 9000 §18: encode the parameters `senderRole` sends; defaults are omitted. */
export function encodeTransportParameters(tp: TransportParameters, senderRole: Role): Buffer {
  const w = new ByteWriter(256);
  const d = defaultTransportParameters();
  const bytes = (id: number, value: Uint8Array): void => {
    w.varint(id);
    w.varint(value.length);
    w.bytes(value);
  };
  const int = (id: number, value: number, defaultValue: number | undefined): void => {
    if (value === defaultValue) return;
    w.varint(id);
    w.varint(varintLength(value));
    w.varint(value);
  };
  if (senderRole === "server") {
    if (tp.originalDestinationConnectionId) bytes(ID.original_destination_connection_id, tp.originalDestinationConnectionId);
    if (tp.statelessResetToken) bytes(ID.stateless_reset_token, tp.statelessResetToken);
    if (tp.preferredAddress) bytes(ID.preferred_address, encodePreferredAddress(tp.preferredAddress));
    if (tp.retrySourceConnectionId) bytes(ID.retry_source_connection_id, tp.retrySourceConnectionId);
  }
  int(ID.max_idle_timeout, tp.maxIdleTimeoutMs, d.maxIdleTimeoutMs);
  int(ID.max_udp_payload_size, tp.maxUdpPayloadSize, d.maxUdpPayloadSize);
  int(ID.initial_max_data, tp.initialMaxData, d.initialMaxData);
  int(ID.initial_max_stream_data_bidi_local, tp.initialMaxStreamDataBidiLocal, d.initialMaxStreamDataBidiLocal);
  int(ID.initial_max_stream_data_bidi_remote, tp.initialMaxStreamDataBidiRemote, d.initialMaxStreamDataBidiRemote);
  int(ID.initial_max_stream_data_uni, tp.initialMaxStreamDataUni, d.initialMaxStreamDataUni);
  int(ID.initial_max_streams_bidi, tp.initialMaxStreamsBidi, d.initialMaxStreamsBidi);
  int(ID.initial_max_streams_uni, tp.initialMaxStreamsUni, d.initialMaxStreamsUni);
  int(ID.ack_delay_exponent, tp.ackDelayExponent, d.ackDelayExponent);
  int(ID.max_ack_delay, tp.maxAckDelayMs, d.maxAckDelayMs);
  if (tp.disableActiveMigration) bytes(ID.disable_active_migration, new Uint8Array(0));
  int(ID.active_connection_id_limit, tp.activeConnectionIdLimit, d.activeConnectionIdLimit);
  if (tp.initialSourceConnectionId) bytes(ID.initial_source_connection_id, tp.initialSourceConnectionId);
  if (tp.maxDatagramFrameSize !== undefined) int(ID.max_datagram_frame_size, tp.maxDatagramFrameSize, undefined);
  for (const u of tp.unknown) bytes(u.id, u.value);
  return ownedCopy(w.finish());
}

function parameterError(reason: string): QuicTransportError {
  return new QuicTransportError("TRANSPORT_PARAMETER_ERROR", reason);
}

/**
 * RFC 9000 §18, §7.4: decode and validate the parameters sent by `senderRole`. Every problem is a
 * QuicTransportError TRANSPORT_PARAMETER_ERROR. Connection-ID matching (§7.3) is the connection's job.
 */
export function decodeTransportParameters(buf: Uint8Array, senderRole: Role): TransportParameters {
  try {
    return decodeUnchecked(buf, senderRole);
  } catch (err) {
    if (err instanceof QuicTransportError && err.code !== 0x08) throw parameterError(`malformed transport parameters: ${err.message}`);
    throw err;
  }
}

function decodeUnchecked(buf: Uint8Array, senderRole: Role): TransportParameters {
  const tp = defaultTransportParameters();
  const seen = new Set<number>();
  const r = new ByteReader(buf);
  while (r.remaining > 0) {
    const id = r.varint();
    const value = r.bytes(r.varint());
    // RFC 9000 §7.4: a parameter must not appear twice.
    if (seen.has(id)) throw parameterError(`duplicate transport parameter 0x${id.toString(16)}`);
    seen.add(id);
    // RFC 9000 §18.2: a client must not send server-only parameters (PA-01 for preferred_address).
    if (senderRole === "client" && SERVER_ONLY.has(id)) throw parameterError(`client sent server-only transport parameter 0x${id.toString(16)}`);
    const int = (): number => {
      const vr = new ByteReader(value);
      const v = vr.varint();
      if (vr.remaining !== 0) throw parameterError(`transport parameter 0x${id.toString(16)}: value length does not match its varint`);
      return v;
    };
    const cid = (): Buffer => {
      if (value.length > 20) throw parameterError(`connection ID of ${value.length} bytes`);
      return ownedCopy(value);
    };
    switch (id) {
      case ID.original_destination_connection_id: tp.originalDestinationConnectionId = cid(); break;
      case ID.max_idle_timeout: tp.maxIdleTimeoutMs = int(); break;
      case ID.stateless_reset_token:
        if (value.length !== 16) throw parameterError("stateless_reset_token must be 16 bytes");
        tp.statelessResetToken = ownedCopy(value);
        break;
      case ID.max_udp_payload_size:
        tp.maxUdpPayloadSize = int();
        if (tp.maxUdpPayloadSize < 1200) throw parameterError("max_udp_payload_size below 1200");
        break;
      case ID.initial_max_data: tp.initialMaxData = int(); break;
      case ID.initial_max_stream_data_bidi_local: tp.initialMaxStreamDataBidiLocal = int(); break;
      case ID.initial_max_stream_data_bidi_remote: tp.initialMaxStreamDataBidiRemote = int(); break;
      case ID.initial_max_stream_data_uni: tp.initialMaxStreamDataUni = int(); break;
      case ID.initial_max_streams_bidi:
        tp.initialMaxStreamsBidi = int();
        if (tp.initialMaxStreamsBidi > 2 ** 60) throw parameterError("initial_max_streams_bidi above 2^60");
        break;
      case ID.initial_max_streams_uni:
        tp.initialMaxStreamsUni = int();
        if (tp.initialMaxStreamsUni > 2 ** 60) throw parameterError("initial_max_streams_uni above 2^60");
        break;
      case ID.ack_delay_exponent:
        tp.ackDelayExponent = int();
        if (tp.ackDelayExponent > 20) throw parameterError("ack_delay_exponent above 20");
        break;
      case ID.max_ack_delay:
        tp.maxAckDelayMs = int();
        if (tp.maxAckDelayMs >= 2 ** 14) throw parameterError("max_ack_delay of 2^14 or more");
        break;
      case ID.disable_active_migration:
        if (value.length !== 0) throw parameterError("disable_active_migration must be empty");
        tp.disableActiveMigration = true;
        break;
      case ID.preferred_address: {
        const pa = decodePreferredAddress(value);
        if (pa) tp.preferredAddress = pa;
        break;
      }
      case ID.active_connection_id_limit:
        tp.activeConnectionIdLimit = int();
        if (tp.activeConnectionIdLimit < 2) throw parameterError("active_connection_id_limit below 2");
        break;
      case ID.initial_source_connection_id: tp.initialSourceConnectionId = cid(); break;
      case ID.retry_source_connection_id: tp.retrySourceConnectionId = cid(); break;
      case ID.max_datagram_frame_size: tp.maxDatagramFrameSize = int(); break;
      default:
        if (!isReservedTransportParameter(id)) tp.unknown.push({ id, value: ownedCopy(value) });
    }
  }
  // PA-03 / RFC 9000 §18.2: a server using zero-length connection IDs must not send preferred_address.
  if (seen.has(ID.preferred_address) && tp.initialSourceConnectionId?.length === 0) {
    throw parameterError("preferred_address from a server using zero-length connection IDs");
  }
  return tp;
}
