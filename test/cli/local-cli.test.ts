/**
 * The same CLI commands as on Docker, on the local driver (processes on 127.0.0.0/8): `up` of
 * lb-bypass in the foreground, then status, exec, logs, impair, heal and down from other CLI
 * processes, as a user types them in a second terminal; Ctrl-C ends the foreground `up`, which
 * takes the run down. A second run with a UDP echo node shows `impair`/`heal` from another process
 * reaching the relay the foreground process runs.
 */
import dgram from "node:dgram";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { LocalDriver } from "../../orchestrator/drivers/local.ts";
import { loadTopology } from "../../orchestrator/topology/load.ts";
import { metricSum, scrape } from "../roles/role-processes.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const cliPath = path.join(repoRoot, "orchestrator/cli.ts");
const dirs: string[] = [];
const runs: { stateDir: string; runId: string }[] = [];
afterAll(async () => {
  for (const { stateDir, runId } of runs) await new LocalDriver({ stateRoot: path.join(stateDir, ".cache", "runs") }).removeRun(runId);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function workDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "qmt-cli-local-"));
  dirs.push(dir);
  return dir;
}

let upAtMs = 0;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Starts `up --driver local` in the foreground; resolves with the run id once it says it is up. */
async function foregroundUp(cwd: string, topologyFile: string): Promise<{ child: ResultPromise; runId: string }> {
  const child = execa(process.execPath, [cliPath, "up", topologyFile, "--driver", "local"], { cwd, reject: false, timeout: 120_000 });
  let stdout = "";
  const runId = await new Promise<string>((resolve, reject) => {
    // (upAtMs: when the run said it is up, for the time-to-first-migration number)
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const id = /run (qmt-[a-z0-9-]+-[0-9a-f]{6}) is up \(local\)/.exec(stdout)?.[1];
      if (id !== undefined) {
        upAtMs = performance.now();
        resolve(id);
      }
    });
    void child.then((result) => reject(new Error(`up ended early (exit ${result.exitCode}):\n${String(result.stderr)}`)));
  });
  runs.push({ stateDir: cwd, runId });
  return { child, runId };
}

async function rttMs(address: string, port: number, timeoutMs: number): Promise<number> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  try {
    return await new Promise<number>((resolve, reject) => {
      const start = performance.now();
      const timer = setTimeout(() => reject(new Error(`no echo from ${address}:${port} within ${timeoutMs} ms`)), timeoutMs);
      socket.once("message", () => {
        clearTimeout(timer);
        resolve(performance.now() - start);
      });
      socket.send(Buffer.from("ping"), port, address);
    });
  } finally {
    socket.close();
  }
}

