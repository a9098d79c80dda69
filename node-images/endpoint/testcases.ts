/**
 * The QUIC Interop Runner testcases this endpoint knows (the runner's `TESTCASE` values), and what each
 * asks of our server and our client. The runner passes the server and the client their own value: for
 * several tests the server is told `transfer` while the client gets the test's name (keyupdate, and the
 * current runner's connectionmigration), and rebind-port / rebind-addr are `transfer` for both, the NAT
 * being the simulator's. We accept those names on both sides anyway, so a run by hand is the same test.
 * Anything else is "unsupported" and main.ts exits 127, as the runner expects.
 */
import type { CipherSuiteName } from "../quic/crypto/cipher-suites.ts";
import { HQ_INTEROP_ALPN } from "../quic/hq-interop.ts";

export type Role = "client" | "server";

export const H3_ALPN = "h3";

export interface ServerBehaviour {
  /** Answer token-less Initials with a Retry (RFC 9000 §8.1.2). */
  retry: boolean;
  /** Restrict the TLS cipher suites (chacha20: only TLS_CHACHA20_POLY1305_SHA256). */
  cipherSuites?: CipherSuiteName[];
  /** Offer PREFERRED_ADDRESS in the preferred_address transport parameter and listen there too (RFC 9000 §9.6). */
  offerPreferredAddress: boolean;
}

export interface ClientBehaviour {
  alpn: typeof HQ_INTEROP_ALPN | typeof H3_ALPN;
  /** One connection per URL, one after another (multiconnect); otherwise one connection for all URLs. */
  connectionPerRequest: boolean;
  /** Start a key update (RFC 9001 §6) as soon as the handshake is confirmed. */
  keyUpdate: boolean;
  cipherSuites?: CipherSuiteName[];
  /**
   * connectionmigration: follow the server's preferred address; when the server offered none, migrate
   * actively to a second local port once the response data flows (RFC 9000 §9.2).
   */
  migrate: boolean;
}

export interface Testcase {
  name: string;
  /** What the runner checks, in a line. */
  summary: string;
  server: ServerBehaviour;
  client: ClientBehaviour;
}

const CHACHA20_ONLY: CipherSuiteName[] = ["TLS_CHACHA20_POLY1305_SHA256"];
const PLAIN_SERVER: ServerBehaviour = { retry: false, offerPreferredAddress: false };
const PLAIN_CLIENT: ClientBehaviour = { alpn: HQ_INTEROP_ALPN, connectionPerRequest: false, keyUpdate: false, migrate: false };

export const TESTCASES: readonly Testcase[] = [
  { name: "handshake", summary: "one connection, no Retry, small files over HTTP/0.9", server: PLAIN_SERVER, client: PLAIN_CLIENT },
  { name: "transfer", summary: "one connection, several MB on concurrent streams; flow-control windows must grow", server: PLAIN_SERVER, client: PLAIN_CLIENT },
  { name: "multiconnect", summary: "one connection per file (the runner adds heavy handshake loss)", server: PLAIN_SERVER, client: { ...PLAIN_CLIENT, connectionPerRequest: true } },
  {
    name: "chacha20",
    summary: "both sides offer and accept only TLS_CHACHA20_POLY1305_SHA256",
    server: { ...PLAIN_SERVER, cipherSuites: CHACHA20_ONLY },
    client: { ...PLAIN_CLIENT, cipherSuites: CHACHA20_ONLY },
  },
  { name: "keyupdate", summary: "the client updates keys early; both sides then send key phase 1", server: PLAIN_SERVER, client: { ...PLAIN_CLIENT, keyUpdate: true } },
  { name: "retry", summary: "the server sends Retry; the client's next Initial carries its token", server: { ...PLAIN_SERVER, retry: true }, client: PLAIN_CLIENT },
  { name: "http3", summary: "files over HTTP/3 (ALPN h3), requests in parallel", server: PLAIN_SERVER, client: { ...PLAIN_CLIENT, alpn: H3_ALPN } },
  {
    name: "connectionmigration",
    summary: "server offers PREFERRED_ADDRESS and listens there; the client validates it and moves (or, offered none, migrates to a new local port)",
    server: { ...PLAIN_SERVER, offerPreferredAddress: true },
    client: { ...PLAIN_CLIENT, migrate: true },
  },
  { name: "rebind-port", summary: "the simulator's NAT changes the client's port; the server validates the new path", server: PLAIN_SERVER, client: PLAIN_CLIENT },
  { name: "rebind-addr", summary: "the simulator's NAT changes the client's address and port; the server validates the new path", server: PLAIN_SERVER, client: PLAIN_CLIENT },
];

/** The testcase by its runner name, or undefined when we do not support it (exit 127). */
export function findTestcase(name: string): Testcase | undefined {
  return TESTCASES.find((t) => t.name === name);
}
