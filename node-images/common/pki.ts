/**
 * Per-run PKI: a CA and the certificates it issues, built with node:crypto only (no openssl CLI).
 * A minimal DER writer (X.690) and an X.509 v3 certificate builder (RFC 5280).
 */
import {
  X509Certificate,
  constants as cryptoConstants,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  type KeyObject,
} from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";

export type KeyType = "ecdsa-p256" | "ed25519" | "rsa-pss" | "rsa";

export interface IssuedCertificate {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  cert: X509Certificate;
}

export const PKI_ERROR_CODES = {
  invalidOption: "PKI_INVALID_OPTION",
  invalidIpAddress: "PKI_INVALID_IP_ADDRESS",
  unsupportedKey: "PKI_UNSUPPORTED_KEY",
  malformedDer: "PKI_MALFORMED_DER",
} as const;
export type PkiErrorCode = (typeof PKI_ERROR_CODES)[keyof typeof PKI_ERROR_CODES];

export class PkiError extends Error {
  override readonly name = "PkiError";
  readonly code: PkiErrorCode;
  constructor(code: PkiErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------
// DER writer (ITU-T X.690 §8, §10). The primitives with an interesting encoding are exported for their tests.

const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  objectIdentifier: 0x06,
  utf8String: 0x0c,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

export function derLength(length: number): Buffer {
  // X.690 §8.1.3: short form below 128, else long form with the minimal number of octets.
  if (length < 0x80) return Buffer.from([length]);
  const octets: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) octets.unshift(n & 0xff);
  return Buffer.from([0x80 | octets.length, ...octets]);
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

const derSequence = (...items: Buffer[]): Buffer => tlv(TAG.sequence, Buffer.concat(items));
const derSet = (...items: Buffer[]): Buffer => tlv(TAG.set, Buffer.concat(items));
const derNull = (): Buffer => tlv(TAG.null, Buffer.alloc(0));
const derBoolean = (value: boolean): Buffer => tlv(TAG.boolean, Buffer.from([value ? 0xff : 0x00]));
const derOctetString = (content: Buffer): Buffer => tlv(TAG.octetString, content);
const derUtf8String = (text: string): Buffer => tlv(TAG.utf8String, Buffer.from(text, "utf8"));
/** [n] EXPLICIT: constructed context-specific tag around a complete encoding. */
const derExplicit = (tagNumber: number, inner: Buffer): Buffer => tlv(0xa0 | tagNumber, inner);
/** [n] IMPLICIT over a primitive type: context-specific primitive tag, same content octets. */
const derImplicitPrimitive = (tagNumber: number, content: Buffer): Buffer => tlv(0x80 | tagNumber, content);

/** X.690 §8.3: two's complement, minimal octets; a positive value gets a leading 0x00 if its top bit is set. */
export function derUnsignedInteger(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  let content = magnitude.subarray(start);
  if (content.length === 0) content = Buffer.from([0]);
  if (content[0]! & 0x80) content = Buffer.concat([Buffer.from([0]), content]);
  return tlv(TAG.integer, content);
}

const derSmallInteger = (value: number): Buffer => derUnsignedInteger(Buffer.from([value >> 24, value >> 16, value >> 8, value].map((b) => b & 0xff)));

/** X.690 §8.19: first two arcs as 40*X+Y, then base-128 with continuation bits. */
export function derObjectIdentifier(dotted: string): Buffer {
  const arcs = dotted.split(".").map((arc) => Number(arc));
  const values = [arcs[0]! * 40 + arcs[1]!, ...arcs.slice(2)];
  const octets: number[] = [];
  for (const value of values) {
    const group = [value & 0x7f];
    for (let n = Math.floor(value / 128); n > 0; n = Math.floor(n / 128)) group.unshift((n & 0x7f) | 0x80);
    octets.push(...group);
  }
  return tlv(TAG.objectIdentifier, Buffer.from(octets));
}

/** X.690 §8.6 and §11.2.2: a named bit list drops trailing zero bits in DER. */
export function derNamedBitString(bitNumbers: readonly number[]): Buffer {
  const highest = Math.max(...bitNumbers);
  const octets = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bitNumbers) octets[bit >> 3]! |= 0x80 >> (bit & 7);
  const unusedBits = 7 - (highest & 7);
  return tlv(TAG.bitString, Buffer.concat([Buffer.from([unusedBits]), octets]));
}

const derBitString = (content: Buffer): Buffer => tlv(TAG.bitString, Buffer.concat([Buffer.from([0]), content]));

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; always Zulu, seconds, no fractions. */
export function derTime(date: Date): Buffer {
  const pad = (n: number): string => String(n).padStart(2, "0");
  const year = date.getUTCFullYear();
  const rest = `${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}Z`;
  if (year >= 1950 && year < 2050) return tlv(TAG.utcTime, Buffer.from(`${pad(year % 100)}${rest}`, "ascii"));
  return tlv(TAG.generalizedTime, Buffer.from(`${String(year).padStart(4, "0")}${rest}`, "ascii"));
}

// ---------------------------------------------------------------------------------------------
// DER reader: just enough to take the subject Name and the subjectPublicKey out of existing DER.

interface DerElement {
  tag: number;
  /** The whole encoding: tag, length and content. */
  encoded: Buffer;
  content: Buffer;
}

function readDerElement(buffer: Buffer, offset: number): DerElement {
  const fail = (): never => {
    throw new PkiError(PKI_ERROR_CODES.malformedDer, `malformed DER at offset ${offset}`);
  };
  if (offset + 2 > buffer.length) fail();
  const tag = buffer[offset]!;
  let length = buffer[offset + 1]!;
  let headerLength = 2;
  if (length & 0x80) {
    const lengthOctets = length & 0x7f;
    if (lengthOctets === 0 || lengthOctets > 4 || offset + 2 + lengthOctets > buffer.length) fail();
    length = 0;
    for (let i = 0; i < lengthOctets; i++) length = length * 256 + buffer[offset + 2 + i]!;
    headerLength += lengthOctets;
  }
  const end = offset + headerLength + length;
  if (end > buffer.length) fail();
  return { tag, encoded: buffer.subarray(offset, end), content: buffer.subarray(offset + headerLength, end) };
}

function readDerChildren(content: Buffer): DerElement[] {
  const children: DerElement[] = [];
  for (let offset = 0; offset < content.length; ) {
    const child = readDerElement(content, offset);
    children.push(child);
    offset += child.encoded.length;
  }
  return children;
}

/** RFC 5280 §4.1: Certificate → tbsCertificate → subject (the 6th field when version [0] is present). */
function subjectNameDer(cert: X509Certificate): Buffer {
  const certificate = readDerElement(cert.raw, 0);
  const tbs = readDerChildren(certificate.content)[0];
  if (!tbs) throw new PkiError(PKI_ERROR_CODES.malformedDer, "certificate has no tbsCertificate");
  const fields = readDerChildren(tbs.content);
  const versionPresent = fields[0]?.tag === 0xa0;
  const subject = fields[versionPresent ? 5 : 4];
  if (!subject) throw new PkiError(PKI_ERROR_CODES.malformedDer, "tbsCertificate has no subject");
  return subject.encoded;
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value (without unused-bits octet). */
function keyIdentifier(spkiDer: Buffer): Buffer {
  const spki = readDerElement(spkiDer, 0);
  const bitString = readDerChildren(spki.content)[1];
  if (!bitString || bitString.tag !== TAG.bitString) throw new PkiError(PKI_ERROR_CODES.malformedDer, "SubjectPublicKeyInfo has no BIT STRING");
  return createHash("sha1").update(bitString.content.subarray(1)).digest();
}

// ---------------------------------------------------------------------------------------------
// Keys and signature algorithms

const OID = {
  commonName: "2.5.4.3",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  ecdsaWithSha256: "1.2.840.10045.4.3.2", // RFC 5758 §3.2
  ed25519: "1.3.101.112", // RFC 8410 §3
  sha256WithRsaEncryption: "1.2.840.113549.1.1.11", // RFC 4055 §5
  rsassaPss: "1.2.840.113549.1.1.10", // RFC 4055 §3.1
  mgf1: "1.2.840.113549.1.1.8",
  sha256: "2.16.840.1.101.3.4.2.1",
} as const;

/** RFC 5280 §4.2.1.3 bit numbers. */
const KEY_USAGE_BIT = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const;

/** PSS parameters used for every rsa-pss key and signature here: SHA-256, MGF1-SHA-256, 32-byte salt. */
const PSS_SALT_LENGTH_BYTES = 32;
const RSA_MODULUS_BITS = 2048;

function generateKey(keyType: KeyType): KeyObject {
  switch (keyType) {
    case "ecdsa-p256":
      return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    case "ed25519":
      return generateKeyPairSync("ed25519").privateKey;
    case "rsa":
      return generateKeyPairSync("rsa", { modulusLength: RSA_MODULUS_BITS }).privateKey;
    case "rsa-pss":
      return generateKeyPairSync("rsa-pss", {
        modulusLength: RSA_MODULUS_BITS,
        hashAlgorithm: "sha256",
        mgf1HashAlgorithm: "sha256",
        // @types/node types saltLength as a string, but node:crypto requires a number (it throws on a string).
        saltLength: PSS_SALT_LENGTH_BYTES as unknown as string,
      }).privateKey;
    default: {
      const unknown: never = keyType;
      throw new PkiError(PKI_ERROR_CODES.invalidOption, `keyType: expected one of ecdsa-p256, ed25519, rsa-pss, rsa, got ${String(unknown)}`);
    }
  }
}

/** The key type a private key belongs to (the issuer's key decides the signature algorithm). */
function keyTypeOf(key: KeyObject): KeyType {
  switch (key.asymmetricKeyType) {
    case "ec":
      if (key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
        throw new PkiError(PKI_ERROR_CODES.unsupportedKey, `EC key on curve ${key.asymmetricKeyDetails?.namedCurve}: only P-256 is supported`);
      }
      return "ecdsa-p256";
    case "ed25519":
      return "ed25519";
    case "rsa":
      return "rsa";
    case "rsa-pss":
      return "rsa-pss";
    default:
      throw new PkiError(PKI_ERROR_CODES.unsupportedKey, `unsupported key type ${key.asymmetricKeyType}`);
  }
}

function signatureAlgorithmIdentifier(keyType: KeyType): Buffer {
  switch (keyType) {
    case "ecdsa-p256":
      return derSequence(derObjectIdentifier(OID.ecdsaWithSha256)); // RFC 5758 §3.2: parameters absent
    case "ed25519":
      return derSequence(derObjectIdentifier(OID.ed25519)); // RFC 8410 §3: parameters absent
    case "rsa":
      return derSequence(derObjectIdentifier(OID.sha256WithRsaEncryption), derNull()); // RFC 4055 §5: NULL
    case "rsa-pss": {
      // RFC 4055 §3.1 RSASSA-PSS-params; trailerField left at its DEFAULT.
      const sha256 = derSequence(derObjectIdentifier(OID.sha256), derNull());
      return derSequence(
        derObjectIdentifier(OID.rsassaPss),
        derSequence(
          derExplicit(0, sha256),
          derExplicit(1, derSequence(derObjectIdentifier(OID.mgf1), sha256)),
          derExplicit(2, derSmallInteger(PSS_SALT_LENGTH_BYTES)),
        ),
      );
    }
  }
}

function signTbs(keyType: KeyType, tbs: Buffer, key: KeyObject): Buffer {
  switch (keyType) {
    case "ecdsa-p256":
      return sign("sha256", tbs, { key, dsaEncoding: "der" });
    case "ed25519":
      return sign(null, tbs, key);
    case "rsa":
      return sign("sha256", tbs, { key, padding: cryptoConstants.RSA_PKCS1_PADDING });
    case "rsa-pss":
      return sign("sha256", tbs, { key, padding: cryptoConstants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_LENGTH_BYTES });
  }
}

// ---------------------------------------------------------------------------------------------
// Names and extensions

/** RFC 5280 §4.1.2.4: Name ::= SEQUENCE OF SET OF AttributeTypeAndValue; here a single CN. */
function nameDer(commonName: string): Buffer {
  return derSequence(derSet(derSequence(derObjectIdentifier(OID.commonName), derUtf8String(commonName))));
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  // RFC 5280 §4.1: Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
  return critical
    ? derSequence(derObjectIdentifier(oid), derBoolean(true), derOctetString(value))
    : derSequence(derObjectIdentifier(oid), derOctetString(value));
}

function ipv4Octets(address: string): Buffer {
  return Buffer.from(address.split(".").map((part) => Number(part)));
}

/** RFC 4291 §2.2 text forms, including "::" and a trailing dotted IPv4 part. */
function ipv6Octets(address: string): Buffer {
  let text = address;
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  const groups: number[] = [];
  const parseGroups = (part: string): number[] => {
    if (part === "") return [];
    const result: number[] = [];
    for (const piece of part.split(":")) {
      if (piece.includes(".")) {
        const v4 = ipv4Octets(piece);
        result.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        result.push(parseInt(piece, 16));
      }
    }
    return result;
  };
  const doubleColon = text.indexOf("::");
  if (doubleColon >= 0) {
    const head = parseGroups(text.slice(0, doubleColon));
    const tail = parseGroups(text.slice(doubleColon + 2));
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  } else {
    groups.push(...parseGroups(text));
  }
  const octets = Buffer.alloc(16);
  groups.forEach((group, i) => octets.writeUInt16BE(group, i * 2));
  return octets;
}

function ipAddressOctets(address: string): Buffer {
  if (isIPv4(address)) return ipv4Octets(address);
  if (isIPv6(address)) return ipv6Octets(address);
  throw new PkiError(PKI_ERROR_CODES.invalidIpAddress, `ipAddresses: expected an IPv4 or IPv6 address, got "${address}"`);
}

/** RFC 5280 §4.2.1.6: dNSName [2] IA5String, iPAddress [7] OCTET STRING (4 or 16 octets). */
function subjectAltNameDer(dnsNames: readonly string[], ipAddresses: readonly string[]): Buffer {
  return derSequence(
    ...dnsNames.map((name) => {
      if (!/^[\x21-\x7e]+$/.test(name)) {
        throw new PkiError(PKI_ERROR_CODES.invalidOption, `dnsNames: expected an ASCII host name, got "${name}"`);
      }
      return derImplicitPrimitive(2, Buffer.from(name, "ascii"));
    }),
    ...ipAddresses.map((address) => derImplicitPrimitive(7, ipAddressOctets(address))),
  );
}

interface CertificateFields {
  subjectCommonName: string;
  subjectKey: KeyObject;
  issuerName: Buffer;
  issuerKey: KeyObject;
  /** The issuer's subjectKeyIdentifier, or undefined for a self-signed certificate (uses its own). */
  issuerKeyIdentifier: Buffer | undefined;
  isCa: boolean;
  isServer: boolean;
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  validDays: number;
  now: Date;
}

/** Certificates are valid from a little before `now` so that small clock differences between peers do not matter. */
const NOT_BEFORE_BACKDATE_MS = 5 * 60 * 1000;
const MS_PER_DAY = 24 * 60 * 60 * 1000;

function buildCertificate(fields: CertificateFields): IssuedCertificate {
  if (!Number.isFinite(fields.validDays) || fields.validDays <= 0) {
    throw new PkiError(PKI_ERROR_CODES.invalidOption, `validDays: expected a positive number, got ${fields.validDays}`);
  }
  if (fields.subjectCommonName.length === 0) {
    throw new PkiError(PKI_ERROR_CODES.invalidOption, "commonName: expected a non-empty string");
  }
  const issuerKeyType = keyTypeOf(fields.issuerKey);
  const subjectPublicKey = subjectPublicKeyInfoDer(fields.subjectKey);
  const subjectKeyId = keyIdentifier(subjectPublicKey);
  const authorityKeyId = fields.issuerKeyIdentifier ?? subjectKeyId;

  const keyUsageBits: number[] = fields.isCa
    ? [KEY_USAGE_BIT.digitalSignature, KEY_USAGE_BIT.keyCertSign, KEY_USAGE_BIT.cRLSign]
    : keyTypeOf(fields.subjectKey) === "rsa"
      ? [KEY_USAGE_BIT.digitalSignature, KEY_USAGE_BIT.keyEncipherment]
      : [KEY_USAGE_BIT.digitalSignature];

  const extensions: Buffer[] = [
    // RFC 5280 §4.2.1.9: critical in CA certificates; cA FALSE is the DEFAULT and so omitted in DER.
    extension(OID.basicConstraints, true, fields.isCa ? derSequence(derBoolean(true)) : derSequence()),
    extension(OID.keyUsage, true, derNamedBitString(keyUsageBits)), // RFC 5280 §4.2.1.3
    extension(OID.subjectKeyIdentifier, false, derOctetString(subjectKeyId)), // RFC 5280 §4.2.1.2
    extension(OID.authorityKeyIdentifier, false, derSequence(derImplicitPrimitive(0, authorityKeyId))), // §4.2.1.1
  ];
  if (!fields.isCa) {
    // RFC 5280 §4.2.1.12
    extensions.push(extension(OID.extKeyUsage, false, derSequence(derObjectIdentifier(fields.isServer ? OID.serverAuth : OID.clientAuth))));
  }
  if (fields.dnsNames.length + fields.ipAddresses.length > 0) {
    extensions.push(extension(OID.subjectAltName, false, subjectAltNameDer(fields.dnsNames, fields.ipAddresses)));
  }

  // RFC 5280 §4.1.2.2: a positive serial of at most 20 octets; 16 random octets with the top bit clear.
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  serial[0]! |= 0x01; // never a leading zero octet, so the length is always 16.

  const notBefore = new Date(fields.now.getTime() - NOT_BEFORE_BACKDATE_MS);
  const notAfter = new Date(fields.now.getTime() + fields.validDays * MS_PER_DAY);
  const signatureAlgorithm = signatureAlgorithmIdentifier(issuerKeyType);
  const tbsCertificate = derSequence(
    derExplicit(0, derSmallInteger(2)), // version v3
    derUnsignedInteger(serial),
    signatureAlgorithm,
    fields.issuerName,
    derSequence(derTime(notBefore), derTime(notAfter)),
    nameDer(fields.subjectCommonName),
    subjectPublicKey,
    derExplicit(3, derSequence(...extensions)),
  );
  const signature = signTbs(issuerKeyType, tbsCertificate, fields.issuerKey);
  const certificateDer = derSequence(tbsCertificate, signatureAlgorithm, derBitString(signature));
  const cert = new X509Certificate(certificateDer);
  return {
    certPem: cert.toString(),
    keyPem: fields.subjectKey.export({ type: "pkcs8", format: "pem" }).toString(),
    cert,
  };
}

function subjectPublicKeyInfoDer(privateKey: KeyObject): Buffer {
  return createPublicKey(privateKey).export({ type: "spki", format: "der" });
}

// ---------------------------------------------------------------------------------------------
// Public API

/** A self-signed CA certificate (basicConstraints cA TRUE, keyCertSign). */
export function createCertificateAuthority(opts: { commonName: string; keyType?: KeyType; validDays?: number; now?: Date }): IssuedCertificate {
  const key = generateKey(opts.keyType ?? "ecdsa-p256");
  return buildCertificate({
    subjectCommonName: opts.commonName,
    subjectKey: key,
    issuerName: nameDer(opts.commonName),
    issuerKey: key,
    issuerKeyIdentifier: undefined,
    isCa: true,
    isServer: false,
    dnsNames: [],
    ipAddresses: [],
    validDays: opts.validDays ?? 30,
    now: opts.now ?? new Date(),
  });
}

/** An end-entity certificate signed by `ca`, for a server (serverAuth, the default) or a client (clientAuth). */
export function issueCertificate(
  ca: IssuedCertificate,
  opts: { commonName: string; dnsNames?: string[]; ipAddresses?: string[]; keyType?: KeyType; validDays?: number; isServer?: boolean; now?: Date },
): IssuedCertificate {
  if (!ca.cert.ca) throw new PkiError(PKI_ERROR_CODES.invalidOption, `ca: certificate "${ca.cert.subject}" is not a CA`);
  const caKey = createPrivateKey(ca.keyPem);
  return buildCertificate({
    subjectCommonName: opts.commonName,
    subjectKey: generateKey(opts.keyType ?? "ecdsa-p256"),
    issuerName: subjectNameDer(ca.cert),
    issuerKey: caKey,
    issuerKeyIdentifier: keyIdentifier(ca.cert.publicKey.export({ type: "spki", format: "der" })),
    isCa: false,
    isServer: opts.isServer ?? true,
    dnsNames: opts.dnsNames ?? [],
    ipAddresses: opts.ipAddresses ?? [],
    validDays: opts.validDays ?? 30,
    now: opts.now ?? new Date(),
  });
}
