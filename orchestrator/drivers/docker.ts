/**
 * The Docker driver (dockerode). Every object it creates carries `runLabels(runId)` plus role, node
 * and network labels, so `removeRun` finds everything by label, also after a crash.
 *
 * Names: network `<runId>-<network>`, container `<runId>-<node>`.
 * Isolation: each network is its own bridge. With dockerd's iptables on (the default, and what works
 * on this project's CI kernel), the DOCKER-ISOLATION chains drop forwarding between bridges, so a
 * node only on data networks cannot reach an address on mgmt (test/docker/docker-driver.test.ts
 * checks this with a real UDP probe). mgmt is also created `internal` (no route out of the host).
 * Capabilities: ALL dropped; NET_ADMIN added only for nodes `impairable(spec)` says yes to (tc netem;
 * default: the data-plane roles lb, server, client).
 * Impairments: netem inside the container's netns through exec (../impairments/netem.ts). On a
 * kernel without sch_netem, the userspace impairer: a sidecar container `<runId>-<node>-impairer` on
 * the base image, sharing the node's network namespace (`NetworkMode: container:<id>`), holding
 * NET_ADMIN itself (the node needs neither NET_ADMIN nor nftables), steering the interface's UDP
 * through a seeded relay (../impairments/impairer-agent.ts, netns-steering.ts, netns-relay.ts).
 * The sidecar carries the run's labels plus LABEL_SIDECAR, so removeRun takes it with the run and
 * listRun does not list it as a node.
 */
import Docker from "dockerode";
import type { ImpairmentSpec, NetworkSpec, NodeSpec } from "../topology/model.ts";
import {
  LABEL_NETWORK,
  LABEL_NODE,
  LABEL_ROLE,
  LABEL_RUN,
  runLabels,
  type AppliedImpairment,
  type Driver,
  type ExecResult,
  type ImpairmentTarget,
  type NetworkState,
  type NodeState,
} from "./driver.ts";
import { DockerUnreachableError, DriverError } from "../errors.ts";
import { demuxDockerStream } from "./docker-stream.ts";
import { applyNetem, removeNetem, buildNetemCommands } from "../impairments/netem.ts";
import { IMAGE_ROLES, baseImageTag } from "../images/build.ts";
import { readFileSync } from "node:fs";
import { ustarArchive, type UstarEntry } from "../impairments/ustar.ts";
import { MECHANISM_NOTE, type AgentRequest, type AgentResponse } from "../impairments/impairer-protocol.ts";
import { nodeIdentityEnv } from "../plan.ts";
import { envName } from "./local-addressing.ts";

/** Network kind, so listRun can report it (driver.ts has no label for it). */
export const LABEL_NETWORK_KIND = "io.qmt.network-kind";
/** Set on containers started with NET_ADMIN. */
export const LABEL_IMPAIRABLE = "io.qmt.impairable";
/** Set on sidecars (value: what they are, "impairer"); they are not nodes. */
export const LABEL_SIDECAR = "io.qmt.sidecar";
/** The node a sidecar serves. */
export const LABEL_SIDECAR_FOR = "io.qmt.sidecar-for";

/** Where the impairer's sources go in its sidecar, and the files that make it (relative to the repository). */
const IMPAIRER_ROOT = "opt/qmt-impairer";
const IMPAIRER_FILES = [
  "orchestrator/impairments/impairer-agent.ts",
  "orchestrator/impairments/impairer-control.ts",
  "orchestrator/impairments/impairer-protocol.ts",
  "orchestrator/impairments/netns-relay.ts",
  "orchestrator/impairments/netns-steering.ts",
  "orchestrator/impairments/conntrack-table.ts",
  "orchestrator/impairments/delivery-scheduler.ts",
  "orchestrator/impairments/link-impairment.ts",
  "node-images/common/min-heap.ts",
  "node-images/common/seeded-random.ts",
] as const;
const IMPAIRER_READY_TIMEOUT_MS = 20_000;

