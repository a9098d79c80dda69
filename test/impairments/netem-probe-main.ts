/**
 * Run inside a network namespace whose `lo` carries our netem (netem-measurement.test.ts): sends a
 * paced probe on 127.0.0.1 to a sink in this process and prints one JSON line with the one-way
 * delays (ms) and the received sequence numbers. Each datagram crosses lo's egress netem once.
 * argv: count intervalMs bytes [summary]. With "summary", prints a short summary instead of every
 * arrival (for a serial console, see qemu/netem-in-qemu.ts).
 */
import { median, sendPaced, startProbeSink, waitQuiet } from "./udp-probe.ts";

const [count = "2000", intervalMs = "2", bytes = "64", mode = "full"] = process.argv.slice(2);
const sink = await startProbeSink();
await sendPaced({ port: sink.port, count: Number(count), intervalMs: Number(intervalMs), bytes: Number(bytes) });
await waitQuiet(() => sink.arrivals.length, 300, 20_000);
if (mode === "summary") {
  const arrivals = sink.arrivals;
  process.stdout.write(
    `${JSON.stringify({
      received: arrivals.length,
      unique: new Set(arrivals.map((a) => a.sequence)).size,
      medianOneWayMs: arrivals.length > 0 ? median(arrivals.map((a) => a.oneWayMs)) : null,
      under10Ms: arrivals.filter((a) => a.oneWayMs < 10).length,
      spanMs: arrivals.length > 1 ? arrivals.at(-1)!.arrivedAtMs - arrivals[0]!.arrivedAtMs : 0,
    })}\n`,
  );
} else {
  process.stdout.write(`${JSON.stringify({ arrivals: sink.arrivals })}\n`);
}
await sink[Symbol.asyncDispose]();
process.exit(0);
