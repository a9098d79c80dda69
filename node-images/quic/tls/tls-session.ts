/**
 * A sans-I/O TLS 1.3 handshake (RFC 8446) for QUIC (RFC 9001 §4): handshake messages in and out per encryption
 * level, traffic secrets out as they become available. No record layer, no ChangeCipherSpec, no 0-RTT, no PSK.
 */
import { X509Certificate, createPrivateKey, randomBytes, timingSafeEqual, type KeyObject } from "node:crypto";
import type { EncryptionLevel } from "../crypto/levels.ts";
import { CIPHER_SUITES, cipherSuiteByCode, type CipherSuite, type CipherSuiteName } from "../crypto/cipher-suites.ts";
import { parseCertificates, receivedChain, receivedLeafPublicKey, verifyReceivedChain, type ReceivedChain } from "./certificate-verification.ts";
import {
  EXTENSION_TYPE, HANDSHAKE_HEADER_LENGTH, HANDSHAKE_TYPE, HELLO_RETRY_REQUEST_RANDOM, TLS13_VERSION,
  encodeCertificate, encodeCertificateVerify, encodeClientHello, encodeEncryptedExtensions, encodeFinished, encodeServerHello,
  parseAlpn, parseCertificate, parseCertificateVerify, parseClientHello, parseClientKeyShares, parseClientSupportedVersions,
  parseEncryptedExtensions, parseFinished, parseHelloRetryRequestKeyShare, parseServerHello, parseServerKeyShare,
  parseServerName, parseServerSupportedVersion, parseUint16List, writeAlpn, writeServerName,
  type ClientHello, type ExtensionWriter, type Extensions, type ServerHello,
} from "./handshake-messages.ts";
import { NAMED_GROUP, generateKeyShare, groupByCode, type KeyExchangeGroup, type KeyShare } from "./key-exchange.ts";
import { formatKeyLogLine, keyLogLabel } from "./key-log.ts";
import { deriveSecret, finishedVerifyData, handshakeSecret, masterSecret } from "./key-schedule.ts";
import {
  SUPPORTED_SIGNATURE_SCHEMES, certificateVerifyContent, schemeFitsKey, schemesForKey, signCertificateVerify, verifyCertificateVerify,
} from "./signature-schemes.ts";
import { TlsAlertError, TlsConfigError } from "./tls-alert.ts";
import { TlsReader } from "./tls-reader.ts";
import { TranscriptHash } from "./transcript-hash.ts";

export { TlsAlertError, TlsConfigError } from "./tls-alert.ts";
export type { KeyExchangeGroup } from "./key-exchange.ts";

/**
 * A copy with memory of its own for values the session keeps: Buffer.from() of a small value is a slice
 * of a shared 64 KiB pool that one long-lived slice keeps alive (bench/quic-memory.bench.ts).
 */
function ownBytes(src: Uint8Array): Buffer {
  return Buffer.from(Uint8Array.prototype.slice.call(src).buffer);
}

export interface TlsConfig {
  role: "client" | "server";
  /** Client: offered in order; server: accepted, in server preference order. */
  alpnProtocols: string[];
  /** Opaque bytes sent in the quic_transport_parameters extension (0x39, RFC 9001 §8.2). */
  transportParameters: Uint8Array;
  /** Client SNI; also the name checked in the server certificate. */
  serverName?: string;
  /** Preference order; default all three, AES-128-GCM first. */
  cipherSuites?: CipherSuiteName[];
  /** Client: the first gets a key share; server: acceptable groups (HelloRetryRequest when the client's share is not). */
  groups?: KeyExchangeGroup[];
  /** Server: PEM or DER, leaf first. */
  certificateChain?: (string | Uint8Array)[];
  /** Server. */
  privateKey?: string | KeyObject;
  /** Client: trust anchors. */
  ca?: (string | Uint8Array)[];
  /**
   * Client: wall-clock time (Unix ms) against which certificate validity periods are checked. The core has no
   * clock, so the endpoint passes the current wall-clock time; when absent, validity periods are NOT checked (signatures and name are).
   */
  verificationTimeUnixMs?: number;
  insecureSkipCertificateVerification_DANGEROUS_LAB_ONLY?: boolean;
  /**
   * Called with one NSS key log line per traffic secret (SSLKEYLOGFILE format, see key-log.ts), so that
   * Wireshark can decrypt captures. The core does no I/O: the endpoint appends the lines to the file.
   */
  keyLog?: (line: string) => void;
  testHooks?: {
    random?: Uint8Array;
    privateKeys?: Partial<Record<KeyExchangeGroup, Uint8Array>>;
    /** Interop tests against plain TLS 1.3 peers (openssl s_server/s_client) only: tolerate a missing 0x39 extension. */
    allowMissingTransportParameters_TEST_ONLY?: boolean;
  };
}

export interface TlsSecretEvent { level: EncryptionLevel; direction: "read" | "write"; secret: Buffer; suite: CipherSuite }

