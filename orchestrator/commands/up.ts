import path from "node:path";
import { fileURLToPath } from "node:url";
import { defaultNodeImage } from "../drivers/docker.ts";
import { FeatureUnavailableError } from "../errors.ts";
import { buildImages } from "../images/build.ts";
import { ImageBuildError } from "../images/image-build-error.ts";
import { buildNetemCommands } from "../impairments/netem.ts";
import { planRun, type RunPlan } from "../plan.ts";
import { describeImpairment, down, newRunId, up } from "../run.ts";
import { loadTopology } from "../topology/load.ts";
import type { Command } from "./command.ts";
import { expectPositionals, parseCommandArgs } from "./command.ts";
import { chooseDriver, createDriver, parseDriverName } from "./driver-choice.ts";

/** The default topology, as a path relative to the working directory when possible. */
export function defaultTopologyFile(): string {
  const absolute = fileURLToPath(new URL("../../topologies/lb-bypass.yaml", import.meta.url));
  const relative = path.relative(process.cwd(), absolute);
  return relative.startsWith("..") ? absolute : relative;
}

/** The run id of `up --dry-run`: fixed, so the same file always prints the same plan. */
export const DRY_RUN_ID = "dryrun";

export function formatPlan(plan: RunPlan): string[] {
  const lines = [`plan for ${plan.topology.name} (${plan.topology.file}), run ${plan.runId}, driver ${plan.driver}`, "networks:"];
  for (const n of plan.networks) lines.push(`  ${n.name.padEnd(12)} ${n.kind.padEnd(8)} ${n.subnet}${n.subnet6 ? ` ${n.subnet6}` : ""}`);
  lines.push("nodes:");
  for (const n of plan.nodes) {
    const addresses = n.addresses.map((a) => `${a.network}=${a.ipv4 ?? "auto"}`).join(" ");
    const image = plan.driver === "docker" ? ` image=${n.image ?? defaultNodeImage(n.role)}` : "";
    lines.push(`  ${n.name.padEnd(12)} ${n.role.padEnd(10)} ${addresses}${image}`);
  }
  lines.push("impairments:");
  if (plan.impairments.length === 0) lines.push("  (none)");
  for (const i of plan.impairments) {
    lines.push(`  ${i.target.node}/${i.target.network} ${i.target.direction}: ${describeImpairment(i.spec)}`);
    for (const command of impairmentCommands(plan, i)) lines.push(`    ${command}`);
  }
  lines.push(`role configs (in ${plan.roleFilesDir}; CA, certificate, token and keys generated at up):`);
  if (plan.roles.length === 0) lines.push("  (none)");
  for (const r of plan.roles) lines.push(`  ${r.node.padEnd(12)} ${r.role.padEnd(8)} ${r.file}: ${r.summary}`);
  lines.push("notes:");
  for (const note of plan.notes) lines.push(`  - ${note}`);
  return lines;
}

/**
 * What applying one planned impairment runs. Docker: tc netem inside the node's network namespace
 * (the interface is known only once the container runs, hence `<if:network>`); when the kernel
 * has no sch_netem, `up` says so and leaves the link unimpaired. Local: a userspace relay.
 */
export function impairmentCommands(plan: RunPlan, impairment: RunPlan["impairments"][number]): string[] {
  const { node, network, direction } = impairment.target;
  if (plan.driver === "docker") {
    return buildNetemCommands(`<if:${network}>`, impairment.spec, direction).map((argv) => `docker exec ${plan.runId}-${node} ${argv.join(" ")}`);
  }
  return [`userspace UDP relay on ${node}'s published ${network} address, for every UDP port it binds (seed ${impairment.spec.seed ?? 1})`];
}

/** The role images the docker driver will run for this plan's nodes that name no image. */
export function rolesNeedingImages(plan: RunPlan): string[] {
  const roles = new Set<string>();
  for (const node of plan.nodes) if (node.image === undefined) roles.add(/^qmt\/([^:]+):latest$/.exec(defaultNodeImage(node.role))![1]!);
  return [...roles].sort();
}

/** Builds (or finds, by content hash) the images a docker run needs, or says exactly what to do. */
async function ensureImages(plan: RunPlan, context: Parameters<Command["run"]>[1]): Promise<void> {
  const roles = rolesNeedingImages(plan);
  if (roles.length === 0) return;
  context.err(`images: qmt/base and ${roles.map((r) => `qmt/${r}`).join(", ")} (built when missing or out of date; the first build takes about a minute)`);
  try {
    await buildImages({ roles, signal: context.signal, progress: (line) => context.err(`  ${line}`) });
  } catch (error) {
    if (!(error instanceof ImageBuildError)) throw error;
    throw new FeatureUnavailableError(
      `up: the docker images ${roles.map((r) => `qmt/${r}:latest`).join(", ")} could not be built (${error.code}: ${error.message.split("\n")[0]}). ` +
        "Install debootstrap (apt-get install debootstrap) or set BASE_IMAGE=node:24-bookworm-slim where a registry is reachable, then run `npm run testbed -- images`; or use `up --driver local`.",
      { cause: error },
    );
  }
}

