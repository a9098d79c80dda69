/**
 * The load balancer role: reads its config, wires router, sockets, metrics and control API, and
 * runs until SIGTERM/SIGINT. Prints one JSON line `{"event":"listening",...}` with the bound
 * addresses once ready (ports chosen by the OS when given as 0).
 *
 *   QMT_CONTROL_TOKEN=... node node-images/lb/main.ts --config lb.json
 */
import { ControlApi } from "../common/control-api.ts";
import { MetricsRegistry } from "../common/metrics.ts";
import { formatSocketAddress } from "../quic/path.ts";
import { LbConfigError, loadLbConfig } from "./config.ts";
import { lbControlRoutes } from "./control.ts";
import { LbDataPlane } from "./data-plane.ts";
import { HealthMonitor } from "./health-check.ts";
import { QuicLbRouter, RouterError } from "./router.ts";

function log(entry: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ at: new Date().toISOString(), role: "lb", ...entry })}\n`);
}

async function main(): Promise<void> {
  const startedAtMs = Date.now();
  const config = loadLbConfig(process.argv.slice(2), process.env);
  const metrics = new MetricsRegistry();
  const router = new QuicLbRouter({ configs: config.quicLb, backends: config.backends, unroutableShortHeader: config.unroutableShortHeader });
  const dataPlane = await LbDataPlane.bind({ vips: config.vips, tunnel: config.tunnel, router, metrics, socketBufferBytes: 4 * 1024 * 1024 });
  const health = new HealthMonitor({ router, settings: config.healthCheck, metrics, log });
  const control = await ControlApi.start({
    address: { host: config.management.address, port: config.management.port },
    token: config.token,
    metrics,
    routes: lbControlRoutes({ router, dataPlane, configs: config.quicLb, metrics, startedAtMs, health }),
    log,
  });
  log({
    event: "listening",
    vips: dataPlane.vipSockets.map((v) => formatSocketAddress(v.address)),
    tunnel: formatSocketAddress(dataPlane.tunnelSocket!.address),
    management: formatSocketAddress({ address: control.address.host, port: control.address.port }),
    backends: router.backends().map((b) => b.id),
  });
  // Checks start once the routes listen to transitions (the gauge follows from the first change).
  for (const b of config.backends) health.watch(b.id, b.healthUrl);
  const stop = async (signal: string): Promise<void> => {
    log({ event: "stopping", signal });
    await Promise.all([health.close(), control.close(), dataPlane.close()]);
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
}

main().catch((err: unknown) => {
  // A user's mistake is one line and exit 2; anything else is our bug and keeps its stack.
  if (err instanceof LbConfigError || err instanceof RouterError || (err instanceof Error && err.name === "QuicLbConfigError")) {
    process.stderr.write(`lb: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`lb: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
