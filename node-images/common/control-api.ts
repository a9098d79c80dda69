/**
 * The control API every role serves on its management address: HTTP + JSON, a per-run bearer
 * token, and /metrics beside it (unauthenticated: the management network is the boundary, and
 * Prometheus scrapes it without a secret).
 *
 * Bad input never crashes the process: each failure is a JSON error with a stable code
 * (`{"error":{"code":"MALFORMED_JSON","message":"..."}}`) and is counted in
 * `qmt_control_requests_total{route,outcome}`. The token is compared in constant time (both sides
 * hashed first, so neither the content nor the length leaks through timing).
 *
 * `GET /healthz` answers 200 `{"status":"ok"}` without a token and with no details: a liveness probe
 * for the LB's health checks (node-images/lb/health-check.ts), counted like any route.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Counter } from "prom-client";
import type { z } from "zod";
import { listen, serveMetricsRequest, type MetricsRegistry } from "./metrics.ts";

export const CONTROL_ERROR_CODES = {
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  MALFORMED_JSON: 400,
  INVALID_REQUEST: 400,
  CONFLICT: 409,
  INTERNAL: 500,
} as const;
export type ControlErrorCode = keyof typeof CONTROL_ERROR_CODES;

/** What a handler throws for an expected failure; `code` is what clients match on. */
export class ControlApiError extends Error {
  override readonly name = "ControlApiError";
  readonly code: string;
  readonly status: number;
  constructor(code: ControlErrorCode | string, message: string, status?: number) {
    super(message);
    this.code = code;
    this.status = status ?? CONTROL_ERROR_CODES[code as ControlErrorCode] ?? 400;
  }
}

export type HttpMethod = "GET" | "POST" | "PUT" | "DELETE";

export interface ControlRequest {
  /** `:name` segments of the route's path. */
  params: Record<string, string>;
  /** The parsed JSON body; undefined when the request had none. */
  body: unknown;
}

export interface ControlResponse {
  status?: number;
  body: unknown;
}

export interface ControlRoute {
  method: HttpMethod;
  /** A path template like `/backends/:id/drain`; it is also the `route` label of the metric. */
  path: string;
  handle(request: ControlRequest): ControlResponse | Promise<ControlResponse>;
}

export interface ControlApiOptions {
  address: { host: string; port: number };
  /** The per-run bearer token (at least 16 characters). */
  token: string;
  routes: readonly ControlRoute[];
  /** Serves /metrics and counts requests when given. */
  metrics?: MetricsRegistry;
  /** Largest accepted request body. Default 64 KiB. */
  maxBodyBytes?: number;
  /** Where unexpected handler failures are reported (our bugs). Default: one JSON line on stderr. */
  log?: (entry: Record<string, unknown>) => void;
}

export const MIN_TOKEN_LENGTH = 16;
/** Unauthenticated liveness route of every control API. */
export const HEALTHZ_PATH = "/healthz";
const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

