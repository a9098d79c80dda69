/**
 * The validated topology model: what a topology YAML file becomes after `loadTopology()`.
 * Data flows one way (../../../shared/STYLE.md): file → this model → driver calls → plain state objects.
 * Everything here is plain, JSON-serialisable data.
 */

/** Roles a node can have. `generic` runs any command (useful before a role exists, and for tools). */
export const NODE_ROLES = ["lb", "server", "client", "prometheus", "grafana", "generic"] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

/** Kinds of network; `mgmt` is never routed to or from the data networks. */
export const NETWORK_KINDS = ["public", "private", "direct", "mgmt"] as const;
export type NetworkKind = (typeof NETWORK_KINDS)[number];

export interface NetworkSpec {
  name: string;
  kind: NetworkKind;
  /** IPv4 CIDR, e.g. "192.0.2.0/24" (documentation ranges for public sides, private ranges inside). */
  subnet: string;
  /** Optional IPv6 CIDR. */
  subnet6?: string;
}

export interface NodeAddress {
  network: string;
  /** IPv4 address inside the network's subnet. Omitted = allocated by the driver. */
  ipv4?: string;
  ipv6?: string;
}

export interface NodeSpec {
  name: string;
  role: NodeRole;
  /** Image for the docker driver; defaults per role (`qmt/<role>:<version>`). */
  image?: string;
  /** Command override (argv). For the local driver, the process to run. */
  command?: string[];
  env: Record<string, string>;
  addresses: NodeAddress[];
  /** How many replicas of a client node (each its own container/process). Default 1. */
  replicas: number;
  /**
   * Files the node needs before it starts (the run's role configs, CA, certificate): the docker
   * driver copies them into the container (absolute `path`s there); the local driver's nodes read
   * them on the host where `up` wrote them. Never from a topology file: `up` sets them.
   */
  files?: { path: string; content: string; mode?: number }[];
}

/** Impairment knobs, the same for `tc netem` and the userspace impairer. */
export interface ImpairmentSpec {
  delayMs?: number;
  jitterMs?: number;
  /** Distribution of jitter: netem's tables. */
  jitterDistribution?: "uniform" | "normal" | "pareto" | "paretonormal";
  lossPercent?: number;
  lossCorrelationPercent?: number;
  rateBitsPerSecond?: number;
  reorderPercent?: number;
  reorderCorrelationPercent?: number;
  duplicatePercent?: number;
  corruptPercent?: number;
  /** netem's queue limit in packets; computed from rate × delay when omitted (never hidden loss). */
  limitPackets?: number;
  /** Seed so a rerun is the same experiment (userspace impairer; netem has no seed on older kernels). */
  seed?: number;
}

export interface LinkSpec {
  /** Stable name, e.g. "client1-public". Defaults to `${node}-${network}`. */
  name: string;
  node: string;
  network: string;
  /** Direction: `egress` (from the node), `ingress` (to the node) or `both`. */
  direction: "egress" | "ingress" | "both";
  impairment: ImpairmentSpec;
}

export interface ObservabilitySpec {
  prometheus: boolean;
  grafana: boolean;
  /** Scrape interval, in seconds. */
  scrapeIntervalS: number;
}

export interface Topology {
  name: string;
  /** Path of the file it was loaded from, for messages. */
  file: string;
  networks: NetworkSpec[];
  nodes: NodeSpec[];
  links: LinkSpec[];
  observability: ObservabilitySpec;
}
