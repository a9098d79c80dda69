import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ClientConfigError, loadClientConfig, validateClientConfig } from "./config.ts";

const dir = mkdtempSync(join(tmpdir(), "qmt-client-config-"));
const caFile = join(dir, "ca.pem");
writeFileSync(caFile, "-----BEGIN CERTIFICATE-----\n");
const base = { target: "127.0.0.10:4433", caFile };

function errorOf(raw: unknown): string {
  try {
    validateClientConfig(raw, "client.json");
  } catch (err) {
    expect(err).toBeInstanceOf(ClientConfigError);
    return (err as Error).message;
  }
  throw new Error("expected a ClientConfigError");
}

describe("client config", () => {
  it("fills defaults: one socket, rr workload, follow policy", () => {
    const c = validateClientConfig(base, "client.json");
    expect(c.bind).toEqual([{ address: "127.0.0.1", port: 0 }]);
    expect(c.mix).toEqual({ rr: 1, stream: 0, download: 0, echo: 0 });
    expect(c.preferredAddressPolicy).toBe("follow");
  });

  it("names the file and the field of each mistake", () => {
    expect(errorOf({ ...base, connections: 10_001 })).toMatch(/^client\.json: connections: /);
    expect(errorOf({ ...base, target: "vip" })).toMatch(/^client\.json: target: expected "ip:port"/);
    expect(errorOf({ ...base, mix: { rr: 0 } })).toMatch(/^client\.json: mix: expected at least one workload/);
    expect(errorOf({ ...base, preferredAddressPolicy: "maybe" })).toMatch(/^client\.json: preferredAddressPolicy: /);
    expect(errorOf({ caFile })).toBe("client.json: target: required (in the file or as --target)");
    expect(errorOf({ ...base, caFile: join(dir, "none.pem") })).toMatch(/^client\.json: caFile: cannot read/);
    expect(errorOf({ ...base, rr: { intervalMs: 0 } })).toMatch(/^client\.json: rr\.intervalMs: /);
  });

  it("flags override the file; a bad flag value is named", () => {
    const file = join(dir, "client.json");
    writeFileSync(file, JSON.stringify(base));
    expect(loadClientConfig(["--config", file, "--connections", "42", "--target", "127.0.0.11:1"], {}).connections).toBe(42);
    expect(() => loadClientConfig(["--config", file, "--connections", "many"], {})).toThrow('--connections: expected an integer, got "many"');
    expect(() => loadClientConfig([], {})).toThrow(/--config is required/);
    writeFileSync(join(dir, "array.json"), "[]");
    expect(() => loadClientConfig(["--config", join(dir, "array.json")], {})).toThrow(/expected a JSON object/);
    expect(() => loadClientConfig(["--config", file], { QMT_CONTROL_TOKEN: "short" })).toThrow(/at least 16 characters/);
  });
});
