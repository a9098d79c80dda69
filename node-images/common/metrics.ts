/**
 * Prometheus metrics for every role (prom-client). One registry per process, one prefix for all
 * our series (`qmt_`), names in the base unit (`_seconds`, `_bytes`, `_total`), and label values
 * drawn from closed sets (a route, a reason, a state) so cardinality stays bounded at 10,000
 * connections: never a connection ID, a client address or a port as a label.
 *
 * The table of every series lives in node-images/README.md; a test reads it back from /metrics.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

export const METRIC_PREFIX = "qmt_";

const NAME = /^[a-z][a-z0-9_]*$/;

export class MetricNameError extends Error {
  override readonly name = "MetricNameError";
  readonly code = "METRIC_NAME_INVALID";
}

/** Our registry: prefixes names, checks the naming rules, and keeps one instance per name. */
export class MetricsRegistry {
  readonly registry: Registry;
  readonly prefix: string;

  constructor(options: { prefix?: string; defaultMetrics?: boolean } = {}) {
    this.prefix = options.prefix ?? METRIC_PREFIX;
    this.registry = new Registry();
    // Process metrics (CPU, RSS, event-loop lag) under our prefix: `qmt_process_resident_memory_bytes`.
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: this.prefix });
  }

  counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    // Prometheus convention: counters end in _total (the exposition adds nothing for us).
    if (!name.endsWith("_total")) throw new MetricNameError(`counter ${name} must end in _total`);
    return this.existing(name) ?? new Counter<L>({ name: this.fullName(name), help, labelNames, registers: [this.registry] });
  }

  gauge<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    if (name.endsWith("_total")) throw new MetricNameError(`gauge ${name} must not end in _total`);
    return this.existing(name) ?? new Gauge<L>({ name: this.fullName(name), help, labelNames, registers: [this.registry] });
  }

  /** `buckets` in the metric's unit (seconds for durations). */
  histogram<L extends string = never>(name: string, help: string, buckets: readonly number[], labelNames: readonly L[] = []): Histogram<L> {
    if (!/_(seconds|bytes|ratio)$/.test(name)) throw new MetricNameError(`histogram ${name} must end in its base unit (_seconds, _bytes, _ratio)`);
    return (
      this.existing(name) ??
      new Histogram<L>({ name: this.fullName(name), help, labelNames, buckets: [...buckets], registers: [this.registry] })
    );
  }

  /** The text exposition format. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private fullName(name: string): string {
    if (!NAME.test(name)) throw new MetricNameError(`metric name ${JSON.stringify(name)} must match ${NAME}`);
    if (name.startsWith(this.prefix)) throw new MetricNameError(`metric name ${name} already carries the prefix ${this.prefix}`);
    return this.prefix + name;
  }

  // prom-client throws on a second registration of a name; roles that build parts twice (tests) reuse it.
  private existing<M>(name: string): M | undefined {
    return this.registry.getSingleMetric(this.fullName(name)) as M | undefined;
  }
}

/** Answers GET /metrics; any other request is the caller's to handle (returns false). */
export async function serveMetricsRequest(metrics: MetricsRegistry, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const path = (req.url ?? "/").split("?")[0];
  if (path !== "/metrics") return false;
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "METHOD_NOT_ALLOWED", message: "use GET /metrics" } }));
    return true;
  }
  let body: string;
  try {
    body = await metrics.metrics();
  } catch (err) {
    // A collector failing is our bug; say so to the scraper instead of dropping the connection.
    res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "INTERNAL", message: `metrics collection failed: ${(err as Error).message}` } }));
    return true;
  }
  res.writeHead(200, { "content-type": metrics.contentType });
  res.end(req.method === "HEAD" ? undefined : body);
  return true;
}

/** A server with /metrics only, for a role that has no control API. Resolves once listening. */
export async function serveMetrics(metrics: MetricsRegistry, address: { host: string; port: number }): Promise<Server> {
  const server = createServer((req, res) => {
    void serveMetricsRequest(metrics, req, res).then((served) => {
      if (served) return;
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "NOT_FOUND", message: "only /metrics is served here" } }));
    });
  });
  await listen(server, address);
  return server;
}

export function listen(server: Server, address: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(address.port, address.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}
