/** HKDF (RFC 5869) and TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1), shared by TLS and QUIC packet protection. */
import { createHmac, hash as oneShotHash } from "node:crypto";

/** Block sizes (bytes) of the hashes TLS 1.3 and QUIC use, for the HMAC pads (RFC 2104). */
const HASH_BLOCK_BYTES: Readonly<Record<string, number>> = { sha256: 64, sha384: 128, sha512: 128 };
const IPAD = 0x36;
const OPAD = 0x5c;
/**
 * One scratch buffer for the HMAC inputs: the core is synchronous and node:crypto's one-shot hash() reads its
 * input before it returns, so nothing outlives a call. Larger inputs (none in TLS or QUIC key derivation) take a
 * fresh buffer.
 */
const SCRATCH_BYTES = 2048;
const scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);

/**
 * HMAC (RFC 2104) as two one-shot hashes: H((K ^ opad) || H((K ^ ipad) || parts)). node:crypto's one-shot
 * hash() makes no Hash object, so nothing is left for the GC to finalise: about 2 µs of CPU per HMAC against
 * 2.6-3.9 µs with two createHash() objects, and 3-4 µs for createHmac() with a KeyObject made per key (Node 24).
 * Node's createHmac() is slower still with a raw Buffer key. Key derivation makes about 70 HMACs per handshake
 * (bench/quic-handshakes.bench.ts).
 */
export function hmac(hash: string, key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const block = HASH_BLOCK_BYTES[hash];
  if (block === undefined) {
    const h = createHmac(hash, key);
    for (const p of parts) h.update(p);
    return h.digest();
  }
  const k = key.length > block ? oneShotHash(hash, key, "buffer") : key;
  let total = block;
  for (const p of parts) total += p.length;
  // The outer input (pad || inner digest) is never longer than the inner one's pad plus 64 bytes.
  const buf = total <= SCRATCH_BYTES && block + 64 <= SCRATCH_BYTES ? scratch : Buffer.allocUnsafe(Math.max(total, block + 64));
  const keyLength = k.length;
  for (let i = 0; i < block; i++) buf[i] = (i < keyLength ? k[i]! : 0) ^ IPAD;
  let offset = block;
  for (const p of parts) {
    buf.set(p, offset);
    offset += p.length;
  }
  const innerDigest = oneShotHash(hash, buf.subarray(0, offset), "buffer");
  for (let i = 0; i < block; i++) buf[i] = (i < keyLength ? k[i]! : 0) ^ OPAD;
  buf.set(innerDigest, block);
  return oneShotHash(hash, buf.subarray(0, block + innerDigest.length), "buffer");
}

export function hkdfExtract(hash: string, salt: Uint8Array, ikm: Uint8Array): Buffer {
  return hmac(hash, salt, ikm);
}

const COUNTER_ONE = Uint8Array.of(1);

export function hkdfExpand(hash: string, prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  // One block (every TLS 1.3 and QUIC label): T(1) = HMAC(PRK, info || 0x01). A copy of the wanted prefix, so
  // that a long-lived 12-byte IV does not hold the digest's other bytes.
  const first = hmac(hash, prk, info, COUNTER_ONE);
  if (length === first.length) return first;
  if (length < first.length) return Buffer.from(Uint8Array.prototype.slice.call(first, 0, length).buffer);
  const out = Buffer.alloc(length);
  first.copy(out, 0);
  let previous: Buffer = first;
  let filled = first.length;
  for (let counter = 2; filled < length; counter++) {
    previous = hmac(hash, prk, previous, info, Uint8Array.of(counter));
    previous.copy(out, filled);
    filled += previous.length;
  }
  return out;
}

/** RFC 8446 §7.1: HkdfLabel = uint16 length, opaque label<7..255> = "tls13 " + label, opaque context<0..255>. */
export function hkdfExpandLabel(hash: string, secret: Uint8Array, label: string, context: Uint8Array, length: number): Buffer {
  const labelLength = 6 + label.length;
  const info = Buffer.allocUnsafe(2 + 1 + labelLength + 1 + context.length);
  info.writeUInt16BE(length, 0);
  info[2] = labelLength;
  info.write("tls13 ", 3, "latin1");
  info.write(label, 9, "latin1");
  info[3 + labelLength] = context.length;
  info.set(context, 4 + labelLength);
  return hkdfExpand(hash, secret, info, length);
}
