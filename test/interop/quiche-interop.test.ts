/**
 * Our QUIC stack against Cloudflare quiche (through @matrixai/quic) over real UDP on 127.0.0.1, both ways round:
 * our client → quiche server (quiche-peer.ts server, which always answers with a Retry), and quiche client →
 * our server. 10 MB each way byte-exact, key updates started by our side mid-transfer (quiche follows a key
 * update but never starts one), every TLS 1.3 cipher suite, and 5 % loss each way through a seeded relay
 * (orchestrator/impairments/udp-impairer.ts, in this process).
 *
 * The cipher suite is chosen on our side: quiche (BoringSSL) offers and accepts all three TLS 1.3 suites and
 * js-quic has no option to restrict them, so our client offers one suite alone, or our server accepts one alone.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UdpImpairer } from "../../orchestrator/impairments/udp-impairer.ts";
import type { Connection } from "../../node-images/quic/connection.ts";
import type { CipherSuiteName } from "../../node-images/quic/crypto/cipher-suites.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import { writeTestCertificates, type CertificateFiles } from "./issue-certificates.ts";
import { OurStackClient, OurStackServer, seededPayloadSha256, type TransferReport } from "./our-stack-peer.ts";
import { runQuicheClient, startQuicheServer, type QuicheClientResult, type QuicheServerProcess } from "./quiche-peer-process.ts";

const quicheLoadError = await import("@matrixai/quic").then(
  () => undefined,
  (error: unknown) => String(error),
);
const SKIP_REASON = quicheLoadError === undefined ? "" : ` (skipped: @matrixai/quic did not load: ${quicheLoadError})`;

const TEN_MEGABYTES = 10 * 1024 * 1024;
const ONE_MEGABYTE = 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const TRANSFER_TIMEOUT_MS = 40_000;
/** Three key updates spread over a 10 MB transfer: each after the previous was acknowledged (RFC 9001 §6.1). */
const KEY_UPDATES_AT_BYTES = [2_000_000, 5_000_000, 8_000_000];
const LOSS_PERCENT = 5;
const SUITES: readonly CipherSuiteName[] = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];

function megabitsPerSecond(bytes: number, ms: number): number {
  return Math.round(((bytes * 8) / (ms / 1000) / 1e6) * 10) / 10;
}

/** One line per transfer, so the run shows throughput per case. */
function logTransfer(label: string, bytes: number, transferMs: number): void {
  console.info(`[quiche-interop] ${label}: ${bytes} bytes in ${Math.round(transferMs)} ms (${megabitsPerSecond(bytes, transferMs)} Mbit/s)`);
}

/** A relay on 127.0.0.1 dropping `lossPercent` of the datagrams each way, seeded so a rerun drops the same ones. */
function lossyRelay(target: SocketAddress, seed: number): Promise<UdpImpairer> {
  return UdpImpairer.start({
    listen: { address: "127.0.0.1", port: 0 },
    target,
    forward: { lossPercent: LOSS_PERCENT, seed },
    reverse: { lossPercent: LOSS_PERCENT, seed: seed + 1 },
    idleTimeoutMs: 60_000,
  });
}

function expectRelayDropped(relay: UdpImpairer): void {
  const stats = relay.stats();
  // The seeded drop rate over thousands of datagrams is close to 5 %: the experiment really was lossy.
  for (const direction of [stats.forward, stats.reverse]) {
    expect(direction.received).toBeGreaterThan(1_000);
    expect(direction.dropped.loss / direction.received).toBeGreaterThan(0.03);
    expect(direction.dropped.loss / direction.received).toBeLessThan(0.07);
  }
}

/** Our side of a finished transfer: no key-phase decryption failures, no internal errors. */
function expectCleanConnection(connection: Connection): void {
  expect(connection.internalErrors).toEqual([]);
  expect(connection.stats.drops.decrypt_failed ?? 0).toBe(0);
}

