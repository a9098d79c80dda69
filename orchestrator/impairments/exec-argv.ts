/** The `Exec` the netem path uses by default: execa without a shell, never rejecting on exit codes. */
import { execa } from "execa";
import type { Exec } from "./netem.ts";

export const execArgv: Exec = async (argv) => {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("execArgv: empty argv");
  const result = await execa(file, args, { reject: false, stripFinalNewline: false });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
};
