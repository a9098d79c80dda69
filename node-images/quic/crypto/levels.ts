/** RFC 9001 §4: the encryption levels that carry CRYPTO data and packets. 0-RTT is not supported yet. */
export const ENCRYPTION_LEVELS = ["initial", "handshake", "application"] as const;
export type EncryptionLevel = (typeof ENCRYPTION_LEVELS)[number];