describe(`our client → quiche server over UDP on 127.0.0.1${SKIP_REASON}`, () => {
  let directory = "";
  let certificates: CertificateFiles;
  let caPem = "";
  let quiche: QuicheServerProcess | undefined;

  beforeAll(async () => {
    if (quicheLoadError !== undefined) return;
    directory = mkdtempSync(join(tmpdir(), "qmt-quiche-interop-"));
    certificates = writeTestCertificates(directory, "ecdsa-p256");
    caPem = readFileSync(certificates.caCertFile, "utf8");
    quiche = await startQuicheServer({ certFile: certificates.serverCertFile, keyFile: certificates.serverKeyFile, alpn: ["hq-interop"] });
  });

  afterAll(async () => {
    try {
      if (quiche) expect(await quiche.stop()).toBe(0);
      // The quiche peer reports failed streams as lines; none may have failed.
      expect(quiche?.lines.filter((line) => line.event === "streamFailed" || line.event === "serverError") ?? []).toEqual([]);
    } finally {
      if (directory) rmSync(directory, { recursive: true, force: true });
    }
  });

  const quicheAddress = (): SocketAddress => ({ address: "127.0.0.1", port: quiche!.port });

  it.skipIf(quicheLoadError !== undefined).each(SUITES)(
    "completes the handshake through quiche's Retry (RFC 9000 §17.2.5) offering only %s, and downloads 1 MB with a key update",
    async (suite) => {
      await using client = await OurStackClient.connect({ remote: quicheAddress(), caPem, cipherSuites: [suite] }, HANDSHAKE_TIMEOUT_MS);
      const connection = client.connection;
      // RFC 9000 §7.3: after a Retry the server's transport parameters carry retry_source_connection_id.
      expect(connection.peerParameters?.retrySourceConnectionId).toBeDefined();
      expect(connection.alpn).toBe("hq-interop");
      const report = await client.download(ONE_MEGABYTE, 21, { timeoutMs: TRANSFER_TIMEOUT_MS, keyUpdateAtBytes: [ONE_MEGABYTE / 2] });
      expect(report).toMatchObject({ bytes: ONE_MEGABYTE, sha256: seededPayloadSha256(21, ONE_MEGABYTE) });
      expect(report.keyUpdatesAtBytes).toHaveLength(1);
      expect(client.summary).toMatchObject({ keyUpdatesLocal: 1, keyUpdatesPeer: 0 });
      expectCleanConnection(connection);
      logTransfer(`our client → quiche, ${suite}, 1 MB download`, ONE_MEGABYTE, report.transferMs);
    },
  );

  it.skipIf(quicheLoadError !== undefined)(
    "downloads and uploads 10 MB byte-exact at once while our client starts three key updates (RFC 9001 §6), AES-128-GCM",
    async () => {
      await using client = await OurStackClient.connect({ remote: quicheAddress(), caPem, cipherSuites: ["TLS_AES_128_GCM_SHA256"] }, HANDSHAKE_TIMEOUT_MS);
      const started = performance.now();
      const [down, up] = await Promise.all([
        client.download(TEN_MEGABYTES, 24, { timeoutMs: TRANSFER_TIMEOUT_MS, keyUpdateAtBytes: KEY_UPDATES_AT_BYTES }),
        client.upload(TEN_MEGABYTES, 25, { timeoutMs: TRANSFER_TIMEOUT_MS }),
      ]);
      const elapsedMs = performance.now() - started;
      expect(down).toMatchObject({ bytes: TEN_MEGABYTES, sha256: seededPayloadSha256(24, TEN_MEGABYTES) });
      // quiche's own sha256 of what it received equals ours (the reply is checked in upload()), and it says so on stdout.
      expect(up).toMatchObject({ bytes: TEN_MEGABYTES, sha256: seededPayloadSha256(25, TEN_MEGABYTES) });
      await quiche!.waitForLine((line) => line.event === "streamServed" && line.command === "SINK" && line.bytes === TEN_MEGABYTES, 10_000);
      // Each update after the first starts only once quiche acknowledged a packet under the previous one (§6.1),
      // and none of quiche's packets failed to decrypt: quiche rotated its keys along with ours (§6.2).
      expect(down.keyUpdatesAtBytes).toHaveLength(3);
      expect(client.summary).toMatchObject({ keyUpdatesLocal: 3, keyUpdatesPeer: 0 });
      expectCleanConnection(client.connection);
      // Our CONNECTION_CLOSE (application, 0) reaches quiche: it reports the close of its connection, whose ID is our DCID.
      const quicheConnectionId = client.connection.peerCids.forPath(client.connection.activePath.id)!.connectionId.toString("hex");
      await client.close();
      const closed = await quiche!.waitForLine((line) => line.event === "closed" && line.connectionId === quicheConnectionId, 10_000);
      expect(closed).toMatchObject({ isApp: true, errorCode: 0, reason: "done" });
      logTransfer(`our client → quiche, clean, 10 MB down (${Math.round(down.transferMs)} ms) + 10 MB up (${Math.round(up.transferMs)} ms) at once`, 2 * TEN_MEGABYTES, elapsedMs);
    },
  );

  it.skipIf(quicheLoadError !== undefined)(
    "5 % loss each way: Retry, 10 MB each way byte-exact and three key updates, ChaCha20-Poly1305",
    async () => {
      const seed = 31;
      await using relay = await lossyRelay(quicheAddress(), seed);
      await using client = await OurStackClient.connect({ remote: relay.address, caPem, cipherSuites: ["TLS_CHACHA20_POLY1305_SHA256"] }, HANDSHAKE_TIMEOUT_MS);
      expect(client.connection.peerParameters?.retrySourceConnectionId).toBeDefined();
      const started = performance.now();
      const [down, up]: TransferReport[] = await Promise.all([
        client.download(TEN_MEGABYTES, seed, { timeoutMs: TRANSFER_TIMEOUT_MS, keyUpdateAtBytes: KEY_UPDATES_AT_BYTES }),
        client.upload(TEN_MEGABYTES, seed + 100, { timeoutMs: TRANSFER_TIMEOUT_MS }),
      ]);
      const elapsedMs = performance.now() - started;
      expect(down).toMatchObject({ bytes: TEN_MEGABYTES, sha256: seededPayloadSha256(seed, TEN_MEGABYTES) });
      expect(up).toMatchObject({ bytes: TEN_MEGABYTES, sha256: seededPayloadSha256(seed + 100, TEN_MEGABYTES) });
      expect(client.summary).toMatchObject({ keyUpdatesLocal: 3, keyUpdatesPeer: 0 });
      expectCleanConnection(client.connection);
      expect(client.connection.stats.packetsLost).toBeGreaterThan(0);
      expectRelayDropped(relay);
      logTransfer(`our client → quiche, ${LOSS_PERCENT} % loss, 10 MB down (${Math.round(down.transferMs)} ms) + 10 MB up (${Math.round(up.transferMs)} ms) at once`, 2 * TEN_MEGABYTES, elapsedMs);
    },
  );
});

