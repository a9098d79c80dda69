/** Stateless reset (RFC 9000 §10.3). */
import { createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from "node:crypto";

export const STATELESS_RESET_TOKEN_LENGTH = 16;
/** RFC 9000 §10.3: 5 bytes before the token at minimum, so at least 21 bytes. */
export const MIN_STATELESS_RESET_LENGTH = 21;

/** RFC 9000 §10.3.2: token = HMAC-SHA256(static key, connection ID) truncated to 16 bytes. */
export function statelessResetToken(staticKey: Uint8Array, cid: Uint8Array): Buffer {
  return createHmac("sha256", staticKeyObject(staticKey)).update(cid).digest().subarray(0, STATELESS_RESET_TOKEN_LENGTH);
}

// One KeyObject per static key (an endpoint's key lives as long as the endpoint): Node 24's createHmac
// is ~5x slower with a raw Buffer key, and every issued connection ID needs a token.
const staticKeyObjects = new WeakMap<Uint8Array, KeyObject>();
function staticKeyObject(staticKey: Uint8Array): KeyObject {
  let k = staticKeyObjects.get(staticKey);
  if (!k) staticKeyObjects.set(staticKey, (k = createSecretKey(staticKey)));
  return k;
}

/**
 * RFC 9000 §10.3: a datagram that looks like a short-header packet, ending in the token.
 * It is one byte smaller than the triggering packet (§10.3.3, avoiding loops) but never below 21 bytes.
 * The caller sends none for triggers of 21 bytes or less (a RangeError here is a caller bug).
 */
export function encodeStatelessReset(token: Uint8Array, triggeringPacketLength: number): Buffer {
  const length = Math.min(triggeringPacketLength - 1, 43);
  if (length < MIN_STATELESS_RESET_LENGTH) {
    throw new RangeError(`a stateless reset must be smaller than its ${triggeringPacketLength}-byte trigger and at least 21 bytes`);
  }
  const out = randomBytes(length);
  // Short header form: first bit 0, fixed bit 1, the rest unpredictable.
  out[0] = 0x40 | (out[0]! & 0x3f);
  out.set(token, length - STATELESS_RESET_TOKEN_LENGTH);
  return out;
}

/** RFC 9000 §10.3.1: the last 16 bytes of a datagram of at least 21 bytes match a known token. */
export function isStatelessReset(datagram: Uint8Array, knownTokens: (token: Buffer) => boolean): boolean {
  if (datagram.length < MIN_STATELESS_RESET_LENGTH) return false;
  const token = Buffer.from(datagram.buffer, datagram.byteOffset + datagram.length - STATELESS_RESET_TOKEN_LENGTH, STATELESS_RESET_TOKEN_LENGTH);
  return knownTokens(token);
}

/** Constant-time token comparison (RFC 9000 §10.3.1 recommends not leaking the token by timing). */
export function statelessResetTokensEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