const DEFAULT_SUITES: CipherSuiteName[] = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];
const DEFAULT_GROUPS: KeyExchangeGroup[] = ["x25519", "secp256r1"];
/** Largest handshake message we buffer; a certificate chain of a few RSA certificates fits comfortably. */
const MAX_HANDSHAKE_MESSAGE_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);

type ClientState = "start" | "waitServerHello" | "waitEncryptedExtensions" | "waitCertificate" | "waitCertificateVerify" | "waitFinished" | "connected";
type ServerState = "start" | "waitClientHello2" | "waitFinished" | "connected";

interface ServerCredentials {
  chainDer: Buffer[];
  privateKey: KeyObject;
  /** Signature schemes the key can make, best first. */
  schemes: number[];
  /** The config's privateKey as given, to tell cache entries apart. */
  keySource: string | KeyObject;
}

// Parsed once per certificate chain and key, so a busy server does not re-parse PEM per handshake: by array
// identity first, then (for callers that rebuild the config per connection) by the PEM text, in a small map.
const credentialsByArray = new WeakMap<object, ServerCredentials>();
const credentialsByPem = new Map<string, ServerCredentials>();
const MAX_CACHED_PEM_CREDENTIALS = 32;
const anchorCache = new WeakMap<object, X509Certificate[]>();

function serverCredentials(config: TlsConfig): ServerCredentials {
  const chain = config.certificateChain;
  const key = config.privateKey;
  if (!chain || chain.length === 0 || key === undefined) throw new TlsConfigError("server TlsConfig needs certificateChain and privateKey");
  const byArray = credentialsByArray.get(chain);
  if (byArray && byArray.keySource === key) return byArray;
  const pemKey = typeof key === "string" && chain.every((c) => typeof c === "string") ? `${key}\n${chain.join("\n")}` : undefined;
  const byPem = pemKey === undefined ? undefined : credentialsByPem.get(pemKey);
  if (byPem) {
    credentialsByArray.set(chain, byPem);
    return byPem;
  }
  let privateKey: KeyObject;
  try {
    privateKey = typeof key === "string" ? createPrivateKey(key) : key;
  } catch (err) {
    throw new TlsConfigError(`privateKey: ${(err as Error).message}`);
  }
  const schemes = schemesForKey(privateKey);
  if (schemes.length === 0) throw new TlsConfigError(`privateKey of type ${privateKey.asymmetricKeyType} has no supported signature scheme`);
  const chainDer = parseCertificates(chain, "certificateChain").map((c) => c.raw);
  const creds: ServerCredentials = { chainDer, privateKey, schemes, keySource: key };
  credentialsByArray.set(chain, creds);
  if (pemKey !== undefined) {
    if (credentialsByPem.size >= MAX_CACHED_PEM_CREDENTIALS) credentialsByPem.delete(credentialsByPem.keys().next().value!);
    credentialsByPem.set(pemKey, creds);
  }
  return creds;
}

const anchorsByPem = new Map<string, X509Certificate[]>();

function trustAnchors(ca: (string | Uint8Array)[]): X509Certificate[] {
  let anchors = anchorCache.get(ca);
  if (anchors) return anchors;
  const pemKey = ca.every((c) => typeof c === "string") ? ca.join("\n") : undefined;
  anchors = pemKey === undefined ? undefined : anchorsByPem.get(pemKey);
  if (!anchors) {
    anchors = parseCertificates(ca, "ca");
    if (pemKey !== undefined) {
      if (anchorsByPem.size >= MAX_CACHED_PEM_CREDENTIALS) anchorsByPem.delete(anchorsByPem.keys().next().value!);
      anchorsByPem.set(pemKey, anchors);
    }
  }
  anchorCache.set(ca, anchors);
  return anchors;
}

export class TlsSession {
  private readonly config: TlsConfig;
  private readonly role: "client" | "server";
  private readonly suites: CipherSuite[];
  private readonly groups: KeyExchangeGroup[];
  private clientState: ClientState = "start";
  private serverState: ServerState = "start";

  /** Incoming CRYPTO bytes per level not yet forming a whole message. */
  private readonly inbound: Record<EncryptionLevel, Buffer> = { initial: EMPTY, handshake: EMPTY, application: EMPTY };
  /** Messages to send, grouped into consecutive runs per level; joined once when polled. */
  private readonly outbound: { level: EncryptionLevel; messages: Buffer[] }[] = [];
  private readonly secrets: TlsSecretEvent[] = [];
  private failed: TlsAlertError | undefined;

  private suite: CipherSuite | undefined;
  private transcript: TranscriptHash | undefined;
  private keyShare: KeyShare | undefined;
  private random: Buffer | undefined;
  private peerClientRandom: Buffer | undefined;
  /** Client: ClientHello1 bytes until the hash is known (ServerHello or HelloRetryRequest). */
  private pendingClientHello: Buffer | undefined;
  private helloRetried = false;
  /** Server: group and suite chosen in the HelloRetryRequest, which ClientHello2 must honour. */
  private retryGroup: KeyExchangeGroup | undefined;
  private clientHandshakeSecret: Buffer | undefined;
  private serverHandshakeSecret: Buffer | undefined;
  private clientApplicationSecret: Buffer | undefined;
  private peerChain: ReceivedChain | undefined;
  private negotiatedAlpn: string | undefined;
  private peerParams: Buffer | undefined;
  private complete = false;
  private readonly credentials: ServerCredentials | undefined;

