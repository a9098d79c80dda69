/**
 * The local driver: every node is a process on this host, every network a /24 of 127.0.0.0/8
 * (local-addressing.ts has the mapping). No root, no Docker, no kernel impairments: links are
 * impaired by userspace UDP relays (../impairments/udp-impairer.ts).
 *
 * Addresses and steering. A node gets, per network:
 *   QMT_ADDR_<NETWORK>       its published address (the topology address's loopback twin): what
 *                            peers use and what a server advertises (e.g. in preferred_address);
 *   QMT_BIND_ADDR_<NETWORK>  its hidden address, where it must bind its UDP sockets.
 * For every UDP socket a node binds on a hidden address (found in /proc/net/udp, polled every
 * 250 ms and on every impair()), the driver opens a relay on published-address:same-port that
 * forwards to it. Without impairment the relay is a pass-through; impair() sets its specs:
 * `ingress` (to the node) impairs client → node datagrams, `egress` (from the node) impairs the
 * node's replies. What a relay cannot steer: flows the node starts itself (they leave from the
 * hidden address directly; they are impaired by the relay of the node they go to), and the node
 * sees the relay's per-flow address (published-address:ephemeral) as its peer, not the client's.
 * Relays live in the process that started the nodes (the foreground `up`) and end with it; the
 * state file lists them with that process's pid. `impair`/`heal` from another process (the CLI)
 * write the new specs to the state file, and the owner's poller applies them to its relays.
 *
 * State. `<stateRoot>/<runId>/local-state.json` holds networks, nodes (pid, /proc start time,
 * argv, addresses, QMT_* env, log file) and relays, so listRun/removeRun work from another process
 * after a crash; a pid is only signalled if its /proc start time is the recorded one. Node output
 * goes to `<stateRoot>/<runId>/<node>.log`. Nodes run in their own process group (detached) and are
 * stopped with SIGTERM to the group, then SIGKILL after `stopTimeoutMs`.
 */
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import type { ImpairmentSpec, NetworkSpec, NodeSpec } from "../topology/model.ts";
import type { AppliedImpairment, Driver, ExecResult, ImpairmentTarget, NetworkState, NodeState } from "./driver.ts";
import { DriverError } from "../errors.ts";
import { nodeIdentityEnv } from "../plan.ts";
import { envName, hiddenAddress, hiddenSubnet, hostOctet, MAX_NETWORKS_PER_RUN, publishedAddress, publishedSubnet, runSecondOctet } from "./local-addressing.ts";
import { isOurProcess, readProcStat } from "./process-identity.ts";
import { boundUdpSockets } from "./proc-net-udp.ts";
import { UdpImpairer } from "../impairments/udp-impairer.ts";

export interface LocalDriverOptions {
  /** Where run directories live. Default `<cwd>/.cache/runs`. */
  stateRoot?: string;
  /** SIGTERM → SIGKILL grace period. Default 5 s. */
  stopTimeoutMs?: number;
  /** How often bound sockets are looked for to open relays. Default 250 ms. */
  relayPollMs?: number;
}

interface LocalNetworkRecord {
  name: string;
  kind: NetworkSpec["kind"];
  /** The topology's subnet. */
  subnet: string;
  index: number;
  publishedSubnet: string;
}

interface LocalNodeRecord {
  name: string;
  role: NodeSpec["role"];
  pid: number;
  startTicks: string;
  argv: string[];
  /** network → published address. */
  addresses: Record<string, string>;
  /** network → hidden (bind) address. */
  bindAddresses: Record<string, string>;
  /** The node's environment from the spec plus the QMT_* variables the driver adds (exec uses it too). */
  env: Record<string, string>;
  logFile: string;
}

interface LocalRelayRecord {
  node: string;
  network: string;
  listen: string;
  target: string;
  /** The process running the relay (the foreground `up`); others change its specs through the state file. */
  ownerPid: number;
}

