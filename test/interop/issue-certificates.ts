/**
 * Issues a per-run CA and a server certificate (for 127.0.0.1, ::1 and localhost) into a directory,
 * using our own PKI (node-images/common/pki.ts).
 *
 *   node test/interop/issue-certificates.ts --out /tmp/qmt-certs [--key-type ecdsa-p256|ed25519|rsa|rsa-pss]
 *
 * Prints one JSON line with the file paths.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { createCertificateAuthority, issueCertificate, type KeyType } from "../../node-images/common/pki.ts";

export interface CertificateFiles {
  caCertFile: string;
  serverCertFile: string;
  serverKeyFile: string;
}

const KEY_TYPES: readonly KeyType[] = ["ecdsa-p256", "ed25519", "rsa", "rsa-pss"];

export function isKeyType(value: string): value is KeyType {
  return (KEY_TYPES as readonly string[]).includes(value);
}

export function writeTestCertificates(directory: string, keyType: KeyType = "ecdsa-p256"): CertificateFiles {
  mkdirSync(directory, { recursive: true });
  const ca = createCertificateAuthority({ commonName: "qmt interop CA", keyType });
  const server = issueCertificate(ca, {
    commonName: "localhost",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1", "::1"],
    keyType,
    isServer: true,
  });
  const files: CertificateFiles = {
    caCertFile: join(directory, "ca.pem"),
    serverCertFile: join(directory, "server.pem"),
    serverKeyFile: join(directory, "server.key.pem"),
  };
  writeFileSync(files.caCertFile, ca.certPem);
  writeFileSync(files.serverCertFile, server.certPem);
  writeFileSync(files.serverKeyFile, server.keyPem, { mode: 0o600 });
  return files;
}

function main(): void {
  const { values } = parseArgs({
    options: { out: { type: "string" }, "key-type": { type: "string", default: "ecdsa-p256" }, help: { type: "boolean" } },
  });
  if (values.help || values.out === undefined) {
    process.stderr.write("usage: node test/interop/issue-certificates.ts --out DIR [--key-type ecdsa-p256|ed25519|rsa|rsa-pss]\n");
    process.exit(values.help ? 0 : 2);
  }
  const keyType = values["key-type"];
  if (!isKeyType(keyType)) {
    process.stderr.write(`--key-type: expected one of ${KEY_TYPES.join(", ")}, got "${keyType}"\n`);
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(writeTestCertificates(resolve(values.out), keyType))}\n`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
