/**
 * Running the node roles as processes on 127.0.0.0/8 for tests and the scale-10k bench: a per-run
 * PKI and token written to a temp dir, config files, spawned processes whose "listening" line is
 * awaited with a deadline, and /metrics read back. Every process started here is killed by
 * `stopAll()` (tests call it in afterAll), which also removes the run's temp dir.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createCertificateAuthority, issueCertificate } from "../../node-images/common/pki.ts";

export const REPO = join(import.meta.dirname, "..", "..");
const NODE = process.execPath;
/**
 * V8 flags for every role process, as node-images/Dockerfile runs them. Node 24 without pointer compression
 * lets the young generation grow to two 64 MiB semi-spaces, which a busy role fills and keeps resident: about
 * 110 MB of RSS per process at scale for nothing live. Two 8 MiB semi-spaces cost a few per cent more CPU in
 * scavenges (bench/scale-10k.bench.ts).
 */
export const ROLE_NODE_FLAGS = ["--max-semi-space-size=8"];

export interface RunDir {
  dir: string;
  token: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  quicLbKeyHex: string;
  statelessResetKeyHex: string;
}

/** A temp dir with the run's CA, one server certificate (for every backend), the token and shared keys. */
export function makeRunDir(serverIps: string[]): RunDir {
  const dir = mkdtempSync(join(tmpdir(), "qmt-roles-"));
  runDirs.add(dir);
  const ca = createCertificateAuthority({ commonName: "qmt run CA" });
  const leaf = issueCertificate(ca, { commonName: "server.test", dnsNames: ["server.test"], ipAddresses: serverIps });
  const caFile = join(dir, "ca.pem");
  const certFile = join(dir, "server.pem");
  const keyFile = join(dir, "server.key");
  writeFileSync(caFile, ca.certPem);
  writeFileSync(certFile, leaf.certPem);
  writeFileSync(keyFile, leaf.keyPem);
  return {
    dir,
    token: randomBytes(16).toString("hex"),
    caFile,
    certFile,
    keyFile,
    quicLbKeyHex: randomBytes(16).toString("hex"),
    statelessResetKeyHex: randomBytes(32).toString("hex"),
  };
}

export function writeJson(run: RunDir, name: string, value: unknown): string {
  const file = join(run.dir, name);
  writeFileSync(file, JSON.stringify(value, null, 2));
  return file;
}

/** A port free right now on `address` for both UDP and TCP (for configs that must survive a restart). */
export async function freePort(address: string): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const udp = createSocket("udp4");
    const port = await new Promise<number>((resolve, reject) => {
      udp.once("error", reject);
      udp.bind(0, address, () => resolve(udp.address().port));
    });
    const tcpFree = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(false));
      s.listen(port, address, () => s.close(() => resolve(true)));
    });
    await new Promise<void>((r) => udp.close(() => r()));
    if (tcpFree) return port;
  }
  throw new Error(`no free port on ${address} after 20 attempts`);
}

export interface RoleProcess {
  name: string;
  child: ChildProcess;
  /** The first JSON line whose `event` matched (listening/started). */
  ready: Record<string, unknown>;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

const processes = new Set<RoleProcess>();
const runDirs = new Set<string>();

/** Spawn `node <role>/main.ts args`, resolve once a JSON line with `event` in `readyEvents` appears (stdout or stderr). */
export async function startRole(
  name: string,
  role: "lb" | "server" | "client",
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; readyEvents?: string[]; timeoutMs?: number } = {},
): Promise<RoleProcess> {
  const child = spawn(NODE, [...ROLE_NODE_FLAGS, join(REPO, "node-images", role, "main.ts"), ...args], {
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const rp: RoleProcess = {
    name,
    child,
    ready: {},
    stdout: [],
    stderr: [],
    exited: new Promise((resolve) => child.once("exit", (code) => resolve(code))),
  };
  processes.add(rp);
  const readyEvents = opts.readyEvents ?? ["listening", "started"];
  const timeoutMs = opts.timeoutMs ?? 15_000;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready within ${timeoutMs} ms; stderr: ${rp.stderr.slice(-5).join("\n")}`)), timeoutMs);
    const onLine = (sink: string[]) => (line: string) => {
      sink.push(line);
      if (sink.length > 20_000) sink.shift();
      if (!line.startsWith("{")) return;
      try {
        const j = JSON.parse(line) as Record<string, unknown>;
        if (typeof j.event === "string" && readyEvents.includes(j.event) && Object.keys(rp.ready).length === 0) {
          rp.ready = j;
          clearTimeout(timer);
          resolve();
        }
      } catch {
        // Not JSON: kept in the sink for the failure message.
      }
    };
    createInterface({ input: child.stdout! }).on("line", onLine(rp.stdout));
    createInterface({ input: child.stderr! }).on("line", onLine(rp.stderr));
    void rp.exited.then((code) => {
      clearTimeout(timer);
      if (Object.keys(rp.ready).length === 0) reject(new Error(`${name} exited with ${code} before it was ready: ${rp.stderr.slice(0, 3).join("\n")}`));
    });
  });
  return rp;
}

export async function kill(rp: RoleProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
  if (rp.child.exitCode === null && rp.child.signalCode === null) rp.child.kill(signal);
  const code = await rp.exited;
  processes.delete(rp);
  return code;
}

/** Kill every process started here and remove the run dirs (keys, configs, outputs). */
export async function stopAll(): Promise<void> {
  await Promise.all([...processes].map((p) => kill(p, "SIGKILL")));
  for (const dir of runDirs) rmSync(dir, { recursive: true, force: true });
  runDirs.clear();
}

/** Prometheus text → sum of every sample of `name` whose labels include `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ([^ ]+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const kv of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[kv[1]!] = kv[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[4]);
  }
  return sum;
}

export async function scrape(management: string): Promise<string> {
  const res = await fetch(`http://${management}/metrics`);
  if (!res.ok) throw new Error(`GET http://${management}/metrics: ${res.status}`);
  return res.text();
}

/** Poll `check` until it returns true or the deadline passes (no fixed sleeps). */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000; i++) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`gave up waiting for ${what}`);
}

