/**
 * One test file at a time for a shared resource, across vitest's parallel worker processes:
 * - "docker" (lockDockerEngine): the Docker tests create networks with fixed subnets (lb-bypass's
 *   own, the compliance suite's 192.0.2.0/24) that would collide on one engine;
 * - "timing" (test/impairments): the impairer's real-time measurements and the QEMU guest each
 *   need a core of this 2-core machine to themselves while they measure delays.
 * A directory made with mkdir (atomic) is the lock; it names its owner's pid so a crashed owner's
 * lock is taken over instead of waited on.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

const POLL_MS = 100;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function lockDockerEngine(timeoutMs: number): Promise<{ release: () => Promise<void> }> {
  return lockTestResource("docker", timeoutMs);
}

export async function lockTestResource(name: "docker" | "timing", timeoutMs: number): Promise<{ release: () => Promise<void> }> {
  const LOCK_DIR = path.join(tmpdir(), `qmt-${name}-tests.lock`);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      await mkdir(LOCK_DIR);
      await writeFile(path.join(LOCK_DIR, "owner"), String(process.pid));
      return { release: () => rm(LOCK_DIR, { recursive: true, force: true }) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const owner = Number(await readFile(path.join(LOCK_DIR, "owner"), "utf8").catch(() => "NaN"));
    // A lock without an owner file yet is being taken right now; one whose owner died is stale.
    if (Number.isInteger(owner) && owner !== process.pid && !alive(owner)) await rm(LOCK_DIR, { recursive: true, force: true });
    if (performance.now() > deadline) throw new Error(`another test file held ${LOCK_DIR} for ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
