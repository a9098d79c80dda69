/**
 * migration-peer.ts as child processes inside the namespaces: the server (ready when it prints "listening")
 * and the client (done when it exits), both with deadlines, both parsed from their JSON lines. Node is
 * process.execPath, so the children run the same Node as the test.
 */
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { NetnsError, stopChild, type NetnsTopology } from "./netns-topology.ts";
import type { ClientConnectionReport } from "./migration-peer.ts";

export const MIGRATION_PEER = join(import.meta.dirname, "migration-peer.ts");

type JsonLine = Record<string, unknown> & { event?: string };

class JsonLineReader {
  readonly lines: JsonLine[] = [];
  stderr = "";
  private partial = "";
  private readonly waiters = new Set<() => void>();

  constructor(child: ChildProcess) {
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      const parts = (this.partial + chunk).split("\n");
      this.partial = parts.pop()!;
      for (const p of parts) {
        if (p.trim() === "") continue;
        try {
          this.lines.push(JSON.parse(p) as JsonLine);
        } catch {
          this.lines.push({ event: "unparsable", text: p.slice(0, 500) });
        }
      }
      this.notify();
    });
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      if (this.stderr.length < 64 * 1024) this.stderr += chunk;
    });
    child.once("exit", () => this.notify());
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves with the first line matching, or rejects when the child exits first or the deadline passes. */
  waitForLine(child: ChildProcess, match: (l: JsonLine) => boolean, deadlineMs: number, what: string): Promise<JsonLine> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.lines.find(match);
        if (found) finish(() => resolve(found));
        else if (child.exitCode !== null || child.signalCode !== null) {
          finish(() => reject(new NetnsError(`${what}: the process exited (${child.exitCode ?? child.signalCode}) first; stderr: ${this.stderr.trim().slice(-2000)}`)));
        }
      };
      const timer = setTimeout(() => finish(() => reject(new NetnsError(`${what}: nothing within ${deadlineMs} ms; stderr: ${this.stderr.trim().slice(-2000)}`))), deadlineMs);
      const finish = (settle: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        settle();
      };
      this.waiters.add(check);
      check();
    });
  }
}

export interface ServerConnectionReport {
  state: string;
  timeline: Record<string, unknown>;
  migration: Record<string, number>;
  paths: Array<{ local: { address: string; port: number }; remote: { address: string; port: number }; validated: boolean; active: boolean; minRttMs: number }>;
  stats: { packetsSent: number; packetsReceived: number; packetsLost: number; drops: Record<string, number> };
  uploadBytes: number;
}

export interface ServerStopReport {
  connections: ServerConnectionReport[];
  errors: string[];
  endpointDrops: Record<string, number>;
  counters: { datagramsIn: number; datagramsOut: number; sendErrors: number };
}

/** A long-running child that prints {"event":"listening"} when ready and {"event":"stopped",...} on SIGTERM. */
export class ReportingProcess {
  private readonly child: ChildProcess;
  private readonly reader: JsonLineReader;
  listening: JsonLine | undefined;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.reader = new JsonLineReader(child);
  }

  static async start(topology: NetnsTopology, ns: string, argv: string[], what: string, deadlineMs = 15_000): Promise<ReportingProcess> {
    const p = new ReportingProcess(topology.spawn(ns, [process.execPath, ...argv]));
    p.listening = await p.reader.waitForLine(p.child, (l) => l.event === "listening", deadlineMs, `${what} listening`);
    return p;
  }

  /** SIGTERM; the process prints its report and exits. */
  async stop(deadlineMs = 10_000): Promise<JsonLine> {
    const line = this.reader.waitForLine(this.child, (l) => l.event === "stopped", deadlineMs, "stop report");
    this.child.kill("SIGTERM");
    try {
      return await line;
    } finally {
      await stopChild(this.child, 2_000);
    }
  }
}

export class MigrationServerProcess {
  private readonly process: ReportingProcess;

  private constructor(process: ReportingProcess) {
    this.process = process;
  }

  static async start(topology: NetnsTopology, ns: string, args: string[], deadlineMs = 15_000): Promise<MigrationServerProcess> {
    return new MigrationServerProcess(await ReportingProcess.start(topology, ns, [MIGRATION_PEER, "server", ...args], "server", deadlineMs));
  }

  async stop(deadlineMs = 10_000): Promise<ServerStopReport> {
    return (await this.process.stop(deadlineMs)) as unknown as ServerStopReport;
  }
}

export interface ClientRun {
  exitCode: number | null;
  connections: ClientConnectionReport[];
  done: { connections: number; failures: number; wallMs: number } | undefined;
  stderr: string;
}

/** Runs the client to its exit (or kills it at the deadline) and returns its reports. */
export async function runMigrationClient(topology: NetnsTopology, ns: string, args: string[], deadlineMs: number): Promise<ClientRun> {
  const child = topology.spawn(ns, [process.execPath, MIGRATION_PEER, "client", ...args]);
  const reader = new JsonLineReader(child);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([exited, new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), deadlineMs)))]);
  clearTimeout(timer);
  if (outcome === "timeout") {
    await stopChild(child, 2_000);
    throw new NetnsError(`client not done within ${deadlineMs} ms; stderr: ${reader.stderr.trim().slice(-2000)}`);
  }
  // 'exit' can come before the last stdout chunk: wait for the stream's end (bounded by the stream closing).
  if (!child.stdout!.closed) await new Promise<void>((resolve) => child.stdout!.once("close", () => resolve()));
  return {
    exitCode: outcome,
    connections: reader.lines.filter((l) => l.event === "connection") as unknown as ClientConnectionReport[],
    done: reader.lines.find((l) => l.event === "done") as ClientRun["done"],
    stderr: reader.stderr,
  };
}
