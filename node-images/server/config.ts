/**
 * The backend server's configuration: a JSON file (`--config server.json` or QMT_SERVER_CONFIG_FILE),
 * flags that override its addresses, and the control token (QMT_CONTROL_TOKEN or `--token-file`).
 * A mistake is a ServerConfigError naming the file and the field; main.ts prints it and exits 2.
 *
 * {
 *   "id": "backend1",                          // the LB's backend id (status, logs)
 *   "serverId": "01",                          // QUIC-LB server ID, hex, quicLb.configs[0].serverIdLength octets
 *   "direct": ["127.0.0.21:4433"],             // the backend's own addresses: listened on, first offered as preferred_address
 *   "tunnel": "127.0.0.21:4434",               // private address where the LB's tunnelled datagrams arrive (optional: no LB)
 *   "management": "127.0.0.21:9100",           // control API and /metrics
 *   "preferredAddress": "direct",              // "direct" (direct[0]), "none", or one of `direct` as "ip:port"
 *   "quicLb": { "configs": [{ "configId": 0, "serverIdLength": 1, "nonceLength": 7, "key": "<32 hex>" }] },
 *   "statelessResetKey": "<64 hex>",           // the same on every backend behind one VIP (lb/README.md)
 *   "tls": { "certificateFile": "server.pem", "privateKeyFile": "server.key" },
 *   "alpn": ["h3", "hq-interop"],
 *   "files": [1024, 1048576],                  // download sizes served at /files/<bytes> (and GET /<bytes> over hq-interop)
 *   "migrationLatencyBucketsMs": [1, 2, 5],    // around the topology's RTTs
 *   "maxConnections": 20000
 * }
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { z } from "zod";
import { parseSocketAddress } from "../lb/config.ts";
import type { SocketAddress } from "../quic/path.ts";
import type { QuicLbConfig } from "../quic/quic-lb.ts";

export class ServerConfigError extends Error {
  override readonly name = "ServerConfigError";
  readonly code = "SERVER_CONFIG_INVALID";
}

export interface ServerConfig {
  id: string;
  serverId: Buffer | undefined;
  direct: SocketAddress[];
  tunnel: SocketAddress | undefined;
  management: SocketAddress;
  /** The address offered as preferred_address, or undefined for none. */
  preferredAddress: SocketAddress | undefined;
  quicLb: QuicLbConfig[];
  statelessResetKey: Buffer | undefined;
  tls: { certificatePem: string; privateKeyPem: string };
  alpn: string[];
  fileSizesBytes: number[];
  migrationLatencyBucketsMs: number[] | undefined;
  maxConnections: number;
  qlogDir: string | undefined;
  token: string;
}

const hexBytes = (what: string) => z.string().regex(/^([0-9a-fA-F]{2})+$/, `expected ${what} as hex octets like "01"`);
const socketAddress = z.string().refine((s) => parseSocketAddress(s) !== undefined, 'expected "ip:port" like "127.0.0.21:4433"');

const fileSchema = z.strictObject({
  id: z.string().min(1).max(64).default("backend"),
  serverId: hexBytes("the server ID").optional(),
  direct: z.array(socketAddress).min(1).optional(),
  tunnel: socketAddress.optional(),
  management: socketAddress.optional(),
  preferredAddress: z.string().default("direct"),
  quicLb: z
    .strictObject({
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
    })
    .optional(),
  statelessResetKey: hexBytes("a 32-octet key").refine((k) => k.length === 64, "expected a 32-octet key (64 hex digits)").optional(),
  tls: z.strictObject({ certificateFile: z.string().min(1), privateKeyFile: z.string().min(1) }),
  alpn: z.array(z.enum(["h3", "hq-interop"])).min(1).default(["h3", "hq-interop"]),
  files: z.array(z.number().int().min(0).max(1 << 30)).max(32).default([1024, 1 << 20]),
  migrationLatencyBucketsMs: z.array(z.number().positive()).min(1).max(64).optional(),
  maxConnections: z.number().int().min(1).max(1_000_000).default(20_000),
  qlogDir: z.string().min(1).optional(),
});

export const SERVER_USAGE = `usage: node node-images/server/main.ts --config server.json [--direct ip:port]... [--tunnel ip:port] [--management ip:port] [--token-file path]

  The control token comes from QMT_CONTROL_TOKEN or --token-file (at least 16 characters); QLOGDIR enables qlog.
  Example: QMT_CONTROL_TOKEN=$(openssl rand -hex 16) node node-images/server/main.ts --config server.json`;

