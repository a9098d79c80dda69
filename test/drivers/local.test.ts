/**
 * The local driver: the shared compliance suite, plus what only a process driver can show (pids
 * gone after removeRun, crash recovery from the state file, the relay really delaying traffic).
 */
import dgram from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LocalDriver } from "../../orchestrator/drivers/local.ts";
import { runSecondOctet } from "../../orchestrator/drivers/local-addressing.ts";
import { isOurProcess, readProcStat } from "../../orchestrator/drivers/process-identity.ts";
import type { NodeSpec } from "../../orchestrator/topology/model.ts";
import { describeDriverCompliance } from "./driver-compliance.ts";

const stateRoot = mkdtempSync(path.join(tmpdir(), "qmt-local-driver-"));
afterAll(async () => {
  // Whatever a failed test left running under this state root, then the state root itself.
  await new LocalDriver({ stateRoot, stopTimeoutMs: 2_000 }).removeRun(undefined);
  rmSync(stateRoot, { recursive: true, force: true });
});
const echoNode = [process.execPath, new URL("./fixtures/udp-echo-node.ts", import.meta.url).pathname];

describeDriverCompliance("local", async () => new LocalDriver({ stateRoot, stopTimeoutMs: 2_000, relayPollMs: 50 }), { command: echoNode });

function node(name: string, ipv4?: string, command = echoNode): NodeSpec {
  return { name, role: "server", command, env: {}, addresses: [{ network: "public", ...(ipv4 ? { ipv4 } : {}) }], replicas: 1 };
}

async function rttMs(address: string, port: number, timeoutMs = 3_000): Promise<number> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  try {
    return await new Promise<number>((resolve, reject) => {
      const start = performance.now();
      const timer = setTimeout(() => reject(new Error(`no echo from ${address}:${port}`)), timeoutMs);
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

async function eventually<T>(probe: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (error) {
      if (performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe("local driver specifics", () => {
  it("maps the documentation subnet to its loopback twin, deterministically from the run id", async () => {
    await using driver = new LocalDriver({ stateRoot });
    const runId = "qmt-addr-test";
    const network = await driver.createNetwork(runId, { name: "public", kind: "public", subnet: "192.0.2.0/24" });
    const octet = runSecondOctet(runId);
    expect(network.subnet).toBe(`127.${octet}.0.0/24`);
    const second = await driver.createNetwork(runId, { name: "private", kind: "private", subnet: "10.0.0.0/24" });
    expect(second.subnet).toBe(`127.${octet}.1.0/24`);
    const a = await driver.startNode(runId, node("a", "192.0.2.10"));
    expect(a.addresses).toEqual({ public: `127.${octet}.0.10` });
    const env = await driver.exec(runId, "a", ["sh", "-c", "echo $QMT_ADDR_PUBLIC $QMT_BIND_ADDR_PUBLIC $QMT_ROLE"]);
    expect(env.stdout).toBe(`127.${octet}.0.10 127.${octet}.128.10 server\n`);
    await driver.removeRun(runId);
  });

  it("node processes do not outlive removeRun, also when it runs in another driver instance (after a crash)", async () => {
    const runId = "qmt-crash-test";
    const first = new LocalDriver({ stateRoot });
    await first.createNetwork(runId, { name: "public", kind: "public", subnet: "192.0.2.0/24" });
    // A node that ignores SIGTERM: removeRun must escalate to SIGKILL.
    const stubborn = await first.startNode(runId, node("stubborn", undefined, ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"]));
    const pid = Number(stubborn.id);
    const startTicks = readProcStat(pid)!.startTicks;
    expect(isOurProcess(pid, startTicks)).toBe(true);
    await first[Symbol.asyncDispose](); // "crash": this instance forgets everything in memory
    const second = new LocalDriver({ stateRoot, stopTimeoutMs: 300 });
    expect((await second.listRun(runId)).nodes.map((n) => n.status)).toEqual(["running"]);
    const { removed } = await second.removeRun(runId);
    expect(removed).toBe(2);
    expect(isOurProcess(pid, startTicks)).toBe(false);
  });

  it("never signals a pid whose start time is not the recorded one", () => {
    const self = readProcStat(process.pid)!;
    expect(isOurProcess(process.pid, self.startTicks)).toBe(true);
    expect(isOurProcess(process.pid, String(Number(self.startTicks) + 1))).toBe(false);
  });

  it("steers traffic through a relay on the published address: impair adds the delay, heal removes it", async () => {
    await using driver = new LocalDriver({ stateRoot, relayPollMs: 50 });
    const runId = "qmt-relay-test";
    await driver.createNetwork(runId, { name: "public", kind: "public", subnet: "192.0.2.0/24" });
    const a = await driver.startNode(runId, node("a", "192.0.2.10"));
    const published = a.addresses["public"]!;
    const baseline = await eventually(() => rttMs(published, 4433, 500), 10_000);
    expect(baseline).toBeLessThan(20);
    const applied = await driver.impair(runId, { node: "a", network: "public", direction: "egress" }, { delayMs: 40 });
    expect(applied.mechanism).toBe("userspace");
    expect(applied.detail[0]).toContain(`${published}:4433 → `);
    const impaired = await rttMs(published, 4433);
    expect(impaired).toBeGreaterThanOrEqual(40);
    expect(impaired).toBeLessThan(40 + 20);
    await driver.heal(runId, { node: "a", network: "public", direction: "egress" });
    expect(await rttMs(published, 4433)).toBeLessThan(20);
    await driver.removeRun(runId);
  });

  it("impair before the node has bound a socket is deferred: the relay opens with it when the node binds", async () => {
    await using driver = new LocalDriver({ stateRoot, relayPollMs: 50 });
    const runId = `qmt-deferred-${process.pid}`;
    try {
      await driver.createNetwork(runId, { name: "public", kind: "public", subnet: "192.0.2.0/24" });
      const late = { ...node("a", "192.0.2.10"), env: { QMT_ECHO_BIND_ON_SIGUSR1: "1" } };
      const a = await driver.startNode(runId, late);
      await eventually(async () => {
        if (!(await driver.logs(runId, "a")).includes("waiting for SIGUSR1")) throw new Error("node not waiting yet");
      }, 10_000);
      const applied = await driver.impair(runId, { node: "a", network: "public", direction: "egress" }, { delayMs: 40 });
      expect(applied.mechanism).toBe("userspace");
      expect(applied.detail[0]).toMatch(/^deferred: no UDP socket bound/);
      process.kill(Number(a.id), "SIGUSR1");
      await eventually(() => rttMs(a.addresses["public"]!, 4433, 500), 10_000); // the relay is open
      // The fastest of five echoes: every one is delayed, and the fastest is the least disturbed by load.
      const delays: number[] = [];
      for (let i = 0; i < 5; i++) delays.push(await rttMs(a.addresses["public"]!, 4433));
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(40);
      expect(Math.min(...delays)).toBeLessThan(40 + 20);
    } finally {
      await driver.removeRun(runId);
    }
  });
});
