/**
 * Topology file → validated model. `parseTopology` parses with `yaml` keeping source positions
 * (parseDocument + LineCounter), validates the shape with zod (schema.ts), then runs the checks
 * that need the whole file (semantic-checks.ts). The FIRST problem in the file is thrown as a
 * TopologyInvalidError with file:line:column, the field path in the user's keys, what was expected
 * and what was found.
 */
import { readFile } from "node:fs/promises";
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from "yaml";
import { z } from "zod";
import { TopologyInvalidError, TopologyUnreadableError } from "../errors.ts";
import type { ImpairmentSpec, LinkSpec, NodeSpec, Topology } from "./model.ts";
import { topologySchema, type ExpectedParams, type ImpairmentInput, type TopologyInput } from "./schema.ts";
import { semanticFindings, type FieldPath, type Finding } from "./semantic-checks.ts";

export async function loadTopology(file: string): Promise<Topology> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message;
    throw new TopologyUnreadableError(file, reason, { cause: error });
  }
  return parseTopology(text, file);
}

/** `file` is only used in messages and kept in the model. */
export function parseTopology(text: string, file: string): Topology {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const located = (offset: number | undefined, finding: Finding) => {
    const position = offset === undefined ? { line: 0, col: 0 } : lineCounter.linePos(offset);
    return new TopologyInvalidError({ file, line: position.line, column: position.col, path: formatPath(finding.path), expected: finding.expected, got: finding.got });
  };

  const syntaxError = doc.errors[0];
  if (syntaxError !== undefined) {
    const reason = syntaxError.message.split("\n")[0] ?? syntaxError.code;
    throw located(syntaxError.pos[0], { path: [], expected: "valid YAML", got: `a syntax error (${reason})` });
  }
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    throw new TopologyInvalidError({ file, line: 1, column: 1, path: "", expected: "a mapping with name, networks and nodes", got: "an empty document" });
  }

  const result = topologySchema.safeParse(doc.toJS());
  if (!result.success) {
    const findings = result.error.issues.map((issue) => issueToFinding(issue, doc));
    const first = earliest(findings, doc);
    throw located(first.offset, first.finding);
  }
  const findings = semanticFindings(result.data);
  if (findings.length > 0) {
    const first = earliest(findings, doc);
    throw located(first.offset, first.finding);
  }
  return toModel(result.data, file);
}

/** ["links", 2, "impairment", "delay"] → "links[2].impairment.delay" */
export function formatPath(path: FieldPath): string {
  return path.reduce<string>((text, segment) =>
    typeof segment === "number" ? `${text}[${segment}]` : text === "" ? segment : `${text}.${segment}`, "");
}

/**
 * The finding earliest in the file. A missing field has no position of its own: it is reported
 * at the start of the mapping that lacks it, but sorted at that mapping's end, so problems written
 * inside the mapping come first.
 */
function earliest(findings: Finding[], doc: Document): { finding: Finding; offset: number | undefined } {
  const located = findings.map((finding) => ({ finding, ...positionOf(doc, finding.path, finding.atKey === true) }));
  located.sort((a, b) => (a.sortKey ?? Infinity) - (b.sortKey ?? Infinity));
  const first = located[0] as (typeof located)[number];
  return { finding: first.finding, offset: first.offset };
}

/** Start offset of the node at `path` (a key's own position for unknown keys), or of its nearest existing ancestor. */
function positionOf(doc: Document, path: FieldPath, atKey: boolean): { offset: number | undefined; sortKey: number | undefined } {
  if (atKey && path.length > 0) {
    const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
    const pair = isMap(parent) ? parent.items.find((item) => isScalar(item.key) && item.key.value === path[path.length - 1]) : undefined;
    if (pair !== undefined && isScalar(pair.key) && pair.key.range) return { offset: pair.key.range[0], sortKey: pair.key.range[0] };
  }
  for (let length = path.length; length >= 0; length--) {
    const prefix = path.slice(0, length);
    const node = prefix.length === 0 ? doc.contents : doc.getIn(prefix, true);
    if (node !== undefined && node !== null && typeof node === "object" && "range" in node) {
      const range = (node as Node).range;
      if (range !== undefined && range !== null) return { offset: range[0], sortKey: length === path.length ? range[0] : range[1] };
    }
    // A key that is there but whose node is not (an unknown key's value, an empty value): the key.
    const parent = length === 0 ? undefined : length === 1 ? doc.contents : doc.getIn(path.slice(0, length - 1), true);
    if (isMap(parent)) {
      const pair = parent.items.find((item) => isScalar(item.key) && item.key.value === path[length - 1]);
      if (pair !== undefined && isScalar(pair.key) && pair.key.range) return { offset: pair.key.range[0], sortKey: pair.key.range[0] };
    }
  }
  return { offset: undefined, sortKey: undefined };
}

function nodeAt(doc: Document, path: FieldPath): unknown {
  return path.length === 0 ? doc.contents : doc.getIn(path, true);
}

