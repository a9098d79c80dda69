/**
 * Interop with OpenSSL's TLS 1.3 (`openssl s_server` / `s_client` over loopback TCP). The test carries our handshake
 * messages in a minimal TLS record layer (RFC 8446 §5) of its own; OpenSSL does not know QUIC, so both sides run with
 * testHooks.allowMissingTransportParameters_TEST_ONLY.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, connect, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { CipherSuite, CipherSuiteName } from "../crypto/cipher-suites.ts";
import { hkdfExpandLabel } from "../crypto/hkdf.ts";
import type { EncryptionLevel } from "../crypto/levels.ts";
import { TlsSession, type KeyExchangeGroup, type TlsConfig } from "./tls-session.ts";

const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;
const FIXTURES = join(import.meta.dirname, "fixtures");
const DEADLINE_MS = 5000;

const RECORD = { change_cipher_spec: 20, alert: 21, handshake: 22, application_data: 23 } as const;

/** RFC 8446 §5.2-5.3: AEAD record protection with per-direction sequence numbers. */
class RecordProtection {
  private readonly key: Buffer;
  private readonly iv: Buffer;
  private readonly suite: CipherSuite;
  private sequence = 0n;

  constructor(suite: CipherSuite, secret: Buffer) {
    this.suite = suite;
    this.key = hkdfExpandLabel(suite.hash, secret, "key", Buffer.alloc(0), suite.keyLength);
    this.iv = hkdfExpandLabel(suite.hash, secret, "iv", Buffer.alloc(0), 12);
  }

  /** ChaCha20-Poly1305 has the same AEAD surface as GCM in node:crypto; the GCM overload types it. */
  private aead(): CipherGCMTypes {
    return this.suite.aead as CipherGCMTypes;
  }

  private nonce(): Buffer {
    const nonce = Buffer.from(this.iv);
    const seq = Buffer.alloc(8);
    seq.writeBigUInt64BE(this.sequence++);
    for (let i = 0; i < 8; i++) nonce[4 + i]! ^= seq[i]!;
    return nonce;
  }

  seal(contentType: number, content: Buffer): Buffer {
    const inner = Buffer.concat([content, Buffer.of(contentType)]);
    const header = Buffer.from([RECORD.application_data, 3, 3, 0, 0]);
    header.writeUInt16BE(inner.length + 16, 3);
    const cipher = createCipheriv(this.aead(), this.key, this.nonce(), { authTagLength: 16 });
    cipher.setAAD(header);
    const body = Buffer.concat([cipher.update(inner), cipher.final(), cipher.getAuthTag()]);
    return Buffer.concat([header, body]);
  }

  open(header: Buffer, body: Buffer): { contentType: number; content: Buffer } {
    const decipher = createDecipheriv(this.aead(), this.key, this.nonce(), { authTagLength: 16 });
    decipher.setAAD(header);
    decipher.setAuthTag(body.subarray(body.length - 16));
    const inner = Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]);
    let end = inner.length - 1;
    while (end >= 0 && inner[end] === 0) end--; // strip zero padding (RFC 8446 §5.4)
    return { contentType: inner[end]!, content: inner.subarray(0, end) };
  }
}

/** Reads whole TLS records from a socket, each wait bounded by a deadline. */
class RecordReader {
  private buffer = Buffer.alloc(0);
  private waiting: (() => void) | undefined;
  private ended = false;

  constructor(socket: Socket) {
    socket.on("data", (d: Buffer) => { this.buffer = Buffer.concat([this.buffer, d]); this.waiting?.(); });
    socket.on("close", () => { this.ended = true; this.waiting?.(); });
  }

  async next(): Promise<{ type: number; header: Buffer; body: Buffer }> {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      if (this.buffer.length >= 5) {
        const length = this.buffer.readUInt16BE(3);
        if (this.buffer.length >= 5 + length) {
          const header = this.buffer.subarray(0, 5);
          const body = this.buffer.subarray(5, 5 + length);
          this.buffer = this.buffer.subarray(5 + length);
          return { type: header[0]!, header, body };
        }
      }
      if (this.ended) throw new Error("connection closed before a whole record arrived");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no TLS record before the deadline");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiting = () => { clearTimeout(timer); resolve(); };
      });
    }
  }
}

/**
 * Drives a TlsSession over TCP records until it completes, then exchanges one line of application data.
 * Returns the first application data line received from the peer.
 */
