/** Server certificate chain verification with node:crypto X509Certificate (RFC 8446 §4.4.2.4, RFC 5280 in outline). */
import { X509Certificate } from "node:crypto";
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

function checkValidity(cert: X509Certificate, nowUnixMs: number | undefined, role: string): void {
  if (nowUnixMs === undefined) return;
  if (nowUnixMs < cert.validFromDate.getTime() || nowUnixMs > cert.validToDate.getTime()) {
    throw new TlsAlertError("certificate_expired", `${role} certificate "${cert.subject}" is valid only ${cert.validFrom} to ${cert.validTo}`);
  }
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * Walks from the leaf through the peer's intermediates to a trust anchor, checking each signature and
 * validity period, then the leaf's name. Throws TlsAlertError: unknown_ca, bad_certificate, certificate_expired.
 */
export function verifyCertificateChain(chain: readonly X509Certificate[], options: ChainVerificationOptions): void {
  const leaf = chain[0];
  if (!leaf) throw new TlsAlertError("decode_error", "empty certificate chain");
  let current = leaf;
  const unused = chain.slice(1);
  // Each step consumes one intermediate, so chain.length + 1 steps bound the walk.
  for (let step = 0; step <= chain.length; step++) {
    checkValidity(current, options.verificationTimeUnixMs, step === 0 ? "leaf" : "intermediate");
    if (options.trustAnchors.some((a) => a.raw.equals(current.raw))) break; // the peer sent a trust anchor itself
    const anchor = options.trustAnchors.find((a) => current.checkIssued(a));
    if (anchor) {
      if (!current.verify(anchor.publicKey)) throw new TlsAlertError("bad_certificate", `signature on "${current.subject}" does not verify with trust anchor "${anchor.subject}"`);
      checkValidity(anchor, options.verificationTimeUnixMs, "trust anchor");
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
  if (name !== undefined) {
    const isIp = IPV4.test(name) || name.includes(":");
    const matched = isIp ? leaf.checkIP(name) : leaf.checkHost(name, { subject: "default" });
    if (matched === undefined) throw new TlsAlertError("bad_certificate", `certificate is not valid for "${name}"`);
  }
}
