/**
 * The load generator role: reads its config, opens up to 10,000 connections through the target (the
 * LB's VIP), writes one JSON line per connection and a summary line, serves /metrics (and GET /status
 * with QMT_CONTROL_TOKEN) on its management address, and exits 0 when every connection has finished
 * (1 when any failed).
 *
 *   node node-images/client/main.ts --config client.json --output connections.jsonl
 */
import { createWriteStream, type WriteStream } from "node:fs";
import type { Server } from "node:http";
import { ControlApi } from "../common/control-api.ts";
import { MetricsRegistry, serveMetrics } from "../common/metrics.ts";
import { formatSocketAddress } from "../quic/path.ts";
import { ClientConfigError, loadClientConfig } from "./config.ts";
import { LoadGenerator } from "./load-generator.ts";

function log(entry: Record<string, unknown>): void {
  process.stderr.write(`${JSON.stringify({ at: new Date().toISOString(), role: "client", ...entry })}\n`);
}

async function main(): Promise<number> {
  const config = loadClientConfig(process.argv.slice(2), process.env);
  const metrics = new MetricsRegistry();
  const out: WriteStream | undefined = config.output && config.output !== "-" ? createWriteStream(config.output) : undefined;
  const writeLine = (line: object): void => {
    const text = `${JSON.stringify(line)}\n`;
    if (out) out.write(text);
    else process.stdout.write(text);
  };
  const gen = await LoadGenerator.start({ config, metrics, writeLine });
  let control: ControlApi | undefined;
  let metricsServer: Server | undefined;
  if (config.management) {
    const address = { host: config.management.address, port: config.management.port };
    if (config.token) {
      control = await ControlApi.start({ address, token: config.token, metrics, log, routes: [{ method: "GET", path: "/status", handle: () => ({ body: gen.status() }) }] });
    } else {
      metricsServer = await serveMetrics(metrics, address);
    }
  }
  const management = control ? control.address : (metricsServer?.address() as { address: string; port: number } | undefined);
  log({
    event: "started",
    target: formatSocketAddress(config.target),
    local: gen.udp.localAddresses.map(formatSocketAddress),
    connections: config.connections,
    management: management ? `${"host" in management ? management.host : management.address}:${management.port}` : undefined,
  });
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await Promise.all([gen.close(), control?.close(), new Promise<void>((r) => (metricsServer ? metricsServer.close(() => r()) : r()))]);
    if (out) await new Promise<void>((r) => out.end(r));
  };
  process.once("SIGTERM", () => void stop().then(() => process.exit(0)));
  process.once("SIGINT", () => void stop().then(() => process.exit(0)));
  const summary = await gen.run();
  await stop();
  return summary.outcomes.failed > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ClientConfigError) {
      process.stderr.write(`client: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`client: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
