/** Full QUIC handshakes per second on one core (client and server Endpoints in one process, in-memory datagrams).
 *
 * Each handshake is a complete 1-RTT handshake: X25519, ECDSA P-256 certificate signed by the server
 * and verified by the client against the test CA, both sides confirmed (HANDSHAKE_DONE received).
 * Datagrams pass between the two Endpoints by direct calls (bench/in-memory-pair.ts), so no socket
 * or kernel time is counted: this is the stack's own CPU cost for both ends together.
 * `npm run bench -- quic-handshakes [seconds]`
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import { clientTls, serverTls } from "../test/quic/pki-fixture.ts";
import { InMemoryPair, PAIR_CLIENT, PAIR_SERVER } from "./in-memory-pair.ts";
import { emitResult, progress } from "./report.ts";

const measureSeconds = Number(process.argv[2] ?? 5);
/** Handshakes in flight at once: a busy server interleaves flights of many clients. */
const CONCURRENT = 16;
const WARMUP_HANDSHAKES = 300;
const MAX_HANDSHAKES = 200_000;

const server = serverTls();
const client = clientTls();

/** Run handshakes in batches of CONCURRENT; returns how many completed and how long it took. */
function runHandshakes(limit: number, deadlineMs: number): { completed: number; failed: number; elapsedMs: number; cpuMs: number } {
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  let completed = 0;
  let failed = 0;
  while (completed + failed < limit && performance.now() - start < deadlineMs) {
    // A fresh pair per batch: finished connections leave with it, so the tables stay small.
    const pair = new InMemoryPair({ server: { tls: server } });
    const conns = [];
    for (let i = 0; i < CONCURRENT; i++) conns.push(pair.client.connect({ tls: client }, { local: { ...PAIR_CLIENT, port: PAIR_CLIENT.port + i }, remote: PAIR_SERVER }, pair.now()));
    for (let round = 0; round < 50 && !conns.every((c) => c.isHandshakeConfirmed); round++) pair.drive();
    const serverConfirmed = [...pair.server.connections()].filter((c) => c.isHandshakeConfirmed).length;
    for (const c of conns) {
      if (c.isHandshakeConfirmed && c.internalErrors.length === 0) completed++;
      else failed++;
    }
    if (serverConfirmed !== CONCURRENT) failed += CONCURRENT - serverConfirmed;
  }
  const cpu = process.cpuUsage(cpuStart);
  return { completed, failed, elapsedMs: performance.now() - start, cpuMs: (cpu.user + cpu.system) / 1000 };
}

progress(`warming up (${WARMUP_HANDSHAKES} handshakes)`);
const warm = runHandshakes(WARMUP_HANDSHAKES, 30_000);
if (warm.failed > 0) throw new Error(`${warm.failed} warm-up handshakes failed`);
progress(`measuring for ${measureSeconds} s`);
const r = runHandshakes(MAX_HANDSHAKES, measureSeconds * 1000);
const handshakesPerSecond = r.completed / (r.elapsedMs / 1000);
// On a shared machine the wall clock includes time other processes had the core; CPU time does not.
const handshakesPerCpuSecond = r.completed / (r.cpuMs / 1000);
progress(`${r.completed} handshakes in ${r.elapsedMs.toFixed(0)} ms (${r.cpuMs.toFixed(0)} ms CPU), ${r.failed} failed`);
emitResult(
  "quic-handshakes",
  { handshakes_per_s: Math.round(handshakesPerSecond), handshakes_per_cpu_s: Math.round(handshakesPerCpuSecond), handshakes: r.completed, failed: r.failed },
  { handshakes_per_s: ">= 1000" },
  {
    transport: "in-memory: client and server Endpoints in one process, datagrams passed by direct calls (no sockets)",
    cores: "one (a single Node thread does both ends)",
    handshake: "TLS 1.3 1-RTT, X25519, TLS_AES_128_GCM_SHA256, ECDSA P-256 server certificate verified by the client; both sides confirmed",
    concurrent: CONCURRENT,
    handshakes_per_cpu_s: "handshakes per second of this process's CPU time (user + system): the same figure without other processes' share of the core",
    load_average_1m: os.loadavg()[0],
    node: process.version,
  },
);
if (r.failed > 0) process.exitCode = 1;