  constructor(config: TlsConfig) {
    this.config = config;
    this.role = config.role;
    this.suites = (config.cipherSuites ?? DEFAULT_SUITES).map((n) => CIPHER_SUITES[n]);
    this.groups = config.groups ?? DEFAULT_GROUPS;
    if (this.suites.length === 0) throw new TlsConfigError("cipherSuites is empty");
    if (this.groups.length === 0) throw new TlsConfigError("groups is empty");
    if (config.alpnProtocols.length === 0) throw new TlsConfigError("alpnProtocols is empty: QUIC requires ALPN (RFC 9001 §8.1)");
    if (this.role === "server") this.credentials = serverCredentials(config);
    else if (!config.insecureSkipCertificateVerification_DANGEROUS_LAB_ONLY && (!config.ca || config.ca.length === 0)) {
      throw new TlsConfigError("client TlsConfig needs ca (or insecureSkipCertificateVerification_DANGEROUS_LAB_ONLY)");
    }
  }

  get handshakeComplete(): boolean { return this.complete; }
  get peerTransportParameters(): Buffer | undefined { return this.peerParams; }
  get alpn(): string | undefined { return this.negotiatedAlpn; }
  get cipherSuite(): CipherSuite | undefined { return this.suite; }
  get peerCertificates(): X509Certificate[] { return this.peerChain ? [...this.peerChain.chain] : []; }

  start(): void {
    if (this.role !== "client" || this.clientState !== "start") return;
    this.random = this.config.testHooks?.random ? Buffer.from(this.config.testHooks.random) : randomBytes(32);
    this.keyShare = this.newKeyShare(this.groups[0]!);
    const clientHello = this.encodeClientHello(undefined);
    this.pendingClientHello = clientHello;
    this.send("initial", clientHello);
    this.clientState = "waitServerHello";
  }

  receive(level: EncryptionLevel, data: Uint8Array): void {
    if (this.failed) throw this.failed;
    try {
      const pending = this.inbound[level];
      const buffer = pending.length === 0 ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.concat([pending, data]);
      let offset = 0;
      // Each iteration consumes one whole message, so the loop is bounded by the bytes received.
      while (buffer.length - offset >= HANDSHAKE_HEADER_LENGTH) {
        const length = buffer.readUIntBE(offset + 1, 3);
        if (length > MAX_HANDSHAKE_MESSAGE_BYTES) throw new TlsAlertError("decode_error", `handshake message of ${length} bytes is too large`);
        const end = offset + HANDSHAKE_HEADER_LENGTH + length;
        if (end > buffer.length) break;
        const message = buffer.subarray(offset, end);
        offset = end;
        this.handleMessage(level, message);
      }
      if (offset === buffer.length) {
        this.inbound[level] = EMPTY;
      } else {
        // RFC 8446 §5.1: a message must not span a key change; a partial one at a finished level is unexpected.
        if (!this.acceptsLevel(level)) throw new TlsAlertError("unexpected_message", `handshake data at level ${level} after its last message`);
        // Keep only the incomplete tail, copied so the caller's buffer can be reused.
        this.inbound[level] = Buffer.from(buffer.subarray(offset));
      }
    } catch (err) {
      // Anything but an alert is our bug; it still closes the connection as internal_error, with the cause kept.
      this.failed = err instanceof TlsAlertError ? err : new TlsAlertError("internal_error", `unexpected failure: ${(err as Error).message}`, { cause: err });
      throw this.failed;
    }
  }

  pollOutput(): { level: EncryptionLevel; data: Buffer } | undefined {
    const run = this.outbound.shift();
    if (!run) return undefined;
    return { level: run.level, data: run.messages.length === 1 ? run.messages[0]! : Buffer.concat(run.messages) };
  }

  pollSecret(): TlsSecretEvent | undefined {
    return this.secrets.shift();
  }

  // ---- plumbing ----

  private send(level: EncryptionLevel, message: Buffer): void {
    const last = this.outbound[this.outbound.length - 1];
    if (last && last.level === level) last.messages.push(message);
    else this.outbound.push({ level, messages: [message] });
  }

  private emitSecret(level: EncryptionLevel, direction: "read" | "write", secret: Buffer): void {
    this.secrets.push({ level, direction, secret, suite: this.suite! });
    const keyLog = this.config.keyLog;
    const label = keyLog && this.clientRandom ? keyLogLabel(this.config.role, level, direction) : undefined;
    if (label) keyLog!(formatKeyLogLine(label, this.clientRandom!, secret));
  }

  /** ClientHello.random: ours as a client, the peer's as a server (the key log's handle on the session). */
  get clientRandom(): Buffer | undefined {
    return this.config.role === "client" ? this.random : this.peerClientRandom;
  }

