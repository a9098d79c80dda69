/**
 * Runs test/interop/quiche-peer.ts as child processes: a quiche server to point our client at, or a
 * quiche client to point at our server. Every wait has a deadline; every child is killed on dispose.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const QUICHE_PEER_SCRIPT = fileURLToPath(new URL("./quiche-peer.ts", import.meta.url));
const STOP_GRACE_MS = 5_000;

export class QuichePeerProcessError extends Error {
  override readonly name = "QuichePeerProcessError";
  readonly code = "QUICHE_PEER_PROCESS_FAILED";
}

/** One JSON line printed by the peer. */
export type QuichePeerLine = Record<string, unknown> & { event?: string };

export interface QuicheServerProcess extends AsyncDisposable {
  readonly port: number;
  /** Every JSON line the server printed so far, in order. */
  readonly lines: readonly QuichePeerLine[];
  /** Resolves with the first line (already printed or future) that matches, rejects after `timeoutMs`. */
  waitForLine(match: (line: QuichePeerLine) => boolean, timeoutMs: number): Promise<QuichePeerLine>;
  /** SIGTERM, then SIGKILL after a grace period; resolves with the exit code (null when killed). */
  stop(): Promise<number | null>;
}

export interface QuicheServerOptions {
  certFile: string;
  keyFile: string;
  alpn?: string[];
  host?: string;
  port?: number;
  startTimeoutMs?: number;
}

async function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  const timer = new AbortController();
  const timeout = setTimeout(() => timer.abort(), timeoutMs);
  try {
    // "close" comes after "exit" once stdout and stderr are drained, so no output line is lost.
    await once(child, "close", { signal: timer.signal });
    return true;
  } catch (error) {
    if (timer.signal.aborted) return false;
    throw error;
  } finally {
    clearTimeout(timeout);
  }
}

async function stopChild(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  child.kill("SIGTERM");
  if (!(await waitForExit(child, STOP_GRACE_MS))) {
    child.kill("SIGKILL");
    await waitForExit(child, STOP_GRACE_MS);
  }
  return child.exitCode;
}

export async function startQuicheServer(options: QuicheServerOptions): Promise<QuicheServerProcess> {
  const args = [QUICHE_PEER_SCRIPT, "server", "--host", options.host ?? "127.0.0.1", "--port", String(options.port ?? 0)];
  args.push("--cert", options.certFile, "--key", options.keyFile);
  for (const alpn of options.alpn ?? ["hq-interop"]) args.push("--alpn", alpn);
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  const lines: QuichePeerLine[] = [];
  const waiters = new Set<{ match: (line: QuichePeerLine) => boolean; resolve: (line: QuichePeerLine) => void }>();
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (text: string) => {
    stderr = (stderr + text).slice(-8_192);
  });
  createInterface({ input: child.stdout! }).on("line", (text) => {
    let line: QuichePeerLine;
    try {
      line = JSON.parse(text) as QuichePeerLine;
    } catch {
      line = { event: "unparsedOutput", text };
    }
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (waiter.match(line)) {
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  });

  const waitForLine = (match: (line: QuichePeerLine) => boolean, timeoutMs: number): Promise<QuichePeerLine> => {
    const seen = lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (line: QuichePeerLine) => {
          clearTimeout(timer);
          child.off("exit", onExit);
          resolve(line);
        },
      };
      const fail = (reason: string): void => {
        waiters.delete(waiter);
        child.off("exit", onExit);
        clearTimeout(timer);
        reject(new QuichePeerProcessError(`quiche server: ${reason}; stderr: ${stderr.trim() || "(empty)"}`));
      };
      const onExit = (code: number | null): void => fail(`exited with code ${code} while waiting for a line`);
      const timer = setTimeout(() => fail(`no matching line within ${timeoutMs} ms`), timeoutMs);
      waiters.add(waiter);
      child.once("exit", onExit);
    });
  };

  const stop = (): Promise<number | null> => stopChild(child);
  try {
    const listening = await waitForLine((line) => line.event === "listening", options.startTimeoutMs ?? 20_000);
    const port = listening.port;
    if (typeof port !== "number") throw new QuichePeerProcessError(`quiche server: listening line without a port: ${JSON.stringify(listening)}`);
    return { port, lines, waitForLine, stop, [Symbol.asyncDispose]: async () => void (await stop()) };
  } catch (error) {
    await stop();
    throw error;
  }
}

export interface QuicheClientOptions {
  port: number;
  caFile: string;
  direction: "upload" | "download";
  bytes: number;
  seed?: number;
  alpn?: string[];
  host?: string;
  serverName?: string;
  timeoutMs?: number;
}

export interface QuicheClientResult {
  exitCode: number | null;
  /** The JSON result line ({"ok":true,...} or {"ok":false,"error":...}), undefined if none was printed. */
  result: QuichePeerLine | undefined;
  stderr: string;
}

/** Runs one quiche client transfer to completion; the child is killed if it outlives `timeoutMs` + grace. */
export async function runQuicheClient(options: QuicheClientOptions): Promise<QuicheClientResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const args = [QUICHE_PEER_SCRIPT, "client", "--host", options.host ?? "127.0.0.1", "--port", String(options.port), "--ca", options.caFile];
  for (const alpn of options.alpn ?? ["hq-interop"]) args.push("--alpn", alpn);
  args.push(`--${options.direction}`, String(options.bytes), "--seed", String(options.seed ?? 1), "--timeout-ms", String(timeoutMs));
  if (options.serverName !== undefined) args.push("--server-name", options.serverName);
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (text: string) => (stdout += text));
  child.stderr!.setEncoding("utf8").on("data", (text: string) => {
    stderr = (stderr + text).slice(-8_192);
  });
  try {
    // The client enforces --timeout-ms itself; the extra grace covers node start-up and teardown.
    if (!(await waitForExit(child, timeoutMs + STOP_GRACE_MS))) {
      throw new QuichePeerProcessError(`quiche client did not exit within ${timeoutMs + STOP_GRACE_MS} ms; stderr: ${stderr.trim() || "(empty)"}`);
    }
  } finally {
    await stopChild(child);
  }
  const resultLine = stdout.split("\n").find((line) => line.startsWith("{"));
  return { exitCode: child.exitCode, result: resultLine === undefined ? undefined : (JSON.parse(resultLine) as QuichePeerLine), stderr };
}
