/**
 * IPv4 addresses and CIDR blocks as the topology checks need them: parse, containment, overlap,
 * and the ranges we allow (RFC 1918 private space, RFC 5737 documentation space).
 */
import { isIPv4 } from "node:net";

export interface Ipv4Cidr {
  /** Network address as an unsigned 32-bit integer. */
  base: number;
  prefixLength: number;
  text: string;
}

export function ipv4ToInt(address: string): number | undefined {
  if (!isIPv4(address)) return undefined;
  return address.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export function intToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

function blockSize(prefixLength: number): number {
  return 2 ** (32 - prefixLength);
}

/** "10.1.0.0/24" → block; undefined when malformed or when host bits are set ("10.1.0.5/24"). */
export function parseIpv4Cidr(text: string): Ipv4Cidr | undefined {
  const match = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  if (match === null) return undefined;
  const base = ipv4ToInt(match[1] as string);
  const prefixLength = Number(match[2]);
  if (base === undefined || prefixLength > 32) return undefined;
  if (base % blockSize(prefixLength) !== 0) return undefined;
  return { base, prefixLength, text };
}

export function cidrContainsAddress(cidr: Ipv4Cidr, address: number): boolean {
  return address >= cidr.base && address < cidr.base + blockSize(cidr.prefixLength);
}

export function cidrContainsCidr(outer: Ipv4Cidr, inner: Ipv4Cidr): boolean {
  return inner.prefixLength >= outer.prefixLength && cidrContainsAddress(outer, inner.base);
}

export function cidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  return cidrContainsAddress(a, b.base) || cidrContainsAddress(b, a.base);
}

/** The addresses a node may not take: network, first host (the engine's gateway) and broadcast. */
export function reservedAddresses(cidr: Ipv4Cidr): number[] {
  const last = cidr.base + blockSize(cidr.prefixLength) - 1;
  return cidr.prefixLength >= 31 ? [] : [cidr.base, cidr.base + 1, last];
}

/** RFC 5737 §3: TEST-NET-1, TEST-NET-2, TEST-NET-3, for the networks that stand for the Internet. */
export const DOCUMENTATION_RANGES = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"] as const;
/** RFC 1918 §3: private address space, for networks inside a site and for management. */
export const PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] as const;

export function isWithinAny(cidr: Ipv4Cidr, ranges: readonly string[]): boolean {
  return ranges.some((range) => cidrContainsCidr(parseIpv4Cidr(range) as Ipv4Cidr, cidr));
}
