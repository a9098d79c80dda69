/** Bulk client→server QUIC throughput over real UDP on loopback, against the raw node:dgram ceiling measured in the same run.
 *
 * Both UdpEndpoints run in this one process (one Node thread does both ends, as the raw baseline
 * does): the client opens one stream and writes `megabytes` MB; the server reads and discards it.
 * Datagrams are 1200 bytes (maxDatagramSizeBytes 1200, the default). throughput_mbps is stream
 * goodput: payload bytes ×8 / (last byte read by the server − first byte written).
 *
 * The ceiling sends as many 1200-byte datagrams as the QUIC client sent, between two node:dgram
 * sockets on 127.0.0.1 in this process, with the same kind of sending: UdpEndpoint.flush() calls
 * socket.send() once per datagram in a synchronous burst, limited by the congestion window; the
 * baseline sends synchronous bursts limited by a fixed window of datagrams in flight (sent, not yet
 * received), refilled from the receive handler. It is measured before and after the QUIC run and
 * the higher figure is kept, so a noisy neighbour cannot inflate the ratio.
 * `npm run bench -- quic-throughput [megabytes]`
 */
import { createSocket, type Socket } from "node:dgram";
import { performance } from "node:perf_hooks";
import type { Connection } from "../node-images/quic/connection.ts";
import type { EndpointEvent } from "../node-images/quic/endpoint.ts";
import { UdpEndpoint } from "../node-images/quic/udp-endpoint.ts";
import { clientTls, serverTls } from "../test/quic/pki-fixture.ts";
import { emitResult, progress } from "./report.ts";

const megabytes = Number(process.argv[2] ?? 64);
const totalBytes = megabytes * 1024 * 1024;
const DATAGRAM_BYTES = 1200;
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;
/** The baseline's datagrams in flight: about what a congestion window allows on loopback. */
const DGRAM_WINDOW = 256;
const RUN_DEADLINE_MS = 120_000;

