/** Retry packets (RFC 9000 §17.2.5) and their integrity tag (RFC 9001 §5.8). */
import { createCipheriv, createDecipheriv, randomInt } from "node:crypto";
import { QUIC_V1 } from "./packet-header.ts";
import { ByteWriter } from "./varint.ts";

/** RFC 9001 §5.8: the fixed QUIC v1 Retry integrity key and nonce. */
const RETRY_KEY_V1 = Buffer.from("be0c690b9f66575a1d766b54e368c84e", "hex");
const RETRY_NONCE_V1 = Buffer.from("461599d35d632bf2239825bb", "hex");
const TAG_LENGTH = 16;

export interface RetryPacket {
  version?: number;
  /** The client's SCID. */
  dcid: Uint8Array;
  /** The server's new connection ID. */
  scid: Uint8Array;
  token: Uint8Array;
  /** DCID of the client's first Initial; authenticated, not sent. */
  originalDestinationConnectionId: Uint8Array;
  /** The 4 unused bits of the first byte (arbitrary, RFC 9000 §17.2.5); random when absent. */
  unusedBits?: number;
}

/** RFC 9001 §5.8: Retry Pseudo-Packet = ODCID length, ODCID, then the Retry packet without its tag. */
function retryIntegrityTag(packetWithoutTag: Uint8Array, originalDestinationConnectionId: Uint8Array): Buffer {
  const cipher = createCipheriv("aes-128-gcm", RETRY_KEY_V1, RETRY_NONCE_V1, { authTagLength: TAG_LENGTH });
  cipher.setAAD(Buffer.concat([Uint8Array.of(originalDestinationConnectionId.length), originalDestinationConnectionId, packetWithoutTag]));
  cipher.final();
  return cipher.getAuthTag();
}

/** RFC 9000 §17.2.5: build a Retry packet with its integrity tag. */
export function encodeRetry(p: RetryPacket): Buffer {
  const w = new ByteWriter(7 + p.dcid.length + p.scid.length + p.token.length + TAG_LENGTH);
  w.u8(0xf0 | ((p.unusedBits ?? randomInt(0, 16)) & 0x0f));
  w.u32(p.version ?? QUIC_V1);
  w.u8(p.dcid.length);
  w.bytes(p.dcid);
  w.u8(p.scid.length);
  w.bytes(p.scid);
  w.bytes(p.token);
  w.bytes(retryIntegrityTag(w.finish(), p.originalDestinationConnectionId));
  return w.finish();
}

/** RFC 9001 §5.8: true when the Retry packet's tag matches the client's original DCID. */
export function verifyRetryIntegrity(packet: Uint8Array, originalDestinationConnectionId: Uint8Array): boolean {
  if (packet.length < 7 + TAG_LENGTH) return false;
  const split = packet.length - TAG_LENGTH;
  const decipher = createDecipheriv("aes-128-gcm", RETRY_KEY_V1, RETRY_NONCE_V1, { authTagLength: TAG_LENGTH });
  decipher.setAAD(Buffer.concat([Uint8Array.of(originalDestinationConnectionId.length), originalDestinationConnectionId, packet.subarray(0, split)]));
  decipher.setAuthTag(packet.subarray(split));
  try {
    decipher.final();
    return true;
  } catch {
    // Tag mismatch: the client discards the Retry (RFC 9000 §17.2.5.2).
    return false;
  }
}
