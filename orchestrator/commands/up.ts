import path from "node:path";
import { fileURLToPath } from "node:url";
import { planRun, type RunPlan } from "../plan.ts";
import { describeImpairment, down, newRunId, up } from "../run.ts";
import { loadTopology } from "../topology/load.ts";
import type { Command } from "./command.ts";
import { expectPositionals, parseCommandArgs } from "./command.ts";
import { chooseDriver, parseDriverName } from "./driver-choice.ts";

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
    lines.push(`  ${n.name.padEnd(12)} ${n.role.padEnd(10)} ${addresses}${n.image ? ` image=${n.image}` : ""}`);
  }
  lines.push("impairments:");
  if (plan.impairments.length === 0) lines.push("  (none)");
  for (const i of plan.impairments) lines.push(`  ${i.target.node}/${i.target.network} ${i.target.direction}: ${describeImpairment(i.spec)}`);
  lines.push("notes:");
  for (const note of plan.notes) lines.push(`  - ${note}`);
  return lines;
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
      const plan = planRun(topology, { runId: DRY_RUN_ID, driver: requested ?? "docker" });
      if (values.json === true) context.out(JSON.stringify(plan, null, 2));
      else for (const line of formatPlan(plan)) context.out(line);
      return 0;
    }
    const driver = await chooseDriver(requested, context);
    try {
      const runId = newRunId(topology.name);
      context.err(`up ${topology.name}: run ${runId} on ${driver.name}`);
      const result = await up(topology, driver, { runId, signal: context.signal, onProgress: (line) => context.err(`  ${line}`), stateDir: context.stateDir });
      if (values.json === true) context.out(JSON.stringify({ runId, networks: result.networks, nodes: result.nodes, impairments: result.impairments }, null, 2));
      else {
        context.out(`run ${runId} is up (${driver.name})`);
        for (const node of result.nodes) context.out(`  ${node.name.padEnd(12)} ${node.status.padEnd(8)} ${Object.entries(node.addresses).map(([n, a]) => `${n}=${a}`).join(" ")}`);
      }
      if (driver.name === "local" && values.detach !== true) {
        // The local driver's impairment relays live in this process: stay until Ctrl-C, then take the run down.
        context.err("local run in the foreground: Ctrl-C stops it (use --detach to return now)");
        await new Promise<void>((resolve) => {
          if (context.signal.aborted) resolve();
          else context.signal.addEventListener("abort", () => resolve(), { once: true });
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