/** The impairer's sources as a tar for putArchive (read once per process). */
let impairerArchive: Buffer | undefined;
function impairerSources(): Buffer {
  if (impairerArchive !== undefined) return impairerArchive;
  const repoRoot = new URL("../../", import.meta.url);
  const dirs = new Set<string>();
  const entries: UstarEntry[] = [];
  for (const file of IMPAIRER_FILES) {
    const parts = `${IMPAIRER_ROOT}/${file}`.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(`${parts.slice(0, i).join("/")}/`);
    entries.push({ name: `${IMPAIRER_ROOT}/${file}`, data: readFileSync(new URL(file, repoRoot)) });
  }
  entries.push({ name: `${IMPAIRER_ROOT}/package.json`, data: Buffer.from('{ "type": "module" }\n') });
  impairerArchive = ustarArchive([...[...dirs].sort().map((name) => ({ name })), ...entries]);
  return impairerArchive;
}

export type StartStep = "created" | "connected" | "started" | "ready";

export interface DockerDriverOptions {
  docker?: Docker;
  /**
   * Extra labels on every object this driver creates, and in every filter it lists or removes by,
   * so `removeRun(undefined)` removes only this scope's runs (tests use it to leave a user's own
   * runs on the same engine alone).
   */
  scopeLabels?: Record<string, string>;
  /** Image when a node spec has none; default `defaultNodeImage(role)`. */
  defaultImage?: (spec: NodeSpec) => string;
  /** Which nodes get NET_ADMIN (needed for tc netem). Default: the data-plane roles (DEFAULT_IMPAIRABLE_ROLES). */
  impairable?: (spec: NodeSpec) => boolean;
  /** How long startNode waits for running (and healthy, when the image has a health check). */
  readyTimeoutMs?: number;
  /** Called as startNode goes through its steps (progress lines; tests abort at a step). */
  onStartStep?: (node: string, step: StartStep) => void;
  /**
   * How links are impaired. "auto" (default): tc netem, and the userspace impairer once the kernel
   * turns out to lack sch_netem; "netem": netem only (NETEM_UNAVAILABLE without it); "userspace":
   * always the userspace impairer.
   */
  impairer?: "auto" | "netem" | "userspace";
  /** Image of the impairer sidecar (Node, ip, nft, conntrack). Default: the base image (`baseImageTag()`). */
  impairerImage?: string;
}

const DRIVER = "docker";
/** Data-plane roles, whose links drills impair; prometheus, grafana and generic nodes run without NET_ADMIN. */
export const DEFAULT_IMPAIRABLE_ROLES: readonly NodeSpec["role"][] = ["lb", "server", "client"];
const POLL_MS = 50;
const PROBE_TIMEOUT_MS = 5_000;
const DEFAULT_READY_TIMEOUT_MS = 30_000;

