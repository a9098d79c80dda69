/**
 * Stream IDs (RFC 9000 §2.1): the two least significant bits give the initiator (bit 0:
 * 0 client, 1 server) and the direction (bit 1: 0 bidirectional, 1 unidirectional); the rest
 * is the stream's index among the streams of its type.
 */
export type StreamInitiator = "client" | "server";

/** RFC 9000 §4.6: a stream count cannot exceed 2^60. */
export const MAX_STREAM_COUNT = 2 ** 60;

export function streamIdIsBidirectional(id: number): boolean {
  return (id & 0x02) === 0;
}

export function streamIdIsClientInitiated(id: number): boolean {
  return (id & 0x01) === 0;
}

export function streamIdInitiator(id: number): StreamInitiator {
  return streamIdIsClientInitiated(id) ? "client" : "server";
}

/** The index of the stream among streams of the same type (id >> 2, safe beyond 2^32). */
export function streamIndex(id: number): number {
  return Math.floor(id / 4);
}

export function makeStreamId(initiator: StreamInitiator, bidi: boolean, index: number): number {
  if (!Number.isSafeInteger(index) || index < 0 || index >= MAX_STREAM_COUNT) {
    throw new RangeError(`stream index ${index} out of range`);
  }
  return index * 4 + (bidi ? 0 : 2) + (initiator === "client" ? 0 : 1);
}
