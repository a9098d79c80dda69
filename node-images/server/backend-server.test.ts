/**
 * The backend in-process, without an LB (clients reach a direct address): control API routes,
 * drain, preferred address on and off, fail on purpose, bad input counted.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateClientConfig } from "../client/config.ts";
import { LoadGenerator, type LoadSummary } from "../client/load-generator.ts";
import { MetricsRegistry } from "../common/metrics.ts";
import { createCertificateAuthority, issueCertificate } from "../common/pki.ts";
import { formatSocketAddress } from "../quic/path.ts";
import { BackendServer } from "./backend-server.ts";
import { validateServerConfig } from "./config.ts";

const dir = mkdtempSync(join(tmpdir(), "qmt-backend-"));
const ca = createCertificateAuthority({ commonName: "qmt test CA" });
const leaf = issueCertificate(ca, { commonName: "server.test", dnsNames: ["server.test"] });
writeFileSync(join(dir, "ca.pem"), ca.certPem);
writeFileSync(join(dir, "s.pem"), leaf.certPem);
writeFileSync(join(dir, "s.key"), leaf.keyPem);
const TOKEN = "k".repeat(32);

let server: BackendServer;
let crashes = 0;
let base: string;
const auth = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };

beforeAll(async () => {
  const config = validateServerConfig(
    {
      direct: ["127.0.0.1:0", "127.0.0.2:0"],
      management: "127.0.0.1:0",
      preferredAddress: "127.0.0.2:0",
      tls: { certificateFile: join(dir, "s.pem"), privateKeyFile: join(dir, "s.key") },
      files: [1000],
    },
    "server.json",
    {},
    TOKEN,
  );
  server = await BackendServer.start({ config, metrics: new MetricsRegistry(), log: () => {}, crash: () => crashes++ });
  base = `http://${server.control.address.host}:${server.control.address.port}`;
});

afterAll(async () => {
  await server.close();
});

async function load(connections: number, extra: Record<string, unknown> = {}): Promise<LoadSummary> {
  const config = validateClientConfig(
    {
      target: formatSocketAddress(server.udp.localAddresses[0]!),
      serverName: "server.test",
      caFile: join(dir, "ca.pem"),
      connections,
      rampPerSecond: 1000,
      holdMs: 300,
      handshakeTimeoutMs: 1500,
      ...extra,
    },
    "client.json",
  );
  const gen = await LoadGenerator.start({ config, metrics: new MetricsRegistry(), writeLine: () => {} });
  try {
    return await gen.run();
  } finally {
    await gen.close();
  }
}

describe("backend server", () => {
  it("offers its second direct address as preferred_address and clients move there", async () => {
    expect(server.preferredAddress).toEqual(server.udp.localAddresses[1]);
    const s = await load(3);
    expect(s.outcomes).toEqual({ migrated: 3, fell_back: 0, stayed: 0, failed: 0 });
  });

  it("PUT /preferred-address null offers none: new clients stay; an address not ours is INVALID_REQUEST", async () => {
    const none = await fetch(`${base}/preferred-address`, { method: "PUT", headers: auth, body: JSON.stringify({ address: null }) });
    expect(none.status).toBe(200);
    expect(server.preferredAddress).toBeUndefined();
    const s = await load(2);
    expect(s.outcomes).toEqual({ migrated: 0, fell_back: 0, stayed: 2, failed: 0 });
    const bad = await fetch(`${base}/preferred-address`, { method: "PUT", headers: auth, body: JSON.stringify({ address: "127.0.0.9:1" }) });
    expect(bad.status).toBe(400);
    const again = formatSocketAddress(server.udp.localAddresses[1]!);
    const back = await fetch(`${base}/preferred-address`, { method: "PUT", headers: auth, body: JSON.stringify({ address: again }) });
    expect(back.status).toBe(200);
    expect(server.preferredAddress).toEqual(server.udp.localAddresses[1]);
  });

  it("POST /drain refuses new connections (they fail with a handshake timeout); /activate takes them again", async () => {
    expect((await fetch(`${base}/drain`, { method: "POST", headers: auth })).status).toBe(200);
    const status = (await (await fetch(`${base}/status`, { headers: auth })).json()) as { draining: boolean };
    expect(status.draining).toBe(true);
    const refused = await load(1);
    expect(refused.outcomes.failed).toBe(1);
    expect(refused.failureReasons).toEqual({ handshake_timeout: 1 });
    expect(server.udp.endpoint.drops.too_many_connections).toBeGreaterThan(0);
    expect((await fetch(`${base}/activate`, { method: "POST", headers: auth })).status).toBe(200);
    expect((await load(1)).outcomes.migrated).toBe(1);
  });

  it("POST /fail answers 202 and then crashes on purpose", async () => {
    const res = await fetch(`${base}/fail`, { method: "POST", headers: auth });
    expect(res.status).toBe(202);
    const deadline = Date.now() + 2000;
    while (crashes === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(crashes).toBe(1);
  });

  it("wrong tokens and malformed requests are errors with codes, counted in qmt_control_requests_total", async () => {
    expect((await fetch(`${base}/drain`, { method: "POST", headers: { authorization: "Bearer nope" } })).status).toBe(401);
    expect((await fetch(`${base}/preferred-address`, { method: "PUT", headers: auth, body: "[" })).status).toBe(400);
    expect((await fetch(`${base}/preferred-address`, { method: "PUT", headers: auth, body: JSON.stringify({ address: 7 }) })).status).toBe(400);
    expect((await fetch(`${base}/status`, { method: "DELETE", headers: auth })).status).toBe(405);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/qmt_control_requests_total\{route="\/drain",outcome="UNAUTHORIZED"\} 1/);
    expect(metrics).toMatch(/qmt_control_requests_total\{route="\/preferred-address",outcome="MALFORMED_JSON"\} 1/);
    expect(metrics).toMatch(/qmt_handshakes_total\{result="completed"\} \d+/);
    expect(draining()).toBe(false);
  });
});

function draining(): boolean {
  return server.draining;
}
