/**
 * The userspace impairer of one Docker node: the program of its impairer sidecar, a container on
 * the base image that shares the node's network namespace (`NetworkMode: container:<node>`) and
 * alone holds NET_ADMIN, so the node's own image needs nothing. It owns, per impaired interface, the
 * steering (netns-steering.ts) and the relay (netns-relay.ts), and takes commands from the driver on
 * a Unix socket (impairer-control.ts, run through `docker exec`), one JSON line each way:
 *
 *   {"op":"impair","nodeAddress":"192.0.2.10","ingress":{…},"egress":{…}}   (a direction left out keeps its spec)
 *   {"op":"heal","nodeAddress":"192.0.2.10","directions":["ingress","egress"]}
 *   {"op":"status"}
 *
 * A link healed in both directions has its steering removed, so its traffic no longer crosses the
 * relay at all (the baseline). Every change is logged on stdout with its time (`docker logs` of
 * the sidecar). On SIGTERM (the driver's `down`) it removes its rules and routes before exiting.
 * Only node built-ins and files of this folder and node-images/common are imported: the driver
 * copies exactly those into the sidecar.
 */
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import type { ImpairmentSpec } from "../topology/model.ts";
import { NetnsUdpRelay } from "./netns-relay.ts";
import { CONTROL_SOCKET, MECHANISM_NOTE, type AgentLink, type AgentRequest, type AgentResponse } from "./impairer-protocol.ts";
import {
  addShadowRoute,
  chooseShadowBlock,
  installRules,
  interfaceOf,
  mapNodePort,
  planSteering,
  removeLeftovers,
  removeSteering,
  routeArgv,
  shadowOf,
  takenPrefixes,
  type CommandResult,
  type RunCommand,
  type SteeringPlan,
} from "./netns-steering.ts";

