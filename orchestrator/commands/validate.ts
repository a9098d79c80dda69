import { planRun } from "../plan.ts";
import { loadTopology } from "../topology/load.ts";
import type { Command } from "./command.ts";
import { expectPositionals, parseCommandArgs } from "./command.ts";

export const validateCommand: Command = {
  name: "validate",
  summary: "check a topology file without starting anything",
  help: `usage: testbed validate <topology.yaml>

Prints "<file>: ok" and exits 0, or prints the first problem as
"<file>:<line>:<column>: <field>: expected ..., got ..." and exits 2.
A file that is valid but whose lb/server/client nodes cannot get the
configs \`up\` writes for the real roles (a missing QMT_SERVER_ID, an
address without ipv4:, ...) passes with a warning on stderr: such a node
needs a \`command:\` of its own.

example:
  npm run testbed -- validate topologies/lb-bypass.yaml`,
  async run(args, context) {
    const { positionals } = parseCommandArgs("validate", args, {});
    expectPositionals("validate", positionals, 1, 1, "topology file");
    const file = positionals[0] as string;
    const topology = await loadTopology(file);
    // The role configs `up` would write (orchestrator/role-config.ts); pure, nothing is created.
    const { roleConfigProblem } = planRun(topology, { runId: "validate", driver: "local" });
    if (roleConfigProblem !== undefined) context.err(`${file}: warning: ${roleConfigProblem}`);
    context.out(`${file}: ok (${topology.networks.length} networks, ${topology.nodes.length} nodes, ${topology.links.length} links)`);
    return 0;
  },
};
