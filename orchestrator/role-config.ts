/**
 * The config files of the real roles (node-images/lb, server, client) for one run: what each node is
 * told about its own addresses and its peers', plus the run's secrets (a CA and one server
 * certificate, the control API token, the QUIC-LB key, the stateless reset key).
 *
 * Two steps, so that `up --dry-run` stays deterministic and secret-free:
 *   - `planRoleConfigs(plan nodes, addressing, secrets?)` builds the configs as plain objects; the
 *     plan calls it with the topology's own addresses and no secrets (placeholders), `up` calls it
 *     again with the addresses the driver actually gave the networks and freshly generated secrets;
 *   - `writeRoleConfigs()` writes them to `<stateDir>/<runId>/roles/` (0600 keys) and returns, per
 *     node, the environment that points the role at its file (`QMT_<ROLE>_CONFIG_FILE`, which every
 *     role's config.ts reads when no `--config` is given) and the control token.
 *
 * Addresses. A node is given, per network, the address peers use (`published`) and the address it
 * binds (`bind`). Docker: both are the topology's address. Local driver: the network's loopback twin
 * (published) and its hidden twin (bind; the driver's relays forward published → hidden). A server
 * can only offer as preferred_address an address it listens on, so on the local driver it offers
 * its hidden direct address, and the client's migrated path bypasses the direct network's relay
 * (no impairment on it; lb-bypass impairs only client1's public side). Management (HTTP: /metrics,
 * the control API, /healthz) binds the published mgmt address on both drivers: the relays are UDP only.
 *
 * Ports (fixed, per node address, so they are the same on both drivers): VIP = the port of the
 * client's QMT_TARGET (default 443), server direct 4433, LB↔server tunnel 4434, management 9100.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createCertificateAuthority, issueCertificate } from "../node-images/common/pki.ts";
import { TopologyInvalidError } from "./errors.ts";
import type { NetworkKind, NodeSpec } from "./topology/model.ts";

export const SERVER_DIRECT_PORT = 4433;
export const TUNNEL_PORT = 4434;
export const MANAGEMENT_PORT = 9100;
export const DEFAULT_VIP_PORT = 443;
/** The name in the server certificate (SNI) besides the backends' addresses. */
export const SERVER_NAME = "server.qmt.test";
/** QUIC-LB (draft-ietf-quic-load-balancers-21 §3): config 0, 1-octet server IDs, 7-octet nonces → 9-octet CIDs. */
const QUIC_LB_SERVER_ID_LENGTH = 1;
const QUIC_LB_NONCE_LENGTH = 7;
/** Roles that get a generated config; other roles run their topology `command:`. */
export const CONFIGURED_ROLES = ["lb", "server", "client"] as const;
export type ConfiguredRole = (typeof CONFIGURED_ROLES)[number];

export function isConfiguredRole(role: string): role is ConfiguredRole {
  return (CONFIGURED_ROLES as readonly string[]).includes(role);
}

/** The run's secrets. Never in a plan, never printed. */
export interface RoleSecrets {
  token: string;
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  quicLbKeyHex: string;
  statelessResetKeyHex: string;
}

/** Where a node's address on a network is, as peers see it and as the node binds it. */
export interface NodeAddressing {
  published(node: NodeSpec, network: string): string;
  bind(node: NodeSpec, network: string): string;
}

/** The config of one role node, as written to its file. Paths inside are absolute on the host (local) or in the container (docker). */
export interface RoleConfig {
  node: string;
  role: ConfiguredRole;
  /** File name under the run's roles/ dir. */
  file: string;
  config: Record<string, unknown>;
  /** One line for `up --dry-run`. */
  summary: string;
}

export interface RoleFileLocation {
  /** Directory the role reads its files from (host path for local, container path for docker). */
  dir: string;
  /**
   * Clients bind 0.0.0.0 (docker): in a container with one interface per network, the kernel then
   * picks the source address per route, so the move to a preferred address on the direct network
   * leaves from the client's direct address (a socket bound to its public address would send with
   * a source the backend cannot answer). On loopback (local) every address is reachable from any.
   */
  wildcardClientBind?: boolean;
}

const PLACEHOLDER = "<generated at up>";

