/**
 * Preferred-address migration latency in the simulated network: first_data_on_new_path − handshake_confirmed over the new path's RTT, 1,000 connections at 10/50/200 ms.
 *
 * For each RTT, 1,000 clients (own addresses, starts spread over one second) connect to a server's public
 * address (VIP) that offers a preferred address; each follows it. The latency of each move is read from the
 * client connection's migration timeline and divided by the configured RTT of the preferred path. The floor
 * is 1.0: one PATH_CHALLENGE and its PATH_RESPONSE. Links carry ±2 % seeded jitter.
 *
 *   npm run bench -- migration-latency [connections]
 */
import type { Connection } from "../node-images/quic/connection.ts";
import { Endpoint } from "../node-images/quic/endpoint.ts";
import type { SocketAddress } from "../node-images/quic/path.ts";
import { SimulatedNetwork } from "../node-images/quic/simulated-network.ts";
import { clientTls, serverTls } from "../test/quic/pki-fixture.ts";
import { emitResult, progress } from "./report.ts";

const VIP: SocketAddress = { address: "203.0.113.1", port: 443 };
const PREFERRED: SocketAddress = { address: "198.51.100.7", port: 4433 };
const RTTS_MS = [10, 50, 200];
const CONNECTIONS = Number(process.argv[2] ?? 1000);

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function runAt(rttMs: number, seed: number) {
  const oneWayMs = rttMs / 2;
  const net = new SimulatedNetwork({ seed, defaults: { delayMs: oneWayMs, jitterMs: oneWayMs * 0.02 } });
  const server = new Endpoint({ server: { tls: serverTls(), preferredAddress: { ipv4: PREFERRED } } });
  net.attach(VIP, server);
  net.attach(PREFERRED, server);
  const conns: Connection[] = [];
  const spacingMs = 1000 / CONNECTIONS;
  const started = performance.now();
  for (let i = 0; i < CONNECTIONS; i++) {
    const local = { address: `10.${(i >> 16) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`, port: 50000 };
    const client = new Endpoint();
    net.attach(local, client);
    conns.push(client.connect({ tls: clientTls() }, { local, remote: VIP }, net.now));
    net.run({ maxTimeMs: spacingMs });
  }
  const settled = (c: Connection): boolean => c.timeline.firstDataOnNewPath !== undefined || c.timeline.fallback !== undefined || c.isClosed;
  // Connections settle roughly in start order: a cursor keeps the check O(1) per step.
  let cursor = 0;
  const done = (): boolean => {
    while (cursor < conns.length && settled(conns[cursor]!)) cursor++;
    return cursor === conns.length;
  };
  net.run({ maxTimeMs: 60_000, until: done });
  const ratios: number[] = [];
  let fallbacks = 0;
  let incomplete = 0;
  for (const c of conns) {
    const t = c.timeline;
    if (t.fallback) fallbacks++;
    if (t.firstDataOnNewPath === undefined || t.handshakeConfirmed === undefined) {
      incomplete++;
      continue;
    }
    ratios.push((t.firstDataOnNewPath - t.handshakeConfirmed) / rttMs);
  }
  ratios.sort((a, b) => a - b);
  const wallMs = performance.now() - started;
  return { ratios, fallbacks, incomplete, wallMs };
}

const metrics: Record<string, number> = {};
const all: number[] = [];
let p50Ok = true;
let p99Ok = true;
for (const [i, rttMs] of RTTS_MS.entries()) {
  const r = runAt(rttMs, 1000 + i);
  const p50 = quantile(r.ratios, 0.5);
  const p99 = quantile(r.ratios, 0.99);
  metrics[`p50_over_rtt_${rttMs}ms`] = Number(p50.toFixed(4));
  metrics[`p99_over_rtt_${rttMs}ms`] = Number(p99.toFixed(4));
  metrics[`migrated_${rttMs}ms`] = r.ratios.length;
  metrics[`fallbacks_${rttMs}ms`] = r.fallbacks;
  metrics[`incomplete_${rttMs}ms`] = r.incomplete;
  // Target: p50 ≤ 1.1 × RTT + 1 ms, p99 ≤ 1.5 × RTT.
  if (!(p50 <= 1.1 + 1 / rttMs)) p50Ok = false;
  if (!(p99 <= 1.5)) p99Ok = false;
  all.push(...r.ratios);
  progress(`RTT ${rttMs} ms: ${r.ratios.length}/${CONNECTIONS} moved, p50 ${p50.toFixed(3)} p99 ${p99.toFixed(3)} × RTT, ${r.fallbacks} fallbacks, ${(r.wallMs / 1000).toFixed(1)} s`);
}
all.sort((a, b) => a - b);
metrics.p50_over_rtt = Number(quantile(all, 0.5).toFixed(4));
metrics.p99_over_rtt = Number(quantile(all, 0.99).toFixed(4));
metrics.floor_over_rtt = 1;
metrics.connections_per_rtt = CONNECTIONS;
emitResult(
  "migration-latency",
  { ...metrics, p50_target_met: p50Ok, p99_target_met: p99Ok },
  { p50_over_rtt: "<= 1.1 (plus 1 ms) at each RTT", p99_over_rtt: "<= 1.5 at each RTT", floor: "1.0 (one PATH_CHALLENGE round trip)" },
);
