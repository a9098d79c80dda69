/**
 * The shape of a topology file, in the user's words (`delay: 20ms`, `loss: 2%`, `rate: 100mbit`),
 * as zod schemas that convert to the model's units (delayMs, lossPercent, rateBitsPerSecond).
 * Objects are strict: an unknown key is an error, not silently ignored (a typo must not pass).
 * Checks that need the whole file (names, subnets, references) live in semantic-checks.ts.
 */
import { isIPv6 } from "node:net";
import { z } from "zod";
import { NETWORK_KINDS, NODE_ROLES } from "./model.ts";
import { parseIpv4Cidr, ipv4ToInt } from "./ipv4.ts";
import { parseDurationMs, parsePercent, parseRateBitsPerSecond } from "./units.ts";

/** A custom issue carries what was expected, for the `expected X, got Y` message. */
export interface ExpectedParams {
  expected: string;
}

/**
 * A field parsed by `parse` (undefined = not of the right form → `formExpected`), then checked by
 * `inRange` (false → `rangeExpected`).
 */
function field<T>(formExpected: string, parse: (value: unknown) => T | undefined, inRange?: (value: T) => boolean, rangeExpected?: string) {
  return z.unknown().transform((value, ctx) => {
    const parsed = parse(value);
    if (parsed === undefined) {
      ctx.addIssue({ code: "custom", message: formExpected, params: { expected: formExpected } satisfies ExpectedParams });
      return z.NEVER;
    }
    if (inRange !== undefined && !inRange(parsed)) {
      const expected = rangeExpected ?? formExpected;
      ctx.addIssue({ code: "custom", message: expected, params: { expected } satisfies ExpectedParams });
      return z.NEVER;
    }
    return parsed;
  });
}

const asString = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);

const NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}$/;
export const name = field("a name of lowercase letters, digits and '-' starting with a letter (at most 31)", (v) => {
  const s = asString(v);
  return s !== undefined && NAME_PATTERN.test(s) ? s : undefined;
});

const MAX_DELAY_MS = 60_000;

const duration = (what: string, maxMs: number) =>
  field('a duration like "20ms"', (v) => {
    const s = asString(v);
    return s === undefined ? undefined : parseDurationMs(s);
  }, (ms) => ms >= 0 && ms <= maxMs, `a ${what} between 0ms and ${maxMs / 1_000}s`);

const percent = (what: string) =>
  field('a percentage like "2%"', (v) => (typeof v === "string" || typeof v === "number" ? parsePercent(v) : undefined),
    (p) => p >= 0 && p <= 100, `a ${what} between 0% and 100%`);

// 100 Gbit/s: well above what netem or our relay can shape on one host.
const MAX_RATE_BITS_PER_SECOND = 100e9;

const rate = field('a rate like "100mbit"', (v) => {
  const s = asString(v);
  return s === undefined ? undefined : parseRateBitsPerSecond(s);
}, (r) => r > 0 && r <= MAX_RATE_BITS_PER_SECOND, "a rate above 0bit and at most 100gbit");

export const ipv4Cidr = field('an IPv4 network like "10.1.0.0/24" (host bits zero)', (v) => {
  const s = asString(v);
  return s !== undefined && parseIpv4Cidr(s) !== undefined ? s : undefined;
});

const ipv6Cidr = field('an IPv6 network like "2001:db8:1::/64"', (v) => {
  const s = asString(v);
  const match = s === undefined ? null : /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(s);
  return match !== null && isIPv6(match[1] as string) && Number(match[2]) <= 128 ? s : undefined;
});

const ipv4 = field('an IPv4 address like "10.1.0.10"', (v) => {
  const s = asString(v);
  return s !== undefined && ipv4ToInt(s) !== undefined ? s : undefined;
});

const ipv6 = field('an IPv6 address like "2001:db8:1::10"', (v) => {
  const s = asString(v);
  return s !== undefined && isIPv6(s) ? s : undefined;
});

const envValue = field("a string, number or boolean", (v) =>
  typeof v === "string" || typeof v === "number" || typeof v === "boolean" ? String(v) : undefined);

const integer = (what: string, min: number, max: number) =>
  field(`${what} (a whole number from ${min} to ${max})`, (v) => (typeof v === "number" && Number.isInteger(v) ? v : undefined),
    (n) => n >= min && n <= max);

export const impairmentSchema = z.strictObject({
  delay: duration("delay", MAX_DELAY_MS).optional(),
  jitter: duration("jitter", MAX_DELAY_MS).optional(),
  distribution: z.enum(["uniform", "normal", "pareto", "paretonormal"]).optional(),
  loss: percent("loss").optional(),
  lossCorrelation: percent("loss correlation").optional(),
  rate: rate.optional(),
  reorder: percent("reorder probability").optional(),
  reorderCorrelation: percent("reorder correlation").optional(),
  duplicate: percent("duplicate probability").optional(),
  corrupt: percent("corrupt probability").optional(),
  limit: integer("a queue limit in packets", 1, 10_000_000).optional(),
  seed: integer("a seed", 0, 2 ** 32 - 1).optional(),
});
export type ImpairmentInput = z.output<typeof impairmentSchema>;

const networkSchema = z.strictObject({
  name,
  kind: z.enum(NETWORK_KINDS),
  subnet: ipv4Cidr,
  subnet6: ipv6Cidr.optional(),
  description: z.string().optional(),
});

const addressSchema = z.strictObject({
  network: name,
  ipv4: ipv4.optional(),
  ipv6: ipv6.optional(),
});

const nodeSchema = z.strictObject({
  name,
  role: z.enum(NODE_ROLES),
  image: z.string().min(1).optional(),
  command: z.array(z.string()).min(1).optional(),
  env: z.record(z.string(), envValue).optional(),
  addresses: z.array(addressSchema).min(1),
  replicas: integer("a replica count", 1, 64).optional(),
  description: z.string().optional(),
});

const linkSchema = z.strictObject({
  name: name.optional(),
  node: name,
  network: name,
  direction: z.enum(["egress", "ingress", "both"]).optional(),
  impairment: impairmentSchema,
  description: z.string().optional(),
});

const observabilitySchema = z.strictObject({
  prometheus: z.boolean().optional(),
  grafana: z.boolean().optional(),
  scrapeInterval: duration("scrape interval", 3_600_000).optional(),
});

export const topologySchema = z.strictObject({
  name,
  description: z.string().optional(),
  networks: z.array(networkSchema).min(1),
  nodes: z.array(nodeSchema).min(1),
  links: z.array(linkSchema).optional(),
  observability: observabilitySchema.optional(),
});
export type TopologyInput = z.output<typeof topologySchema>;
