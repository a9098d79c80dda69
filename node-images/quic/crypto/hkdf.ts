/** HKDF (RFC 5869) and TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1), shared by TLS and QUIC packet protection. */
import { createHash, createHmac } from "node:crypto";

/** Block sizes (bytes) of the hashes TLS 1.3 and QUIC use, for the HMAC pads (RFC 2104). */
const HASH_BLOCK_BYTES: Readonly<Record<string, number>> = { sha256: 64, sha384: 128, sha512: 128 };
const IPAD = 0x36;
const OPAD = 0x5c;

/**
 * HMAC (RFC 2104) built on createHash: H((K ^ opad) || H((K ^ ipad) || parts)). Node 24's createHmac is
 * slow with a raw Buffer key (about 14 µs) and needs a KeyObject per key otherwise (about 6 µs with
 * createSecretKey, plus a native object for the GC to finalise); two plain hashes take about 2.4 µs.
 * HKDF was 38% of a full handshake's CPU before (bench/quic-handshakes.bench.ts).
 */
export function hmac(hash: string, key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const block = HASH_BLOCK_BYTES[hash];
  if (block === undefined) {
    const h = createHmac(hash, key);
    for (const p of parts) h.update(p);
    return h.digest();
  }
  const k = key.length > block ? createHash(hash).update(key).digest() : key;
  const pad = Buffer.allocUnsafe(block);
  for (let i = 0; i < block; i++) pad[i] = (i < k.length ? k[i]! : 0) ^ IPAD;
  const inner = createHash(hash).update(pad);
  for (const p of parts) inner.update(p);
  const innerDigest = inner.digest();
  for (let i = 0; i < block; i++) pad[i] = (i < k.length ? k[i]! : 0) ^ OPAD;
  return createHash(hash).update(pad).update(innerDigest).digest();
}

export function hkdfExtract(hash: string, salt: Uint8Array, ikm: Uint8Array): Buffer {
  return hmac(hash, salt, ikm);
}

export function hkdfExpand(hash: string, prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  const out = Buffer.alloc(length);
  let previous: Buffer = Buffer.alloc(0);
  let filled = 0;
  for (let counter = 1; filled < length; counter++) {
    previous = hmac(hash, prk, previous, info, Uint8Array.of(counter));
    previous.copy(out, filled);
    filled += previous.length;
  }
  return out;
}

/** RFC 8446 §7.1: HkdfLabel = uint16 length, opaque label<7..255> = "tls13 " + label, opaque context<0..255>. */
export function hkdfExpandLabel(hash: string, secret: Uint8Array, label: string, context: Uint8Array, length: number): Buffer {
  const fullLabel = Buffer.from(`tls13 ${label}`, "ascii");
  const info = Buffer.alloc(2 + 1 + fullLabel.length + 1 + context.length);
  info.writeUInt16BE(length, 0);
  info[2] = fullLabel.length;
  fullLabel.copy(info, 3);
  info[3 + fullLabel.length] = context.length;
  Buffer.from(context).copy(info, 4 + fullLabel.length);
  return hkdfExpand(hash, secret, info, length);
}
