/**
 * NSS key log lines (the SSLKEYLOGFILE format Wireshark reads to decrypt captures):
 * `<label> <client_random hex> <secret hex>`, one per traffic secret. For TLS 1.3 the labels are
 * CLIENT/SERVER_HANDSHAKE_TRAFFIC_SECRET and CLIENT/SERVER_TRAFFIC_SECRET_0; Wireshark derives the
 * QUIC packet keys and later key phases (RFC 9001 §6) from these itself.
 * https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/
 */
import type { EncryptionLevel } from "../crypto/levels.ts";

export type KeyLogLabel =
  | "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
  | "SERVER_HANDSHAKE_TRAFFIC_SECRET"
  | "CLIENT_TRAFFIC_SECRET_0"
  | "SERVER_TRAFFIC_SECRET_0";

/** The label for a secret seen from `role` (a client's write secret is the client's, a server's read secret too). */
export function keyLogLabel(role: "client" | "server", level: EncryptionLevel, direction: "read" | "write"): KeyLogLabel | undefined {
  const side = (role === "client") === (direction === "write") ? "CLIENT" : "SERVER";
  if (level === "handshake") return `${side}_HANDSHAKE_TRAFFIC_SECRET`;
  if (level === "application") return `${side}_TRAFFIC_SECRET_0`;
  return undefined; // Initial secrets derive from the DCID (RFC 9001 §5.2); nothing to log.
}

export function formatKeyLogLine(label: KeyLogLabel, clientRandom: Uint8Array, secret: Uint8Array): string {
  return `${label} ${Buffer.from(clientRandom).toString("hex")} ${Buffer.from(secret).toString("hex")}`;
}