function isStatus(error: unknown, ...codes: number[]): boolean {
  return typeof error === "object" && error !== null && "statusCode" in error && codes.includes((error as { statusCode: number }).statusCode);
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  signal?.throwIfAborted();
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function directionsOf(direction: ImpairmentTarget["direction"]): ("ingress" | "egress")[] {
  return direction === "both" ? ["ingress", "egress"] : [direction];
}

function statusOf(state: string | undefined): NodeState["status"] {
  return state === "running" || state === "created" || state === "exited" ? state : "unknown";
}

/**
 * The image a node without `image:` runs. prometheus and grafana have no image of ours yet (no
 * registry is reachable to pull theirs): until the observability images exist, such nodes run
 * their `command:` on the generic image.
 */
export function defaultNodeImage(role: NodeSpec["role"]): string {
  return `qmt/${(IMAGE_ROLES as readonly string[]).includes(role) ? role : "generic"}:latest`;
}

/** tc's answer when the kernel has no sch_netem (modprobe failed or the module does not exist). */
export function isNetemMissing(message: string): boolean {
  return /qdisc kind is unknown|Unknown qdisc "netem"|Specified qdisc not found/i.test(message);
}

/** A node's files as a tar rooted at "/" (directories first, as tar extraction wants them). */
function nodeFilesArchive(files: NonNullable<NodeSpec["files"]>): Buffer {
  const dirs = new Set<string>();
  for (const file of files) {
    const parts = file.path.replace(/^\/+/, "").split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(`${parts.slice(0, i).join("/")}/`);
  }
  return ustarArchive([
    ...[...dirs].sort().map((name) => ({ name })),
    ...files.map((f) => ({ name: f.path.replace(/^\/+/, ""), data: Buffer.from(f.content, "utf8"), ...(f.mode !== undefined ? { mode: f.mode } : {}) })),
  ]);
}

/** QMT_ADDR_<NETWORK> for each address the topology fixes (the local driver sets the same names). */
function addressEnv(spec: NodeSpec): Record<string, string> {
  const env: Record<string, string> = {};
  for (const a of spec.addresses) if (a.ipv4 !== undefined) env[`QMT_ADDR_${envName(a.network)}`] = a.ipv4;
  return env;
}

export function dockerNetworkName(runId: string, network: string): string {
  return `${runId}-${network}`;
}

export function containerName(runId: string, node: string): string {
  return `${runId}-${node}`;
}

export class DockerDriver implements Driver {
  readonly name = DRIVER;
  readonly #docker: Docker;
  readonly #options: DockerDriverOptions;
  readonly #scope: Record<string, string>;
  /** Set when tc said the kernel has no sch_netem: later impairs use the userspace impairer at once. */
  #netemMissing = false;

  constructor(options: DockerDriverOptions = {}) {
    this.#docker = options.docker ?? new Docker();
    this.#options = options;
    this.#scope = options.scopeLabels ?? {};
  }

  #labels(runId: string, extra: Record<string, string>): Record<string, string> {
    return { ...this.#scope, ...runLabels(runId, extra) };
  }

  /** Label filters: the run (or any run) plus this driver's scope. */
  #filters(runId: string | undefined, ...more: string[]): { label: string[] } {
    return { label: [runId === undefined ? LABEL_RUN : `${LABEL_RUN}=${runId}`, ...more, ...Object.entries(this.#scope).map(([k, v]) => `${k}=${v}`)] };
  }

  async probe(signal?: AbortSignal): Promise<{ ok: true } | { ok: false; reason: string }> {
    const timeout = AbortSignal.timeout(PROBE_TIMEOUT_MS);
    const either = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      // ping() takes no signal in @types/dockerode; race it against the signal and a timeout.
      await Promise.race([
        this.#docker.ping(),
        new Promise((_, reject) => {
          if (either.aborted) reject(either.reason);
          either.addEventListener("abort", () => reject(either.reason), { once: true });
        }),
      ]);
      return { ok: true };
    } catch (error) {
      return { ok: false, reason: error instanceof Error ? error.message : String(error) };
    }
  }

  /** Wraps an engine call: a connection failure becomes DockerUnreachableError, others DriverError. */
  async #call<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    throwIfAborted(signal);
    try {
      return await fn();
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      const code = (error as { code?: string }).code;
      if (code === "ECONNREFUSED" || code === "ENOENT" || code === "EACCES") throw new DockerUnreachableError(`${what}: ${String(error)}`, { cause: error });
      if (error instanceof DriverError || error instanceof DockerUnreachableError) throw error;
      throw new DriverError(DRIVER, "DRIVER_FAILED", `${what}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }

  async createNetwork(runId: string, spec: NetworkSpec, signal?: AbortSignal): Promise<NetworkState> {
    const name = dockerNetworkName(runId, spec.name);
    const config = [{ Subnet: spec.subnet }, ...(spec.subnet6 ? [{ Subnet: spec.subnet6 }] : [])];
    const network = await this.#call(
      `create network ${name}`,
      () =>
        this.#docker.createNetwork({
          Name: name,
          Driver: "bridge",
          CheckDuplicate: true,
          // mgmt carries only control traffic between our own containers: no route off the host.
          Internal: spec.kind === "mgmt",
          EnableIPv6: spec.subnet6 !== undefined,
          IPAM: { Driver: "default", Config: config },
          Labels: this.#labels(runId, { [LABEL_NETWORK]: spec.name, [LABEL_NETWORK_KIND]: spec.kind }),
          // No abortSignal on calls that create: an aborted request may still be carried out by the
          // daemon after we stopped listening, leaving an object nobody removes. #call checks the
          // signal before each call instead, and a failed start removes what it created.
        }),
      signal,
    );
    return { name: spec.name, kind: spec.kind, subnet: spec.subnet, id: network.id };
  }

  async startNode(runId: string, spec: NodeSpec, signal?: AbortSignal): Promise<NodeState> {
    const name = containerName(runId, spec.name);
    const image = spec.image ?? this.#options.defaultImage?.(spec) ?? defaultNodeImage(spec.role);
    const impairable = this.#options.impairable?.(spec) ?? DEFAULT_IMPAIRABLE_ROLES.includes(spec.role);
    const [first, ...rest] = spec.addresses;
    const endpoint = (address: NodeSpec["addresses"][number]): Docker.EndpointSettings => ({
      IPAMConfig: { ...(address.ipv4 ? { IPv4Address: address.ipv4 } : {}), ...(address.ipv6 ? { IPv6Address: address.ipv6 } : {}) },
    });
    const step = (s: StartStep): void => this.#options.onStartStep?.(spec.name, s);
    let container: Docker.Container | undefined;
    try {
      container = await this.#call(
        `create container ${name}`,
        () =>
          this.#docker.createContainer({
            name,
            Image: image,
            Cmd: spec.command,
            // Who the node is (as the local driver and the plan give it), and its fixed addresses.
            Env: Object.entries({ ...spec.env, ...nodeIdentityEnv(runId, spec.name, spec.role), ...addressEnv(spec) }).map(([k, v]) => `${k}=${v}`),
            Labels: this.#labels(runId, { [LABEL_NODE]: spec.name, [LABEL_ROLE]: spec.role, [LABEL_IMPAIRABLE]: String(impairable) }),
            HostConfig: {
              CapDrop: ["ALL"],
              CapAdd: impairable ? ["NET_ADMIN"] : [],
              RestartPolicy: { Name: "no" },
              // Without a network the container would land on docker0, outside the run's topology.
              NetworkMode: first ? dockerNetworkName(runId, first.network) : "none",
            },
            NetworkingConfig: first ? { EndpointsConfig: { [dockerNetworkName(runId, first.network)]: endpoint(first) } } : undefined,
            // No abortSignal on calls that create: an aborted request may still be carried out by the
            // daemon after we stopped listening, leaving an object nobody removes. #call checks the
            // signal before each call instead, and a failed start removes what it created.
          }),
        signal,
      );
      step("created");
      for (const address of rest) {
        const network = this.#docker.getNetwork(dockerNetworkName(runId, address.network));
        await this.#call(
          `connect ${name} to ${address.network}`,
          // NetworkConnectOptions has no abortSignal in @types/dockerode; #call checks the signal around it.
          () => network.connect({ Container: name, EndpointConfig: endpoint(address) }),
          signal,
        );
      }
      step("connected");
      if (spec.files !== undefined && spec.files.length > 0) {
        // Before start: a role reads its config once, as it starts. The container is removed with the run.
        const archive = nodeFilesArchive(spec.files);
        await this.#call(`copy ${spec.files.length} file(s) into ${name}`, () => container!.putArchive(archive, { path: "/" }), signal);
      }
      await this.#call(`start ${name}`, () => container!.start(), signal);
      step("started");
      await this.#waitReady(container, name, signal);
      step("ready");
      return await this.#nodeState(runId, container, signal);
    } catch (error) {
      // A failed or aborted start tears down what it created (testcontainers' wait strategies).
      await this.#docker
        .getContainer(name)
        .remove({ force: true, v: true })
        .catch((removeError: unknown) => {
          if (!isStatus(removeError, 404, 409)) throw new DriverError(DRIVER, "DRIVER_FAILED", `remove ${name} after failed start`, { cause: [error, removeError] });
        });
      throw error;
    }
  }

  async #waitReady(container: Docker.Container, name: string, signal?: AbortSignal): Promise<void> {
    const timeoutMs = this.#options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const info = await this.#call(`inspect ${name}`, () => container.inspect({ abortSignal: signal }), signal);
      const health = info.State.Health?.Status;
      if (info.State.Running && (health === undefined || health === "healthy")) return;
      if (!info.State.Running && info.State.Status !== "created") {
        const logs = await this.#tail(container, 20).catch(() => "");
        throw new DriverError(DRIVER, "DRIVER_FAILED", `${name} exited with ${info.State.ExitCode} before it was ready; last logs:\n${logs}`);
      }
      if (health === "unhealthy") throw new DriverError(DRIVER, "DRIVER_FAILED", `${name} is unhealthy`);
      if (performance.now() > deadline) throw new DriverError(DRIVER, "DRIVER_FAILED", `${name} not ready within ${timeoutMs} ms (state ${info.State.Status}, health ${health ?? "none"})`);
      await delay(POLL_MS, signal);
    }
  }

  async #nodeState(runId: string, container: Docker.Container, signal?: AbortSignal): Promise<NodeState> {
    const info = await this.#call(`inspect ${container.id}`, () => container.inspect({ abortSignal: signal }), signal);
    const labels = info.Config.Labels ?? {};
    return {
      name: labels[LABEL_NODE] ?? info.Name.replace(/^\//, ""),
      role: (labels[LABEL_ROLE] ?? "generic") as NodeState["role"],
      id: info.Id,
      status: statusOf(info.State.Status),
      addresses: this.#addresses(runId, info.NetworkSettings.Networks),
    };
  }

  #addresses(runId: string, networks: Record<string, { IPAddress: string }> | undefined): Record<string, string> {
    const addresses: Record<string, string> = {};
    const prefix = `${runId}-`;
    for (const [dockerName, endpoint] of Object.entries(networks ?? {})) {
      const name = dockerName.startsWith(prefix) ? dockerName.slice(prefix.length) : dockerName;
      addresses[name] = endpoint.IPAddress;
    }
    return addresses;
  }

  async #container(runId: string, node: string, signal?: AbortSignal): Promise<Docker.Container> {
    const name = containerName(runId, node);
    const found = await this.#call(
      `find ${name}`,
      () => this.#docker.listContainers({ all: true, filters: this.#filters(runId, `${LABEL_NODE}=${node}`), abortSignal: signal }),
      signal,
    );
    const first = found[0];
    if (first === undefined) throw new DriverError(DRIVER, "NODE_NOT_FOUND", `no node "${node}" in run "${runId}"`);
    return this.#docker.getContainer(first.Id);
  }

  async exec(runId: string, node: string, argv: string[], signal?: AbortSignal): Promise<ExecResult> {
    const container = await this.#container(runId, node, signal);
    return this.#exec(container, argv, signal);
  }

  async #exec(container: Docker.Container, argv: string[], signal?: AbortSignal): Promise<ExecResult> {
    const exec = await this.#call(`exec ${argv.join(" ")}`, () => container.exec({ Cmd: argv, AttachStdout: true, AttachStderr: true, abortSignal: signal }), signal);
    const stream = await this.#call(`start exec ${argv[0]}`, () => exec.start({ hijack: true, stdin: false, abortSignal: signal }), signal);
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const onAbort = (): void => {
        stream.destroy();
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", (error) => {
        signal?.removeEventListener("abort", onAbort);
        reject(error);
      });
      stream.on("end", () => {
        signal?.removeEventListener("abort", onAbort);
        resolve(Buffer.concat(chunks));
      });
    });
    const { stdout, stderr } = demuxDockerStream(raw);
    const info = await this.#call("inspect exec", () => exec.inspect({ abortSignal: signal }), signal);
    return { exitCode: info.ExitCode ?? -1, stdout, stderr };
  }

  async #tail(container: Docker.Container, tail: number, signal?: AbortSignal): Promise<string> {
    const raw = await this.#call(
      `logs ${container.id}`,
      () => container.logs({ stdout: true, stderr: true, follow: false, tail, abortSignal: signal }),
      signal,
    );
    const { stdout, stderr } = demuxDockerStream(Buffer.from(raw));
    return stdout + stderr;
  }

  async logs(runId: string, node: string, opts: { tail?: number } = {}, signal?: AbortSignal): Promise<string> {
    const container = await this.#container(runId, node, signal);
    return this.#tail(container, opts.tail ?? 200, signal);
  }

  /** The interface inside the container that holds the node's address on `network`. */
  async #interfaceOn(runId: string, container: Docker.Container, target: ImpairmentTarget, signal?: AbortSignal): Promise<string> {
    const info = await this.#call(`inspect ${target.node}`, () => container.inspect({ abortSignal: signal }), signal);
    if (info.Config.Labels?.[LABEL_IMPAIRABLE] !== "true") {
      throw new DriverError(DRIVER, "NOTHING_TO_IMPAIR", `node "${target.node}" was started without NET_ADMIN (DockerDriverOptions.impairable)`);
    }
    const address = info.NetworkSettings.Networks[dockerNetworkName(runId, target.network)]?.IPAddress;
    if (!address) throw new DriverError(DRIVER, "NETWORK_NOT_FOUND", `node "${target.node}" is not on network "${target.network}"`);
    const shown = await this.#exec(container, ["ip", "-j", "-4", "addr", "show"], signal);
    if (shown.exitCode !== 0) throw new DriverError(DRIVER, "DRIVER_FAILED", `ip addr in ${target.node}: ${shown.stderr.trim()}`);
    const links = JSON.parse(shown.stdout) as { ifname: string; addr_info?: { local?: string }[] }[];
    const link = links.find((l) => l.addr_info?.some((a) => a.local === address));
    if (!link) throw new DriverError(DRIVER, "NETWORK_NOT_FOUND", `no interface with ${address} in ${target.node}`);
    return link.ifname;
  }

  async impair(runId: string, target: ImpairmentTarget, spec: ImpairmentSpec, signal?: AbortSignal): Promise<AppliedImpairment> {
    const container = await this.#container(runId, target.node, signal);
    const mode = this.#options.impairer ?? "auto";
    if (mode === "userspace" || (mode === "auto" && this.#netemMissing)) return this.#impairUserspace(runId, container, target, spec, signal);
    const iface = await this.#interfaceOn(runId, container, target, signal);
    let commands: string[][];
    try {
      commands = await this.#call(
        `netem on ${target.node}/${iface}`,
        () => applyNetem((argv) => this.#exec(container, argv, signal), iface, spec, target.direction),
        signal,
      );
    } catch (error) {
      if (error instanceof DriverError && isNetemMissing(error.message)) {
        if (mode === "auto") {
          // Remembered for this driver: every later impair goes straight to the userspace impairer.
          this.#netemMissing = true;
          return this.#impairUserspace(runId, container, target, spec, signal);
        }
        throw new DriverError(
          DRIVER,
          "NETEM_UNAVAILABLE",
          `cannot impair ${target.node}/${target.network}: this kernel has no sch_netem (tc: "qdisc kind is unknown"), and this driver was told to use netem only (impairer: "netem")`,
          { cause: error },
        );
      }
      throw error;
    }
    return { target, spec, mechanism: "netem", detail: commands.map((argv) => argv.join(" ")) };
  }

  async heal(runId: string, target: ImpairmentTarget, signal?: AbortSignal): Promise<void> {
    const container = await this.#container(runId, target.node, signal);
    const sidecar = await this.#findImpairer(runId, target.node, signal);
    if (sidecar !== undefined) {
      const address = await this.#addressOn(runId, container, target, signal);
      await this.#agent(sidecar, { op: "heal", nodeAddress: address, directions: directionsOf(target.direction) }, target, signal);
      return;
    }
    if (this.#netemMissing || this.#options.impairer === "userspace") return; // nothing was ever applied
    const iface = await this.#interfaceOn(runId, container, target, signal);
    await this.#call(`remove netem on ${target.node}/${iface}`, () => removeNetem((argv) => this.#exec(container, argv, signal), iface, target.direction), signal);
  }

  /** The node's IPv4 address on the target network (from the engine; no exec in the node). */
  async #addressOn(runId: string, container: Docker.Container, target: ImpairmentTarget, signal?: AbortSignal): Promise<string> {
    const info = await this.#call(`inspect ${target.node}`, () => container.inspect({ abortSignal: signal }), signal);
    const address = info.NetworkSettings.Networks[dockerNetworkName(runId, target.network)]?.IPAddress;
    if (!address) throw new DriverError(DRIVER, "NETWORK_NOT_FOUND", `node "${target.node}" is not on network "${target.network}"`);
    return address;
  }

  async #impairUserspace(runId: string, container: Docker.Container, target: ImpairmentTarget, spec: ImpairmentSpec, signal?: AbortSignal): Promise<AppliedImpairment> {
    const address = await this.#addressOn(runId, container, target, signal);
    const sidecar = (await this.#findImpairer(runId, target.node, signal)) ?? (await this.#startImpairer(runId, target.node, container.id, signal));
    const directions = directionsOf(target.direction);
    const response = await this.#agent(
      sidecar,
      { op: "impair", nodeAddress: address, ...Object.fromEntries(directions.map((d) => [d, spec])) },
      target,
      signal,
    );
    return { target, spec, mechanism: "userspace", detail: response.detail };
  }

  /** The running impairer sidecar of a node, if any. */
  async #findImpairer(runId: string, node: string, signal?: AbortSignal): Promise<Docker.Container | undefined> {
    const found = await this.#call(
      `find the impairer of ${node}`,
      () => this.#docker.listContainers({ all: true, filters: this.#filters(runId, `${LABEL_SIDECAR}=impairer`, `${LABEL_SIDECAR_FOR}=${node}`), abortSignal: signal }),
      signal,
    );
    const running = found.find((c) => c.State === "running");
    for (const stale of found.filter((c) => c !== running)) {
      // An impairer that exited (crashed): replaced by a fresh one, which removes its leftovers first.
      await this.#docker.getContainer(stale.Id).remove({ force: true, v: true }).catch((error: unknown) => {
        if (!isStatus(error, 404, 409)) throw new DriverError(DRIVER, "DRIVER_FAILED", `remove stale impairer ${stale.Id}`, { cause: error });
      });
    }
    return running === undefined ? undefined : this.#docker.getContainer(running.Id);
  }

  async #startImpairer(runId: string, node: string, nodeId: string, signal?: AbortSignal): Promise<Docker.Container> {
    const name = `${containerName(runId, node)}-impairer`;
    const image = this.#options.impairerImage ?? baseImageTag({ baseImage: process.env.BASE_IMAGE || undefined });
    let sidecar: Docker.Container | undefined;
    try {
      sidecar = await this.#call(
        `create impairer sidecar ${name} (image ${image}; \`testbed images\` builds it)`,
        () =>
          this.#docker.createContainer({
            name,
            Image: image,
            Cmd: ["node", `/${IMPAIRER_ROOT}/orchestrator/impairments/impairer-agent.ts`],
            Labels: this.#labels(runId, { [LABEL_SIDECAR]: "impairer", [LABEL_SIDECAR_FOR]: node }),
            HostConfig: {
              CapDrop: ["ALL"],
              // NET_ADMIN: nft, ip route and conntrack in the node's namespace (the node itself keeps its
              // own capabilities); SYS_NICE: the relay raises its priority so its sends leave on time.
              CapAdd: ["NET_ADMIN", "SYS_NICE"],
              RestartPolicy: { Name: "no" },
              NetworkMode: `container:${nodeId}`,
            },
          }),
        signal,
      );
      await this.#call(`copy the impairer into ${name}`, () => sidecar!.putArchive(impairerSources(), { path: "/" }), signal);
      await this.#call(`start ${name}`, () => sidecar!.start(), signal);
      const deadline = performance.now() + IMPAIRER_READY_TIMEOUT_MS;
      for (;;) {
        const result = await this.#exec(sidecar, ["node", `/${IMPAIRER_ROOT}/orchestrator/impairments/impairer-control.ts`, JSON.stringify({ op: "status" })], signal);
        if (result.exitCode === 0) return sidecar;
        const state = await this.#call(`inspect ${name}`, () => sidecar!.inspect({ abortSignal: signal }), signal);
        if (!state.State.Running || performance.now() > deadline) {
          const logs = await this.#tail(sidecar, 20).catch(() => "");
          throw new DriverError(DRIVER, "DRIVER_FAILED", `impairer sidecar ${name} not ready (${state.State.Running ? `no answer within ${IMPAIRER_READY_TIMEOUT_MS} ms` : `exited with ${state.State.ExitCode}`}): ${result.stderr.trim()}; last logs:\n${logs}`);
        }
        await delay(POLL_MS, signal);
      }
    } catch (error) {
      await this.#docker.getContainer(name).remove({ force: true, v: true }).catch((removeError: unknown) => {
        if (!isStatus(removeError, 404, 409)) throw new DriverError(DRIVER, "DRIVER_FAILED", `remove ${name} after failed start`, { cause: [error, removeError] });
      });
      throw error;
    }
  }

  /** One request to a node's impairer; a refusal becomes a DriverError with the agent's code. */
  async #agent(sidecar: Docker.Container, request: AgentRequest, target: ImpairmentTarget | undefined, signal?: AbortSignal): Promise<Extract<AgentResponse, { ok: true }>> {
    const result = await this.#exec(sidecar, ["node", `/${IMPAIRER_ROOT}/orchestrator/impairments/impairer-control.ts`, JSON.stringify(request)], signal);
    const where = target ? `${target.node}/${target.network}` : "impairer";
    if (result.exitCode !== 0) throw new DriverError(DRIVER, "DRIVER_FAILED", `${where}: impairer control: ${result.stderr.trim()}`);
    const response = JSON.parse(result.stdout) as AgentResponse;
    if (!response.ok) throw new DriverError(DRIVER, "DRIVER_FAILED", `${where}: ${MECHANISM_NOTE}: ${response.code}: ${response.message}`);
    return response;
  }

  /** What impair would run, without running it (for --dry-run). */
  describeImpairment(iface: string, target: ImpairmentTarget, spec: ImpairmentSpec): string[] {
    return buildNetemCommands(iface, spec, target.direction).map((argv) => argv.join(" "));
  }

  async listRun(runId: string, signal?: AbortSignal): Promise<{ networks: NetworkState[]; nodes: NodeState[] }> {
    const filters = this.#filters(runId);
    const networks = await this.#call("list networks", () => this.#docker.listNetworks({ filters, abortSignal: signal }), signal);
    const containers = await this.#call("list containers", () => this.#docker.listContainers({ all: true, filters, abortSignal: signal }), signal);
    const impairments = await this.#impairmentLines(runId, containers, signal);
    return {
      networks: networks
        .map((n) => ({
          name: n.Labels?.[LABEL_NETWORK] ?? n.Name,
          kind: (n.Labels?.[LABEL_NETWORK_KIND] ?? "public") as NetworkState["kind"],
          subnet: n.IPAM?.Config?.[0]?.Subnet ?? "",
          id: n.Id,
        }))
        .sort((a, b) => a.name.localeCompare(b.name)),
      nodes: containers
        .filter((c) => c.Labels[LABEL_SIDECAR] === undefined)
        .map((c) => ({
          name: c.Labels[LABEL_NODE] ?? c.Names[0]?.replace(/^\//, "") ?? c.Id,
          role: (c.Labels[LABEL_ROLE] ?? "generic") as NodeState["role"],
          id: c.Id,
          status: statusOf(c.State),
          addresses: this.#addresses(runId, c.NetworkSettings?.Networks),
          ...(impairments.has(c.Labels[LABEL_NODE] ?? "") ? { impairments: impairments.get(c.Labels[LABEL_NODE] ?? "")! } : {}),
        }))
        .sort((a, b) => a.name.localeCompare(b.name)),
    };
  }

  /** node → one line per impaired link, asked of each running impairer sidecar. */
  async #impairmentLines(runId: string, containers: Docker.ContainerInfo[], signal?: AbortSignal): Promise<Map<string, string[]>> {
    const lines = new Map<string, string[]>();
    for (const c of containers) {
      const node = c.Labels[LABEL_SIDECAR_FOR];
      if (c.Labels[LABEL_SIDECAR] !== "impairer" || node === undefined || c.State !== "running") continue;
      const response = await this.#agent(this.#docker.getContainer(c.Id), { op: "status" }, undefined, signal);
      const networkOf = (address: string): string =>
        Object.entries(this.#addresses(runId, containers.find((n) => n.Labels[LABEL_NODE] === node)?.NetworkSettings?.Networks)).find(([, a]) => a === address)?.[0] ?? address;
      lines.set(
        node,
        response.links.map((l) => `${networkOf(l.nodeAddress)} (${l.iface}): ${MECHANISM_NOTE}, ingress ${JSON.stringify(l.ingress)}, egress ${JSON.stringify(l.egress)}, ${l.stats.flows} flow(s)`),
      );
    }
    return lines;
  }

  async removeRun(runId: string | undefined, signal?: AbortSignal): Promise<{ removed: number }> {
    const filters = this.#filters(runId);
    let removed = 0;
    const gone = (error: unknown): void => {
      // 404: already gone; 409: removal already in progress. Both mean "will not be there".
      if (!isStatus(error, 404, 409)) throw error;
    };
    const containers = await this.#call("list containers", () => this.#docker.listContainers({ all: true, filters, abortSignal: signal }), signal);
    await Promise.all(
      containers.map((c) =>
        this.#call(`remove container ${c.Id}`, () => this.#docker.getContainer(c.Id).remove({ force: true, v: true, abortSignal: signal }).then(() => removed++, gone), signal),
      ),
    );
    const networks = await this.#call("list networks", () => this.#docker.listNetworks({ filters, abortSignal: signal }), signal);
    await Promise.all(
      networks.map((n) => this.#call(`remove network ${n.Name}`, () => this.#docker.getNetwork(n.Id).remove({ abortSignal: signal }).then(() => removed++, gone), signal)),
    );
    const volumes = await this.#call("list volumes", () => this.#docker.listVolumes({ filters, abortSignal: signal }), signal);
    for (const v of volumes.Volumes ?? []) {
      await this.#call(`remove volume ${v.Name}`, () => this.#docker.getVolume(v.Name).remove({ abortSignal: signal }).then(() => removed++, gone), signal);
    }
    return { removed };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // dockerode keeps no long-lived connection; nothing to release. Runs are removed by removeRun.
  }
}