/** How a value found in the file reads in a message: `"fast"`, `5`, `a mapping`, `nothing`. */
function describeFound(node: unknown): string {
  if (node === undefined || node === null) return "nothing";
  if (isScalar(node)) return node.value === null ? "nothing" : JSON.stringify(node.value);
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a list";
  if (isPair(node)) return "a key";
  return String(node);
}

const TYPE_WORDS: Record<string, string> = {
  string: "a string", number: "a number", boolean: "true or false", object: "a mapping", array: "a list", record: "a mapping",
};

function issueToFinding(issue: z.core.$ZodIssue, doc: Document): Finding {
  const path = issue.path.filter((s): s is string | number => typeof s !== "symbol");
  switch (issue.code) {
    case "unrecognized_keys": {
      const key = issue.keys[0] as string;
      const allowed = allowedKeys(path);
      return { path: [...path, key], expected: `one of the keys ${allowed.join(", ")}`, got: `unknown key ${JSON.stringify(key)}`, atKey: true };
    }
    case "invalid_type":
      return { path, expected: TYPE_WORDS[issue.expected] ?? issue.expected, got: describeFound(nodeAt(doc, path)) };
    case "invalid_value":
      return { path, expected: `one of ${issue.values.map((v) => String(v)).join(", ")}`, got: describeFound(nodeAt(doc, path)) };
    case "too_small":
      return {
        path,
        expected: issue.origin === "array" ? `at least ${String(issue.minimum)} entr${issue.minimum === 1 ? "y" : "ies"}` : issue.origin === "string" ? "a non-empty string" : `a value of at least ${String(issue.minimum)}`,
        got: issue.origin === "array" ? "an empty list" : describeFound(nodeAt(doc, path)),
      };
    case "custom": {
      const params = issue.params as ExpectedParams | undefined;
      return { path, expected: params?.expected ?? issue.message, got: describeFound(nodeAt(doc, path)) };
    }
    default:
      return { path, expected: issue.message, got: describeFound(nodeAt(doc, path)) };
  }
}

/** The keys the strict object at `path` allows, read from the schema itself. */
function allowedKeys(path: FieldPath): string[] {
  let schema: z.core.$ZodType = topologySchema;
  for (const segment of path) {
    while (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault) schema = schema.unwrap();
    if (schema instanceof z.ZodObject && typeof segment === "string") schema = schema.shape[segment] as z.core.$ZodType;
    else if (schema instanceof z.ZodArray && typeof segment === "number") schema = schema.element;
    else return [];
  }
  while (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault) schema = schema.unwrap();
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

function toImpairment(input: ImpairmentInput): ImpairmentSpec {
  const spec: ImpairmentSpec = {};
  if (input.delay !== undefined) spec.delayMs = input.delay;
  if (input.jitter !== undefined) spec.jitterMs = input.jitter;
  if (input.distribution !== undefined) spec.jitterDistribution = input.distribution;
  if (input.loss !== undefined) spec.lossPercent = input.loss;
  if (input.lossCorrelation !== undefined) spec.lossCorrelationPercent = input.lossCorrelation;
  if (input.rate !== undefined) spec.rateBitsPerSecond = input.rate;
  if (input.reorder !== undefined) spec.reorderPercent = input.reorder;
  if (input.reorderCorrelation !== undefined) spec.reorderCorrelationPercent = input.reorderCorrelation;
  if (input.duplicate !== undefined) spec.duplicatePercent = input.duplicate;
  if (input.corrupt !== undefined) spec.corruptPercent = input.corrupt;
  if (input.limit !== undefined) spec.limitPackets = input.limit;
  if (input.seed !== undefined) spec.seed = input.seed;
  return spec;
}

export { toImpairment as impairmentFromInput };

const DEFAULT_SCRAPE_INTERVAL_S = 15;

function toModel(input: TopologyInput, file: string): Topology {
  return {
    name: input.name,
    file,
    networks: input.networks.map((n) => ({ name: n.name, kind: n.kind, subnet: n.subnet, ...(n.subnet6 !== undefined ? { subnet6: n.subnet6 } : {}) })),
    nodes: input.nodes.map((n): NodeSpec => ({
      name: n.name,
      role: n.role,
      ...(n.image !== undefined ? { image: n.image } : {}),
      ...(n.command !== undefined ? { command: n.command } : {}),
      env: n.env ?? {},
      addresses: n.addresses.map((a) => ({ network: a.network, ...(a.ipv4 !== undefined ? { ipv4: a.ipv4 } : {}), ...(a.ipv6 !== undefined ? { ipv6: a.ipv6 } : {}) })),
      replicas: n.replicas ?? 1,
    })),
    links: (input.links ?? []).map((l): LinkSpec => ({
      name: l.name ?? `${l.node}-${l.network}`,
      node: l.node,
      network: l.network,
      direction: l.direction ?? "both",
      impairment: toImpairment(l.impairment),
    })),
    observability: {
      prometheus: input.observability?.prometheus ?? false,
      grafana: input.observability?.grafana ?? false,
      scrapeIntervalS: input.observability?.scrapeInterval !== undefined ? input.observability.scrapeInterval / 1_000 : DEFAULT_SCRAPE_INTERVAL_S,
    },
  };
}
