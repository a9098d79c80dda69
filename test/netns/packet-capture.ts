/**
 * tcpdump inside a namespace of ours, writing a classic pcap (read back with pcap.ts). Started and stopped
 * on conditions: ready when tcpdump reports "listening on", done when it has exited after SIGINT and
 * printed its counters. Callers check that the capture is whole (nothing dropped by the kernel, and as many
 * packets captured as the filter received); a verdict from a partial capture would claim more than it saw.
 */
import type { ChildProcess } from "node:child_process";
import { NetnsError, type NetnsTopology } from "./netns-topology.ts";

const READY_DEADLINE_MS = 10_000;
const STOP_DEADLINE_MS = 10_000;
/** Kernel buffer for the capture (KiB): a few thousand 1200-byte datagrams arrive in bursts. */
const CAPTURE_BUFFER_KIB = 16_384;

export interface CaptureCounters {
  captured: number;
  receivedByFilter: number;
  droppedByKernel: number;
}

export class PacketCapture {
  readonly file: string;
  private readonly child: ChildProcess;
  private stderr = "";
  private readonly exited: Promise<number | null>;

  private constructor(child: ChildProcess, file: string) {
    this.child = child;
    this.file = file;
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    child.stdout!.resume();
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  /** Captures UDP on `iface` of namespace `ns` into `file` (full packets, `-s 0`), once tcpdump is listening. */
  static async start(topology: NetnsTopology, ns: string, iface: string, file: string): Promise<PacketCapture> {
    // -Z root: Debian's tcpdump otherwise drops to user tcpdump, who may not write where we ask.
    // --immediate-mode: without it libpcap hands packets over a ring block at a time (TPACKET_V3, up to 1 s), and
    // the packets of the last block are neither written nor counted as dropped when tcpdump stops: the tail of
    // the exchange went missing that way. -U: write each packet when it arrives.
    const child = topology.spawn(ns, ["tcpdump", "-Z", "root", "-i", iface, "--immediate-mode", "-U", "-s", "0", "-B", String(CAPTURE_BUFFER_KIB), "-n", "-w", file, "udp"]);
    const capture = new PacketCapture(child, file);
    await capture.waitFor(() => capture.stderr.includes("listening on"), READY_DEADLINE_MS, "tcpdump to start listening");
    return capture;
  }

  /** SIGINT, then the counters tcpdump prints on exit. */
  async stop(): Promise<CaptureCounters> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGINT");
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      this.exited,
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), STOP_DEADLINE_MS);
      }),
    ]);
    clearTimeout(timer);
    if (code === "timeout") {
      this.child.kill("SIGKILL");
      throw new NetnsError(`tcpdump did not exit within ${STOP_DEADLINE_MS} ms of SIGINT; stderr: ${this.stderr.trim()}`);
    }
    const count = (label: string): number => {
      const m = new RegExp(`(\\d+) packets? ${label}`).exec(this.stderr);
      if (!m) throw new NetnsError(`tcpdump (exit ${code}) printed no "${label}" count; stderr: ${this.stderr.trim()}`);
      return Number(m[1]);
    };
    return { captured: count("captured"), receivedByFilter: count("received by filter"), droppedByKernel: count("dropped by kernel") };
  }

  private async waitFor(cond: () => boolean, deadlineMs: number, what: string): Promise<void> {
    const deadline = performance.now() + deadlineMs;
    for (let i = 0; i < 10_000 && !cond(); i++) {
      if (this.child.exitCode !== null) throw new NetnsError(`tcpdump exited (${this.child.exitCode}) while waiting for ${what}: ${this.stderr.trim()}`);
      if (performance.now() > deadline) throw new NetnsError(`no ${what} within ${deadlineMs} ms; stderr: ${this.stderr.trim()}`);
      // Wake on tcpdump's next output or after a short poll, whichever comes first.
      const stderr = this.child.stderr!;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          stderr.off("data", done);
          resolve();
        };
        const timer = setTimeout(done, 20);
        stderr.on("data", done);
      });
    }
  }
}
