/**
 * The PromQL expressions of the Grafana dashboards in grafana/dashboards/, with what each one
 * references: metric names, label matchers on each metric, and the labels of `by (...)` and
 * `without (...)` clauses. The dashboard test checks them against the metrics table; the Prometheus
 * test evaluates them against a real Prometheus.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const DASHBOARDS_DIR = join(import.meta.dirname, "..", "..", "grafana", "dashboards");

export interface LabelMatcher {
  metric: string;
  label: string;
  op: "=" | "!=" | "=~" | "!~";
  value: string;
}

export interface DashboardQuery {
  file: string;
  panel: string;
  refId: string;
  /** `file: panel "title" refId A`, for failure messages. */
  where: string;
  expr: string;
  /** Every qmt_ name in the expression (series names: histograms as _bucket/_sum/_count). */
  metrics: string[];
  matchers: LabelMatcher[];
  /** Labels named in by (...) / without (...) clauses. */
  groupingLabels: string[];
}

interface Panel {
  title?: string;
  type?: string;
  targets?: Array<{ expr?: string; refId?: string }>;
  panels?: Panel[];
}

export function dashboardFiles(dir = DASHBOARDS_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => join(dir, f));
}

export function readDashboardQueries(dir = DASHBOARDS_DIR): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  for (const file of dashboardFiles(dir)) {
    const dashboard = JSON.parse(readFileSync(file, "utf8")) as { panels?: Panel[] };
    const short = file.slice(file.lastIndexOf("grafana/"));
    const visit = (panels: Panel[] | undefined): void => {
      for (const p of panels ?? []) {
        for (const t of p.targets ?? []) {
          if (t.expr === undefined) continue;
          out.push({
            file: short,
            panel: p.title ?? "(untitled)",
            refId: t.refId ?? "?",
            where: `${short}: panel "${p.title ?? "(untitled)"}" refId ${t.refId ?? "?"}`,
            expr: t.expr,
            ...analysePromql(t.expr),
          });
        }
        visit(p.panels); // collapsed rows hold their panels
      }
    };
    visit(dashboard.panels);
  }
  return out;
}

/** Metric names, matchers and grouping labels of one expression (enough PromQL for our dashboards). */
export function analysePromql(expr: string): Pick<DashboardQuery, "metrics" | "matchers" | "groupingLabels"> {
  const metrics = [...new Set([...expr.matchAll(/\b(qmt_[a-zA-Z0-9_]+)\b/g)].map((m) => m[1]!))];
  const matchers: LabelMatcher[] = [];
  for (const sel of expr.matchAll(/\b(qmt_[a-zA-Z0-9_]+)\s*\{([^}]*)\}/g)) {
    for (const m of sel[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
      matchers.push({ metric: sel[1]!, label: m[1]!, op: m[2] as LabelMatcher["op"], value: m[3]! });
    }
  }
  const groupingLabels = [
    ...new Set(
      [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) =>
        m[1]!
          .split(",")
          .map((s) => s.trim())
          .filter((s) => s !== ""),
      ),
    ),
  ];
  return { metrics, matchers, groupingLabels };
}

/** Grafana's built-in interval variables, replaced by what a test Prometheus with 1 s scrapes can answer. */
export function substituteGrafanaVariables(expr: string): string {
  return expr.replaceAll("$__rate_interval", "1m").replaceAll("$__interval", "5s").replaceAll("$__range", "5m");
}
