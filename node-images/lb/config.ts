/**
 * The LB's configuration: a JSON file (`--config lb.json` or QMT_LB_CONFIG_FILE), flags that
 * override its addresses, and the control token from QMT_CONTROL_TOKEN or `--token-file`.
 * A mistake is an LbConfigError naming the file and field: `lb.json: backends[1].serverId: ...`.
 *
 * {
 *   "vips": ["127.0.0.10:4433"],              // client-facing addresses
 *   "tunnel": "127.0.0.10:4434",              // private address: backends receive from / reply to it
 *   "management": "127.0.0.10:9100",          // control API and /metrics
 *   "quicLb": { "configs": [{ "configId": 0, "serverIdLength": 1, "nonceLength": 7, "key": "<32 hex>" }] },
 *   "backends": [{ "id": "backend1", "serverId": "01", "address": "10.20.0.11:4434",
 *                  "healthUrl": "http://172.20.0.11:9100/healthz" }],   // optional, see health-check.ts
 *   "healthCheck": { "intervalMs": 1000, "timeoutMs": 500, "unhealthyAfter": 3, "healthyAfter": 2 },
 *   "unroutableShortHeader": "hash"           // or "drop" (draft §3.1 SHOULD)
 * }
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { parseArgs } from "node:util";
import { z } from "zod";
import type { QuicLbConfig } from "../quic/quic-lb.ts";
import type { SocketAddress } from "../quic/path.ts";
import { DEFAULT_HEALTH_CHECK, type HealthCheckSettings } from "./health-check.ts";
import type { BackendSpec } from "./router.ts";

export class LbConfigError extends Error {
  override readonly name = "LbConfigError";
  readonly code = "LB_CONFIG_INVALID";
}

export interface LbConfig {
  vips: SocketAddress[];
  tunnel: SocketAddress;
  management: SocketAddress;
  quicLb: QuicLbConfig[];
  backends: Array<BackendSpec & { healthUrl?: string }>;
  healthCheck: HealthCheckSettings;
  unroutableShortHeader: "hash" | "drop";
  token: string;
}

const hexBytes = (what: string) => z.string().regex(/^([0-9a-fA-F]{2})+$/, `expected ${what} as hex octets like "01"`);
const socketAddress = z.string().refine((s) => parseSocketAddress(s) !== undefined, 'expected "ip:port" like "127.0.0.10:4433" or "[::1]:4433"');

/** A backend's health URL: plain HTTP (the management network has no TLS), no credentials in it. */
export const healthUrlSchema = z
  .string()
  .max(2048)
  .refine((s) => {
    const u = URL.parse(s);
    return u !== null && u.protocol === "http:" && u.username === "" && u.password === "" && u.hostname !== "";
  }, 'expected an http URL like "http://172.20.0.11:9100/healthz"');

const fileSchema = z.strictObject({
  vips: z.array(socketAddress).min(1).optional(),
  tunnel: socketAddress.optional(),
  management: socketAddress.optional(),
  quicLb: z.strictObject({
    configs: z
      .array(
        z.strictObject({
          configId: z.number().int().min(0).max(6),
          serverIdLength: z.number().int().min(1).max(15),
          nonceLength: z.number().int().min(4).max(18),
          key: hexBytes("a 16-octet key").refine((k) => k.length === 32, "expected a 16-octet key (32 hex digits)").optional(),
          encodeLength: z.boolean().optional(),
        }),
      )
      .min(1),
  }),
  backends: z
    .array(
      z.strictObject({
        id: z.string().min(1).max(64),
        serverId: hexBytes("the server ID"),
        address: socketAddress,
        state: z.enum(["active", "draining"]).optional(),
        healthUrl: healthUrlSchema.optional(),
      }),
    )
    .default([]),
  // Bounded both ways: no busy polling, and a dead backend is noticed within minutes at worst.
  healthCheck: z
    .strictObject({
      intervalMs: z.number().int().min(50).max(60_000).default(DEFAULT_HEALTH_CHECK.intervalMs),
      timeoutMs: z.number().int().min(10).max(60_000).default(DEFAULT_HEALTH_CHECK.timeoutMs),
      unhealthyAfter: z.number().int().min(1).max(100).default(DEFAULT_HEALTH_CHECK.unhealthyAfter),
      healthyAfter: z.number().int().min(1).max(100).default(DEFAULT_HEALTH_CHECK.healthyAfter),
    })
    .default(DEFAULT_HEALTH_CHECK),
  unroutableShortHeader: z.enum(["hash", "drop"]).default("hash"),
});

