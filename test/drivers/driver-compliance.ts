/**
 * One suite every Driver must pass (js-libp2p's interface compliance tests; STYLE.md "A driver
 * interface, two drivers"). Call it from a driver's test file:
 *
 *   describeDriverCompliance("local", async () => new LocalDriver({ stateRoot }), { command: [...] });
 *
 * `command` must be a long-running node that prints at least one line to stdout, binds a UDP echo
 * on port 4433 of its address on every network (test/drivers/fixtures/udp-echo-node.ts does), and
 * exits on SIGTERM. `image` is passed as NodeSpec.image (the Docker driver). `skip` (a reason)
 * skips the whole suite, with the reason in its name; `skipImpairment` only the impairment test.
 */
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import type { Driver } from "../../orchestrator/drivers/driver.ts";
import type { NetworkSpec, NodeSpec } from "../../orchestrator/topology/model.ts";

export interface DriverComplianceOptions {
  skip?: string;
  /** Why this driver cannot impair here (skips only the impairment test, with the reason in its name). */
  skipImpairment?: string;
  image?: string;
  command: string[];
  /** The mechanism this driver must report here (docker: netem, or userspace on a kernel without sch_netem). */
  expectedMechanism?: "netem" | "userspace";
}

/**
 * Each run of the suite gets its own quarter of 192.0.2.0/24 (a Docker engine refuses two
 * networks with overlapping subnets, and one test holds two runs at once).
 */