/** Validate a body against a zod schema; the first issue becomes INVALID_REQUEST naming the field. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.length > 0 ? issue.path.join(".") : "(body)";
  throw new ControlApiError("INVALID_REQUEST", `${field}: ${issue.message}`);
}

export class ControlApi implements AsyncDisposable {
  readonly server: Server;
  private constructor(server: Server) {
    this.server = server;
  }

  static async start(options: ControlApiOptions): Promise<ControlApi> {
    if (options.token.length < MIN_TOKEN_LENGTH) {
      throw new ControlApiError("INVALID_REQUEST", `control API token must be at least ${MIN_TOKEN_LENGTH} characters`);
    }
    const handler = new RequestHandler(options);
    const server = createServer((req, res) => {
      handler.handle(req, res).catch((err: unknown) => {
        // handle() answers every failure itself; reaching here means writing the answer failed.
        handler.log({ event: "controlResponseFailed", error: String(err) });
        res.destroy();
      });
    });
    // Slow or stalled clients cannot hold the server: bounded header and request time.
    server.headersTimeout = 5_000;
    server.requestTimeout = 10_000;
    server.on("clientError", (_err, socket) => {
      handler.count("unmatched", "MALFORMED_HTTP");
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
      else socket.destroy();
    });
    await listen(server, options.address);
    return new ControlApi(server);
  }

  get address(): { host: string; port: number } {
    const a = this.server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

interface CompiledRoute {
  route: ControlRoute;
  segments: string[];
}

class RequestHandler {
  private readonly routes: CompiledRoute[];
  private readonly tokenDigest: Buffer;
  private readonly maxBodyBytes: number;
  private readonly metrics: MetricsRegistry | undefined;
  private readonly requests: Counter<"route" | "outcome"> | undefined;
  readonly log: (entry: Record<string, unknown>) => void;

  constructor(options: ControlApiOptions) {
    this.routes = options.routes.map((route) => ({ route, segments: splitPath(route.path) }));
    this.tokenDigest = sha256(options.token);
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.metrics = options.metrics;
    this.requests = options.metrics?.counter(
      "control_requests_total",
      "Control API requests by route template and outcome (ok or an error code such as UNAUTHORIZED, MALFORMED_JSON).",
      ["route", "outcome"],
    );
    this.log = options.log ?? ((entry) => process.stderr.write(`${JSON.stringify({ at: new Date().toISOString(), ...entry })}\n`));
  }

  count(route: string, outcome: string): void {
    this.requests?.inc({ route, outcome });
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.metrics && (await serveMetricsRequest(this.metrics, req, res))) return;
    const url = req.url ?? "/";
    if (url.split("?")[0] === HEALTHZ_PATH) return this.healthz(req, res);
    const segments = splitPath(url.split("?")[0]!);
    const matches = this.routes.map((r) => ({ r, params: matchPath(r.segments, segments) })).filter((m) => m.params !== undefined);
    if (matches.length === 0) return this.fail(req, res, "unmatched", new ControlApiError("NOT_FOUND", `no route for ${req.method} ${url}`));
    const match = matches.find((m) => m.r.route.method === req.method);
    if (!match) {
      const allowed = [...new Set(matches.map((m) => m.r.route.method))].join(", ");
      res.setHeader("allow", allowed);
      return this.fail(req, res, matches[0]!.r.route.path, new ControlApiError("METHOD_NOT_ALLOWED", `${req.method} is not allowed here; use ${allowed}`));
    }
    const routeLabel = match.r.route.path;
    // Authenticate before reading the body: an unauthenticated client cannot make us buffer anything.
    if (!this.authorized(req.headers.authorization)) {
      res.setHeader("www-authenticate", 'Bearer realm="qmt"');
      return this.fail(req, res, routeLabel, new ControlApiError("UNAUTHORIZED", "missing or wrong bearer token"));
    }
    let body: unknown;
    try {
      body = await this.readJsonBody(req);
    } catch (err) {
      return this.fail(req, res, routeLabel, err);
    }
    let response: ControlResponse;
    try {
      response = await match.r.route.handle({ params: match.params!, body });
    } catch (err) {
      return this.fail(req, res, routeLabel, err);
    }
    this.count(routeLabel, "ok");
    sendJson(res, response.status ?? 200, response.body);
  }

  /** Answering at all is the signal: the process runs and its event loop turns. */
  private healthz(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return this.fail(req, res, HEALTHZ_PATH, new ControlApiError("METHOD_NOT_ALLOWED", `${req.method} is not allowed here; use GET`));
    }
    this.count(HEALTHZ_PATH, "ok");
    sendJson(res, 200, { status: "ok" });
  }

  private authorized(header: string | undefined): boolean {
    const match = /^Bearer (.+)$/.exec(header ?? "");
    // Hash first: timingSafeEqual needs equal lengths, and comparing digests hides the token's length.
    return match !== null && timingSafeEqual(sha256(match[1]!), this.tokenDigest);
  }

  private async readJsonBody(req: IncomingMessage): Promise<unknown> {
    const declared = Number(req.headers["content-length"] ?? "0");
    if (declared > this.maxBodyBytes) throw new ControlApiError("BODY_TOO_LARGE", `body of ${declared} bytes exceeds ${this.maxBodyBytes}`);
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      total += chunk.length;
      // Chunked bodies carry no length up front: stop counting as soon as the limit is passed.
      if (total > this.maxBodyBytes) throw new ControlApiError("BODY_TOO_LARGE", `body exceeds ${this.maxBodyBytes} bytes`);
      chunks.push(chunk);
    }
    if (total === 0) return undefined;
    const type = req.headers["content-type"] ?? "application/json";
    if (!/^application\/json\b/i.test(type)) throw new ControlApiError("UNSUPPORTED_MEDIA_TYPE", `expected application/json, got ${type}`);
    const text = Buffer.concat(chunks).toString("utf8");
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new ControlApiError("MALFORMED_JSON", `body is not JSON: ${(err as Error).message}`);
    }
  }

  private fail(req: IncomingMessage, res: ServerResponse, route: string, err: unknown): void {
    const error =
      err instanceof ControlApiError ? err : new ControlApiError("INTERNAL", `internal error: ${err instanceof Error ? err.message : String(err)}`);
    if (!(err instanceof ControlApiError)) this.log({ event: "controlHandlerFailed", route, error: err instanceof Error ? err.stack : String(err) });
    this.count(route, error.code);
    // A request we refuse may still be sending its body: close the connection rather than read it.
    if (!req.complete) res.setHeader("connection", "close");
    sendJson(res, error.status, { error: { code: error.code, message: error.message } });
    if (!req.complete) res.once("finish", () => req.destroy());
  }
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

function splitPath(path: string): string[] {
  return path.split("/").filter((s) => s.length > 0);
}

function matchPath(template: string[], actual: string[]): Record<string, string> | undefined {
  if (template.length !== actual.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < template.length; i++) {
    const t = template[i]!;
    let a: string;
    try {
      a = decodeURIComponent(actual[i]!);
    } catch {
      return undefined; // a malformed %-escape matches nothing: NOT_FOUND
    }
    if (t.startsWith(":")) params[t.slice(1)] = a;
    else if (t !== a) return undefined;
  }
  return params;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body ?? null);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
