/** The endpoint's environment contract (node-images/endpoint/config.ts) and its file-path guard, in-process. */
import { describe, expect, it } from "vitest";
import { InteropConfigError, loadInteropConfig, parseSocketAddress, UnsupportedTestcaseError } from "../../node-images/endpoint/config.ts";
import { fileUnderRoot } from "../../node-images/endpoint/rooted-path.ts";
import { TESTCASES } from "../../node-images/endpoint/testcases.ts";

const base = { CERTS_DIR: "/nonexistent-certs" };

describe("endpoint config from the runner's environment", () => {
  it("supports exactly the testcases the README lists, in both roles", () => {
    expect(TESTCASES.map((t) => t.name)).toEqual([
      "handshake", "transfer", "multiconnect", "chacha20", "keyupdate", "retry", "http3", "connectionmigration", "rebind-port", "rebind-addr",
    ]);
    for (const t of TESTCASES) {
      expect(loadInteropConfig({ ...base, ROLE: "server", TESTCASE: t.name, PREFERRED_ADDRESS: "127.0.0.2:4434" }).testcase.name).toBe(t.name);
      expect(loadInteropConfig({ ...base, ROLE: "client", TESTCASE: t.name, REQUESTS: "https://server4:443/a" }).testcase.name).toBe(t.name);
    }
  });

  it("an unknown testcase is UnsupportedTestcaseError (exit 127), checked before the other variables", () => {
    expect(() => loadInteropConfig({ ROLE: "client", TESTCASE: "zerortt" })).toThrow(UnsupportedTestcaseError);
    expect(() => loadInteropConfig({ ROLE: "server", TESTCASE: "resumption", PORT: "nope" })).toThrow(UnsupportedTestcaseError);
  });

  it("defaults are the runner's container paths and port 443; REQUESTS splits on any whitespace", () => {
    const c = loadInteropConfig({ ROLE: "client", TESTCASE: "transfer", REQUESTS: " https://server4:443/a \n https://server4:443/b/c " });
    expect(c).toMatchObject({ wwwDir: "/www", downloadsDir: "/downloads", certsDir: "/certs", port: 443, keyLogFile: undefined, qlogDir: undefined });
    expect(c.requests.map((u) => u.pathname)).toEqual(["/a", "/b/c"]);
  });

  it("malformed variables are InteropConfigError naming the variable", () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ ROLE: "peer", TESTCASE: "handshake" }, /^ROLE: expected "client" or "server", got "peer"$/],
      [{ ROLE: "server", TESTCASE: "handshake", PORT: "65536" }, /^PORT: /],
      [{ ROLE: "server", TESTCASE: "handshake", BIND_ADDRESS: "localhost" }, /^BIND_ADDRESS: /],
      [{ ROLE: "client", TESTCASE: "handshake" }, /^REQUESTS: /],
      [{ ROLE: "client", TESTCASE: "handshake", REQUESTS: "https://a/x http://a/y" }, /^REQUESTS\[1\]: expected an https URL/],
      [{ ROLE: "server", TESTCASE: "connectionmigration", PREFERRED_ADDRESS: "server4:443" }, /^PREFERRED_ADDRESS: expected "ip:port"/],
      [{ ROLE: "server", TESTCASE: "connectionmigration", PREFERRED_ADDRESS: "0.0.0.0:443" }, /^PREFERRED_ADDRESS: a wildcard/],
    ];
    for (const [env, message] of cases) {
      let error: unknown;
      try {
        loadInteropConfig({ ...base, ...env });
      } catch (err) {
        error = err;
      }
      expect(error, JSON.stringify(env)).toBeInstanceOf(InteropConfigError);
      expect((error as Error).message).toMatch(message);
    }
  });

  it("PREFERRED_ADDRESS is read for the connectionmigration server only (IPv4 and [IPv6])", () => {
    expect(loadInteropConfig({ ...base, ROLE: "server", TESTCASE: "connectionmigration", PREFERRED_ADDRESS: "[fd00::100]:4434" }).preferredAddress).toEqual({ address: "fd00::100", port: 4434 });
    expect(loadInteropConfig({ ...base, ROLE: "server", TESTCASE: "transfer", PREFERRED_ADDRESS: "127.0.0.2:4434" }).preferredAddress).toBeUndefined();
    expect(parseSocketAddress("193.167.100.100:443")).toEqual({ address: "193.167.100.100", port: 443 });
    expect(parseSocketAddress("193.167.100.100")).toBeUndefined();
  });
});

describe("fileUnderRoot: URL paths stay inside /www and /downloads", () => {
  it("maps nested paths and refuses traversal, NUL and empty names", () => {
    expect(fileUnderRoot("/www", "/a.bin")).toBe("/www/a.bin");
    expect(fileUnderRoot("/www", "/dir/b%20c.bin")).toBe("/www/dir/b c.bin");
    for (const bad of ["/", "/../etc/passwd", "/a/../../x", "/%2e%2e/x", "/a%00b", "/%E0%A4%A"]) expect(fileUnderRoot("/www", bad), bad).toBeUndefined();
  });
});
