/**
 * Sent-packet tracking and loss detection (RFC 9002 §6 and Appendix A). One instance per connection, generic over
 * what the caller stores with each packet (the frames to retransmit). Sans-I/O: every call takes `now`.
 *
 * Outstanding packets of a space live in one array ordered by packet number (packet numbers only grow, §12.3 of
 * RFC 9000), so acknowledgement and loss are linear merges with in-place compaction: no map, no per-packet
 * allocation besides the caller's SentPacket record.
 */
import { QuicTransportError } from "../errors.ts";
import type { Instant } from "../time.ts";
import { GRANULARITY_MS, type RttEstimator } from "./rtt-estimator.ts";
import { PACKET_NUMBER_SPACES, type PacketNumberSpace } from "./spaces.ts";

/** RFC 9002 §6.1.1: kPacketThreshold. */
export const PACKET_THRESHOLD = 3;
/** RFC 9002 §6.1.2: kTimeThreshold. */
export const TIME_THRESHOLD = 9 / 8;
/** RFC 9002 §7.6.1: kPersistentCongestionThreshold. */
export const PERSISTENT_CONGESTION_THRESHOLD = 3;
/** RFC 9000 §19.3: frame type of ACK, reported with PROTOCOL_VIOLATION. */
const ACK_FRAME_TYPE = 0x02;

export interface SentPacket<T> {
  packetNumber: number;
  timeSentMs: Instant;
  ackEliciting: boolean;
  /** Counts towards bytes in flight (RFC 9002 §2: ack-eliciting, PADDING or PING). */
  inFlight: boolean;
  sizeBytes: number;
  pathId: number;
  payload: T;
}

export interface AckRange {
  smallest: number;
  largest: number;
}

export interface LossDetectionOptions {
  packetThreshold?: number;
  timeThreshold?: number;
  granularityMs?: number;
}

export interface AckContext {
  handshakeConfirmed: boolean;
  maxAckDelayMs: number;
  /**
   * RFC 9002 §A.7: pto_count is reset only when the peer has completed address validation. Pass `false` at a client
   * before it has a Handshake ACK or confirmation; omitted means validated.
   */
  peerAddressValidated?: boolean;
}

export interface TimerContext {
  rtt: RttEstimator;
  /** Overrides the instance's `ptoCount` (for what-if queries). */
  ptoCount?: number;
  handshakeConfirmed: boolean;
  maxAckDelayMs: number;
  /** RFC 9002 §A.8 PeerCompletedAddressValidation(), for a client: Handshake ACK received or handshake confirmed. */
  peerAddressValidated: boolean;
  hasHandshakeKeys: boolean;
  isServer: boolean;
  /** A server that may not send more until it receives (RFC 9000 §8.1) arms no PTO (RFC 9002 §6.2.2.1, §A.8). */
  atAmplificationLimit?: boolean;
}

export interface AckResult<T> {
  newlyAcked: SentPacket<T>[];
  lost: SentPacket<T>[];
  /** The largest acknowledged packet number of this ACK was newly acknowledged by it. */
  largestAckedNewly: boolean;
  persistentCongestion: boolean;
}

export interface LossTimeoutResult<T> {
  /** Packets declared lost by the time threshold (RFC 9002 §6.1.2), all in `lostSpace`. */
  lost: SentPacket<T>[];
  lostSpace?: PacketNumberSpace;
  /** When a PTO expired (§6.2.4): the space to send probes in, and how many ack-eliciting packets. */
  probeSpace?: PacketNumberSpace;
  /** 0 when no probe is due; 1 for the anti-deadlock probe (§6.2.2.1); 2 otherwise (§6.2.4 "one or two"). */
  probeCount: number;
}

/** Plain-data state of one space, as `toJSON()` gives it. */
export interface SpaceRecoveryState<T> {
  sent: SentPacket<T>[];
  largestSent: number;
  largestAcked: number | null;
  lossTimeMs: Instant | null;
  timeOfLastAckElicitingMs: Instant | null;
  ackElicitingInFlight: number;
}

export interface LossDetectionState<T> {
  packetThreshold: number;
  timeThreshold: number;
  granularityMs: number;
  ptoCount: number;
  bytesInFlight: number;
  firstRttSampleMs: Instant | null;
  lastTimerEventMs: Instant | null;
  spaces: Record<PacketNumberSpace, SpaceRecoveryState<T>>;
}