interface LocalRunState {
  version: 1;
  runId: string;
  secondOctet: number;
  networks: LocalNetworkRecord[];
  nodes: LocalNodeRecord[];
  relays: LocalRelayRecord[];
  /** `${node}/${network}` → the attachment's impairment, per relay direction. */
  impairments: Record<string, { forward: ImpairmentSpec; reverse: ImpairmentSpec }>;
}

const STATE_FILE = "local-state.json";
const DRIVER = "local";

export class LocalDriver implements Driver {
  readonly name = DRIVER;
  readonly #stateRoot: string;
  readonly #stopTimeoutMs: number;
  readonly #relayPollMs: number;
  /** runId → relays this process runs, keyed `${node}/${network}/${port}`. */
  readonly #relays = new Map<string, Map<string, UdpImpairer>>();
  readonly #pollers = new Map<string, NodeJS.Timeout>();
  /** Per-run serialisation of state-file read-modify-write. */
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(options: LocalDriverOptions = {}) {
    this.#stateRoot = path.resolve(options.stateRoot ?? path.join(process.cwd(), ".cache", "runs"));
    this.#stopTimeoutMs = options.stopTimeoutMs ?? 5_000;
    this.#relayPollMs = options.relayPollMs ?? 250;
  }

  async probe(): Promise<{ ok: true } | { ok: false; reason: string }> {
    if (!existsSync("/proc/self/stat")) return { ok: false, reason: "no /proc: the local driver needs Linux procfs" };
    try {
      boundUdpSockets();
    } catch (error) {
      return { ok: false, reason: (error as Error).message };
    }
    return { ok: true };
  }

