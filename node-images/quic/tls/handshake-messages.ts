/** TLS 1.3 handshake messages (RFC 8446 §4) as QUIC carries them: unframed, no record layer (RFC 9001 §4). */
import { TlsAlertError } from "./tls-alert.ts";
import { TlsReader } from "./tls-reader.ts";
import { TlsWriter } from "./tls-writer.ts";

/** RFC 8446 §4: HandshakeType. */
export const HANDSHAKE_TYPE = {
  client_hello: 1,
  server_hello: 2,
  new_session_ticket: 4,
  end_of_early_data: 5,
  encrypted_extensions: 8,
  certificate: 11,
  certificate_request: 13,
  certificate_verify: 15,
  finished: 20,
  key_update: 24,
  message_hash: 254,
} as const;

/** RFC 8446 §4.2 ExtensionType, plus RFC 9001 §8.2 quic_transport_parameters. */
export const EXTENSION_TYPE = {
  server_name: 0,
  supported_groups: 10,
  signature_algorithms: 13,
  application_layer_protocol_negotiation: 16,
  pre_shared_key: 41,
  early_data: 42,
  supported_versions: 43,
  cookie: 44,
  psk_key_exchange_modes: 45,
  key_share: 51,
  quic_transport_parameters: 0x39,
} as const;

export const TLS13_VERSION = 0x0304;
export const LEGACY_VERSION = 0x0303;

/** RFC 8446 §4.1.3: the ServerHello.random that marks a HelloRetryRequest (SHA-256 of "HelloRetryRequest"). */
export const HELLO_RETRY_REQUEST_RANDOM = Buffer.from("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c", "hex");

/** Per-handshake header: type(1) + uint24 length (RFC 8446 §4). */
export const HANDSHAKE_HEADER_LENGTH = 4;

export type Extensions = Map<number, Buffer>;

export interface ClientHello {
  random: Buffer;
  legacySessionId: Buffer;
  cipherSuites: number[];
  extensions: Extensions;
}

export interface ServerHello {
  random: Buffer;
  legacySessionIdEcho: Buffer;
  cipherSuite: number;
  extensions: Extensions;
  isHelloRetryRequest: boolean;
}

export interface CertificateEntry {
  certData: Buffer;
  extensions: Buffer;
}

export interface CertificateMessage {
  certificateRequestContext: Buffer;
  entries: CertificateEntry[];
}

export interface CertificateVerify {
  algorithm: number;
  signature: Buffer;
}

export interface KeyShareEntry {
  group: number;
  keyExchange: Buffer;
}

// ---- framing ----

/** Wraps a body into a handshake message: msg_type, uint24 length, body (RFC 8446 §4). */
export function encodeHandshake(type: number, body: (w: TlsWriter) => void, sizeHint = 512): Buffer {
  const w = new TlsWriter(sizeHint);
  w.u8(type).vector(3, body);
  return Buffer.from(w.finish());
}

// ---- extensions ----

/** RFC 8446 §4.2: Extension extensions<..>; a repeated type is illegal_parameter. */
export function parseExtensions(r: TlsReader, what: string): Extensions {
  const extensions: Extensions = new Map();
  const block = r.subReader(2, `${what} extensions`);
  while (block.remaining > 0) {
    const type = block.u16(`${what} extension type`);
    const data = block.vector(2, `${what} extension ${type}`);
    if (extensions.has(type)) throw new TlsAlertError("illegal_parameter", `${what} repeats extension ${type}`);
    extensions.set(type, data);
  }
  return extensions;
}

function writeExtensions(w: TlsWriter, extensions: [number, (w: TlsWriter) => void][]): void {
  w.vector(2, (block) => {
    for (const [type, body] of extensions) block.u16(type).vector(2, body);
  });
}

export type ExtensionWriter = [type: number, body: (w: TlsWriter) => void];

// ---- ClientHello (RFC 8446 §4.1.2) ----

export function encodeClientHello(random: Uint8Array, cipherSuites: number[], extensions: ExtensionWriter[]): Buffer {
  return encodeHandshake(HANDSHAKE_TYPE.client_hello, (w) => {
    w.u16(LEGACY_VERSION).bytes(random);
    w.u8(0); // legacy_session_id: empty, no middlebox compatibility mode in QUIC (RFC 9001 §8.4)
    w.vector(2, (v) => { for (const s of cipherSuites) v.u16(s); });
    w.u8(1).u8(0); // legacy_compression_methods = [null]
    writeExtensions(w, extensions);
  });
}

