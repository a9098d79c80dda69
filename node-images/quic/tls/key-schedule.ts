/** The TLS 1.3 key schedule (RFC 8446 §7.1) without PSKs: Early → Handshake → Master secret, and Finished (§4.4.4). */
import { createHash } from "node:crypto";
import type { CipherSuite } from "../crypto/cipher-suites.ts";
import { hkdfExpandLabel, hkdfExtract, hmac } from "../crypto/hkdf.ts";

const emptyHashCache = new Map<string, Buffer>();
const earlySecretCache = new Map<string, Buffer>();
const derivedFromEarlyCache = new Map<string, Buffer>();

function emptyHash(hash: string): Buffer {
  let h = emptyHashCache.get(hash);
  if (!h) emptyHashCache.set(hash, (h = createHash(hash).digest()));
  return h;
}

/** RFC 8446 §7.1: Derive-Secret(Secret, Label, Messages) = HKDF-Expand-Label(Secret, Label, Transcript-Hash(Messages), Hash.length). */
export function deriveSecret(suite: CipherSuite, secret: Uint8Array, label: string, transcriptHash: Uint8Array): Buffer {
  return hkdfExpandLabel(suite.hash, secret, label, transcriptHash, suite.hashLength);
}

/** RFC 8446 §7.1: Early Secret = HKDF-Extract(0, 0) when no PSK is in use (same for every handshake of a hash). */
export function earlySecret(suite: CipherSuite): Buffer {
  let s = earlySecretCache.get(suite.hash);
  if (!s) earlySecretCache.set(suite.hash, (s = hkdfExtract(suite.hash, Buffer.alloc(suite.hashLength), Buffer.alloc(suite.hashLength))));
  return s;
}

/** RFC 8446 §7.1: Derive-Secret(Early Secret, "derived", ""), cached per hash. */
export function derivedFromEarlySecret(suite: CipherSuite): Buffer {
  let s = derivedFromEarlyCache.get(suite.hash);
  if (!s) derivedFromEarlyCache.set(suite.hash, (s = deriveSecret(suite, earlySecret(suite), "derived", emptyHash(suite.hash))));
  return s;
}

/** RFC 8446 §7.1: Handshake Secret = HKDF-Extract(Derive-Secret(Early Secret, "derived", ""), (EC)DHE). */
export function handshakeSecret(suite: CipherSuite, sharedSecret: Uint8Array): Buffer {
  return hkdfExtract(suite.hash, derivedFromEarlySecret(suite), sharedSecret);
}

/** RFC 8446 §7.1: Derive-Secret(Handshake Secret, "derived", ""). */
export function derivedFromHandshakeSecret(suite: CipherSuite, handshake: Uint8Array): Buffer {
  return deriveSecret(suite, handshake, "derived", emptyHash(suite.hash));
}

/** RFC 8446 §7.1: Master Secret = HKDF-Extract(Derive-Secret(Handshake Secret, "derived", ""), 0). */
export function masterSecret(suite: CipherSuite, handshake: Uint8Array): Buffer {
  return hkdfExtract(suite.hash, derivedFromHandshakeSecret(suite, handshake), Buffer.alloc(suite.hashLength));
}

/** RFC 8446 §4.4.4: finished_key = HKDF-Expand-Label(BaseKey, "finished", "", Hash.length); verify_data = HMAC(finished_key, Transcript-Hash). */
export function finishedVerifyData(suite: CipherSuite, baseKey: Uint8Array, transcriptHash: Uint8Array): Buffer {
  const finishedKey = hkdfExpandLabel(suite.hash, baseKey, "finished", Buffer.alloc(0), suite.hashLength);
  // hkdf.ts's hmac(): node 24's createHmac is slow with raw Buffer keys, and a KeyObject per key costs too.
  return hmac(suite.hash, finishedKey, transcriptHash);
}
