/**
 * 1-RTT keys and key update (RFC 9001 §6): the current read and write keys, the next read keys
 * computed ahead of time, and the previous read keys kept for a while for reordered packets.
 */
import type { CipherSuite } from "./crypto/cipher-suites.ts";
import { derivePacketKeys, nextKeyPhaseKeys, nextKeyPhaseSecret, type PacketKeys } from "./packet-protection.ts";
import type { Instant } from "./time.ts";

export class KeyPhase {
  readonly suite: CipherSuite;
  phase: 0 | 1 = 0;
  private readSecret: Buffer;
  private writeSecret: Buffer;
  read: PacketKeys;
  write: PacketKeys;
  nextRead: PacketKeys;
  previousRead: PacketKeys | undefined;
  /** When the previous read keys may be dropped (§6.5: about 3 PTO after the update). */
  previousReadDiscardAt: Instant | undefined;
  /** First packet number we sent in the current phase; an ACK for it (or later) permits another update (§6.1). */
  firstSentInPhase: number | undefined;
  /** Largest packet number received in the current phase. */
  largestReceivedInPhase = -1;
  acknowledgedInPhase = false;
  updates = 0;
  /** Set by initiate(): the next packet authenticated in the new phase completes our update without rotating write again. */
  pendingReadRotation = false;

  constructor(suite: CipherSuite, readSecret: Buffer, writeSecret: Buffer) {
    this.suite = suite;
    this.readSecret = readSecret;
    this.writeSecret = writeSecret;
    this.read = derivePacketKeys(suite, readSecret);
    this.write = derivePacketKeys(suite, writeSecret);
    // RFC 9001 §6: a key update changes the packet key and IV only; the header-protection key stays.
    this.nextRead = nextKeyPhaseKeys(this.read, nextKeyPhaseSecret(suite, readSecret));
  }

  /** May we start an update now (§6.1: the peer acknowledged a packet of the current phase)? */
  canInitiate(): boolean {
    return this.acknowledgedInPhase;
  }

  /** Rotate write keys (we initiate, or we answer the peer's update). */
  private rotateWrite(): void {
    this.writeSecret = nextKeyPhaseSecret(this.suite, this.writeSecret);
    this.write = nextKeyPhaseKeys(this.write, this.writeSecret);
    this.firstSentInPhase = undefined;
    this.acknowledgedInPhase = false;
  }

  /** Rotate read keys: the next ones become current, the current ones are kept as previous. */
  private rotateRead(now: Instant, ptoMs: number): void {
    this.previousRead = this.read;
    this.previousReadDiscardAt = now + 3 * ptoMs;
    this.read = this.nextRead;
    this.readSecret = nextKeyPhaseSecret(this.suite, this.readSecret);
    this.nextRead = nextKeyPhaseKeys(this.read, nextKeyPhaseSecret(this.suite, this.readSecret));
    this.largestReceivedInPhase = -1;
  }

  /** We start an update. */
  initiate(): void {
    this.rotateWrite();
    this.phase = this.phase === 0 ? 1 : 0;
    // The peer answers in the new phase; our read side flips when its first such packet authenticates.
    this.pendingReadRotation = true;
    this.updates++;
  }

  /**
   * A packet authenticated with `nextRead` (its key phase bit differs from our read phase):
   * the peer updated, or answered our update. Returns "peer" when the peer started it.
   */
  onNextPhaseAuthenticated(now: Instant, ptoMs: number): "local" | "peer" {
    this.rotateRead(now, ptoMs);
    if (this.pendingReadRotation) {
      this.pendingReadRotation = false;
      return "local";
    }
    this.rotateWrite();
    this.phase = this.phase === 0 ? 1 : 0;
    this.updates++;
    return "peer";
  }

  /** The key phase bit the peer uses for packets it reads with `read`. */
  get readPhase(): 0 | 1 {
    return this.pendingReadRotation ? (this.phase === 0 ? 1 : 0) : this.phase;
  }

  dropPreviousIfDue(now: Instant): void {
    if (this.previousReadDiscardAt !== undefined && now >= this.previousReadDiscardAt) {
      this.previousRead = undefined;
      this.previousReadDiscardAt = undefined;
    }
  }
}
