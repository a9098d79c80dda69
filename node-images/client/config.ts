/**
 * The load generator's configuration: a JSON file (`--config client.json` or QMT_CLIENT_CONFIG_FILE)
 * and flags that override the most used fields. A mistake is a ClientConfigError naming the file and
 * the field; main.ts prints it and exits 2.
 *
 * {
 *   "target": "127.0.0.10:4433",                 // the VIP (or a server's address)
 *   "serverName": "server.test",                 // SNI, checked against the certificate
 *   "caFile": "ca.pem",                          // the run's CA
 *   "bind": ["127.0.0.1:0"],                     // local sockets; connections are spread over them
 *   "management": "127.0.0.1:9101",              // /metrics (and GET /status with the token)
 *   "connections": 1000,                         // concurrent connections, at most 10,000
 *   "rampPerSecond": 500,                        // new connections per second
 *   "holdMs": 5000,                              // each connection runs its workload this long after its handshake
 *   "mix": { "rr": 1, "stream": 0, "download": 0, "echo": 0 },   // workload weights
 *   "rr": { "intervalMs": 100, "bytes": 0 },
 *   "stream": { "rateBytesPerSecond": 20000 },
 *   "download": { "bytes": 1048576 },
 *   "echo": { "intervalMs": 200, "bytes": 64 },
 *   "preferredAddressPolicy": "follow",          // follow | ignore | validate-only
 *   "handshakeTimeoutMs": 10000,
 *   "output": "connections.jsonl",               // one JSON line per connection, then a summary; "-" = stdout
 *   "migrationLatencyBucketsMs": [1, 2, 5]       // around the topology's RTTs
 * }
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { z } from "zod";
import { parseSocketAddress } from "../lb/config.ts";
import type { PreferredAddressPolicy } from "../quic/migration.ts";
import type { SocketAddress } from "../quic/path.ts";

export class ClientConfigError extends Error {
  override readonly name = "ClientConfigError";
  readonly code = "CLIENT_CONFIG_INVALID";
}

export const MAX_CONNECTIONS = 10_000;
export const WORKLOAD_KINDS = ["rr", "stream", "download", "echo"] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

export interface ClientConfig {
  target: SocketAddress;
  serverName: string;
  caPem: string;
  bind: SocketAddress[];
  management: SocketAddress | undefined;
  connections: number;
  rampPerSecond: number;
  holdMs: number;
  mix: Record<WorkloadKind, number>;
  rr: { intervalMs: number; bytes: number };
  stream: { rateBytesPerSecond: number };
  download: { bytes: number };
  echo: { intervalMs: number; bytes: number };
  preferredAddressPolicy: PreferredAddressPolicy;
  handshakeTimeoutMs: number;
  output: string | undefined;
  migrationLatencyBucketsMs: number[] | undefined;
  token: string | undefined;
}

const socketAddress = z.string().refine((s) => parseSocketAddress(s) !== undefined, 'expected "ip:port" like "127.0.0.10:4433"');

const fileSchema = z.strictObject({
  target: socketAddress.optional(),
  serverName: z.string().min(1).max(253).default("localhost"),
  caFile: z.string().min(1).optional(),
  bind: z.array(socketAddress).min(1).max(64).default(["127.0.0.1:0"]),
  management: socketAddress.optional(),
  connections: z.number().int().min(1).max(MAX_CONNECTIONS).default(100),
  rampPerSecond: z.number().positive().max(100_000).default(1000),
  holdMs: z.number().int().min(0).max(86_400_000).default(5000),
  mix: z
    .strictObject({ rr: z.number().min(0).default(0), stream: z.number().min(0).default(0), download: z.number().min(0).default(0), echo: z.number().min(0).default(0) })
    .refine((m) => m.rr + m.stream + m.download + m.echo > 0, "expected at least one workload with a weight above 0")
    .default({ rr: 1, stream: 0, download: 0, echo: 0 }),
  rr: z.strictObject({ intervalMs: z.number().int().min(1).max(3_600_000).default(100), bytes: z.number().int().min(0).max(65_536).default(0) }).default({ intervalMs: 100, bytes: 0 }),
  stream: z.strictObject({ rateBytesPerSecond: z.number().int().min(1).max(50 * 1024 * 1024).default(20_000) }).default({ rateBytesPerSecond: 20_000 }),
  download: z.strictObject({ bytes: z.number().int().min(0).max(1 << 30).default(1 << 20) }).default({ bytes: 1 << 20 }),
  echo: z.strictObject({ intervalMs: z.number().int().min(1).max(3_600_000).default(200), bytes: z.number().int().min(0).max(65_536).default(64) }).default({ intervalMs: 200, bytes: 64 }),
  preferredAddressPolicy: z.enum(["follow", "ignore", "validate-only"]).default("follow"),
  handshakeTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
  output: z.string().min(1).optional(),
  migrationLatencyBucketsMs: z.array(z.number().positive()).min(1).max(64).optional(),
});

export const CLIENT_USAGE = `usage: node node-images/client/main.ts --config client.json [--target ip:port] [--connections N] [--management ip:port] [--output file.jsonl]

  Example: node node-images/client/main.ts --config client.json --connections 1000 --output -`;

export function loadClientConfig(argv: string[], env: NodeJS.ProcessEnv): ClientConfig {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: "string" },
        target: { type: "string" },
        connections: { type: "string" },
        management: { type: "string" },
        output: { type: "string" },
      },
      strict: true,
    }).values;
  } catch (err) {
    throw new ClientConfigError(`${(err as Error).message}\n${CLIENT_USAGE}`);
  }
  const file = args.config ?? env.QMT_CLIENT_CONFIG_FILE;
  if (!file) throw new ClientConfigError(`--config is required (or QMT_CLIENT_CONFIG_FILE)\n${CLIENT_USAGE}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new ClientConfigError(`${file}: cannot read a JSON document: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new ClientConfigError(`${file}: (document): expected a JSON object`);
  const merged: Record<string, unknown> = { ...(raw as Record<string, unknown>) };
  if (args.target) merged.target = args.target;
  if (args.management) merged.management = args.management;
  if (args.output) merged.output = args.output;
  if (args.connections) {
    const n = Number(args.connections);
    if (!Number.isInteger(n)) throw new ClientConfigError(`--connections: expected an integer, got ${JSON.stringify(args.connections)}`);
    merged.connections = n;
  }
  return validateClientConfig(merged, file, env);
}

export function validateClientConfig(raw: unknown, file: string, env: NodeJS.ProcessEnv = {}): ClientConfig {
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ClientConfigError(`${file}: ${formatPath(issue.path)}: ${issue.message}`);
  }
  const c = parsed.data;
  if (!c.target) throw new ClientConfigError(`${file}: target: required (in the file or as --target)`);
  if (!c.caFile) throw new ClientConfigError(`${file}: caFile: required (the run's CA certificate, PEM)`);
  let caPem: string;
  try {
    caPem = readFileSync(c.caFile, "utf8");
  } catch (err) {
    throw new ClientConfigError(`${file}: caFile: cannot read ${c.caFile}: ${(err as Error).message}`);
  }
  const token = env.QMT_CONTROL_TOKEN;
  if (token !== undefined && token.length < 16) throw new ClientConfigError("QMT_CONTROL_TOKEN: the control API token must be at least 16 characters");
  return {
    target: parseSocketAddress(c.target)!,
    serverName: c.serverName,
    caPem,
    bind: c.bind.map((b) => parseSocketAddress(b)!),
    management: c.management ? parseSocketAddress(c.management) : undefined,
    connections: c.connections,
    rampPerSecond: c.rampPerSecond,
    holdMs: c.holdMs,
    mix: c.mix,
    rr: c.rr,
    stream: c.stream,
    download: c.download,
    echo: c.echo,
    preferredAddressPolicy: c.preferredAddressPolicy,
    handshakeTimeoutMs: c.handshakeTimeoutMs,
    output: c.output,
    migrationLatencyBucketsMs: c.migrationLatencyBucketsMs,
    token,
  };
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  if (path.length === 0) return "(document)";
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i > 0 ? "." : ""}${String(p)}`)).join("");
}
