/**
 * Issue 5, "Show": a real Prometheus (Debian's `prometheus` package) scrapes every role, and each
 * series of the metrics table in node-images/README.md is present with exactly its documented labels
 * (histograms as _bucket{…,le}/_sum/_count), its documented type, and label values from the
 * documented closed sets. The other way round too: every `qmt_` series a role exports is in the table.
 * Then every PromQL expression of the Grafana dashboards evaluates against the same Prometheus.
 *
 * The roles run as processes on 127.0.0.0/8 (test/roles/role-processes.ts): the LB, one backend and
 * a client whenever their main.ts exists. Traffic first, so the counters exist: a client connection
 * handshakes through the LB, moves to the backend's direct address and finishes; control requests
 * (one unauthorized); junk datagrams to the backend, its tunnel and the client (counted drops).
 */
import { createSocket } from "node:dgram";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSocketAddress } from "../../node-images/lb/config.ts";
import { clientConfig, freePort, makeRunDir, metricSum, REPO, scrape, startRole, startTestbed, stopAll, waitFor, writeJson, type RoleProcess } from "../roles/role-processes.ts";
import { readDashboardQueries, substituteGrafanaVariables } from "./dashboard-queries.ts";
import { isDefaultProcessMetric, readMetricsTable, seriesNames, valueMatches, type DocumentedMetric, type Role } from "./metrics-table.ts";
import { findPrometheus, startPrometheus, type PrometheusProcess, type SeriesLabels } from "./prometheus-process.ts";

const prometheusBinary = findPrometheus();
const table = readMetricsTable();
const roleExists = (role: Role): boolean => existsSync(join(REPO, "node-images", role, "main.ts"));
const ROLES: Role[] = (["lb", "server", "client"] as const).filter(roleExists);
/** Labels Prometheus adds to every scraped series (the job is our role name). */
const TARGET_LABELS = new Set(["__name__", "job", "instance"]);

let prom: PrometheusProcess | undefined;
/** Seconds since the epoch, before anything was scraped: series queries start here. */
let startS = 0;
/** Every role's management address, by role. */
const management: Partial<Record<Role, string>> = {};

/** Send one datagram and close (loopback only). */
async function sendDatagram(to: string, payload: Buffer): Promise<void> {
  const a = parseSocketAddress(to);
  if (!a) throw new Error(`not an ip:port: ${to}`);
  const socket = createSocket("udp4");
  await new Promise<void>((resolve, reject) => socket.send(payload, a.port, a.address, (err) => (err ? reject(err) : resolve())));
  await new Promise<void>((r) => socket.close(() => r()));
}

