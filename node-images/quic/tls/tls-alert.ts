/** TLS 1.3 alerts (RFC 8446 §6). QUIC never sends them as records: it closes with CRYPTO_ERROR = 0x100 + alert (RFC 9001 §4.8). */
export const TLS_ALERT = {
  unexpected_message: 10,
  bad_record_mac: 20,
  handshake_failure: 40,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_revoked: 44,
  certificate_expired: 45,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  insufficient_security: 71,
  internal_error: 80,
  missing_extension: 109,
  unsupported_extension: 110,
  unrecognized_name: 112,
  no_application_protocol: 120,
} as const;
export type TlsAlertName = keyof typeof TLS_ALERT;

/** A fatal handshake error: the connection must close with CRYPTO_ERROR 0x100 + `alert`. */
export class TlsAlertError extends Error {
  override readonly name = "TlsAlertError";
  readonly code = "TLS_ALERT";
  readonly alert: number;
  readonly alertName: TlsAlertName;
  constructor(alertName: TlsAlertName, reason: string, options?: { cause?: unknown }) {
    super(`TLS alert ${alertName} (${TLS_ALERT[alertName]}): ${reason}`, options);
    this.alert = TLS_ALERT[alertName];
    this.alertName = alertName;
  }
}

/** A TlsConfig that cannot work (missing key, unparsable certificate): the caller's mistake, not the peer's. */
export class TlsConfigError extends Error {
  override readonly name = "TlsConfigError";
  readonly code = "TLS_CONFIG_INVALID";
}