interface SpaceRecovery<T> {
  /** Outstanding (neither acknowledged nor declared lost) packets, ascending packet number. */
  sent: SentPacket<T>[];
  largestSent: number;
  largestAcked: number | undefined;
  /** RFC 9002 §A.2 loss_time: when the earliest packet not yet lost by the time threshold becomes lost. */
  lossTimeMs: Instant | undefined;
  timeOfLastAckElicitingMs: Instant | undefined;
  ackElicitingInFlight: number;
}

export class LossDetection<T> {
  readonly packetThreshold: number;
  readonly timeThreshold: number;
  readonly granularityMs: number;
  /** RFC 9002 §A.2 pto_count: consecutive PTOs without an acknowledgement. */
  ptoCount = 0;
  private bytesInFlightTotal = 0;
  /** Time of the first RTT sample of the current estimator: persistent congestion ignores packets sent before (§7.6.2). */
  private firstRttSampleMs: Instant | undefined;
  /** Last time RFC 9002 §A would call SetLossDetectionTimer(); the anti-deadlock PTO counts from it (§6.2.2.1). */
  private lastTimerEventMs: Instant | undefined;
  private readonly spaces: Record<PacketNumberSpace, SpaceRecovery<T>>;

  constructor(opts: LossDetectionOptions = {}) {
    this.packetThreshold = opts.packetThreshold ?? PACKET_THRESHOLD;
    this.timeThreshold = opts.timeThreshold ?? TIME_THRESHOLD;
    this.granularityMs = opts.granularityMs ?? GRANULARITY_MS;
    this.spaces = { initial: newSpace<T>(), handshake: newSpace<T>(), application: newSpace<T>() };
  }

  bytesInFlight(): number {
    return this.bytesInFlightTotal;
  }

  largestAcked(space: PacketNumberSpace): number | undefined {
    return this.spaces[space].largestAcked;
  }

  /** Outstanding in-flight packets of a space, ascending (e.g. to resend their CRYPTO data in a probe). */
  inFlight(space: PacketNumberSpace): SentPacket<T>[] {
    return this.spaces[space].sent.filter((p) => p.inFlight);
  }

  /** RFC 9002 §A.5. Packet numbers must increase within a space. */
  onPacketSent(space: PacketNumberSpace, p: SentPacket<T>, now: Instant): void {
    const s = this.spaces[space];
    if (p.packetNumber <= s.largestSent) {
      throw new RangeError(`packet number ${p.packetNumber} in ${space} is not above ${s.largestSent}`);
    }
    s.largestSent = p.packetNumber;
    s.sent.push(p);
    if (p.inFlight) {
      if (p.ackEliciting) {
        s.timeOfLastAckElicitingMs = p.timeSentMs;
        s.ackElicitingInFlight++;
      }
      this.bytesInFlightTotal += p.sizeBytes;
      this.lastTimerEventMs = now;
    }
  }

  /** RFC 9002 §A.7. `ackDelayMs` is already decoded (ack_delay × 2^ack_delay_exponent µs, in ms). */
  onAckReceived(
    space: PacketNumberSpace,
    ranges: readonly AckRange[],
    ackDelayMs: number,
    rtt: RttEstimator,
    ctx: AckContext,
    now: Instant,
  ): AckResult<T> {
    const s = this.spaces[space];
    const descending = toDescending(ranges);
    if (descending.length === 0) return emptyAckResult<T>();
    const largestInAck = descending[0]!.largest;
    if (largestInAck > s.largestSent) {
      // RFC 9000 §13.1: acknowledging a packet that was never sent is a PROTOCOL_VIOLATION.
      throw new QuicTransportError("PROTOCOL_VIOLATION", `ACK of unsent packet ${largestInAck} in ${space}`, ACK_FRAME_TYPE);
    }
    s.largestAcked = s.largestAcked === undefined ? largestInAck : Math.max(s.largestAcked, largestInAck);

    // DetectAndRemoveAckedPackets: merge the packets the ACK can cover (binary search for the first) against the
    // ranges taken smallest first, compacting in place; the untouched tail moves down natively.
    const newlyAcked: SentPacket<T>[] = [];
    const sent = s.sent;
    let r = descending.length - 1;
    const from = firstAtOrAbove(sent, descending[r]!.smallest);
    let kept = from;
    let i = from;
    for (; i < sent.length; i++) {
      const p = sent[i]!;
      if (p.packetNumber > largestInAck) break;
      while (r >= 0 && descending[r]!.largest < p.packetNumber) r--;
      if (r >= 0 && descending[r]!.smallest <= p.packetNumber) {
        newlyAcked.push(p);
        this.removeFromFlight(s, p);
      } else {
        sent[kept++] = p;
      }
    }
    removeGap(sent, kept, i);
    if (newlyAcked.length === 0) return emptyAckResult<T>();

    const largestNewly = newlyAcked[newlyAcked.length - 1]!;
    const largestAckedNewly = largestNewly.packetNumber === largestInAck;
    // RFC 9002 §5.1: an RTT sample only when the largest acknowledged is newly acknowledged and something
    // ack-eliciting was newly acknowledged.
    if (largestAckedNewly && newlyAcked.some((p) => p.ackEliciting)) {
      const hadSample = rtt.hasSample;
      rtt.update(now - largestNewly.timeSentMs, ackDelayMs, ctx.handshakeConfirmed, ctx.maxAckDelayMs);
      if (!hadSample) this.firstRttSampleMs = now;
    }

    const lost = this.detectAndRemoveLostPackets(space, rtt, now);
    const persistentCongestion = this.inPersistentCongestion(lost, rtt, ctx.maxAckDelayMs);
    // RFC 9002 §A.7: reset pto_count unless a client is unsure the server validated its address.
    if (ctx.peerAddressValidated !== false || space !== "initial") this.ptoCount = 0;
    this.lastTimerEventMs = now;
    return { newlyAcked, lost, largestAckedNewly, persistentCongestion };
  }