export function parseClientHello(body: Buffer): ClientHello {
  const r = new TlsReader(body);
  const legacyVersion = r.u16("ClientHello legacy_version");
  if (legacyVersion !== LEGACY_VERSION) throw new TlsAlertError("protocol_version", `ClientHello legacy_version 0x${legacyVersion.toString(16)}`);
  const random = r.bytesView(32, "ClientHello random");
  const legacySessionId = r.vector(1, "ClientHello legacy_session_id");
  if (legacySessionId.length > 32) throw new TlsAlertError("decode_error", "legacy_session_id longer than 32 bytes");
  const suites = r.subReader(2, "ClientHello cipher_suites", 2);
  const cipherSuites: number[] = [];
  while (suites.remaining > 0) cipherSuites.push(suites.u16("cipher suite"));
  const compression = r.vector(1, "ClientHello legacy_compression_methods", 1);
  // RFC 8446 §4.1.2: exactly one byte, set to zero.
  if (compression.length !== 1 || compression[0] !== 0) throw new TlsAlertError("illegal_parameter", "legacy_compression_methods must be [0]");
  const extensions = parseExtensions(r, "ClientHello");
  r.expectEnd("ClientHello");
  return { random, legacySessionId, cipherSuites, extensions };
}

// ---- ServerHello / HelloRetryRequest (RFC 8446 §4.1.3, §4.1.4) ----

export function encodeServerHello(random: Uint8Array, legacySessionIdEcho: Uint8Array, cipherSuite: number, extensions: ExtensionWriter[]): Buffer {
  return encodeHandshake(HANDSHAKE_TYPE.server_hello, (w) => {
    w.u16(LEGACY_VERSION).bytes(random);
    w.vector(1, (v) => v.bytes(legacySessionIdEcho));
    w.u16(cipherSuite).u8(0);
    writeExtensions(w, extensions);
  });
}

export function parseServerHello(body: Buffer): ServerHello {
  const r = new TlsReader(body);
  const legacyVersion = r.u16("ServerHello legacy_version");
  if (legacyVersion !== LEGACY_VERSION) throw new TlsAlertError("protocol_version", `ServerHello legacy_version 0x${legacyVersion.toString(16)}`);
  const random = r.bytesView(32, "ServerHello random");
  const legacySessionIdEcho = r.vector(1, "ServerHello legacy_session_id_echo");
  if (legacySessionIdEcho.length > 32) throw new TlsAlertError("decode_error", "legacy_session_id_echo longer than 32 bytes");
  const cipherSuite = r.u16("ServerHello cipher_suite");
  const compression = r.u8("ServerHello legacy_compression_method");
  if (compression !== 0) throw new TlsAlertError("illegal_parameter", "legacy_compression_method must be 0");
  const extensions = parseExtensions(r, "ServerHello");
  r.expectEnd("ServerHello");
  return { random, legacySessionIdEcho, cipherSuite, extensions, isHelloRetryRequest: random.equals(HELLO_RETRY_REQUEST_RANDOM) };
}

// ---- EncryptedExtensions (RFC 8446 §4.3.1) ----

export function encodeEncryptedExtensions(extensions: ExtensionWriter[]): Buffer {
  return encodeHandshake(HANDSHAKE_TYPE.encrypted_extensions, (w) => writeExtensions(w, extensions));
}

export function parseEncryptedExtensions(body: Buffer): Extensions {
  const r = new TlsReader(body);
  const extensions = parseExtensions(r, "EncryptedExtensions");
  r.expectEnd("EncryptedExtensions");
  return extensions;
}

// ---- Certificate (RFC 8446 §4.4.2) ----

export function encodeCertificate(certificateChainDer: readonly Uint8Array[]): Buffer {
  const size = certificateChainDer.reduce((n, c) => n + c.length + 5, 16);
  return encodeHandshake(HANDSHAKE_TYPE.certificate, (w) => {
    w.u8(0); // certificate_request_context: empty in a server's Certificate
    w.vector(3, (list) => {
      for (const der of certificateChainDer) list.vector(3, (e) => e.bytes(der)).u16(0);
    });
  }, size);
}

export function parseCertificate(body: Buffer): CertificateMessage {
  const r = new TlsReader(body);
  const certificateRequestContext = r.vector(1, "certificate_request_context");
  const list = r.subReader(3, "certificate_list");
  const entries: CertificateEntry[] = [];
  while (list.remaining > 0) {
    const certData = list.vector(3, "cert_data", 1);
    const extensions = list.vector(2, "CertificateEntry extensions");
    entries.push({ certData, extensions });
  }
  r.expectEnd("Certificate");
  return { certificateRequestContext, entries };
}

// ---- CertificateVerify (RFC 8446 §4.4.3) ----

export function encodeCertificateVerify(algorithm: number, signature: Uint8Array): Buffer {
  return encodeHandshake(HANDSHAKE_TYPE.certificate_verify, (w) => w.u16(algorithm).vector(2, (s) => s.bytes(signature)), signature.length + 16);
}

export function parseCertificateVerify(body: Buffer): CertificateVerify {
  const r = new TlsReader(body);
  const algorithm = r.u16("CertificateVerify algorithm");
  const signature = r.vector(2, "CertificateVerify signature");
  r.expectEnd("CertificateVerify");
  return { algorithm, signature };
}

