import type { ImpairmentTarget } from "../drivers/driver.ts";
import { UsageError } from "../errors.ts";
import { currentRunId, describeImpairment, readCurrentRun } from "../run.ts";
import { impairmentFromInput } from "../topology/load.ts";
import type { ImpairmentSpec } from "../topology/model.ts";
import { impairmentSchema, type ExpectedParams } from "../topology/schema.ts";
import type { Command } from "./command.ts";
import { expectPositionals, parseCommandArgs } from "./command.ts";
import { chooseDriver, parseDriverName } from "./driver-choice.ts";

const DIRECTIONS = ["egress", "ingress", "both"] as const;

/** Flags in the same words as a topology's `impairment:` block, checked by the same schema. */
const KNOBS = {
  delay: "string", jitter: "string", distribution: "string", loss: "string", "loss-correlation": "string", rate: "string",
  reorder: "string", "reorder-correlation": "string", duplicate: "string", corrupt: "string", limit: "number", seed: "number",
} as const;

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function parseImpairmentFlags(values: Record<string, string | boolean | undefined>): ImpairmentSpec {
  const input: Record<string, string | number> = {};
  for (const [flag, kind] of Object.entries(KNOBS)) {
    const value = values[flag];
    if (typeof value !== "string") continue;
    input[camel(flag)] = kind === "number" && /^\d+$/.test(value) ? Number(value) : value;
  }
  if (Object.keys(input).length === 0) throw new UsageError(`impair: give at least one of ${Object.keys(KNOBS).map((k) => `--${k}`).join(", ")}`);
  const result = impairmentSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = String(issue?.path[0] ?? "");
    const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    const expected = (issue?.code === "custom" ? (issue.params as ExpectedParams | undefined)?.expected : undefined) ?? issue?.message ?? "a valid value";
    throw new UsageError(`impair: --${flag}: expected ${expected}, got ${JSON.stringify(input[key])}`);
  }
  return impairmentFromInput(result.data);
}

export function parseTarget(command: string, positionals: string[], direction: string | undefined): ImpairmentTarget {
  expectPositionals(command, positionals, 2, 2, "<node> <network>");
  const chosen = direction ?? "both";
  if (!(DIRECTIONS as readonly string[]).includes(chosen)) throw new UsageError(`${command}: --direction: expected one of ${DIRECTIONS.join(", ")}, got ${JSON.stringify(chosen)}`);
  return { node: positionals[0] as string, network: positionals[1] as string, direction: chosen as ImpairmentTarget["direction"] };
}

export const impairCommand: Command = {
  name: "impair",
  summary: "impair a node's link to a network (delay, jitter, loss, rate, ...)",
  help: `usage: testbed impair <node> <network> [--delay 50ms] [--jitter 5ms] [--distribution normal]
         [--loss 2%] [--loss-correlation 25%] [--rate 100mbit] [--reorder 1%] [--reorder-correlation 50%]
         [--duplicate 1%] [--corrupt 0.1%] [--limit PACKETS] [--seed N] [--direction egress|ingress|both]
         [--run ID] [--driver docker|local]

Replaces the impairment of that link (the same words as a topology's impairment: block).
--direction: egress = from the node, ingress = to the node, both (default).

example:
  npm run testbed -- impair client1 public --delay 50ms --jitter 5ms --loss 2%`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs("impair", args, {
      ...Object.fromEntries(Object.keys(KNOBS).map((k) => [k, { type: "string" as const }])),
      direction: { type: "string" }, run: { type: "string" }, driver: { type: "string" },
    });
    const target = parseTarget("impair", positionals, values.direction as string | undefined);
    const spec = parseImpairmentFlags(values as Record<string, string | boolean | undefined>);
    const runId = await currentRunId(values.run as string | undefined, context.stateDir);
    const current = await readCurrentRun(context.stateDir);
    const driver = await chooseDriver(parseDriverName(values.driver as string | undefined), context, current?.driver);
    try {
      const applied = await driver.impair(runId, target, spec, context.signal);
      context.out(`${target.node}/${target.network} ${target.direction}: ${describeImpairment(applied.spec)} (${applied.mechanism})`);
      for (const line of applied.detail) context.err(`  ${line}`);
      return 0;
    } finally {
      await driver[Symbol.asyncDispose]();
    }
  },
};

export const healCommand: Command = {
  name: "heal",
  summary: "remove the impairment of a node's link to a network",
  help: `usage: testbed heal <node> <network> [--direction egress|ingress|both] [--run ID] [--driver docker|local]

example:
  npm run testbed -- heal client1 public`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs("heal", args, { direction: { type: "string" }, run: { type: "string" }, driver: { type: "string" } });
    const target = parseTarget("heal", positionals, values.direction);
    const runId = await currentRunId(values.run, context.stateDir);
    const current = await readCurrentRun(context.stateDir);
    const driver = await chooseDriver(parseDriverName(values.driver), context, current?.driver);
    try {
      await driver.heal(runId, target, context.signal);
      context.out(`${target.node}/${target.network} ${target.direction}: healed`);
      return 0;
    } finally {
      await driver[Symbol.asyncDispose]();
    }
  },
};
