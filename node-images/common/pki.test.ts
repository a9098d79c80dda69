import { execFileSync } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import * as tls from "node:tls";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import {
  createCertificateAuthority,
  derLength,
  derNamedBitString,
  derObjectIdentifier,
  derTime,
  derUnsignedInteger,
  issueCertificate,
  PkiError,
  type IssuedCertificate,
  type KeyType,
} from "./pki.ts";

const KEY_TYPES: readonly KeyType[] = ["ecdsa-p256", "ed25519", "rsa-pss", "rsa"];
const SERVER_AUTH_OID = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH_OID = "1.3.6.1.5.5.7.3.2";

function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const opensslAvailable = hasOpenssl();

function opensslText(certPem: string): string {
  return execFileSync("openssl", ["x509", "-noout", "-text"], { input: certPem, encoding: "utf8" });
}

function issueChain(keyType: KeyType): { ca: IssuedCertificate; server: IssuedCertificate; client: IssuedCertificate } {
  const ca = createCertificateAuthority({ commonName: `qmt test CA ${keyType}`, keyType });
  const server = issueCertificate(ca, {
    commonName: "server.test",
    dnsNames: ["server.test", "localhost"],
    ipAddresses: ["127.0.0.1", "::1", "2001:db8::10:1"],
    keyType,
    isServer: true,
  });
  const client = issueCertificate(ca, { commonName: "client.test", keyType, isServer: false });
  return { ca, server, client };
}

