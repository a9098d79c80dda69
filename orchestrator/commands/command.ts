/**
 * What every CLI command is: a name, a one-line summary, a `--help` text with an example, and
 * `run(args, context)` returning the exit code. Commands print results on stdout (`out`) and
 * progress on stderr (`err`); errors are thrown as typed errors (../errors.ts) for cli.ts to print.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../errors.ts";

export interface CliContext {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
  /** Where current.json and local run state live (default `<cwd>/.cache/runs`). */
  stateDir: string;
}

export interface Command {
  name: string;
  summary: string;
  help: string;
  run(args: string[], context: CliContext): Promise<number>;
}

export type Options = NonNullable<ParseArgsConfig["options"]>;

/** node:util parseArgs, strict, with its TypeErrors turned into one-line UsageErrors. */
export function parseCommandArgs<T extends Options>(command: string, args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    if (error instanceof TypeError && typeof (error as NodeJS.ErrnoException).code === "string" && (error as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
      throw new UsageError(`${command}: ${error.message.split("\n")[0]} (see \`${command} --help\`)`, { cause: error });
    }
    throw error;
  }
}

export function expectPositionals(command: string, positionals: string[], min: number, max: number, what: string): void {
  if (positionals.length < min) throw new UsageError(`${command}: missing ${what} (see \`${command} --help\`)`);
  if (positionals.length > max) throw new UsageError(`${command}: unexpected argument ${JSON.stringify(positionals[max])} (see \`${command} --help\`)`);
}