  /** RFC 9002 §A.8 SetLossDetectionTimer(): when the caller must call `onLossDetectionTimeout`, or undefined. */
  lossDetectionTimer(ctx: TimerContext): Instant | undefined {
    const loss = this.earliestLossTime();
    if (loss) return loss.timeMs;
    if (ctx.isServer && ctx.atAmplificationLimit) return undefined;
    if (this.ackElicitingInFlight() === 0 && peerCompletedAddressValidation(ctx)) return undefined;
    return this.ptoTimeAndSpace(ctx)?.timeMs;
  }

  /** RFC 9002 §A.9 OnLossDetectionTimeout(). A call before anything is due changes nothing. */
  onLossDetectionTimeout(ctx: TimerContext, now: Instant): LossTimeoutResult<T> {
    const loss = this.earliestLossTime();
    if (loss) {
      const lost = this.detectAndRemoveLostPackets(loss.space, ctx.rtt, now);
      this.lastTimerEventMs = now;
      return { lost, lostSpace: loss.space, probeCount: 0 };
    }
    if (ctx.isServer && ctx.atAmplificationLimit) return { lost: [], probeCount: 0 };
    const antiDeadlock = this.ackElicitingInFlight() === 0;
    if (antiDeadlock && peerCompletedAddressValidation(ctx)) return { lost: [], probeCount: 0 };
    const pto = this.ptoTimeAndSpace(ctx);
    if (!pto || pto.timeMs > now) return { lost: [], probeCount: 0 };
    this.ptoCount++;
    this.lastTimerEventMs = now;
    // §6.2.2.1: the anti-deadlock probe is one Handshake packet, or one padded Initial without Handshake keys.
    return { lost: [], probeSpace: pto.space, probeCount: antiDeadlock ? 1 : 2 };
  }

  /**
   * RFC 9002 §6.4 and §A.11: keys of a space were discarded. Forgets its packets and returns the in-flight ones, which
   * the caller removes from its congestion controller's bytes in flight (neither acknowledged nor lost).
   */
  discardSpace(space: PacketNumberSpace): SentPacket<T>[] {
    const s = this.spaces[space];
    const inFlight: SentPacket<T>[] = [];
    for (const p of s.sent) {
      if (!p.inFlight) continue;
      inFlight.push(p);
      this.bytesInFlightTotal -= p.sizeBytes;
    }
    s.sent.length = 0;
    s.lossTimeMs = undefined;
    s.timeOfLastAckElicitingMs = undefined;
    s.ackElicitingInFlight = 0;
    this.ptoCount = 0;
    return inFlight;
  }