export const upCommand: Command = {
  name: "up",
  summary: "start a run of a topology (default topologies/lb-bypass.yaml)",
  help: `usage: testbed up [topology.yaml] [--driver docker|local] [--dry-run] [--json] [--detach]

Validates the topology, creates its networks, starts its nodes and applies its link impairments.
A failed or interrupted (Ctrl-C) up removes everything it created.

  --driver docker|local  engine to use; default docker when reachable, else local
  --dry-run              print the plan (run id "dryrun") and create nothing
  --json                 print the plan or the result as JSON
  --detach               local driver: return after start instead of staying in the
                         foreground (link impairments need the foreground process)

example:
  npm run testbed -- up topologies/geo.yaml --dry-run`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs("up", args, {
      driver: { type: "string" }, "dry-run": { type: "boolean" }, json: { type: "boolean" }, detach: { type: "boolean" },
    });
    expectPositionals("up", positionals, 0, 1, "topology file");
    const requested = parseDriverName(values.driver);
    const topology = await loadTopology(positionals[0] ?? defaultTopologyFile());
    if (values["dry-run"] === true) {
      const plan = planRun(topology, { runId: DRY_RUN_ID, driver: requested ?? "docker", stateDir: path.relative(process.cwd(), context.stateDir) || "." });
      if (values.json === true) context.out(JSON.stringify(plan, null, 2));
      else for (const line of formatPlan(plan)) context.out(line);
      return 0;
    }
    let driver = await chooseDriver(requested, context);
    try {
      const runId = newRunId(topology.name);
      if (driver.name === "docker") {
        try {
          await ensureImages(planRun(topology, { runId, driver: "docker" }), context);
        } catch (error) {
          // Docker was only the default: without its images, the embedded driver still runs the topology.
          if (!(error instanceof FeatureUnavailableError) || requested !== undefined) throw error;
          context.err(error.message);
          context.err("driver: local (docker images cannot be built here; --driver docker makes this an error)");
          await driver[Symbol.asyncDispose]();
          driver = await createDriver("local", context.stateDir);
        }
      }
      context.err(`up ${topology.name}: run ${runId} on ${driver.name}`);
      const result = await up(topology, driver, { runId, signal: context.signal, onProgress: (line) => context.err(`  ${line}`), stateDir: context.stateDir });
      if (result.plan.roleConfigProblem !== undefined) context.err(`warning: ${result.plan.roleConfigProblem}`);
      if (values.json === true) context.out(JSON.stringify({ runId, networks: result.networks, nodes: result.nodes, impairments: result.impairments, skippedImpairments: result.skippedImpairments }, null, 2));
      else {
        context.out(`run ${runId} is up (${driver.name})`);
        for (const node of result.nodes) context.out(`  ${node.name.padEnd(12)} ${node.status.padEnd(8)} ${Object.entries(node.addresses).map(([n, a]) => `${n}=${a}`).join(" ")}`);
        for (const i of result.impairments) context.out(`  impaired ${i.target.node}/${i.target.network} ${i.target.direction}: ${describeImpairment(i.spec)} (${i.mechanism})`);
        for (const s of result.skippedImpairments) context.out(`  NOT impaired ${s.target.node}/${s.target.network}: ${s.reason}`);
      }
      if (driver.name === "local" && values.detach !== true) {
        // The local driver's impairment relays live in this process: stay until Ctrl-C, then take the run down.
        context.err("local run in the foreground: Ctrl-C stops it (use --detach to return now)");
        await new Promise<void>((resolve) => {
          if (context.signal.aborted) return resolve();
          // The driver's timers are unref'd (they must not keep a library user's process alive):
          // this one keeps the foreground process, and so its relays, alive until Ctrl-C.
          const keepAlive = setInterval(() => {}, 1 << 30);
          context.signal.addEventListener("abort", () => {
            clearInterval(keepAlive);
            resolve();
          }, { once: true });
        });
        const { removed } = await down(driver, runId, { stateDir: context.stateDir });
        context.err(`run ${runId} removed (${removed} objects)`);
      }
      return 0;
    } finally {
      await driver[Symbol.asyncDispose]();
    }
  },
};
