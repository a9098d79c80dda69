/**
 * The Docker driver's userspace impairer (orchestrator/impairments/impairer-agent.ts: a sidecar in
 * the node's network namespace, nftables steering, a seeded relay), measured between two real
 * containers: node `echo` runs a UDP echo, node `prober` sends 2,000 paced datagrams to it and
 * times the round trips on its own clock. `echo`'s egress is impaired with 50 ms ± 5 ms (normal)
 * and 2 % loss; the rise of the median round trip over the relay with no knobs set (pass-through)
 * must be within 0.5 ms of 50 ms, and the loss inside the 99 % binomial interval. The relay's own
 * cost (pass-through over no relay: two more hops through nftables and a userspace socket) is a
 * separate figure, printed and bounded (< 2 ms): netem has no such hop, so a user comparing the two
 * mechanisms needs it. The driver is told to use the userspace
 * impairer, so this runs on kernels with sch_netem too. In the `timing` project (vitest.config.ts):
 * it measures sub-millisecond delays, so it runs alone, after the main suite.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerDriver, LABEL_SIDECAR } from "../../orchestrator/drivers/docker.ts";
import { buildImages } from "../../orchestrator/images/build.ts";
import { runCommand } from "../../orchestrator/images/command.ts";
import type { NodeSpec } from "../../orchestrator/topology/model.ts";
import { lockDockerEngine } from "../docker/engine-lock.ts";
import { binomialInterval99 } from "./binomial.ts";

const probe = await new DockerDriver().probe();
const debootstrapPresent = (await runCommand(["debootstrap", "--version"]).catch(() => ({ exitCode: -1 }))).exitCode === 0;
const skip = !probe.ok
  ? `no docker engine: ${probe.reason}`
  : !debootstrapPresent && process.env.BASE_IMAGE === undefined
    ? "cannot build the images: no debootstrap and no BASE_IMAGE"
    : undefined;

const scopeLabels = { "io.qmt.test-scope": `userspace-impairer-${randomBytes(4).toString("hex")}` };
const runId = `qmt-impairer-${randomBytes(3).toString("hex")}`;
const echoSource = readFileSync(new URL("../drivers/fixtures/udp-echo-node.ts", import.meta.url), "utf8");
const probeSource = readFileSync(new URL("./fixtures/udp-rtt-probe.ts", import.meta.url), "utf8");
const SUBNET = "192.0.2.0/26";
const ECHO_ADDRESS = "192.0.2.10";
const PROBER_ADDRESS = "192.0.2.11";
const target = { node: "echo", network: "public", direction: "egress" as const };

interface ProbeResult {
  rttMs: number[];
  lost: number[];
  replyFrom: string[];
}

function median(sorted: number[]): number {
  return sorted[Math.floor(sorted.length / 2)]!;
}

describe.skipIf(skip !== undefined)(`docker userspace impairer between two containers${skip !== undefined ? ` (skipped: ${skip})` : ""}`, () => {
  const engine = new Docker();
  const driver = new DockerDriver({ scopeLabels, impairer: "userspace" });
  let lock: { release: () => Promise<void> } | undefined;
  let baseline: ProbeResult;

  const node = (name: string, ipv4: string, command: string[]): NodeSpec => ({
    name, role: "generic", image: "qmt/generic:latest", command, env: {}, addresses: [{ network: "public", ipv4 }], replicas: 1,
  });

  async function runProbe(count: number): Promise<ProbeResult> {
    const result = await driver.exec(runId, "prober", [
      "env", `QMT_PROBE_TARGET=${ECHO_ADDRESS}:4433`, `QMT_PROBE_COUNT=${count}`, "QMT_PROBE_INTERVAL_MS=2",
      "node", "--input-type=module", "-e", probeSource,
    ]);
    expect(result.exitCode, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as ProbeResult;
  }

  async function sidecarExec(argv: string[]): Promise<string> {
    const [sidecar] = await engine.listContainers({ filters: { label: [`${LABEL_SIDECAR}=impairer`, ...Object.entries(scopeLabels).map(([k, v]) => `${k}=${v}`)] } });
    if (sidecar === undefined) throw new Error("no impairer sidecar running");
    return execFileSync("docker", ["exec", sidecar.Id, ...argv], { encoding: "utf8" });
  }

  beforeAll(async () => {
    lock = await lockDockerEngine(600_000);
    await buildImages({ roles: ["generic"], baseImage: process.env.BASE_IMAGE || undefined });
    await driver.createNetwork(runId, { name: "public", kind: "public", subnet: SUBNET });
    await driver.startNode(runId, node("echo", ECHO_ADDRESS, ["node", "--input-type=module", "-e", echoSource]));
    await driver.startNode(runId, node("prober", PROBER_ADDRESS, ["sleep", "infinity"]));
    baseline = await runProbe(500);
  }, 900_000);

  afterAll(async () => {
    await driver.removeRun(undefined);
    await lock?.release();
  });

  it("50 ms ± 5 ms (normal) and 2 % loss on echo's egress: median round trip rises by 50 ms ± 0.5 ms over the relay's pass-through (relay cost < 2 ms), loss inside the 99 % binomial interval, real addresses kept", async () => {
    expect(baseline.lost).toEqual([]);
    // First the relay with no knobs: what the mechanism itself costs, measured on the same path.
    const applied = await driver.impair(runId, target, {});
    expect(applied.mechanism).toBe("userspace");
    expect(applied.detail[0]).toMatch(/^userspace impairer \(kernel lacks sch_netem\): UDP of eth\d+ \(192\.0\.2\.10\) steered through a relay/);

    const passthrough = await runProbe(500);
    expect(passthrough.lost).toEqual([]);
    const relayCostMs = median(passthrough.rttMs) - median(baseline.rttMs);

    const count = 2000;
    // reorderPercent: 0 lets jitter reorder as netem's time-sorted queue does (no order clamp, which
    // would skew the delay distribution upwards: +3 ms on the median at one datagram per 2 ms).
    await driver.impair(runId, target, { delayMs: 50, jitterMs: 5, jitterDistribution: "normal", lossPercent: 2, reorderPercent: 0, seed: 7 });
    const impaired = await runProbe(count);
    const riseMs = median(impaired.rttMs) - median(passthrough.rttMs);
    const { lo, hi } = binomialInterval99(count, 0.02);
    console.log(
      `userspace impairer over docker: median RTT without relay ${median(baseline.rttMs).toFixed(3)} ms, relay pass-through ${median(passthrough.rttMs).toFixed(3)} ms ` +
        `(relay cost ${relayCostMs.toFixed(3)} ms), impaired ${median(impaired.rttMs).toFixed(3)} ms (rise over pass-through ${riseMs.toFixed(3)} ms, target 50), lost ${impaired.lost.length}/${count} (99 % interval [${lo}, ${hi}])`,
    );
    expect(Math.abs(riseMs - 50)).toBeLessThan(0.5);
    expect(relayCostMs).toBeLessThan(2);
    expect(impaired.lost.length).toBeGreaterThanOrEqual(lo);
    expect(impaired.lost.length).toBeLessThanOrEqual(hi);
    // The prober sees the echo's own address and port (the relay's NAT is undone on the way out).
    expect(impaired.replyFrom).toEqual([`${ECHO_ADDRESS}:4433`]);

    // The relay's own count of what it dropped is what the prober missed (seeded, one flow).
    const status = JSON.parse(await sidecarExec(["node", "/opt/qmt-impairer/orchestrator/impairments/impairer-control.ts", '{"op":"status"}'])) as {
      links: { stats: { egress: { dropped: { loss: number } }; ingress: { dropped: { loss: number } }; timerLatenessMs: { p50: number; p99: number } } }[];
    };
    console.log(`relay send lateness: p50 ${status.links[0]!.stats.timerLatenessMs.p50.toFixed(3)} ms, p99 ${status.links[0]!.stats.timerLatenessMs.p99.toFixed(3)} ms`);
    expect(status.links[0]!.stats.egress.dropped.loss).toBe(impaired.lost.length);
    expect(status.links[0]!.stats.ingress.dropped.loss).toBe(0);

    // `status` names the mechanism.
    const listed = await driver.listRun(runId);
    expect(listed.nodes.map((n) => n.name)).toEqual(["echo", "prober"]); // the sidecar is not a node
    expect(listed.nodes.find((n) => n.name === "echo")!.impairments?.[0]).toMatch(/^public \(eth\d+\): userspace impairer \(kernel lacks sch_netem\)/);
  });

  it("heal restores the baseline and removes the steering (table, route) from the node's namespace", async () => {
    await driver.heal(runId, target);
    const healed = await runProbe(500);
    expect(healed.lost).toEqual([]);
    expect(Math.abs(median(healed.rttMs) - median(baseline.rttMs))).toBeLessThan(0.5);
    expect(await sidecarExec(["nft", "list", "tables"])).not.toContain("qmt_impair");
    expect(await sidecarExec(["ip", "route", "show", "table", "local"])).not.toContain("198.18.");
    expect((await driver.listRun(runId)).nodes.find((n) => n.name === "echo")!.impairments).toEqual([]);
  });

  it("down leaves nothing: nodes, sidecar and network, all found by label", async () => {
    await driver.impair(runId, { ...target, direction: "both" }, { delayMs: 10 });
    const scope = Object.entries(scopeLabels).map(([k, v]) => `${k}=${v}`);
    expect((await engine.listContainers({ all: true, filters: { label: [`${LABEL_SIDECAR}=impairer`, ...scope] } })).length).toBe(1);
    await driver.removeRun(runId);
    expect(await engine.listContainers({ all: true, filters: { label: scope } })).toEqual([]);
    expect(await engine.listNetworks({ filters: { label: scope } })).toEqual([]);
  });
});