/** A role node's topology entry cannot make a config. Not tied to a line: the plan has expanded replicas. */
function invalid(node: NodeSpec, field: string, expected: string, got: string): TopologyInvalidError {
  return new TopologyInvalidError({ file: currentTopologyFile, line: 0, column: 0, path: `nodes[${node.name}].${field}`, expected, got });
}
/** Set by planRoleConfigs for the messages of `invalid` (the helpers below it do not carry the file). */
let currentTopologyFile = "topology";

/** Topology addresses as is: the plan's (and docker's) view. */
export const topologyAddressing: NodeAddressing = {
  published: (node, network) => topologyAddress(node, network),
  bind: (node, network) => topologyAddress(node, network),
};

function topologyAddress(node: NodeSpec, network: string): string {
  const attachment = node.addresses.find((a) => a.network === network);
  if (attachment === undefined) throw invalid(node, `addresses`, `an address on network ${network} (a ${node.role} needs one)`, "none");
  if (attachment.ipv4 === undefined) throw invalid(node, `addresses[${network}].ipv4`, `a fixed address (a ${node.role}'s peers' configs name it)`, "none");
  return attachment.ipv4;
}

/** The one network of `kind` a node is on (first one when several), or undefined. */
function networkOfKind(node: NodeSpec, kinds: Map<string, NetworkKind>, kind: NetworkKind): string | undefined {
  return node.addresses.find((a) => kinds.get(a.network) === kind)?.network;
}

function requireNetwork(node: NodeSpec, kinds: Map<string, NetworkKind>, kind: NetworkKind): string {
  const network = networkOfKind(node, kinds, kind);
  if (network === undefined) throw invalid(node, "addresses", `an address on a ${kind} network (a ${node.role} needs one)`, "none");
  return network;
}

/** QMT_SERVER_ID "1" → "01" (hex, one octet). */
function serverIdHex(node: NodeSpec): string {
  const text = node.env.QMT_SERVER_ID;
  const id = text === undefined ? Number.NaN : Number(text);
  if (!Number.isInteger(id) || id < 1 || id > 255) throw invalid(node, "env.QMT_SERVER_ID", "an integer 1…255 (the QUIC-LB server ID)", JSON.stringify(text) ?? "none");
  return id.toString(16).padStart(2 * QUIC_LB_SERVER_ID_LENGTH, "0");
}

/** QMT_TARGET "203.0.113.10:443" → the VIP's topology address and port. */
function clientTarget(node: NodeSpec): { ipv4: string | undefined; port: number } {
  const text = node.env.QMT_TARGET;
  if (text === undefined) return { ipv4: undefined, port: DEFAULT_VIP_PORT };
  const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(text);
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) throw invalid(node, "env.QMT_TARGET", '"ip:port" like "203.0.113.10:443"', JSON.stringify(text));
  return { ipv4: m[1]!, port: Number(m[2]) };
}

/** The SANs of the run's server certificate: every backend's published and bound addresses. */
export function serverCertificateAddresses(nodes: NodeSpec[], networks: { name: string; kind: NetworkKind }[], addressing: NodeAddressing): string[] {
  const addresses = new Set<string>();
  for (const node of nodes.filter((n) => n.role === "server")) {
    for (const attachment of node.addresses) {
      if (networks.find((n) => n.name === attachment.network)?.kind === "mgmt") continue;
      addresses.add(addressing.published(node, attachment.network));
      addresses.add(addressing.bind(node, attachment.network));
    }
  }
  return [...addresses].sort();
}

export function generateRoleSecrets(serverAddresses: string[]): RoleSecrets {
  const ca = createCertificateAuthority({ commonName: "qmt run CA" });
  const leaf = issueCertificate(ca, { commonName: SERVER_NAME, dnsNames: [SERVER_NAME], ipAddresses: serverAddresses });
  return {
    token: randomBytes(16).toString("hex"),
    caPem: ca.certPem,
    serverCertPem: leaf.certPem,
    serverKeyPem: leaf.keyPem,
    quicLbKeyHex: randomBytes(16).toString("hex"),
    statelessResetKeyHex: randomBytes(32).toString("hex"),
  };
}

/**
 * The configs of every lb, server and client node without a `command:` (a node with one runs it:
 * the user asked for that). `secrets` undefined → placeholders (the plan).
 */
