/**
 * The metrics table of node-images/README.md ("## Metrics"), read as data: the Prometheus test checks
 * every row against what a real Prometheus scraped, and the dashboard test checks every PromQL
 * expression against the rows. A test that reads the docs keeps them honest.
 *
 * A labels cell lists labels separated by top-level commas; each starts with the label name in
 * backticks, optionally followed by `= \`a\` \| \`b\`` (a closed set of values; `*` is a wildcard) or
 * by a parenthesised description (values from an open or elsewhere-described set); "(as above)" and
 * "(as in `qmt_x`)" take the values of the same label in the row above or the named row.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const METRICS_README = join(import.meta.dirname, "..", "..", "node-images", "README.md");

export type MetricType = "counter" | "gauge" | "histogram" | "summary";
export type Role = "lb" | "server" | "client";

export interface DocumentedLabel {
  name: string;
  /** The closed set of values (may hold `*` wildcards), or undefined when the doc gives none. */
  values: string[] | undefined;
}

export interface DocumentedMetric {
  name: string;
  type: MetricType;
  labels: DocumentedLabel[];
  unit: string;
  meaning: string;
  /** The roles the row says export it; undefined when the row names none (any role may). */
  roles: Role[] | undefined;
  /** 1-based line in the README, for failure messages. */
  line: number;
}

export class MetricsTableError extends Error {
  override readonly name = "MetricsTableError";
  readonly code = "METRICS_TABLE_INVALID";
}

export function readMetricsTable(file = METRICS_README): DocumentedMetric[] {
  return parseMetricsTable(readFileSync(file, "utf8"), file);
}

export function parseMetricsTable(markdown: string, file = "README.md"): DocumentedMetric[] {
  const lines = markdown.split("\n");
  const section = lines.findIndex((l) => /^##\s+Metrics\s*$/.test(l));
  if (section < 0) throw new MetricsTableError(`${file}: no "## Metrics" section`);
  const header = lines.findIndex((l, i) => i > section && /^\|\s*name\s*\|\s*type\s*\|\s*labels\s*\|\s*unit\s*\|\s*meaning\s*\|/.test(l));
  if (header < 0) throw new MetricsTableError(`${file}: no "| name | type | labels | unit | meaning |" table under "## Metrics"`);
  const rows: DocumentedMetric[] = [];
  for (let i = header + 2; i < lines.length && lines[i]!.startsWith("|"); i++) {
    const where = `${file}:${i + 1}`;
    const cells = splitRow(lines[i]!);
    if (cells.length !== 5) throw new MetricsTableError(`${where}: expected 5 cells, got ${cells.length}`);
    const [nameCell, typeCell, labelsCell, unit, meaning] = cells as [string, string, string, string, string];
    const name = /^`(qmt_[a-z0-9_]+)`$/.exec(nameCell)?.[1];
    if (!name) throw new MetricsTableError(`${where}: name: expected \`qmt_...\`, got ${JSON.stringify(nameCell)}`);
    const type = /^(counter|gauge|histogram|summary)\b/.exec(typeCell)?.[1] as MetricType | undefined;
    if (!type) throw new MetricsTableError(`${where}: type: expected counter, gauge, histogram or summary, got ${JSON.stringify(typeCell)}`);
    const labels = parseLabels(labelsCell, where).map((l) => resolveSameAs(l, rows, where));
    rows.push({ name, type, labels, unit, meaning, roles: rolesOf(name, meaning), line: i + 1 });
  }
  if (rows.length === 0) throw new MetricsTableError(`${file}: the metrics table has no rows`);
  return rows;
}

/** Cells of a table row; `\|` inside a cell is an escaped pipe, not a separator. */
function splitRow(line: string): string[] {
  const cells: string[] = [];
  let cell = "";
  for (let i = 1; i < line.length; i++) {
    const c = line[i]!;
    if (c === "\\" && line[i + 1] === "|") {
      cell += "|";
      i++;
    } else if (c === "|") {
      cells.push(cell.trim());
      cell = "";
    } else cell += c;
  }
  return cells;
}

type ParsedLabel = DocumentedLabel & { sameAs?: string };

function resolveSameAs(label: ParsedLabel, earlier: readonly DocumentedMetric[], where: string): DocumentedLabel {
  if (label.sameAs === undefined) return { name: label.name, values: label.values };
  const row = label.sameAs === "above" ? earlier.at(-1) : earlier.find((r) => r.name === label.sameAs);
  const source = row?.labels.find((l) => l.name === label.name);
  if (!source) throw new MetricsTableError(`${where}: labels: ${label.name}: "as ${label.sameAs}" names no earlier row with that label`);
  return { name: label.name, values: source.values };
}

function parseLabels(cell: string, where: string): ParsedLabel[] {
  if (cell === "") return [];
  const parts: string[] = [];
  let depth = 0;
  let part = "";
  for (const c of cell) {
    if (c === "(") depth++;
    if (c === ")") depth--;
    if (c === "," && depth === 0) {
      parts.push(part.trim());
      part = "";
    } else part += c;
  }
  parts.push(part.trim());
  return parts.map((p) => {
    const m = /^`([a-zA-Z_][a-zA-Z0-9_]*)`(.*)$/.exec(p);
    if (!m) throw new MetricsTableError(`${where}: labels: expected each label to start with its name in backticks, got ${JSON.stringify(p)}`);
    const rest = m[2]!.trim();
    // "(as above)" and "(as in `qmt_x`)" point at another row's values for the same label.
    const sameAs = /^\(as (above|in `(qmt_[a-z0-9_]+)`)\)$/.exec(rest);
    if (sameAs) return { name: m[1]!, values: undefined, sameAs: sameAs[2] ?? "above" };
    const closed = /^=\s*(.+)$/.exec(rest);
    if (!closed) return { name: m[1]!, values: undefined };
    const values = closed[1]!.split("|").map((v) => /^`([^`]+)`$/.exec(v.trim())?.[1]);
    if (values.some((v) => v === undefined)) throw new MetricsTableError(`${where}: labels: ${m[1]}: expected values like \`a\` \\| \`b\`, got ${JSON.stringify(closed[1])}`);
    return { name: m[1]!, values: values as string[] };
  });
}

