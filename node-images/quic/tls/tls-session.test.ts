/** Our TLS client against our TLS server in memory (RFC 8446 over RFC 9001 CRYPTO streams). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { CipherSuiteName } from "../crypto/cipher-suites.ts";
import type { EncryptionLevel } from "../crypto/levels.ts";
import { HANDSHAKE_TYPE } from "./handshake-messages.ts";
import { TlsAlertError, TlsSession, type KeyExchangeGroup, type TlsConfig, type TlsSecretEvent } from "./tls-session.ts";

const fixture = (name: string): string => readFileSync(join(import.meta.dirname, "fixtures", name), "utf8");
const CA = fixture("ca.cert.pem");
const NOW_UNIX_MS = Date.now();
const CERTIFICATES = {
  "ECDSA P-256": { chain: fixture("ecdsa-p256.cert.pem"), key: fixture("ecdsa-p256.key.pem"), scheme: 0x0403 },
  Ed25519: { chain: fixture("ed25519.cert.pem"), key: fixture("ed25519.key.pem"), scheme: 0x0807 },
  "RSA (rsa_pss_rsae_sha256)": { chain: fixture("rsa.cert.pem"), key: fixture("rsa.key.pem"), scheme: 0x0804 },
  "RSA-PSS (rsa_pss_pss_sha256)": { chain: fixture("rsa-pss.cert.pem"), key: fixture("rsa-pss.key.pem"), scheme: 0x0809 },
} as const;
const SUITES: CipherSuiteName[] = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];
const GROUPS: KeyExchangeGroup[] = ["x25519", "secp256r1"];

const clientParams = Buffer.from("client transport parameters");
const serverParams = Buffer.from("server transport parameters");

function clientConfig(overrides: Partial<TlsConfig> = {}): TlsConfig {
  return {
    role: "client", alpnProtocols: ["h3", "hq-interop"], transportParameters: clientParams,
    serverName: "server.test", ca: [CA], verificationTimeUnixMs: NOW_UNIX_MS, ...overrides,
  };
}

function serverConfig(overrides: Partial<TlsConfig> = {}): TlsConfig {
  const cert = CERTIFICATES["ECDSA P-256"];
  return {
    role: "server", alpnProtocols: ["hq-interop", "h3"], transportParameters: serverParams,
    certificateChain: [cert.chain], privateKey: cert.key, ...overrides,
  };
}

interface Flight { from: "client" | "server"; level: EncryptionLevel; data: Buffer }

interface Outcome {
  client: TlsSession;
  server: TlsSession;
  clientSecrets: TlsSecretEvent[];
  serverSecrets: TlsSecretEvent[];
  flights: Flight[];
}

/**
 * Runs a handshake, passing every output to the peer. `tamper` may rewrite a flight before delivery.
 * Bounded: a TLS 1.3 handshake (with HelloRetryRequest) is at most 8 flights.
 */
function handshake(client: TlsSession, server: TlsSession, tamper?: (f: Flight) => Buffer): Outcome {
  const outcome: Outcome = { client, server, clientSecrets: [], serverSecrets: [], flights: [] };
  client.start();
  server.start();
  for (let round = 0; round < 16; round++) {
    let moved = false;
    for (const [from, to] of [[client, server], [server, client]] as const) {
      for (let out = from.pollOutput(); out; out = from.pollOutput()) {
        moved = true;
        const flight: Flight = { from: from === client ? "client" : "server", level: out.level, data: out.data };
        outcome.flights.push(flight);
        to.receive(out.level, tamper ? tamper(flight) : out.data);
      }
    }
    for (let s = client.pollSecret(); s; s = client.pollSecret()) outcome.clientSecrets.push(s);
    for (let s = server.pollSecret(); s; s = server.pollSecret()) outcome.serverSecrets.push(s);
    if (!moved) return outcome;
  }
  throw new Error("handshake did not settle in 16 rounds");
}

const run = (c: Partial<TlsConfig> = {}, s: Partial<TlsConfig> = {}, tamper?: (f: Flight) => Buffer): Outcome =>
  handshake(new TlsSession(clientConfig(c)), new TlsSession(serverConfig(s)), tamper);