async function runOverRecords(session: TlsSession, socket: Socket, send: string): Promise<string> {
  const reader = new RecordReader(socket);
  const read = new Map<EncryptionLevel, RecordProtection>();
  const write = new Map<EncryptionLevel, RecordProtection>();
  let readLevel: EncryptionLevel = "initial";
  let received = "";
  const flush = (): void => {
    for (let s = session.pollSecret(); s; s = session.pollSecret()) {
      (s.direction === "read" ? read : write).set(s.level, new RecordProtection(s.suite, s.secret));
    }
    for (let out = session.pollOutput(); out; out = session.pollOutput()) {
      if (out.level === "initial") {
        const header = Buffer.from([RECORD.handshake, 3, 1, 0, 0]);
        header.writeUInt16BE(out.data.length, 3);
        socket.write(Buffer.concat([header, out.data]));
      } else {
        socket.write(write.get(out.level)!.seal(RECORD.handshake, out.data));
      }
    }
    // Switch read keys as soon as they exist: the peer's next records use them.
    if (readLevel === "initial" && read.has("handshake")) readLevel = "handshake";
    if (readLevel === "handshake" && read.has("application") && session.handshakeComplete) readLevel = "application";
  };
  session.start();
  flush();
  for (let i = 0; i < 64 && received === ""; i++) {
    if (session.handshakeComplete && write.has("application") && send) {
      socket.write(write.get("application")!.seal(RECORD.application_data, Buffer.from(send)));
      send = "";
    }
    const record = await reader.next();
    if (record.type === RECORD.change_cipher_spec) continue; // middlebox compatibility (RFC 8446 §D.4)
    if (record.type === RECORD.handshake) {
      session.receive("initial", record.body);
    } else if (record.type === RECORD.application_data) {
      const inner = read.get(readLevel)!.open(record.header, record.body);
      if (inner.contentType === RECORD.alert) throw new Error(`peer sent alert ${inner.content[1]}`);
      if (inner.contentType === RECORD.application_data) received = inner.content.toString();
      else session.receive(readLevel, inner.content);
    } else {
      throw new Error(`peer sent record type ${record.type} (${record.body.toString("hex")})`);
    }
    flush();
  }
  return received;
}

const OPENSSL_SUITE: Record<CipherSuiteName, string> = {
  TLS_AES_128_GCM_SHA256: "TLS_AES_128_GCM_SHA256",
  TLS_AES_256_GCM_SHA384: "TLS_AES_256_GCM_SHA384",
  TLS_CHACHA20_POLY1305_SHA256: "TLS_CHACHA20_POLY1305_SHA256",
};
const OPENSSL_GROUP: Record<KeyExchangeGroup, string> = { x25519: "X25519", secp256r1: "P-256" };
const CERTS = ["ecdsa-p256", "ed25519", "rsa", "rsa-pss"] as const;

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill();
});

/** Starts `openssl s_server` on an ephemeral loopback port and waits (bounded) for its ACCEPT line. */
async function startOpensslServer(args: string[]): Promise<number> {
  const child = spawn("openssl", ["s_server", "-accept", "127.0.0.1:0", "-tls1_3", "-naccept", "1", "-rev", ...args], { cwd: FIXTURES });
  children.push(child);
  let output = "";
  return await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`openssl s_server did not start: ${output}`)), DEADLINE_MS);
    const onData = (d: Buffer): void => {
      output += d.toString();
      const m = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(output);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (d: Buffer) => { output += d.toString(); });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`openssl s_server exited ${code}: ${output}`)); });
  });
}

async function connectTo(port: number): Promise<Socket> {
  return await new Promise<Socket>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => resolve(socket));
    socket.once("error", reject);
  });
}

function ourClient(overrides: Partial<TlsConfig>): TlsSession {
  return new TlsSession({
    role: "client", alpnProtocols: ["h3"], transportParameters: Buffer.alloc(0), serverName: "server.test",
    ca: [readFileSync(join(FIXTURES, "ca.cert.pem"), "utf8")], verificationTimeUnixMs: Date.now(),
    testHooks: { allowMissingTransportParameters_TEST_ONLY: true }, ...overrides,
  });
}

describe.skipIf(!hasOpenssl)("interop: our client against openssl s_server (needs the openssl CLI)", () => {
  for (const suite of Object.keys(OPENSSL_SUITE) as CipherSuiteName[]) {
    for (const group of ["x25519", "secp256r1"] as KeyExchangeGroup[]) {
      it(`completes with ${suite}, ${group}, ECDSA P-256 and exchanges application data`, async () => {
        const port = await startOpensslServer(["-cert", "ecdsa-p256.cert.pem", "-key", "ecdsa-p256.key.pem", "-alpn", "h3",
          "-ciphersuites", OPENSSL_SUITE[suite], "-groups", OPENSSL_GROUP[group]]);
        const socket = await connectTo(port);
        const client = ourClient({ cipherSuites: [suite], groups: [group] });
        const reply = await runOverRecords(client, socket, "hello openssl\n");
        socket.destroy();
        expect(client.handshakeComplete).toBe(true);
        expect(client.alpn).toBe("h3");
        expect(client.cipherSuite?.name).toBe(suite);
        expect(reply).toContain("lssnepo olleh"); // -rev echoes the line reversed
      });
    }
  }

  for (const cert of CERTS) {
    it(`verifies openssl's ${cert} certificate and CertificateVerify`, async () => {
      const port = await startOpensslServer(["-cert", `${cert}.cert.pem`, "-key", `${cert}.key.pem`, "-alpn", "h3"]);
      const socket = await connectTo(port);
      const client = ourClient({});
      const reply = await runOverRecords(client, socket, "abc\n");
      socket.destroy();
      expect(client.handshakeComplete).toBe(true);
      expect(reply).toContain("cba");
    });
  }

  it("answers openssl's HelloRetryRequest (we share x25519, it accepts only P-256)", async () => {
    const port = await startOpensslServer(["-cert", "ecdsa-p256.cert.pem", "-key", "ecdsa-p256.key.pem", "-alpn", "h3", "-groups", "P-256"]);
    const socket = await connectTo(port);
    const client = ourClient({ groups: ["x25519", "secp256r1"] });
    const reply = await runOverRecords(client, socket, "retry\n");
    socket.destroy();
    expect(client.handshakeComplete).toBe(true);
    expect(reply).toContain("yrter");
  });
});

