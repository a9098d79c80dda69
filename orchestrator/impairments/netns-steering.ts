/**
 * Steers one interface's UDP through the userspace impairer (netns-relay.ts, whose header explains
 * the flows), with nftables inside the node's network namespace. What it touches, and only that:
 *
 * - a route `local <shadow block> dev lo` (AnyIP: every address of the block is local, so the relay
 *   can bind any of them without adding addresses). The block is as large as the interface's subnet
 *   and mirrors it (shadow(P) = block + (P − subnet)); it comes from 198.18.0.0/15 (RFC 2544,
 *   benchmarking), the first aligned block that overlaps no route of the namespace. The relay's own
 *   address is the block's last one (the mirror of the subnet's broadcast address, never a peer).
 * - a table `ip qmt_impair_<iface>` of our own with three NAT chains: prerouting DNATs UDP from the
 *   subnet to the node's address onto the relay's port range, output DNATs the node's own UDP
 *   leaving through the interface onto the same range, postrouting SNATs the shadow block back onto
 *   the subnet (prefix NAT, `snat ip prefix to ip saddr map`), except shadow(A), the node's own
 *   mirror: its sockets cannot take the node's ports (a node socket bound to 0.0.0.0:s holds s on
 *   every local address), so they bind any free port s' and the map `node_ports` { s' : A . s },
 *   filled by the relay as it opens them, SNATs them to the node's address and port.
 * - UDP conntrack entries of the node's address (and its shadow): deleted after the rules are in
 *   (flows started before would keep their old, unsteered NAT state) and after they are removed
 *   (steered flows would keep pointing at the relay). `conntrack -D`; "0 entries deleted" is fine.
 *
 * Applied in that order after the relay has bound its ports, read back (`nft -j list table`, `ip -j
 * route`), and undone in reverse when a step fails. Leftovers of a crashed impairer (tables named
 * qmt_impair_*, local routes of 198.18.0.0/15 on lo) are removed before the first apply.
 */
import type { UdpEndpoint } from "./delivery-scheduler.ts";

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a command in the namespace (in the impairer sidecar), optionally with stdin. */
export type RunCommand = (argv: string[], stdin?: string) => Promise<CommandResult>;