  private newKeyShare(group: KeyExchangeGroup): KeyShare {
    return generateKeyShare(group, this.config.testHooks?.privateKeys?.[group]);
  }

  /** Whether more handshake messages may still arrive at `level` in the current state. */
  private acceptsLevel(level: EncryptionLevel): boolean {
    if (this.role === "client") {
      const s = this.clientState;
      if (level === "initial") return s === "start" || s === "waitServerHello";
      if (level === "handshake") return s !== "start" && s !== "waitServerHello" && s !== "connected";
      return s === "connected"; // NewSessionTicket
    }
    const s = this.serverState;
    if (level === "initial") return s === "start" || s === "waitClientHello2";
    if (level === "handshake") return s === "waitFinished";
    return false;
  }

  private handleMessage(level: EncryptionLevel, message: Buffer): void {
    const type = message[0]!;
    const body = message.subarray(HANDSHAKE_HEADER_LENGTH);
    if (this.role === "client") this.clientHandle(level, type, body, message);
    else this.serverHandle(level, type, body, message);
  }

  private unexpected(level: EncryptionLevel, type: number, state: string): never {
    throw new TlsAlertError("unexpected_message", `handshake message type ${type} at level ${level} in state ${state}`);
  }

  // ---- client (RFC 8446 §4.1.2 - §4.4.4) ----

  private encodeClientHello(cookie: Buffer | undefined): Buffer {
    const config = this.config;
    const keyShare = this.keyShare!;
    const extensions: ExtensionWriter[] = [];
    const name = config.serverName;
    // RFC 6066 §3: literal IP addresses are not sent in server_name.
    if (name && !/^\d{1,3}(\.\d{1,3}){3}$/.test(name) && !name.includes(":")) extensions.push([EXTENSION_TYPE.server_name, (w) => writeServerName(w, name)]);
    extensions.push(
      [EXTENSION_TYPE.supported_groups, (w) => w.vector(2, (v) => { for (const g of this.groups) v.u16(NAMED_GROUP[g]); })],
      [EXTENSION_TYPE.signature_algorithms, (w) => w.vector(2, (v) => { for (const s of SUPPORTED_SIGNATURE_SCHEMES) v.u16(s); })],
      [EXTENSION_TYPE.application_layer_protocol_negotiation, (w) => writeAlpn(w, config.alpnProtocols)],
      [EXTENSION_TYPE.supported_versions, (w) => w.vector(1, (v) => v.u16(TLS13_VERSION))],
      [EXTENSION_TYPE.key_share, (w) => w.vector(2, (v) => v.u16(NAMED_GROUP[keyShare.group]).vector(2, (k) => k.bytes(keyShare.publicKey)))],
      [EXTENSION_TYPE.quic_transport_parameters, (w) => w.bytes(config.transportParameters)],
    );
    if (cookie) extensions.push([EXTENSION_TYPE.cookie, (w) => w.bytes(cookie)]);
    return encodeClientHello(this.random!, this.suites.map((s) => s.code), extensions);
  }

  private clientHandle(level: EncryptionLevel, type: number, body: Buffer, message: Buffer): void {
    const state = this.clientState;
    if (level === "initial" && type === HANDSHAKE_TYPE.server_hello && state === "waitServerHello") return this.clientOnServerHello(body, message);
    if (level === "handshake") {
      if (type === HANDSHAKE_TYPE.encrypted_extensions && state === "waitEncryptedExtensions") return this.clientOnEncryptedExtensions(body, message);
      if (type === HANDSHAKE_TYPE.certificate && state === "waitCertificate") return this.clientOnCertificate(body, message);
      if (type === HANDSHAKE_TYPE.certificate_verify && state === "waitCertificateVerify") return this.clientOnCertificateVerify(body, message);
      if (type === HANDSHAKE_TYPE.finished && state === "waitFinished") return this.clientOnFinished(body, message);
    }
    // RFC 9001 §4.1.3 / RFC 8446 §4.6.1: NewSessionTicket after the handshake is allowed; we do not resume, so drop it.
    if (level === "application" && type === HANDSHAKE_TYPE.new_session_ticket && state === "connected") return;
    this.unexpected(level, type, state);
  }

