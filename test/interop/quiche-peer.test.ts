/**
 * Proves the quiche interop harness: quiche client ↔ quiche server, two child processes, real UDP on 127.0.0.1.
 * Byte-exactness is checked on both sides: the peer compares sha256 against SeededRandom(seed), and this test
 * recomputes the expected digest itself.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SeededRandom } from "../../node-images/common/seeded-random.ts";
import { writeTestCertificates, type CertificateFiles } from "./issue-certificates.ts";
import { runQuicheClient, startQuicheServer, type QuicheServerProcess } from "./quiche-peer-process.ts";

const TEN_MEGABYTES = 10 * 1024 * 1024;
const TRANSFER_TIMEOUT_MS = 60_000;
/** RFC 9001 §4.8: CRYPTO_ERROR is 0x100 + the TLS alert; no_application_protocol is alert 120. */
const CRYPTO_ERROR_NO_APPLICATION_PROTOCOL = 0x100 + 120;
const CRYPTO_ERROR_UNKNOWN_CA = 0x100 + 48;

function expectedSha256(seed: number, bytes: number): string {
  const random = new SeededRandom(seed);
  const hash = createHash("sha256");
  const chunkBytes = 64 * 1024;
  for (let remaining = bytes; remaining > 0; remaining -= chunkBytes) hash.update(random.bytes(Math.min(chunkBytes, remaining)));
  return hash.digest("hex");
}

describe("quiche interop peer (quiche client ↔ quiche server on 127.0.0.1)", () => {
  let directory = "";
  let certificates: CertificateFiles;
  let server: QuicheServerProcess | undefined;

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), "qmt-quiche-"));
    certificates = writeTestCertificates(directory, "ecdsa-p256");
    server = await startQuicheServer({ certFile: certificates.serverCertFile, keyFile: certificates.serverKeyFile, alpn: ["hq-interop"] });
  });

  afterAll(async () => {
    try {
      if (server) {
        const exitCode = await server.stop();
        // SIGTERM is a clean stop: exit code 0 and a "stopped" line.
        expect(exitCode).toBe(0);
        expect(server.lines.at(-1)).toMatchObject({ event: "stopped", signal: "SIGTERM" });
      }
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("completes the handshake with hq-interop and closes with application error 0", async () => {
    const { exitCode, result, stderr } = await runQuicheClient({
      port: server!.port,
      caFile: certificates.caCertFile,
      direction: "download",
      bytes: 1,
      seed: 5,
      timeoutMs: 20_000,
    });
    expect(result, stderr).toMatchObject({ ok: true, bytes: 1, sha256: expectedSha256(5, 1) });
    expect(exitCode).toBe(0);
    expect(result!.handshakeMs).toBeGreaterThan(0);
    const connected = await server!.waitForLine((line) => line.event === "connected", 10_000);
    expect(connected.remoteHost).toBe("127.0.0.1");
    const closed = await server!.waitForLine((line) => line.event === "closed" && line.connectionId === connected.connectionId, 10_000);
    expect(closed).toMatchObject({ isApp: true, errorCode: 0 });
  });

  it("uploads 10 MB byte-exact (server sha256 equals the client's)", async () => {
    const seed = 11;
    const { exitCode, result, stderr } = await runQuicheClient({
      port: server!.port,
      caFile: certificates.caCertFile,
      direction: "upload",
      bytes: TEN_MEGABYTES,
      seed,
      timeoutMs: TRANSFER_TIMEOUT_MS,
    });
    expect(result, stderr).toMatchObject({ ok: true, direction: "upload", bytes: TEN_MEGABYTES, sha256: expectedSha256(seed, TEN_MEGABYTES) });
    expect(exitCode).toBe(0);
    await server!.waitForLine((line) => line.event === "streamServed" && line.command === "SINK" && line.bytes === TEN_MEGABYTES, 10_000);
  });

  it("downloads 10 MB byte-exact (client sha256 equals SeededRandom(seed))", async () => {
    const seed = 12;
    const { exitCode, result, stderr } = await runQuicheClient({
      port: server!.port,
      caFile: certificates.caCertFile,
      direction: "download",
      bytes: TEN_MEGABYTES,
      seed,
      timeoutMs: TRANSFER_TIMEOUT_MS,
    });
    expect(result, stderr).toMatchObject({ ok: true, direction: "download", bytes: TEN_MEGABYTES, sha256: expectedSha256(seed, TEN_MEGABYTES) });
    expect(exitCode).toBe(0);
  });

  it("fails with exit code 1 when the client trusts a different CA", async () => {
    const otherDirectory = mkdtempSync(join(tmpdir(), "qmt-quiche-other-"));
    try {
      const other = writeTestCertificates(otherDirectory, "ecdsa-p256");
      const { exitCode, result } = await runQuicheClient({
        port: server!.port,
        caFile: other.caCertFile,
        direction: "download",
        bytes: 1,
        timeoutMs: 20_000,
      });
      expect(exitCode).toBe(1);
      expect(result).toMatchObject({ ok: false });
      expect(String(result!.error)).toMatch(/TLS verification/);
      // RFC 9001 §4.8: the quiche client closes with CRYPTO_ERROR 0x100 + unknown_ca (RFC 8446 §6.2, alert 48).
      expect(result!.connectionError).toEqual({ isApp: false, errorCode: CRYPTO_ERROR_UNKNOWN_CA, reason: "" });
    } finally {
      rmSync(otherDirectory, { recursive: true, force: true });
    }
  });

  it("fails with no_application_protocol when the ALPN does not match (RFC 9001 §8.1)", async () => {
    const { exitCode, result } = await runQuicheClient({
      port: server!.port,
      caFile: certificates.caCertFile,
      alpn: ["h3"],
      direction: "download",
      bytes: 1,
      timeoutMs: 20_000,
    });
    expect(exitCode).toBe(1);
    expect(result).toMatchObject({ ok: false });
    // quiche's server aborts the handshake with CONNECTION_CLOSE (transport) CRYPTO_ERROR 0x178.
    expect(result!.connectionError).toEqual({ isApp: false, errorCode: CRYPTO_ERROR_NO_APPLICATION_PROTOCOL, reason: "" });
  });
});

describe("quiche interop peer with other certificate key types", () => {
  it.each(["ed25519", "rsa"] as const)("completes a 64 KiB download with a %s server certificate", async (keyType) => {
    const directory = mkdtempSync(join(tmpdir(), `qmt-quiche-${keyType}-`));
    try {
      const certificates = writeTestCertificates(directory, keyType);
      await using server = await startQuicheServer({ certFile: certificates.serverCertFile, keyFile: certificates.serverKeyFile });
      const { exitCode, result, stderr } = await runQuicheClient({
        port: server.port,
        caFile: certificates.caCertFile,
        direction: "download",
        bytes: 65_536,
        seed: 3,
        timeoutMs: 20_000,
      });
      expect(result, stderr).toMatchObject({ ok: true, bytes: 65_536, sha256: expectedSha256(3, 65_536) });
      expect(exitCode).toBe(0);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("refuses an rsa-pss (RSASSA-PSS SPKI) server key at start-up: BoringSSL cannot load it", async () => {
    const directory = mkdtempSync(join(tmpdir(), "qmt-quiche-rsa-pss-"));
    try {
      const certificates = writeTestCertificates(directory, "rsa-pss");
      await expect(startQuicheServer({ certFile: certificates.serverCertFile, keyFile: certificates.serverKeyFile })).rejects.toThrow(
        /exited with code 2.*quiche cannot use --cert\/--key/s,
      );
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
