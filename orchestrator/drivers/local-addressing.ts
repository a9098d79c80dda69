/**
 * How the local driver maps a topology's networks onto 127.0.0.0/8 (all of it routes to `lo`).
 *
 * A run gets a second octet A = 16 + (FNV-1a-32(runId) mod 224), so A ∈ [16, 239] and two runs
 * rarely share it (when they do, createNetwork steps A by one until it is free). Network number i
 * (the order of createNetwork within the run, 0…127) becomes:
 *   - published subnet  127.A.i.0/24       (what peers are given: QMT_ADDR_<NETWORK>)
 *   - hidden subnet     127.A.(128+i).0/24 (what the node binds: QMT_BIND_ADDR_<NETWORK>)
 * A node's host octet is the last octet of its topology address (192.0.2.10 → 127.A.i.10: the
 * documentation subnet's loopback twin); nodes without an address get 10, 11, … in start order.
 */
export const MAX_NETWORKS_PER_RUN = 128;

export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, "utf8")) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

export function runSecondOctet(runId: string, step = 0): number {
  return 16 + ((fnv1a32(runId) + step) % 224);
}

export function publishedSubnet(secondOctet: number, networkIndex: number): string {
  return `127.${secondOctet}.${networkIndex}.0/24`;
}

export function publishedAddress(secondOctet: number, networkIndex: number, host: number): string {
  return `127.${secondOctet}.${networkIndex}.${host}`;
}

export function hiddenAddress(secondOctet: number, networkIndex: number, host: number): string {
  return `127.${secondOctet}.${128 + networkIndex}.${host}`;
}

/** The subnet of the hidden twins: where the nodes of network `networkIndex` bind. */
export function hiddenSubnet(secondOctet: number, networkIndex: number): string {
  return `${hiddenAddress(secondOctet, networkIndex, 0)}/24`;
}

/** Last octet of an IPv4 address, 1…254. */
export function hostOctet(ipv4: string): number {
  const parts = ipv4.split(".").map(Number);
  const last = parts[3];
  if (parts.length !== 4 || last === undefined || !Number.isInteger(last) || last < 1 || last > 254) throw new Error(`not a usable IPv4 host address: ${ipv4}`);
  return last;
}

/** An environment-variable suffix for a network name: "public-a" → "PUBLIC_A". */
export function envName(network: string): string {
  return network.toUpperCase().replace(/[^A-Z0-9]/g, "_");
}
