/**
 * The endpoint's configuration, from the environment only (the QUIC Interop Runner's contract; see README.md):
 * ROLE, TESTCASE, REQUESTS, SSLKEYLOGFILE, QLOGDIR, and outside a container WWW_DIR, DOWNLOADS_DIR, CERTS_DIR,
 * PORT; PREFERRED_ADDRESS for connectionmigration; BIND_ADDRESS and CA_FILE are ours.
 *
 * No npm dependency on purpose (no zod here): the interop image carries node-images/ and nothing else.
 */
import { existsSync } from "node:fs";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import type { SocketAddress } from "../quic/path.ts";
import { findTestcase, TESTCASES, type Role, type Testcase } from "./testcases.ts";

/** A variable is missing or malformed: main.ts prints the one line and exits 2. */
export class InteropConfigError extends Error {
  override readonly name = "InteropConfigError";
  readonly code = "INTEROP_CONFIG_INVALID";
}

/** TESTCASE names a test we do not implement: main.ts exits 127, as the runner expects. */
export class UnsupportedTestcaseError extends Error {
  override readonly name = "UnsupportedTestcaseError";
  readonly code = "TESTCASE_UNSUPPORTED";
}

export interface InteropConfig {
  role: Role;
  testcase: Testcase;
  /** Client: the files to fetch (REQUESTS, space-separated https URLs). */
  requests: URL[];
  wwwDir: string;
  downloadsDir: string;
  certsDir: string;
  /** Server: the UDP port of the original address (PORT, default 443; 0 picks one). */
  port: number;
  /** Local address to bind (BIND_ADDRESS); default: server "::" (all, dual-stack), client the wildcard of the server's family. */
  bindAddress: string | undefined;
  keyLogFile: string | undefined;
  qlogDir: string | undefined;
  /** Server, connectionmigration: the address offered as preferred_address and listened on. */
  preferredAddress: SocketAddress | undefined;
  /** Client: trust anchors (CA_FILE, else CERTS_DIR/ca.pem when it exists); none = no certificate check. */
  caFile: string | undefined;
}

const DEFAULT_PORT = 443;

function nonEmpty(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

/** "ip:port" or "[ipv6]:port". (lb/config.ts has the same parser; importing it would pull zod into this image.) */
export function parseSocketAddress(text: string): SocketAddress | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (!isIP(m[1]!) || !Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  return { address: m[1]!, port };
}

function parsePort(text: string | undefined): number {
  if (text === undefined) return DEFAULT_PORT;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new InteropConfigError(`PORT: expected a UDP port 0-65535, got "${text}"`);
  return port;
}

function parseRequests(text: string | undefined): URL[] {
  if (text === undefined) throw new InteropConfigError('REQUESTS: expected space-separated URLs like "https://server4:443/file1", got nothing');
  return text.split(/\s+/).filter((s) => s.length > 0).map((s, i) => {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw new InteropConfigError(`REQUESTS[${i}]: expected an https URL, got "${s}"`);
    }
    if (url.protocol !== "https:") throw new InteropConfigError(`REQUESTS[${i}]: expected an https URL, got "${s}"`);
    return url;
  });
}

/**
 * connectionmigration without PREFERRED_ADDRESS: offer this host's first non-loopback IPv4 address on PORT + 1
 * (in the runner's simulator that is the server's own 193.167.100.100, so the move changes the port).
 */
function derivedPreferredAddress(port: number): SocketAddress | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === "IPv4" && !a.internal) return { address: a.address, port: port === 0 ? 0 : port + 1 };
    }
  }
  return undefined;
}

export function loadInteropConfig(env: NodeJS.ProcessEnv): InteropConfig {
  const role = nonEmpty(env, "ROLE");
  if (role !== "client" && role !== "server") throw new InteropConfigError(`ROLE: expected "client" or "server", got "${role ?? ""}"`);
  const name = nonEmpty(env, "TESTCASE");
  if (name === undefined) throw new InteropConfigError(`TESTCASE: expected one of ${TESTCASES.map((t) => t.name).join(", ")}, got nothing`);
  const testcase = findTestcase(name);
  if (!testcase) throw new UnsupportedTestcaseError(`TESTCASE "${name}" is not supported (supported: ${TESTCASES.map((t) => t.name).join(", ")})`);

  const certsDir = nonEmpty(env, "CERTS_DIR") ?? "/certs";
  const port = parsePort(nonEmpty(env, "PORT"));
  const bindAddress = nonEmpty(env, "BIND_ADDRESS");
  if (bindAddress !== undefined && !isIP(bindAddress)) throw new InteropConfigError(`BIND_ADDRESS: expected an IP address, got "${bindAddress}"`);

  let preferredAddress: SocketAddress | undefined;
  const preferredText = nonEmpty(env, "PREFERRED_ADDRESS");
  if (role === "server" && testcase.server.offerPreferredAddress) {
    if (preferredText !== undefined) {
      preferredAddress = parseSocketAddress(preferredText);
      if (!preferredAddress) throw new InteropConfigError(`PREFERRED_ADDRESS: expected "ip:port" like "193.167.100.100:4433", got "${preferredText}"`);
    } else {
      preferredAddress = derivedPreferredAddress(port);
      if (!preferredAddress) throw new InteropConfigError("PREFERRED_ADDRESS: not set, and this host has no non-loopback IPv4 address to offer instead");
    }
    if (preferredAddress.address === "0.0.0.0" || preferredAddress.address === "::") {
      throw new InteropConfigError(`PREFERRED_ADDRESS: a wildcard cannot be offered to clients, got "${preferredText}"`);
    }
  }

  const caFromDir = join(certsDir, "ca.pem");
  return {
    role,
    testcase,
    requests: role === "client" ? parseRequests(nonEmpty(env, "REQUESTS")) : [],
    wwwDir: nonEmpty(env, "WWW_DIR") ?? "/www",
    downloadsDir: nonEmpty(env, "DOWNLOADS_DIR") ?? "/downloads",
    certsDir,
    port,
    bindAddress,
    keyLogFile: nonEmpty(env, "SSLKEYLOGFILE"),
    qlogDir: nonEmpty(env, "QLOGDIR"),
    preferredAddress,
    caFile: nonEmpty(env, "CA_FILE") ?? (role === "client" && existsSync(caFromDir) ? caFromDir : undefined),
  };
}
