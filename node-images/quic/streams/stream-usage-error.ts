/** The application used a stream wrongly (write after finish): its bug, not the peer's, so not a transport error. */
export class QuicStreamUsageError extends Error {
  override readonly name = "QuicStreamUsageError";
  readonly code = "STREAM_USAGE";
}
