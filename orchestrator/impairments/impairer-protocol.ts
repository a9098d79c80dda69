/** What the Docker driver and the impairer sidecar (impairer-agent.ts) say to each other. */
import type { ImpairmentSpec } from "../topology/model.ts";
import type { NetnsRelayStats } from "./netns-relay.ts";

/** The agent's control socket, inside the sidecar's own file system. */
export const CONTROL_SOCKET = "/run/qmt-impairer.sock";
/** How `impair` and `status` name this mechanism. */
export const MECHANISM_NOTE = "userspace impairer (kernel lacks sch_netem)";

export type AgentRequest =
  | { op: "impair"; nodeAddress: string; ingress?: ImpairmentSpec; egress?: ImpairmentSpec }
  | { op: "heal"; nodeAddress: string; directions: ("ingress" | "egress")[] }
  | { op: "status" };

export interface AgentLink {
  iface: string;
  nodeAddress: string;
  ingress: ImpairmentSpec;
  egress: ImpairmentSpec;
  relay: string;
  shadowBlock: string;
  stats: NetnsRelayStats;
}

export type AgentResponse = { ok: true; detail: string[]; links: AgentLink[] } | { ok: false; code: string; message: string };