let quarter = 0;
function nextNetwork(): { network: NetworkSpec; host: (n: number) => string } {
  const base = 64 * (quarter++ % 4);
  return { network: { name: "public", kind: "public", subnet: `192.0.2.${base}/26` }, host: (n) => `192.0.2.${base + n}` };
}

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function describeDriverCompliance(name: string, makeDriver: () => Promise<Driver>, opts: DriverComplianceOptions): void {
  const title = opts.skip !== undefined ? `${name} driver compliance (skipped: ${opts.skip})` : `${name} driver compliance`;
  describe.skipIf(opts.skip !== undefined)(title, () => {
    const runIds: string[] = [];
    const drivers: Driver[] = [];
    const newRunId = (): string => {
      const id = `qmt-compliance-${randomBytes(4).toString("hex")}`;
      runIds.push(id);
      return id;
    };
    const driver = async (): Promise<Driver> => {
      const d = await makeDriver();
      drivers.push(d);
      return d;
    };
    const nodeSpec = (nodeName: string, ipv4?: string): NodeSpec => ({
      name: nodeName,
      role: "generic",
      ...(opts.image !== undefined ? { image: opts.image } : {}),
      command: opts.command,
      env: {},
      addresses: [{ network: "public", ...(ipv4 !== undefined ? { ipv4 } : {}) }],
      replicas: 1,
    });

    afterAll(async () => {
      // Whatever a failed test left behind.
      for (const d of drivers) {
        for (const id of runIds) await d.removeRun(id);
        await d[Symbol.asyncDispose]();
      }
    });

    it("probe says the engine is reachable", async () => {
      expect(await (await driver()).probe()).toEqual({ ok: true });
    });

    it("creates a network, starts two nodes on it, lists them, runs exec with the node's environment, and returns logs", async () => {
      const d = await driver();
      const runId = newRunId();
      const { network: spec, host } = nextNetwork();
      const network = await d.createNetwork(runId, spec);
      expect(network.name).toBe("public");
      expect(network.kind).toBe("public");
      const a = await d.startNode(runId, nodeSpec("a", host(10)));
      const b = await d.startNode(runId, nodeSpec("b"));
      expect(a.addresses["public"]).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      expect(b.addresses["public"]).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      expect(a.addresses["public"]).not.toBe(b.addresses["public"]);

      const listed = await d.listRun(runId);
      expect(listed.networks.map((n) => n.name)).toEqual(["public"]);
      expect(listed.nodes.map((n) => n.name).sort()).toEqual(["a", "b"]);
      expect(listed.nodes.every((n) => n.status === "running")).toBe(true);

      const result = await d.exec(runId, "a", ["sh", "-c", 'echo "$QMT_NODE $QMT_RUN_ID"; echo oops >&2; exit 3']);
      expect(result).toEqual({ exitCode: 3, stdout: `a ${runId}\n`, stderr: "oops\n" });

      const logs = await waitFor(async () => {
        const text = await d.logs(runId, "b");
        return text.trim() === "" ? undefined : text;
      }, 10_000, "node b to log a line");
      expect(logs.length).toBeGreaterThan(0);
      expect((await d.logs(runId, "b", { tail: 1 })).trim().split("\n")).toHaveLength(1);
      await d.removeRun(runId);
    });

    it.skipIf(opts.skipImpairment !== undefined)(`impairs and heals a node's attachment and reports what it applied${opts.skipImpairment !== undefined ? ` (skipped: ${opts.skipImpairment})` : ""}`, async () => {
      const d = await driver();
      const runId = newRunId();
      const { network, host } = nextNetwork();
      await d.createNetwork(runId, network);
      await d.startNode(runId, nodeSpec("a", host(10)));
      const target = { node: "a", network: "public", direction: "both" as const };
      const spec = { delayMs: 20, lossPercent: 1 };
      // The node binds its socket shortly after it starts: retry until the driver finds something to impair.
      const applied = await waitFor(async () => {
        try {
          return await d.impair(runId, target, spec);
        } catch (error) {
          if ((error as { code?: string }).code === "NOTHING_TO_IMPAIR") return undefined;
          throw error;
        }
      }, 10_000, "an impairable attachment");
      expect(applied.target).toEqual(target);
      expect(applied.spec).toEqual(spec);
      expect(["netem", "userspace"]).toContain(applied.mechanism);
      if (opts.expectedMechanism !== undefined) expect(applied.mechanism).toBe(opts.expectedMechanism);
      expect(applied.detail.length).toBeGreaterThan(0);
      // Live change of the same link, then heal.
      const changed = await d.impair(runId, target, { delayMs: 5 });
      expect(changed.spec).toEqual({ delayMs: 5 });
      expect(changed.mechanism).toBe(applied.mechanism);
      await d.heal(runId, target);
      await d.removeRun(runId);
    });

    it("removeRun leaves nothing, and a second removeRun removes nothing", async () => {
      const d = await driver();
      const runId = newRunId();
      await d.createNetwork(runId, nextNetwork().network);
      await d.startNode(runId, nodeSpec("a"));
      await d.startNode(runId, nodeSpec("b"));
      const { removed } = await d.removeRun(runId);
      expect(removed).toBeGreaterThanOrEqual(3);
      expect(await d.listRun(runId)).toEqual({ networks: [], nodes: [] });
      expect(await d.removeRun(runId)).toEqual({ removed: 0 });
    });

    it("removeRun(undefined) removes every run", async () => {
      const d = await driver();
      const first = newRunId();
      const second = newRunId();
      for (const id of [first, second]) {
        await d.createNetwork(id, nextNetwork().network);
        await d.startNode(id, nodeSpec("a"));
      }
      const { removed } = await d.removeRun(undefined);
      expect(removed).toBeGreaterThanOrEqual(4);
      expect(await d.listRun(first)).toEqual({ networks: [], nodes: [] });
      expect(await d.listRun(second)).toEqual({ networks: [], nodes: [] });
    });

    it("an aborted start leaves no node behind", async () => {
      const d = await driver();
      const runId = newRunId();
      await d.createNetwork(runId, nextNetwork().network);
      const before = new AbortController();
      before.abort();
      await expect(d.startNode(runId, nodeSpec("early"), before.signal)).rejects.toThrow();
      const during = new AbortController();
      const starting = d.startNode(runId, nodeSpec("late"), during.signal);
      during.abort();
      await expect(starting).rejects.toThrow();
      expect((await d.listRun(runId)).nodes).toEqual([]);
      await d.removeRun(runId);
    });
  });
}