describe(`quiche client → our server over UDP on 127.0.0.1${SKIP_REASON}`, () => {
  let directory = "";
  let certificates: CertificateFiles;
  let serverTls: { certPem: string; keyPem: string };

  beforeAll(() => {
    if (quicheLoadError !== undefined) return;
    directory = mkdtempSync(join(tmpdir(), "qmt-quiche-interop-"));
    certificates = writeTestCertificates(directory, "ecdsa-p256");
    serverTls = { certPem: readFileSync(certificates.serverCertFile, "utf8"), keyPem: readFileSync(certificates.serverKeyFile, "utf8") };
  });

  afterAll(() => {
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  function quicheClient(port: number, direction: "upload" | "download", bytes: number, seed: number): Promise<QuicheClientResult> {
    return runQuicheClient({ port, caFile: certificates.caCertFile, direction, bytes, seed, timeoutMs: TRANSFER_TIMEOUT_MS });
  }

  function expectQuicheOk(run: QuicheClientResult, direction: "upload" | "download", bytes: number, seed: number): void {
    // quiche-peer.ts checks the bytes itself (download: against SeededRandom(seed); upload: our server's sha256 reply).
    expect(run.result, run.stderr).toMatchObject({ ok: true, direction, bytes, sha256: seededPayloadSha256(seed, bytes) });
    expect(run.exitCode).toBe(0);
  }

  /**
   * Every connection our server accepted closed cleanly by quiche (application error 0), with the expected key
   * updates. `closeMayBeLost`: behind the lossy relay, quiche's one CONNECTION_CLOSE can be among the dropped
   * datagrams (RFC 9000 §10.2: the server then ends the connection at its idle timeout), so a connection
   * not closed yet passes, but one closed any other way does not.
   */
  function expectServerConnections(server: OurStackServer, count: number, keyUpdatesLocal: number, closeMayBeLost = false): void {
    expect(server.errors).toEqual([]);
    expect(server.connections.size).toBe(count);
    for (const [connection, served] of server.connections) {
      expectCleanConnection(connection);
      expect(served.summary).toMatchObject({ keyUpdatesLocal, keyUpdatesPeer: 0 });
      if (closeMayBeLost && served.summary.closed === undefined) continue;
      expect(served.summary.closed).toMatchObject({ initiator: "peer", isApplication: true, errorCode: 0 });
    }
  }

  it.skipIf(quicheLoadError !== undefined).each(SUITES)(
    "completes the handshake accepting only %s, through our Retry (RFC 9000 §8.1.2), and serves 1 MB with a key update",
    async (suite) => {
      await using server = await OurStackServer.start({ ...serverTls, cipherSuites: [suite], requireRetry: true, keyUpdateAtBytes: [ONE_MEGABYTE / 2] });
      const run = await quicheClient(server.address.port, "download", ONE_MEGABYTE, 41);
      expectQuicheOk(run, "download", ONE_MEGABYTE, 41);
      expect(server.udp.endpoint.counters.retrySent).toBe(1);
      expect(server.udp.endpoint.drops.invalid_token ?? 0).toBe(0);
      expectServerConnections(server, 1, 1);
      const [connection] = server.connections.keys();
      expect(connection!.alpn).toBe("hq-interop");
      logTransfer(`quiche client → our server, ${suite}, 1 MB download`, ONE_MEGABYTE, Number(run.result!.transferMs));
    },
  );

  it.skipIf(quicheLoadError !== undefined)(
    "serves a 10 MB download and a 10 MB upload byte-exact (one quiche client each) while our server starts three key updates on each",
    async () => {
      await using server = await OurStackServer.start({ ...serverTls, keyUpdateAtBytes: KEY_UPDATES_AT_BYTES });
      const [down, up] = await Promise.all([quicheClient(server.address.port, "download", TEN_MEGABYTES, 44), quicheClient(server.address.port, "upload", TEN_MEGABYTES, 45)]);
      expectQuicheOk(down, "download", TEN_MEGABYTES, 44);
      expectQuicheOk(up, "upload", TEN_MEGABYTES, 45);
      expect(server.served.map((s) => s.command).sort()).toEqual(["SINK", "SOURCE"]);
      // quiche never starts a key update, so every update is ours, and quiche followed each (no decryption failures).
      expectServerConnections(server, 2, 3);
      logTransfer("quiche client → our server, clean, key updates, 10 MB download (concurrent with the upload)", TEN_MEGABYTES, Number(down.result!.transferMs));
      logTransfer("quiche client → our server, clean, key updates, 10 MB upload (concurrent with the download)", TEN_MEGABYTES, Number(up.result!.transferMs));
    },
  );

  it.skipIf(quicheLoadError !== undefined)("5 % loss each way: 10 MB each way byte-exact with three key updates, ChaCha20-Poly1305", async () => {
    const seed = 51;
    await using server = await OurStackServer.start({ ...serverTls, cipherSuites: ["TLS_CHACHA20_POLY1305_SHA256"], keyUpdateAtBytes: KEY_UPDATES_AT_BYTES });
    await using relay = await lossyRelay(server.address, seed);
    const [down, up] = await Promise.all([quicheClient(relay.address.port, "download", TEN_MEGABYTES, seed), quicheClient(relay.address.port, "upload", TEN_MEGABYTES, seed + 100)]);
    expectQuicheOk(down, "download", TEN_MEGABYTES, seed);
    expectQuicheOk(up, "upload", TEN_MEGABYTES, seed + 100);
    expectServerConnections(server, 2, 3, true);
    expect([...server.connections.keys()].reduce((n, c) => n + c.stats.packetsLost, 0)).toBeGreaterThan(0);
    expectRelayDropped(relay);
    logTransfer(`quiche client → our server, ${LOSS_PERCENT} % loss, 10 MB download (concurrent with the upload)`, TEN_MEGABYTES, Number(down.result!.transferMs));
    logTransfer(`quiche client → our server, ${LOSS_PERCENT} % loss, 10 MB upload (concurrent with the download)`, TEN_MEGABYTES, Number(up.result!.transferMs));
  });
});
