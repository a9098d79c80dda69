/**
 * What a QUIC connection reports to its owner (STYLE.md: past-tense tagged unions, each with a
 * monotonic timestamp `at`). HTTP/3 events are a separate type and consume these.
 */
import type { Instant } from "./time.ts";
import type { PathAddress } from "./path.ts";

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
  | { type: "pathValidated"; at: Instant; path: PathAddress }
  | { type: "pathValidationFailed"; at: Instant; path: PathAddress; reason: string }
  | { type: "pathMigrated"; at: Instant; from: PathAddress; to: PathAddress }
  | {
      type: "connectionClosed";
      at: Instant;
      initiator: CloseInitiator;
      errorCode: number;
      isApplication: boolean;
      reason: string;
    };

export type ConnectionEventType = ConnectionEvent["type"];