const runCommand: RunCommand = (argv, stdin) =>
  new Promise<CommandResult>((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: [stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", (error) => resolve({ exitCode: -1, stdout, stderr: stderr + error.message }));
    child.on("close", (code) => resolve({ exitCode: code ?? -1, stdout, stderr }));
    if (child.stdin !== null) {
      // EPIPE: the command exited without reading all of its input; its exit code says how it went.
      child.stdin.on("error", (error) => (stderr += `stdin: ${error.message}\n`));
      child.stdin.end(stdin);
    }
  });

interface Link {
  plan: SteeringPlan;
  relay: NetnsUdpRelay;
}

function isEmpty(spec: ImpairmentSpec): boolean {
  return Object.keys(spec).length === 0;
}

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

export class ImpairerAgent {
  readonly #run: RunCommand;
  /** nodeAddress → link. */
  readonly #links = new Map<string, Link>();
  /** Commands one at a time: each reads and changes the namespace's rules. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(run: RunCommand = runCommand) {
    this.#run = run;
  }

  async start(): Promise<string[]> {
    const removed = await removeLeftovers(this.#run);
    for (const line of removed) log(`removed a leftover: ${line}`);
    return removed;
  }

  handle(request: AgentRequest): Promise<AgentResponse> {
    const next = this.#queue.then(() => this.#handle(request));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #handle(request: AgentRequest): Promise<AgentResponse> {
    try {
      switch (request.op) {
        case "impair":
          return { ok: true, detail: await this.#impair(request.nodeAddress, request.ingress, request.egress), links: this.links() };
        case "heal":
          return { ok: true, detail: await this.#heal(request.nodeAddress, request.directions), links: this.links() };
        case "status":
          return { ok: true, detail: [], links: this.links() };
        default:
          return { ok: false, code: "BAD_REQUEST", message: `unknown op ${JSON.stringify((request as { op?: unknown }).op)}` };
      }
    } catch (error) {
      const code = (error as { code?: string }).code ?? "AGENT_FAILED";
      log(`failed: ${JSON.stringify(request)}: ${(error as Error).message}`);
      return { ok: false, code, message: (error as Error).message };
    }
  }

  links(): AgentLink[] {
    return [...this.#links.values()].map(({ plan, relay }) => ({
      iface: plan.iface,
      nodeAddress: plan.nodeAddress,
      ...relay.specs,
      relay: `${plan.relayAddress}:${plan.relayPortBase}-${plan.relayPortBase + plan.relayPortCount - 1}`,
      shadowBlock: `${plan.block.address}/${plan.block.prefixLength}`,
      stats: relay.stats(),
    }));
  }

  async #impair(nodeAddress: string, ingress: ImpairmentSpec | undefined, egress: ImpairmentSpec | undefined): Promise<string[]> {
    const existing = this.#links.get(nodeAddress);
    if (existing !== undefined) {
      existing.relay.update({ ...(ingress ? { ingress } : {}), ...(egress ? { egress } : {}) });
      const specs = existing.relay.specs;
      log(`impair ${existing.plan.iface} (${nodeAddress}): ingress ${JSON.stringify(specs.ingress)} egress ${JSON.stringify(specs.egress)} (live update of the relay)`);
      return [`${MECHANISM_NOTE}: relay ${existing.plan.relayAddress} on ${existing.plan.iface} now ingress=${JSON.stringify(specs.ingress)} egress=${JSON.stringify(specs.egress)}`];
    }
    const { iface, prefixLength } = await interfaceOf(this.#run, nodeAddress);
    const taken = [...(await takenPrefixes(this.#run)), ...[...this.#links.values()].map((l) => l.plan.block)];
    const plan = planSteering({ iface, nodeAddress, prefixLength, block: chooseShadowBlock(prefixLength, taken) });
    const detail: string[] = [];
    // Order: route (so the relay can bind), relay (so nothing is steered to an unbound port), rules.
    // A failing step undoes the ones before it.
    detail.push(...(await addShadowRoute(this.#run, plan)));
    let relay: NetnsUdpRelay | undefined;
    try {
      relay = await NetnsUdpRelay.start({
        nodeAddress,
        relayAddress: plan.relayAddress,
        relayPortBase: plan.relayPortBase,
        relayPortCount: plan.relayPortCount,
        shadowOf: (address) => shadowOf(plan, address),
        mapNodePort: (shadowPort, nodePort) => mapNodePort(this.#run, plan, shadowPort, nodePort),
        ingress: ingress ?? {},
        egress: egress ?? {},
      });
      detail.push(...(await installRules(this.#run, plan)));
    } catch (error) {
      await relay?.close();
      await this.#run(routeArgv("del", plan));
      throw error;
    }
    this.#links.set(nodeAddress, { plan, relay });
    log(`impair ${iface} (${nodeAddress}): steering installed (table ip ${plan.table}, relay ${plan.relayAddress}, shadow ${plan.block.address}/${plan.block.prefixLength}); ingress ${JSON.stringify(relay.specs.ingress)} egress ${JSON.stringify(relay.specs.egress)}`);
    return [`${MECHANISM_NOTE}: UDP of ${iface} (${nodeAddress}) steered through a relay at ${plan.relayAddress}:${plan.relayPortBase}-${plan.relayPortBase + plan.relayPortCount - 1} by table ip ${plan.table}`, ...detail];
  }

  async #heal(nodeAddress: string, directions: ("ingress" | "egress")[]): Promise<string[]> {
    const link = this.#links.get(nodeAddress);
    if (link === undefined) {
      log(`heal ${nodeAddress}: nothing impaired`);
      return [`${MECHANISM_NOTE}: ${nodeAddress} was not impaired`];
    }
    link.relay.update(Object.fromEntries(directions.map((d) => [d, {}])));
    const specs = link.relay.specs;
    if (!isEmpty(specs.ingress) || !isEmpty(specs.egress)) {
      log(`heal ${link.plan.iface} (${nodeAddress}) ${directions.join("+")}: ingress ${JSON.stringify(specs.ingress)} egress ${JSON.stringify(specs.egress)}`);
      return [`${MECHANISM_NOTE}: healed ${directions.join("+")} of ${link.plan.iface}; the other direction stays impaired`];
    }
    const removed = await removeSteering(this.#run, link.plan);
    await link.relay.close();
    this.#links.delete(nodeAddress);
    log(`heal ${link.plan.iface} (${nodeAddress}): steering removed (${removed.join("; ")})`);
    return [`${MECHANISM_NOTE}: steering of ${link.plan.iface} removed, its UDP no longer crosses the relay`, ...removed];
  }

  /** Removes every link's steering (SIGTERM). */
  async stop(): Promise<void> {
    for (const nodeAddress of [...this.#links.keys()]) await this.#heal(nodeAddress, ["ingress", "egress"]);
  }
}

/**
 * Nice −10 (the sidecar has CAP_SYS_NICE for this alone): a relay that waits for the CPU sends
 * late, and on a loaded machine that lateness is most of the delay error (test/impairments/
 * docker-userspace-impairer.test.ts measures it).
 */
function raisePriority(): void {
  try {
    os.setPriority(0, -10);
    log("scheduling priority raised to nice -10");
  } catch (error) {
    log(`scheduling priority left at nice ${os.getPriority(0)}: ${(error as Error).message}`);
  }
}

async function main(): Promise<void> {
  raisePriority();
  const agent = new ImpairerAgent();
  await agent.start();
  rmSync(CONTROL_SOCKET, { force: true });
  const server = net.createServer((connection) => {
    let buffered = "";
    connection.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const newline = buffered.indexOf("\n");
      if (newline < 0) return;
      const line = buffered.slice(0, newline);
      buffered = "";
      let request: AgentRequest;
      try {
        request = JSON.parse(line) as AgentRequest;
      } catch (error) {
        connection.end(`${JSON.stringify({ ok: false, code: "BAD_REQUEST", message: `not JSON: ${(error as Error).message}` })}\n`);
        return;
      }
      void agent.handle(request).then((response) => connection.end(`${JSON.stringify(response)}\n`));
    });
    connection.on("error", (error) => log(`control connection: ${error.message}`));
  });
  server.listen(CONTROL_SOCKET, () => log(`impairer ready on ${CONTROL_SOCKET}`));
  const stop = (): void => {
    log("stopping: removing steering");
    void agent.stop().finally(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

if (process.argv[1]?.endsWith("impairer-agent.ts")) await main();
