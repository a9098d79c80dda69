/**
 * 10,000 concurrent connections through the LB (processes on loopback): success rate, migration latency over RTT, RSS and CPU of all roles.
 *
 * 1 LB + 2 backends + 1 load generator, all on this machine, started by test/roles/role-processes.ts.
 * The client ramps up to N connections (default 10,000; `-- --connections N` for fewer), each doing
 * request/response at a low rate while every connection is open at once, then all close.
 *
 *   npm run bench -- scale-10k [--connections 10000] [--ramp 150] [--rr-interval-ms 10000] [--hold-extra-ms 15000]
 *
 * success_rate: connections that did not fail / N. p50/p99_over_rtt: per connection, the spec's migration
 * latency (first_data_on_new_path − handshake_confirmed) over the smoothed RTT of the new path. rss_mb_total:
 * the sum of every process's peak RSS (VmHWM). cpu_s: user + system CPU of all processes.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { clientConfig, kill, metricSum, scrape, startRole, startTestbed, stopAll, type RoleProcess } from "../test/roles/role-processes.ts";
import { emitResult, progress } from "./report.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { connections: { type: "string" }, ramp: { type: "string" }, "rr-interval-ms": { type: "string" }, "hold-extra-ms": { type: "string" } },
});
const CONNECTIONS = Number(values.connections ?? 10_000);
const RAMP_PER_SECOND = Number(values.ramp ?? 150);
const RR_INTERVAL_MS = Number(values["rr-interval-ms"] ?? 10_000);
const HOLD_EXTRA_MS = Number(values["hold-extra-ms"] ?? 15_000);
const CLOCK_TICKS_PER_SECOND = 100;

/** Peak RSS (VmHWM) and CPU seconds of a live process, from /proc. */
function processUsage(pid: number): { peakRssMb: number; cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const hwmKb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  // /proc/<pid>/stat: fields after the ")" of the command; utime and stime are fields 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { peakRssMb: hwmKb / 1024, cpuS: ticks / CLOCK_TICKS_PER_SECOND };
}

