/**
 * Runs node-images/endpoint/run_endpoint.sh as the QUIC Interop Runner would, outside a container: the
 * server until we stop it (SIGTERM), the client until it exits. Every wait has a deadline; every child is
 * killed on dispose. Both print JSON lines on stdout (node-images/endpoint/log-line.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createCertificateAuthority, issueCertificate, type IssuedCertificate } from "../../node-images/common/pki.ts";

export const RUN_ENDPOINT = fileURLToPath(new URL("../../node-images/endpoint/run_endpoint.sh", import.meta.url));
const STOP_GRACE_MS = 5_000;

export type EndpointLine = Record<string, unknown> & { event?: string };

/** The runner's directories for one test, under a fresh temp dir: www (with files), downloads, certs, logs. */
export class InteropDirs implements Disposable {
  readonly root = mkdtempSync(join(tmpdir(), "qmt-endpoint-"));
  readonly www = join(this.root, "www");
  readonly downloads = join(this.root, "downloads");
  readonly certs = join(this.root, "certs");
  readonly logs = join(this.root, "logs");

  constructor(files: ReadonlyMap<string, Buffer>, pki: { ca: IssuedCertificate; leaf: IssuedCertificate }) {
    for (const d of [this.www, this.downloads, this.certs, this.logs]) mkdirSync(d, { recursive: true });
    for (const [name, body] of files) writeFileSync(join(this.www, name), body);
    // The runner's names: cert.pem (chain) and priv.key in /certs; ca.pem is how our client verifies here.
    writeFileSync(join(this.certs, "cert.pem"), pki.leaf.certPem);
    writeFileSync(join(this.certs, "priv.key"), pki.leaf.keyPem, { mode: 0o600 });
    writeFileSync(join(this.certs, "ca.pem"), pki.ca.certPem);
  }

  /** The environment both roles get: the directories, and per-role key log and qlog locations. */
  env(role: "client" | "server"): Record<string, string> {
    return {
      WWW_DIR: this.www,
      DOWNLOADS_DIR: this.downloads,
      CERTS_DIR: this.certs,
      SSLKEYLOGFILE: join(this.logs, `${role}-keys.log`),
      QLOGDIR: join(this.logs, `${role}-qlog`),
      BIND_ADDRESS: "127.0.0.1",
    };
  }

  [Symbol.dispose](): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

export function testPki(): { ca: IssuedCertificate; leaf: IssuedCertificate } {
  const ca = createCertificateAuthority({ commonName: "qmt interop-endpoint CA", keyType: "ecdsa-p256" });
  const leaf = issueCertificate(ca, { commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], keyType: "ecdsa-p256", isServer: true });
  return { ca, leaf };
}

/** The same Node that runs the tests runs the endpoint (run_endpoint.sh takes `node` from PATH). */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`, ...env };
}

function collectLines(child: ChildProcess, lines: EndpointLine[], onLine: () => void): void {
  createInterface({ input: child.stdout! }).on("line", (text) => {
    try {
      lines.push(JSON.parse(text) as EndpointLine);
    } catch {
      lines.push({ event: "unparsed", text });
    }
    onLine();
  });
}

async function waitForClose(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  const timer = AbortSignal.timeout(timeoutMs);
  try {
    // "close" comes after "exit" once stdout is drained, so no line is lost.
    await once(child, "close", { signal: timer });
    return true;
  } catch (err) {
    if (timer.aborted) return false;
    throw err;
  }
}

export class EndpointServer implements AsyncDisposable {
  readonly lines: EndpointLine[] = [];
  stderr = "";
  private readonly child: ChildProcess;
  private waiters: Array<() => void> = [];

  private constructor(child: ChildProcess) {
    this.child = child;
    collectLines(child, this.lines, () => this.waiters.forEach((w) => w()));
    child.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
    child.on("close", () => this.waiters.forEach((w) => w()));
  }

  static async start(testcase: string, env: Record<string, string>, timeoutMs = 20_000): Promise<EndpointServer> {
    const child = spawn("sh", [RUN_ENDPOINT], { env: childEnv({ ROLE: "server", TESTCASE: testcase, PORT: "0", ...env }), stdio: ["ignore", "pipe", "pipe"] });
    const server = new EndpointServer(child);
    try {
      await server.waitForLine((l) => l.event === "listening", timeoutMs);
    } catch (err) {
      await server.stop();
      throw new Error(`${(err as Error).message}; stderr: ${server.stderr}`);
    }
    return server;
  }

  get listening(): EndpointLine {
    return this.lines.find((l) => l.event === "listening")!;
  }

  /** The port of the original address ("127.0.0.1:port"). */
  get port(): number {
    return Number((this.listening.addresses as string[])[0]!.split(":").pop());
  }

  waitForLine(match: (l: EndpointLine) => boolean, timeoutMs: number): Promise<EndpointLine> {
    const deadline = performance.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): boolean => {
        const hit = this.lines.find(match);
        if (hit) {
          resolve(hit);
          return true;
        }
        if (this.child.exitCode !== null || this.child.signalCode !== null || performance.now() > deadline) {
          reject(new Error(`server: no matching line (exit ${this.child.exitCode}); lines: ${JSON.stringify(this.lines).slice(0, 2000)}`));
          return true;
        }
        return false;
      };
      if (check()) return;
      const waiter = (): void => {
        if (check()) {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== waiter);
        }
      };
      this.waiters.push(waiter);
      timer = setTimeout(waiter, timeoutMs + 1);
    });
  }

  /** SIGTERM (the server logs "stopped" with its counters and exits 0), SIGKILL after a grace period. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
      if (!(await waitForClose(this.child, STOP_GRACE_MS))) {
        this.child.kill("SIGKILL");
        await waitForClose(this.child, STOP_GRACE_MS);
      }
    }
    return this.child.exitCode;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

export interface ClientRun {
  exitCode: number | null;
  lines: EndpointLine[];
  stderr: string;
  /** The final `{"event":"done",...}` line, when the client got that far. */
  done: EndpointLine | undefined;
}

/** Run the client to completion (killed at the deadline). */
export async function runClient(testcase: string, requests: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<ClientRun> {
  const child = spawn("sh", [RUN_ENDPOINT], {
    env: childEnv({ ROLE: "client", TESTCASE: testcase, REQUESTS: requests.join(" "), ...env }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: EndpointLine[] = [];
  let stderr = "";
  collectLines(child, lines, () => {});
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  if (!(await waitForClose(child, timeoutMs))) {
    child.kill("SIGKILL");
    await waitForClose(child, STOP_GRACE_MS);
    throw new Error(`client did not finish within ${timeoutMs} ms; lines: ${JSON.stringify(lines).slice(0, 2000)}; stderr: ${stderr}`);
  }
  return { exitCode: child.exitCode, lines, stderr, done: lines.find((l) => l.event === "done") };
}
