/** Packet number encoding and decoding (RFC 9000 §17.1, Appendix A.2 and A.3). */

/**
 * RFC 9000 Appendix A.2: the number of bytes (1..4) needed to send `fullPn` so that the peer,
 * having acknowledged `largestAcked` (undefined: nothing acked yet), can recover it.
 */
export function encodePacketNumberLength(fullPn: number, largestAcked: number | undefined): 1 | 2 | 3 | 4 {
  const numUnacked = largestAcked === undefined ? fullPn + 1 : fullPn - largestAcked;
  // The range must cover more than twice the unacknowledged packets: bits = log2(numUnacked) + 1.
  const range = numUnacked * 2;
  if (range <= 0x100) return 1;
  if (range <= 0x10000) return 2;
  if (range <= 0x1000000) return 3;
  return 4;
}

/** RFC 9000 Appendix A.3: recover a full packet number from its truncated form. */
export function decodePacketNumber(largest: number, truncated: number, nbits: number): number {
  const expected = largest + 1;
  const win = 2 ** nbits;
  const hwin = win / 2;
  // (expected & ~mask) | truncated, in arithmetic: bitwise operators would wrap at 2^31.
  const candidate = expected - (expected % win) + (truncated % win);
  if (candidate <= expected - hwin && candidate < 2 ** 62 - win) return candidate + win;
  if (candidate > expected + hwin && candidate >= win) return candidate - win;
  return candidate;
}