export function parseSocketAddress(text: string): SocketAddress | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (!isIP(m[1]!) || !Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  return { address: m[1]!, port };
}

export const LB_USAGE = `usage: node node-images/lb/main.ts --config lb.json [--vip ip:port]... [--tunnel ip:port] [--management ip:port] [--token-file path]

  The control token comes from QMT_CONTROL_TOKEN or --token-file (at least 16 characters).
  Example: QMT_CONTROL_TOKEN=$(openssl rand -hex 16) node node-images/lb/main.ts --config lb.json --vip 127.0.0.10:4433`;

/** Read and validate everything the LB needs. Throws LbConfigError (one line, file and field). */
export function loadLbConfig(argv: string[], env: NodeJS.ProcessEnv): LbConfig {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: "string" },
        vip: { type: "string", multiple: true },
        tunnel: { type: "string" },
        management: { type: "string" },
        "token-file": { type: "string" },
      },
      strict: true,
    }).values;
  } catch (err) {
    throw new LbConfigError(`${(err as Error).message}\n${LB_USAGE}`);
  }
  const file = args.config ?? env.QMT_LB_CONFIG_FILE;
  if (!file) throw new LbConfigError(`--config is required (or QMT_LB_CONFIG_FILE)\n${LB_USAGE}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new LbConfigError(`${file}: cannot read a JSON document: ${(err as Error).message}`);
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new LbConfigError(`${file}: ${formatPath(issue.path)}: ${issue.message}`);
  }
  const c = parsed.data;
  const address = (field: string, flag: string | undefined, fromFile: string | undefined): SocketAddress => {
    const text = flag ?? fromFile;
    if (!text) throw new LbConfigError(`${file}: ${field}: required (in the file or as --${field})`);
    const a = parseSocketAddress(text);
    if (!a) throw new LbConfigError(`--${field}: expected "ip:port", got ${JSON.stringify(text)}`);
    return a;
  };
  const vipTexts = args.vip ?? c.vips;
  if (!vipTexts || vipTexts.length === 0) throw new LbConfigError(`${file}: vips: at least one VIP is required (in the file or as --vip)`);
  const vips = vipTexts.map((v) => address("vip", v, undefined));
  const serverIdLength = c.quicLb.configs[0]!.serverIdLength;
  c.quicLb.configs.forEach((q, i) => {
    if (q.serverIdLength !== serverIdLength) throw new LbConfigError(`${file}: quicLb.configs[${i}].serverIdLength: all configs share one server ID length (${serverIdLength})`);
    if (q.serverIdLength + q.nonceLength > 19) throw new LbConfigError(`${file}: quicLb.configs[${i}].nonceLength: server ID and nonce must sum to at most 19 octets`);
  });
  if (c.healthCheck.timeoutMs > c.healthCheck.intervalMs) {
    throw new LbConfigError(`${file}: healthCheck.timeoutMs: expected at most intervalMs (${c.healthCheck.intervalMs}), got ${c.healthCheck.timeoutMs}`);
  }
  c.backends.forEach((b, i) => {
    if (b.serverId.length / 2 !== serverIdLength) throw new LbConfigError(`${file}: backends[${i}].serverId: expected ${serverIdLength} octet(s), got ${JSON.stringify(b.serverId)}`);
  });
  return {
    vips,
    tunnel: address("tunnel", args.tunnel, c.tunnel),
    management: address("management", args.management, c.management),
    quicLb: c.quicLb.configs.map((q) => ({ ...q, key: q.key ? Buffer.from(q.key, "hex") : undefined })),
    backends: c.backends.map((b) => ({ id: b.id, serverId: Buffer.from(b.serverId, "hex"), address: parseSocketAddress(b.address)!, state: b.state, healthUrl: b.healthUrl })),
    healthCheck: c.healthCheck,
    unroutableShortHeader: c.unroutableShortHeader,
    token: readToken(args["token-file"], env),
  };
}

function readToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv): string {
  let token = env.QMT_CONTROL_TOKEN;
  if (tokenFile) {
    try {
      token = readFileSync(tokenFile, "utf8").trim();
    } catch (err) {
      throw new LbConfigError(`--token-file: cannot read ${tokenFile}: ${(err as Error).message}`);
    }
  }
  if (!token) throw new LbConfigError("the control API needs a token: set QMT_CONTROL_TOKEN or pass --token-file");
  if (token.length < 16) throw new LbConfigError("the control API token must be at least 16 characters");
  return token;
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  if (path.length === 0) return "(document)";
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i > 0 ? "." : ""}${String(p)}`)).join("");
}
