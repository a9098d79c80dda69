/**
 * The preferred_address transport parameter value (RFC 9000 §18.2, §9.6). Checklist items PA-02 and PA-03
 * of /work/shared/spec/preferred-address.md; PA-01 (client must not send it) is in transport-parameters.ts.
 */
import { QuicTransportError } from "./errors.ts";
import { ByteReader, ByteWriter, ownedCopy } from "./varint.ts";

export interface PreferredAddressEndpoint {
  address: string;
  port: number;
}

export interface PreferredAddress {
  /** Absent when the server offers no IPv4 address (sent as 0.0.0.0:0). */
  ipv4?: PreferredAddressEndpoint;
  /** Absent when the server offers no IPv6 address (sent as [::]:0). */
  ipv6?: PreferredAddressEndpoint;
  /** Connection ID with sequence number 1 (RFC 9000 §5.1.1); never zero-length. */
  connectionId: Buffer;
  statelessResetToken: Buffer;
}

function parameterError(reason: string): QuicTransportError {
  return new QuicTransportError("TRANSPORT_PARAMETER_ERROR", `preferred_address: ${reason}`);
}

/** Dotted-quad to 4 bytes. */
function parseIpv4(address: string): Uint8Array {
  const parts = address.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new RangeError(`not an IPv4 address: ${address}`);
  }
  return Uint8Array.from(parts.map(Number));
}

/** RFC 4291 §2.2 text form (with "::", without embedded IPv4) to 16 bytes. */
function parseIpv6(address: string): Uint8Array {
  const halves = address.split("::");
  if (halves.length > 2) throw new RangeError(`not an IPv6 address: ${address}`);
  const groups = (s: string): number[] =>
    s === "" ? [] : s.split(":").map((g) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new RangeError(`not an IPv6 address: ${address}`);
      return parseInt(g, 16);
    });
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 2 && missing < 1) || (halves.length === 1 && missing !== 0)) {
    throw new RangeError(`not an IPv6 address: ${address}`);
  }
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** RFC 5952 §4: lower case, leading zeros dropped, the longest run (≥ 2) of zero groups as "::". */
function formatIpv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1, bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) { bestStart = i; bestLength = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

const isZero = (bytes: Uint8Array): boolean => bytes.every((b) => b === 0);

/** RFC 9000 §18.2 Figure 22: encode the value of preferred_address. */
export function encodePreferredAddress(pa: PreferredAddress): Buffer {
  if (pa.connectionId.length < 1 || pa.connectionId.length > 20) {
    throw new RangeError("preferred_address connection ID must be 1..20 bytes (RFC 9000 §18.2)");
  }
  if (pa.statelessResetToken.length !== 16) throw new RangeError("stateless reset token must be 16 bytes");
  const w = new ByteWriter(41 + pa.connectionId.length);
  w.bytes(pa.ipv4 ? parseIpv4(pa.ipv4.address) : new Uint8Array(4));
  w.u16(pa.ipv4?.port ?? 0);
  w.bytes(pa.ipv6 ? parseIpv6(pa.ipv6.address) : new Uint8Array(16));
  w.u16(pa.ipv6?.port ?? 0);
  w.u8(pa.connectionId.length);
  w.bytes(pa.connectionId);
  w.bytes(pa.statelessResetToken);
  return w.finish();
}

/**
 * RFC 9000 §18.2: decode preferred_address. A family whose address is all zeros or whose port is 0 is
 * not offered (PA-02); when neither is offered the result is undefined (treated as no preferred address).
 * Throws TRANSPORT_PARAMETER_ERROR for a wrong length or a zero-length connection ID (PA-03).
 */
export function decodePreferredAddress(value: Uint8Array): PreferredAddress | undefined {
  const r = new ByteReader(value);
  try {
    const ipv4Bytes = r.bytes(4);
    const ipv4Port = r.u16();
    const ipv6Bytes = r.bytes(16);
    const ipv6Port = r.u16();
    const cidLength = r.u8();
    if (cidLength === 0) throw parameterError("zero-length connection ID");
    if (cidLength > 20) throw parameterError(`connection ID of ${cidLength} bytes`);
    // Owned copies: both live as long as the connection, and a Buffer.from() slice would pin a 64 KiB pool
    // (about 27 KB per client connection at scale, bench/scale-10k.bench.ts).
    const connectionId = ownedCopy(r.bytes(cidLength));
    const statelessResetToken = ownedCopy(r.bytes(16));
    if (r.remaining !== 0) throw parameterError("trailing bytes");
    const pa: PreferredAddress = { connectionId, statelessResetToken };
    if (!isZero(ipv4Bytes) && ipv4Port !== 0) pa.ipv4 = { address: Array.from(ipv4Bytes).join("."), port: ipv4Port };
    if (!isZero(ipv6Bytes) && ipv6Port !== 0) pa.ipv6 = { address: formatIpv6(ipv6Bytes), port: ipv6Port };
    return pa.ipv4 || pa.ipv6 ? pa : undefined;
  } catch (err) {
    if (err instanceof QuicTransportError && err.code !== 0x08) throw parameterError("truncated");
    throw err;
  }
}
