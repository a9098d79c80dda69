/**
 * Runs one external tool (debootstrap, tar, docker, npm) for the image builder, optionally piping
 * another tool's stdout into it. Fails with an ImageBuildError that carries the tool's stderr tail.
 */
import { spawn } from "node:child_process";
import { ImageBuildError } from "./image-build-error.ts";

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

const STDERR_TAIL_CHARS = 4000;

/** Runs argv; resolves with its exit code and output (never rejects for a non-zero exit). */
export function runCommand(argv: string[], opts: { signal?: AbortSignal; stdinFrom?: string[]; cwd?: string } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const [file, ...args] = argv;
    if (file === undefined) throw new ImageBuildError("IMAGE_BUILD_FAILED", "empty command");
    const child = spawn(file, args, { cwd: opts.cwd, signal: opts.signal, stdio: [opts.stdinFrom ? "pipe" : "ignore", "pipe", "pipe"] });
    let upstreamError: string | undefined;
    if (opts.stdinFrom !== undefined) {
      const [upFile, ...upArgs] = opts.stdinFrom;
      if (upFile === undefined) throw new ImageBuildError("IMAGE_BUILD_FAILED", "empty upstream command");
      const upstream = spawn(upFile, upArgs, { cwd: opts.cwd, signal: opts.signal, stdio: ["ignore", "pipe", "pipe"] });
      let upStderr = "";
      upstream.stderr.on("data", (chunk: Buffer) => (upStderr = (upStderr + chunk.toString()).slice(-STDERR_TAIL_CHARS)));
      upstream.on("close", (code) => {
        if (code !== 0) upstreamError = `${opts.stdinFrom?.join(" ")} exited ${code}: ${upStderr.trim()}`;
      });
      upstream.on("error", (error) => child.kill() && reject(error));
      if (child.stdin) upstream.stdout.pipe(child.stdin);
    }
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-STDERR_TAIL_CHARS)));
    child.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") reject(new ImageBuildError("IMAGE_TOOL_MISSING", `${file} not found on PATH`, { cause: error }));
      else reject(error);
    });
    child.on("close", (code) => {
      if (upstreamError !== undefined) {
        reject(new ImageBuildError("IMAGE_BUILD_FAILED", upstreamError));
        return;
      }
      resolve({ exitCode: code ?? -1, stdout, stderr });
    });
  });
}

/** Runs argv and throws ImageBuildError on a non-zero exit. */
export async function runCommandChecked(argv: string[], opts: { signal?: AbortSignal; stdinFrom?: string[]; cwd?: string } = {}): Promise<CommandResult> {
  const result = await runCommand(argv, opts);
  if (result.exitCode !== 0) {
    throw new ImageBuildError("IMAGE_BUILD_FAILED", `${argv.join(" ")} exited ${result.exitCode}: ${result.stderr.trim()}`);
  }
  return result;
}