/** The alert a failing handshake raises, on whichever side raises it; fails the test on any other exception. */
function alertOf(fn: () => unknown): number {
  try {
    fn();
  } catch (err) {
    if (err instanceof TlsAlertError) return err.alert;
    throw err;
  }
  throw new Error("handshake did not fail");
}

function secretsByKey(events: TlsSecretEvent[]): Map<string, string> {
  return new Map(events.map((e) => [`${e.level}/${e.direction}`, e.secret.toString("hex")]));
}

function expectMatchingSecrets(o: Outcome): void {
  const c = secretsByKey(o.clientSecrets);
  const s = secretsByKey(o.serverSecrets);
  expect(c.size).toBe(4);
  expect(s.size).toBe(4);
  for (const level of ["handshake", "application"]) {
    expect(c.get(`${level}/write`)).toBe(s.get(`${level}/read`));
    expect(c.get(`${level}/read`)).toBe(s.get(`${level}/write`));
    expect(c.get(`${level}/write`)).not.toBe(c.get(`${level}/read`));
  }
}

describe("TlsSession client ↔ server", () => {
  for (const suite of SUITES) {
    for (const group of GROUPS) {
      for (const [certName, cert] of Object.entries(CERTIFICATES)) {
        it(`completes with ${suite}, ${group}, ${certName}`, () => {
          const o = run(
            { cipherSuites: [suite], groups: [group] },
            { cipherSuites: [suite], groups: [group], certificateChain: [cert.chain], privateKey: cert.key },
          );
          expect(o.client.handshakeComplete).toBe(true);
          expect(o.server.handshakeComplete).toBe(true);
          expectMatchingSecrets(o);
          for (const e of [...o.clientSecrets, ...o.serverSecrets]) {
            expect(e.suite.name).toBe(suite);
            expect(e.secret.length).toBe(e.suite.hashLength);
          }
          expect(o.client.cipherSuite?.name).toBe(suite);
          expect(o.client.alpn).toBe("hq-interop"); // server preference wins
          expect(o.server.alpn).toBe("hq-interop");
          expect(o.client.peerTransportParameters?.equals(serverParams)).toBe(true);
          expect(o.server.peerTransportParameters?.equals(clientParams)).toBe(true);
          expect(o.client.peerCertificates[0]?.subject).toBe("CN=server.test");
          // The server's CertificateVerify uses the scheme its key type implies.
          const serverFlight = o.flights.find((f) => f.from === "server" && f.level === "handshake")!.data;
          const cvAt = findMessage(serverFlight, HANDSHAKE_TYPE.certificate_verify);
          expect(serverFlight.readUInt16BE(cvAt + 4)).toBe(cert.scheme);
        });
      }
    }
  }

  it("emits secrets in the order RFC 9001 §4.1 needs them", () => {
    const o = run();
    expect(o.clientSecrets.map((e) => `${e.level}/${e.direction}`)).toEqual(["handshake/read", "handshake/write", "application/read", "application/write"]);
    expect(o.serverSecrets.map((e) => `${e.level}/${e.direction}`)).toEqual(["handshake/read", "handshake/write", "application/write", "application/read"]);
    expect(o.flights.map((f) => `${f.from}:${f.level}`)).toEqual(["client:initial", "server:initial", "server:handshake", "client:handshake"]);
  });

  it("server is not complete before the client Finished, and the client is complete once its Finished is queued", () => {
    const client = new TlsSession(clientConfig());
    const server = new TlsSession(serverConfig());
    client.start();
    const ch = client.pollOutput()!;
    server.receive(ch.level, ch.data);
    const sh = server.pollOutput()!;
    const flight = server.pollOutput()!;
    expect(server.handshakeComplete).toBe(false);
    client.receive(sh.level, sh.data);
    client.receive(flight.level, flight.data);
    expect(client.handshakeComplete).toBe(true);
    expect(server.handshakeComplete).toBe(false);
    const fin = client.pollOutput()!;
    expect(fin.level).toBe("handshake");
    server.receive(fin.level, fin.data);
    expect(server.handshakeComplete).toBe(true);
  });

  it("accepts handshake messages split at every byte boundary", () => {
    const client = new TlsSession(clientConfig());
    const server = new TlsSession(serverConfig());
    client.start();
    // Feed each flight one byte at a time; a handshake is at most 4 rounds of flights.
    for (let round = 0; round < 8; round++) {
      let moved = false;
      for (const [from, to] of [[client, server], [server, client]] as const) {
        for (let out = from.pollOutput(); out; out = from.pollOutput()) {
          moved = true;
          for (let i = 0; i < out.data.length; i++) to.receive(out.level, out.data.subarray(i, i + 1));
        }
      }
      if (!moved) break;
    }
    expect(client.handshakeComplete).toBe(true);
    expect(server.handshakeComplete).toBe(true);
  });

  it("is deterministic under testHooks (Ed25519 signs deterministically), and differs without them", () => {
    const hooks = (seed: number): TlsConfig["testHooks"] => ({
      random: Buffer.alloc(32, seed),
      privateKeys: { x25519: Buffer.alloc(32, seed + 1), secp256r1: Buffer.alloc(32, seed + 2) },
    });
    const ed = CERTIFICATES.Ed25519;
    const once = (withHooks: boolean): Map<string, string> => {
      const o = run({ testHooks: withHooks ? hooks(1) : undefined }, { testHooks: withHooks ? hooks(7) : undefined, certificateChain: [ed.chain], privateKey: ed.key });
      return secretsByKey(o.clientSecrets);
    };
    expect([...once(true)]).toEqual([...once(true)]);
    expect(once(false).get("handshake/read")).not.toBe(once(false).get("handshake/read"));
  });

  it("unexpected_message (10) for bytes left at a level after its last message (RFC 8446 §5.1)", () => {
    const client = new TlsSession(clientConfig());
    const server = new TlsSession(serverConfig());
    client.start();
    const ch = client.pollOutput()!;
    expect(alertOf(() => server.receive("initial", Buffer.concat([ch.data, Buffer.from("0100", "hex")])))).toBe(10);
  });

  it("answers a HelloRetryRequest: client shares x25519, server accepts only secp256r1", () => {
    const o = run({ groups: ["x25519", "secp256r1"] }, { groups: ["secp256r1"] });
    expect(o.client.handshakeComplete && o.server.handshakeComplete).toBe(true);
    expectMatchingSecrets(o);
    expect(o.flights.map((f) => `${f.from}:${f.level}`)).toEqual([
      "client:initial", "server:initial", "client:initial", "server:initial", "server:handshake", "client:handshake",
    ]);
    // The second server flight at initial is the HelloRetryRequest: ServerHello with the special random.
    const hrr = o.flights[1]!.data;
    expect(hrr[0]).toBe(HANDSHAKE_TYPE.server_hello);
    expect(hrr.subarray(6, 38).toString("hex")).toBe("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c");
  });

  it("fails with handshake_failure when no group is shared", () => {
    expect(alertOf(() => run({ groups: ["x25519"] }, { groups: ["secp256r1"] }))).toBe(40);
  });

  it("fails with handshake_failure when no cipher suite is shared", () => {
    expect(alertOf(() => run({ cipherSuites: ["TLS_AES_128_GCM_SHA256"] }, { cipherSuites: ["TLS_AES_256_GCM_SHA384"] }))).toBe(40);
  });

  it("picks the server's preferred cipher suite among the client's", () => {
    const o = run({ cipherSuites: SUITES }, { cipherSuites: ["TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"] });
    expect(o.client.cipherSuite?.name).toBe("TLS_CHACHA20_POLY1305_SHA256");
  });
});

