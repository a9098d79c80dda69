/**
 * QUIC v1 packet headers (RFC 9000 §17): parsing before decryption (for routing and coalescing),
 * and sealing/opening protected packets (RFC 9001 §5.3-5.4).
 */
import { randomInt } from "node:crypto";
import { QuicTransportError } from "./errors.ts";
import { decodePacketNumber, encodePacketNumberLength } from "./packet-number.ts";
import { aeadOpen, createPacketCipher, headerProtectionMask, type PacketKeys } from "./packet-protection.ts";
import { ByteReader, ByteWriter, varintLength, writeVarint } from "./varint.ts";

export const QUIC_V1 = 0x00000001;
/** RFC 9000 §17.2: connection IDs in QUIC v1 are at most 20 bytes. */
export const MAX_CONNECTION_ID_LENGTH = 20;

export type PacketType = "initial" | "0rtt" | "handshake" | "retry" | "version_negotiation" | "1rtt";

/** RFC 9000 §17.2 Table 5: long header packet types. */
const LONG_TYPE_BITS = { initial: 0, "0rtt": 1, handshake: 2, retry: 3 } as const;
const LONG_TYPES = ["initial", "0rtt", "handshake", "retry"] as const;

export interface ParsedHeader {
  form: "long" | "short";
  type: PacketType;
  /** 0 for Version Negotiation; undefined meaning only for short headers, where it is 0. */
  version: number;
  dcid: Uint8Array;
  /** Long headers only. */
  scid?: Uint8Array;
  /** Initial: the token (possibly empty); Retry: the Retry Token. */
  token?: Uint8Array;
  /** Version Negotiation: the versions the server supports. */
  supportedVersions?: number[];
  /** Start of this packet inside the datagram. */
  offset: number;
  /** Start of the (protected) Packet Number field; -1 for Retry, Version Negotiation and unknown versions. */
  pnOffset: number;
  /** Length field of a long header (packet number + payload + tag); for short headers, bytes after the DCID. */
  payloadLength: number;
  /** End of this packet inside the datagram (exclusive); later coalesced packets start here. */
  packetEnd: number;
}

function violation(reason: string): QuicTransportError {
  return new QuicTransportError("PROTOCOL_VIOLATION", reason);
}

/**
 * RFC 9000 §17: parse the parts of a header that are not protected. Throws QuicTransportError on a
 * malformed header; the caller drops the datagram (or the rest of it).
 */
export function parseUnprotectedHeader(datagram: Uint8Array, offset: number, shortHeaderDcidLength: number): ParsedHeader {
  const r = new ByteReader(datagram, offset);
  const first = r.u8();
  if ((first & 0x80) === 0) {
    // RFC 9000 §17.3.1: short header.
    if ((first & 0x40) === 0) throw violation("fixed bit is 0");
    const dcid = r.bytes(shortHeaderDcidLength);
    return {
      form: "short", type: "1rtt", version: 0, dcid, offset, pnOffset: r.offset,
      payloadLength: datagram.length - r.offset, packetEnd: datagram.length,
    };
  }
  // RFC 8999 §5.1 / RFC 9000 §17.2: long header.
  const version = r.u32();
  const dcidLength = r.u8();
  if (version === QUIC_V1 && dcidLength > MAX_CONNECTION_ID_LENGTH) throw violation("DCID longer than 20 bytes");
  const dcid = r.bytes(dcidLength);
  const scidLength = r.u8();
  if (version === QUIC_V1 && scidLength > MAX_CONNECTION_ID_LENGTH) throw violation("SCID longer than 20 bytes");
  const scid = r.bytes(scidLength);
  if (version === 0) {
    // RFC 9000 §17.2.1: Version Negotiation.
    if (r.remaining === 0 || r.remaining % 4 !== 0) throw violation("malformed Version Negotiation packet");
    const supportedVersions: number[] = [];
    while (r.remaining > 0) supportedVersions.push(r.u32());
    return {
      form: "long", type: "version_negotiation", version, dcid, scid, supportedVersions, offset,
      pnOffset: -1, payloadLength: 0, packetEnd: datagram.length,
    };
  }
  const type = LONG_TYPES[(first >> 4) & 0x03]!;
  if (version !== QUIC_V1) {
    // Unknown version: only the invariants (RFC 8999) are known; the caller answers with Version Negotiation.
    return { form: "long", type, version, dcid, scid, offset, pnOffset: -1, payloadLength: 0, packetEnd: datagram.length };
  }
  if ((first & 0x40) === 0) throw violation("fixed bit is 0");
  if (type === "retry") {
    // RFC 9000 §17.2.5: Retry Token runs to the 16-byte Retry Integrity Tag.
    if (r.remaining < 16) throw violation("Retry packet without integrity tag");
    const token = r.bytes(r.remaining - 16);
    return { form: "long", type, version, dcid, scid, token, offset, pnOffset: -1, payloadLength: 0, packetEnd: datagram.length };
  }
  let token: Uint8Array | undefined;
  if (type === "initial") token = r.bytes(r.varint()); // RFC 9000 §17.2.2
  const payloadLength = r.varint();
  if (payloadLength > r.remaining) throw violation("Length exceeds the datagram");
  const pnOffset = r.offset;
  return { form: "long", type, version, dcid, scid, token, offset, pnOffset, payloadLength, packetEnd: pnOffset + payloadLength };
}

