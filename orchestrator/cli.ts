/**
 * The testbed CLI: `npm run testbed -- <command>` (= `node orchestrator/cli.ts <command>`).
 * Exit codes: 0 ok, 1 failure, 2 usage or validation mistake. A user's error prints ONE line
 * (the typed error's message, ./errors.ts); anything else is our bug and prints its stack.
 */
import path from "node:path";
import type { Command, CliContext } from "./commands/command.ts";
import { downCommand } from "./commands/down.ts";
import { imagesCommand } from "./commands/images.ts";
import { execCommand, logsCommand } from "./commands/logs.ts";
import { healCommand, impairCommand } from "./commands/impair.ts";
import { statusCommand } from "./commands/status.ts";
import { upCommand } from "./commands/up.ts";
import { validateCommand } from "./commands/validate.ts";
import { OrchestratorError, UsageError } from "./errors.ts";

export const COMMANDS: readonly Command[] = [
  upCommand, downCommand, statusCommand, validateCommand, impairCommand, healCommand, logsCommand, execCommand, imagesCommand,
];

export function mainHelp(): string {
  return [
    "usage: testbed <command> [options]   (npm run testbed -- <command>)",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(9)} ${c.summary}`),
    "",
    "`testbed <command> --help` shows a command's options and an example.",
    "example:",
    "  npm run testbed -- validate topologies/lb-bypass.yaml",
  ].join("\n");
}

/** Errors from other helpers' modules that are user-facing by name (their stand-in classes share our names and codes). */
const USER_FACING_NAMES = new Set(["DriverError", "DockerUnreachableError", "NetemError", "ImageBuildError"]);

function isUserFacing(error: unknown): error is Error & { code?: string } {
  return error instanceof OrchestratorError || (error instanceof Error && USER_FACING_NAMES.has(error.name) && typeof (error as { code?: unknown }).code === "string");
}

export async function main(argv: string[], context: CliContext): Promise<number> {
  try {
    const [name, ...rest] = argv;
    if (name === undefined || name === "--help" || name === "-h" || name === "help") {
      context.out(mainHelp());
      return name === undefined ? 2 : 0;
    }
    const command = COMMANDS.find((c) => c.name === name);
    if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)}; known: ${COMMANDS.map((c) => c.name).join(", ")}`);
    const beforeSeparator = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest;
    if (beforeSeparator.includes("--help") || beforeSeparator.includes("-h")) {
      context.out(command.help);
      return 0;
    }
    return await command.run(rest, context);
  } catch (error) {
    if (error instanceof OrchestratorError) {
      context.err(error.message);
      return error.exitCode;
    }
    if (isUserFacing(error)) {
      context.err(error.message);
      return 1;
    }
    if (context.signal.aborted && error instanceof Error && error.name === "AbortError") {
      context.err("error: interrupted");
      return 1;
    }
    context.err(`internal error (a bug, please report it with this trace):\n${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return 1;
  }
}

if (import.meta.url === new URL(`file://${path.resolve(process.argv[1] ?? "")}`).href) {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts += 1;
    if (interrupts > 1) process.exit(130); // a second Ctrl-C: the user really wants out
    process.stderr.write(`${signal}: stopping (again to force)\n`);
    controller.abort(new DOMException(`received ${signal}`, "AbortError"));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const exitCode = await main(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    signal: controller.signal,
    stateDir: path.join(process.cwd(), ".cache", "runs"),
  });
  process.exitCode = exitCode;
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
}
