import { UsageError } from "../errors.ts";
import { currentRunId, readCurrentRun } from "../run.ts";
import type { Command } from "./command.ts";
import { expectPositionals, parseCommandArgs } from "./command.ts";
import { chooseDriver, parseDriverName } from "./driver-choice.ts";

export const logsCommand: Command = {
  name: "logs",
  summary: "print a node's output",
  help: `usage: testbed logs <node> [--tail N] [--run ID] [--driver docker|local]

example:
  npm run testbed -- logs backend1 --tail 50`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs("logs", args, { tail: { type: "string" }, run: { type: "string" }, driver: { type: "string" } });
    expectPositionals("logs", positionals, 1, 1, "<node>");
    let tail: number | undefined;
    if (values.tail !== undefined) {
      if (!/^\d+$/.test(values.tail)) throw new UsageError(`logs: --tail: expected a whole number of lines, got ${JSON.stringify(values.tail)}`);
      tail = Number(values.tail);
    }
    const runId = await currentRunId(values.run, context.stateDir);
    const current = await readCurrentRun(context.stateDir);
    const driver = await chooseDriver(parseDriverName(values.driver), context, current?.driver);
    try {
      const text = await driver.logs(runId, positionals[0] as string, tail === undefined ? {} : { tail }, context.signal);
      context.out(text.replace(/\n$/, ""));
      return 0;
    } finally {
      await driver[Symbol.asyncDispose]();
    }
  },
};

export const execCommand: Command = {
  name: "exec",
  summary: "run a command inside a node",
  help: `usage: testbed exec <node> [--run ID] [--driver docker|local] -- <command> [args...]

Prints the command's stdout and stderr; exits with the command's exit code.

example:
  npm run testbed -- exec backend1 -- ip -br addr`,
  async run(args, context) {
    const separator = args.indexOf("--");
    if (separator === -1) throw new UsageError("exec: missing `-- <command>` (see `exec --help`)");
    const argv = args.slice(separator + 1);
    const { values, positionals } = parseCommandArgs("exec", args.slice(0, separator), { run: { type: "string" }, driver: { type: "string" } });
    expectPositionals("exec", positionals, 1, 1, "<node>");
    if (argv.length === 0) throw new UsageError("exec: missing the command after `--`");
    const runId = await currentRunId(values.run, context.stateDir);
    const current = await readCurrentRun(context.stateDir);
    const driver = await chooseDriver(parseDriverName(values.driver), context, current?.driver);
    try {
      const result = await driver.exec(runId, positionals[0] as string, argv, context.signal);
      if (result.stdout !== "") context.out(result.stdout.replace(/\n$/, ""));
      if (result.stderr !== "") context.err(result.stderr.replace(/\n$/, ""));
      return result.exitCode;
    } finally {
      await driver[Symbol.asyncDispose]();
    }
  },
};
