/** Server certificate chain verification with node:crypto X509Certificate (RFC 8446 §4.4.2.4, RFC 5280 in outline). */
import { X509Certificate, type KeyObject } from "node:crypto";
import { TlsAlertError, TlsConfigError } from "./tls-alert.ts";

export interface ChainVerificationOptions {
  trustAnchors: readonly X509Certificate[];
  /** Name the leaf must carry (DNS name or IP literal); unchecked when absent. */
  serverName?: string;
  /** Wall-clock time for validity periods, Unix ms; the sans-I/O core has no clock, so the caller supplies it. */
  verificationTimeUnixMs?: number;
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Parses PEM strings (one or many certificates each) or DER bytes into certificates, in order. */
export function parseCertificates(items: readonly (string | Uint8Array)[], what: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const item of items) {
    try {
      if (typeof item === "string") {
        const blocks = item.match(PEM_BLOCK);
        if (!blocks) throw new Error("no PEM CERTIFICATE block");
        for (const block of blocks) out.push(new X509Certificate(block));
      } else {
        out.push(new X509Certificate(item));
      }
    } catch (err) {
      throw new TlsConfigError(`${what}: cannot parse certificate: ${(err as Error).message}`);
    }
  }
  return out;
}

/** Validity periods as Unix ms, read once per certificate: validFromDate parses the date text on every read. */
const validityByCertificate = new WeakMap<X509Certificate, { fromMs: number; toMs: number }>();

