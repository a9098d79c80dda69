/** HKDF (RFC 5869) and TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1), shared by TLS and QUIC packet protection. */
import { createHmac } from "node:crypto";

export function hkdfExtract(hash: string, salt: Uint8Array, ikm: Uint8Array): Buffer {
  return createHmac(hash, salt).update(ikm).digest();
}

export function hkdfExpand(hash: string, prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  const out = Buffer.alloc(length);
  let previous: Buffer = Buffer.alloc(0);
  let filled = 0;
  for (let counter = 1; filled < length; counter++) {
    previous = createHmac(hash, prk).update(previous).update(info).update(Uint8Array.of(counter)).digest();
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