/** Offset of the first handshake message of `type` in a flight of concatenated messages. */
function findMessage(flight: Buffer, type: number): number {
  for (let at = 0; at + 4 <= flight.length; at += 4 + flight.readUIntBE(at + 1, 3)) if (flight[at] === type) return at;
  throw new Error(`message ${type} not in flight`);
}

describe("TlsSession failures raise the right alert", () => {
  it("unknown_ca (48) when the server's chain is from another CA", () => {
    expect(alertOf(() => run({}, { certificateChain: [fixture("untrusted.cert.pem")], privateKey: fixture("untrusted.key.pem") }))).toBe(48);
  });

  it("verifies a chain through an intermediate CA, given as separate PEMs or one bundle", () => {
    const leaf = fixture("chained.cert.pem");
    const intermediate = fixture("intermediate-ca.cert.pem");
    const key = fixture("chained.key.pem");
    const separate = run({}, { certificateChain: [leaf, intermediate], privateKey: key });
    expect(separate.client.handshakeComplete).toBe(true);
    expect(separate.client.peerCertificates.map((c) => c.subject)).toEqual(["CN=server.test", "CN=QMT Test intermediate-ca"]);
    const bundle = run({}, { certificateChain: [leaf + intermediate], privateKey: key });
    expect(bundle.client.peerCertificates).toHaveLength(2);
  });

  it("unknown_ca (48) when the server omits the intermediate", () => {
    expect(alertOf(() => run({}, { certificateChain: [fixture("chained.cert.pem")], privateKey: fixture("chained.key.pem") }))).toBe(48);
  });

  it("unknown_ca (48) when the client trusts another CA", () => {
    expect(alertOf(() => run({ ca: [fixture("other-ca.cert.pem")] }))).toBe(48);
  });

  it("bad_certificate (42) for a server name the certificate does not carry", () => {
    expect(alertOf(() => run({ serverName: "other.test" }))).toBe(42);
  });

  it("certificate_expired (45) for an expired certificate", () => {
    expect(alertOf(() => run({}, { certificateChain: [fixture("expired.cert.pem")], privateKey: fixture("expired.key.pem") }))).toBe(45);
  });

  it("skips verification only when the dangerous lab flag is set", () => {
    const o = run({ ca: undefined, insecureSkipCertificateVerification_DANGEROUS_LAB_ONLY: true },
      { certificateChain: [fixture("untrusted.cert.pem")], privateKey: fixture("untrusted.key.pem") });
    expect(o.client.handshakeComplete).toBe(true);
  });

  it("no_application_protocol (120) when ALPN lists do not overlap", () => {
    expect(alertOf(() => run({ alpnProtocols: ["h3"] }, { alpnProtocols: ["hq-interop"] }))).toBe(120);
  });

  it("missing_extension (109) when the ClientHello lacks quic_transport_parameters", () => {
    const strip = stripExtension(0x39, HANDSHAKE_TYPE.client_hello);
    expect(alertOf(() => run({}, {}, (f) => (f.from === "client" ? strip(f.data) : f.data)))).toBe(109);
  });

  it("missing_extension (109) when EncryptedExtensions lacks quic_transport_parameters", () => {
    // Removing it changes the transcript too, but the missing extension is noticed first.
    const strip = stripExtension(0x39, HANDSHAKE_TYPE.encrypted_extensions);
    expect(alertOf(() => run({}, {}, (f) => (f.from === "server" && f.level === "handshake" ? strip(f.data) : f.data)))).toBe(109);
  });

  it("illegal_parameter (47) when the ServerHello picks a cipher suite the client did not offer", () => {
    const o = alertOf(() => run({ cipherSuites: ["TLS_AES_128_GCM_SHA256"] }, {}, (f) => {
      if (f.from !== "server" || f.level !== "initial") return f.data;
      const copy = Buffer.from(f.data);
      copy.writeUInt16BE(0x1302, 4 + 2 + 32 + 1); // ServerHello.cipher_suite after an empty legacy_session_id_echo
      return copy;
    }));
    expect(o).toBe(47);
  });

  it("illegal_parameter (47) for a repeated extension", () => {
    const client = new TlsSession(clientConfig());
    client.start();
    const ch = client.pollOutput()!.data;
    // Duplicate the last extension (quic_transport_parameters) and fix up the lengths.
    const at = ch.lastIndexOf(Buffer.concat([Buffer.from([0x00, 0x39]), Buffer.from([0, clientParams.length])]));
    expect(at).toBeGreaterThan(0);
    const extension = ch.subarray(at);
    const doubled = Buffer.concat([ch, extension]);
    doubled.writeUIntBE(doubled.length - 4, 1, 3);
    const extensionsLengthAt = 4 + 2 + 32 + 1 + 2 + ch.readUInt16BE(4 + 2 + 32 + 1) + 2;
    doubled.writeUInt16BE(doubled.readUInt16BE(extensionsLengthAt) + extension.length, extensionsLengthAt);
    expect(alertOf(() => new TlsSession(serverConfig()).receive("initial", doubled))).toBe(47);
  });

  it("bad_certificate (42) when the leaf's signature does not verify", () => {
    const o = alertOf(() => run({}, {}, (f) => {
      if (f.from !== "server" || f.level !== "handshake") return f.data;
      const copy = Buffer.from(f.data);
      const at = findMessage(copy, HANDSHAKE_TYPE.certificate);
      const derLength = copy.readUIntBE(at + 4 + 1 + 3, 3);
      copy[at + 4 + 1 + 3 + 3 + derLength - 5]! ^= 0x01; // inside the certificate's signature value
      return copy;
    }));
    expect(o).toBe(42);
  });

  it("decrypt_error (51) for a tampered server Finished", () => {
    const o = alertOf(() => run({}, {}, (f) => {
      if (f.from !== "server" || f.level !== "handshake") return f.data;
      const copy = Buffer.from(f.data);
      copy[copy.length - 1]! ^= 1;
      return copy;
    }));
    expect(o).toBe(51);
  });

  it("decrypt_error (51) for a tampered client Finished", () => {
    const o = alertOf(() => run({}, {}, (f) => {
      if (f.from !== "client" || f.level !== "handshake") return f.data;
      const copy = Buffer.from(f.data);
      copy[copy.length - 1]! ^= 1;
      return copy;
    }));
    expect(o).toBe(51);
  });

  it("decrypt_error (51) for a CertificateVerify signature that does not verify", () => {
    const o = alertOf(() => run({}, {}, (f) => {
      if (f.from !== "server" || f.level !== "handshake") return f.data;
      const copy = Buffer.from(f.data);
      const at = findMessage(copy, HANDSHAKE_TYPE.certificate_verify);
      copy[at + 4 + 2 + 2 + 10]! ^= 0x40; // inside the signature
      return copy;
    }));
    expect(o).toBe(51);
  });

  it("unexpected_message (10) for a message at the wrong level or time", () => {
    const server = new TlsSession(serverConfig());
    expect(alertOf(() => server.receive("handshake", Buffer.from("14000000", "hex")))).toBe(10);
    const client = new TlsSession(clientConfig());
    client.start();
    expect(alertOf(() => client.receive("initial", Buffer.from("0800000400020000", "hex")))).toBe(10);
  });

  it("ignores a post-handshake NewSessionTicket but treats a TLS KeyUpdate as unexpected_message (RFC 9001 §6)", () => {
    const o = run();
    // NewSessionTicket: lifetime, age_add, empty nonce, 1-byte ticket, no extensions.
    o.client.receive("application", Buffer.from("040000 0e 00000e10 01020304 00 0001aa 0000".replace(/ /g, ""), "hex"));
    expect(o.client.handshakeComplete).toBe(true);
    expect(alertOf(() => o.client.receive("application", Buffer.from("1800000100", "hex")))).toBe(10);
    expect(alertOf(() => o.server.receive("application", Buffer.from("1800000100", "hex")))).toBe(10);
  });

  it("decode_error (50) for a truncated ClientHello and for garbage", () => {
    const client = new TlsSession(clientConfig());
    client.start();
    const ch = client.pollOutput()!.data;
    // A ClientHello whose declared length is honest but whose body is cut short inside.
    const cut = Buffer.from(ch.subarray(0, 60));
    cut.writeUIntBE(56, 1, 3);
    expect(alertOf(() => new TlsSession(serverConfig()).receive("initial", cut))).toBe(50);
    expect(alertOf(() => new TlsSession(serverConfig()).receive("initial", Buffer.from("01000005ffffffffff", "hex")))).toBeOneOf([50, 70]);
  });

  it("throws only TlsAlertError for random garbage and every single-byte corruption of each flight", () => {
    // Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
    let x = 0x9e3779b9;
    const next = (): number => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
    for (let i = 0; i < 200; i++) {
      const garbage = Buffer.alloc(1 + (next() % 300));
      for (let j = 0; j < garbage.length; j++) garbage[j] = next() & 0xff;
      garbage[0] = i % 2 === 0 ? HANDSHAKE_TYPE.client_hello : garbage[0]!;
      if (garbage.length >= 4) garbage.writeUIntBE(garbage.length - 4, 1, 3);
      const server = new TlsSession(serverConfig());
      try {
        server.receive("initial", garbage);
      } catch (err) {
        expect(err).toBeInstanceOf(TlsAlertError);
      }
    }
    const reference = run();
    for (const flightIndex of [0, 1, 2]) {
      const flight = reference.flights[flightIndex]!;
      for (let pos = 0; pos < flight.data.length; pos += 7) {
        try {
          run({}, {}, (f) => {
            if (f.from !== flight.from || f.level !== flight.level) return f.data;
            const copy = Buffer.from(f.data);
            copy[pos]! ^= 0xff;
            return copy;
          });
        } catch (err) {
          expect(err, `flight ${flightIndex} byte ${pos}`).toBeInstanceOf(TlsAlertError);
        }
      }
    }
  });

  it("keeps failing with the same alert after the first error", () => {
    const server = new TlsSession(serverConfig());
    const first = alertOf(() => server.receive("initial", Buffer.from("0100000100", "hex")));
    expect(alertOf(() => server.receive("initial", Buffer.alloc(0)))).toBe(first);
  });
});