  toJSON(): LossDetectionState<T> {
    const space = (s: SpaceRecovery<T>): SpaceRecoveryState<T> => ({
      sent: s.sent.slice(),
      largestSent: s.largestSent,
      largestAcked: s.largestAcked ?? null,
      lossTimeMs: s.lossTimeMs ?? null,
      timeOfLastAckElicitingMs: s.timeOfLastAckElicitingMs ?? null,
      ackElicitingInFlight: s.ackElicitingInFlight,
    });
    return {
      packetThreshold: this.packetThreshold,
      timeThreshold: this.timeThreshold,
      granularityMs: this.granularityMs,
      ptoCount: this.ptoCount,
      bytesInFlight: this.bytesInFlightTotal,
      firstRttSampleMs: this.firstRttSampleMs ?? null,
      lastTimerEventMs: this.lastTimerEventMs ?? null,
      spaces: {
        initial: space(this.spaces.initial),
        handshake: space(this.spaces.handshake),
        application: space(this.spaces.application),
      },
    };
  }

  /** Restores from `toJSON()` state (connection handoff); payloads are taken as they are. */
  static fromJSON<T>(state: LossDetectionState<T>): LossDetection<T> {
    const ld = new LossDetection<T>({ packetThreshold: state.packetThreshold, timeThreshold: state.timeThreshold, granularityMs: state.granularityMs });
    ld.ptoCount = state.ptoCount;
    ld.bytesInFlightTotal = state.bytesInFlight;
    ld.firstRttSampleMs = state.firstRttSampleMs ?? undefined;
    ld.lastTimerEventMs = state.lastTimerEventMs ?? undefined;
    for (const name of PACKET_NUMBER_SPACES) {
      const from = state.spaces[name];
      const to = ld.spaces[name];
      to.sent = from.sent.slice();
      to.largestSent = from.largestSent;
      to.largestAcked = from.largestAcked ?? undefined;
      to.lossTimeMs = from.lossTimeMs ?? undefined;
      to.timeOfLastAckElicitingMs = from.timeOfLastAckElicitingMs ?? undefined;
      to.ackElicitingInFlight = from.ackElicitingInFlight;
    }
    return ld;
  }

  /** RFC 9002 §A.10 DetectAndRemoveLostPackets(). */
  private detectAndRemoveLostPackets(space: PacketNumberSpace, rtt: RttEstimator, now: Instant): SentPacket<T>[] {
    const s = this.spaces[space];
    s.lossTimeMs = undefined;
    const largestAcked = s.largestAcked;
    if (largestAcked === undefined) return [];
    // §6.1.2: 9/8 × max(smoothed_rtt, latest_rtt), at least kGranularity.
    const lossDelayMs = Math.max(this.timeThreshold * Math.max(rtt.latestRttMs, rtt.smoothedRttMs), this.granularityMs);
    let lost: SentPacket<T>[] | undefined;
    const sent = s.sent;
    let kept = 0;
    let i = 0;
    for (; i < sent.length; i++) {
      const p = sent[i]!;
      if (p.packetNumber > largestAcked) break;
      // §6.1.1 packet threshold, §6.1.2 time threshold. The time test uses the very sum the loss timer is armed
      // at (not now - loss_delay), so a timer firing at exactly that time always declares the loss (no float spin).
      const lossAtMs = p.timeSentMs + lossDelayMs;
      if (lossAtMs <= now || largestAcked >= p.packetNumber + this.packetThreshold) {
        (lost ??= []).push(p);
        this.removeFromFlight(s, p);
      } else {
        if (s.lossTimeMs === undefined || lossAtMs < s.lossTimeMs) s.lossTimeMs = lossAtMs;
        sent[kept++] = p;
      }
    }
    removeGap(sent, kept, i);
    return lost ?? [];
  }

  /**
   * RFC 9002 §7.6.2: two ack-eliciting packets lost, sent after the first RTT sample, with no packet between them
   * acknowledged (here: the lost packet numbers are contiguous), further apart than the persistent congestion duration.
   */
  private inPersistentCongestion(lost: readonly SentPacket<T>[], rtt: RttEstimator, maxAckDelayMs: number): boolean {
    const firstSampleMs = this.firstRttSampleMs;
    if (lost.length < 2 || firstSampleMs === undefined || !rtt.hasSample) return false;
    // §7.6.1: includes max_ack_delay whatever the space.
    const durationMs =
      (rtt.smoothedRttMs + Math.max(4 * rtt.rttVarMs, this.granularityMs) + maxAckDelayMs) * PERSISTENT_CONGESTION_THRESHOLD;
    let runStartMs: Instant | undefined;
    let previousPn = -2;
    for (const p of lost) {
      if (p.packetNumber !== previousPn + 1) runStartMs = undefined;
      previousPn = p.packetNumber;
      if (!p.ackEliciting || p.timeSentMs <= firstSampleMs) continue;
      if (runStartMs === undefined) runStartMs = p.timeSentMs;
      else if (p.timeSentMs - runStartMs >= durationMs) return true;
    }
    return false;
  }