/**
 * Which roles export a row: `qmt_lb_*` the LB; "every role" all; otherwise the roles the meaning
 * names as "server:", "client:" or "server and client:". None named: any role may.
 */
function rolesOf(name: string, meaning: string): Role[] | undefined {
  if (name.startsWith("qmt_lb_")) return ["lb"];
  if (/\bevery role\b/.test(meaning)) return ["lb", "server", "client"];
  const roles = new Set<Role>();
  for (const m of meaning.matchAll(/\b(server|client)(?: and (server|client))?[:,]/g)) {
    roles.add(m[1] as Role);
    if (m[2]) roles.add(m[2] as Role);
  }
  return roles.size > 0 ? [...roles] : undefined;
}

/** `*` in a documented value matches any run of characters. */
export function valueMatches(documented: string, observed: string): boolean {
  if (!documented.includes("*")) return documented === observed;
  const re = new RegExp(`^${documented.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
  return re.test(observed);
}

/** The series names Prometheus stores for a documented metric. */
export function seriesNames(metric: DocumentedMetric): string[] {
  if (metric.type === "histogram") return [`${metric.name}_bucket`, `${metric.name}_sum`, `${metric.name}_count`];
  if (metric.type === "summary") return [metric.name, `${metric.name}_sum`, `${metric.name}_count`];
  return [metric.name];
}

/** The documented metric a stored series name belongs to (histogram suffixes resolved), if any. */
export function documentedMetricOf(seriesName: string, table: readonly DocumentedMetric[]): DocumentedMetric | undefined {
  return table.find((m) => seriesNames(m).includes(seriesName));
}

/** prom-client's default process metrics: documented as a family, not row by row. */
export function isDefaultProcessMetric(seriesName: string): boolean {
  return /^qmt_(process|nodejs)_/.test(seriesName);
}
