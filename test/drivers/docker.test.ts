/**
 * The Docker driver against the shared compliance suite (the local driver runs the same suite in
 * local.test.ts). Needs a Docker engine and the generic role image, built here when missing
 * (offline: debootstrap, or BASE_IMAGE). Its objects carry a label of this file's own
 * (scopeLabels), so the suite's removeRun(undefined) removes only what this file made, never a
 * user's runs on the same engine.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll } from "vitest";
import { DockerDriver } from "../../orchestrator/drivers/docker.ts";
import { buildImages } from "../../orchestrator/images/build.ts";
import { runCommand } from "../../orchestrator/images/command.ts";
import { lockDockerEngine } from "../docker/engine-lock.ts";
import { describeDriverCompliance } from "./driver-compliance.ts";

const probe = await new DockerDriver().probe();
const debootstrapPresent = (await runCommand(["debootstrap", "--version"]).catch(() => ({ exitCode: -1 }))).exitCode === 0;
// sch_netem in this kernel: `tc qdisc add dev lo root netem` in a fresh network namespace.
const netemAvailable = (await runCommand(["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).catch(() => ({ exitCode: -1 }))).exitCode === 0;
const skip = !probe.ok
  ? `no docker engine: ${probe.reason}`
  : !debootstrapPresent && process.env.BASE_IMAGE === undefined
    ? "cannot build the generic image: no debootstrap and no BASE_IMAGE"
    : undefined;

const scopeLabels = { "io.qmt.test-scope": `driver-compliance-${randomBytes(4).toString("hex")}` };
// The echo node's own text, run by the image's node: the image holds node-images/, not test/.
const echoSource = readFileSync(new URL("./fixtures/udp-echo-node.ts", import.meta.url), "utf8");

let lock: { release: () => Promise<void> } | undefined;
if (skip === undefined) {
  beforeAll(async () => {
    lock = await lockDockerEngine(600_000);
    await buildImages({ roles: ["generic"], baseImage: process.env.BASE_IMAGE || undefined });
  }, 900_000);
  afterAll(async () => {
    await new DockerDriver({ scopeLabels }).removeRun(undefined);
    await lock?.release();
  });
}

describeDriverCompliance("docker", async () => new DockerDriver({ scopeLabels, impairable: () => true }), {
  ...(skip !== undefined ? { skip } : {}),
  image: "qmt/generic:latest",
  command: ["node", "--input-type=module", "-e", echoSource],
  // Without sch_netem (this machine's and CI's kernel) the driver falls back to its userspace
  // impairer (a sidecar on the base image): the impairment test runs either way.
  expectedMechanism: netemAvailable ? "netem" : "userspace",
});
