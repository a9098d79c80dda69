/**
 * A paced UDP probe through an impairer to a sink in the same process, so one-way delay is measured
 * on one clock (`performance.now()`): each datagram carries its sequence number and send time; the
 * sink records the arrival time and echoes it back (replies exercise the reverse direction).
 */
import dgram from "node:dgram";
import os from "node:os";
import { performance } from "node:perf_hooks";

export interface ProbeArrival {
  sequence: number;
  oneWayMs: number;
  arrivedAtMs: number;
  bytes: number;
}

export interface ProbeSink extends AsyncDisposable {
  port: number;
  arrivals: ProbeArrival[];
  payloads: Buffer[];
}

export async function startProbeSink(address = "127.0.0.1"): Promise<ProbeSink> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, address, () => resolve()));
  const arrivals: ProbeArrival[] = [];
  const payloads: Buffer[] = [];
  socket.on("message", (msg, rinfo) => {
    const arrivedAtMs = performance.now();
    payloads.push(msg);
    if (msg.length >= 12) arrivals.push({ sequence: msg.readUInt32BE(0), oneWayMs: arrivedAtMs - msg.readDoubleBE(4), arrivedAtMs, bytes: msg.length });
    socket.send(msg, rinfo.port, rinfo.address);
  });
  return {
    port: socket.address().port,
    arrivals,
    payloads,
    async [Symbol.asyncDispose]() {
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
}

/** Sends `count` datagrams of `bytes` bytes to `port`, one every `intervalMs`; resolves when all are sent. */
export async function sendPaced(opts: { port: number; address?: string; count: number; intervalMs: number; bytes?: number }): Promise<{ sentAtMs: number[]; echoes: number[] }> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  const echoes: number[] = [];
  socket.on("message", (msg) => echoes.push(msg.readUInt32BE(0)));
  const sentAtMs: number[] = [];
  const startMs = performance.now();
  for (let sequence = 0; sequence < opts.count; sequence++) {
    const dueMs = startMs + sequence * opts.intervalMs;
    while (performance.now() < dueMs) await new Promise((resolve) => setTimeout(resolve, Math.max(0, dueMs - performance.now() - 1)));
    const payload = Buffer.alloc(Math.max(12, opts.bytes ?? 64));
    payload.writeUInt32BE(sequence, 0);
    const now = performance.now();
    payload.writeDoubleBE(now, 4);
    sentAtMs.push(now);
    socket.send(payload, opts.port, opts.address ?? "127.0.0.1");
  }
  // Keep the socket for echoes a moment; the caller waits on its own condition.
  setTimeout(() => socket.close(), 2_000).unref();
  return { sentAtMs, echoes };
}

/** Waits until `condition()` holds, polling every 10 ms, or throws after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Resolves once nothing new has arrived for `quietMs` (bounded by `timeoutMs`). */
export async function waitQuiet(count: () => number, quietMs: number, timeoutMs: number): Promise<void> {
  let last = count();
  let lastChangeMs = performance.now();
  await waitFor(() => {
    const c = count();
    if (c !== last) {
      last = c;
      lastChangeMs = performance.now();
    }
    return performance.now() - lastChangeMs >= quietMs;
  }, timeoutMs, "traffic to settle");
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The measurements time real timers on a 2-core machine that other test files load at the same
 * time (vitest runs files in parallel): a starved process sends late, which is the machine's
 * delay, not the impairer's. Where allowed (root, or CAP_SYS_NICE), this process runs at nice -10
 * while it measures, so the scheduler gives it the CPU when its timer is due. Returns the undo.
 */
export function raiseSchedulingPriority(): () => void {
  const before = os.getPriority(0);
  try {
    os.setPriority(0, -10);
  } catch (error) {
    // Not permitted here (not root): measure at the normal priority.
    if ((error as NodeJS.ErrnoException).code !== "EACCES" && (error as NodeJS.ErrnoException).code !== "EPERM") throw error;
    return () => {};
  }
  return () => os.setPriority(0, before);
}