  /** RFC 9002 §A.8 GetPtoTimeAndSpace(), or the anti-deadlock PTO when nothing ack-eliciting is in flight. */
  private ptoTimeAndSpace(ctx: TimerContext): { timeMs: Instant; space: PacketNumberSpace } | undefined {
    const ptoCount = ctx.ptoCount ?? this.ptoCount;
    const backoff = 2 ** ptoCount;
    const durationMs = ctx.rtt.ptoBaseMs() * backoff;
    if (this.ackElicitingInFlight() === 0) {
      // §6.2.2.1: arm from the last timer event so that the client's probe unblocks an amplification-limited server.
      if (this.lastTimerEventMs === undefined) return undefined;
      return { timeMs: this.lastTimerEventMs + durationMs, space: ctx.hasHandshakeKeys ? "handshake" : "initial" };
    }
    let best: { timeMs: Instant; space: PacketNumberSpace } | undefined;
    for (const space of PACKET_NUMBER_SPACES) {
      const s = this.spaces[space];
      if (s.ackElicitingInFlight === 0 || s.timeOfLastAckElicitingMs === undefined) continue;
      let spaceDurationMs = durationMs;
      if (space === "application") {
        // §6.2.1: no application-data PTO before the handshake is confirmed; afterwards it includes max_ack_delay.
        if (!ctx.handshakeConfirmed) break;
        spaceDurationMs += ctx.maxAckDelayMs * backoff;
      }
      const timeMs = s.timeOfLastAckElicitingMs + spaceDurationMs;
      if (!best || timeMs < best.timeMs) best = { timeMs, space };
    }
    return best;
  }

  private earliestLossTime(): { timeMs: Instant; space: PacketNumberSpace } | undefined {
    let best: { timeMs: Instant; space: PacketNumberSpace } | undefined;
    for (const space of PACKET_NUMBER_SPACES) {
      const t = this.spaces[space].lossTimeMs;
      if (t !== undefined && (!best || t < best.timeMs)) best = { timeMs: t, space };
    }
    return best;
  }

  private ackElicitingInFlight(): number {
    return this.spaces.initial.ackElicitingInFlight + this.spaces.handshake.ackElicitingInFlight + this.spaces.application.ackElicitingInFlight;
  }

  private removeFromFlight(s: SpaceRecovery<T>, p: SentPacket<T>): void {
    if (!p.inFlight) return;
    this.bytesInFlightTotal -= p.sizeBytes;
    if (p.ackEliciting) s.ackElicitingInFlight--;
  }
}

/** RFC 9002 §A.8 PeerCompletedAddressValidation(): servers assume clients validated them. */
function peerCompletedAddressValidation(ctx: TimerContext): boolean {
  return ctx.isServer || ctx.peerAddressValidated || ctx.handshakeConfirmed;
}

/** Index of the first packet whose number is at least `pn` (packets ascend). */
function firstAtOrAbove<T>(sent: readonly SentPacket<T>[], pn: number): number {
  let lo = 0;
  let hi = sent.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sent[mid]!.packetNumber < pn) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Drops the entries in [kept, stop), moving the rest down. */
function removeGap<T>(sent: SentPacket<T>[], kept: number, stop: number): void {
  if (kept === stop) return;
  // splice, not copyWithin: V8's copyWithin on an object array is a generic per-element loop, and with a
  // loopback-sized window (thousands in flight) it was the top entry of the throughput profile.
  sent.splice(kept, stop - kept);
}

function newSpace<T>(): SpaceRecovery<T> {
  return { sent: [], largestSent: -1, largestAcked: undefined, lossTimeMs: undefined, timeOfLastAckElicitingMs: undefined, ackElicitingInFlight: 0 };
}

function emptyAckResult<T>(): AckResult<T> {
  return { newlyAcked: [], lost: [], largestAckedNewly: false, persistentCongestion: false };
}

/** ACK frames list ranges largest first (RFC 9000 §19.3.1); accept any order from other callers. */
function toDescending(ranges: readonly AckRange[]): readonly AckRange[] {
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i]!.largest >= ranges[i - 1]!.smallest) return [...ranges].sort((a, b) => b.largest - a.largest);
  }
  return ranges;
}
