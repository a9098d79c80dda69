/**
 * Is pid still the process we started? A pid can be reused after a crash; the start time in
 * /proc/<pid>/stat (field 22, clock ticks since boot) is what tells two processes apart (proc(5)).
 */
import { readFileSync } from "node:fs";

export interface ProcStat {
  state: string;
  startTicks: string;
}

export function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined; // no such process: that is the answer, not an error
  }
  // Field 2 (comm) is in parentheses and may hold spaces; fields 3… follow the last ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = rest[0];
  const startTicks = rest[19];
  if (state === undefined || startTicks === undefined) return undefined;
  return { state, startTicks };
}

/** True when pid runs and started at `startTicks` (a zombie counts as gone). */
export function isOurProcess(pid: number, startTicks: string): boolean {
  const stat = readProcStat(pid);
  return stat !== undefined && stat.startTicks === startTicks && stat.state !== "Z" && stat.state !== "X";
}
