/** The shipped topologies validate, convert the user's words to the model's units, and plan deterministically. */
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { planRun } from "../../orchestrator/plan.ts";
import { loadTopology, parseTopology } from "../../orchestrator/topology/load.ts";
import { formatDurationMs, formatRateBitsPerSecond, parseDurationMs, parsePercent, parseRateBitsPerSecond } from "../../orchestrator/topology/units.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const shipped = readdirSync(path.join(repoRoot, "topologies")).filter((f) => f.endsWith(".yaml")).sort();

describe("topologies/", () => {
  it("ships lb-bypass, failover, geo and renumber", () => {
    expect(shipped).toEqual(expect.arrayContaining(["lb-bypass.yaml", "failover.yaml", "geo.yaml", "renumber.yaml"]));
  });

  it.each(shipped)("%s validates", async (file) => {
    const topology = await loadTopology(path.join(repoRoot, "topologies", file));
    expect(topology.name).toBe(file.replace(/\.yaml$/, ""));
  });

  it("lb-bypass has the four networks, the four experiment nodes and an impaired link in model units", async () => {
    const topology = await loadTopology(path.join(repoRoot, "topologies/lb-bypass.yaml"));
    expect(topology.networks.map((n) => [n.name, n.kind, n.subnet])).toEqual([
      ["public", "public", "203.0.113.0/24"], ["private", "private", "10.20.0.0/24"], ["direct", "direct", "198.51.100.0/24"], ["mgmt", "mgmt", "172.20.0.0/24"],
    ]);
    expect(topology.nodes.filter((n) => ["lb", "server", "client"].includes(n.role)).map((n) => `${n.name}:${n.role}`)).toEqual(["lb:lb", "backend1:server", "backend2:server", "client1:client"]);
    expect(topology.nodes.every((n) => n.addresses.some((a) => a.network === "mgmt"))).toBe(true);
    expect(topology.links[0]).toEqual({
      name: "client1-public", node: "client1", network: "public", direction: "both",
      impairment: { delayMs: 20, jitterMs: 2, jitterDistribution: "normal", lossPercent: 0.5, rateBitsPerSecond: 100_000_000 },
    });
    expect(topology.observability).toEqual({ prometheus: true, grafana: true, scrapeIntervalS: 5 });
  });

  it("geo gives its two sites ~10 ms and ~80 ms RTT on the direct network", async () => {
    const topology = await loadTopology(path.join(repoRoot, "topologies/geo.yaml"));
    const oneWayMs = (node: string) => topology.links.find((l) => l.node === node && l.network === "direct")?.impairment.delayMs ?? 0;
    expect(2 * oneWayMs("client-a")).toBe(10);
    expect(2 * oneWayMs("client-b")).toBe(80);
  });
});

describe("units in the user's words", () => {
  it("durations", () => {
    expect(parseDurationMs("20ms")).toBe(20);
    expect(parseDurationMs("1.5s")).toBe(1500);
    expect(parseDurationMs("250us")).toBe(0.25);
    expect(parseDurationMs("2m")).toBe(120_000);
    expect(parseDurationMs("20")).toBeUndefined();
    expect(parseDurationMs("fast")).toBeUndefined();
    expect(formatDurationMs(1500)).toBe("1.5s");
    expect(formatDurationMs(20)).toBe("20ms");
  });

  it("rates, as tc(8) reads them (bit = bits, bps = bytes per second)", () => {
    expect(parseRateBitsPerSecond("100mbit")).toBe(100e6);
    expect(parseRateBitsPerSecond("1Gbit")).toBe(1e9);
    expect(parseRateBitsPerSecond("1mbps")).toBe(8e6);
    expect(parseRateBitsPerSecond("100")).toBeUndefined();
    expect(formatRateBitsPerSecond(100e6)).toBe("100mbit");
  });

  it("percentages with or without %", () => {
    expect(parsePercent("2%")).toBe(2);
    expect(parsePercent(2)).toBe(2);
    expect(parsePercent("0.5")).toBe(0.5);
    expect(parsePercent("x%")).toBeUndefined();
  });
});

describe("planRun", () => {
  it("same file and run id → the same plan", async () => {
    const file = path.join(repoRoot, "topologies/lb-bypass.yaml");
    const a = planRun(await loadTopology(file), { runId: "dryrun", driver: "docker" });
    const b = planRun(await loadTopology(file), { runId: "dryrun", driver: "docker" });
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(a.networks.map((n) => n.name)).toEqual(["public", "private", "direct", "mgmt"]);
    expect(a.nodes.find((n) => n.name === "lb")?.env).toMatchObject({ QMT_RUN_ID: "dryrun", QMT_NODE: "lb", QMT_ROLE: "lb" });
  });

  it("a different run id changes only the run id in the plan", async () => {
    const topology = await loadTopology(path.join(repoRoot, "topologies/lb-bypass.yaml"));
    const a = JSON.stringify(planRun(topology, { runId: "qmt-lb-bypass-aaaaaa", driver: "docker" }));
    const b = JSON.stringify(planRun(topology, { runId: "qmt-lb-bypass-bbbbbb", driver: "docker" }));
    expect(a).not.toBe(b);
    expect(a.replaceAll("qmt-lb-bypass-aaaaaa", "X")).toBe(b.replaceAll("qmt-lb-bypass-bbbbbb", "X"));
  });

  it("expands replicas into single nodes and their link impairments", () => {
    const topology = parseTopology(`name: t
networks: [{ name: pub, kind: public, subnet: 203.0.113.0/24 }]
nodes:
  - { name: c, role: client, replicas: 3, addresses: [{ network: pub }] }
links:
  - { node: c, network: pub, impairment: { loss: 1% } }
`, "inline.yaml");
    const plan = planRun(topology, { runId: "r", driver: "local" });
    expect(plan.nodes.map((n) => [n.name, n.replicas])).toEqual([["c-1", 1], ["c-2", 1], ["c-3", 1]]);
    expect(plan.impairments.map((i) => i.target.node)).toEqual(["c-1", "c-2", "c-3"]);
    expect(plan.impairments[0]?.spec).toEqual({ lossPercent: 1 });
  });
});
