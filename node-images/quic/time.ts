/**
 * Time inside the QUIC core (../../shared/STYLE.md): one monotonic number, in milliseconds
 * (fractional allowed, as `performance.now()` gives). The core never reads a clock itself:
 * every call that needs the time takes `now: Instant`.
 */
export type Instant = number;
/** A span of time in milliseconds. */
export type DurationMs = number;