// ---- Finished (RFC 8446 §4.4.4) ----

export function encodeFinished(verifyData: Uint8Array): Buffer {
  return encodeHandshake(HANDSHAKE_TYPE.finished, (w) => w.bytes(verifyData), verifyData.length + 4);
}

export function parseFinished(body: Buffer, hashLength: number): Buffer {
  if (body.length !== hashLength) throw new TlsAlertError("decode_error", `Finished of ${body.length} bytes, expected ${hashLength}`);
  return body;
}

// ---- extension bodies (RFC 8446 §4.2.x, RFC 7301, RFC 6066) ----

/** RFC 8446 §4.2.1: client's supported_versions is ProtocolVersion versions<2..254>. */
export function parseClientSupportedVersions(data: Buffer): number[] {
  const r = new TlsReader(data);
  const list = r.subReader(1, "supported_versions", 2);
  r.expectEnd("supported_versions");
  const versions: number[] = [];
  while (list.remaining > 0) versions.push(list.u16("supported version"));
  return versions;
}

/** RFC 8446 §4.2.1: server's supported_versions is one selected_version. */
export function parseServerSupportedVersion(data: Buffer): number {
  const r = new TlsReader(data);
  const version = r.u16("selected_version");
  r.expectEnd("supported_versions");
  return version;
}

/** A list of uint16 in a uint16-length vector: NamedGroupList (§4.2.7), SignatureSchemeList (§4.2.3). */
export function parseUint16List(data: Buffer, what: string): number[] {
  const r = new TlsReader(data);
  const list = r.subReader(2, what, 2);
  r.expectEnd(what);
  if (list.remaining % 2 !== 0) throw new TlsAlertError("decode_error", `${what} has odd length`);
  const values: number[] = [];
  while (list.remaining > 0) values.push(list.u16(what));
  return values;
}

/** RFC 8446 §4.2.8: KeyShareClientHello is KeyShareEntry client_shares<0..2^16-1>. */
export function parseClientKeyShares(data: Buffer): KeyShareEntry[] {
  const r = new TlsReader(data);
  const list = r.subReader(2, "client_shares");
  r.expectEnd("key_share");
  const shares: KeyShareEntry[] = [];
  while (list.remaining > 0) {
    const group = list.u16("key share group");
    const keyExchange = list.vector(2, "key_exchange", 1);
    // RFC 8446 §4.2.8: each group at most once.
    if (shares.some((s) => s.group === group)) throw new TlsAlertError("illegal_parameter", `key_share repeats group ${group}`);
    shares.push({ group, keyExchange });
  }
  return shares;
}

export function parseServerKeyShare(data: Buffer): KeyShareEntry {
  const r = new TlsReader(data);
  const group = r.u16("key share group");
  const keyExchange = r.vector(2, "key_exchange", 1);
  r.expectEnd("key_share");
  return { group, keyExchange };
}

/** RFC 8446 §4.2.8: KeyShareHelloRetryRequest is one selected_group. */
export function parseHelloRetryRequestKeyShare(data: Buffer): number {
  const r = new TlsReader(data);
  const group = r.u16("selected_group");
  r.expectEnd("key_share");
  return group;
}

/** RFC 7301 §3.1: ProtocolNameList protocol_name_list<2..2^16-1>, each ProtocolName<1..2^8-1>. */
export function parseAlpn(data: Buffer): string[] {
  const r = new TlsReader(data);
  const list = r.subReader(2, "protocol_name_list", 2);
  r.expectEnd("application_layer_protocol_negotiation");
  const names: string[] = [];
  while (list.remaining > 0) names.push(list.vector(1, "ProtocolName", 1).toString("latin1"));
  return names;
}

export function writeAlpn(w: TlsWriter, names: readonly string[]): void {
  w.vector(2, (list) => { for (const n of names) list.vector(1, (p) => p.bytes(Buffer.from(n, "latin1"))); });
}

/** RFC 6066 §3: ServerNameList with one host_name (type 0). Returns the host name, if any. */
export function parseServerName(data: Buffer): string | undefined {
  const r = new TlsReader(data);
  const list = r.subReader(2, "server_name_list", 1);
  r.expectEnd("server_name");
  let hostName: string | undefined;
  while (list.remaining > 0) {
    const type = list.u8("name_type");
    const name = list.vector(2, "HostName", 1);
    if (type === 0) {
      if (hostName !== undefined) throw new TlsAlertError("illegal_parameter", "server_name repeats host_name");
      hostName = name.toString("latin1");
    }
  }
  return hostName;
}

export function writeServerName(w: TlsWriter, hostName: string): void {
  w.vector(2, (list) => list.u8(0).vector(2, (n) => n.bytes(Buffer.from(hostName, "latin1"))));
}
