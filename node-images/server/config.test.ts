import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadServerConfig, ServerConfigError, validateServerConfig } from "./config.ts";

const dir = mkdtempSync(join(tmpdir(), "qmt-server-config-"));
writeFileSync(join(dir, "s.pem"), "-----BEGIN CERTIFICATE-----\n");
writeFileSync(join(dir, "s.key"), "-----BEGIN PRIVATE KEY-----\n");
const TOKEN = "t".repeat(32);
const base = {
  id: "backend1",
  serverId: "01",
  direct: ["127.0.0.21:4433"],
  tunnel: "127.0.0.21:4434",
  management: "127.0.0.21:9100",
  quicLb: { configs: [{ configId: 0, serverIdLength: 1, nonceLength: 7, key: "00112233445566778899aabbccddeeff" }] },
  tls: { certificateFile: join(dir, "s.pem"), privateKeyFile: join(dir, "s.key") },
};

function errorOf(raw: unknown): string {
  try {
    validateServerConfig(raw, "server.json", {}, TOKEN);
  } catch (err) {
    expect(err).toBeInstanceOf(ServerConfigError);
    return (err as Error).message;
  }
  throw new Error("expected a ServerConfigError");
}

describe("server config", () => {
  it("reads a complete file: direct address offered as preferred, QUIC-LB server ID, defaults", () => {
    const c = validateServerConfig(base, "server.json", {}, TOKEN);
    expect(c.preferredAddress).toEqual({ address: "127.0.0.21", port: 4433 });
    expect(c.serverId).toEqual(Buffer.from([1]));
    expect(c.tunnel).toEqual({ address: "127.0.0.21", port: 4434 });
    expect(c.alpn).toEqual(["h3", "hq-interop"]);
    expect(c.tls.certificatePem).toMatch(/BEGIN CERTIFICATE/);
  });

  it('offers no preferred address with "none", and flags override addresses', () => {
    const c = validateServerConfig({ ...base, preferredAddress: "none" }, "server.json", { direct: ["127.0.0.22:5000"] }, TOKEN);
    expect(c.preferredAddress).toBeUndefined();
    expect(c.direct).toEqual([{ address: "127.0.0.22", port: 5000 }]);
  });

  it("names the file and the field of each mistake", () => {
    expect(errorOf({ ...base, serverId: "0102" })).toBe('server.json: serverId: expected 1 octet(s), got "0102"');
    expect(errorOf({ ...base, direct: ["nowhere"] })).toMatch(/^server\.json: direct\[0\]: expected "ip:port"/);
    expect(errorOf({ ...base, preferredAddress: "10.0.0.1:1" })).toMatch(/^server\.json: preferredAddress: expected "direct", "none" or one of direct/);
    expect(errorOf({ ...base, quicLb: undefined })).toMatch(/^server\.json: quicLb: required behind an LB/);
    expect(errorOf({ ...base, statelessResetKey: "abcd" })).toMatch(/^server\.json: statelessResetKey: expected a 32-octet key/);
    expect(errorOf({ ...base, tls: { certificateFile: join(dir, "missing.pem"), privateKeyFile: join(dir, "s.key") } })).toMatch(/^server\.json: tls\.certificateFile: cannot read/);
    expect(errorOf({ ...base, extra: 1 })).toMatch(/^server\.json: \(document\): Unrecognized key/);
    expect(errorOf({ ...base, alpn: ["h2"] })).toMatch(/^server\.json: alpn\[0\]: /);
  });

  it("needs a config file and a token of 16+ characters", () => {
    expect(() => loadServerConfig([], {})).toThrow(/--config is required/);
    const file = join(dir, "server.json");
    writeFileSync(file, JSON.stringify(base));
    expect(() => loadServerConfig(["--config", file], {})).toThrow(/needs a token/);
    expect(() => loadServerConfig(["--config", file], { QMT_CONTROL_TOKEN: "short" })).toThrow(/at least 16 characters/);
    expect(loadServerConfig(["--config", file], { QMT_CONTROL_TOKEN: TOKEN }).id).toBe("backend1");
    writeFileSync(join(dir, "broken.json"), "{");
    expect(() => loadServerConfig(["--config", join(dir, "broken.json")], { QMT_CONTROL_TOKEN: TOKEN })).toThrow(/broken\.json: cannot read a JSON document/);
    expect(() => loadServerConfig(["--bogus"], {})).toThrow(ServerConfigError);
  });
});
