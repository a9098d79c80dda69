/**
 * The load generator against an in-process backend (two direct addresses, the second offered as
 * preferred_address): every workload of the mix, and what each JSON line records.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MetricsRegistry } from "../common/metrics.ts";
import { createCertificateAuthority, issueCertificate } from "../common/pki.ts";
import { formatSocketAddress } from "../quic/path.ts";
import { BackendServer } from "../server/backend-server.ts";
import { validateServerConfig } from "../server/config.ts";
import { validateClientConfig } from "./config.ts";
import type { ConnectionLine } from "./connection-record.ts";
import { LoadGenerator, type LoadSummary } from "./load-generator.ts";

const dir = mkdtempSync(join(tmpdir(), "qmt-loadgen-"));
const ca = createCertificateAuthority({ commonName: "qmt test CA" });
const leaf = issueCertificate(ca, { commonName: "server.test", dnsNames: ["server.test"] });
writeFileSync(join(dir, "ca.pem"), ca.certPem);
writeFileSync(join(dir, "s.pem"), leaf.certPem);
writeFileSync(join(dir, "s.key"), leaf.keyPem);

let server: BackendServer;
const lines: Array<ConnectionLine | LoadSummary> = [];
let metricsText = "";

beforeAll(async () => {
  const config = validateServerConfig(
    {
      direct: ["127.0.0.1:0", "127.0.0.3:0"],
      management: "127.0.0.1:0",
      preferredAddress: "127.0.0.3:0",
      tls: { certificateFile: join(dir, "s.pem"), privateKeyFile: join(dir, "s.key") },
      files: [4096],
    },
    "server.json",
    {},
    "k".repeat(32),
  );
  server = await BackendServer.start({ config, metrics: new MetricsRegistry(), log: () => {}, crash: () => {} });
  const metrics = new MetricsRegistry();
  const gen = await LoadGenerator.start({
    config: validateClientConfig(
      {
        target: formatSocketAddress(server.udp.localAddresses[0]!),
        serverName: "server.test",
        caFile: join(dir, "ca.pem"),
        connections: 8,
        rampPerSecond: 1000,
        holdMs: 800,
        mix: { rr: 1, stream: 1, download: 1, echo: 1 },
        rr: { intervalMs: 20, bytes: 100 },
        echo: { intervalMs: 20, bytes: 300 },
        stream: { rateBytesPerSecond: 40_000 },
        download: { bytes: 4096 },
      },
      "client.json",
    ),
    metrics,
    writeLine: (l) => lines.push(l as ConnectionLine | LoadSummary),
  });
  try {
    await gen.run();
    // The last connections end with a CONNECTION_CLOSE and stay in the closing state for 3 PTO (RFC 9000
    // §10.2) after run() returns; qmt_connections_active counts them until then. Wait for that, bounded.
    const deadline = performance.now() + 10_000;
    while (performance.now() < deadline && !/qmt_connections_active 0/.test(await metrics.metrics())) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    metricsText = await metrics.metrics();
    await gen.close();
  }
}, 30_000);

afterAll(async () => {
  await server.close();
});

describe("load generator", () => {
  it("writes one line per connection, then a summary: all migrated, none failed", () => {
    expect(lines).toHaveLength(9);
    const summary = lines.at(-1) as LoadSummary;
    expect(summary.event).toBe("summary");
    expect(summary.outcomes).toEqual({ migrated: 8, fell_back: 0, stayed: 0, failed: 0 });
    expect(summary.successRate).toBe(1);
    expect(summary.bytes.preferred).toBeGreaterThan(0);
  });

  it("each line has the migration timeline in order, bytes on both path kinds, latencies and the longest gap", () => {
    const conns = lines.slice(0, -1) as ConnectionLine[];
    expect(new Set(conns.map((c) => c.workload))).toEqual(new Set(["rr", "stream", "download", "echo"]));
    for (const c of conns) {
      const t = c.timeline as Record<string, number>;
      expect(t.handshakeConfirmed).toBeLessThanOrEqual(t.probeSent!);
      expect(t.probeSent).toBeLessThanOrEqual(t.pathValidated!);
      expect(t.pathValidated).toBeLessThanOrEqual(t.firstDataOnNewPath!);
      expect(c.migrationLatencyMs).toBeCloseTo(t.firstDataOnNewPath! - t.handshakeConfirmed!, 2);
      expect(c.bytes.original.sent).toBeGreaterThan(1200);
      expect(c.bytes.preferred.received).toBeGreaterThan(0);
      expect(c.longestGapMs).toBeGreaterThan(0);
      expect(c.requests.failed).toBe(0);
      if (c.workload !== "stream") expect(c.requests.completed).toBeGreaterThan(0);
    }
  });

  it("exports the documented series: outcomes, requests by workload, migrations, bytes per path kind", () => {
    expect(metricsText).toMatch(/qmt_client_connection_outcomes_total\{outcome="migrated"\} 8/);
    expect(metricsText).toMatch(/qmt_migrations_total\{result="migrated",reason="preferred_address"\} 8/);
    expect(metricsText).toMatch(/qmt_client_requests_total\{workload="download",result="ok"\} [1-9]/);
    expect(metricsText).toMatch(/qmt_path_bytes_total\{direction="received",path="preferred"\} [1-9]/);
    expect(metricsText).toMatch(/qmt_migration_latency_seconds_count 8/);
    expect(metricsText).toMatch(/qmt_client_disruption_seconds_count 8/);
    expect(metricsText).toMatch(/qmt_connections_active 0/);
  });
});
