/**
 * What an HTTP/3 connection reports (STYLE.md: past-tense tagged unions, separate from QUIC's
 * ConnectionEvent, which the HTTP/3 layer only consumes).
 */
import type { Instant } from "../time.ts";
import type { FieldLine } from "./qpack.ts";
import type { Settings } from "./frames.ts";

export type Http3Event =
  | { type: "settingsReceived"; at: Instant; settings: Settings }
  /** A request (server) or response (client) header section; `isTrailers` for one after DATA. */
  | { type: "headersReceived"; at: Instant; streamId: number; headers: FieldLine[]; isTrailers: boolean }
  | { type: "dataReceived"; at: Instant; streamId: number; data: Buffer }
  /** The peer finished the stream after a complete, valid message. */
  | { type: "messageCompleted"; at: Instant; streamId: number }
  /** The peer reset the stream (RESET_STREAM) or asked us to stop (STOP_SENDING). */
  | { type: "streamResetByPeer"; at: Instant; streamId: number; errorCode: number; direction: "receive" | "send" }
  /** We found a stream error (RFC 9114 §8: e.g. H3_MESSAGE_ERROR) and reset the stream. */
  | { type: "streamAborted"; at: Instant; streamId: number; errorCode: number; reason: string }
  /** §5.2: the peer will not process streams from `id` on (a stream ID from a server, a push ID from a client). */
  | { type: "goawayReceived"; at: Instant; id: number }
  /** The QUIC connection closed; `errorCode` is the HTTP/3 code when `isApplication`. */
  | { type: "connectionClosed"; at: Instant; initiator: string; errorCode: number; isApplication: boolean; reason: string };

export type Http3EventType = Http3Event["type"];
