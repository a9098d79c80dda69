import { currentRunId, readCurrentRun, status } from "../run.ts";
import type { Command } from "./command.ts";
import { expectPositionals, parseCommandArgs } from "./command.ts";
import { chooseDriver, parseDriverName } from "./driver-choice.ts";

export const statusCommand: Command = {
  name: "status",
  summary: "show the networks and nodes of a run",
  help: `usage: testbed status [--run ID] [--json] [--driver docker|local]

  --run ID               default: the current run
  --json                 print as JSON

example:
  npm run testbed -- status --json`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs("status", args, { run: { type: "string" }, json: { type: "boolean" }, driver: { type: "string" } });
    expectPositionals("status", positionals, 0, 0, "");
    const runId = await currentRunId(values.run, context.stateDir); // before probing any engine
    const current = await readCurrentRun(context.stateDir);
    const driver = await chooseDriver(parseDriverName(values.driver), context, current?.driver);
    try {
      const result = await status(driver, runId, { signal: context.signal, stateDir: context.stateDir });
      if (values.json === true) {
        context.out(JSON.stringify(result, null, 2));
        return 0;
      }
      context.out(`run ${result.runId} (${driver.name})`);
      for (const n of result.networks) context.out(`  network ${n.name.padEnd(12)} ${n.kind.padEnd(8)} ${n.subnet}`);
      for (const n of result.nodes) {
        context.out(`  node    ${n.name.padEnd(12)} ${n.status.padEnd(8)} ${Object.entries(n.addresses).map(([k, a]) => `${k}=${a}`).join(" ")}`);
        for (const line of n.impairments ?? []) context.out(`          impaired ${line}`);
      }
      return 0;
    } finally {
      await driver[Symbol.asyncDispose]();
    }
  },
};