export interface Testbed {
  run: RunDir;
  lb: RoleProcess;
  lbConfigFile: string;
  servers: RoleProcess[];
  vip: string;
  lbManagement: string;
  serverManagement: string[];
  serverDirect: string[];
}

/** 1 LB and `backends` servers on 127.0.0.0/8; fixed LB ports so that a restarted LB keeps its addresses. */
export async function startTestbed(opts: { backends: number; preferredAddress?: "direct" | "none"; migrationLatencyBucketsMs?: number[] }): Promise<Testbed> {
  const lbIp = "127.0.0.10";
  const serverIps = Array.from({ length: opts.backends }, (_, i) => `127.0.0.${21 + i}`);
  const run = makeRunDir(serverIps);
  const quicLb = { configs: [{ configId: 0, serverIdLength: 1, nonceLength: 7, key: run.quicLbKeyHex }] };
  const servers: RoleProcess[] = [];
  for (let i = 0; i < opts.backends; i++) {
    const ip = serverIps[i]!;
    const file = writeJson(run, `server${i + 1}.json`, {
      id: `backend${i + 1}`,
      serverId: (i + 1).toString(16).padStart(2, "0"),
      // Port 0: the server offers the port the OS picked as its preferred address.
      direct: [`${ip}:0`],
      tunnel: `${ip}:0`,
      management: `${ip}:0`,
      preferredAddress: opts.preferredAddress ?? "direct",
      quicLb,
      statelessResetKey: run.statelessResetKeyHex,
      tls: { certificateFile: run.certFile, privateKeyFile: run.keyFile },
      files: [1024, 65536],
      migrationLatencyBucketsMs: opts.migrationLatencyBucketsMs,
    });
    servers.push(await startRole(`server${i + 1}`, "server", ["--config", file], { env: { QMT_CONTROL_TOKEN: run.token } }));
  }
  const vip = `${lbIp}:${await freePort(lbIp)}`;
  const lbConfigFile = writeJson(run, "lb.json", {
    vips: [vip],
    tunnel: `${lbIp}:${await freePort(lbIp)}`,
    management: `${lbIp}:${await freePort(lbIp)}`,
    quicLb,
    backends: servers.map((s, i) => ({ id: `backend${i + 1}`, serverId: (i + 1).toString(16).padStart(2, "0"), address: String(s.ready.tunnel) })),
  });
  const lb = await startRole("lb", "lb", ["--config", lbConfigFile], { env: { QMT_CONTROL_TOKEN: run.token } });
  return {
    run,
    lb,
    lbConfigFile,
    servers,
    vip,
    lbManagement: String(lb.ready.management),
    serverManagement: servers.map((s) => String(s.ready.management)),
    serverDirect: servers.map((s) => (s.ready.direct as string[])[0]!),
  };
}

export function clientConfig(tb: Testbed, overrides: Record<string, unknown>): string {
  return writeJson(tb.run, `client-${randomBytes(4).toString("hex")}.json`, {
    target: tb.vip,
    serverName: "server.test",
    caFile: tb.run.caFile,
    bind: ["127.0.0.30:0"],
    management: "127.0.0.30:0",
    ...overrides,
  });
}
