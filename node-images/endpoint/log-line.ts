/**
 * The endpoint reports on stdout as JSON lines (`{"at":…,"role":…,"event":…}`): the runner keeps them in
 * its logs, and the tests read them (the listening port, Retry and migration counters, the client's verdict).
 */
import { formatSocketAddress, type PathAddress } from "../quic/path.ts";

export type LogLine = (entry: Record<string, unknown>) => void;

export function jsonLineLogger(role: string, write: (text: string) => void): LogLine {
  return (entry) => write(`${JSON.stringify({ at: new Date().toISOString(), role, ...entry })}\n`);
}

export function formatPath(p: PathAddress): string {
  return `${formatSocketAddress(p.local)}<->${formatSocketAddress(p.remote)}`;
}