/** Read and validate everything the server needs. Throws ServerConfigError (one line, file and field). */
export function loadServerConfig(argv: string[], env: NodeJS.ProcessEnv): ServerConfig {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: "string" },
        direct: { type: "string", multiple: true },
        tunnel: { type: "string" },
        management: { type: "string" },
        "token-file": { type: "string" },
      },
      strict: true,
    }).values;
  } catch (err) {
    throw new ServerConfigError(`${(err as Error).message}\n${SERVER_USAGE}`);
  }
  const file = args.config ?? env.QMT_SERVER_CONFIG_FILE;
  if (!file) throw new ServerConfigError(`--config is required (or QMT_SERVER_CONFIG_FILE)\n${SERVER_USAGE}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new ServerConfigError(`${file}: cannot read a JSON document: ${(err as Error).message}`);
  }
  return validateServerConfig(raw, file, { direct: args.direct, tunnel: args.tunnel, management: args.management }, readToken(args["token-file"], env), env);
}

/** Validate a parsed document (exported for tests). `file` names the source in errors. */
export function validateServerConfig(
  raw: unknown,
  file: string,
  flags: { direct?: string[]; tunnel?: string; management?: string },
  token: string,
  env: NodeJS.ProcessEnv = {},
): ServerConfig {
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ServerConfigError(`${file}: ${formatPath(issue.path)}: ${issue.message}`);
  }
  const c = parsed.data;
  const address = (field: string, text: string): SocketAddress => {
    const a = parseSocketAddress(text);
    if (!a) throw new ServerConfigError(`--${field}: expected "ip:port", got ${JSON.stringify(text)}`);
    return a;
  };
  const directTexts = flags.direct ?? c.direct;
  if (!directTexts) throw new ServerConfigError(`${file}: direct: required (in the file or as --direct)`);
  const direct = directTexts.map((t) => address("direct", t));
  const tunnelText = flags.tunnel ?? c.tunnel;
  const managementText = flags.management ?? c.management;
  if (!managementText) throw new ServerConfigError(`${file}: management: required (in the file or as --management)`);

  let preferredAddress: SocketAddress | undefined;
  if (c.preferredAddress === "direct") preferredAddress = direct[0];
  else if (c.preferredAddress !== "none") {
    const pa = parseSocketAddress(c.preferredAddress);
    if (!pa || !direct.some((d) => d.address === pa.address && d.port === pa.port)) {
      throw new ServerConfigError(`${file}: preferredAddress: expected "direct", "none" or one of direct (${directTexts.join(", ")}), got ${JSON.stringify(c.preferredAddress)}`);
    }
    preferredAddress = pa;
  }

  const quicLb = (c.quicLb?.configs ?? []).map((q) => ({ ...q, key: q.key ? Buffer.from(q.key, "hex") : undefined }));
  let serverId: Buffer | undefined;
  if (quicLb.length > 0) {
    if (!c.serverId) throw new ServerConfigError(`${file}: serverId: required with quicLb`);
    serverId = Buffer.from(c.serverId, "hex");
    if (serverId.length !== quicLb[0]!.serverIdLength) throw new ServerConfigError(`${file}: serverId: expected ${quicLb[0]!.serverIdLength} octet(s), got ${JSON.stringify(c.serverId)}`);
    quicLb.forEach((q, i) => {
      if (q.serverIdLength + q.nonceLength > 19) throw new ServerConfigError(`${file}: quicLb.configs[${i}].nonceLength: server ID and nonce must sum to at most 19 octets`);
    });
  }
  if (tunnelText && quicLb.length === 0) throw new ServerConfigError(`${file}: quicLb: required behind an LB (tunnel is set): the LB routes by the server ID in CIDs`);

  const readPem = (field: string, path: string): string => {
    try {
      return readFileSync(path, "utf8");
    } catch (err) {
      throw new ServerConfigError(`${file}: ${field}: cannot read ${path}: ${(err as Error).message}`);
    }
  };
  return {
    id: c.id,
    serverId,
    direct,
    tunnel: tunnelText ? address("tunnel", tunnelText) : undefined,
    management: address("management", managementText),
    preferredAddress,
    quicLb,
    statelessResetKey: c.statelessResetKey ? Buffer.from(c.statelessResetKey, "hex") : undefined,
    tls: { certificatePem: readPem("tls.certificateFile", c.tls.certificateFile), privateKeyPem: readPem("tls.privateKeyFile", c.tls.privateKeyFile) },
    alpn: c.alpn,
    fileSizesBytes: c.files,
    migrationLatencyBucketsMs: c.migrationLatencyBucketsMs,
    maxConnections: c.maxConnections,
    qlogDir: c.qlogDir ?? env.QLOGDIR,
    token,
  };
}

export function readToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv): string {
  let token = env.QMT_CONTROL_TOKEN;
  if (tokenFile) {
    try {
      token = readFileSync(tokenFile, "utf8").trim();
    } catch (err) {
      throw new ServerConfigError(`--token-file: cannot read ${tokenFile}: ${(err as Error).message}`);
    }
  }
  if (!token) throw new ServerConfigError("the control API needs a token: set QMT_CONTROL_TOKEN or pass --token-file");
  if (token.length < 16) throw new ServerConfigError("the control API token must be at least 16 characters");
  return token;
}

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  if (path.length === 0) return "(document)";
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i > 0 ? "." : ""}${String(p)}`)).join("");
}