export function planRoleConfigs(
  topologyFile: string,
  nodes: NodeSpec[],
  networks: { name: string; kind: NetworkKind }[],
  addressing: NodeAddressing,
  location: RoleFileLocation,
  secrets?: RoleSecrets,
): RoleConfig[] {
  currentTopologyFile = topologyFile;
  const kinds = new Map(networks.map((n) => [n.name, n.kind]));
  const configured = nodes.filter((n) => isConfiguredRole(n.role) && n.command === undefined);
  if (configured.length === 0) return [];
  const fileIn = (name: string) => path.posix.join(location.dir, name);
  const quicLb = {
    configs: [{ configId: 0, serverIdLength: QUIC_LB_SERVER_ID_LENGTH, nonceLength: QUIC_LB_NONCE_LENGTH, key: secrets?.quicLbKeyHex ?? PLACEHOLDER }],
  };
  const lbs = configured.filter((n) => n.role === "lb");
  const servers = configured.filter((n) => n.role === "server");
  const clients = configured.filter((n) => n.role === "client");
  const vipPorts = new Set(clients.map((c) => clientTarget(c).port));
  if (vipPorts.size === 0) vipPorts.add(DEFAULT_VIP_PORT);
  const serverIds = new Map<string, string>();
  for (const server of servers) {
    const id = serverIdHex(server);
    const other = [...serverIds.entries()].find(([, v]) => v === id);
    if (other !== undefined) throw invalid(server, "env.QMT_SERVER_ID", `a server ID of its own (node ${other[0]} has it)`, JSON.stringify(server.env.QMT_SERVER_ID));
    serverIds.set(server.name, id);
  }
  const backends = servers.map((server) => {
    // Management (HTTP over TCP) binds the published mgmt address on both drivers: the local driver's relays
    // are UDP only and mgmt is never impaired, so the address `status` prints is where /metrics answers.
    const management = `${addressing.published(server, requireNetwork(server, kinds, "mgmt"))}:${MANAGEMENT_PORT}`;
    return {
      id: server.name,
      serverId: serverIds.get(server.name)!,
      address: `${addressing.published(server, requireNetwork(server, kinds, "private"))}:${TUNNEL_PORT}`,
      healthUrl: `http://${management}/healthz`,
    };
  });

  const result: RoleConfig[] = [];
  for (const lb of lbs) {
    const publicNet = requireNetwork(lb, kinds, "public");
    const vips = [...vipPorts].sort((a, b) => a - b).map((port) => `${addressing.bind(lb, publicNet)}:${port}`);
    const config = {
      vips,
      tunnel: `${addressing.bind(lb, requireNetwork(lb, kinds, "private"))}:${TUNNEL_PORT}`,
      management: `${addressing.published(lb, requireNetwork(lb, kinds, "mgmt"))}:${MANAGEMENT_PORT}`,
      quicLb,
      backends,
    };
    result.push({ node: lb.name, role: "lb", file: `${lb.name}.json`, config, summary: `vips ${vips.join(",")} tunnel ${config.tunnel} backends ${backends.map((b) => `${b.id}=${b.serverId}@${b.address}`).join(",")}` });
  }
  for (const server of servers) {
    // Every direct network the server is on is listened on; the first is offered as
    // preferred_address: QMT_PREFERRED_NETWORK's when set (renumber.yaml), else the first listed.
    const directNetworks = server.addresses.map((a) => a.network).filter((n) => kinds.get(n) === "direct");
    if (directNetworks.length === 0) requireNetwork(server, kinds, "direct");
    const preferredNetwork = server.env.QMT_PREFERRED_NETWORK;
    if (preferredNetwork !== undefined) {
      if (!directNetworks.includes(preferredNetwork)) throw invalid(server, "env.QMT_PREFERRED_NETWORK", `one of the node's direct networks (${directNetworks.join(", ")})`, JSON.stringify(preferredNetwork));
      directNetworks.splice(directNetworks.indexOf(preferredNetwork), 1);
      directNetworks.unshift(preferredNetwork);
    }
    const directs = directNetworks.map((network) => `${addressing.bind(server, network)}:${SERVER_DIRECT_PORT}`);
    const direct = directs[0]!;
    const config = {
      id: server.name,
      serverId: serverIds.get(server.name)!,
      direct: directs,
      tunnel: `${addressing.bind(server, requireNetwork(server, kinds, "private"))}:${TUNNEL_PORT}`,
      management: `${addressing.published(server, requireNetwork(server, kinds, "mgmt"))}:${MANAGEMENT_PORT}`,
      preferredAddress: "direct",
      quicLb,
      statelessResetKey: secrets?.statelessResetKeyHex ?? PLACEHOLDER,
      tls: { certificateFile: fileIn("server.pem"), privateKeyFile: fileIn("server.key") },
      files: [1024, 65536, 1048576],
    };
    result.push({ node: server.name, role: "server", file: `${server.name}.json`, config, summary: `serverId ${config.serverId} tunnel ${config.tunnel} preferred_address ${direct}` });
  }
  for (const client of clients) {
    const target = clientTarget(client);
    const lb = lbs[0];
    let targetAddress: string;
    if (lb !== undefined && (target.ipv4 === undefined || target.ipv4 === topologyAddress(lb, requireNetwork(lb, kinds, "public")))) {
      targetAddress = `${addressing.published(lb, requireNetwork(lb, kinds, "public"))}:${target.port}`;
    } else if (target.ipv4 !== undefined) {
      targetAddress = `${target.ipv4}:${target.port}`; // not one of ours: taken as written
    } else {
      throw invalid(client, "env.QMT_TARGET", '"ip:port" (there is no lb node to default to)', "none");
    }
    const config = {
      target: targetAddress,
      serverName: SERVER_NAME,
      caFile: fileIn("ca.pem"),
      bind: [location.wildcardClientBind === true ? "0.0.0.0:0" : `${addressing.bind(client, requireNetwork(client, kinds, "public"))}:0`],
      management: `${addressing.published(client, requireNetwork(client, kinds, "mgmt"))}:${MANAGEMENT_PORT}`,
      // A testbed runs until `down`: a few long-lived connections doing request/response, so the
      // migration and its metrics are there to look at for as long as the run lives.
      connections: 4,
      rampPerSecond: 4,
      holdMs: 86_400_000,
      mix: { rr: 1, stream: 0, download: 0, echo: 0 },
      rr: { intervalMs: 200, bytes: 0 },
      preferredAddressPolicy: "follow",
      output: fileIn(`${client.name}.connections.jsonl`),
    };
    result.push({ node: client.name, role: "client", file: `${client.name}.json`, config, summary: `target ${targetAddress} bind ${config.bind.join(",")} preferredAddressPolicy follow` });
  }
  return result;
}

