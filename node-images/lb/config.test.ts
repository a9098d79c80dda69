import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LbConfigError, loadLbConfig } from "./config.ts";

const dir = mkdtempSync(join(tmpdir(), "qmt-lb-config-"));
const env = { QMT_CONTROL_TOKEN: "0123456789abcdef0123" };
const good = {
  vips: ["127.0.0.10:4433"],
  tunnel: "127.0.0.10:4434",
  management: "127.0.0.10:9100",
  quicLb: { configs: [{ configId: 0, serverIdLength: 1, nonceLength: 7, key: "8f95f09245765f80256934e50c66207f" }] },
  backends: [{ id: "backend1", serverId: "01", address: "10.20.0.11:4434" }],
};

function file(name: string, content: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof content === "string" ? content : JSON.stringify(content));
  return p;
}

function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(LbConfigError);
    return (e as Error).message;
  }
  return "no error";
}

describe("LB configuration", () => {
  it("reads the file, lets flags override addresses, and takes the token from the environment", () => {
    const c = loadLbConfig(["--config", file("good.json", good), "--vip", "[::1]:4433", "--management", "127.0.0.1:0"], env);
    expect(c.vips).toEqual([{ address: "::1", port: 4433 }]);
    expect(c.management).toEqual({ address: "127.0.0.1", port: 0 });
    expect(Buffer.from(c.quicLb[0]!.key!).toString("hex")).toBe("8f95f09245765f80256934e50c66207f");
    expect(c.backends[0]).toMatchObject({ id: "backend1", address: { address: "10.20.0.11", port: 4434 } });
    expect(c.unroutableShortHeader).toBe("hash");
  });

  it("names the file and field of a mistake", () => {
    const bad = (patch: object): string => errorOf(() => loadLbConfig(["--config", file("bad.json", { ...good, ...patch })], env));
    expect(bad({ backends: [{ id: "b", serverId: "zz", address: "10.0.0.1:1" }] })).toMatch(/bad\.json: backends\[0\]\.serverId: expected the server ID as hex/);
    expect(bad({ backends: [{ id: "b", serverId: "0102", address: "10.0.0.1:1" }] })).toMatch(/backends\[0\]\.serverId: expected 1 octet/);
    expect(bad({ tunnel: "nowhere" })).toMatch(/bad\.json: tunnel: expected "ip:port"/);
    expect(bad({ quicLb: { configs: [{ configId: 7, serverIdLength: 1, nonceLength: 7 }] } })).toMatch(/quicLb\.configs\[0\]\.configId/);
    expect(bad({ quicLb: { configs: [{ configId: 0, serverIdLength: 1, nonceLength: 7, key: "abcd" }] } })).toMatch(/quicLb\.configs\[0\]\.key: expected a 16-octet key/);
    expect(bad({ surprise: 1 })).toMatch(/bad\.json: \(document\): Unrecognized key/);
    expect(errorOf(() => loadLbConfig(["--config", file("broken.json", "{")], env))).toMatch(/broken\.json: cannot read a JSON document/);
    expect(errorOf(() => loadLbConfig([], env))).toMatch(/--config is required/);
    expect(errorOf(() => loadLbConfig(["--config", file("good2.json", good), "--bogus"], env))).toMatch(/bogus/);
  });

  it("reads health URLs and health check settings, with bounded defaults", () => {
    const c = loadLbConfig(["--config", file("health.json", { ...good, backends: [{ ...good.backends[0], healthUrl: "http://172.20.0.11:9100/healthz" }] })], env);
    expect(c.backends[0]!.healthUrl).toBe("http://172.20.0.11:9100/healthz");
    expect(c.healthCheck).toEqual({ intervalMs: 1000, timeoutMs: 500, unhealthyAfter: 3, healthyAfter: 2 });
    const d = loadLbConfig(["--config", file("health2.json", { ...good, healthCheck: { intervalMs: 200, timeoutMs: 100 } })], env);
    expect(d.healthCheck).toEqual({ intervalMs: 200, timeoutMs: 100, unhealthyAfter: 3, healthyAfter: 2 });
    expect(d.backends[0]!.healthUrl).toBeUndefined();
  });

  it("names the field of a bad health URL or health check setting", () => {
    const bad = (patch: object): string => errorOf(() => loadLbConfig(["--config", file("badhealth.json", { ...good, ...patch })], env));
    const withUrl = (healthUrl: string) => ({ backends: [{ ...good.backends[0], healthUrl }] });
    expect(bad(withUrl("ftp://10.0.0.1/healthz"))).toMatch(/badhealth\.json: backends\[0\]\.healthUrl: expected an http URL/);
    expect(bad(withUrl("not a url"))).toMatch(/backends\[0\]\.healthUrl: expected an http URL/);
    expect(bad(withUrl("http://user:pw@10.0.0.1/healthz"))).toMatch(/backends\[0\]\.healthUrl/);
    expect(bad({ healthCheck: { intervalMs: 5 } })).toMatch(/healthCheck\.intervalMs/);
    expect(bad({ healthCheck: { unhealthyAfter: 0 } })).toMatch(/healthCheck\.unhealthyAfter/);
    expect(bad({ healthCheck: { intervalMs: 100, timeoutMs: 500 } })).toMatch(/healthCheck\.timeoutMs: expected at most intervalMs \(100\), got 500/);
    expect(bad({ healthCheck: { every: "1s" } })).toMatch(/healthCheck: Unrecognized key/);
  });

  it("refuses to start without a token of at least 16 characters", () => {
    const p = file("good3.json", good);
    expect(errorOf(() => loadLbConfig(["--config", p], {}))).toMatch(/QMT_CONTROL_TOKEN/);
    expect(errorOf(() => loadLbConfig(["--config", p], { QMT_CONTROL_TOKEN: "short" }))).toMatch(/at least 16/);
  });
});
