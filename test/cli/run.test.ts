/**
 * up/down/status through the Driver interface: order of calls, teardown of a failed or interrupted
 * up, the current run remembered for down/status. A recording driver shows the calls; the real
 * local driver shows a whole up → status → down.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { AppliedImpairment, Driver, ExecResult, ImpairmentTarget, NetworkState, NodeState } from "../../orchestrator/drivers/driver.ts";
import { LocalDriver } from "../../orchestrator/drivers/local.ts";
import { RunNotFoundError } from "../../orchestrator/errors.ts";
import { down, newRunId, readCurrentRun, status, up } from "../../orchestrator/run.ts";
import { parseTopology } from "../../orchestrator/topology/load.ts";
import type { ImpairmentSpec, NetworkSpec, NodeSpec } from "../../orchestrator/topology/model.ts";

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "qmt-run-"));
  dirs.push(dir);
  return dir;
}

const topology = parseTopology(`name: t
networks:
  - { name: pub, kind: public, subnet: 203.0.113.0/24 }
  - { name: priv, kind: private, subnet: 10.9.0.0/24 }
nodes:
  - { name: a, role: server, command: ["${process.execPath}", -e, "setInterval(() => {}, 1 << 30)"], addresses: [{ network: pub, ipv4: 203.0.113.10 }, { network: priv }] }
  - { name: b, role: client, command: ["${process.execPath}", -e, "setInterval(() => {}, 1 << 30)"], addresses: [{ network: pub }] }
links:
  - { node: b, network: pub, impairment: { delay: 10ms } }
`, "inline.yaml");

/** Records calls; fails the call named in `failOn`; aborts `controller` on the call named in `abortOn`. */
class RecordingDriver implements Driver {
  readonly name = "recording";
  readonly calls: string[] = [];
  readonly failOn: string | undefined;
  readonly abortOn: { call: string; controller: AbortController } | undefined;
  constructor(opts: { failOn?: string; abortOn?: { call: string; controller: AbortController } } = {}) {
    this.failOn = opts.failOn;
    this.abortOn = opts.abortOn;
  }
  #record(call: string): void {
    this.calls.push(call);
    if (call === this.failOn) throw new Error(`${call} failed`);
    if (call === this.abortOn?.call) this.abortOn.controller.abort(new DOMException("interrupted", "AbortError"));
  }
  async probe() { return { ok: true as const }; }
  async createNetwork(runId: string, spec: NetworkSpec): Promise<NetworkState> {
    this.#record(`network ${spec.name}`);
    return { name: spec.name, kind: spec.kind, subnet: spec.subnet, id: `${runId}-${spec.name}` };
  }
  async startNode(_runId: string, spec: NodeSpec): Promise<NodeState> {
    this.#record(`node ${spec.name}`);
    return { name: spec.name, role: spec.role, id: spec.name, status: "running", addresses: {} };
  }
  async exec(): Promise<ExecResult> { throw new Error("not used"); }
  async logs(): Promise<string> { throw new Error("not used"); }
  async impair(_runId: string, target: ImpairmentTarget, spec: ImpairmentSpec): Promise<AppliedImpairment> {
    this.#record(`impair ${target.node}/${target.network}`);
    return { target, spec, mechanism: "userspace", detail: [] };
  }
  async heal(): Promise<void> { throw new Error("not used"); }
  async listRun() { return { networks: [], nodes: [] }; }
  async removeRun(runId: string | undefined) {
    this.calls.push(`remove ${runId ?? "all"}`);
    return { removed: 0 };
  }
  async [Symbol.asyncDispose]() {}
}

