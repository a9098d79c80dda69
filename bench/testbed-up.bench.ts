/** Seconds for `up` and `down` of the default topology (lb-bypass) on Docker, with warm images.
 *
 * Images are built (or found, by content hash) before timing starts. Then `rounds` times: up
 * (4 networks, 6 containers, the link impairment: netem, or reported unavailable where the kernel
 * has no sch_netem) and down (everything removed by label), through orchestrator/run.ts with the
 * Docker driver: what the CLI runs after it has picked the driver. up_s/down_s are the medians.
 * cli_up_s/cli_down_s time one `node orchestrator/cli.ts up|down` each, as a user runs them (process
 * start, driver probe and the image check included). Needs a Docker engine; run it alone (the
 * topology's fixed subnets cannot be created twice on one engine).
 * `npm run bench -- testbed-up [rounds]`
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { DockerDriver } from "../orchestrator/drivers/docker.ts";
import { buildImages } from "../orchestrator/images/build.ts";
import { down, newRunId, up } from "../orchestrator/run.ts";
import { loadTopology } from "../orchestrator/topology/load.ts";
import { emitResult, progress } from "./report.ts";

const rounds = Number(process.argv[2] ?? 3);
const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const topologyFile = path.join(repoRoot, "topologies/lb-bypass.yaml");

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const driver = new DockerDriver();
const probe = await driver.probe();
if (!probe.ok) {
  process.stderr.write(`testbed-up: needs a Docker engine (${probe.reason})\n`);
  process.exit(1);
}
const topology = await loadTopology(topologyFile);
progress("warming images (built only when missing or out of date)");
await buildImages({ roles: ["client", "generic", "lb", "server"], baseImage: process.env["BASE_IMAGE"] || undefined, progress });

const stateDir = mkdtempSync(path.join(tmpdir(), "qmt-bench-up-"));
const upS: number[] = [];
const downS: number[] = [];
let skippedImpairments = 0;
try {
  for (let round = 0; round < rounds; round++) {
    const runId = newRunId(topology.name);
    let t0 = performance.now();
    try {
      const result = await up(topology, driver, { runId, stateDir });
      upS.push((performance.now() - t0) / 1000);
      skippedImpairments = result.skippedImpairments.length;
    } finally {
      t0 = performance.now();
      await down(driver, runId, { stateDir });
      downS.push((performance.now() - t0) / 1000);
    }
    progress(`round ${round + 1}/${rounds}: up ${upS.at(-1)!.toFixed(2)} s, down ${downS.at(-1)!.toFixed(2)} s`);
  }
  const cli = (...args: string[]) => execa(process.execPath, [path.join(repoRoot, "orchestrator/cli.ts"), ...args], { cwd: stateDir, reject: false });
  let t0 = performance.now();
  const cliUp = await cli("up", topologyFile, "--driver", "docker");
  const cliUpS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const cliDown = await cli("down");
  const cliDownS = (performance.now() - t0) / 1000;
  if (cliUp.exitCode !== 0 || cliDown.exitCode !== 0) throw new Error(`cli up/down failed:\n${cliUp.stderr}\n${cliDown.stderr}`);
  progress(`cli: up ${cliUpS.toFixed(2)} s, down ${cliDownS.toFixed(2)} s`);
  emitResult(
    "testbed-up",
    { up_s: Number(median(upS).toFixed(3)), down_s: Number(median(downS).toFixed(3)), cli_up_s: Number(cliUpS.toFixed(3)), cli_down_s: Number(cliDownS.toFixed(3)), rounds },
    { up_s: "<= 10", down_s: "<= 5" },
    {
      up_s_all: upS.map((s) => Number(s.toFixed(3))),
      down_s_all: downS.map((s) => Number(s.toFixed(3))),
      impairments_left_unapplied: skippedImpairments,
      why_unapplied: skippedImpairments > 0 ? "kernel without sch_netem; the docker driver has no userspace impairer yet" : undefined,
      // `up` rebuilds role images when node-images/ changed since the warm-up (their tag is a content hash).
      cli_up_rebuilt_images: String(cliUp.stderr).includes("docker build →"),
    },
  );
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
