/**
 * Every broken topology in ./broken is refused with the first problem's code, field path and
 * line, by the loader and by the real CLI (`validate` exits 2 printing one line naming file and field).
 * Line 1 of each fixture says what is broken.
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { TopologyInvalidError } from "../../orchestrator/errors.ts";
import { loadTopology } from "../../orchestrator/topology/load.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const brokenDir = "test/topology/broken";

/** file → the field path and line the first error must name. */
const EXPECTED: Record<string, { path: string; line: number }> = {
  "address-gateway": { path: "nodes[0].addresses[0].ipv4", line: 15 },
  "address-outside-subnet": { path: "nodes[0].addresses[0].ipv4", line: 15 },
  "addresses-not-list": { path: "nodes[0].addresses", line: 14 },
  "bad-ipv4": { path: "nodes[0].addresses[0].ipv4", line: 15 },
  "bad-name": { path: "nodes[0].name", line: 11 },
  "bad-subnet": { path: "networks[0].subnet", line: 6 },
  "command-not-list": { path: "nodes[0].command", line: 13 },
  "dangling-network": { path: "nodes[0].addresses[0].network", line: 14 },
  "delay-bad-duration": { path: "links[0].impairment.delay", line: 19 },
  "delay-no-unit": { path: "links[0].impairment.delay", line: 19 },
  "delay-too-large": { path: "links[0].impairment.delay", line: 19 },
  "direction-unknown": { path: "links[0].direction", line: 18 },
  "distribution-unknown": { path: "links[0].impairment.distribution", line: 21 },
  "duplicate-address": { path: "nodes[1].addresses[0].ipv4", line: 20 },
  "duplicate-link": { path: "links[1].node", line: 17 },
  "duplicate-network": { path: "networks[1].name", line: 7 },
  "duplicate-node": { path: "nodes[1].name", line: 15 },
  "empty-file": { path: "", line: 1 },
  "empty-impairment": { path: "links[0].impairment", line: 18 },
  "empty-networks": { path: "networks", line: 3 },
  "jitter-negative": { path: "links[0].impairment.jitter", line: 20 },
  "jitter-without-delay": { path: "links[0].impairment.jitter", line: 19 },
  "limit-not-integer": { path: "links[0].impairment.limit", line: 20 },
  "link-not-attached": { path: "links[0].network", line: 17 },
  "link-unknown-network": { path: "links[0].network", line: 17 },
  "link-unknown-node": { path: "links[0].node", line: 16 },
  "loss-above-100": { path: "links[0].impairment.loss", line: 19 },
  "loss-bad": { path: "links[0].impairment.loss", line: 19 },
  "missing-name": { path: "name", line: 2 },
  "missing-nodes": { path: "nodes", line: 2 },
  "name-wrong-type": { path: "name", line: 2 },
  "node-network-twice": { path: "nodes[0].addresses[1].network", line: 15 },
  "observability-no-mgmt": { path: "observability", line: 4 },
  "overlapping-subnets": { path: "networks[1].subnet", line: 9 },
  "private-not-rfc1918": { path: "networks[0].subnet", line: 6 },
  "public-not-documentation": { path: "networks[0].subnet", line: 6 },
  "rate-bad-unit": { path: "links[0].impairment.rate", line: 19 },
  "rate-zero": { path: "links[0].impairment.rate", line: 19 },
  "reorder-without-delay": { path: "links[0].impairment.reorder", line: 19 },
  "replicas-fixed-address": { path: "nodes[0].addresses[0].ipv4", line: 16 },
  "replicas-zero": { path: "nodes[0].replicas", line: 13 },
  "subnet-host-bits": { path: "networks[0].subnet", line: 6 },
  "top-not-mapping": { path: "", line: 2 },
  "unknown-impairment-key": { path: "links[0].impairment.latency", line: 19 },
  "unknown-kind": { path: "networks[0].kind", line: 5 },
  "unknown-network-key": { path: "networks[0].subnet4", line: 6 },
  "unknown-role": { path: "nodes[0].role", line: 12 },
  "unknown-top-key": { path: "nodez", line: 10 },
  "yaml-duplicate-key": { path: "", line: 3 },
  "yaml-syntax": { path: "", line: 4 },
};

const fixtures = readdirSync(path.join(repoRoot, brokenDir)).filter((f) => f.endsWith(".yaml")).map((f) => f.replace(/\.yaml$/, "")).sort();

describe("broken topologies", () => {
  it("every fixture has an expectation and every expectation a fixture (at least 35)", () => {
    expect(fixtures).toEqual(Object.keys(EXPECTED).sort());
    expect(fixtures.length).toBeGreaterThanOrEqual(35);
  });

  it.each(fixtures)("%s is refused with TOPOLOGY_INVALID at its field and line", async (name) => {
    const file = `${brokenDir}/${name}.yaml`;
    const expected = EXPECTED[name];
    const error = await loadTopology(path.join(repoRoot, file)).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(TopologyInvalidError);
    const invalid = error as TopologyInvalidError;
    expect(invalid.code).toBe("TOPOLOGY_INVALID");
    expect(invalid.name).toBe("TopologyInvalidError");
    expect(invalid.path).toBe(expected?.path);
    expect(invalid.line).toBe(expected?.line);
    expect(invalid.column).toBeGreaterThan(0);
    expect(invalid.message).toBe(`${path.join(repoRoot, file)}:${invalid.line}:${invalid.column}: ${invalid.path === "" ? "" : `${invalid.path}: `}expected ${invalid.expected}, got ${invalid.got}`);
  });

  it.each(fixtures)("validate %s exits 2 with one line naming the file and field", async (name) => {
    const file = `${brokenDir}/${name}.yaml`;
    const result = await execa(process.execPath, ["orchestrator/cli.ts", "validate", file], { cwd: repoRoot, reject: false });
    expect(result.exitCode).toBe(2);
    expect(result.stdout).toBe("");
    const lines = result.stderr.split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^${file.replace(/[.]/g, "\\.")}:${EXPECTED[name]?.line}:\\d+: `));
    if (EXPECTED[name]?.path !== "") expect(lines[0]).toContain(` ${EXPECTED[name]?.path}: expected `);
  });
});

describe("the message names what was expected and what was found", () => {
  it("a bad delay reads as the user wrote it", async () => {
    const error = (await loadTopology(path.join(repoRoot, brokenDir, "delay-bad-duration.yaml")).catch((e: unknown) => e)) as TopologyInvalidError;
    expect(error.expected).toBe('a duration like "20ms"');
    expect(error.got).toBe('"fast"');
    expect(error.column).toBe(14);
  });

  it("an unknown role lists the known roles", async () => {
    const error = (await loadTopology(path.join(repoRoot, brokenDir, "unknown-role.yaml")).catch((e: unknown) => e)) as TopologyInvalidError;
    expect(error.expected).toBe("one of lb, server, client, prometheus, grafana, generic");
    expect(error.got).toBe('"loadbalancer"');
  });

  it("a missing file is TOPOLOGY_UNREADABLE and exits 2", async () => {
    const result = await execa(process.execPath, ["orchestrator/cli.ts", "validate", "topologies/no-such-file.yaml"], { cwd: repoRoot, reject: false });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe("topologies/no-such-file.yaml: cannot read topology: no such file");
  });
});