  private clientOnServerHello(body: Buffer, message: Buffer): void {
    const hello = parseServerHello(body);
    this.checkServerHelloCommon(hello);
    const suite = cipherSuiteByCode(hello.cipherSuite);
    if (!suite || !this.suites.includes(suite)) throw new TlsAlertError("illegal_parameter", `server chose cipher suite 0x${hello.cipherSuite.toString(16)} we did not offer`);
    if (this.helloRetried && suite !== this.suite) throw new TlsAlertError("illegal_parameter", "ServerHello cipher suite differs from the HelloRetryRequest's");
    this.suite = suite;
    if (hello.isHelloRetryRequest) return this.clientOnHelloRetryRequest(hello, message);

    for (const type of hello.extensions.keys()) {
      if (type !== EXTENSION_TYPE.supported_versions && type !== EXTENSION_TYPE.key_share) {
        throw new TlsAlertError(type === EXTENSION_TYPE.pre_shared_key ? "illegal_parameter" : "unsupported_extension", `ServerHello carries extension ${type}`);
      }
    }
    const keyShareData = hello.extensions.get(EXTENSION_TYPE.key_share);
    if (!keyShareData) throw new TlsAlertError("missing_extension", "ServerHello without key_share");
    const share = parseServerKeyShare(keyShareData);
    if (share.group !== NAMED_GROUP[this.keyShare!.group]) throw new TlsAlertError("illegal_parameter", `ServerHello key_share group ${share.group} was not offered`);
    const shared = this.keyShare!.computeSharedSecret(share.keyExchange);

    if (!this.transcript) this.transcript = new TranscriptHash(suite.hash);
    if (this.pendingClientHello) this.transcript.update(this.pendingClientHello);
    this.pendingClientHello = undefined;
    this.transcript.update(message);
    this.deriveHandshakeSecrets(shared);
    this.emitSecret("handshake", "read", this.serverHandshakeSecret!);
    this.emitSecret("handshake", "write", this.clientHandshakeSecret!);
    this.keyShare = undefined;
    this.clientState = "waitEncryptedExtensions";
  }

  /** Checks shared by ServerHello and HelloRetryRequest: version and session id echo. */
  private checkServerHelloCommon(hello: ServerHello): void {
    const versionData = hello.extensions.get(EXTENSION_TYPE.supported_versions);
    // RFC 8446 §4.1.3: without supported_versions the server negotiated TLS 1.2 or older, which QUIC forbids.
    if (!versionData) throw new TlsAlertError("protocol_version", "ServerHello without supported_versions (not TLS 1.3)");
    const version = parseServerSupportedVersion(versionData);
    if (version !== TLS13_VERSION) throw new TlsAlertError("illegal_parameter", `server selected version 0x${version.toString(16)}`);
    if (hello.legacySessionIdEcho.length !== 0) throw new TlsAlertError("illegal_parameter", "legacy_session_id_echo does not match ours (empty)");
  }

  /** RFC 8446 §4.1.4: answer a HelloRetryRequest with a new key share (and the cookie), once. */
  private clientOnHelloRetryRequest(hello: ServerHello, message: Buffer): void {
    if (this.helloRetried) throw new TlsAlertError("unexpected_message", "second HelloRetryRequest");
    this.helloRetried = true;
    for (const type of hello.extensions.keys()) {
      if (type !== EXTENSION_TYPE.supported_versions && type !== EXTENSION_TYPE.key_share && type !== EXTENSION_TYPE.cookie) {
        throw new TlsAlertError("unsupported_extension", `HelloRetryRequest carries extension ${type}`);
      }
    }
    const keyShareData = hello.extensions.get(EXTENSION_TYPE.key_share);
    const cookie = hello.extensions.get(EXTENSION_TYPE.cookie);
    // RFC 8446 §4.1.4: a HelloRetryRequest that would not change the ClientHello is illegal_parameter.
    if (!keyShareData && !cookie) throw new TlsAlertError("illegal_parameter", "HelloRetryRequest changes nothing");
    if (keyShareData) {
      const groupCode = parseHelloRetryRequestKeyShare(keyShareData);
      const group = groupByCode(groupCode);
      if (!group || !this.groups.includes(group)) throw new TlsAlertError("illegal_parameter", `HelloRetryRequest selected group ${groupCode} we did not offer`);
      if (group === this.keyShare!.group) throw new TlsAlertError("illegal_parameter", "HelloRetryRequest selected the group we already sent a share for");
      this.keyShare = this.newKeyShare(group);
    }
    if (cookie) {
      // RFC 8446 §4.2.2: opaque cookie<1..2^16-1>; echoed as received.
      const r = new TlsReader(cookie);
      r.vector(2, "cookie", 1);
      r.expectEnd("cookie");
    }
    this.transcript = TranscriptHash.afterHelloRetryRequest(this.suite!.hash, this.pendingClientHello!);
    this.pendingClientHello = undefined;
    this.transcript.update(message);
    const clientHello2 = this.encodeClientHello(cookie ? Buffer.from(cookie) : undefined);
    this.transcript.update(clientHello2);
    this.send("initial", clientHello2);
  }