export class SteeringError extends Error {
  override readonly name = "SteeringError";
  readonly code: "STEERING_COMMAND_FAILED" | "STEERING_READBACK_MISMATCH" | "STEERING_NO_BLOCK";
  constructor(code: SteeringError["code"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export const TABLE_PREFIX = "qmt_impair_";
export const SHADOW_POOL = { address: "198.18.0.0", prefixLength: 15 } as const;
/** Relay ports: the kernel gives a flow the lowest port of the range that keeps its reply tuple unique. */
export const RELAY_PORT_BASE = 20000;
/** How many flows one node socket (or one peer socket) may have at once through the relay. */
export const RELAY_PORT_COUNT = 32;

export function ipv4ToInt(address: string): number {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`not an IPv4 address: ${address}`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function intToIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

function blockSize(prefixLength: number): number {
  return 2 ** (32 - prefixLength);
}

function networkOf(address: string, prefixLength: number): number {
  return prefixLength === 0 ? 0 : (ipv4ToInt(address) & (~0 << (32 - prefixLength))) >>> 0;
}

export interface Ipv4Prefix {
  address: string;
  prefixLength: number;
}

function overlaps(a: Ipv4Prefix, b: Ipv4Prefix): boolean {
  const aStart = networkOf(a.address, a.prefixLength);
  const bStart = networkOf(b.address, b.prefixLength);
  return aStart < bStart + blockSize(b.prefixLength) && bStart < aStart + blockSize(a.prefixLength);
}

/** The first block of the pool as large as the subnet that overlaps none of `taken`. */
export function chooseShadowBlock(prefixLength: number, taken: readonly Ipv4Prefix[]): Ipv4Prefix {
  if (prefixLength < SHADOW_POOL.prefixLength) throw new SteeringError("STEERING_NO_BLOCK", `a /${prefixLength} subnet is larger than the shadow pool ${SHADOW_POOL.address}/${SHADOW_POOL.prefixLength}`);
  const start = ipv4ToInt(SHADOW_POOL.address);
  const size = blockSize(prefixLength);
  for (let at = start; at < start + blockSize(SHADOW_POOL.prefixLength); at += size) {
    const candidate = { address: intToIpv4(at), prefixLength };
    if (!taken.some((t) => overlaps(candidate, t))) return candidate;
  }
  throw new SteeringError("STEERING_NO_BLOCK", `no free /${prefixLength} left in ${SHADOW_POOL.address}/${SHADOW_POOL.prefixLength}`);
}

export interface SteeringPlan {
  iface: string;
  table: string;
  nodeAddress: string;
  subnet: Ipv4Prefix;
  block: Ipv4Prefix;
  relayAddress: string;
  relayPortBase: number;
  relayPortCount: number;
}

export function planSteering(opts: { iface: string; nodeAddress: string; prefixLength: number; block: Ipv4Prefix }): SteeringPlan {
  if (!/^[A-Za-z0-9_]+$/.test(opts.iface)) throw new SteeringError("STEERING_COMMAND_FAILED", `interface name ${JSON.stringify(opts.iface)}: only letters, digits and _ make a table name`);
  const subnet = { address: intToIpv4(networkOf(opts.nodeAddress, opts.prefixLength)), prefixLength: opts.prefixLength };
  const blockStart = networkOf(opts.block.address, opts.block.prefixLength);
  return {
    iface: opts.iface,
    table: `${TABLE_PREFIX}${opts.iface}`,
    nodeAddress: opts.nodeAddress,
    subnet,
    block: { address: intToIpv4(blockStart), prefixLength: opts.prefixLength },
    relayAddress: intToIpv4(blockStart + blockSize(opts.prefixLength) - 1),
    relayPortBase: RELAY_PORT_BASE,
    relayPortCount: RELAY_PORT_COUNT,
  };
}

/** shadow(P) for P in the plan's subnet (not its broadcast address, which is the relay's). */
export function shadowOf(plan: SteeringPlan, address: string): string | undefined {
  const offset = ipv4ToInt(address) - ipv4ToInt(plan.subnet.address);
  if (offset < 0 || offset >= blockSize(plan.subnet.prefixLength) - 1) return undefined;
  return intToIpv4(ipv4ToInt(plan.block.address) + offset);
}

function cidr(p: Ipv4Prefix): string {
  return `${p.address}/${p.prefixLength}`;
}

export function relayEndpoint(plan: SteeringPlan): UdpEndpoint {
  return { address: plan.relayAddress, port: plan.relayPortBase };
}

/** The whole table, applied atomically with `nft -f`. */
export function steeringRuleset(plan: SteeringPlan): string {
  const range = `${plan.relayAddress}:${plan.relayPortBase}-${plan.relayPortBase + plan.relayPortCount - 1}`;
  const broadcast = intToIpv4(ipv4ToInt(plan.subnet.address) + blockSize(plan.subnet.prefixLength) - 1);
  const shadowNode = shadowOf(plan, plan.nodeAddress)!;
  return [
    `table ip ${plan.table} {`,
    `  chain prerouting {`,
    `    type nat hook prerouting priority dstnat; policy accept;`,
    `    iifname "${plan.iface}" meta l4proto udp ip saddr ${cidr(plan.subnet)} ip daddr ${plan.nodeAddress} dnat to ${range}`,
    `  }`,
    `  chain output {`,
    `    type nat hook output priority -100; policy accept;`,
    `    oifname "${plan.iface}" meta l4proto udp ip saddr ${plan.nodeAddress} ip daddr != { 224.0.0.0/4, 255.255.255.255, ${broadcast} } dnat to ${range}`,
    `  }`,
    `  map node_ports {`,
    `    type inet_service : ipv4_addr . inet_service;`,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    meta l4proto udp ip saddr ${shadowNode} snat ip to udp sport map @node_ports`,
    `    meta l4proto udp ip saddr ${cidr(plan.block)} ip saddr != { ${shadowNode}, ${plan.relayAddress} } snat ip prefix to ip saddr map { ${cidr(plan.block)} : ${cidr(plan.subnet)} }`,
    `  }`,
    `}`,
    "",
  ].join("\n");
}

/** Adds `shadowPort : A . nodePort` to the node_ports map (netns-relay.ts, when it opens a socket for node port `nodePort`). */
export function mapNodePortArgv(plan: SteeringPlan, shadowPort: number, nodePort: number): string[] {
  return ["nft", "add", "element", "ip", plan.table, "node_ports", `{ ${shadowPort} : ${plan.nodeAddress} . ${nodePort} }`];
}

export async function mapNodePort(run: RunCommand, plan: SteeringPlan, shadowPort: number, nodePort: number): Promise<void> {
  await checked(run, mapNodePortArgv(plan, shadowPort, nodePort));
}

export function routeArgv(op: "add" | "del", plan: SteeringPlan): string[] {
  return ["ip", "route", op, "local", cidr(plan.block), "dev", "lo", "table", "local"];
}

async function checked(run: RunCommand, argv: string[], stdin?: string): Promise<CommandResult> {
  const result = await run(argv, stdin);
  if (result.exitCode !== 0) throw new SteeringError("STEERING_COMMAND_FAILED", `${argv.join(" ")}: exit ${result.exitCode}: ${result.stderr.trim()}`);
  return result;
}

/** `ip -j -4 addr` and `ip -j route` of the namespace, as prefixes a shadow block must not overlap. */
export async function takenPrefixes(run: RunCommand): Promise<Ipv4Prefix[]> {
  const addrs = JSON.parse((await checked(run, ["ip", "-j", "-4", "addr", "show"])).stdout) as { addr_info?: { local?: string; prefixlen?: number }[] }[];
  const taken: Ipv4Prefix[] = [];
  for (const link of addrs) for (const a of link.addr_info ?? []) if (a.local !== undefined && a.prefixlen !== undefined) taken.push({ address: a.local, prefixLength: a.prefixlen });
  for (const table of ["main", "local"]) {
    const routes = JSON.parse((await checked(run, ["ip", "-j", "-4", "route", "show", "table", table])).stdout) as { dst?: string }[];
    for (const r of routes) {
      if (r.dst === undefined || r.dst === "default") continue;
      const [address, length] = r.dst.split("/");
      taken.push({ address: address!, prefixLength: length === undefined ? 32 : Number(length) });
    }
  }
  return taken;
}

/** The interface holding `address`, and its prefix length. */
export async function interfaceOf(run: RunCommand, address: string): Promise<{ iface: string; prefixLength: number }> {
  const addrs = JSON.parse((await checked(run, ["ip", "-j", "-4", "addr", "show"])).stdout) as { ifname: string; addr_info?: { local?: string; prefixlen?: number }[] }[];
  for (const link of addrs) {
    const found = link.addr_info?.find((a) => a.local === address);
    if (found?.prefixlen !== undefined) return { iface: link.ifname, prefixLength: found.prefixlen };
  }
  throw new SteeringError("STEERING_COMMAND_FAILED", `no interface holds ${address} in this namespace`);
}

export async function addShadowRoute(run: RunCommand, plan: SteeringPlan): Promise<string[]> {
  const argv = routeArgv("add", plan);
  await checked(run, argv);
  const shown = JSON.parse((await checked(run, ["ip", "-j", "-4", "route", "show", "table", "local", "type", "local", "dev", "lo"])).stdout) as { dst?: string }[];
  if (!shown.some((r) => r.dst === cidr(plan.block))) {
    await run(routeArgv("del", plan));
    throw new SteeringError("STEERING_READBACK_MISMATCH", `route local ${cidr(plan.block)} dev lo not found after adding it`);
  }
  return [argv.join(" ")];
}

interface NftJsonRule {
  rule?: { chain: string; expr: unknown[] };
}

/** Installs the table, reads it back, and deletes the conntrack entries of flows started before. */
export async function installRules(run: RunCommand, plan: SteeringPlan): Promise<string[]> {
  const ruleset = steeringRuleset(plan);
  await checked(run, ["nft", "-f", "-"], ruleset);
  try {
    const listed = JSON.parse((await checked(run, ["nft", "-j", "list", "table", "ip", plan.table])).stdout) as { nftables: NftJsonRule[] };
    const rules = listed.nftables.flatMap((o) => (o.rule ? [o.rule] : []));
    const text = JSON.stringify(rules);
    const expected = Object.entries({ prerouting: 1, output: 1, postrouting: 2 }).every(([chain, count]) => rules.filter((r) => r.chain === chain).length === count);
    if (!expected || !text.includes(plan.relayAddress) || !text.includes(plan.nodeAddress) || !text.includes(`"${plan.iface}"`)) {
      throw new SteeringError("STEERING_READBACK_MISMATCH", `table ip ${plan.table} read back does not hold the four rules just applied: ${text.slice(0, 400)}`);
    }
  } catch (error) {
    await run(["nft", "delete", "table", "ip", plan.table]); // undo the half-applied change
    throw error;
  }
  const flushed = await flushConntrack(run, plan);
  return [`nft -f - <<EOF\n${ruleset}EOF`, ...flushed];
}

/** `conntrack -D` exits 1 when nothing matched: that is not a failure. */
async function flushConntrack(run: RunCommand, plan: SteeringPlan): Promise<string[]> {
  const shadowNode = shadowOf(plan, plan.nodeAddress);
  const selectors = [["--orig-src", plan.nodeAddress], ["--orig-dst", plan.nodeAddress], ...(shadowNode ? [["--orig-src", shadowNode]] : [])];
  const done: string[] = [];
  for (const selector of selectors) {
    const argv = ["conntrack", "-D", "-p", "udp", ...selector];
    const result = await run(argv);
    if (result.exitCode !== 0 && !/0 flow entries have been deleted/.test(result.stderr)) throw new SteeringError("STEERING_COMMAND_FAILED", `${argv.join(" ")}: exit ${result.exitCode}: ${result.stderr.trim()}`);
    done.push(argv.join(" "));
  }
  return done;
}

/** Removes the table and the route (each only if present), then the flows that pointed at the relay. */
export async function removeSteering(run: RunCommand, plan: SteeringPlan): Promise<string[]> {
  const done: string[] = [];
  const tables = await listOurTables(run);
  if (tables.includes(plan.table)) {
    await checked(run, ["nft", "delete", "table", "ip", plan.table]);
    done.push(`nft delete table ip ${plan.table}`);
  }
  const routes = JSON.parse((await checked(run, ["ip", "-j", "-4", "route", "show", "table", "local", "type", "local", "dev", "lo"])).stdout) as { dst?: string }[];
  if (routes.some((r) => r.dst === cidr(plan.block))) {
    await checked(run, routeArgv("del", plan));
    done.push(routeArgv("del", plan).join(" "));
  }
  done.push(...(await flushConntrack(run, plan)));
  return done;
}

export async function listOurTables(run: RunCommand): Promise<string[]> {
  const listed = JSON.parse((await checked(run, ["nft", "-j", "list", "tables", "ip"])).stdout) as { nftables: { table?: { name: string } }[] };
  return listed.nftables.flatMap((o) => (o.table && o.table.name.startsWith(TABLE_PREFIX) ? [o.table.name] : []));
}

/** What a crashed impairer left: our tables, and local routes of the shadow pool on lo. */
export async function removeLeftovers(run: RunCommand): Promise<string[]> {
  const done: string[] = [];
  for (const table of await listOurTables(run)) {
    await checked(run, ["nft", "delete", "table", "ip", table]);
    done.push(`nft delete table ip ${table}`);
  }
  const routes = JSON.parse((await checked(run, ["ip", "-j", "-4", "route", "show", "table", "local", "type", "local", "dev", "lo"])).stdout) as { dst?: string }[];
  const pool = { address: SHADOW_POOL.address, prefixLength: SHADOW_POOL.prefixLength };
  for (const r of routes) {
    if (r.dst === undefined) continue;
    const [address, length] = r.dst.split("/");
    const prefix = { address: address!, prefixLength: length === undefined ? 32 : Number(length) };
    if (prefix.prefixLength >= SHADOW_POOL.prefixLength && overlaps(prefix, pool)) {
      const argv = ["ip", "route", "del", "local", r.dst, "dev", "lo", "table", "local"];
      await checked(run, argv);
      done.push(argv.join(" "));
    }
  }
  return done;
}
