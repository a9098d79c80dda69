/**
 * A validated topology + a run id → the plain list of what `up` will create, in order.
 * Deterministic: the same file and run id give the same plan (`up --dry-run` uses run id "dryrun").
 *
 * Subnets: the plan keeps the topology's subnets as written. Public/direct networks use the
 * RFC 5737 documentation ranges, which every topology shares, so rewriting only the private ones
 * would not let two runs coexist anyway. Consequence: on one Docker engine, two runs whose
 * subnets overlap cannot coexist (docker refuses the second network: `down` the first). The local
 * driver publishes every network on its own 127.x.0.0/16 slice chosen from the run id, so local
 * runs do coexist.
 *
 * Replicas: a node with `replicas: n > 1` becomes n nodes named `<name>-1` … `<name>-n`, each
 * with `replicas: 1`, so drivers only ever see single nodes.
 */
import path from "node:path";
import type { ImpairmentTarget } from "./drivers/driver.ts";
import { TopologyInvalidError } from "./errors.ts";
import { configFileEnvName, localRoleCommand, planRoleConfigs, roleDir, topologyAddressing, type RoleConfig } from "./role-config.ts";
import type { ImpairmentSpec, NetworkSpec, NodeSpec, Topology } from "./topology/model.ts";

export type DriverKind = "docker" | "local";

export interface PlannedImpairment {
  link: string;
  target: ImpairmentTarget;
  spec: ImpairmentSpec;
}

export interface RunPlan {
  runId: string;
  driver: DriverKind;
  topology: { name: string; file: string };
  /** Created first, in this order. */
  networks: NetworkSpec[];
  /** Started after all networks, in this order. */
  nodes: NodeSpec[];
  /** Applied after all nodes run. */
  impairments: PlannedImpairment[];
  /**
   * The real roles' config files (lb, server, client nodes without a `command:`), with the
   * topology's addresses and placeholders for secrets; `up` writes them with the driver's
   * addresses and the run's secrets into `roleFilesDir`.
   */
  roles: RoleConfig[];
  /** Where the role nodes read their files: a host path (local) or a path in the container (docker). */
  roleFilesDir: string;
  /** Why the role nodes got no configs (also in `notes`), for `validate` and `up` to warn. */
  roleConfigProblem?: string;
  /** Things a user should know about this plan (placeholder nodes, subnet sharing). */
  notes: string[];
}

/** Environment every node gets, so roles know who they are without parsing labels. */
export function nodeIdentityEnv(runId: string, node: string, role: string): Record<string, string> {
  return { QMT_RUN_ID: runId, QMT_NODE: node, QMT_ROLE: role };
}

/** Where docker role containers find their files (copied in before start). */
export const CONTAINER_ROLE_DIR = "/run/qmt";

export function planRun(topology: Topology, opts: { runId: string; driver: DriverKind; stateDir?: string }): RunPlan {
  const roleFilesDir = opts.driver === "docker" ? CONTAINER_ROLE_DIR : roleDir(opts.stateDir ?? path.join(".cache", "runs"), opts.runId);
  const nodes: NodeSpec[] = [];
  const expandedNames = new Map<string, string[]>();
  for (const node of topology.nodes) {
    const names = node.replicas > 1 ? Array.from({ length: node.replicas }, (_, i) => `${node.name}-${i + 1}`) : [node.name];
    expandedNames.set(node.name, names);
    for (const name of names) {
      nodes.push({
        ...node,
        name,
        env: { ...node.env, ...nodeIdentityEnv(opts.runId, name, node.role) },
        addresses: node.addresses.map((a) => ({ ...a })),
        replicas: 1,
      });
    }
  }
  const impairments: PlannedImpairment[] = topology.links.flatMap((link) =>
    (expandedNames.get(link.node) ?? [link.node]).map((node) => ({
      link: link.name,
      target: { node, network: link.network, direction: link.direction },
      spec: { ...link.impairment },
    })));

  // The real roles' configs (lb, server, client nodes without a `command:`). A topology whose role
  // nodes cannot be configured (no fixed address, no target) still plans, as before the roles
  // existed: those nodes get no config, and the notes say why.
  let roles: RoleConfig[] = [];
  let roleConfigProblem: string | undefined;
  const notes: string[] = [];
  try {
    roles = planRoleConfigs(topology.file, nodes, topology.networks, topologyAddressing, { dir: roleFilesDir, wildcardClientBind: opts.driver === "docker" });
  } catch (error) {
    if (!(error instanceof TopologyInvalidError)) throw error;
    roleConfigProblem = `no role configs: ${error.message}`;
    notes.push(roleConfigProblem);
  }
  for (const config of roles) {
    const node = nodes.find((n) => n.name === config.node)!;
    // The local driver runs the role from the working tree; docker runs the image's default command
    // (node-images/<role>/main.ts). Either way the role finds its config through QMT_<ROLE>_CONFIG_FILE.
    if (opts.driver === "local") node.command = localRoleCommand(config.role);
    node.env[configFileEnvName(config.role)] = path.posix.join(roleFilesDir, config.file);
  }
  const placeholders = topology.nodes.filter((n) => n.command?.some((arg) => arg.includes("not built yet")));
  if (placeholders.length > 0) notes.push(`placeholder nodes (their role is not built yet): ${placeholders.map((n) => n.name).join(", ")}`);
  if (opts.driver === "docker") {
    notes.push("subnets are the topology's own: a second run with overlapping subnets on the same Docker engine fails until this one is down");
  } else {
    notes.push("local driver: networks are published on a 127.x slice chosen from the run id; the topology's addresses are kept as host octets");
  }
  return {
    runId: opts.runId,
    driver: opts.driver,
    topology: { name: topology.name, file: topology.file },
    networks: topology.networks.map((n) => ({ ...n })),
    nodes,
    impairments,
    roles,
    roleFilesDir,
    ...(roleConfigProblem !== undefined ? { roleConfigProblem } : {}),
    notes,
  };
}
