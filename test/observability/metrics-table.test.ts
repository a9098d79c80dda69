/**
 * The reader of the metrics table (metrics-table.ts) that the Prometheus and dashboard tests trust:
 * labels, closed value sets, "(as above)", roles, and errors that name the line.
 */
import { describe, expect, it } from "vitest";
import { documentedMetricOf, MetricsTableError, parseMetricsTable, readMetricsTable, valueMatches } from "./metrics-table.ts";

const DOC = `# x

## Metrics

| name | type | labels | unit | meaning |
|---|---|---|---|---|
| \`qmt_a_total\` | counter | \`route\` (route template or \`unmatched\`), \`outcome\` (\`ok\` or a code: \`X\`, \`Y\`) | requests | every role |
| \`qmt_lb_b_total\` | counter | \`route\` = \`cid\` \\| \`hash\` | datagrams | forwarded |
| \`qmt_c_total\` | counter | \`direction\` = \`sent\` \\| \`received\`, \`path\` = \`original\` \\| \`preferred\` | bytes | server and client: bytes |
| \`qmt_d_total\` | counter | \`direction\`, \`path\` (as above) | datagrams | same split |
| \`qmt_e_seconds\` | histogram (buckets: ×0.5, ×1) | | seconds | client: latency; server: switch |
| \`qmt_f_total\` | counter | \`reason\` = \`x\` \\| \`*_timeout\` | things | moves given up |
| \`qmt_g_total\` | counter | \`reason\` (as in \`qmt_f_total\`) | things | client, per connection |

after the table
`;

describe("metrics table reader", () => {
  const rows = parseMetricsTable(DOC, "doc.md");

  it("reads names, types, label names and closed value sets (escaped pipes, commas inside parentheses)", () => {
    expect(rows.map((r) => `${r.name}:${r.type}`)).toEqual([
      "qmt_a_total:counter",
      "qmt_lb_b_total:counter",
      "qmt_c_total:counter",
      "qmt_d_total:counter",
      "qmt_e_seconds:histogram",
      "qmt_f_total:counter",
      "qmt_g_total:counter",
    ]);
    expect(rows[0]!.labels).toEqual([
      { name: "route", values: undefined },
      { name: "outcome", values: undefined },
    ]);
    expect(rows[1]!.labels).toEqual([{ name: "route", values: ["cid", "hash"] }]);
    expect(rows[4]!.labels).toEqual([]);
  });

  it('"(as above)" and "(as in `qmt_x`)" take the values of another row', () => {
    expect(rows[3]!.labels).toEqual([
      { name: "direction", values: undefined },
      { name: "path", values: ["original", "preferred"] },
    ]);
    expect(rows[6]!.labels).toEqual([{ name: "reason", values: ["x", "*_timeout"] }]);
  });

  it("roles: qmt_lb_* the LB, 'every role' all, 'server:'/'client:' as named, else any", () => {
    expect(rows.map((r) => r.roles?.join("+") ?? "any")).toEqual(["lb+server+client", "lb", "server+client", "any", "client+server", "any", "client"]);
  });

  it("histograms are stored as _bucket, _sum and _count; `*` in a documented value is a wildcard", () => {
    expect(documentedMetricOf("qmt_e_seconds_bucket", rows)?.name).toBe("qmt_e_seconds");
    expect(documentedMetricOf("qmt_e_seconds", rows)).toBeUndefined();
    expect(valueMatches("*_timeout", "preferred_address_validation_timeout")).toBe(true);
    expect(valueMatches("*_timeout", "timeout")).toBe(false);
    expect(valueMatches("cid", "cid.")).toBe(false);
  });

  it("a malformed row is an error naming the file and line", () => {
    const bad = DOC.replace("| `qmt_lb_b_total` | counter |", "| `lb_b_total` | counter |");
    expect(() => parseMetricsTable(bad, "doc.md")).toThrow(MetricsTableError);
    expect(() => parseMetricsTable(bad, "doc.md")).toThrow(/^doc\.md:8: name: expected `qmt_\.\.\.`/);
    expect(() => parseMetricsTable("# nothing\n", "doc.md")).toThrow('doc.md: no "## Metrics" section');
  });

  it("node-images/README.md's table reads without error, with unique names", () => {
    const table = readMetricsTable();
    expect(table.length).toBeGreaterThan(0);
    expect(new Set(table.map((r) => r.name)).size).toBe(table.length);
  });
});
