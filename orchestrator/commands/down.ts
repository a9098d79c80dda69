import { currentRunId, down, readCurrentRun } from "../run.ts";
import type { Command } from "./command.ts";
import { expectPositionals, parseCommandArgs } from "./command.ts";
import { chooseDriver, parseDriverName } from "./driver-choice.ts";

export const downCommand: Command = {
  name: "down",
  summary: "remove a run (default: the current one)",
  help: `usage: testbed down [--run ID] [--all] [--driver docker|local]

Removes every network, node and impairment labelled with the run id. Idempotent.

  --run ID               the run to remove (default: the current run, .cache/runs/current.json)
  --all                  remove every run this driver knows of
  --driver docker|local  default: the driver the current run was started with

example:
  npm run testbed -- down --run qmt-lb-bypass-3f9a1c`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs("down", args, { run: { type: "string" }, all: { type: "boolean" }, driver: { type: "string" } });
    expectPositionals("down", positionals, 0, 0, "");
    const runId = values.all === true ? undefined : await currentRunId(values.run, context.stateDir); // before probing any engine
    const current = await readCurrentRun(context.stateDir);
    const driver = await chooseDriver(parseDriverName(values.driver), context, current?.driver);
    try {
      const result = await down(driver, runId, { all: values.all === true, signal: context.signal, stateDir: context.stateDir });
      context.out(result.runId === undefined ? `removed all runs (${result.removed} objects)` : `run ${result.runId} removed (${result.removed} objects)`);
      return 0;
    } finally {
      await driver[Symbol.asyncDispose]();
    }
  },
};
