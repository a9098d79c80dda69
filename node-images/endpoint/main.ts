/**
 * The QUIC Interop Runner endpoint (README.md): run_endpoint.sh starts this with the runner's environment.
 *
 *   ROLE=server TESTCASE=transfer WWW_DIR=/tmp/www CERTS_DIR=/tmp/certs PORT=4433 node node-images/endpoint/main.ts
 *   ROLE=client TESTCASE=transfer REQUESTS="https://localhost:4433/a" DOWNLOADS_DIR=/tmp/dl node node-images/endpoint/main.ts
 *
 * Exit codes: 0 success (the server: stopped by SIGTERM/SIGINT), 1 failure, 2 a malformed variable (one line
 * naming it), 127 a testcase we do not support.
 */
import { InteropConfigError, loadInteropConfig, UnsupportedTestcaseError, type InteropConfig } from "./config.ts";
import { formatSocketAddress } from "../quic/path.ts";
import { jsonLineLogger, type LogLine } from "./log-line.ts";

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
/** The runner's "this testcase is not supported" code. */
const EXIT_UNSUPPORTED = 127;

// The stack is imported once the testcase is known to be supported: an unsupported one exits 127 at once.
async function runServer(config: InteropConfig, log: LogLine): Promise<void> {
  const { InteropServer } = await import("./interop-server.ts");
  const server = await InteropServer.start(config, log);
  log({
    event: "listening",
    testcase: config.testcase.name,
    addresses: server.localAddresses.map(formatSocketAddress),
    preferredAddress: server.preferredAddress ? formatSocketAddress(server.preferredAddress) : null,
    retry: config.testcase.server.retry,
  });
  const stop = async (signal: string): Promise<void> => {
    await server.close();
    log({ event: "stopped", signal, ...server.summary() });
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
}

async function runClient(config: InteropConfig, log: LogLine): Promise<number> {
  const { InteropClient } = await import("./interop-client.ts");
  const startedMs = performance.now();
  const result = await new InteropClient(config, log).run();
  log({ event: "done", testcase: config.testcase.name, durationMs: Math.round(performance.now() - startedMs), ...result });
  return result.ok ? 0 : EXIT_FAILURE;
}

async function main(): Promise<void> {
  const role = process.env.ROLE === "server" ? "server" : "client";
  const log = jsonLineLogger(role, (text) => process.stdout.write(text));
  let config: InteropConfig;
  try {
    config = loadInteropConfig(process.env);
  } catch (err) {
    if (err instanceof UnsupportedTestcaseError) {
      process.stderr.write(`endpoint: ${err.message}\n`);
      process.exit(EXIT_UNSUPPORTED);
    }
    throw err;
  }
  if (config.role === "server") await runServer(config, log);
  else process.exitCode = await runClient(config, log);
}

main().catch((err: unknown) => {
  // A user's mistake is one line; anything else is our bug and keeps its stack.
  if (err instanceof InteropConfigError) {
    process.stderr.write(`endpoint: ${err.message}\n`);
    process.exit(EXIT_USAGE);
  }
  process.stderr.write(`endpoint: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(EXIT_FAILURE);
});
