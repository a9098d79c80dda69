/** One CA and server certificate per test process, issued by our own PKI (node-images/common/pki.ts). */
import { createCertificateAuthority, issueCertificate, type IssuedCertificate, type KeyType } from "../../node-images/common/pki.ts";

const cache = new Map<KeyType, { ca: IssuedCertificate; server: IssuedCertificate }>();

export function testPki(keyType: KeyType = "ecdsa-p256"): { ca: IssuedCertificate; server: IssuedCertificate } {
  let pki = cache.get(keyType);
  if (!pki) {
    const ca = createCertificateAuthority({ commonName: "qmt test CA", keyType });
    const server = issueCertificate(ca, { commonName: "server.test", dnsNames: ["server.test", "localhost"], ipAddresses: ["127.0.0.1", "::1"], keyType, isServer: true });
    pki = { ca, server };
    cache.set(keyType, pki);
  }
  return pki;
}

export function serverTls(keyType: KeyType = "ecdsa-p256", alpn = ["hq-interop"]) {
  const { server } = testPki(keyType);
  return { alpnProtocols: alpn, certificateChain: [server.certPem], privateKey: server.keyPem };
}

export function clientTls(keyType: KeyType = "ecdsa-p256", alpn = ["hq-interop"]) {
  const { ca } = testPki(keyType);
  return { alpnProtocols: alpn, serverName: "server.test", ca: [ca.certPem] };
}
