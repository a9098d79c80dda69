/**
 * A reader for classic libpcap capture files (the format `tcpdump -w` writes; not pcapng), down to the UDP
 * payloads: link layer Ethernet (DLT_EN10MB), Linux cooked v1/v2 (`-i any`) or raw IP; IPv4 and IPv6; UDP.
 * Anything else (ARP, TCP, fragments, truncated records) is counted as skipped, never thrown: a capture is
 * input like a datagram. Only a file that is not a pcap at all is an error (PcapFormatError).
 *
 * Format: https://www.tcpdump.org/manpages/pcap-savefile.5.html, link types: https://www.tcpdump.org/linktypes.html
 */

export class PcapFormatError extends Error {
  override readonly name = "PcapFormatError";
  readonly code = "PCAP_FORMAT";
}

export const LINKTYPE = { ETHERNET: 1, RAW: 101, LINUX_SLL: 113, IPV4: 228, IPV6: 229, LINUX_SLL2: 276 } as const;

export interface UdpDatagramRecord {
  /** Position in the capture (0-based, over all records): the order the capture point saw them. */
  index: number;
  /** Capture timestamp in microseconds since the epoch (fractions kept for nanosecond files). */
  timeUs: number;
  src: { address: string; port: number };
  dst: { address: string; port: number };
  payload: Buffer;
}

export interface PcapReadResult {
  linkType: number;
  records: number;
  udp: UdpDatagramRecord[];
  /** Records that were not complete UDP datagrams, by reason. */
  skipped: Record<string, number>;
}

const GLOBAL_HEADER_BYTES = 24;
const RECORD_HEADER_BYTES = 16;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const IP_PROTOCOL_UDP = 17;

export function readPcap(file: Buffer): PcapReadResult {
  if (file.length < GLOBAL_HEADER_BYTES) throw new PcapFormatError(`pcap: ${file.length} bytes, shorter than the 24-byte global header`);
  const magic = file.readUInt32LE(0);
  let littleEndian: boolean;
  let nanoseconds: boolean;
  if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) {
    littleEndian = true;
    nanoseconds = magic === 0xa1b23c4d;
  } else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) {
    littleEndian = false;
    nanoseconds = magic === 0x4d3cb2a1;
  } else {
    throw new PcapFormatError(`pcap: magic 0x${magic.toString(16)} is not a classic pcap file (pcapng is not supported)`);
  }
  const u32 = (offset: number): number => (littleEndian ? file.readUInt32LE(offset) : file.readUInt32BE(offset));
  // The link type sits in the low 16 bits of the last header word (the upper bits are FCS flags, pcap-savefile(5)).
  const linkType = u32(20) & 0xffff;
  const result: PcapReadResult = { linkType, records: 0, udp: [], skipped: {} };
  const skip = (reason: string): void => {
    result.skipped[reason] = (result.skipped[reason] ?? 0) + 1;
  };
  let offset = GLOBAL_HEADER_BYTES;
  // Each record has at least a 16-byte header, so this bound can never cut a valid file short.
  const maxRecords = Math.floor((file.length - GLOBAL_HEADER_BYTES) / RECORD_HEADER_BYTES) + 1;
  for (let index = 0; index < maxRecords && offset < file.length; index++) {
    if (offset + RECORD_HEADER_BYTES > file.length) {
      skip("truncated_record_header");
      break;
    }
    const seconds = u32(offset);
    const fraction = u32(offset + 4);
    const capturedBytes = u32(offset + 8);
    const originalBytes = u32(offset + 12);
    const dataStart = offset + RECORD_HEADER_BYTES;
    offset = dataStart + capturedBytes;
    if (offset > file.length) {
      // tcpdump killed mid-write: the last record is cut off.
      skip("truncated_record");
      break;
    }
    result.records++;
    if (capturedBytes < originalBytes) {
      skip("snapped"); // the payload is incomplete: cannot be decrypted
      continue;
    }
    const timeUs = seconds * 1e6 + (nanoseconds ? fraction / 1e3 : fraction);
    const frame = file.subarray(dataStart, offset);
    const ip = linkPayload(frame, linkType);
    if (ip === undefined) {
      skip("not_ip");
      continue;
    }
    const udp = udpOf(ip);
    if (typeof udp === "string") {
      skip(udp);
      continue;
    }
    result.udp.push({ index, timeUs, ...udp });
  }
  return result;
}