  private clientOnEncryptedExtensions(body: Buffer, message: Buffer): void {
    const extensions = parseEncryptedExtensions(body);
    const allowed: readonly number[] = [
      EXTENSION_TYPE.server_name, EXTENSION_TYPE.supported_groups,
      EXTENSION_TYPE.application_layer_protocol_negotiation, EXTENSION_TYPE.quic_transport_parameters,
    ];
    for (const type of extensions.keys()) {
      if (!allowed.includes(type)) {
        const known = (Object.values(EXTENSION_TYPE) as number[]).includes(type);
        throw new TlsAlertError(known ? "illegal_parameter" : "unsupported_extension", `EncryptedExtensions carries extension ${type}`);
      }
    }
    const alpnData = extensions.get(EXTENSION_TYPE.application_layer_protocol_negotiation);
    // RFC 9001 §8.1: a server that does not negotiate ALPN leaves the client to close with no_application_protocol.
    if (!alpnData) throw new TlsAlertError("no_application_protocol", "server selected no application protocol");
    const selected = parseAlpn(alpnData);
    if (selected.length !== 1 || !this.config.alpnProtocols.includes(selected[0]!)) {
      throw new TlsAlertError("illegal_parameter", `server selected ALPN ${JSON.stringify(selected)} which we did not offer`);
    }
    this.takeTransportParameters(extensions, "EncryptedExtensions");
    this.negotiatedAlpn = selected[0];
    this.transcript!.update(message);
    this.clientState = "waitCertificate";
  }

  private takeTransportParameters(extensions: Extensions, where: string): void {
    const params = extensions.get(EXTENSION_TYPE.quic_transport_parameters);
    // RFC 9001 §8.2: an endpoint that does not receive the extension MUST close with missing_extension.
    if (params) this.peerParams = ownBytes(params);
    else if (!this.config.testHooks?.allowMissingTransportParameters_TEST_ONLY) throw new TlsAlertError("missing_extension", `${where} without quic_transport_parameters`);
  }

  private clientOnCertificate(body: Buffer, message: Buffer): void {
    const certificate = parseCertificate(body);
    if (certificate.certificateRequestContext.length !== 0) throw new TlsAlertError("illegal_parameter", "server Certificate with a certificate_request_context");
    // RFC 8446 §4.4.2.4: an empty server Certificate is decode_error.
    if (certificate.entries.length === 0) throw new TlsAlertError("decode_error", "server sent no certificate");
    // Parsed and path-checked once per distinct chain (certificate-verification.ts); validity and name every time.
    const received = receivedChain(certificate.entries.map((e) => e.certData));
    if (!this.config.insecureSkipCertificateVerification_DANGEROUS_LAB_ONLY) {
      const options = { trustAnchors: trustAnchors(this.config.ca ?? []), serverName: this.config.serverName, verificationTimeUnixMs: this.config.verificationTimeUnixMs };
      verifyReceivedChain(received, options);
    }
    this.peerChain = received;
    this.transcript!.update(message);
    this.clientState = "waitCertificateVerify";
  }

  private clientOnCertificateVerify(body: Buffer, message: Buffer): void {
    const cv = parseCertificateVerify(body);
    // RFC 8446 §4.4.3: the algorithm must be one the client offered.
    if (!SUPPORTED_SIGNATURE_SCHEMES.includes(cv.algorithm)) throw new TlsAlertError("illegal_parameter", `CertificateVerify uses unoffered scheme 0x${cv.algorithm.toString(16)}`);
    const publicKey = receivedLeafPublicKey(this.peerChain!);
    if (!schemeFitsKey(cv.algorithm, publicKey)) throw new TlsAlertError("illegal_parameter", `scheme 0x${cv.algorithm.toString(16)} does not fit the certificate's ${publicKey.asymmetricKeyType} key`);
    const content = certificateVerifyContent("server", this.transcript!.current());
    if (!verifyCertificateVerify(cv.algorithm, publicKey, content, cv.signature)) throw new TlsAlertError("decrypt_error", "server CertificateVerify signature does not verify");
    this.transcript!.update(message);
    this.clientState = "waitFinished";
  }

  private clientOnFinished(body: Buffer, message: Buffer): void {
    const suite = this.suite!;
    const verifyData = parseFinished(body, suite.hashLength);
    const expected = finishedVerifyData(suite, this.serverHandshakeSecret!, this.transcript!.current());
    if (!timingSafeEqual(verifyData, expected)) throw new TlsAlertError("decrypt_error", "server Finished does not verify");
    this.transcript!.update(message);
    const transcriptThroughServerFinished = this.transcript!.current();
    this.deriveApplicationSecrets(transcriptThroughServerFinished);
    this.emitSecret("application", "read", this.serverApplicationSecret!);
    const clientFinished = encodeFinished(finishedVerifyData(suite, this.clientHandshakeSecret!, transcriptThroughServerFinished));
    this.transcript!.update(clientFinished);
    this.send("handshake", clientFinished);
    this.emitSecret("application", "write", this.clientApplicationSecret!);
    this.clientState = "connected";
    this.complete = true;
    this.releaseHandshakeState();
  }

  /**
   * RFC 8446 §7.1: once both Finished are done, nothing needs the transcript or the handshake and application
   * secrets (the connection holds the 1-RTT secrets it was given, and key updates derive from those). A session
   * lives as long as its connection, so these would otherwise cost about 1 KB of heap and a native hash
   * context per connection (bench/scale-10k.bench.ts).
   */
  private releaseHandshakeState(): void {
    this.transcript = undefined;
    this.keyShare = undefined;
    this.handshakeSecretValue = undefined;
    this.clientHandshakeSecret = undefined;
    this.serverHandshakeSecret = undefined;
    this.clientApplicationSecret = undefined;
    this.serverApplicationSecret = undefined;
  }

