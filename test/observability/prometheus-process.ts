/**
 * A real Prometheus (Debian's `prometheus` package, /usr/bin/prometheus) for tests: a generated
 * config with static targets, a temp TSDB, a free 127.0.0.1 port, and the HTTP API
 * (https://prometheus.io/docs/prometheus/latest/querying/api/). No systemd: the binary is run
 * directly and killed when disposed (`await using prom = await startPrometheus(...)`).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { stringify } from "yaml";
import { freePort, waitFor } from "../roles/role-processes.ts";

/** The binary on PATH (Debian puts it in /usr/bin), or undefined when it is not installed. */
export function findPrometheus(): string | undefined {
  const r = spawnSync("prometheus", ["--version"], { encoding: "utf8", timeout: 10_000 });
  return r.status === 0 ? "prometheus" : undefined;
}

export interface ScrapeJob {
  job: string;
  /** "host:port" of each target's /metrics. */
  targets: string[];
}

export interface PrometheusTarget {
  job: string;
  instance: string;
  health: "up" | "down" | "unknown";
  lastError: string;
}

export interface SeriesLabels {
  __name__: string;
  [label: string]: string;
}

export interface InstantSample {
  metric: Record<string, string>;
  value: [number, string];
}

export class PrometheusApiError extends Error {
  override readonly name = "PrometheusApiError";
  readonly code = "PROMETHEUS_API_ERROR";
}

export class PrometheusProcess implements AsyncDisposable {
  readonly url: string;
  readonly stderr: string[] = [];
  private readonly child: ChildProcess;
  private readonly dir: string;
  private readonly exited: Promise<number | null>;

  constructor(child: ChildProcess, url: string, dir: string) {
    this.child = child;
    this.url = url;
    this.dir = dir;
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    createInterface({ input: child.stderr! }).on("line", (line) => {
      this.stderr.push(line);
      if (this.stderr.length > 500) this.stderr.shift();
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** GET an API path; the `data` field of a success, else a PrometheusApiError with Prometheus' own message. */
  async api<T>(path: string, params: Array<[string, string]> = []): Promise<T> {
    const qs = new URLSearchParams(params).toString();
    const res = await fetch(`${this.url}${path}${qs ? `?${qs}` : ""}`, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { status: string; data?: T; errorType?: string; error?: string };
    if (body.status !== "success") throw new PrometheusApiError(`GET ${path}?${qs}: ${res.status} ${body.errorType ?? ""}: ${body.error ?? "no error message"}`);
    return body.data as T;
  }

  async targets(): Promise<PrometheusTarget[]> {
    const data = await this.api<{ activeTargets: Array<{ labels: Record<string, string>; health: PrometheusTarget["health"]; lastError: string }> }>("/api/v1/targets");
    return data.activeTargets.map((t) => ({ job: t.labels.job!, instance: t.labels.instance!, health: t.health, lastError: t.lastError }));
  }

  /** Every stored series of `seriesName` since `startS` (seconds since the epoch), scraped targets up or gone. */
  series(seriesName: string, startS: number): Promise<SeriesLabels[]> {
    return this.api<SeriesLabels[]>("/api/v1/series", [
      ["match[]", seriesName],
      ["start", String(startS)],
    ]);
  }

  /** Metric names Prometheus holds (from every target). */
  names(): Promise<string[]> {
    return this.api<string[]>("/api/v1/label/__name__/values");
  }

  /** The TYPE lines the active targets expose for a metric family. */
  async metadataTypes(family: string): Promise<string[]> {
    const data = await this.api<Record<string, Array<{ type: string }>>>("/api/v1/metadata", [["metric", family]]);
    return [...new Set((data[family] ?? []).map((m) => m.type))];
  }

  query(promql: string): Promise<{ resultType: string; result: InstantSample[] }> {
    return this.api("/api/v1/query", [["query", promql]]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.running) {
      this.child.kill("SIGTERM");
      // Prometheus flushes its head block on SIGTERM; a temp TSDB needs none of that, so bound the wait.
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Start Prometheus scraping `jobs` every `scrapeIntervalS`; resolves once /-/ready answers 200. */
export async function startPrometheus(binary: string, jobs: ScrapeJob[], opts: { scrapeIntervalS?: number; readyTimeoutMs?: number } = {}): Promise<PrometheusProcess> {
  const dir = mkdtempSync(join(tmpdir(), "qmt-prometheus-"));
  const interval = `${opts.scrapeIntervalS ?? 1}s`;
  const configFile = join(dir, "prometheus.yml");
  writeFileSync(
    configFile,
    stringify({
      global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
      scrape_configs: jobs.map((j) => ({ job_name: j.job, static_configs: [{ targets: j.targets }] })),
    }),
  );
  const port = await freePort("127.0.0.1");
  const child = spawn(
    binary,
    [`--config.file=${configFile}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const prom = new PrometheusProcess(child, `http://127.0.0.1:${port}`, dir);
  try {
    await waitFor(
      `prometheus ready on 127.0.0.1:${port}`,
      async () => {
        if (!prom.running) throw new Error(`prometheus exited before it was ready: ${prom.stderr.slice(-5).join("\n")}`);
        const res = await fetch(`${prom.url}/-/ready`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
        return res?.status === 200;
      },
      opts.readyTimeoutMs ?? 20_000,
    );
  } catch (err) {
    await prom[Symbol.asyncDispose]();
    throw err;
  }
  return prom;
}
