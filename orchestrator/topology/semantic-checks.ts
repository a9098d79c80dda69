/**
 * Checks that need the whole file, after the schema: unique names, subnets by network kind
 * (RFC 5737 documentation ranges for networks standing for the Internet, RFC 1918 inside),
 * overlapping subnets, addresses inside their subnet and unique, references between nodes,
 * networks and links, impairments that make sense, mgmt present when observability is on.
 * Returns every finding; the loader reports the one earliest in the file.
 */
import type { TopologyInput } from "./schema.ts";
import {
  cidrContainsAddress, cidrsOverlap, DOCUMENTATION_RANGES, intToIpv4, ipv4ToInt, isWithinAny,
  parseIpv4Cidr, PRIVATE_RANGES, reservedAddresses, type Ipv4Cidr,
} from "./ipv4.ts";

export type FieldPath = (string | number)[];

export interface Finding {
  path: FieldPath;
  expected: string;
  got: string;
  /** Point at the key itself rather than its value (unknown keys). */
  atKey?: boolean;
}

const quote = (s: string) => JSON.stringify(s);

export function semanticFindings(input: TopologyInput): Finding[] {
  const findings: Finding[] = [];
  const add = (path: FieldPath, expected: string, got: string) => findings.push({ path, expected, got });

  // Networks.
  const networks = new Map<string, { index: number; kind: string; cidr: Ipv4Cidr }>();
  input.networks.forEach((network, index) => {
    const cidr = parseIpv4Cidr(network.subnet) as Ipv4Cidr; // the schema checked the form
    const previous = networks.get(network.name);
    if (previous !== undefined) {
      add(["networks", index, "name"], `a network name not used before (networks[${previous.index}])`, quote(network.name));
      return;
    }
    if ((network.kind === "public" || network.kind === "direct") && !isWithinAny(cidr, DOCUMENTATION_RANGES)) {
      // RFC 5737 §3: networks standing for the Internet use documentation space, never real addresses.
      add(["networks", index, "subnet"], `a ${network.kind} subnet inside ${DOCUMENTATION_RANGES.join(", ")} (RFC 5737)`, quote(network.subnet));
    } else if ((network.kind === "private" || network.kind === "mgmt") && !isWithinAny(cidr, PRIVATE_RANGES)) {
      add(["networks", index, "subnet"], `a ${network.kind} subnet inside ${PRIVATE_RANGES.join(", ")} (RFC 1918)`, quote(network.subnet));
    }
    for (const [otherName, other] of networks) {
      if (cidrsOverlap(cidr, other.cidr)) {
        add(["networks", index, "subnet"], `a subnet not overlapping network ${quote(otherName)} (${other.cidr.text})`, quote(network.subnet));
        break;
      }
    }
    networks.set(network.name, { index, kind: network.kind, cidr });
  });

  // Nodes and their addresses.
  const nodes = new Map<string, { index: number; networks: Set<string> }>();
  const takenAddresses = new Map<string, string>(); // ipv4 → "nodes[i].addresses[j]"
  input.nodes.forEach((node, index) => {
    const previous = nodes.get(node.name);
    if (previous !== undefined) {
      add(["nodes", index, "name"], `a node name not used before (nodes[${previous.index}])`, quote(node.name));
      return;
    }
    const attached = new Set<string>();
    node.addresses.forEach((address, addressIndex) => {
      const path: FieldPath = ["nodes", index, "addresses", addressIndex];
      const network = networks.get(address.network);
      if (network === undefined) {
        add([...path, "network"], `one of the networks ${[...networks.keys()].join(", ")}`, quote(address.network));
        return;
      }
      if (attached.has(address.network)) {
        add([...path, "network"], `each network once per node`, quote(address.network));
        return;
      }
      attached.add(address.network);
      if (address.ipv4 === undefined) return;
      if ((node.replicas ?? 1) > 1) {
        add([...path, "ipv4"], `no fixed address on a node with replicas > 1 (each replica needs its own)`, quote(address.ipv4));
        return;
      }
      const value = ipv4ToInt(address.ipv4) as number;
      if (!cidrContainsAddress(network.cidr, value)) {
        add([...path, "ipv4"], `an address inside ${address.network}'s subnet ${network.cidr.text}`, quote(address.ipv4));
        return;
      }
      if (reservedAddresses(network.cidr).includes(value)) {
        const reserved = reservedAddresses(network.cidr).map(intToIpv4).join(", ");
        add([...path, "ipv4"], `a host address other than the network, gateway and broadcast addresses (${reserved})`, quote(address.ipv4));
        return;
      }
      const owner = takenAddresses.get(address.ipv4);
      if (owner !== undefined) {
        add([...path, "ipv4"], `an address not already taken by ${owner}`, quote(address.ipv4));
        return;
      }
      takenAddresses.set(address.ipv4, `nodes[${index}].addresses[${addressIndex}]`);
    });
    nodes.set(node.name, { index, networks: attached });
  });

  // Links.
  const linkNames = new Map<string, number>();
  (input.links ?? []).forEach((link, index) => {
    const path: FieldPath = ["links", index];
    const node = nodes.get(link.node);
    if (node === undefined) {
      add([...path, "node"], `one of the nodes ${[...nodes.keys()].join(", ")}`, quote(link.node));
      return;
    }
    if (!networks.has(link.network)) {
      add([...path, "network"], `one of the networks ${[...networks.keys()].join(", ")}`, quote(link.network));
      return;
    }
    if (!node.networks.has(link.network)) {
      add([...path, "network"], `a network node ${quote(link.node)} is attached to (${[...node.networks].join(", ")})`, quote(link.network));
      return;
    }
    const linkName = link.name ?? `${link.node}-${link.network}`;
    const previous = linkNames.get(linkName);
    if (previous !== undefined) {
      add([...path, link.name === undefined ? "node" : "name"], `a link name not used before (links[${previous}] is also ${quote(linkName)})`, quote(linkName));
      return;
    }
    linkNames.set(linkName, index);
    const impairment = link.impairment;
    const impairmentPath: FieldPath = [...path, "impairment"];
    if (Object.values(impairment).every((v) => v === undefined)) {
      add(impairmentPath, "at least one of delay, jitter, loss, rate, reorder, duplicate, corrupt", "an empty mapping");
    } else if (impairment.jitter !== undefined && impairment.delay === undefined) {
      // tc-netem(8): jitter is a variation of the delay; without a delay there is nothing to vary.
      add([...impairmentPath, "jitter"], "a delay next to the jitter", "jitter without delay");
    } else if (impairment.distribution !== undefined && impairment.jitter === undefined) {
      add([...impairmentPath, "distribution"], "a jitter next to the distribution", "distribution without jitter");
    } else if (impairment.reorder !== undefined && impairment.delay === undefined) {
      // tc-netem(8): reordering sends some packets at once while the rest wait for the delay.
      add([...impairmentPath, "reorder"], "a delay next to reorder (netem reorders by not delaying some packets)", "reorder without delay");
    } else if (impairment.lossCorrelation !== undefined && impairment.loss === undefined) {
      add([...impairmentPath, "lossCorrelation"], "a loss next to lossCorrelation", "lossCorrelation without loss");
    } else if (impairment.reorderCorrelation !== undefined && impairment.reorder === undefined) {
      add([...impairmentPath, "reorderCorrelation"], "a reorder next to reorderCorrelation", "reorderCorrelation without reorder");
    }
  });

  // Observability: Prometheus and Grafana live on mgmt, never routed to the data networks.
  const observability = input.observability;
  if ((observability?.prometheus === true || observability?.grafana === true) && ![...networks.values()].some((n) => n.kind === "mgmt")) {
    add(["observability"], "a network of kind mgmt when prometheus or grafana is on", "no mgmt network");
  }
  return findings;
}
