/**
 * The LB ↔ backend encapsulation (README.md "Encapsulation"): a small header in front of each
 * QUIC datagram on the private network, carrying the client's address and the VIP it sent to.
 * The same header is used both ways:
 *
 *   LB → backend:  client = the client's address (source), vip = the VIP it reached (destination)
 *   backend → LB:  client = where the LB sends the datagram, vip = the VIP it must send from
 *
 *   Tunnel Header {
 *     Magic (16) = 0x514c ("QL"),
 *     Version (8) = 1,
 *     Family (8) = 4 | 6,
 *     Client Port (16),
 *     VIP Port (16),
 *     Client Address (32 | 128),
 *     VIP Address (32 | 128),
 *   }                                   16 octets for IPv4, 40 for IPv6, then the QUIC datagram.
 *
 * Sans-I/O: bytes in, bytes out. A malformed header is a typed result, never an exception.
 */
import { isIPv4, isIPv6 } from "node:net";
import type { SocketAddress } from "../quic/path.ts";

export const TUNNEL_MAGIC = 0x514c;
export const TUNNEL_VERSION = 1;
export const TUNNEL_HEADER_BYTES_V4 = 16;
export const TUNNEL_HEADER_BYTES_V6 = 40;
/** Largest UDP payload over IPv4 (65535 − 20 − 8). */
const MAX_UDP_PAYLOAD_BYTES = 65_507;

export interface TunnelHeader {
  client: SocketAddress;
  vip: SocketAddress;
}

export type DecapsulateError = "too_short" | "bad_magic" | "bad_version" | "bad_family";
export type Decapsulated = ({ ok: true; payload: Buffer } & TunnelHeader) | { ok: false; error: DecapsulateError };

export function tunnelHeaderBytes(family: 4 | 6): number {
  return family === 4 ? TUNNEL_HEADER_BYTES_V4 : TUNNEL_HEADER_BYTES_V6;
}

/** Prepend the header. Throws RangeError for addresses of mixed or unknown families (our bug, not input). */
export function encapsulate(header: TunnelHeader, payload: Uint8Array): Buffer {
  const family = familyOf(header.client.address);
  if (family === undefined || familyOf(header.vip.address) !== family) {
    throw new RangeError(`tunnel addresses must be one IP family: ${header.client.address}, ${header.vip.address}`);
  }
  const headerBytes = tunnelHeaderBytes(family);
  if (headerBytes + payload.length > MAX_UDP_PAYLOAD_BYTES) throw new RangeError(`datagram of ${payload.length} bytes is too large to encapsulate`);
  const out = Buffer.allocUnsafe(headerBytes + payload.length);
  out.writeUInt16BE(TUNNEL_MAGIC, 0);
  out[2] = TUNNEL_VERSION;
  out[3] = family;
  out.writeUInt16BE(header.client.port, 4);
  out.writeUInt16BE(header.vip.port, 6);
  const addressBytes = family === 4 ? 4 : 16;
  writeAddress(out, 8, header.client.address, family);
  writeAddress(out, 8 + addressBytes, header.vip.address, family);
  out.set(payload, headerBytes);
  return out;
}

/** Split a tunnelled datagram. The payload shares memory with `datagram`. */
export function decapsulate(datagram: Buffer): Decapsulated {
  if (datagram.length < 4) return { ok: false, error: "too_short" };
  if (datagram.readUInt16BE(0) !== TUNNEL_MAGIC) return { ok: false, error: "bad_magic" };
  if (datagram[2] !== TUNNEL_VERSION) return { ok: false, error: "bad_version" };
  const family = datagram[3];
  if (family !== 4 && family !== 6) return { ok: false, error: "bad_family" };
  const headerBytes = tunnelHeaderBytes(family);
  if (datagram.length < headerBytes) return { ok: false, error: "too_short" };
  const addressBytes = family === 4 ? 4 : 16;
  return {
    ok: true,
    client: { address: readAddress(datagram, 8, family), port: datagram.readUInt16BE(4) },
    vip: { address: readAddress(datagram, 8 + addressBytes, family), port: datagram.readUInt16BE(6) },
    payload: datagram.subarray(headerBytes),
  };
}

function familyOf(address: string): 4 | 6 | undefined {
  return isIPv4(address) ? 4 : isIPv6(address) ? 6 : undefined;
}

function writeAddress(out: Buffer, offset: number, address: string, family: 4 | 6): void {
  if (family === 4) {
    const parts = address.split(".").map(Number);
    for (let i = 0; i < 4; i++) out[offset + i] = parts[i]!;
    return;
  }
  const words = expandIPv6(address);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(words[i]!, offset + 2 * i);
}

function readAddress(buf: Buffer, offset: number, family: 4 | 6): string {
  if (family === 4) return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
  const words: string[] = [];
  for (let i = 0; i < 8; i++) words.push(buf.readUInt16BE(offset + 2 * i).toString(16));
  // Canonical enough for socket APIs and for comparing with node:dgram's own formatting of "::1".
  return compressIPv6(words);
}

/** "::1" → [0,0,0,0,0,0,0,1]; handles an embedded IPv4 tail ("::ffff:1.2.3.4"). */
function expandIPv6(address: string): number[] {
  let text = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const p = v4[1]!.split(".").map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((p[0]! << 8) | p[1]!).toString(16)}:${((p[2]! << 8) | p[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const headWords = head ? head.split(":").filter((w) => w.length > 0) : [];
  const tailWords = tail ? tail.split(":").filter((w) => w.length > 0) : [];
  const zeros = tail === undefined ? 0 : 8 - headWords.length - tailWords.length;
  return [...headWords, ...Array<string>(zeros).fill("0"), ...tailWords].map((w) => parseInt(w, 16));
}

function compressIPv6(words: string[]): string {
  // RFC 5952 §4.2: compress the longest run (≥ 2) of zero words.
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === "0") j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return words.join(":");
  return `${words.slice(0, bestStart).join(":")}::${words.slice(bestStart + bestLength).join(":")}`;
}
