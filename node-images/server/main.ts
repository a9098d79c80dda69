/**
 * The backend server role: reads its config, starts the BackendServer (QUIC endpoint on the direct
 * addresses, LB tunnel, HTTP/3 + hq-interop workloads, control API, /metrics), and runs until
 * SIGTERM/SIGINT. Prints one JSON line `{"event":"listening",...}` with the bound addresses once ready.
 *
 *   QMT_CONTROL_TOKEN=... node node-images/server/main.ts --config server.json
 */
import { MetricsRegistry } from "../common/metrics.ts";
import { formatSocketAddress } from "../quic/path.ts";
import { BackendServer } from "./backend-server.ts";
import { loadServerConfig, ServerConfigError } from "./config.ts";
import { FAIL_EXIT_CODE } from "./control.ts";

function log(entry: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ at: new Date().toISOString(), role: "server", ...entry })}\n`);
}

async function main(): Promise<void> {
  const config = loadServerConfig(process.argv.slice(2), process.env);
  const server = await BackendServer.start({
    config,
    metrics: new MetricsRegistry(),
    log,
    crash: () => {
      log({ event: "crashed", reason: "POST /fail" });
      process.exit(FAIL_EXIT_CODE);
    },
  });
  log({
    event: "listening",
    id: config.id,
    direct: server.udp.localAddresses.map(formatSocketAddress),
    tunnel: server.tunnel ? formatSocketAddress(server.tunnel.address) : undefined,
    preferredAddress: server.preferredAddress ? formatSocketAddress(server.preferredAddress) : null,
    management: formatSocketAddress({ address: server.control.address.host, port: server.control.address.port }),
  });
  const stop = async (signal: string): Promise<void> => {
    log({ event: "stopping", signal });
    await server.close();
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
}

main().catch((err: unknown) => {
  // A user's mistake is one line and exit 2; anything else is our bug and keeps its stack.
  if (err instanceof ServerConfigError || (err instanceof Error && err.name === "QuicLbConfigError")) {
    process.stderr.write(`server: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`server: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
