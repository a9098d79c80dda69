/** The running handshake transcript hash (RFC 8446 §4.4.1), hashed incrementally; intermediate values via Hash.copy(). */
import { createHash, type Hash } from "node:crypto";
import { HANDSHAKE_TYPE } from "./handshake-messages.ts";

export class TranscriptHash {
  private readonly hash: Hash;

  constructor(algorithm: string) {
    this.hash = createHash(algorithm);
  }

  /**
   * RFC 8446 §4.4.1: after a HelloRetryRequest, ClientHello1 is replaced by
   * message_hash(254) || 00 00 Hash.length || Hash(ClientHello1).
   */
  static afterHelloRetryRequest(algorithm: string, clientHello1: Uint8Array): TranscriptHash {
    const digest = createHash(algorithm).update(clientHello1).digest();
    const t = new TranscriptHash(algorithm);
    t.update(Uint8Array.of(HANDSHAKE_TYPE.message_hash, 0, 0, digest.length));
    t.update(digest);
    return t;
  }

  /** Adds a whole handshake message, header included. */
  update(message: Uint8Array): void {
    this.hash.update(message);
  }

  /** Transcript-Hash of everything so far; the running hash continues. */
  current(): Buffer {
    return this.hash.copy().digest();
  }
}