function checkValidity(cert: X509Certificate, nowUnixMs: number | undefined, role: string): void {
  if (nowUnixMs === undefined) return;
  let validity = validityByCertificate.get(cert);
  if (!validity) {
    validity = { fromMs: cert.validFromDate.getTime(), toMs: cert.validToDate.getTime() };
    validityByCertificate.set(cert, validity);
  }
  if (nowUnixMs < validity.fromMs || nowUnixMs > validity.toMs) {
    throw new TlsAlertError("certificate_expired", `${role} certificate "${cert.subject}" is valid only ${cert.validFrom} to ${cert.validTo}`);
  }
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** A certificate whose validity period a chain walk checked, and the role named in the error when it fails. */
export interface CheckedCertificate { certificate: X509Certificate; role: "leaf" | "intermediate" | "trust anchor" }

/**
 * Walks from the leaf through the peer's intermediates to a trust anchor, checking each signature and
 * validity period, then the leaf's name. Throws TlsAlertError: unknown_ca, bad_certificate, certificate_expired.
 * Returns the certificates whose validity periods it checked, in order (verifyReceivedChain repeats those checks).
 */
export function verifyCertificateChain(chain: readonly X509Certificate[], options: ChainVerificationOptions): CheckedCertificate[] {
  const leaf = chain[0];
  if (!leaf) throw new TlsAlertError("decode_error", "empty certificate chain");
  const checked: CheckedCertificate[] = [];
  let current = leaf;
  const unused = chain.slice(1);
  // Each step consumes one intermediate, so chain.length + 1 steps bound the walk.
  for (let step = 0; step <= chain.length; step++) {
    const role = step === 0 ? "leaf" : "intermediate";
    checkValidity(current, options.verificationTimeUnixMs, role);
    checked.push({ certificate: current, role });
    if (options.trustAnchors.some((a) => a.raw.equals(current.raw))) break; // the peer sent a trust anchor itself
    const anchor = options.trustAnchors.find((a) => current.checkIssued(a));
    if (anchor) {
      if (!current.verify(anchor.publicKey)) throw new TlsAlertError("bad_certificate", `signature on "${current.subject}" does not verify with trust anchor "${anchor.subject}"`);
      checkValidity(anchor, options.verificationTimeUnixMs, "trust anchor");
      checked.push({ certificate: anchor, role: "trust anchor" });
      break;
    }
    const issuerIndex = unused.findIndex((c) => c.ca && current.checkIssued(c));
    if (issuerIndex < 0) throw new TlsAlertError("unknown_ca", `no trusted issuer for "${current.subject}" (issuer "${current.issuer}")`);
    const issuer = unused.splice(issuerIndex, 1)[0]!;
    if (!current.verify(issuer.publicKey)) throw new TlsAlertError("bad_certificate", `signature on "${current.subject}" does not verify with "${issuer.subject}"`);
    current = issuer;
    if (step === chain.length) throw new TlsAlertError("unknown_ca", "certificate chain does not reach a trust anchor");
  }
  const name = options.serverName;
  if (name !== undefined && !leafMatchesName(leaf, name)) throw new TlsAlertError("bad_certificate", `certificate is not valid for "${name}"`);
  return checked;
}

function leafMatchesName(leaf: X509Certificate, name: string): boolean {
  const isIp = IPV4.test(name) || name.includes(":");
  const matched = isIp ? leaf.checkIP(name) : leaf.checkHost(name, { subject: "default" });
  return matched !== undefined;
}

/**
 * A server's certificate chain as received, parsed once for every handshake that presents the same DER bytes:
 * a busy client sees the same few chains again and again, and parsing, path building and the issuers'
 * signature checks depend on nothing but those bytes and the trust anchors (bench/quic-handshakes.bench.ts).
 */
export interface ReceivedChain {
  readonly chain: readonly X509Certificate[];
  /** The leaf's key, made on first use (receivedLeafPublicKey): X509Certificate.publicKey makes a new KeyObject on every read. */
  leafPublicKey: KeyObject | undefined;
  /** Per trust-anchor list (by identity): the certificates a successful walk checked the validity periods of. */
  readonly verifiedPaths: WeakMap<readonly X509Certificate[], CheckedCertificate[]>;
  /** Per server name: whether the leaf carries it. */
  readonly names: Map<string, boolean>;
}

/** Bounded (oldest first out): a client talking to many servers re-parses, it does not grow. */
const MAX_CACHED_CHAINS = 64;
const MAX_CACHED_NAMES = 16;
const chainsByDer = new Map<string, ReceivedChain>();

/**
 * The chain for these DER certificates (leaf first), from the cache when the same bytes were parsed before.
 * Throws TlsAlertError bad_certificate for an unparsable certificate. Only chains that parse are cached.
 */
export function receivedChain(ders: readonly Uint8Array[]): ReceivedChain {
  // Each certificate's length, then its bytes as latin1 (one character per byte): equal keys mean equal chains.
  let key = "";
  for (const der of ders) key += `${der.length}:${Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("latin1")}`;
  const cached = chainsByDer.get(key);
  if (cached) return cached;
  const chain = ders.map((der) => {
    try {
      return new X509Certificate(der);
    } catch (err) {
      throw new TlsAlertError("bad_certificate", `unparsable certificate: ${(err as Error).message}`);
    }
  });
  if (chain.length === 0) throw new TlsAlertError("decode_error", "empty certificate chain");
  const received: ReceivedChain = { chain, leafPublicKey: undefined, verifiedPaths: new WeakMap(), names: new Map() };
  if (chainsByDer.size >= MAX_CACHED_CHAINS) chainsByDer.delete(chainsByDer.keys().next().value!);
  chainsByDer.set(key, received);
  return received;
}

export function receivedLeafPublicKey(received: ReceivedChain): KeyObject {
  return (received.leafPublicKey ??= received.chain[0]!.publicKey);
}

/**
 * verifyCertificateChain() for a received chain, with the same outcome: the walk and its signature checks run
 * once per trust-anchor list and are remembered only when they succeed; the validity periods (the time
 * changes) are checked on every call, in the walk's order, and the name once per name.
 */
export function verifyReceivedChain(received: ReceivedChain, options: ChainVerificationOptions): void {
  let path = received.verifiedPaths.get(options.trustAnchors);
  if (path === undefined) {
    path = verifyCertificateChain(received.chain, { trustAnchors: options.trustAnchors, verificationTimeUnixMs: options.verificationTimeUnixMs });
    received.verifiedPaths.set(options.trustAnchors, path);
  } else {
    for (const c of path) checkValidity(c.certificate, options.verificationTimeUnixMs, c.role);
  }
  const name = options.serverName;
  if (name === undefined) return;
  let matches = received.names.get(name);
  if (matches === undefined) {
    matches = leafMatchesName(received.chain[0]!, name);
    if (received.names.size >= MAX_CACHED_NAMES) received.names.delete(received.names.keys().next().value!);
    received.names.set(name, matches);
  }
  if (!matches) throw new TlsAlertError("bad_certificate", `certificate is not valid for "${name}"`);
}
