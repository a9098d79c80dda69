/** CertificateVerify signatures (RFC 8446 §4.2.3, §4.4.3) for the schemes we support. */
import { constants, sign, verify, type KeyObject } from "node:crypto";

/** RFC 8446 §4.2.3 SignatureScheme codepoints we can produce or check. */
export const SIGNATURE_SCHEME = {
  ecdsa_secp256r1_sha256: 0x0403,
  rsa_pss_rsae_sha256: 0x0804,
  rsa_pss_rsae_sha384: 0x0805,
  rsa_pss_rsae_sha512: 0x0806,
  ed25519: 0x0807,
  rsa_pss_pss_sha256: 0x0809,
} as const;

/** What a client offers in signature_algorithms, in preference order. */
export const SUPPORTED_SIGNATURE_SCHEMES: readonly number[] = [
  SIGNATURE_SCHEME.ecdsa_secp256r1_sha256,
  SIGNATURE_SCHEME.ed25519,
  SIGNATURE_SCHEME.rsa_pss_rsae_sha256,
  SIGNATURE_SCHEME.rsa_pss_pss_sha256,
  SIGNATURE_SCHEME.rsa_pss_rsae_sha384,
  SIGNATURE_SCHEME.rsa_pss_rsae_sha512,
];

interface SchemeParameters {
  /** node:crypto digest, or null for Ed25519 (which hashes internally). */
  digest: "sha256" | "sha384" | "sha512" | null;
  /** KeyObject.asymmetricKeyType the scheme needs. */
  keyType: "ec" | "ed25519" | "rsa" | "rsa-pss";
  pss: boolean;
  saltLength?: number;
}

const SCHEMES = new Map<number, SchemeParameters>([
  [SIGNATURE_SCHEME.ecdsa_secp256r1_sha256, { digest: "sha256", keyType: "ec", pss: false }],
  [SIGNATURE_SCHEME.ed25519, { digest: null, keyType: "ed25519", pss: false }],
  // RFC 8446 §4.2.3: RSASSA-PSS with MGF1 of the same hash and a salt as long as the digest.
  [SIGNATURE_SCHEME.rsa_pss_rsae_sha256, { digest: "sha256", keyType: "rsa", pss: true, saltLength: 32 }],
  [SIGNATURE_SCHEME.rsa_pss_rsae_sha384, { digest: "sha384", keyType: "rsa", pss: true, saltLength: 48 }],
  [SIGNATURE_SCHEME.rsa_pss_rsae_sha512, { digest: "sha512", keyType: "rsa", pss: true, saltLength: 64 }],
  [SIGNATURE_SCHEME.rsa_pss_pss_sha256, { digest: "sha256", keyType: "rsa-pss", pss: true, saltLength: 32 }],
]);

const PADDING = Buffer.alloc(64, 0x20);
const SERVER_CONTEXT = Buffer.from("TLS 1.3, server CertificateVerify\0", "ascii");
const CLIENT_CONTEXT = Buffer.from("TLS 1.3, client CertificateVerify\0", "ascii");

/** RFC 8446 §4.4.3: 64 spaces, the context string, a zero byte, then Transcript-Hash(Handshake Context, Certificate). */
export function certificateVerifyContent(signer: "server" | "client", transcriptHash: Uint8Array): Buffer {
  return Buffer.concat([PADDING, signer === "server" ? SERVER_CONTEXT : CLIENT_CONTEXT, transcriptHash]);
}

function keyMatches(params: SchemeParameters, key: KeyObject): boolean {
  if (key.asymmetricKeyType !== params.keyType) return false;
  // RFC 8446 §4.2.3: ecdsa_secp256r1_sha256 binds the curve too.
  if (params.keyType === "ec") return key.asymmetricKeyDetails?.namedCurve === "prime256v1";
  return true;
}

/** The schemes a key can sign with, best first (used by a server to pick against the client's list). */
export function schemesForKey(key: KeyObject): number[] {
  const out: number[] = [];
  for (const [code, params] of SCHEMES) if (keyMatches(params, key)) out.push(code);
  return out;
}

export function signCertificateVerify(scheme: number, privateKey: KeyObject, content: Uint8Array): Buffer {
  const params = SCHEMES.get(scheme);
  if (!params || !keyMatches(params, privateKey)) throw new RangeError(`cannot sign scheme 0x${scheme.toString(16)} with a ${privateKey.asymmetricKeyType} key`);
  return sign(params.digest, content, params.pss
    ? { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: params.saltLength }
    : { key: privateKey, dsaEncoding: "der" });
}

/** Whether `scheme` can be checked with `publicKey` at all (known scheme, matching key type). */
export function schemeFitsKey(scheme: number, publicKey: KeyObject): boolean {
  const params = SCHEMES.get(scheme);
  return params !== undefined && keyMatches(params, publicKey);
}

/** Checks a CertificateVerify signature; false on any mismatch or malformed signature. */
export function verifyCertificateVerify(scheme: number, publicKey: KeyObject, content: Uint8Array, signature: Uint8Array): boolean {
  const params = SCHEMES.get(scheme);
  if (!params || !keyMatches(params, publicKey)) return false;
  try {
    return verify(params.digest, content, params.pss
      ? { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: params.saltLength }
      : { key: publicKey, dsaEncoding: "der" }, signature);
  } catch {
    // A malformed signature encoding makes OpenSSL throw; to the caller that is simply "does not verify".
    return false;
  }
}
