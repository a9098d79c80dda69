/**
 * The testbed CLI end to end on a real Docker engine with the default topology (lb-bypass):
 * `up` → `status --json` → `down`, Ctrl-C during `up`, and 20 up/down cycles. The driver-level
 * checks (isolation of mgmt from data networks, exec, logs, aborted starts) are in
 * docker-driver.test.ts; this file checks what a user runs. Every run id is removed by label in
 * afterAll, whatever happened.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerDriver } from "../../orchestrator/drivers/docker.ts";
import { LABEL_RUN } from "../../orchestrator/drivers/driver.ts";
import { buildImages } from "../../orchestrator/images/build.ts";
import { runCommand } from "../../orchestrator/images/command.ts";
import { down, newRunId, up } from "../../orchestrator/run.ts";
import { loadTopology } from "../../orchestrator/topology/load.ts";
import { metricSum, waitFor } from "../roles/role-processes.ts";
import { lockDockerEngine } from "./engine-lock.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const cliPath = path.join(repoRoot, "orchestrator/cli.ts");
const topologyFile = path.join(repoRoot, "topologies/lb-bypass.yaml");
const engine = new Docker();
const probe = await new DockerDriver({ docker: engine }).probe();
const debootstrapPresent = (await runCommand(["debootstrap", "--version"]).catch(() => ({ exitCode: -1 }))).exitCode === 0;
// sch_netem in this kernel: without it, lb-bypass's impaired link (client1/public) gets the docker
// driver's userspace impairer, one sidecar container more.
const netemAvailable = (await runCommand(["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).catch(() => ({ exitCode: -1 }))).exitCode === 0;
const sidecars = netemAvailable ? 0 : 1;
const skipReason = !probe.ok
  ? `no docker engine: ${probe.reason}`
  : !debootstrapPresent && process.env.BASE_IMAGE === undefined
    ? "cannot build images: no debootstrap and no BASE_IMAGE"
    : undefined;

async function labelled(runId: string): Promise<{ containers: number; networks: number; volumes: number }> {
  const filters = { label: [`${LABEL_RUN}=${runId}`] };
  const [containers, networks, volumes] = await Promise.all([engine.listContainers({ all: true, filters }), engine.listNetworks({ filters }), engine.listVolumes({ filters })]);
  return { containers: containers.length, networks: networks.length, volumes: (volumes.Volumes ?? []).length };
}

const NOTHING = { containers: 0, networks: 0, volumes: 0 };

describe.skipIf(skipReason !== undefined)(`testbed CLI on docker, lb-bypass${skipReason !== undefined ? ` (skipped: ${skipReason})` : ""}`, () => {
  const runIds: string[] = [];
  const cwd = mkdtempSync(path.join(tmpdir(), "qmt-cli-docker-"));
  let lock: { release: () => Promise<void> } | undefined;
  const cli = (...args: string[]) => execa(process.execPath, [cliPath, ...args], { cwd, reject: false, timeout: 300_000 });

  beforeAll(async () => {
    lock = await lockDockerEngine(600_000);
    // Warm images, so the tests time up/down and not a first build (which `up` would also do).
    await buildImages({ roles: ["client", "generic", "lb", "server"], baseImage: process.env.BASE_IMAGE || undefined });
  }, 900_000);

  afterAll(async () => {
    const driver = new DockerDriver({ docker: engine });
    for (const runId of runIds) await driver.removeRun(runId);
    rmSync(cwd, { recursive: true, force: true });
    await lock?.release();
  });

  it("up creates the four networks and the six nodes; status --json lists them with their addresses; down leaves zero containers, networks and volumes with the run's label", async () => {
    const started = await cli("up", topologyFile, "--driver", "docker");
    const runId = /run (qmt-lb-bypass-[0-9a-f]{6}) is up \(docker\)/.exec(started.stdout)?.[1];
    if (runId !== undefined) runIds.push(runId);
    expect(started.exitCode, started.stderr).toBe(0);
    expect(runId).toBeDefined();

    const shown = await cli("status", "--json");
    expect(shown.exitCode, shown.stderr).toBe(0);
    const status = JSON.parse(shown.stdout) as { runId: string; networks: { name: string; kind: string; subnet: string }[]; nodes: { name: string; status: string; addresses: Record<string, string> }[] };
    expect(status.runId).toBe(runId);
    expect(status.networks.map((n) => [n.name, n.kind, n.subnet])).toEqual([
      ["direct", "direct", "198.51.100.0/24"],
      ["mgmt", "mgmt", "172.20.0.0/24"],
      ["private", "private", "10.20.0.0/24"],
      ["public", "public", "203.0.113.0/24"],
    ]);
    const topology = await loadTopology(topologyFile);
    expect(status.nodes.map((n) => n.name)).toEqual(topology.nodes.map((n) => n.name).sort());
    for (const node of topology.nodes) {
      const listed = status.nodes.find((n) => n.name === node.name)!;
      expect(listed.status).toBe("running");
      expect(listed.addresses).toEqual(Object.fromEntries(node.addresses.map((a) => [a.network, a.ipv4])));
    }
    expect(await labelled(runId!)).toEqual({ containers: 6 + sidecars, networks: 4, volumes: 0 });

    // The real roles run with the configs `up` copied in: client1's handshakes reach the LB's VIP on
    // public, the LB tunnels them to a backend on private, and each connection moves to its
    // backend's direct address. Read from each role's /metrics on its mgmt address, fetched inside
    // the node itself (`testbed exec`), as a user would without a route to mgmt.
    const mgmtAddress = (name: string) => topology.nodes.find((n) => n.name === name)!.addresses.find((a) => a.network === "mgmt")!.ipv4!;
    const metrics = async (name: string): Promise<string> => {
      const fetched = await cli("exec", name, "--", "node", "-e", `fetch("http://${mgmtAddress(name)}:9100/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))`);
      expect(fetched.exitCode, fetched.stderr).toBe(0);
      return fetched.stdout;
    };
    const t0 = performance.now();
    await waitFor("client1 to migrate to a backend's preferred address", async () => metricSum(await metrics("client1"), "qmt_migrations_total", { result: "migrated" }) > 0, 60_000, 500);
    console.log(`lb-bypass on docker: first migration ${Math.round(performance.now() - t0)} ms after "is up" was read`);
    expect(metricSum(await metrics("client1"), "qmt_handshakes_total", { result: "completed" })).toBeGreaterThan(0);
    expect(metricSum(await metrics("lb"), "qmt_lb_packets_total", { route: "hash" })).toBeGreaterThan(0);
    const backendMoves = metricSum(await metrics("backend1"), "qmt_migrations_total", { result: "migrated" }) + metricSum(await metrics("backend2"), "qmt_migrations_total", { result: "migrated" });
    expect(backendMoves).toBeGreaterThan(0);
    expect(started.stdout).toContain(`impaired client1/public both`);
    if (!netemAvailable) {
      expect(started.stdout).toContain("(userspace)");
      const human = await cli("status");
      expect(human.stdout).toMatch(/impaired public \(eth\d+\): userspace impairer \(kernel lacks sch_netem\)/);
    }

    const removed = await cli("down");
    expect(removed.exitCode, removed.stderr).toBe(0);
    expect(removed.stdout).toBe(`run ${runId} removed (${10 + sidecars} objects)`);
    expect(await labelled(runId!)).toEqual(NOTHING);
  }, 300_000);

  it("Ctrl-C (SIGINT) during up: up removes what it made and exits 1; down afterwards leaves nothing", async () => {
    const child: ResultPromise = execa(process.execPath, [cliPath, "up", topologyFile, "--driver", "docker"], { cwd, reject: false, timeout: 300_000 });
    let stderr = "";
    let runId: string | undefined;
    // Interrupt once the second node is being started: networks and one container exist by then.
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        runId ??= /run (qmt-lb-bypass-[0-9a-f]{6}) on docker/.exec(stderr)?.[1];
        if (stderr.includes("node backend1 (server)")) resolve();
      });
      void child.then(() => reject(new Error(`up ended before it was interrupted:\n${stderr}`)));
    });
    expect(runId).toBeDefined();
    runIds.push(runId!);
    child.kill("SIGINT");
    const result = await child;
    expect(result.exitCode, String(result.stderr)).toBe(1);
    expect(String(result.stderr)).toContain(`up failed, removing run ${runId}`);
    expect(await labelled(runId!)).toEqual(NOTHING);
    const after = await cli("down", "--run", runId!);
    expect(after.exitCode, after.stderr).toBe(0);
    expect(await labelled(runId!)).toEqual(NOTHING);
  }, 300_000);

  it("images that cannot be built: up with --driver docker exits 1 saying what to run; up without --driver falls back to local and says why", async () => {
    // No registry is reachable, so a BASE_IMAGE nobody has fails to build at once.
    const env = { BASE_IMAGE: "qmt-test/no-such-base:0" };
    const refused = await execa(process.execPath, [cliPath, "up", topologyFile, "--driver", "docker"], { cwd, env, reject: false, timeout: 120_000 });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/up: the docker images qmt\/client:latest, qmt\/generic:latest, qmt\/lb:latest, qmt\/server:latest could not be built \(IMAGE_BUILD_FAILED: .*\)\. Install debootstrap/);
    expect(refused.stderr).toContain("npm run testbed -- images");

    const child = execa(process.execPath, [cliPath, "up", topologyFile], { cwd, env, reject: false, timeout: 120_000 });
    let stdout = "";
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        if (/is up \(local\)/.test(stdout)) resolve();
      });
      void child.then((result) => reject(new Error(`up ended early:\n${String(result.stderr)}`)));
    });
    child.kill("SIGINT");
    const result = await child;
    expect(result.exitCode).toBe(0);
    expect(String(result.stderr)).toContain("driver: local (docker images cannot be built here; --driver docker makes this an error)");
  }, 300_000);

  it("20 up/down cycles of lb-bypass leave nothing (run.ts up/down, what the CLI runs)", async () => {
    const topology = await loadTopology(topologyFile);
    const driver = new DockerDriver({ docker: engine });
    const cycleMs: number[] = [];
    for (let cycle = 0; cycle < 20; cycle++) {
      const t0 = performance.now();
      const runId = newRunId(topology.name);
      runIds.push(runId);
      const result = await up(topology, driver, { runId, stateDir: cwd });
      expect(result.nodes).toHaveLength(6);
      expect((await down(driver, runId, { stateDir: cwd })).removed).toBe(10 + sidecars);
      expect(await labelled(runId)).toEqual(NOTHING);
      cycleMs.push(performance.now() - t0);
    }
    console.log(`lb-bypass up+down cycle, ms: ${cycleMs.map((m) => m.toFixed(0)).join(", ")}`);
  }, 600_000);
});