describe("up", () => {
  it("creates networks, then nodes, then impairments, and remembers the run", async () => {
    const stateDir = tempDir();
    const driver = new RecordingDriver();
    await up(topology, driver, { runId: "qmt-t-000001", stateDir });
    expect(driver.calls).toEqual(["network pub", "network priv", "node a", "node b", "impair b/pub"]);
    expect((await readCurrentRun(stateDir))?.runId).toBe("qmt-t-000001");
  });

  it("a failed step removes the run, forgets it, and rethrows", async () => {
    const stateDir = tempDir();
    const driver = new RecordingDriver({ failOn: "node b" });
    await expect(up(topology, driver, { runId: "qmt-t-000002", stateDir })).rejects.toThrow("node b failed");
    expect(driver.calls).toEqual(["network pub", "network priv", "node a", "node b", "remove qmt-t-000002"]);
    expect(await readCurrentRun(stateDir)).toBeUndefined();
  });

  it("an interrupted up (aborted signal) stops and removes the run", async () => {
    const stateDir = tempDir();
    const controller = new AbortController();
    const driver = new RecordingDriver({ abortOn: { call: "network priv", controller } });
    await expect(up(topology, driver, { runId: "qmt-t-000003", stateDir, signal: controller.signal })).rejects.toThrow("interrupted");
    expect(driver.calls).toEqual(["network pub", "network priv", "remove qmt-t-000003"]);
  });
});

describe("down and status", () => {
  it("without an id act on the current run; with none they say so", async () => {
    const stateDir = tempDir();
    const driver = new RecordingDriver();
    await expect(down(driver, undefined, { stateDir })).rejects.toBeInstanceOf(RunNotFoundError);
    await up(topology, driver, { runId: "qmt-t-000004", stateDir });
    expect((await status(driver, undefined, { stateDir })).runId).toBe("qmt-t-000004");
    expect((await down(driver, undefined, { stateDir })).runId).toBe("qmt-t-000004");
    expect(driver.calls.at(-1)).toBe("remove qmt-t-000004");
    expect(await readCurrentRun(stateDir)).toBeUndefined();
  });

  it("run ids are qmt-<name>-<6 hex>", () => {
    expect(newRunId("lb-bypass")).toMatch(/^qmt-lb-bypass-[0-9a-f]{6}$/);
  });
});

describe("with the real local driver", () => {
  const withoutLinks = { ...topology, links: [] };

  it("up → status shows running nodes → down removes them", async () => {
    const stateDir = tempDir();
    const driver = new LocalDriver({ stateRoot: stateDir, stopTimeoutMs: 2_000, relayPollMs: 50 });
    const runId = newRunId(topology.name);
    try {
      const result = await up(withoutLinks, driver, { runId, stateDir });
      expect(result.nodes.map((n) => n.name)).toEqual(["a", "b"]);
      const listed = await status(driver, undefined, { stateDir });
      expect(listed.nodes.map((n) => [n.name, n.status])).toEqual([["a", "running"], ["b", "running"]]);
      const removed = await down(driver, undefined, { stateDir });
      expect(removed.removed).toBeGreaterThan(0);
      expect((await driver.listRun(runId)).nodes.filter((n) => n.status === "running")).toEqual([]);
    } finally {
      await driver.removeRun(runId);
      await driver[Symbol.asyncDispose]();
    }
  }, 30_000);

  it("a failed up (the second node's command does not exist) stops the first node and forgets the run", async () => {
    const stateDir = tempDir();
    const driver = new LocalDriver({ stateRoot: stateDir, stopTimeoutMs: 2_000, relayPollMs: 50 });
    const runId = newRunId(topology.name);
    const broken = { ...topology, nodes: topology.nodes.map((n) => (n.name === "b" ? { ...n, command: ["/no/such/binary"] } : n)) };
    try {
      await expect(up(broken, driver, { runId, stateDir })).rejects.toThrow(/cannot start \/no\/such\/binary/);
      expect(await driver.listRun(runId)).toEqual({ networks: [], nodes: [] });
      expect(await readCurrentRun(stateDir)).toBeUndefined();
    } finally {
      await driver.removeRun(runId);
      await driver[Symbol.asyncDispose]();
    }
  }, 30_000);
});