async function quicTransfer(totalBytes: number): Promise<{ mbps: number; elapsedMs: number; datagrams: number; lost: number; sendErrors: number }> {
  let received = 0;
  let finished = false;
  let firstWriteAt = 0;
  let lastReadAt = 0;
  let server: UdpEndpoint | undefined;
  const onServerEvent = (e: EndpointEvent): void => {
    if (e.type !== "connection" || e.event.type !== "streamReadable") return;
    const conn = e.connection;
    const id = e.event.streamId;
    for (let d = conn.streamRead(id); d && d.length > 0; d = conn.streamRead(id)) received += d.length;
    if (conn.streamIsFinished(id)) {
      finished = true;
      lastReadAt = performance.now();
    }
    server!.wake(conn);
  };
  server = await UdpEndpoint.bind({
    bind: [{ address: "127.0.0.1", port: 0 }],
    server: { tls: serverTls() },
    socketBufferBytes: SOCKET_BUFFER_BYTES,
    onEvent: onServerEvent,
  });
  let conn: Connection | undefined;
  let streamId: number | undefined;
  let written = 0;
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  let client: UdpEndpoint | undefined;
  const pumpWrites = (): void => {
    if (!conn || conn.state !== "established") return;
    if (streamId === undefined) {
      streamId = conn.openStream(true);
      if (streamId === undefined) return;
      firstWriteAt = performance.now();
    }
    if (written >= totalBytes) return;
    while (written < totalBytes) {
      const n = conn.streamWrite(streamId, chunk.subarray(0, Math.min(chunk.length, totalBytes - written)));
      written += n;
      if (n === 0) break;
    }
    if (written >= totalBytes) conn.streamFinish(streamId);
    client!.wake(conn);
  };
  client = await UdpEndpoint.bind({
    bind: [{ address: "127.0.0.1", port: 0 }],
    socketBufferBytes: SOCKET_BUFFER_BYTES,
    onEvent: (e) => {
      if (e.type !== "connection") return;
      if (e.event.type === "handshakeCompleted" || e.event.type === "streamWritable") pumpWrites();
    },
  });
  try {
    conn = client.connect({ tls: clientTls() }, server.localAddresses[0]!);
    const deadline = performance.now() + RUN_DEADLINE_MS;
    while (!finished && performance.now() < deadline) {
      if (conn.isClosed) throw new Error(`connection closed during the transfer: ${JSON.stringify(conn.toJSON()).slice(0, 300)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    if (!finished || received !== totalBytes) throw new Error(`transfer incomplete: ${received}/${totalBytes} bytes`);
    const elapsedMs = lastReadAt - firstWriteAt;
    return {
      mbps: (totalBytes * 8) / (elapsedMs / 1000) / 1e6,
      elapsedMs,
      datagrams: client.counters.datagramsOut,
      lost: conn.stats.packetsLost,
      sendErrors: client.counters.sendErrors + server.counters.sendErrors,
    };
  } finally {
    await client.close();
    await server.close();
  }
}

async function bindRaw(): Promise<Socket> {
  const s = createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    s.once("error", reject);
    s.bind(0, "127.0.0.1", () => resolve());
  });
  s.setRecvBufferSize(SOCKET_BUFFER_BYTES);
  s.setSendBufferSize(SOCKET_BUFFER_BYTES);
  return s;
}

/** The same number of 1200-byte datagrams through node:dgram on loopback: sent in windowed bursts, counted on receipt. */
async function dgramCeiling(count: number): Promise<{ mbps: number; elapsedMs: number; received: number }> {
  const tx = await bindRaw();
  const rx = await bindRaw();
  const port = rx.address().port;
  const payload = Buffer.alloc(DATAGRAM_BYTES, 0xa5);
  let sent = 0;
  let received = 0;
  let lastAt = performance.now();
  let lastProgress = performance.now();
  let burstScheduled = false;
  const burst = (): void => {
    burstScheduled = false;
    while (sent < count && sent - received < DGRAM_WINDOW) {
      tx.send(payload, port, "127.0.0.1");
      sent++;
    }
  };
  const start = performance.now();
  const done = new Promise<void>((resolve) => {
    rx.on("message", () => {
      received++;
      lastAt = lastProgress = performance.now();
      if (received >= count) resolve();
      else if (!burstScheduled) {
        // Like UdpEndpoint: the next burst goes out after the receive handler, in a microtask.
        burstScheduled = true;
        queueMicrotask(burst);
      }
    });
  });
  burst();
  // Loopback can drop when a buffer fills: a datagram that never arrives frees its window slot after 50 ms.
  const deadline = start + RUN_DEADLINE_MS;
  while (received < count && performance.now() < deadline) {
    const stalled = await Promise.race([done.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 50))]);
    if (stalled && received < count && performance.now() - lastProgress >= 50) {
      if (sent >= count) break;
      received = Math.max(received, sent - DGRAM_WINDOW + 1);
      burst();
    }
  }
  await Promise.all([new Promise<void>((r) => tx.close(() => r())), new Promise<void>((r) => rx.close(() => r()))]);
  const elapsedMs = lastAt - start;
  return { mbps: (received * DATAGRAM_BYTES * 8) / (elapsedMs / 1000) / 1e6, elapsedMs, received };
}

progress("warming up (8 MB over QUIC, the same over node:dgram)");
const warm = await quicTransfer(8 * 1024 * 1024);
await dgramCeiling(warm.datagrams);

progress(`QUIC: ${megabytes} MB client→server over 127.0.0.1`);
const quic = await quicTransfer(totalBytes);
progress(`QUIC ${quic.mbps.toFixed(0)} Mbit/s in ${quic.elapsedMs.toFixed(0)} ms, ${quic.datagrams} datagrams, ${quic.lost} packets lost`);
const before = await dgramCeiling(quic.datagrams);
const after = await dgramCeiling(quic.datagrams);
progress(`dgram ceiling ${before.mbps.toFixed(0)} / ${after.mbps.toFixed(0)} Mbit/s (${before.received}/${after.received} of ${quic.datagrams} datagrams)`);
const ceiling = Math.max(before.mbps, after.mbps);
emitResult(
  "quic-throughput",
  {
    throughput_mbps: Math.round(quic.mbps),
    dgram_ceiling_mbps: Math.round(ceiling),
    ratio: Number((quic.mbps / ceiling).toFixed(3)),
  },
  { ratio: ">= 0.8" },
  {
    processes: "one: client and server UdpEndpoints (and both baseline sockets) in one Node process, one thread",
    transfer_bytes: totalBytes,
    datagram_bytes: DATAGRAM_BYTES,
    quic_datagrams: quic.datagrams,
    quic_packets_lost: quic.lost,
    quic_elapsed_ms: Math.round(quic.elapsedMs),
    ceiling_runs_mbps: [Math.round(before.mbps), Math.round(after.mbps)],
    throughput_is: "stream goodput (payload bytes); the ceiling counts whole 1200-byte datagrams",
    baseline_pacing: `synchronous socket.send() bursts within a window of ${DGRAM_WINDOW} datagrams in flight, refilled from a microtask after each receive (as UdpEndpoint.flush)`,
    node: process.version,
  },
);