  // ---- key schedule steps shared by both roles (RFC 8446 §7.1) ----

  private handshakeSecretValue: Buffer | undefined;
  private serverApplicationSecret: Buffer | undefined;

  private deriveHandshakeSecrets(shared: Buffer): void {
    const suite = this.suite!;
    const hs = handshakeSecret(suite, shared);
    const transcriptHash = this.transcript!.current();
    this.handshakeSecretValue = hs;
    this.clientHandshakeSecret = deriveSecret(suite, hs, "c hs traffic", transcriptHash);
    this.serverHandshakeSecret = deriveSecret(suite, hs, "s hs traffic", transcriptHash);
  }

  private deriveApplicationSecrets(transcriptThroughServerFinished: Buffer): void {
    const suite = this.suite!;
    const master = masterSecret(suite, this.handshakeSecretValue!);
    this.clientApplicationSecret = deriveSecret(suite, master, "c ap traffic", transcriptThroughServerFinished);
    this.serverApplicationSecret = deriveSecret(suite, master, "s ap traffic", transcriptThroughServerFinished);
    this.handshakeSecretValue = undefined;
  }

  // ---- server (RFC 8446 §4.1.1 - §4.4.4) ----

  private serverHandle(level: EncryptionLevel, type: number, body: Buffer, message: Buffer): void {
    const state = this.serverState;
    if (level === "initial" && type === HANDSHAKE_TYPE.client_hello && (state === "start" || state === "waitClientHello2")) {
      return this.serverOnClientHello(body, message);
    }
    if (level === "handshake" && type === HANDSHAKE_TYPE.finished && state === "waitFinished") return this.serverOnFinished(body, message);
    this.unexpected(level, type, state);
  }

