/**
 * What a QUIC connection reports to its owner (STYLE.md: past-tense tagged unions, each with a
 * monotonic timestamp `at`). HTTP/3 events are a separate type and consume these.
 */
import type { Instant } from "./time.ts";
import type { PathAddress } from "./path.ts";
import type { ValidationPurpose } from "./path-validation.ts";

/** Why the active path changed. */
export type MigrationReason = "preferred_address" | "local_migration" | "peer_migration" | "fallback";

export type CloseInitiator = "local" | "peer" | "idle_timeout" | "stateless_reset" | "handshake_timeout";

export type ConnectionEvent =
  | { type: "handshakeCompleted"; at: Instant; alpn: string | undefined }
  | { type: "handshakeConfirmed"; at: Instant }
  | { type: "streamOpened"; at: Instant; streamId: number }
  | { type: "streamReadable"; at: Instant; streamId: number }
  | { type: "streamWritable"; at: Instant; streamId: number }
  | { type: "streamFinished"; at: Instant; streamId: number }
  | { type: "streamReset"; at: Instant; streamId: number; errorCode: number }
  | { type: "stopSendingReceived"; at: Instant; streamId: number; errorCode: number }
  | { type: "datagramReceived"; at: Instant; data: Buffer }
  | { type: "keyUpdated"; at: Instant; keyPhase: 0 | 1; initiator: "local" | "peer" }
  // Migration (RFC 9000 §8.2, §9; the timeline of ../../shared/spec/preferred-address.md, one event per step).
  /** The first PATH_CHALLENGE of a validation left toward `path` (timeline `probeSent`). */
  | { type: "pathProbeSent"; at: Instant; path: PathAddress; purpose: ValidationPurpose }
  | { type: "pathValidated"; at: Instant; path: PathAddress }
  | { type: "pathValidationFailed"; at: Instant; path: PathAddress; reason: string }
  /** The active path changed (client: moved; server: switched, timeline `serverSwitched` for PA-19). */
  | { type: "pathMigrated"; at: Instant; from: PathAddress; to: PathAddress; reason?: MigrationReason }
  /** The first non-probing packet left on the new active path (timeline `firstDataOnNewPath`). */
  | { type: "newPathFirstDataSent"; at: Instant; path: PathAddress }
  /** The CID of the path left behind was retired and the peer acknowledged it (timeline `oldPathRetired`). */
  | { type: "oldPathRetired"; at: Instant; path: PathAddress }
  /** A move was given up and the connection stays where it was (PA-10; timeline `fallback`). */
  | { type: "migrationFellBack"; at: Instant; path: PathAddress; reason: string }
  | {
      type: "connectionClosed";
      at: Instant;
      initiator: CloseInitiator;
      errorCode: number;
      isApplication: boolean;
      reason: string;
    };

export type ConnectionEventType = ConnectionEvent["type"];
