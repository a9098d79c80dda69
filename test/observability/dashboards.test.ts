/**
 * The Grafana dashboards and the observability stack are built from the documented metrics: every
 * dashboard parses, every PromQL expression names only metrics of node-images/README.md's table,
 * with only their documented labels (and documented values in `=` matchers), and passes Prometheus'
 * own parser (promtool). docker-compose.yml's Prometheus config passes `promtool check config` and
 * names the scrape jobs the dashboards select on. (prometheus.test.ts evaluates the same
 * expressions against a real Prometheus scraping the roles.)
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { REPO } from "../roles/role-processes.ts";
import { dashboardFiles, readDashboardQueries, substituteGrafanaVariables } from "./dashboard-queries.ts";
import { readMetricsTable, seriesNames, valueMatches, type DocumentedMetric } from "./metrics-table.ts";

const table = readMetricsTable();
const queries = readDashboardQueries();
const hasPromtool = spawnSync("promtool", ["--version"], { encoding: "utf8", timeout: 10_000 }).status === 0;
/** Labels every scraped series carries (target labels), and `le` on histogram buckets. */
const TARGET_LABELS = ["job", "instance"];
const tmp = mkdtempSync(join(tmpdir(), "qmt-dashboards-"));

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function rowOf(seriesName: string): DocumentedMetric | undefined {
  return table.find((row) => seriesNames(row).includes(seriesName));
}

function labelsOf(seriesName: string): string[] {
  const row = rowOf(seriesName);
  if (!row) return [];
  return [...row.labels.map((l) => l.name), ...TARGET_LABELS, ...(row.type === "histogram" && seriesName.endsWith("_bucket") ? ["le"] : [])];
}