export interface PacketToSeal {
  type: "initial" | "handshake" | "0rtt" | "1rtt";
  version?: number;
  dcid: Uint8Array;
  scid?: Uint8Array;
  /** Initial only; empty when absent. */
  token?: Uint8Array;
  packetNumber: number;
  /** Largest packet number the peer acknowledged in this space; undefined when none. */
  largestAcked: number | undefined;
  keyPhase?: 0 | 1;
  /** Frames. Zero bytes (PADDING) are appended as needed. */
  payload: Uint8Array;
  /** Pad the payload with PADDING to at least this many bytes. */
  minPayloadLength?: number;
  /** Force a Packet Number length (tests and published vectors); normally chosen by RFC 9000 §17.1. */
  packetNumberLength?: 1 | 2 | 3 | 4;
}

const TAG_LENGTH = 16;
const EMPTY = new Uint8Array(0);
/** Shared zero bytes for PADDING, so sealing a padded packet does not allocate them. */
const ZEROS = Buffer.alloc(1500);

/** Header length of a packet sealed with these parameters (without payload), for filling packets exactly. */
export function sealedHeaderLength(p: Omit<PacketToSeal, "payload">, payloadLengthWithTag: number): number {
  const pnLength = p.packetNumberLength ?? encodePacketNumberLength(p.packetNumber, p.largestAcked);
  if (p.type === "1rtt") return 1 + p.dcid.length + pnLength;
  const token = p.type === "initial" ? varintLength(p.token?.length ?? 0) + (p.token?.length ?? 0) : 0;
  return 1 + 4 + 1 + p.dcid.length + 1 + (p.scid?.length ?? 0) + token + varintLength(pnLength + payloadLengthWithTag) + pnLength;
}

/**
 * RFC 9000 §17 / RFC 9001 §5: build, encrypt and header-protect one packet. Pads the payload so the
 * header-protection sample exists (RFC 9001 §5.4.2) and to `minPayloadLength`.
 */
export function sealPacket(p: PacketToSeal, keys: PacketKeys): Buffer {
  const pnLength = p.packetNumberLength ?? encodePacketNumberLength(p.packetNumber, p.largestAcked);
  // RFC 9001 §5.4.2: packet number + payload must be at least 4 bytes so 16 sample bytes follow pn offset + 4.
  const paddedLength = Math.max(p.payload.length, p.minPayloadLength ?? 0, 4 - pnLength);
  const paddingLength = paddedLength - p.payload.length;
  const isLong = p.type !== "1rtt";
  const headerLength = sealedHeaderLength(p, paddedLength + TAG_LENGTH);
  const out = Buffer.allocUnsafe(headerLength + paddedLength + TAG_LENGTH);
  let pos = 0;
  if (isLong) {
    // RFC 9000 §17.2: header form 1, fixed bit 1, type, reserved bits 0, packet number length - 1.
    out[pos++] = 0xc0 | (LONG_TYPE_BITS[p.type as "initial" | "0rtt" | "handshake"] << 4) | (pnLength - 1);
    out.writeUInt32BE(p.version ?? QUIC_V1, pos);
    pos += 4;
    out[pos++] = p.dcid.length;
    out.set(p.dcid, pos);
    pos += p.dcid.length;
    const scid = p.scid ?? EMPTY;
    out[pos++] = scid.length;
    out.set(scid, pos);
    pos += scid.length;
    if (p.type === "initial") {
      const token = p.token ?? EMPTY;
      pos = writeVarint(out, pos, token.length);
      out.set(token, pos);
      pos += token.length;
    }
    pos = writeVarint(out, pos, pnLength + paddedLength + TAG_LENGTH);
  } else {
    // RFC 9000 §17.3.1: spin bit 0, reserved bits 0.
    out[pos++] = 0x40 | ((p.keyPhase ?? 0) << 2) | (pnLength - 1);
    out.set(p.dcid, pos);
    pos += p.dcid.length;
  }
  const pnOffset = pos;
  const truncatedPn = p.packetNumber % 2 ** (8 * pnLength);
  for (let i = pnLength - 1; i >= 0; i--) out[pos + pnLength - 1 - i] = Math.floor(truncatedPn / 2 ** (8 * i)) & 0xff;
  pos += pnLength;
  const header = out.subarray(0, headerLength);

  // RFC 9001 §5.3: AEAD with the unprotected header as associated data.
  const cipher = createPacketCipher(keys, p.packetNumber);
  cipher.setAAD(header);
  pos += cipher.update(p.payload).copy(out, pos);
  if (paddingLength > 0) {
    const zeros = paddingLength <= ZEROS.length ? ZEROS.subarray(0, paddingLength) : Buffer.alloc(paddingLength);
    pos += cipher.update(zeros).copy(out, pos);
  }
  pos += cipher.final().copy(out, pos);
  cipher.getAuthTag().copy(out, pos);

  // RFC 9001 §5.4.1: header protection.
  const sampleOffset = pnOffset + 4;
  const mask = headerProtectionMask(keys, out.subarray(sampleOffset, sampleOffset + 16));
  out[0] = out[0]! ^ (mask[0]! & (isLong ? 0x0f : 0x1f));
  for (let i = 0; i < pnLength; i++) out[pnOffset + i] = out[pnOffset + i]! ^ mask[1 + i]!;
  return out;
}