/** Returns a rewriter that removes extension `type` from the first message of `messageType` in a flight. */
function stripExtension(type: number, messageType: number): (flight: Buffer) => Buffer {
  return (flight) => {
    const at = findMessage(flight, messageType);
    const length = flight.readUIntBE(at + 1, 3);
    const message = flight.subarray(at, at + 4 + length);
    // Locate the extensions block: for ClientHello after the fixed fields; for EncryptedExtensions at the start.
    let extStart = 4;
    if (messageType === HANDSHAKE_TYPE.client_hello) {
      extStart += 2 + 32;
      extStart += 1 + message[extStart]!;
      extStart += 2 + message.readUInt16BE(extStart);
      extStart += 1 + message[extStart]!;
    }
    const extLength = message.readUInt16BE(extStart);
    const parts: Buffer[] = [];
    for (let p = extStart + 2; p < extStart + 2 + extLength;) {
      const t = message.readUInt16BE(p);
      const n = message.readUInt16BE(p + 2);
      if (t !== type) parts.push(message.subarray(p, p + 4 + n));
      p += 4 + n;
    }
    const exts = Buffer.concat(parts);
    const header = Buffer.from(message.subarray(0, extStart + 2));
    header.writeUInt16BE(exts.length, extStart);
    const rebuilt = Buffer.concat([header, exts]);
    rebuilt.writeUIntBE(rebuilt.length - 4, 1, 3);
    return Buffer.concat([flight.subarray(0, at), rebuilt, flight.subarray(at + 4 + length)]);
  };
}

