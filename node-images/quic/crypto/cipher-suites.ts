/**
 * The three TLS 1.3 cipher suites QUIC v1 uses (RFC 8446 §B.4, RFC 9001 §5.3), with what
 * node:crypto calls their parts.
 */
export type CipherSuiteName = "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256";

export interface CipherSuite {
  name: CipherSuiteName;
  /** TLS codepoint. */
  code: number;
  /** node:crypto hash name for HKDF and the transcript. */
  hash: "sha256" | "sha384";
  hashLength: number;
  /** node:crypto AEAD name. */
  aead: "aes-128-gcm" | "aes-256-gcm" | "chacha20-poly1305";
  keyLength: number;
  ivLength: 12;
  tagLength: 16;
  /** Header protection (RFC 9001 §5.4): AES-ECB of the given size, or ChaCha20. */
  headerProtection: "aes-128-ecb" | "aes-256-ecb" | "chacha20";
}

export const CIPHER_SUITES: Record<CipherSuiteName, CipherSuite> = {
  TLS_AES_128_GCM_SHA256: {
    name: "TLS_AES_128_GCM_SHA256", code: 0x1301, hash: "sha256", hashLength: 32,
    aead: "aes-128-gcm", keyLength: 16, ivLength: 12, tagLength: 16, headerProtection: "aes-128-ecb",
  },
  TLS_AES_256_GCM_SHA384: {
    name: "TLS_AES_256_GCM_SHA384", code: 0x1302, hash: "sha384", hashLength: 48,
    aead: "aes-256-gcm", keyLength: 32, ivLength: 12, tagLength: 16, headerProtection: "aes-256-ecb",
  },
  TLS_CHACHA20_POLY1305_SHA256: {
    name: "TLS_CHACHA20_POLY1305_SHA256", code: 0x1303, hash: "sha256", hashLength: 32,
    aead: "chacha20-poly1305", keyLength: 32, ivLength: 12, tagLength: 16, headerProtection: "chacha20",
  },
};

export function cipherSuiteByCode(code: number): CipherSuite | undefined {
  return Object.values(CIPHER_SUITES).find((s) => s.code === code);
}