describe.skipIf(!hasOpenssl)("interop: openssl s_client against our server (needs the openssl CLI)", () => {
  for (const cert of CERTS) {
    for (const group of ["X25519", "P-256"]) {
      it(`s_client verifies our ${cert} server (${group}) and receives application data`, async () => {
        const server = new TlsSession({
          role: "server", alpnProtocols: ["h3"], transportParameters: Buffer.alloc(0),
          certificateChain: [readFileSync(join(FIXTURES, `${cert}.cert.pem`), "utf8")],
          privateKey: readFileSync(join(FIXTURES, `${cert}.key.pem`), "utf8"),
          groups: ["secp256r1", "x25519"], testHooks: { allowMissingTransportParameters_TEST_ONLY: true },
        });
        const listener = createServer();
        await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
        const port = (listener.address() as { port: number }).port;
        const accepted = new Promise<Socket>((resolve) => listener.once("connection", resolve));
        const child = spawn("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-tls1_3", "-alpn", "h3", "-groups", group,
          "-CAfile", "ca.cert.pem", "-verify_return_error", "-verify_hostname", "server.test", "-servername", "server.test", "-ign_eof"], { cwd: FIXTURES });
        children.push(child);
        let output = "";
        child.stdout!.on("data", (d: Buffer) => { output += d.toString(); });
        child.stderr!.on("data", (d: Buffer) => { output += d.toString(); });
        const socket = await accepted;
        try {
          // Our side: serve the handshake; s_client sends nothing after Finished, so reading stops at the deadline.
          await runServerOverRecords(server, socket, "from our server\n");
          expect(server.handshakeComplete).toBe(true);
          const deadline = Date.now() + DEADLINE_MS;
          while (!output.includes("from our server") && Date.now() < deadline) {
            await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()).once("close", () => resolve()));
          }
          expect(output).toContain("Verify return code: 0 (ok)");
          expect(output).toContain("ALPN protocol: h3");
          expect(output).toContain("from our server");
        } finally {
          socket.destroy();
          listener.close();
        }
      });
    }
  }
});

/** Server side of runOverRecords: completes the handshake, then sends one application data record. */
async function runServerOverRecords(session: TlsSession, socket: Socket, send: string): Promise<void> {
  const reader = new RecordReader(socket);
  const read = new Map<EncryptionLevel, RecordProtection>();
  const write = new Map<EncryptionLevel, RecordProtection>();
  let readLevel: EncryptionLevel = "initial";
  const flush = (): void => {
    for (let out = session.pollOutput(); out; out = session.pollOutput()) {
      // Secrets for a level arrive before output at that level; take what exists so far.
      for (let s = session.pollSecret(); s; s = session.pollSecret()) (s.direction === "read" ? read : write).set(s.level, new RecordProtection(s.suite, s.secret));
      if (out.level === "initial") {
        const header = Buffer.from([RECORD.handshake, 3, 3, 0, 0]);
        header.writeUInt16BE(out.data.length, 3);
        socket.write(Buffer.concat([header, out.data]));
      } else {
        socket.write(write.get(out.level)!.seal(RECORD.handshake, out.data));
      }
    }
    for (let s = session.pollSecret(); s; s = session.pollSecret()) (s.direction === "read" ? read : write).set(s.level, new RecordProtection(s.suite, s.secret));
    if (readLevel === "initial" && read.has("handshake")) readLevel = "handshake";
  };
  for (let i = 0; i < 32 && !session.handshakeComplete; i++) {
    const record = await reader.next();
    if (record.type === RECORD.change_cipher_spec) continue;
    if (record.type === RECORD.handshake) session.receive("initial", record.body);
    else if (record.type === RECORD.application_data) {
      const inner = read.get(readLevel)!.open(record.header, record.body);
      if (inner.contentType === RECORD.alert) throw new Error(`peer sent alert ${inner.content[1]}`);
      session.receive(readLevel, inner.content);
    } else throw new Error(`peer sent record type ${record.type}`);
    flush();
  }
  socket.write(write.get("application")!.seal(RECORD.application_data, Buffer.from(send)));
}