/** The IP packet inside a link-layer frame, or undefined for non-IP (ARP, ...). */
function linkPayload(frame: Buffer, linkType: number): Buffer | undefined {
  let etherType: number;
  let start: number;
  switch (linkType) {
    case LINKTYPE.ETHERNET: {
      if (frame.length < 14) return undefined;
      start = 14;
      etherType = frame.readUInt16BE(12);
      // One 802.1Q tag at most (veth and bridges in our namespaces carry none; a tagged capture still parses).
      if (etherType === ETHERTYPE_VLAN && frame.length >= 18) {
        etherType = frame.readUInt16BE(16);
        start = 18;
      }
      break;
    }
    case LINKTYPE.LINUX_SLL:
      if (frame.length < 16) return undefined;
      etherType = frame.readUInt16BE(14);
      start = 16;
      break;
    case LINKTYPE.LINUX_SLL2:
      if (frame.length < 20) return undefined;
      etherType = frame.readUInt16BE(0);
      start = 20;
      break;
    case LINKTYPE.RAW:
    case LINKTYPE.IPV4:
    case LINKTYPE.IPV6: {
      const version = frame.length > 0 ? frame[0]! >> 4 : 0;
      etherType = version === 4 ? ETHERTYPE_IPV4 : version === 6 ? ETHERTYPE_IPV6 : 0;
      start = 0;
      break;
    }
    default:
      return undefined;
  }
  if (etherType !== ETHERTYPE_IPV4 && etherType !== ETHERTYPE_IPV6) return undefined;
  return frame.subarray(start);
}

type UdpParts = Omit<UdpDatagramRecord, "index" | "timeUs">;

/** The UDP datagram in an IP packet, or the reason there is none. */
function udpOf(ip: Buffer): UdpParts | string {
  if (ip.length < 1) return "ip_truncated";
  const version = ip[0]! >> 4;
  let protocol: number;
  let headerBytes: number;
  let totalBytes: number;
  let src: string;
  let dst: string;
  if (version === 4) {
    if (ip.length < 20) return "ip_truncated";
    headerBytes = (ip[0]! & 0x0f) * 4;
    totalBytes = ip.readUInt16BE(2);
    // RFC 791: more-fragments flag or a fragment offset: only the reassembled datagram would be UDP.
    if ((ip.readUInt16BE(6) & 0x3fff) !== 0) return "ip_fragment";
    protocol = ip[9]!;
    src = Array.from(ip.subarray(12, 16)).join(".");
    dst = Array.from(ip.subarray(16, 20)).join(".");
  } else if (version === 6) {
    if (ip.length < 40) return "ip_truncated";
    headerBytes = 40;
    totalBytes = 40 + ip.readUInt16BE(4);
    protocol = ip[6]!; // extension headers are not followed: our stack sends none
    src = formatIpv6(ip.subarray(8, 24));
    dst = formatIpv6(ip.subarray(24, 40));
  } else {
    return "ip_version";
  }
  if (protocol !== IP_PROTOCOL_UDP) return "not_udp";
  if (headerBytes < 20 || totalBytes > ip.length || totalBytes < headerBytes + 8) return "ip_truncated";
  const udp = ip.subarray(headerBytes, totalBytes);
  const udpLength = udp.readUInt16BE(4);
  if (udpLength < 8 || udpLength > udp.length) return "udp_truncated";
  return {
    src: { address: src, port: udp.readUInt16BE(0) },
    dst: { address: dst, port: udp.readUInt16BE(2) },
    payload: Buffer.from(udp.subarray(8, udpLength)),
  };
}

function formatIpv6(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // Not compressed (RFC 5952 "::"): the records are compared with each other, not shown to users.
  return groups.join(":");
}

/** Writes a classic little-endian microsecond pcap of raw IPv4 UDP datagrams (tests of the reader and the verdict). */
export function writeRawIpv4Pcap(datagrams: ReadonlyArray<{ timeUs: number; src: { address: string; port: number }; dst: { address: string; port: number }; payload: Uint8Array }>): Buffer {
  const header = Buffer.alloc(GLOBAL_HEADER_BYTES);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(262144, 16);
  header.writeUInt32LE(LINKTYPE.IPV4, 20);
  const parts: Buffer[] = [header];
  for (const d of datagrams) {
    const total = 20 + 8 + d.payload.length;
    const ip = Buffer.alloc(total);
    ip[0] = 0x45;
    ip.writeUInt16BE(total, 2);
    ip[8] = 64;
    ip[9] = IP_PROTOCOL_UDP;
    ip.set(d.src.address.split(".").map(Number), 12);
    ip.set(d.dst.address.split(".").map(Number), 16);
    ip.writeUInt16BE(d.src.port, 20);
    ip.writeUInt16BE(d.dst.port, 22);
    ip.writeUInt16BE(8 + d.payload.length, 24);
    ip.set(d.payload, 28);
    const record = Buffer.alloc(RECORD_HEADER_BYTES);
    record.writeUInt32LE(Math.floor(d.timeUs / 1e6), 0);
    record.writeUInt32LE(Math.round(d.timeUs % 1e6), 4);
    record.writeUInt32LE(total, 8);
    record.writeUInt32LE(total, 12);
    parts.push(record, ip);
  }
  return Buffer.concat(parts);
}