export interface OpenedPacket {
  packetNumber: number;
  payload: Buffer;
  keyPhase: 0 | 1;
}

/**
 * RFC 9001 §5.4 / §5.3: remove header protection, decode the packet number and decrypt.
 * Returns undefined when the packet cannot be authenticated (the caller counts the drop).
 * Throws QuicTransportError PROTOCOL_VIOLATION when an authenticated packet has non-zero reserved bits
 * (RFC 9000 §17.2, §17.3.1).
 * `keys` may be a function of the Key Phase bit (1-RTT key update, RFC 9001 §6); the header-protection
 * key is the same for both phases.
 */
export function openPacket(
  datagram: Uint8Array,
  header: ParsedHeader,
  keys: PacketKeys | ((keyPhase: 0 | 1) => PacketKeys | undefined),
  largestReceivedPn: number | undefined,
): OpenedPacket | undefined {
  const pnOffset = header.pnOffset;
  if (pnOffset < 0) return undefined;
  const end = header.packetEnd;
  // RFC 9001 §5.4.2: a packet too short to sample cannot be authenticated.
  if (end - pnOffset < 4 + 16 || end > datagram.length) return undefined;
  const hpKeys = typeof keys === "function" ? keys(0) ?? keys(1) : keys;
  if (hpKeys === undefined) return undefined;
  const mask = headerProtectionMask(hpKeys, datagram.subarray(pnOffset + 4, pnOffset + 20));
  const isLong = header.form === "long";
  const first = datagram[header.offset]! ^ (mask[0]! & (isLong ? 0x0f : 0x1f));
  const pnLength = (first & 0x03) + 1;
  // Associated data: the header with protection removed (a small copy; the datagram is not modified).
  const aad = Buffer.allocUnsafe(pnOffset + pnLength - header.offset);
  aad.set(datagram.subarray(header.offset, pnOffset + pnLength));
  aad[0] = first;
  let truncatedPn = 0;
  for (let i = 0; i < pnLength; i++) {
    const b = datagram[pnOffset + i]! ^ mask[1 + i]!;
    aad[pnOffset - header.offset + i] = b;
    truncatedPn = truncatedPn * 256 + b;
  }
  const keyPhase: 0 | 1 = !isLong && (first & 0x04) !== 0 ? 1 : 0;
  const packetKeys = typeof keys === "function" ? keys(keyPhase) : keys;
  if (packetKeys === undefined) return undefined;
  const packetNumber = decodePacketNumber(largestReceivedPn ?? -1, truncatedPn, pnLength * 8);
  const payload = aeadOpen(packetKeys, packetNumber, aad, datagram.subarray(pnOffset + pnLength, end));
  if (payload === undefined) return undefined;
  // RFC 9000 §17.2 / §17.3.1: reserved bits must be 0 once protection is removed.
  if ((first & (isLong ? 0x0c : 0x18)) !== 0) throw violation("reserved header bits are not zero");
  return { packetNumber, payload, keyPhase };
}

/** RFC 9000 §17.2.1: a Version Negotiation packet answering a packet with (dcid, scid) swapped by the caller. */
export function encodeVersionNegotiation(dcid: Uint8Array, scid: Uint8Array, versions: readonly number[]): Buffer {
  const w = new ByteWriter(7 + dcid.length + scid.length + 4 * versions.length);
  // Unused bits are arbitrary; 0x40 set so it is not mistaken for a packet with a cleared fixed bit.
  w.u8(0xc0 | randomInt(0, 0x40));
  w.u32(0);
  w.u8(dcid.length);
  w.bytes(dcid);
  w.u8(scid.length);
  w.bytes(scid);
  for (const v of versions) w.u32(v);
  return w.finish();
}