  private serverOnClientHello(body: Buffer, message: Buffer): void {
    const hello = parseClientHello(body);
    // A copy: hello.random is a view into the whole ClientHello, which would otherwise live as long as the session.
    this.peerClientRandom = ownBytes(hello.random);
    const ext = hello.extensions;
    const versionsData = ext.get(EXTENSION_TYPE.supported_versions);
    if (!versionsData || !parseClientSupportedVersions(versionsData).includes(TLS13_VERSION)) {
      throw new TlsAlertError("protocol_version", "client does not offer TLS 1.3");
    }
    // RFC 8446 §4.2.11: pre_shared_key must be last; we ignore PSKs, but still insist on the rule.
    const types = [...ext.keys()];
    if (ext.has(EXTENSION_TYPE.pre_shared_key) && types[types.length - 1] !== EXTENSION_TYPE.pre_shared_key) {
      throw new TlsAlertError("illegal_parameter", "pre_shared_key is not the last extension");
    }
    const retry = this.serverState === "waitClientHello2";

    // Cipher suite: server preference among the client's (RFC 8446 §4.1.1).
    const suite = this.suites.find((s) => hello.cipherSuites.includes(s.code));
    if (!suite) throw new TlsAlertError("handshake_failure", "no cipher suite in common");
    if (retry && suite !== this.suite) throw new TlsAlertError("illegal_parameter", "ClientHello2 changed the cipher suite choice");

    const sigData = ext.get(EXTENSION_TYPE.signature_algorithms);
    // RFC 8446 §9.2: without PSK, a ClientHello must carry signature_algorithms, supported_groups and key_share.
    if (!sigData) throw new TlsAlertError("missing_extension", "ClientHello without signature_algorithms");
    const offeredSchemes = parseUint16List(sigData, "signature_algorithms");
    const groupsData = ext.get(EXTENSION_TYPE.supported_groups);
    const keyShareData = ext.get(EXTENSION_TYPE.key_share);
    if (!groupsData || !keyShareData) throw new TlsAlertError("missing_extension", "ClientHello without supported_groups or key_share");
    const clientGroups = parseUint16List(groupsData, "supported_groups");
    const shares = parseClientKeyShares(keyShareData);
    // RFC 8446 §4.2.8: each share must be for a group in supported_groups.
    for (const s of shares) if (!clientGroups.includes(s.group)) throw new TlsAlertError("illegal_parameter", `key_share for group ${s.group} not in supported_groups`);

    const alpnData = ext.get(EXTENSION_TYPE.application_layer_protocol_negotiation);
    const offeredAlpn = alpnData ? parseAlpn(alpnData) : [];
    const alpn = this.config.alpnProtocols.find((p) => offeredAlpn.includes(p));
    // RFC 9001 §8.1: no ALPN agreement is no_application_protocol.
    if (!alpn) throw new TlsAlertError("no_application_protocol", `no ALPN in common (client offered ${JSON.stringify(offeredAlpn)})`);
    const paramsData = ext.get(EXTENSION_TYPE.quic_transport_parameters);
    if (!paramsData && !this.config.testHooks?.allowMissingTransportParameters_TEST_ONLY) {
      throw new TlsAlertError("missing_extension", "ClientHello without quic_transport_parameters");
    }
    const serverNameData = ext.get(EXTENSION_TYPE.server_name);
    if (serverNameData) parseServerName(serverNameData);

    const creds = this.credentials!;
    const scheme = creds.schemes.find((s) => offeredSchemes.includes(s));
    if (scheme === undefined) throw new TlsAlertError("handshake_failure", "client accepts no signature scheme our key can make");

    // Group: the first acceptable one (server preference) the client sent a share for; otherwise retry once.
    const acceptable = this.groups.filter((g) => clientGroups.includes(NAMED_GROUP[g]));
    if (acceptable.length === 0) throw new TlsAlertError("handshake_failure", "no key exchange group in common");
    const chosen = acceptable.find((g) => shares.some((s) => s.group === NAMED_GROUP[g]));
    if (retry && chosen !== this.retryGroup) throw new TlsAlertError("illegal_parameter", "ClientHello2 lacks a key share for the group the HelloRetryRequest selected");

    this.suite = suite;
    if (!chosen) return this.serverSendHelloRetryRequest(hello, message, acceptable[0]!);

    if (!this.transcript) this.transcript = new TranscriptHash(suite.hash);
    this.transcript.update(message);
    const peerShare = shares.find((s) => s.group === NAMED_GROUP[chosen])!;
    const keyShare = this.newKeyShare(chosen);
    const shared = keyShare.computeSharedSecret(peerShare.keyExchange);
    this.negotiatedAlpn = alpn;
    if (paramsData) this.peerParams = ownBytes(paramsData);

    const random = this.config.testHooks?.random ?? randomBytes(32);
    const serverHello = encodeServerHello(random, hello.legacySessionId, suite.code, [
      [EXTENSION_TYPE.supported_versions, (w) => w.u16(TLS13_VERSION)],
      [EXTENSION_TYPE.key_share, (w) => w.u16(NAMED_GROUP[chosen]).vector(2, (k) => k.bytes(keyShare.publicKey))],
    ]);
    this.transcript.update(serverHello);
    this.send("initial", serverHello);
    this.deriveHandshakeSecrets(shared);
    this.emitSecret("handshake", "read", this.clientHandshakeSecret!);
    this.emitSecret("handshake", "write", this.serverHandshakeSecret!);

    const encryptedExtensions = encodeEncryptedExtensions([
      [EXTENSION_TYPE.application_layer_protocol_negotiation, (w) => writeAlpn(w, [alpn])],
      [EXTENSION_TYPE.quic_transport_parameters, (w) => w.bytes(this.config.transportParameters)],
    ]);
    this.transcript.update(encryptedExtensions);
    this.send("handshake", encryptedExtensions);
    const certificate = encodeCertificate(creds.chainDer);
    this.transcript.update(certificate);
    this.send("handshake", certificate);
    const signature = signCertificateVerify(scheme, creds.privateKey, certificateVerifyContent("server", this.transcript.current()));
    const certificateVerify = encodeCertificateVerify(scheme, signature);
    this.transcript.update(certificateVerify);
    this.send("handshake", certificateVerify);
    const finished = encodeFinished(finishedVerifyData(suite, this.serverHandshakeSecret!, this.transcript.current()));
    this.transcript.update(finished);
    this.send("handshake", finished);
    this.deriveApplicationSecrets(this.transcript.current());
    this.emitSecret("application", "write", this.serverApplicationSecret!);
    this.serverState = "waitFinished";
  }

  /** RFC 8446 §4.1.4: ask for a share in `group`; the transcript restarts with message_hash(ClientHello1). */
  private serverSendHelloRetryRequest(hello: ClientHello, clientHello1: Buffer, group: KeyExchangeGroup): void {
    if (this.serverState === "waitClientHello2") throw new TlsAlertError("illegal_parameter", "second ClientHello still lacks a usable key share");
    const suite = this.suite!;
    const retryRequest = encodeServerHello(HELLO_RETRY_REQUEST_RANDOM, hello.legacySessionId, suite.code, [
      [EXTENSION_TYPE.supported_versions, (w) => w.u16(TLS13_VERSION)],
      [EXTENSION_TYPE.key_share, (w) => w.u16(NAMED_GROUP[group])],
    ]);
    this.transcript = TranscriptHash.afterHelloRetryRequest(suite.hash, clientHello1);
    this.transcript.update(retryRequest);
    this.send("initial", retryRequest);
    this.retryGroup = group;
    this.serverState = "waitClientHello2";
  }

  private serverOnFinished(body: Buffer, message: Buffer): void {
    const suite = this.suite!;
    const verifyData = parseFinished(body, suite.hashLength);
    const expected = finishedVerifyData(suite, this.clientHandshakeSecret!, this.transcript!.current());
    if (!timingSafeEqual(verifyData, expected)) throw new TlsAlertError("decrypt_error", "client Finished does not verify");
    this.transcript!.update(message);
    this.emitSecret("application", "read", this.clientApplicationSecret!);
    this.serverState = "connected";
    this.complete = true;
    this.releaseHandshakeState();
  }
}
