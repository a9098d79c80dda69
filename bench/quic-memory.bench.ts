/** Heap bytes per idle established QUIC connection at 1,000 connections (server side and client side, in-memory pair).
 *
 * One server Endpoint and one client Endpoint in one process (bench/in-memory-pair.ts) establish
 * 1,000 connections, exchange a small request each way so that streams have existed, then go idle
 * (all ACKs sent). Memory is read after a forced GC (`--expose-gc`, which bench/run.ts passes) as
 * V8 heap used plus ArrayBuffer backing stores (Buffers live outside the V8 heap, so heapUsed
 * alone would hide them). The client Endpoint is then dropped and memory read again: the
 * difference splits the total into server-side and client-side cost. The metric is the larger
 * of the two per-connection figures.
 * `npm run bench -- quic-memory [connections]`
 */
import { performance } from "node:perf_hooks";
import type { Connection } from "../node-images/quic/connection.ts";
import type { Endpoint } from "../node-images/quic/endpoint.ts";
import { clientTls, serverTls } from "../test/quic/pki-fixture.ts";
import { InMemoryPair, PAIR_CLIENT, PAIR_SERVER } from "./in-memory-pair.ts";
import { emitResult, progress } from "./report.ts";

const CONNECTIONS = Number(process.argv[2] ?? 1000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error("quic-memory: run with --expose-gc (npm run bench -- quic-memory does)");
  process.exit(2);
}

function settledBytes(): { heapUsed: number; arrayBuffers: number; total: number } {
  for (let i = 0; i < 4; i++) gc!();
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, total: m.heapUsed + m.arrayBuffers };
}

const serverConfig = { tls: serverTls() };
const clientConfig = { tls: clientTls() };

// Warm up code paths and caches (certificate parsing, key objects) outside the measurement.
{
  const warm = new InMemoryPair({ server: serverConfig });
  const c = warm.client.connect(clientConfig, { local: PAIR_CLIENT, remote: PAIR_SERVER }, warm.now());
  for (let i = 0; i < 50 && !c.isHandshakeConfirmed; i++) warm.drive();
}

/**
 * Establish the connections and measure with both sides alive. Everything client-side lives in this
 * function's frame only, so that after it returns nothing on a stack or in a register keeps it alive.
 */
function establishAll(): { server: Endpoint; established: number; serverEstablished: number; both: ReturnType<typeof settledBytes> } {
  const pair = new InMemoryPair({ server: serverConfig });
  const clients: Connection[] = [];
  const BATCH = 50;
  for (let i = 0; i < CONNECTIONS; i += BATCH) {
    const batch: Connection[] = [];
    for (let j = i; j < Math.min(CONNECTIONS, i + BATCH); j++) {
      const local = { address: `127.0.${1 + (j >> 8)}.${1 + (j & 0xff)}`, port: PAIR_CLIENT.port };
      batch.push(pair.client.connect(clientConfig, { local, remote: PAIR_SERVER }, pair.now()));
    }
    for (let r = 0; r < 100 && !batch.every((c) => c.isHandshakeConfirmed); r++) pair.drive();
    // One small request per connection, answered by nobody: a stream existed and was acknowledged.
    for (const c of batch) {
      const id = c.openStream(true);
      if (id !== undefined) {
        c.streamWrite(id, Buffer.from("hello"));
        c.streamFinish(id);
        pair.client.wake(c, pair.now());
      }
    }
    pair.drive();
    clients.push(...batch);
  }
  const established = clients.filter((c) => c.state === "established" && c.isHandshakeConfirmed).length;
  const serverEstablished = [...pair.server.connections()].filter((c) => c.state === "established").length;
  // Idle: let delayed ACKs (max_ack_delay 25 ms) go out and be processed; bounded in time.
  const idleUntil = performance.now() + 300;
  while (performance.now() < idleUntil) pair.drive();
  progress(`${established} client / ${serverEstablished} server connections established and idle`);
  return { server: pair.server, established, serverEstablished, both: settledBytes() };
}

const before = settledBytes();
const { server: serverEndpoint, established, both } = establishAll();
const serverOnly = settledBytes();
const stillOpen = serverEndpoint.connectionCount;

const perServer = (serverOnly.total - before.total) / CONNECTIONS;
const perClient = (both.total - serverOnly.total) / CONNECTIONS;
progress(`server ${perServer.toFixed(0)} B/conn (heap ${((serverOnly.heapUsed - before.heapUsed) / CONNECTIONS).toFixed(0)}, buffers ${((serverOnly.arrayBuffers - before.arrayBuffers) / CONNECTIONS).toFixed(0)}); client ${perClient.toFixed(0)} B/conn`);
emitResult(
  "quic-memory",
  {
    bytes_per_connection: Math.round(Math.max(perServer, perClient)),
    server_bytes_per_connection: Math.round(perServer),
    client_bytes_per_connection: Math.round(perClient),
    server_heap_bytes_per_connection: Math.round((serverOnly.heapUsed - before.heapUsed) / CONNECTIONS),
    server_buffer_bytes_per_connection: Math.round((serverOnly.arrayBuffers - before.arrayBuffers) / CONNECTIONS),
    connections: CONNECTIONS,
    established_client: established,
    established_server: stillOpen,
  },
  { bytes_per_connection: "<= 32768" },
  {
    measure: "after forced GC: V8 heapUsed + ArrayBuffer backing stores; server side = with the client endpoint dropped; client side = the difference",
    transport: "in-memory pair (one process, direct calls); each connection sent one 5-byte request stream",
    node: process.version,
  },
);
if (established !== CONNECTIONS || stillOpen !== CONNECTIONS) process.exitCode = 1;
// A client side of almost nothing means the client objects were still reachable when the server side was
// measured: the split (not the total) is wrong, so say so rather than report it.
if (perClient < 1024) {
  console.error("quic-memory: the client side was not collected before the server-only reading; the split is invalid");
  process.exitCode = 1;
}
