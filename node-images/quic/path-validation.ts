/**
 * Path validation (RFC 9000 §8.2): PATH_CHALLENGE with 8 unpredictable bytes, PATH_RESPONSE echoing them,
 * retries no more often than an Initial would be retransmitted, abandoned after
 * 3 × max(PTO, PTO of the new path with kInitialRtt) (§8.2.4). Plain data: one validator per path being
 * validated, serialisable with the connection. Like ngtcp2's `ngtcp2_pv`, the validator knows nothing of
 * sockets or of what happens on success or failure: the migration logic (migration.ts) decides that.
 */
import type { Instant } from "./time.ts";

/** RFC 9000 §19.17: PATH_CHALLENGE data is 8 bytes. */
export const PATH_CHALLENGE_DATA_BYTES = 8;
/** Challenges remembered per validation: a response to any of them counts (PA-23, PA-25). Bounded for memory. */
const MAX_OUTSTANDING_CHALLENGES = 8;

/** A source of unpredictable bytes (node:crypto's randomBytes by default; a seeded one in tests). */
export type RandomSource = (length: number) => Buffer;

/** Why a path is being validated; decides what success and failure mean. */
export type ValidationPurpose =
  /** Client: toward the server's preferred address (§9.6). */
  | "preferred_address"
  /** Client: from a new local address (active migration, §9.2; PA-12 also toward the original server address). */
  | "local_migration"
  /** Either side: the peer's address changed (§9.3: NAT rebinding or the peer migrated). */
  | "peer_migration"
  /** Server: the client reached the preferred address; the server probes back from there (PA-18). */
  | "preferred_address_server";

export type ValidationState = "pending" | "validated" | "failed";

export interface PathValidatorState {
  pathId: number;
  purpose: ValidationPurpose;
  state: ValidationState;
  startedAtMs: Instant;
  deadlineMs: Instant;
  nextChallengeAtMs: Instant | undefined;
  retransmitIntervalMs: number;
  challengesSent: number;
  outstanding: Array<{ data: string; sentAtMs: Instant }>;
}

export class PathValidator {
  readonly pathId: number;
  readonly purpose: ValidationPurpose;
  state: ValidationState = "pending";
  readonly startedAtMs: Instant;
  /** PA-24: validation is abandoned at this time. */
  readonly deadlineMs: Instant;
  /** When the next PATH_CHALLENGE is due; undefined when none is (validated, failed). */
  nextChallengeAtMs: Instant | undefined;
  /** Doubles after every challenge (PA-25: no more often than Initial retransmission, which backs off too). */
  retransmitIntervalMs: number;
  challengesSent = 0;
  private readonly outstanding: Array<{ data: Buffer; sentAtMs: Instant }> = [];

  /**
   * `timeoutMs` = 3 × max(PTO of the current path, PTO of the new path with kInitialRtt) (PA-24);
   * `retransmitIntervalMs` = the PTO an Initial would use (PA-25).
   */
  constructor(pathId: number, purpose: ValidationPurpose, now: Instant, opts: { timeoutMs: number; retransmitIntervalMs: number }) {
    this.pathId = pathId;
    this.purpose = purpose;
    this.startedAtMs = now;
    this.deadlineMs = now + opts.timeoutMs;
    this.nextChallengeAtMs = now;
    this.retransmitIntervalMs = Math.max(1, opts.retransmitIntervalMs);
  }

  get isPending(): boolean {
    return this.state === "pending";
  }

  /** A PATH_CHALLENGE should go out now. */
  challengeDue(now: Instant): boolean {
    return this.state === "pending" && this.nextChallengeAtMs !== undefined && now >= this.nextChallengeAtMs && now < this.deadlineMs;
  }

  /** Make the next challenge's data (PA-21) and schedule the one after (PA-25). */
  nextChallenge(random: RandomSource, now: Instant): Buffer {
    const data = random(PATH_CHALLENGE_DATA_BYTES);
    if (data.length !== PATH_CHALLENGE_DATA_BYTES) throw new RangeError(`random source gave ${data.length} bytes, wanted 8`);
    this.outstanding.push({ data, sentAtMs: now });
    if (this.outstanding.length > MAX_OUTSTANDING_CHALLENGES) this.outstanding.shift();
    this.challengesSent++;
    this.nextChallengeAtMs = now + this.retransmitIntervalMs;
    this.retransmitIntervalMs *= 2;
    return data;
  }

  /** Does `data` answer one of our challenges? Returns the round trip to the first matching one (PA-23). */
  matches(data: Uint8Array, now: Instant): { rttMs: number } | undefined {
    if (this.state !== "pending") return undefined;
    const hit = this.outstanding.find((c) => Buffer.compare(c.data, data) === 0);
    if (!hit) return undefined;
    return { rttMs: now - hit.sentAtMs };
  }

  onValidated(): void {
    this.state = "validated";
    this.nextChallengeAtMs = undefined;
  }

  /** True when the deadline has passed and the validation is now failed (PA-24). */
  checkTimeout(now: Instant): boolean {
    if (this.state !== "pending" || now < this.deadlineMs) return false;
    this.state = "failed";
    this.nextChallengeAtMs = undefined;
    return true;
  }

  /** The earliest time this validator needs the connection's attention. */
  nextTimeout(): Instant | undefined {
    if (this.state !== "pending") return undefined;
    return this.nextChallengeAtMs !== undefined && this.nextChallengeAtMs < this.deadlineMs ? this.nextChallengeAtMs : this.deadlineMs;
  }

  toJSON(): PathValidatorState {
    return {
      pathId: this.pathId,
      purpose: this.purpose,
      state: this.state,
      startedAtMs: this.startedAtMs,
      deadlineMs: this.deadlineMs,
      nextChallengeAtMs: this.nextChallengeAtMs,
      retransmitIntervalMs: this.retransmitIntervalMs,
      challengesSent: this.challengesSent,
      outstanding: this.outstanding.map((c) => ({ data: c.data.toString("hex"), sentAtMs: c.sentAtMs })),
    };
  }
}