/** The samples of one series with a value above 0, as "labels": value. */
function nonZeroSamples(text: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`).exec(line);
    if (m && Number(m[2]) > 0) out[m[1] ?? ""] = Number(m[2]);
  }
  return out;
}

/** The kernel's count of UDP datagrams dropped because a socket's receive buffer was full (all sockets of this host). */
function udpReceiveBufferErrors(): number {
  const lines = readFileSync("/proc/net/snmp", "utf8").split("\n").filter((l) => l.startsWith("Udp:"));
  const names = lines[0]!.split(/\s+/);
  return Number(lines[1]!.split(/\s+/)[names.indexOf("RcvbufErrors")]);
}

const started = performance.now();
const rcvbufErrorsBefore = udpReceiveBufferErrors();
progress(`starting 1 LB and 2 backends`);
const tb = await startTestbed({ backends: 2, migrationLatencyBucketsMs: [0.2, 1, 5] });
let client: RoleProcess | undefined;
try {
  const output = join(tb.run.dir, "scale.jsonl");
  const rampMs = (CONNECTIONS / RAMP_PER_SECOND) * 1000;
  client = await startRole(
    "client",
    "client",
    [
      "--config",
      clientConfig(tb, {
        bind: Array.from({ length: 16 }, () => "127.0.0.30:0"),
        connections: CONNECTIONS,
        rampPerSecond: RAMP_PER_SECOND,
        holdMs: Math.round(rampMs + HOLD_EXTRA_MS),
        mix: { rr: 1 },
        rr: { intervalMs: RR_INTERVAL_MS, bytes: 100 },
        handshakeTimeoutMs: 60_000,
        output,
      }),
    ],
    { timeoutMs: 30_000 },
  );
  const management = String(client.ready.management);
  progress(`client ramping to ${CONNECTIONS} connections at ${RAMP_PER_SECOND}/s`);
  let peakActive = 0;
  const usage = new Map<string, { peakRssMb: number; cpuS: number }>();
  const sample = (): void => {
    for (const p of [tb.lb, ...tb.servers, client!]) {
      if (p.child.pid !== undefined && p.child.exitCode === null) {
        try {
          // Peak of every sample: a process that has just exited (a zombie) has no VmHWM any more and would read 0.
          const now = processUsage(p.child.pid);
          const before = usage.get(p.name);
          usage.set(p.name, { peakRssMb: Math.max(now.peakRssMb, before?.peakRssMb ?? 0), cpuS: Math.max(now.cpuS, before?.cpuS ?? 0) });
        } catch {
          // The process exited between the check and the read: its last sample stands.
        }
      }
    }
  };
  // Once a second every role's /metrics is scraped once (a scrape of the client walks its 10,000 connections),
  // and from that one text: the client's active connections; the longest event-loop stall each role saw
  // (prom-client's lag max, reset at every scrape: a stalled role stops reading its sockets, and the kernel
  // drops what overflows their receive buffers); and, at the client's peak concurrency, where the memory is
  // (V8 heap in use and reserved, memory outside the heap, RSS).
  const memoryAtPeak = new Map<string, { heapUsedMb: number; heapTotalMb: number; externalMb: number; rssMb: number }>();
  const lagMaxS = new Map<string, number>();
  const managementOf = new Map<string, string>([["lb", tb.lbManagement], ...tb.serverManagement.map((m, i) => [`server${i + 1}`, m] as [string, string]), ["client", management]]);
  const scrapeRoles = async (): Promise<Map<string, string>> => {
    const texts = new Map<string, string>();
    await Promise.all(
      [...managementOf].map(async ([name, address]) => {
        try {
          texts.set(name, await scrape(address));
        } catch {
          // A role already gone (the client closes its management server when it finishes).
        }
      }),
    );
    return texts;
  };
  const exited = client.exited.then(() => true);
  for (let i = 0; i < 100_000; i++) {
    sample();
    const texts = await scrapeRoles();
    for (const [name, text] of texts) lagMaxS.set(name, Math.max(lagMaxS.get(name) ?? 0, metricSum(text, "qmt_nodejs_eventloop_lag_max_seconds")));
    const clientText = texts.get("client");
    if (clientText !== undefined) {
      const active = metricSum(clientText, "qmt_connections_active");
      if (active > peakActive || (active === peakActive && active > 0 && i % 5 === 0)) {
        for (const [name, text] of texts) {
          const mb = (metric: string) => Math.round(metricSum(text, metric) / 2 ** 20);
          memoryAtPeak.set(name, { heapUsedMb: mb("qmt_nodejs_heap_size_used_bytes"), heapTotalMb: mb("qmt_nodejs_heap_size_total_bytes"), externalMb: mb("qmt_nodejs_external_memory_bytes"), rssMb: mb("qmt_process_resident_memory_bytes") });
        }
      }
      peakActive = Math.max(peakActive, active);
    }
    if (await Promise.race([exited, new Promise<false>((r) => setTimeout(() => r(false), 1000))])) break;
    if (i % 10 === 0) progress(`${Math.round((performance.now() - started) / 1000)} s: peak concurrent ${peakActive}`);
  }
  const lines = readFileSync(output, "utf8").trim().split("\n");
  const summary = JSON.parse(lines.at(-1)!) as {
    successRate: number;
    outcomes: Record<string, number>;
    migrationLatencyOverRtt?: { p50: number; p99: number };
    migrationLatencyMs?: { p50: number; p99: number };
    requests: { latencyMs?: { p50: number; p99: number } };
    failureReasons: Record<string, number>;
    durationMs: number;
  };
  const lbText = await scrape(tb.lbManagement);
  const serverTexts = await Promise.all(tb.serverManagement.map(scrape));
  const serverBytes = serverTexts.reduce((s, t) => s + metricSum(t, "qmt_path_bytes_total"), 0);
  const lbBytes = metricSum(lbText, "qmt_lb_bytes_total") + metricSum(lbText, "qmt_lb_reply_bytes_total");
  sample();
  const rssMbTotal = [...usage.values()].reduce((s, u) => s + u.peakRssMb, 0);
  const cpuS = [...usage.values()].reduce((s, u) => s + u.cpuS, 0);
  progress(`done in ${Math.round((performance.now() - started) / 1000)} s: ${JSON.stringify(summary.outcomes)}`);
  emitResult(
    "scale-10k",
    {
      success_rate: summary.successRate,
      migrated_rate: Number(((summary.outcomes.migrated ?? 0) / CONNECTIONS).toFixed(4)),
      p50_over_rtt: Number((summary.migrationLatencyOverRtt?.p50 ?? NaN).toFixed(3)),
      p99_over_rtt: Number((summary.migrationLatencyOverRtt?.p99 ?? NaN).toFixed(3)),
      rss_mb_total: Math.round(rssMbTotal),
      cpu_s: Number(cpuS.toFixed(1)),
      connections: CONNECTIONS,
      peak_concurrent: peakActive,
      migration_latency_p50_ms: summary.migrationLatencyMs?.p50 ?? NaN,
      migration_latency_p99_ms: summary.migrationLatencyMs?.p99 ?? NaN,
      request_latency_p50_ms: summary.requests.latencyMs?.p50 ?? NaN,
      lb_share_of_bytes: Number((lbBytes / Math.max(1, serverBytes)).toFixed(4)),
    },
    { success_rate: ">= 0.999", rss_mb_total: "<= 1024" },
    {
      processes: Object.fromEntries([...usage.entries()].map(([k, u]) => [k, { peakRssMb: Math.round(u.peakRssMb), cpuS: Number(u.cpuS.toFixed(1)), atPeakConcurrency: memoryAtPeak.get(k) }])),
      outcomes: summary.outcomes,
      // Host-wide (/proc/net/snmp), so it includes anything else sending UDP meanwhile: run on a quiet machine.
      udpReceiveBufferDrops: udpReceiveBufferErrors() - rcvbufErrorsBefore,
      eventLoopLagMaxS: Object.fromEntries([...lagMaxS].map(([k, v]) => [k, Number(v.toFixed(3))])),
      lbDrops: nonZeroSamples(lbText, "qmt_lb_drops_total"),
      serverDrops: serverTexts.map((t) => nonZeroSamples(t, "qmt_drops_total")),
      serverHandshakes: serverTexts.map((t) => nonZeroSamples(t, "qmt_handshakes_total")),
      failureReasons: summary.failureReasons,
      setup: `1 LB + 2 backends + 1 client (16 sockets) on 127.0.0.0/8, ramp ${RAMP_PER_SECOND}/s, rr every ${RR_INTERVAL_MS} ms, HTTP/3`,
      rtt: "the smoothed RTT of the new (direct) path on loopback under load; a ratio near 1 is the floor",
    },
  );
} finally {
  if (client) await kill(client, "SIGKILL");
  await stopAll();
}
