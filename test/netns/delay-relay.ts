/**
 * A UDP relay that delays both directions (orchestrator/impairments/udp-impairer.ts) as a process of its own,
 * for namespaces on a kernel without sch_netem, where `tc qdisc ... netem delay` is impossible. It listens on
 * the address peers are given and forwards to the real receiver; replies come back from the listen address.
 * Stdout: {"event":"listening",...}, and on SIGTERM {"event":"stopped","stats":{...}} (timer lateness included).
 *
 *   node test/netns/delay-relay.ts --listen 10.77.2.1:4433 --target 10.77.2.1:4434 --delay-ms 5
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { UdpImpairer } from "../../orchestrator/impairments/udp-impairer.ts";

function parseSocketAddress(flag: string, text: string | undefined): { address: string; port: number } {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text ?? "");
  if (!m || Number(m[2]) > 65535) {
    process.stderr.write(`${flag}: expected an IPv4 address:port, got "${text ?? ""}"\n`);
    process.exit(2);
  }
  return { address: m[1]!, port: Number(m[2]) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { listen: { type: "string" }, target: { type: "string" }, "delay-ms": { type: "string" } } });
  const delayMs = Number(values["delay-ms"] ?? "0");
  if (!Number.isFinite(delayMs) || delayMs < 0) {
    process.stderr.write(`--delay-ms: expected a non-negative number, got "${values["delay-ms"]}"\n`);
    process.exit(2);
  }
  const relay = await UdpImpairer.start({
    listen: parseSocketAddress("--listen", values.listen),
    target: parseSocketAddress("--target", values.target),
    forward: { delayMs },
    reverse: { delayMs },
  });
  process.stdout.write(`${JSON.stringify({ event: "listening", address: relay.address, target: relay.target, delayMsEachWay: delayMs })}\n`);
  const stop = (): void => {
    const stats = relay.stats();
    void relay.close().then(() => {
      process.stdout.write(`${JSON.stringify({ event: "stopped", stats })}\n`);
      process.exit(0);
    });
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
