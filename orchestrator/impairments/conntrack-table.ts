/**
 * The kernel's connection-tracking table of one network namespace, as `/proc/net/nf_conntrack`
 * prints it (CONFIG_NF_CONNTRACK_PROCFS). netns-relay.ts reads it once per new flow to learn where a
 * datagram DNAT'ed to it was going (node:dgram has no IP_RECVORIGDSTADDR), e.g.
 *
 *   ipv4     2 udp      17 29 src=192.0.2.3 dst=192.0.2.2 sport=5000 dport=4433 [UNREPLIED]
 *            src=198.18.0.63 dst=192.0.2.3 sport=40000 dport=5000 mark=0 zone=0 use=2
 *
 * (one line): the first src/dst/sport/dport are the original direction, the second the reply.
 */
import type { UdpEndpoint } from "./delivery-scheduler.ts";

export interface ConntrackTuple {
  src: UdpEndpoint;
  dst: UdpEndpoint;
}

export interface ConntrackEntry {
  protocol: string;
  original: ConntrackTuple;
  reply: ConntrackTuple;
}

/** UDP/TCP entries of the table; lines of other protocols or without ports are left out. */
export function parseConntrackTable(text: string): ConntrackEntry[] {
  const entries: ConntrackEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(/\s+/);
    const protocol = fields[2];
    if (protocol !== "udp" && protocol !== "tcp") continue;
    const values: Record<string, string[]> = {};
    for (const field of fields) {
      const eq = field.indexOf("=");
      if (eq > 0) (values[field.slice(0, eq)] ??= []).push(field.slice(eq + 1));
    }
    const tuple = (i: number): ConntrackTuple | undefined => {
      const src = values["src"]?.[i];
      const dst = values["dst"]?.[i];
      const sport = Number(values["sport"]?.[i]);
      const dport = Number(values["dport"]?.[i]);
      if (src === undefined || dst === undefined || !Number.isInteger(sport) || !Number.isInteger(dport)) return undefined;
      return { src: { address: src, port: sport }, dst: { address: dst, port: dport } };
    };
    const original = tuple(0);
    const reply = tuple(1);
    if (original !== undefined && reply !== undefined) entries.push({ protocol, original, reply });
  }
  return entries;
}

function same(a: UdpEndpoint, b: UdpEndpoint): boolean {
  return a.address === b.address && a.port === b.port;
}

/** The UDP entry whose reply direction goes from `replySrc` to `replyDst`. */
export function findByReply(entries: readonly ConntrackEntry[], replySrc: UdpEndpoint, replyDst: UdpEndpoint): ConntrackEntry | undefined {
  return entries.find((e) => e.protocol === "udp" && same(e.reply.src, replySrc) && same(e.reply.dst, replyDst));
}