/** Polls `probe` until it returns true, with a deadline. */
async function until(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("testbed CLI on the local driver", () => {
  // The other shipped topologies run the same real roles: each client's connections go through the
  // LB's VIP and move to a backend's preferred address (geo: through its impaired links).
  it.each(["failover", "geo", "renumber"])("%s: up runs the real roles, every client migrates, Ctrl-C takes the run down", async (name) => {
    const cwd = workDir();
    const topologyFile = path.join(repoRoot, `topologies/${name}.yaml`);
    const topology = await loadTopology(topologyFile);
    const { child, runId } = await foregroundUp(cwd, topologyFile);
    const rolesDir = path.join(cwd, ".cache", "runs", runId, "roles");
    const management = (node: string) => (JSON.parse(readFileSync(path.join(rolesDir, `${node}.json`), "utf8")) as { management: string }).management;
    const clients = topology.nodes.filter((n) => n.role === "client").map((n) => n.name);
    expect(clients.length).toBeGreaterThan(0);
    for (const client of clients) {
      await until(async () => metricSum(await scrape(management(client)), "qmt_migrations_total", { result: "migrated" }) > 0, 30_000, `${client} to migrate`);
      expect(metricSum(await scrape(management(client)), "qmt_migrations_total", { result: "fell_back" })).toBe(0);
    }
    child.kill("SIGINT");
    const ended = await child;
    expect(ended.exitCode, String(ended.stderr)).toBe(0);
    expect(existsSync(rolesDir)).toBe(false);
  }, 90_000);

  it("lb-bypass: up in the foreground; status --json, exec, logs, impair, heal from other processes; Ctrl-C takes the run down", async () => {
    const cwd = workDir();
    const topologyFile = path.join(repoRoot, "topologies/lb-bypass.yaml");
    const cli = (...args: string[]) => execa(process.execPath, [cliPath, ...args], { cwd, reject: false, timeout: 60_000 });
    const { child, runId } = await foregroundUp(cwd, topologyFile);

    const shown = await cli("status", "--json");
    expect(shown.exitCode, shown.stderr).toBe(0);
    expect(shown.stderr).toContain("driver: local (the current run was started with it)");
    const status = JSON.parse(shown.stdout) as { runId: string; networks: { name: string; subnet: string }[]; nodes: { name: string; id: string; status: string; addresses: Record<string, string> }[] };
    expect(status.runId).toBe(runId);
    expect(status.networks.map((n) => n.name)).toEqual(["public", "private", "direct", "mgmt"]);
    for (const n of status.networks) expect(n.subnet).toMatch(/^127\.\d+\.\d+\.0\/24$/);
    const topology = await loadTopology(topologyFile);
    expect(status.nodes.map((n) => n.name)).toEqual(topology.nodes.map((n) => n.name));
    for (const node of topology.nodes) {
      const listed = status.nodes.find((n) => n.name === node.name)!;
      expect(listed.status).toBe("running");
      // The topology's host octet on the network's loopback twin.
      for (const a of node.addresses) expect(listed.addresses[a.network]).toBe(`${status.networks.find((n) => n.name === a.network)!.subnet.split(".").slice(0, 3).join(".")}.${a.ipv4!.split(".")[3]}`);
    }

    const exec = await cli("exec", "client1", "--", "sh", "-c", 'echo "$QMT_NODE $QMT_ROLE $QMT_TARGET"');
    expect(exec.exitCode, exec.stderr).toBe(0);
    expect(exec.stdout).toBe("client1 client 203.0.113.10:443");
    await until(async () => /"role":"lb","event":"listening"/.test((await cli("logs", "lb")).stdout), 10_000, "the lb's listening line");

    // The real roles, with the configs `up` wrote: the client's handshakes go through the LB's VIP
    // (its first Initials are routed by hash, later packets by the QUIC-LB CID), then each
    // connection moves to its backend's preferred address on the direct network.
    const rolesDir = path.join(cwd, ".cache", "runs", runId, "roles");
    const management = (node: string) => (JSON.parse(readFileSync(path.join(rolesDir, `${node}.json`), "utf8")) as { management: string }).management;
    const metric = async (node: string, name: string, labels: Record<string, string> = {}) => metricSum(await scrape(management(node)), name, labels);
    // /metrics answers on the mgmt address `status` prints (the local driver relays UDP only; HTTP binds there).
    for (const node of ["lb", "backend1", "client1"]) expect(management(node)).toBe(`${status.nodes.find((n) => n.name === node)!.addresses.mgmt}:9100`);
    await until(async () => (await metric("client1", "qmt_migrations_total", { result: "migrated" })) > 0, 30_000, "client1 to migrate to a preferred address");
    const migratedAfterUpMs = performance.now() - upAtMs;
    expect(await metric("client1", "qmt_handshakes_total", { result: "completed" })).toBeGreaterThan(0);
    expect(await metric("lb", "qmt_lb_packets_total", { route: "hash" })).toBeGreaterThan(0);
    expect(await metric("lb", "qmt_lb_reply_packets_total")).toBeGreaterThan(0);
    const backendMigrations = (await metric("backend1", "qmt_migrations_total", { result: "migrated" })) + (await metric("backend2", "qmt_migrations_total", { result: "migrated" }));
    expect(backendMigrations).toBeGreaterThan(0);
    // The token and keys are the run's own, and owner-only.
    expect(statSync(path.join(rolesDir, "server.key")).mode & 0o077).toBe(0);
    console.log(`lb-bypass on the local driver: first migration ${Math.round(migratedAfterUpMs)} ms after "is up"`);

    // backend1 binds its direct socket at start: the impairment lands on a relay (or, if the
    // driver's poller has not seen the socket yet, waits for it); either way `impair` succeeds.
    const impaired = await cli("impair", "backend1", "direct", "--delay", "30ms");
    expect(impaired.exitCode, impaired.stderr).toBe(0);
    expect(impaired.stdout).toBe("backend1/direct both: delay 30ms (userspace)");
    expect((await cli("heal", "backend1", "direct")).exitCode).toBe(0);
    const pids = status.nodes.map((n) => Number(n.id));

    child.kill("SIGINT");
    const ended = await child;
    expect(ended.exitCode, String(ended.stderr)).toBe(0);
    expect(String(ended.stderr)).toMatch(new RegExp(`run ${runId} removed \\(\\d+ objects\\)`));
    expect(existsSync(rolesDir)).toBe(false);
    for (const pid of pids) expect(pidAlive(pid), `node pid ${pid}`).toBe(false);
    expect((await cli("status", "--run", runId, "--json", "--driver", "local")).stdout).toContain('"nodes": []');
    const after = await cli("down", "--run", runId, "--driver", "local");
    expect(after.exitCode, after.stderr).toBe(0);
    expect(after.stdout).toBe(`run ${runId} removed (0 objects)`);
  }, 120_000);

  it("impair and heal from another CLI process reach the relay the foreground up runs", async () => {
    const cwd = workDir();
    const topologyFile = path.join(cwd, "echo.yaml");
    const echoNode = path.join(repoRoot, "test/drivers/fixtures/udp-echo-node.ts");
    writeFileSync(topologyFile, `name: echo
networks:
  - { name: public, kind: public, subnet: 192.0.2.0/24 }
nodes:
  - { name: a, role: server, command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(echoNode)}], addresses: [{ network: public, ipv4: 192.0.2.10 }] }
`);
    const cli = (...args: string[]) => execa(process.execPath, [cliPath, ...args], { cwd, reject: false, timeout: 60_000 });
    const { child, runId } = await foregroundUp(cwd, topologyFile);
    const status = JSON.parse((await cli("status", "--json")).stdout) as { nodes: { addresses: Record<string, string> }[] };
    const address = status.nodes[0]!.addresses["public"]!;
    await until(async () => (await rttMs(address, 4433, 300)) < 20, 10_000, "the relay to pass echoes unimpaired");

    const impaired = await cli("impair", "a", "public", "--delay", "40ms", "--direction", "egress");
    expect(impaired.exitCode, impaired.stderr).toBe(0);
    expect(impaired.stderr).toMatch(/in process \d+: applies/);
    await until(async () => (await rttMs(address, 4433, 1_000)) >= 40, 5_000, "the foreground relay to apply 40 ms");
    // Every echo is delayed 40 ms, so even the fastest of five is; the fastest is also the one
    // least disturbed by other work on this machine (three processes take part in a round trip).
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) delays.push(await rttMs(address, 4433, 1_000));
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(40);
    expect(Math.min(...delays)).toBeLessThan(40 + 20);

    expect((await cli("heal", "a", "public", "--direction", "egress")).exitCode).toBe(0);
    await until(async () => (await rttMs(address, 4433, 1_000)) < 20, 5_000, "the foreground relay to heal");

    child.kill("SIGINT");
    expect((await child).exitCode).toBe(0);
    expect(await new LocalDriver({ stateRoot: path.join(cwd, ".cache", "runs") }).listRun(runId)).toEqual({ networks: [], nodes: [] });
  }, 120_000);
});
