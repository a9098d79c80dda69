/**
 * The Docker driver against a real engine and the offline base image (orchestrator/images/build.ts).
 * Traffic only between containers this file creates. Every run is removed by label in afterAll.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Docker from "dockerode";
import { randomBytes, randomInt } from "node:crypto";
import { DockerDriver } from "../../orchestrator/drivers/docker.ts";
import { LABEL_RUN } from "../../orchestrator/drivers/driver.ts";
import type { NetworkSpec, NodeSpec } from "../../orchestrator/topology/model.ts";
import { buildBaseImage } from "../../orchestrator/images/build.ts";
import { runCommand } from "../../orchestrator/images/command.ts";
import { lockDockerEngine } from "./engine-lock.ts";

const engine = new Docker();
const probe = await new DockerDriver({ docker: engine }).probe();
const dockerReachable = probe.ok;
const debootstrapPresent = (await runCommand(["debootstrap", "--version"]).catch(() => ({ exitCode: -1 }))).exitCode === 0;
// sch_netem in this kernel: `tc qdisc add dev lo root netem` in a fresh network namespace.
const netemAvailable =
  (await runCommand(["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).catch(() => ({ exitCode: -1 }))).exitCode === 0;
const canBuildBase = dockerReachable && (debootstrapPresent || process.env.BASE_IMAGE !== undefined);

const UDP_PORT = 9000;
/** Echo server for the probes: replies to every datagram with the same bytes. */
const ECHO_SERVER = `const s=require("node:dgram").createSocket("udp4");s.on("message",(m,r)=>s.send(m,r.port,r.address));s.bind(${UDP_PORT},()=>console.log("echo server listening"));`;
/** One UDP round trip to argv[1]:9000; prints "echo <rtt ms>" and exits 0 when the echo arrives within 1 s, 1 otherwise. */
const UDP_PROBE = `const s=require("node:dgram").createSocket("udp4");const t=setTimeout(()=>{console.log("timeout");process.exit(1)},1000);
const t0=performance.now();s.on("message",()=>{clearTimeout(t);console.log("echo "+(performance.now()-t0).toFixed(1));process.exit(0)});s.on("error",(e)=>{console.log(e.code);process.exit(1)});
s.send("probe",${UDP_PORT},process.argv[1]);`;

function newRunId(): string {
  return `qmt-test-${randomBytes(4).toString("hex")}`;
}

/** lb-bypass-like layout; documentation ranges outside, private ranges inside; per-file offsets so runs coexist. */
function layout(): { networks: NetworkSpec[]; ip: (network: string, host: number) => string } {
  const k = randomInt(0, 14);
  const bases: Record<string, [string, number]> = {
    public: [`192.0.2.${k * 16}/28`, k * 16],
    direct: [`198.51.100.${k * 16}/28`, k * 16],
    private: [`10.213.${k}.0/24`, 0],
    mgmt: [`172.29.${k}.0/24`, 0],
  };
  const networks = (["public", "private", "direct", "mgmt"] as const).map((kind) => ({ name: kind, kind, subnet: bases[kind]![0] }));
  const ip = (network: string, host: number): string => {
    const [subnet, offset] = bases[network]!;
    const prefix = subnet.split(".").slice(0, 3).join(".");
    return `${prefix}.${offset + host}`;
  };
  return { networks, ip };
}

async function labelledObjects(runId?: string): Promise<number> {
  const filters = { label: [runId === undefined ? LABEL_RUN : `${LABEL_RUN}=${runId}`] };
  const [containers, networks, volumes] = await Promise.all([
    engine.listContainers({ all: true, filters }),
    engine.listNetworks({ filters }),
    engine.listVolumes({ filters }),
  ]);
  return containers.length + networks.length + (volumes.Volumes ?? []).length;
}

let baseImage = "";
const runIds: string[] = [];