describe("Grafana dashboards (grafana/dashboards/)", () => {
  it("every dashboard is a JSON document with a uid, a title and panels on the provisioned Prometheus datasource", () => {
    const datasources = parse(readFileSync(join(REPO, "grafana/provisioning/datasources/prometheus.yml"), "utf8")) as { datasources: Array<{ uid: string; type: string }> };
    const uids = new Set(datasources.datasources.filter((d) => d.type === "prometheus").map((d) => d.uid));
    const files = dashboardFiles();
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const d = JSON.parse(readFileSync(file, "utf8")) as { uid?: string; title?: string; panels?: Array<{ type: string; datasource?: { uid?: string }; targets?: unknown[] }> };
      expect(d.uid, file).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
      expect(d.title, file).toBeTruthy();
      const dataPanels = (d.panels ?? []).filter((p) => p.type !== "row");
      expect(dataPanels.length, file).toBeGreaterThan(0);
      for (const p of dataPanels) expect(uids.has(p.datasource?.uid ?? ""), `${file}: a panel's datasource uid ${p.datasource?.uid}`).toBe(true);
    }
  });

  it("every expression references only documented metrics, with their documented labels and values", () => {
    expect(queries.length).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const q of queries) {
      if (q.metrics.length === 0) problems.push(`${q.where}: no qmt_ metric in ${q.expr}`);
      for (const m of q.metrics) if (!rowOf(m)) problems.push(`${q.where}: ${m} is not in the metrics table`);
      for (const m of q.matchers) {
        if (!labelsOf(m.metric).includes(m.label)) problems.push(`${q.where}: ${m.metric}{${m.label}...}: ${m.label} is not a documented label of ${m.metric}`);
        const values = rowOf(m.metric)?.labels.find((l) => l.name === m.label)?.values;
        if (values && (m.op === "=" || m.op === "!=") && !values.some((v) => valueMatches(v, m.value))) {
          problems.push(`${q.where}: ${m.metric}{${m.label}${m.op}"${m.value}"}: not a documented value (${values.join(" | ")})`);
        }
      }
      const allowed = new Set(q.metrics.flatMap(labelsOf));
      for (const l of q.groupingLabels) if (!allowed.has(l)) problems.push(`${q.where}: by/without (${l}): not a label of ${q.metrics.join(", ")}`);
    }
    expect(problems).toEqual([]);
  });

  it("the first dashboard shows connections, handshakes, migrations by result, migration latency quantiles, LB bytes by route, LB savings and drops by reason", () => {
    const exprs = queries.map((q) => q.expr.replace(/\s+/g, " "));
    const has = (what: string, re: RegExp): void => expect(exprs.some((e) => re.test(e)), `a query for ${what}`).toBe(true);
    has("connections", /qmt_connections_active/);
    has("handshakes", /qmt_handshakes_total/);
    has("migrations by result", /by \([^)]*\bresult\b[^)]*\) \(rate\(qmt_migrations_total/);
    has("migration latency quantiles", /histogram_quantile\(0\.\d+, sum by \([^)]*\ble\b[^)]*\) \(rate\(qmt_migration_latency_seconds_bucket/);
    has("LB bytes by route", /by \(route\) \(rate\(qmt_lb_bytes_total/);
    has("LB savings (LB bytes against all bytes)", /qmt_lb_bytes_total.*qmt_lb_reply_bytes_total.*\/ .*qmt_path_bytes_total/);
    has("LB drops by reason", /by \(reason\) \(rate\(qmt_lb_drops_total/);
  });

  it.skipIf(!hasPromtool)(`every expression parses as PromQL (promtool check rules)${hasPromtool ? "" : ": skipped, promtool is not installed (apt-get install prometheus)"}`, () => {
    const file = join(tmp, "dashboard-rules.yml");
    writeFileSync(
      file,
      stringify({ groups: [{ name: "dashboards", rules: queries.map((q, i) => ({ record: `qmt_dashboard:query_${i}`, expr: substituteGrafanaVariables(q.expr) })) }] }),
    );
    const r = spawnSync("promtool", ["check", "rules", file], { encoding: "utf8", timeout: 30_000 });
    expect(`${r.stdout}${r.stderr}`).toContain(`SUCCESS: ${queries.length} rules found`);
    expect(r.status).toBe(0);
  });
});

describe("docker-compose.yml (Prometheus and Grafana for users)", () => {
  const compose = parse(readFileSync(join(REPO, "docker-compose.yml"), "utf8")) as {
    services: Record<string, { volumes?: string[] }>;
    configs: Record<string, { content: string }>;
  };

  it("runs prometheus and grafana, and mounts provisioning and dashboards that exist here", () => {
    expect(Object.keys(compose.services).sort()).toEqual(["grafana", "prometheus"]);
    for (const v of compose.services.grafana!.volumes ?? []) {
      const host = v.split(":")[0]!;
      expect(existsSync(join(REPO, host)), `grafana volume ${host}`).toBe(true);
    }
  });

  it("its Prometheus config scrapes the jobs lb, server and client that the dashboards select on", () => {
    const config = parse(compose.configs.prometheus_config!.content) as { scrape_configs: Array<{ job_name: string }> };
    const jobs = config.scrape_configs.map((s) => s.job_name).sort();
    expect(jobs).toEqual(["client", "lb", "server"]);
    for (const q of queries) for (const m of q.matchers.filter((x) => x.label === "job")) expect(jobs, `${q.where}: job="${m.value}"`).toContain(m.value);
  });

  it.skipIf(!hasPromtool)(`its Prometheus config passes promtool check config${hasPromtool ? "" : ": skipped, promtool is not installed (apt-get install prometheus)"}`, () => {
    const file = join(tmp, "prometheus.yml");
    writeFileSync(file, compose.configs.prometheus_config!.content);
    const r = spawnSync("promtool", ["check", "config", file], { encoding: "utf8", timeout: 30_000 });
    expect(`${r.stdout}${r.stderr}`).toContain("SUCCESS");
    expect(r.status).toBe(0);
  });
});
