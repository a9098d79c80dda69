import { loadTopology } from "../topology/load.ts";
import type { Command } from "./command.ts";
import { expectPositionals, parseCommandArgs } from "./command.ts";

export const validateCommand: Command = {
  name: "validate",
  summary: "check a topology file without starting anything",
  help: `usage: testbed validate <topology.yaml>

Prints "<file>: ok" and exits 0, or prints the first problem as
"<file>:<line>:<column>: <field>: expected ..., got ..." and exits 2.

example:
  npm run testbed -- validate topologies/lb-bypass.yaml`,
  async run(args, context) {
    const { positionals } = parseCommandArgs("validate", args, {});
    expectPositionals("validate", positionals, 1, 1, "topology file");
    const file = positionals[0] as string;
    const topology = await loadTopology(file);
    context.out(`${file}: ok (${topology.networks.length} networks, ${topology.nodes.length} nodes, ${topology.links.length} links)`);
    return 0;
  },
};