describe.skipIf(!canBuildBase)(`docker driver on a real engine (needs a docker engine${dockerReachable ? "" : `: ${probe.ok ? "" : probe.reason}`} and debootstrap or BASE_IMAGE)`, () => {
  let lock: { release: () => Promise<void> } | undefined;
  beforeAll(async () => {
    lock = await lockDockerEngine(600_000);
    baseImage = (await buildBaseImage({ baseImage: process.env.BASE_IMAGE || undefined })).tag;
  }, 900_000);

  afterAll(async () => {
    const driver = new DockerDriver({ docker: engine });
    for (const runId of runIds) await driver.removeRun(runId);
    await lock?.release();
  });

  describe("a four-network, four-node run", () => {
    const runId = newRunId();
    runIds.push(runId);
    const { networks, ip } = layout();
    const driver = new DockerDriver({ docker: engine, impairable: (spec) => spec.name === "lb" });
    const node = (name: string, attachments: [string, number][]): NodeSpec => ({
      name,
      role: "generic",
      image: "",
      command: ["node", "-e", ECHO_SERVER],
      env: { QMT_NODE: name },
      addresses: attachments.map(([network, host]) => ({ network, ipv4: ip(network, host) })),
      replicas: 1,
    });
    const nodes = [
      node("client", [["public", 10]]),
      node("lb", [["public", 2], ["private", 2], ["mgmt", 2]]),
      node("server-a", [["private", 10], ["direct", 10], ["mgmt", 10]]),
      node("server-b", [["private", 11], ["direct", 11], ["mgmt", 11]]),
    ];
    const udpProbe = async (from: string, to: string): Promise<{ exitCode: number; stdout: string }> =>
      driver.exec(runId, from, ["node", "-e", UDP_PROBE, to]);

    beforeAll(async () => {
      for (const n of networks) await driver.createNetwork(runId, n);
      const startMs: number[] = [];
      for (const n of nodes) {
        const t0 = performance.now();
        await driver.startNode(runId, { ...n, image: baseImage });
        startMs.push(performance.now() - t0);
      }
      console.log(`container start (create+connect+start+running), ms: ${startMs.map((m) => m.toFixed(0)).join(", ")}`);
    }, 120_000);

    it("listRun shows the four networks with their subnets and the four nodes with their addresses", async () => {
      const listed = await driver.listRun(runId);
      expect(listed.networks.map((n) => [n.name, n.kind, n.subnet])).toEqual(
        [...networks].sort((a, b) => a.name.localeCompare(b.name)).map((n) => [n.name, n.kind, n.subnet]),
      );
      expect(listed.nodes.map((n) => n.name)).toEqual(["client", "lb", "server-a", "server-b"]);
      for (const spec of nodes) {
        const state = listed.nodes.find((n) => n.name === spec.name)!;
        expect(state.status).toBe("running");
        expect(state.addresses).toEqual(Object.fromEntries(spec.addresses.map((a) => [a.network, a.ipv4])));
      }
    });

    it("exec returns exit code, stdout and stderr separately", async () => {
      const result = await driver.exec(runId, "server-a", ["sh", "-c", 'echo "out $QMT_NODE"; echo err >&2; exit 3']);
      expect(result).toEqual({ exitCode: 3, stdout: "out server-a\n", stderr: "err\n" });
    });

    it("logs returns the container's output", async () => {
      // The echo server prints once it is bound; wait for that line with a deadline, no sleep.
      const deadline = performance.now() + 10_000;
      let logs = await driver.logs(runId, "client", { tail: 10 });
      while (logs === "" && performance.now() < deadline) logs = await driver.logs(runId, "client", { tail: 10 });
      expect(logs).toBe("echo server listening\n");
    });

    it("a UDP probe reaches a peer on a shared network (positive control for the isolation tests)", async () => {
      expect((await udpProbe("client", ip("public", 2))).stdout).toMatch(/^echo /);
      expect((await udpProbe("lb", ip("mgmt", 10))).stdout).toMatch(/^echo /);
      expect((await udpProbe("server-a", ip("direct", 11))).stdout).toMatch(/^echo /);
    });

    it.skipIf(!netemAvailable)("(needs sch_netem in the kernel) impair adds netem delay on the node's interface for that network, heal removes it", async () => {
      const target = { node: "lb", network: "public", direction: "egress" } as const;
      const applied = await driver.impair(runId, target, { delayMs: 150 });
      expect(applied.mechanism).toBe("netem");
      expect(applied.detail[0]).toMatch(/^tc qdisc add dev eth\d+ root handle 5171: netem .*delay 150ms/);
      const rttMs = (out: string): number => Number(/^echo (\S+)/.exec(out)?.[1] ?? NaN);
      const impaired = await udpProbe("client", ip("public", 2));
      expect(rttMs(impaired.stdout)).toBeGreaterThanOrEqual(150);
      const otherNetwork = await udpProbe("server-a", ip("private", 2));
      expect(rttMs(otherNetwork.stdout)).toBeLessThan(150);
      await driver.heal(runId, target);
      expect(rttMs((await udpProbe("client", ip("public", 2))).stdout)).toBeLessThan(150);
      await driver.heal(runId, target);
    });

    it.skipIf(netemAvailable)("(kernel without sch_netem) told to use netem only, impair finds the interface, then rejects with NETEM_UNAVAILABLE, tc's error as the cause", async () => {
      const netemOnly = new DockerDriver({ docker: engine, impairer: "netem" });
      const target = { node: "lb", network: "public", direction: "egress" } as const;
      const failure = await netemOnly.impair(runId, target, { delayMs: 20 }).then(() => undefined, (error: unknown) => error);
      expect(failure).toMatchObject({ name: "DriverError", code: "NETEM_UNAVAILABLE", message: expect.stringContaining("this kernel has no sch_netem") });
      expect(String((failure as { cause?: Error }).cause?.message)).toMatch(/netem on lb\/eth\d+: .*qdisc kind is unknown/);
      const qdiscs = await driver.exec(runId, "lb", ["tc", "qdisc", "show"]);
      expect(qdiscs.stdout).not.toContain("netem");
    });

    it.skipIf(netemAvailable)("(kernel without sch_netem) impair falls back to the userspace impairer and says so; heal removes its steering", async () => {
      const auto = new DockerDriver({ docker: engine });
      const target = { node: "lb", network: "public", direction: "egress" } as const;
      const applied = await auto.impair(runId, target, { delayMs: 150 });
      expect(applied.mechanism).toBe("userspace");
      expect(applied.detail[0]).toMatch(/^userspace impairer \(kernel lacks sch_netem\)/);
      const rttMs = (out: string): number => Number(/^echo (\S+)/.exec(out)?.[1] ?? NaN);
      const impaired = await udpProbe("client", ip("public", 2));
      expect(rttMs(impaired.stdout)).toBeGreaterThanOrEqual(150);
      await auto.heal(runId, target);
      const healed = await udpProbe("client", ip("public", 2));
      expect(rttMs(healed.stdout)).toBeLessThan(150);
      expect((await auto.listRun(runId)).nodes.find((n) => n.name === "lb")?.impairments).toEqual([]);
    });

    it("impair on a node started without NET_ADMIN is a NOTHING_TO_IMPAIR DriverError (netem)", async () => {
      await expect(new DockerDriver({ docker: engine, impairer: "netem" }).impair(runId, { node: "client", network: "public", direction: "egress" }, { delayMs: 10 })).rejects.toMatchObject({
        name: "DriverError",
        code: "NOTHING_TO_IMPAIR",
      });
    });

    it("a node only on data networks cannot reach any mgmt address", async () => {
      for (const target of [ip("mgmt", 2), ip("mgmt", 10)]) {
        const result = await udpProbe("client", target);
        expect(result.exitCode, `client → ${target}: ${result.stdout}`).toBe(1);
      }
    });

    it("a node cannot reach a data network it is not on (client on public → server-a on private and direct)", async () => {
      for (const target of [ip("private", 10), ip("direct", 10)]) {
        const result = await udpProbe("client", target);
        expect(result.exitCode, `client → ${target}: ${result.stdout}`).toBe(1);
      }
    });

    it("exec on an unknown node is a NODE_NOT_FOUND DriverError", async () => {
      await expect(driver.exec(runId, "nobody", ["true"])).rejects.toMatchObject({ name: "DriverError", code: "NODE_NOT_FOUND" });
    });

    it("removeRun leaves zero containers, networks and volumes with the run's label, and is idempotent", async () => {
      const { removed } = await driver.removeRun(runId);
      // 4 networks, 4 nodes, and (kernel without sch_netem) lb's impairer sidecar, still running after heal.
      expect(removed).toBe(netemAvailable ? 8 : 9);
      expect(await labelledObjects(runId)).toBe(0);
      expect(await driver.removeRun(runId)).toEqual({ removed: 0 });
    });
  });

  it("20 create/remove cycles leave nothing behind", async () => {
    const driver = new DockerDriver({ docker: engine });
    const { networks, ip } = layout();
    for (let cycle = 0; cycle < 20; cycle++) {
      const runId = newRunId();
      runIds.push(runId);
      await driver.createNetwork(runId, networks[0]!);
      await driver.startNode(runId, {
        name: "n", role: "generic", image: baseImage, command: ["sleep", "60"], env: {}, addresses: [{ network: "public", ipv4: ip("public", 3) }], replicas: 1,
      });
      expect((await driver.removeRun(runId)).removed).toBe(2);
      expect(await labelledObjects(runId)).toBe(0);
    }
  }, 180_000);

  for (const abortAt of ["created", "connected", "started"] as const) {
    it(`a startNode aborted at "${abortAt}" rejects, and removeRun afterwards leaves nothing`, async () => {
      const runId = newRunId();
      runIds.push(runId);
      const controller = new AbortController();
      const driver = new DockerDriver({ docker: engine, onStartStep: (_node, step) => step === abortAt && controller.abort(new Error(`aborted at ${step}`)) });
      const { networks, ip } = layout();
      await driver.createNetwork(runId, networks[0]!);
      await driver.createNetwork(runId, networks[3]!);
      const started = driver.startNode(
        runId,
        { name: "n", role: "generic", image: baseImage, command: ["sleep", "60"], env: {},
          addresses: [{ network: "public", ipv4: ip("public", 4) }, { network: "mgmt", ipv4: ip("mgmt", 4) }], replicas: 1 },
        controller.signal,
      );
      await expect(started).rejects.toThrow(`aborted at ${abortAt}`);
      expect((await engine.listContainers({ all: true, filters: { label: [`${LABEL_RUN}=${runId}`] } })).length).toBe(0);
      await driver.removeRun(runId);
      expect(await labelledObjects(runId)).toBe(0);
    });
  }

  it("a node whose command cannot start makes startNode reject with the engine's reason, and removes the container", async () => {
    const runId = newRunId();
    runIds.push(runId);
    const driver = new DockerDriver({ docker: engine });
    const { networks, ip } = layout();
    await driver.createNetwork(runId, networks[0]!);
    await expect(
      driver.startNode(runId, {
        name: "n", role: "generic", image: baseImage, command: ["/no/such/binary"], env: {}, addresses: [{ network: "public", ipv4: ip("public", 5) }], replicas: 1,
      }),
    ).rejects.toMatchObject({ name: "DriverError", code: "DRIVER_FAILED", message: expect.stringContaining("/no/such/binary") });
    expect((await engine.listContainers({ all: true, filters: { label: [`${LABEL_RUN}=${runId}`] } })).length).toBe(0);
    await driver.removeRun(runId);
  });
});
