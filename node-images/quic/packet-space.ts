/**
 * One packet number space (RFC 9000 §12.3): its keys, its packet numbers, its CRYPTO streams
 * and the ACK state of what we received in it.
 */
import type { EncryptionLevel } from "./crypto/levels.ts";
import type { PacketKeys } from "./packet-protection.ts";
import { AckTracker } from "./recovery/ack-tracker.ts";
import type { PacketNumberSpace } from "./recovery/spaces.ts";
import { RecvStream } from "./streams/recv-stream.ts";
import { SendStream } from "./streams/send-stream.ts";

/** RFC 9000 §7.5: at least 4096 bytes of out-of-order CRYPTO data must be buffered; we allow more for big chains. */
export const CRYPTO_BUFFER_BYTES = 256 * 1024;

export class PacketSpace {
  readonly name: PacketNumberSpace;
  readonly level: EncryptionLevel;
  nextPacketNumber = 0;
  /** Largest packet number received and authenticated, -1 before any (decoding, RFC 9000 §A.3). */
  largestReceived = -1;
  readonly acks = new AckTracker();
  /** Keys for Initial and Handshake; 1-RTT keys live in KeyPhase. */
  readKeys: PacketKeys | undefined;
  writeKeys: PacketKeys | undefined;
  readonly cryptoSend: SendStream;
  readonly cryptoRecv: RecvStream;
  discarded = false;
  /** Probe packets the PTO asked for in this space (RFC 9002 §6.2.4). */
  probesPending = 0;
  /** Time an ack-eliciting packet was last sent in this space. */
  lastAckElicitingSentAt: number | undefined;

  constructor(name: PacketNumberSpace) {
    this.name = name;
    this.level = name;
    // CRYPTO is a stream without flow control (§7.5): effectively unlimited on send, bounded buffer on receive.
    this.cryptoSend = new SendStream(-1, { maxBufferedBytes: Number.MAX_SAFE_INTEGER });
    this.cryptoSend.updateSendLimit(Number.MAX_SAFE_INTEGER);
    this.cryptoRecv = new RecvStream(-1, { initialWindowBytes: CRYPTO_BUFFER_BYTES, maxWindowBytes: CRYPTO_BUFFER_BYTES });
  }

  discard(): void {
    this.discarded = true;
    this.readKeys = undefined;
    this.writeKeys = undefined;
    this.probesPending = 0;
    // RFC 9001 §4.9: nothing of a discarded space is sent again; free its CRYPTO buffers (4 KiB blocks
    // that an idle connection would otherwise keep for its lifetime, bench/quic-memory.bench.ts).
    this.cryptoSend.reset(0);
  }
}