describe("a server chain verified once is checked again on every handshake (certificate-verification.ts cache)", () => {
  it("refuses the same chain bytes later for a time outside its validity, another name or another CA", () => {
    // The first handshake verifies the chain and caches its path; each later one presents the very same DER bytes.
    expect(run({}).client.handshakeComplete).toBe(true);
    // The fixtures are valid for 20 years from when they were made, and not before.
    const fiftyYearsMs = 50 * 365 * 24 * 3600 * 1000;
    expect(alertOf(() => run({ verificationTimeUnixMs: NOW_UNIX_MS + fiftyYearsMs }))).toBe(45);
    expect(alertOf(() => run({ verificationTimeUnixMs: NOW_UNIX_MS - fiftyYearsMs }))).toBe(45);
    expect(alertOf(() => run({ serverName: "other.test" }))).toBe(42);
    expect(alertOf(() => run({ ca: [fixture("other-ca.cert.pem")] }))).toBe(48);
    // And the cached success still holds for the original settings.
    expect(run({}).client.handshakeComplete).toBe(true);
  });

  it("refuses a chain whose CertificateVerify is signed by another key, though the chain was verified before", () => {
    expect(run({}).client.handshakeComplete).toBe(true);
    // The ECDSA leaf again, but the server signs with the Ed25519 key: the cached leaf key must not make it pass.
    const o = alertOf(() => run({}, { certificateChain: [CERTIFICATES["ECDSA P-256"].chain], privateKey: fixture("ed25519.key.pem") }));
    expect([47, 51]).toContain(o);
  });
});