describe.each(KEY_TYPES)("PKI with %s keys", (keyType) => {
  const { ca, server, client } = issueChain(keyType);

  it("the CA is self-signed with basicConstraints cA TRUE, the leaves are not CAs", () => {
    expect(ca.cert.ca).toBe(true);
    expect(ca.cert.verify(ca.cert.publicKey)).toBe(true);
    expect(ca.cert.subject).toBe(`CN=qmt test CA ${keyType}`);
    expect(ca.cert.issuer).toBe(ca.cert.subject);
    expect(server.cert.ca).toBe(false);
    expect(client.cert.ca).toBe(false);
    expect(server.cert.issuer).toBe(ca.cert.subject);
  });

  it("the leaf signature verifies with the CA public key and not with another CA's", () => {
    expect(server.cert.verify(ca.cert.publicKey)).toBe(true);
    const otherCa = createCertificateAuthority({ commonName: `qmt test CA ${keyType}`, keyType });
    expect(server.cert.verify(otherCa.cert.publicKey)).toBe(false);
    // Node's checkIssued is "this certificate was issued by otherCert": leaf.checkIssued(ca).
    expect(server.cert.checkIssued(ca.cert)).toBe(true);
    expect(client.cert.checkIssued(ca.cert)).toBe(true);
    // Same issuer name, different key: the authorityKeyIdentifier tells them apart.
    expect(server.cert.checkIssued(otherCa.cert)).toBe(false);
  });

  it("subjectAltName carries the DNS names and IPv4/IPv6 addresses", () => {
    expect(server.cert.subjectAltName).toBe(
      "DNS:server.test, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:2001:DB8:0:0:0:0:10:1",
    );
    expect(server.cert.checkHost("server.test")).toBe("server.test");
    expect(server.cert.checkHost("localhost")).toBe("localhost");
    expect(server.cert.checkHost("other.test")).toBeUndefined();
    expect(server.cert.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(server.cert.checkIP("::1")).toBe("::1");
    expect(server.cert.checkIP("2001:db8:0::10:1")).toBe("2001:db8:0::10:1");
    expect(server.cert.checkIP("127.0.0.2")).toBeUndefined();
    expect(client.cert.subjectAltName).toBeUndefined();
  });

  it("extendedKeyUsage is serverAuth for servers and clientAuth for clients", () => {
    expect(server.cert.keyUsage).toEqual([SERVER_AUTH_OID]);
    expect(client.cert.keyUsage).toEqual([CLIENT_AUTH_OID]);
  });

  it("the private key PEM matches the certificate's public key", () => {
    expect(server.cert.checkPrivateKey(createPrivateKey(server.keyPem))).toBe(true);
    expect(ca.cert.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(true);
    expect(server.cert.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(false);
  });

  it.skipIf(!opensslAvailable)("openssl verify -x509_strict accepts the chain (skipped: openssl CLI missing)", () => {
    const dir = mkdtempSync(join(tmpdir(), "qmt-pki-"));
    try {
      writeFileSync(join(dir, "ca.pem"), ca.certPem);
      writeFileSync(join(dir, "server.pem"), server.certPem);
      writeFileSync(join(dir, "client.pem"), client.certPem);
      const verify = (purpose: string, file: string): string =>
        execFileSync("openssl", ["verify", "-x509_strict", "-purpose", purpose, "-CAfile", join(dir, "ca.pem"), join(dir, file)], {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "pipe"],
        });
      expect(verify("sslserver", "server.pem")).toContain("server.pem: OK");
      expect(verify("sslclient", "client.pem")).toContain("client.pem: OK");
      // The EKU is enforced: a client certificate is not a server certificate.
      expect(() => verify("sslserver", "client.pem")).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!opensslAvailable)("openssl decodes keyUsage, basicConstraints and matching key identifiers (skipped: openssl CLI missing)", () => {
    const caText = opensslText(ca.certPem);
    const serverText = opensslText(server.certPem);
    expect(caText).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE/);
    expect(caText).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
    expect(serverText).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(serverText).toMatch(keyType === "rsa" ? /Key Usage: critical\s+Digital Signature, Key Encipherment\n/ : /Key Usage: critical\s+Digital Signature\n/);
    const caSki = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(caText)?.[1];
    const serverAki = /Authority Key Identifier:\s+(?:keyid:)?([0-9A-F:]+)/.exec(serverText)?.[1];
    expect(caSki).toMatch(/^([0-9A-F]{2}:){19}[0-9A-F]{2}$/);
    expect(serverAki).toBe(caSki);
    expect(serverText).toContain("Version: 3 (0x2)");
  });

  it("node:tls completes a TLS 1.3 handshake on 127.0.0.1 with the server leaf, trusting only the CA, with a client certificate", async () => {
    const tlsServerHandle = tlsServer();
    try {
      tlsServerHandle.listen(0, "127.0.0.1");
      await once(tlsServerHandle, "listening");
      const port = (tlsServerHandle.address() as AddressInfo).port;
      const secureConnection = once(tlsServerHandle, "secureConnection") as Promise<[tls.TLSSocket]>;
      const socket = tls.connect({
        host: "127.0.0.1",
        port,
        servername: "server.test",
        ca: [ca.certPem],
        cert: client.certPem,
        key: client.keyPem,
        minVersion: "TLSv1.3",
        rejectUnauthorized: true,
      });
      try {
        await once(socket, "secureConnect");
        expect(socket.authorized).toBe(true);
        expect(socket.getProtocol()).toBe("TLSv1.3");
        expect(socket.getPeerX509Certificate()?.fingerprint256).toBe(server.cert.fingerprint256);
        const [serverSide] = await secureConnection;
        expect(serverSide.authorized).toBe(true);
        expect(serverSide.getPeerX509Certificate()?.subject).toBe("CN=client.test");
      } finally {
        socket.destroy();
      }
    } finally {
      tlsServerHandle.close();
    }
  });

  it("node:tls rejects the server leaf when the client trusts a different CA", async () => {
    const tlsServerHandle = tlsServer();
    const otherCa = createCertificateAuthority({ commonName: "unrelated CA", keyType });
    try {
      tlsServerHandle.listen(0, "127.0.0.1");
      await once(tlsServerHandle, "listening");
      const port = (tlsServerHandle.address() as AddressInfo).port;
      // The server sends leaf + CA (it builds its chain from `ca`), so the untrusted CA shows up as SELF_SIGNED_CERT_IN_CHAIN.
      const socket = tls.connect({ host: "127.0.0.1", port, servername: "server.test", ca: [otherCa.certPem], minVersion: "TLSv1.3" });
      try {
        const [error] = (await once(socket, "error")) as [NodeJS.ErrnoException];
        expect(error.code).toMatch(/^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN)$/);
      } finally {
        socket.destroy();
      }
    } finally {
      tlsServerHandle.close();
    }
  });

  function tlsServer(): tls.Server {
    return tls.createServer({
      cert: server.certPem,
      key: server.keyPem,
      ca: [ca.certPem],
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
    });
  }
});

describe("PKI validity and option errors", () => {
  it("validity runs from just before `now` for validDays days", () => {
    const now = new Date("2031-03-04T05:06:07Z");
    const ca = createCertificateAuthority({ commonName: "dated CA", now, validDays: 10 });
    const leaf = issueCertificate(ca, { commonName: "dated leaf", now, validDays: 2 });
    expect(ca.cert.validFromDate.getTime()).toBeLessThanOrEqual(now.getTime());
    expect(now.getTime() - ca.cert.validFromDate.getTime()).toBeLessThanOrEqual(10 * 60 * 1000);
    expect(ca.cert.validToDate.toISOString()).toBe("2031-03-14T05:06:07.000Z");
    expect(leaf.cert.validToDate.toISOString()).toBe("2031-03-06T05:06:07.000Z");
  });

  it("a validity ending after 2049 (GeneralizedTime, RFC 5280 §4.1.2.5) parses back exactly", () => {
    const now = new Date("2049-12-31T00:00:00Z");
    const ca = createCertificateAuthority({ commonName: "far CA", now, validDays: 5 });
    expect(ca.cert.validToDate.toISOString()).toBe("2050-01-05T00:00:00.000Z");
  });

  it("serial numbers are positive, 16 octets and unique", () => {
    const ca = createCertificateAuthority({ commonName: "serial CA" });
    const serials = new Set([ca, issueCertificate(ca, { commonName: "a" }), issueCertificate(ca, { commonName: "b" })].map((c) => c.cert.serialNumber));
    expect(serials.size).toBe(3);
    for (const serial of serials) expect(serial).toMatch(/^[0-7][0-9A-F]{31}$/);
  });

  it("an invalid IP address is a typed PkiError", () => {
    const ca = createCertificateAuthority({ commonName: "errors CA" });
    expect(() => issueCertificate(ca, { commonName: "x", ipAddresses: ["300.1.1.1"] })).toThrow(PkiError);
    try {
      issueCertificate(ca, { commonName: "x", ipAddresses: ["not-an-ip"] });
      expect.unreachable();
    } catch (error) {
      expect((error as PkiError).code).toBe("PKI_INVALID_IP_ADDRESS");
    }
  });

  it("issuing from a leaf or with a non-positive validity is a typed PkiError", () => {
    const ca = createCertificateAuthority({ commonName: "errors CA" });
    const leaf = issueCertificate(ca, { commonName: "leaf" });
    expect(() => issueCertificate(leaf, { commonName: "x" })).toThrow(/is not a CA/);
    expect(() => createCertificateAuthority({ commonName: "x", validDays: 0 })).toThrow(PkiError);
  });

  it("a CA of one key type issues leaves of another", () => {
    const ca = createCertificateAuthority({ commonName: "rsa CA", keyType: "rsa" });
    const leaf = issueCertificate(ca, { commonName: "ec leaf", keyType: "ecdsa-p256" });
    expect(leaf.cert.verify(ca.cert.publicKey)).toBe(true);
    expect(leaf.cert.publicKey.asymmetricKeyType).toBe("ec");
  });
});

describe("DER writer (ITU-T X.690)", () => {
  const hex = (buffer: Buffer): string => buffer.toString("hex");

  it("lengths use the short form below 128 and the minimal long form above (X.690 §8.1.3)", () => {
    expect(hex(derLength(0))).toBe("00");
    expect(hex(derLength(127))).toBe("7f");
    expect(hex(derLength(128))).toBe("8180");
    expect(hex(derLength(255))).toBe("81ff");
    expect(hex(derLength(256))).toBe("820100");
    expect(hex(derLength(65_536))).toBe("83010000");
  });

  it("object identifiers pack the first two arcs and use base-128 (X.690 §8.19)", () => {
    // rsaEncryption's arc prefix and the classic examples from RFC 5280 / PKCS #1.
    expect(hex(derObjectIdentifier("1.2.840.113549"))).toBe("06062a864886f70d");
    expect(hex(derObjectIdentifier("1.2.840.113549.1.1.11"))).toBe("06092a864886f70d01010b");
    expect(hex(derObjectIdentifier("2.5.29.17"))).toBe("0603551d11");
    expect(hex(derObjectIdentifier("1.3.101.112"))).toBe("06032b6570");
    expect(hex(derObjectIdentifier("1.2.840.10045.4.3.2"))).toBe("06082a8648ce3d040302");
  });

  it("unsigned integers are minimal and gain a 0x00 octet when the top bit is set (X.690 §8.3)", () => {
    expect(hex(derUnsignedInteger(Buffer.from([0x00])))).toBe("020100");
    expect(hex(derUnsignedInteger(Buffer.from([0x7f])))).toBe("02017f");
    expect(hex(derUnsignedInteger(Buffer.from([0x80])))).toBe("02020080");
    expect(hex(derUnsignedInteger(Buffer.from([0x00, 0x00, 0x01, 0x00])))).toBe("02020100");
  });

  it("named bit strings drop trailing zero bits (X.690 §11.2.2): keyUsage values from RFC 5280 §4.2.1.3", () => {
    expect(hex(derNamedBitString([0]))).toBe("03020780"); // digitalSignature
    expect(hex(derNamedBitString([0, 2]))).toBe("030205a0"); // digitalSignature, keyEncipherment
    expect(hex(derNamedBitString([0, 5, 6]))).toBe("03020186"); // digitalSignature, keyCertSign, cRLSign
    expect(hex(derNamedBitString([8]))).toBe("0303070080"); // decipherOnly
  });

  it("times are UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280 §4.1.2.5)", () => {
    expect(derTime(new Date("2049-12-31T23:59:59Z")).toString("latin1")).toBe("\x17\x0d491231235959Z");
    expect(derTime(new Date("2050-01-01T00:00:00Z")).toString("latin1")).toBe("\x18\x0f20500101000000Z");
    expect(derTime(new Date("2026-11-25T08:09:10.999Z")).toString("latin1")).toBe("\x17\x0d261125080910Z");
  });
});