async function controlRequest(address: string, path: string, token: string | undefined): Promise<number> {
  const res = await fetch(`http://${address}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5_000) });
  await res.arrayBuffer();
  return res.status;
}

/** The roles a documented row must come from, among those running here. */
function requiredRoles(row: DocumentedMetric): Role[] {
  return (row.roles ?? []).filter((r) => ROLES.includes(r));
}

/** A row is checkable when a role that exports it runs here. */
function checkable(row: DocumentedMetric): boolean {
  return row.roles === undefined ? ROLES.some((r) => r !== "lb") : requiredRoles(row).length > 0;
}

async function storedSeries(row: DocumentedMetric): Promise<Map<string, SeriesLabels[]>> {
  const out = new Map<string, SeriesLabels[]>();
  for (const name of seriesNames(row)) out.set(name, await prom!.series(name, startS));
  return out;
}

/** What is missing for a row to be complete in Prometheus: empty when every series name is there from every required role. */
async function missingFor(row: DocumentedMetric): Promise<string[]> {
  const missing: string[] = [];
  for (const [name, series] of await storedSeries(row)) {
    if (series.length === 0) missing.push(`${name}: no series`);
    for (const role of requiredRoles(row)) if (!series.some((s) => s.job === role)) missing.push(`${name}: nothing from ${role}`);
  }
  return missing;
}

describe.skipIf(prometheusBinary === undefined)(
  `a real Prometheus scrapes every role (${ROLES.join(", ")})${prometheusBinary === undefined ? ": skipped, prometheus is not installed (apt-get install prometheus)" : ""}`,
  () => {
    beforeAll(async () => {
      startS = Math.floor(Date.now() / 1000) - 1;
      let token: string;
      if (ROLES.includes("server")) {
        const tb = await startTestbed({ backends: 1 });
        token = tb.run.token;
        management.lb = tb.lbManagement;
        management.server = tb.serverManagement[0]!;
        // Counted drops on the backend: a datagram no connection knows (endpoint) and a tunnel header with a bad magic (tunnel).
        await sendDatagram(tb.serverDirect[0]!, Buffer.from([0x40]));
        await sendDatagram(String(tb.servers[0]!.ready.tunnel), Buffer.alloc(16));
        if (ROLES.includes("client")) {
          // Two connections: the first starts at once and finishes after 1 s; the second is due 200 s
          // later (ramp), which keeps the client and its /metrics up for the whole test (afterAll kills it).
          const config = clientConfig(tb, { connections: 2, rampPerSecond: 0.005, holdMs: 1000, mix: { rr: 1 }, rr: { intervalMs: 100, bytes: 100 }, output: join(tb.run.dir, "connections.jsonl") });
          const client: RoleProcess = await startRole("client", "client", ["--config", config], { env: { QMT_CONTROL_TOKEN: token } });
          management.client = String(client.ready.management);
          await sendDatagram((client.ready.local as string[])[0]!, Buffer.from([0x40]));
          await waitFor(
            "the client's first connection to finish",
            async () => metricSum(await scrape(management.client!), "qmt_client_connection_outcomes_total") >= 1,
            20_000,
          );
        }
      } else {
        // No backend role yet: the LB alone, with no backends.
        const run = makeRunDir([]);
        token = run.token;
        const ip = "127.0.0.10";
        const file = writeJson(run, "lb.json", {
          vips: [`${ip}:${await freePort(ip)}`],
          tunnel: `${ip}:0`,
          management: `${ip}:0`,
          quicLb: { configs: [{ configId: 0, serverIdLength: 1, nonceLength: 7, key: run.quicLbKeyHex }] },
        });
        const lb = await startRole("lb", "lb", ["--config", file], { env: { QMT_CONTROL_TOKEN: token } });
        management.lb = String(lb.ready.management);
      }
      // Control API on every role: one answered request and one without the token.
      for (const role of ROLES) {
        expect(await controlRequest(management[role]!, "/status", token)).toBe(200);
        expect(await controlRequest(management[role]!, "/status", undefined)).toBe(401);
      }

      prom = await startPrometheus(
        prometheusBinary!,
        ROLES.map((role) => ({ job: role, targets: [management[role]!] })),
        { scrapeIntervalS: 1 },
      );
      await waitFor(
        "every role's target to be up in Prometheus",
        async () => {
          const targets = await prom!.targets();
          return targets.length === ROLES.length && targets.every((t) => t.health === "up");
        },
        20_000,
        200,
      );
      // Every documented series from every role that exports it; a row still missing at the deadline
      // fails in its own test below, with what is missing.
      const rows = table.filter(checkable);
      await waitFor("every documented series in Prometheus", async () => (await Promise.all(rows.map(missingFor))).every((m) => m.length === 0), 20_000, 500).catch(
        (err: unknown) => console.warn(`prometheus.test: ${(err as Error).message}; the rows' own tests say what is missing`),
      );
    }, 120_000);

    afterAll(async () => {
      await prom?.[Symbol.asyncDispose]();
      await stopAll();
    });

    it("every role's /metrics is a target Prometheus scrapes successfully (up)", async () => {
      const targets = await prom!.targets();
      expect(targets.map((t) => `${t.job} ${t.health}${t.lastError ? ` (${t.lastError})` : ""}`).sort()).toEqual(ROLES.map((r) => `${r} up`).sort());
    });

    for (const row of table) {
      const labelText = row.labels.map((l) => l.name).join(", ");
      const test = checkable(row) ? it : it.skip;
      test(`${row.name} (${row.type}${labelText ? `; ${labelText}` : ""}) from ${row.roles?.join(" and ") ?? "a role"}, as node-images/README.md:${row.line} documents`, async () => {
        const problems = await missingFor(row);
        const documented = row.labels.map((l) => l.name).sort();
        for (const [name, series] of await storedSeries(row)) {
          for (const s of series) {
            const names = Object.keys(s).filter((k) => !TARGET_LABELS.has(k) && !(name.endsWith("_bucket") && row.type === "histogram" && k === "le"));
            if (names.sort().join(",") !== documented.join(",")) problems.push(`${name} from ${s.job}: labels {${names.join(", ")}}, documented {${documented.join(", ")}}`);
            if (name.endsWith("_bucket") && row.type === "histogram" && s.le === undefined) problems.push(`${name} from ${s.job}: no le label`);
            for (const l of row.labels) {
              const v = s[l.name];
              if (l.values && v !== undefined && !l.values.some((d) => valueMatches(d, v))) {
                problems.push(`${name} from ${s.job}: ${l.name}="${v}" is not among the documented values (${l.values.join(" | ")})`);
              }
            }
          }
        }
        // The TYPE line the roles expose (Prometheus keeps it per active target).
        const types = await prom!.metadataTypes(row.name);
        if (types.join(",") !== row.type) problems.push(`${row.name}: type ${types.join(", ") || "(no metadata)"}, documented ${row.type}`);
        expect([...new Set(problems)]).toEqual([]);
      });
    }

    it("every qmt_ series a role exports is in the metrics table (prom-client's qmt_process_*/qmt_nodejs_* as a family)", async () => {
      const names = (await prom!.names()).filter((n) => n.startsWith("qmt_"));
      const undocumented = names.filter((n) => !isDefaultProcessMetric(n) && !table.some((row) => seriesNames(row).includes(n)));
      expect(undocumented).toEqual([]);
      // The process family the README promises, from every role.
      const rss = await prom!.series("qmt_process_resident_memory_bytes", startS);
      expect([...new Set(rss.map((s) => s.job))].sort()).toEqual([...ROLES].sort());
    });

    it("every PromQL expression of the Grafana dashboards evaluates here and returns data", async () => {
      const queries = readDashboardQueries();
      expect(queries.length).toBeGreaterThan(0);
      const runnable = queries.filter((q) => q.metrics.every((m) => table.some((row) => seriesNames(row).includes(m) && checkable(row))));
      const failures: string[] = [];
      for (const q of runnable) {
        const promql = substituteGrafanaVariables(q.expr);
        // A query error (PrometheusApiError) ends the wait at once; an empty result is waited on.
        await waitFor(`data for ${q.where}`, async () => (await prom!.query(promql)).result.length > 0, 10_000, 500).catch((err: unknown) =>
          failures.push(`${q.where}: ${promql}: ${(err as Error).message}`),
        );
      }
      expect(failures).toEqual([]);
    });
  },
);