  async createNetwork(runId: string, spec: NetworkSpec, signal?: AbortSignal): Promise<NetworkState> {
    signal?.throwIfAborted();
    return this.#withState(runId, true, async (state) => {
      let network = state.networks.find((n) => n.name === spec.name);
      if (network === undefined) {
        if (state.networks.length >= MAX_NETWORKS_PER_RUN) throw new DriverError(DRIVER, "DRIVER_FAILED", `run ${runId}: at most ${MAX_NETWORKS_PER_RUN} networks`);
        const index = state.networks.length;
        network = { name: spec.name, kind: spec.kind, subnet: spec.subnet, index, publishedSubnet: publishedSubnet(state.secondOctet, index) };
        state.networks.push(network);
      }
      return toNetworkState(network, state.secondOctet);
    });
  }

  async startNode(runId: string, spec: NodeSpec, signal?: AbortSignal): Promise<NodeState> {
    signal?.throwIfAborted();
    const argv = spec.command;
    if (argv === undefined || argv.length === 0) throw new DriverError(DRIVER, "NODE_COMMAND_MISSING", `node ${spec.name}: the local driver runs a command; set nodes[].command`);
    const runDir = this.#runDir(runId);
    return this.#withState(runId, false, async (state) => {
      if (state.nodes.some((n) => n.name === spec.name)) throw new DriverError(DRIVER, "DRIVER_FAILED", `run ${runId}: node ${spec.name} already started`);
      const addresses: Record<string, string> = {};
      const bindAddresses: Record<string, string> = {};
      const env: Record<string, string> = { ...nodeIdentityEnv(runId, spec.name, spec.role) };
      for (const attachment of spec.addresses) {
        const network = state.networks.find((n) => n.name === attachment.network);
        if (network === undefined) throw new DriverError(DRIVER, "NETWORK_NOT_FOUND", `node ${spec.name}: network ${attachment.network} was not created in run ${runId}`);
        const host = attachment.ipv4 !== undefined ? hostOctet(attachment.ipv4) : nextFreeHost(state, network.name);
        addresses[network.name] = publishedAddress(state.secondOctet, network.index, host);
        bindAddresses[network.name] = hiddenAddress(state.secondOctet, network.index, host);
        env[`QMT_ADDR_${envName(network.name)}`] = addresses[network.name]!;
        env[`QMT_BIND_ADDR_${envName(network.name)}`] = bindAddresses[network.name]!;
      }
      const logFile = path.join(runDir, `${spec.name}.log`);
      const fd = openSync(logFile, "a");
      const [first, ...args] = argv;
      const subprocess = execa(hostProgram(first!), args, {
        env: { ...spec.env, ...env },
        extendEnv: true,
        // Own process group (removeRun signals the whole group); detached also means execa does not
        // kill it when we exit: a node outlives a crashed driver, removeRun finds it by the state file.
        detached: true,
        stdin: "ignore",
        // The log file's descriptor goes straight to the child (no pipe through us, so logs survive
        // our crash). execa documents integer descriptors; its types only list 0…9, hence the cast.
        stdout: fd as 3,
        stderr: fd as 3,
        reject: false,
      });
      closeSync(fd); // the child holds its own copy
      // Spawn errors (ENOENT, EACCES) surface on the promise; wait for "spawn" or the error.
      const spawned = await new Promise<{ ok: true } | { ok: false; message: string }>((resolve) => {
        subprocess.nodeChildProcess.once("spawn", () => resolve({ ok: true }));
        subprocess.nodeChildProcess.once("error", (error) => resolve({ ok: false, message: error.message }));
      });
      const settled = subprocess.then((result) => result);
      if (!spawned.ok || subprocess.pid === undefined) {
        const result = await settled;
        throw new DriverError(DRIVER, "DRIVER_FAILED", `node ${spec.name}: cannot start ${argv.join(" ")}: ${spawned.ok ? result.message : spawned.message}`);
      }
      subprocess.nodeChildProcess.unref();
      void settled; // reaped by libuv; exit status is read from /proc, not from here
      const pid = subprocess.pid;
      const stat = readProcStat(pid);
      if (stat === undefined) {
        // Exited already: record it anyway so logs and listRun tell the story.
        state.nodes.push({ name: spec.name, role: spec.role, pid, startTicks: "", argv, addresses, bindAddresses, env: { ...spec.env, ...env }, logFile });
        return toNodeState(state.nodes.at(-1)!);
      }
      // exec runs with the node's whole environment, as `docker exec` does.
      const record: LocalNodeRecord = { name: spec.name, role: spec.role, pid, startTicks: stat.startTicks, argv, addresses, bindAddresses, env: { ...spec.env, ...env }, logFile };
      if (signal?.aborted) {
        await stopProcessGroup(pid, stat.startTicks, this.#stopTimeoutMs);
        signal.throwIfAborted();
      }
      state.nodes.push(record);
      this.#ensurePoller(runId);
      return toNodeState(record);
    });
  }

  async exec(runId: string, node: string, argv: string[], signal?: AbortSignal): Promise<ExecResult> {
    const record = await this.#node(runId, node);
    if (argv.length === 0) throw new DriverError(DRIVER, "DRIVER_FAILED", "exec: empty argv");
    // Output as the command wrote it (final newline kept), as the docker driver returns it.
    const result = await execa(hostProgram(argv[0]!), argv.slice(1), { env: record.env, extendEnv: true, reject: false, stripFinalNewline: false, ...(signal ? { cancelSignal: signal } : {}) });
    if (result.isCanceled) signal?.throwIfAborted();
    return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  async logs(runId: string, node: string, opts: { tail?: number } = {}, signal?: AbortSignal): Promise<string> {
    const record = await this.#node(runId, node);
    const text = await readFile(record.logFile, { encoding: "utf8", ...(signal ? { signal } : {}) });
    if (opts.tail === undefined) return text;
    const lines = text.split("\n");
    if (lines.at(-1) === "") lines.pop();
    return lines.slice(-opts.tail).join("\n") + (lines.length > 0 ? "\n" : "");
  }

  async impair(runId: string, target: ImpairmentTarget, spec: ImpairmentSpec, signal?: AbortSignal): Promise<AppliedImpairment> {
    signal?.throwIfAborted();
    return this.#setImpairment(runId, target, spec);
  }

  async heal(runId: string, target: ImpairmentTarget, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    await this.#setImpairment(runId, target, {});
  }

  async listRun(runId: string): Promise<{ networks: NetworkState[]; nodes: NodeState[] }> {
    const state = await this.#readState(runId);
    if (state === undefined) return { networks: [], nodes: [] };
    return { networks: state.networks.map((n) => toNetworkState(n, state.secondOctet)), nodes: state.nodes.map(toNodeState) };
  }

  async removeRun(runId: string | undefined, signal?: AbortSignal): Promise<{ removed: number }> {
    const runIds = runId !== undefined ? [runId] : this.#allRunIds();
    let removed = 0;
    for (const id of runIds) {
      signal?.throwIfAborted();
      removed += await this.#lock(id, async () => {
        let count = 0;
        const poller = this.#pollers.get(id);
        if (poller !== undefined) clearInterval(poller);
        this.#pollers.delete(id);
        const relays = this.#relays.get(id);
        if (relays !== undefined) {
          await Promise.all([...relays.values()].map((r) => r.close()));
          this.#relays.delete(id);
        }
        const state = await this.#readState(id);
        if (state === undefined) return 0;
        await Promise.all(state.nodes.map((n) => stopProcessGroup(n.pid, n.startTicks, this.#stopTimeoutMs)));
        count += state.nodes.length + state.networks.length + state.relays.length;
        await rm(this.#runDir(id), { recursive: true, force: true });
        return count;
      });
    }
    return { removed };
  }

  /** Closes this process's relays and pollers; nodes keep running until removeRun. */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const poller of this.#pollers.values()) clearInterval(poller);
    this.#pollers.clear();
    const all = [...this.#relays.values()].flatMap((m) => [...m.values()]);
    this.#relays.clear();
    await Promise.all(all.map((r) => r.close()));
  }

  // --- relays ---

  async #setImpairment(runId: string, target: ImpairmentTarget, spec: ImpairmentSpec): Promise<AppliedImpairment> {
    return this.#withState(runId, false, async (state) => {
      const node = state.nodes.find((n) => n.name === target.node);
      if (node === undefined) throw new DriverError(DRIVER, "NODE_NOT_FOUND", `run ${runId}: no node ${target.node}`);
      if (node.addresses[target.network] === undefined) throw new DriverError(DRIVER, "NETWORK_NOT_FOUND", `node ${target.node} is not on network ${target.network}`);
      const key = `${target.node}/${target.network}`;
      const current = state.impairments[key] ?? { forward: {}, reverse: {} };
      // ingress = to the node = client → node = the relay's forward direction.
      if (target.direction !== "egress") current.forward = { ...spec };
      if (target.direction !== "ingress") current.reverse = { ...spec };
      state.impairments[key] = current;
      await this.#syncRelays(state);
      const relays = [...(this.#relays.get(runId) ?? new Map<string, UdpImpairer>()).entries()].filter(([k]) => k.startsWith(`${key}/`));
      const healing = Object.keys(spec).length === 0;
      for (const [, relay] of relays) relay.update(current);
      // Relays another live process runs (the foreground `up`) take the new specs from this state
      // file at their next poll.
      const foreign = state.relays.filter((r) => r.node === target.node && r.network === target.network && r.ownerPid !== process.pid && pidAlive(r.ownerPid));
      if (relays.length === 0 && foreign.length > 0) {
        return {
          target,
          spec,
          mechanism: "userspace",
          detail: foreign.map((r) => `udp relay ${r.listen} → ${r.target} in process ${r.ownerPid}: applies forward(ingress)=${JSON.stringify(current.forward)} reverse(egress)=${JSON.stringify(current.reverse)} within ${this.#relayPollMs} ms`),
        };
      }
      if (relays.length === 0 && !healing) {
        // The node has not bound a socket yet (nodes bind shortly after they start, `up` impairs
        // right after starting them). The spec is in the state: the poller opens the relay with it
        // as soon as a socket appears on the hidden address, so the impairment is deferred, not lost.
        return {
          target,
          spec,
          mechanism: "userspace",
          detail: [`deferred: no UDP socket bound on ${node.bindAddresses[target.network]} (QMT_BIND_ADDR_${envName(target.network)}) yet; a relay on ${node.addresses[target.network]}:<port> applies this impairment when the node binds one`],
        };
      }
      return {
        target,
        spec,
        mechanism: "userspace",
        detail: relays.map(([, r]) => `udp relay ${r.address.address}:${r.address.port} → ${r.target.address}:${r.target.port} forward(ingress)=${JSON.stringify(current.forward)} reverse(egress)=${JSON.stringify(current.reverse)}`),
      };
    });
  }

  /** Opens a relay for every socket bound on a node's hidden address that has none yet. */
  async #syncRelays(state: LocalRunState): Promise<void> {
    const runId = state.runId;
    let relays = this.#relays.get(runId);
    if (relays === undefined) {
      relays = new Map();
      this.#relays.set(runId, relays);
    }
    const sockets = boundUdpSockets();
    for (const node of state.nodes) {
      for (const [network, hidden] of Object.entries(node.bindAddresses)) {
        for (const socket of sockets.filter((s) => s.address === hidden)) {
          const key = `${node.name}/${network}/${socket.port}`;
          const specs = state.impairments[`${node.name}/${network}`] ?? { forward: {}, reverse: {} };
          const mine = relays.get(key);
          if (mine !== undefined) {
            mine.update(specs); // `impair`/`heal` from another process changed the state file
            continue;
          }
          const listen = `${node.addresses[network]}:${socket.port}`;
          const recorded = state.relays.find((r) => r.node === node.name && r.network === network && r.listen === listen);
          if (recorded !== undefined && recorded.ownerPid !== process.pid && pidAlive(recorded.ownerPid)) continue; // its process runs it
          if (recorded !== undefined) state.relays.splice(state.relays.indexOf(recorded), 1); // its process is gone
          const relay = await UdpImpairer.start({
            listen: { address: node.addresses[network]!, port: socket.port },
            target: { address: hidden, port: socket.port },
            forward: specs.forward,
            reverse: specs.reverse,
          });
          relays.set(key, relay);
          state.relays.push({ node: node.name, network, listen, target: `${hidden}:${socket.port}`, ownerPid: process.pid });
        }
      }
    }
  }

  #ensurePoller(runId: string): void {
    if (this.#pollers.has(runId)) return;
    const poller = setInterval(() => {
      void this.#withState(runId, false, (state) => this.#syncRelays(state)).catch((error: unknown) => {
        // The run was removed meanwhile, or a port was taken: log and keep polling.
        if (!(error instanceof DriverError && error.code === "RUN_NOT_FOUND")) process.stderr.write(`local driver: relay sync for ${runId}: ${(error as Error).message}\n`);
      });
    }, this.#relayPollMs);
    poller.unref();
    this.#pollers.set(runId, poller);
  }

  // --- state ---

  #runDir(runId: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(runId)) throw new DriverError(DRIVER, "DRIVER_FAILED", `run id ${JSON.stringify(runId)}: use letters, digits, . _ -`);
    return path.join(this.#stateRoot, runId);
  }

  #allRunIds(): string[] {
    if (!existsSync(this.#stateRoot)) return [];
    return readdirSync(this.#stateRoot).filter((d) => existsSync(path.join(this.#stateRoot, d, STATE_FILE)));
  }

  async #readState(runId: string): Promise<LocalRunState | undefined> {
    try {
      return JSON.parse(await readFile(path.join(this.#runDir(runId), STATE_FILE), "utf8")) as LocalRunState;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new DriverError(DRIVER, "DRIVER_FAILED", `run ${runId}: cannot read its state file`, { cause: error });
    }
  }

  async #node(runId: string, name: string): Promise<LocalNodeRecord> {
    const state = await this.#readState(runId);
    if (state === undefined) throw new DriverError(DRIVER, "RUN_NOT_FOUND", `no run ${runId} under ${this.#stateRoot}`);
    const node = state.nodes.find((n) => n.name === name);
    if (node === undefined) throw new DriverError(DRIVER, "NODE_NOT_FOUND", `run ${runId}: no node ${name}`);
    return node;
  }

  async #withState<T>(runId: string, create: boolean, body: (state: LocalRunState) => Promise<T>): Promise<T> {
    return this.#lock(runId, async () => {
      let state = await this.#readState(runId);
      if (state === undefined) {
        if (!create) throw new DriverError(DRIVER, "RUN_NOT_FOUND", `no run ${runId} under ${this.#stateRoot} (create a network first)`);
        state = { version: 1, runId, secondOctet: this.#freeSecondOctet(runId), networks: [], nodes: [], relays: [], impairments: {} };
        await mkdir(this.#runDir(runId), { recursive: true });
      }
      try {
        return await body(state);
      } finally {
        // A temporary file of this writer's own: another CLI process (impair, heal) may write the same run's
        // state at the same moment, and a shared ".tmp" made one rename fail with ENOENT (seen in CI). The
        // rename is atomic; #lock serialises writers inside one process only (see the closing note on
        // cross-process updates).
        const file = path.join(this.#runDir(runId), STATE_FILE);
        const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
        await writeFile(tmp, JSON.stringify(state, null, 2));
        await rename(tmp, file);
      }
    });
  }

  /** The run's second octet, stepped past octets other runs under this state root already use. */
  #freeSecondOctet(runId: string): number {
    const taken = new Set<number>();
    for (const other of this.#allRunIds()) {
      try {
        taken.add((JSON.parse(readFileSync(path.join(this.#stateRoot, other, STATE_FILE), "utf8")) as LocalRunState).secondOctet);
      } catch {
        // A half-written state of another run: it will take its own octet; nothing to avoid.
      }
    }
    for (let step = 0; step < 224; step++) {
      const octet = runSecondOctet(runId, step);
      if (!taken.has(octet)) return octet;
    }
    throw new DriverError(DRIVER, "DRIVER_FAILED", "all 224 loopback second octets are taken by other runs; remove some");
  }

  async #lock<T>(runId: string, body: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(runId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(body);
    this.#locks.set(runId, next);
    try {
      return await next;
    } finally {
      if (this.#locks.get(runId) === next) this.#locks.delete(runId);
    }
  }
}

/**
 * `node` in a topology's command means the Node running the orchestrator (>= 22.18, for the
 * TypeScript roles; orchestrator/node24.sh picks it), not whatever `node` is first on PATH (a
 * fresh machine's may be 20), as `node` in an image is the image's Node 24.
 */
function hostProgram(file: string): string {
  return file === "node" ? process.execPath : file;
}

function pidAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function nextFreeHost(state: LocalRunState, network: string): number {
  const used = new Set(state.nodes.map((n) => n.addresses[network]).filter((a): a is string => a !== undefined).map(hostOctet));
  for (let host = 10; host <= 254; host++) if (!used.has(host)) return host;
  throw new DriverError(DRIVER, "DRIVER_FAILED", `network ${network}: no free host address`);
}

function toNetworkState(n: LocalNetworkRecord, secondOctet: number): NetworkState {
  return { name: n.name, kind: n.kind, subnet: n.publishedSubnet, id: n.name, bindSubnet: hiddenSubnet(secondOctet, n.index) };
}

function toNodeState(n: LocalNodeRecord): NodeState {
  return { name: n.name, role: n.role, id: String(n.pid), status: n.startTicks !== "" && isOurProcess(n.pid, n.startTicks) ? "running" : "exited", addresses: { ...n.addresses } };
}

/** SIGTERM to the process group, wait up to `timeoutMs`, then SIGKILL. Only if pid is still ours. */
async function stopProcessGroup(pid: number, startTicks: string, timeoutMs: number): Promise<void> {
  if (startTicks === "" || !isOurProcess(pid, startTicks)) return;
  signalGroup(pid, "SIGTERM");
  const deadline = performance.now() + timeoutMs;
  while (isOurProcess(pid, startTicks) && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  if (isOurProcess(pid, startTicks)) signalGroup(pid, "SIGKILL");
  const killDeadline = performance.now() + 2_000;
  while (isOurProcess(pid, startTicks) && performance.now() < killDeadline) await new Promise((resolve) => setTimeout(resolve, 20));
  // Children that left the group's leader behind: the group may outlive its leader.
  signalGroup(pid, "SIGKILL");
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error; // ESRCH: already gone
  }
}