/** `QMT_LB_CONFIG_FILE` & co.: each role's config.ts reads it when there is no --config flag. */
export function configFileEnvName(role: ConfiguredRole): string {
  return `QMT_${role.toUpperCase()}_CONFIG_FILE`;
}

/** The files of a run's roles/ dir: the configs, the CA, the server certificate and key. Name → content. */
export function roleFiles(configs: RoleConfig[], secrets: RoleSecrets): Map<string, string> {
  const files = new Map<string, string>();
  files.set("ca.pem", secrets.caPem);
  files.set("server.pem", secrets.serverCertPem);
  files.set("server.key", secrets.serverKeyPem);
  for (const c of configs) files.set(c.file, `${JSON.stringify(c.config, null, 2)}\n`);
  return files;
}

export function roleDir(stateDir: string, runId: string): string {
  return path.join(stateDir, runId, "roles");
}

/** Writes the files (readable by the owner only: they hold keys and the token's twin secrets). */
export async function writeRoleFiles(dir: string, files: Map<string, string>): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const [name, content] of files) {
    const file = path.join(dir, name);
    await writeFile(file, content, { mode: 0o600 });
    await chmod(file, 0o600);
  }
}

/** Removes a run's roles/ dir, and the run dir when nothing else is left in it. */
export async function removeRoleFiles(stateDir: string, runId: string): Promise<void> {
  await rm(roleDir(stateDir, runId), { recursive: true, force: true });
  try {
    await rmdir(path.join(stateDir, runId));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTEMPTY") throw error;
  }
}

/** The host's node-images/ (the local driver runs the roles from the working tree). */
export const NODE_IMAGES_DIR = fileURLToPath(new URL("../node-images/", import.meta.url));

/** V8 flags as node-images/Dockerfile runs the roles (test/roles/role-processes.ts explains them). */
export const ROLE_NODE_FLAGS = ["--max-semi-space-size=8"];

/** The local driver's argv for a role: `node <flags> <repo>/node-images/<role>/main.ts`. */
export function localRoleCommand(role: ConfiguredRole): string[] {
  return ["node", ...ROLE_NODE_FLAGS, path.join(NODE_IMAGES_DIR, role, "main.ts")];
}
