/**
 * QUIC transport errors (RFC 9000 §20.1). The core throws `QuicTransportError` for protocol
 * violations; the connection turns it into CONNECTION_CLOSE with the code and reason.
 */
export const TRANSPORT_ERROR_CODES = {
  NO_ERROR: 0x00,
  INTERNAL_ERROR: 0x01,
  CONNECTION_REFUSED: 0x02,
  FLOW_CONTROL_ERROR: 0x03,
  STREAM_LIMIT_ERROR: 0x04,
  STREAM_STATE_ERROR: 0x05,
  FINAL_SIZE_ERROR: 0x06,
  FRAME_ENCODING_ERROR: 0x07,
  TRANSPORT_PARAMETER_ERROR: 0x08,
  CONNECTION_ID_LIMIT_ERROR: 0x09,
  PROTOCOL_VIOLATION: 0x0a,
  INVALID_TOKEN: 0x0b,
  APPLICATION_ERROR: 0x0c,
  CRYPTO_BUFFER_EXCEEDED: 0x0d,
  KEY_UPDATE_ERROR: 0x0e,
  AEAD_LIMIT_REACHED: 0x0f,
  NO_VIABLE_PATH: 0x10,
} as const;

export type TransportErrorName = keyof typeof TRANSPORT_ERROR_CODES;

/** RFC 9000 §20.1: CRYPTO_ERROR is 0x0100 + the TLS alert code. */
export const CRYPTO_ERROR_BASE = 0x0100;

export class QuicTransportError extends Error {
  override readonly name = "QuicTransportError";
  /** Numeric code as sent on the wire. */
  readonly code: number;
  /** Frame type that triggered it, when known (CONNECTION_CLOSE carries it). */
  readonly frameType: number;

  constructor(code: TransportErrorName | number, reason: string, frameType = 0) {
    super(reason);
    this.code = typeof code === "number" ? code : TRANSPORT_ERROR_CODES[code];
    this.frameType = frameType;
  }

  /** The symbolic name of the code, or CRYPTO_ERROR(alert), for logs. */
  get codeName(): string {
    if (this.code >= CRYPTO_ERROR_BASE && this.code < CRYPTO_ERROR_BASE + 0x100) {
      return `CRYPTO_ERROR(${this.code - CRYPTO_ERROR_BASE})`;
    }
    const entry = Object.entries(TRANSPORT_ERROR_CODES).find(([, v]) => v === this.code);
    return entry ? entry[0] : `0x${this.code.toString(16)}`;
  }
}
