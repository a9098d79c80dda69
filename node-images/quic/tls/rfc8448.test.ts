/** RFC 8448 §3 "Simple 1-RTT Handshake": every key-schedule value and message from the published trace. */
import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import { CIPHER_SUITES } from "../crypto/cipher-suites.ts";
import {
  EXTENSION_TYPE, HANDSHAKE_HEADER_LENGTH, parseAlpn, parseCertificate, parseCertificateVerify, parseClientHello, parseClientKeyShares,
  parseEncryptedExtensions, parseFinished, parseServerHello, parseServerKeyShare, parseUint16List,
} from "./handshake-messages.ts";
import { generateKeyShare } from "./key-exchange.ts";
import {
  derivedFromEarlySecret, derivedFromHandshakeSecret, deriveSecret, earlySecret, finishedVerifyData, handshakeSecret, masterSecret,
} from "./key-schedule.ts";
import { SIGNATURE_SCHEME, certificateVerifyContent, verifyCertificateVerify } from "./signature-schemes.ts";
import { TranscriptHash } from "./transcript-hash.ts";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");
const suite = CIPHER_SUITES.TLS_AES_128_GCM_SHA256;

// RFC 8448 §3 inputs.
const clientPrivateKey = hex("49af42ba7f7994852d713ef2784bcbcaa7911de26adc5642cb634540e7ea5005");
const clientPublicKey = hex("99381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c");
const serverPrivateKey = hex("b1580eeadf6dd589b8ef4f2d5652578cc810e9980191ec8d058308cea216a21e");
const serverPublicKey = hex("c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f");

// RFC 8448 §3 handshake messages (the plaintext of each, header included).
const clientHello = hex(`010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7000006130113031302010000910000000b0009000006736572766572ff01000100000a00140012001d0017001800190100010101020103010400230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c002b0003020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00020101001c00024001`);
const serverHello = hex(`020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e2692800130100002e00330024001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304`);
const encryptedExtensions = hex(`080000240022000a00140012001d00170018001901000101010201030104001c0002400100000000`);
const certificate = hex(`0b0001b9000001b50001b0308201ac30820115a003020102020102300d06092a864886f70d01010b0500300e310c300a06035504031303727361301e170d3136303733303031323335395a170d3236303733303031323335395a300e310c300a0603550403130372736130819f300d06092a864886f70d010101050003818d0030818902818100b4bb498f8279303d980836399b36c6988c0c68de55e1bdb826d3901a2461eafd2de49a91d015abbc9a95137ace6c1af19eaa6af98c7ced43120998e187a80ee0ccb0524b1b018c3e0b63264d449a6d38e22a5fda430846748030530ef0461c8ca9d9efbfae8ea6d1d03e2bd193eff0ab9a8002c47428a6d35a8d88d79f7f1e3f0203010001a31a301830090603551d1304023000300b0603551d0f0404030205a0300d06092a864886f70d01010b05000381810085aad2a0e5b9276b908c65f73a7267170618a54c5f8a7b337d2df7a594365417f2eae8f8a58c8f8172f9319cf36b7fd6c55b80f21a03015156726096fd335e5e67f2dbf102702e608ccae6bec1fc63a42a99be5c3eb7107c3c54e9b9eb2bd5203b1c3b84e0a8b2f759409ba3eac9d91d402dcc0cc8f8961229ac9187b42b4de10000`);
const certificateVerify = hex(`0f000084080400805a747c5d88fa9bd2e55ab085a61015b7211f824cd484145ab3ff52f1fda8477b0b7abc90db78e2d33a5c141a078653fa6bef780c5ea248eeaaa785c4f394cab6d30bbe8d4859ee511f602957b15411ac027671459e46445c9ea58c181e818e95b8c3fb0bf3278409d3be152a3da5043e063dda65cdf5aea20d53dfacd42f74f3`);
const serverFinished = hex("140000209b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718");
const clientFinished = hex("14000020a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61");

const body = (message: Buffer): Buffer => message.subarray(HANDSHAKE_HEADER_LENGTH);

describe("RFC 8448 §3 Simple 1-RTT Handshake", () => {
  it("derives the X25519 public keys and shared secret from the trace's private keys", () => {
    const client = generateKeyShare("x25519", clientPrivateKey);
    const server = generateKeyShare("x25519", serverPrivateKey);
    expect(client.publicKey.toString("hex")).toBe(clientPublicKey.toString("hex"));
    expect(server.publicKey.toString("hex")).toBe(serverPublicKey.toString("hex"));
    const shared = "8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d";
    expect(client.computeSharedSecret(serverPublicKey).toString("hex")).toBe(shared);
    expect(server.computeSharedSecret(clientPublicKey).toString("hex")).toBe(shared);
  });

  it("reproduces every key-schedule secret and both Finished messages byte for byte", () => {
    const shared = generateKeyShare("x25519", clientPrivateKey).computeSharedSecret(serverPublicKey);
    expect(earlySecret(suite).toString("hex")).toBe("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a");
    expect(derivedFromEarlySecret(suite).toString("hex")).toBe("6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba");
    const hs = handshakeSecret(suite, shared);
    expect(hs.toString("hex")).toBe("1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac");

    const transcript = new TranscriptHash(suite.hash);
    transcript.update(clientHello);
    transcript.update(serverHello);
    const helloHash = transcript.current();
    const clientHs = deriveSecret(suite, hs, "c hs traffic", helloHash);
    const serverHs = deriveSecret(suite, hs, "s hs traffic", helloHash);
    expect(clientHs.toString("hex")).toBe("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21");
    expect(serverHs.toString("hex")).toBe("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
    expect(derivedFromHandshakeSecret(suite, hs).toString("hex")).toBe("43de77e0c77713859a944db9db2590b53190a65b3ee2e4f12dd7a0bb7ce254b4");
    const master = masterSecret(suite, hs);
    expect(master.toString("hex")).toBe("18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919");

    transcript.update(encryptedExtensions);
    transcript.update(certificate);
    transcript.update(certificateVerify);
    const serverVerifyData = finishedVerifyData(suite, serverHs, transcript.current());
    expect(serverVerifyData.toString("hex")).toBe(parseFinished(body(serverFinished), 32).toString("hex"));
    transcript.update(serverFinished);

    const throughServerFinished = transcript.current();
    expect(deriveSecret(suite, master, "c ap traffic", throughServerFinished).toString("hex")).toBe("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5");
    expect(deriveSecret(suite, master, "s ap traffic", throughServerFinished).toString("hex")).toBe("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
    expect(deriveSecret(suite, master, "exp master", throughServerFinished).toString("hex")).toBe("fe22f881176eda18eb8f44529e6792c50c9a3f89452f68d8ae311b4309d3cf50");

    const clientVerifyData = finishedVerifyData(suite, clientHs, throughServerFinished);
    expect(clientVerifyData.toString("hex")).toBe(parseFinished(body(clientFinished), 32).toString("hex"));
    transcript.update(clientFinished);
    expect(deriveSecret(suite, master, "res master", transcript.current()).toString("hex")).toBe("7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c");
  });

  it("parses the trace's ClientHello and ServerHello", () => {
    const ch = parseClientHello(body(clientHello));
    expect(ch.random.toString("hex")).toBe("cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7");
    expect(ch.legacySessionId.length).toBe(0);
    expect(ch.cipherSuites).toEqual([0x1301, 0x1303, 0x1302]);
    const shares = parseClientKeyShares(ch.extensions.get(EXTENSION_TYPE.key_share)!);
    expect(shares).toHaveLength(1);
    expect(shares[0]!.group).toBe(0x001d);
    expect(shares[0]!.keyExchange.toString("hex")).toBe(clientPublicKey.toString("hex"));
    expect(parseUint16List(ch.extensions.get(EXTENSION_TYPE.supported_groups)!, "supported_groups")).toEqual([0x1d, 0x17, 0x18, 0x19, 0x100, 0x101, 0x102, 0x103, 0x104]);
    expect(parseUint16List(ch.extensions.get(EXTENSION_TYPE.signature_algorithms)!, "signature_algorithms")).toContain(SIGNATURE_SCHEME.rsa_pss_rsae_sha256);

    const sh = parseServerHello(body(serverHello));
    expect(sh.isHelloRetryRequest).toBe(false);
    expect(sh.random.toString("hex")).toBe("a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e26928");
    expect(sh.cipherSuite).toBe(0x1301);
    const share = parseServerKeyShare(sh.extensions.get(EXTENSION_TYPE.key_share)!);
    expect(share.keyExchange.toString("hex")).toBe(serverPublicKey.toString("hex"));
  });

  it("parses EncryptedExtensions and Certificate, and verifies the RSA-PSS CertificateVerify with the trace's certificate", () => {
    const ee = parseEncryptedExtensions(body(encryptedExtensions));
    expect([...ee.keys()]).toEqual([EXTENSION_TYPE.supported_groups, 0x1c /* record_size_limit */, EXTENSION_TYPE.server_name]);
    expect(ee.has(EXTENSION_TYPE.application_layer_protocol_negotiation)).toBe(false);

    const cert = parseCertificate(body(certificate));
    expect(cert.certificateRequestContext.length).toBe(0);
    expect(cert.entries).toHaveLength(1);
    const x509 = new X509Certificate(cert.entries[0]!.certData);
    expect(x509.subject).toBe("CN=rsa");

    const cv = parseCertificateVerify(body(certificateVerify));
    expect(cv.algorithm).toBe(SIGNATURE_SCHEME.rsa_pss_rsae_sha256);
    const transcript = new TranscriptHash(suite.hash);
    for (const m of [clientHello, serverHello, encryptedExtensions, certificate]) transcript.update(m);
    const content = certificateVerifyContent("server", transcript.current());
    expect(verifyCertificateVerify(cv.algorithm, x509.publicKey, content, cv.signature)).toBe(true);
    // The same signature over a different transcript must fail.
    const other = certificateVerifyContent("server", Buffer.alloc(32));
    expect(verifyCertificateVerify(cv.algorithm, x509.publicKey, other, cv.signature)).toBe(false);
  });

  it("rejects every truncation of the trace's ClientHello with decode_error", () => {
    const ch = body(clientHello);
    for (let cut = 0; cut < ch.length; cut++) {
      expect(() => parseClientHello(ch.subarray(0, cut)), `cut at ${cut}`).toThrowError(/decode_error/);
    }
    expect(parseAlpn(hex("0003026832"))).toEqual(["h2"]);
    expect(() => parseAlpn(hex("0004026832"))).toThrowError(/decode_error/);
  });
});

describe("RFC 8448 §5 HelloRetryRequest", () => {
  const clientP256PrivateKey = hex("ab5473467e19346ceb0a0414e41da21d4d2445bc3025afe97c4e8dc8d513da39");
  const clientP256PublicKey = hex(`04a6da7392ec591e17abfd535964b99894d13befb221b3def2ebe3830eac8f01
    51812677c4d6d2237e85cf01d6910cfb83954e76ba7352830534159897e8065780`);
  const serverP256PrivateKey = hex("8c510601f9765bfb8ed693449a48989859b5cfa879cb9f5443c41c5ff10634ed");
  const serverP256PublicKey = hex(`04583e054b7a66672ae020ad9d2686fcc85b5ad41a134a0f03ee72b893052bd8
    5b4c8de6776f5b04ac07d83540eab3e3d9c547bc6528c4317d294686093a6cad7d`);
  const clientHello1 = hex(`010000b00303b0b1c5a5aa37c5919f2ed1d5c6fff7fcb7849716945a2b8cee92
    58a346677b6f000006130113031302010000810000000b000900000673657276
    6572ff01000100000a00080006001d00170018003300260024001d0020e8e8e3
    f3b93a25ed97a14a7dcacb8a272c6288e585c6484d05262fcad062ad1f002b00
    03020304000d0020001e04030503060302030804080508060401050106010201
    0402050206020202002d00020101001c00024001`);
  const helloRetryRequest = hex(`020000ac0303cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e
    09e2c8a8339c001301000084003300020017002c0074007271dcd04bb88bc318
    9119398a00000000eefafc76c146b823b096f8aacad365dd0030953f4edf6256
    36e5f21bb2e23fcc654b1b5b40318d10d137abcbb87574e36e8a1f025f7dfa5d
    6e50781b5eda4aa15b0c8be778257d16aa3030e9e7841dd9e4c0342267e8ca0c
    af571fb2b7cff0f934b0002b00020304`);
  const clientHello2Prefix = hex(`010001fc0303b0b1c5a5aa37c5919f2ed1d5c6fff7fcb7849716945a2b8cee92
    58a346677b6f000006130113031302010001cd0000000b000900000673657276
    6572ff01000100000a00080006001d001700180033004700450017004104a6da
    7392ec591e17abfd535964b99894d13befb221b3def2ebe3830eac8f01518126
    77c4d6d2237e85cf01d6910cfb83954e76ba7352830534159897e8065780002b
    0003020304000d0020001e040305030603020308040805080604010501060102
    010402050206020202002c0074007271dcd04bb88bc3189119398a00000000ee
    fafc76c146b823b096f8aacad365dd0030953f4edf625636e5f21bb2e23fcc65
    4b1b5b40318d10d137abcbb87574e36e8a1f025f7dfa5d6e50781b5eda4aa15b
    0c8be778257d16aa3030e9e7841dd9e4c0342267e8ca0caf571fb2b7cff0f934
    b0002d00020101001c00024001001500af`);
  // The rest of the 512-octet ClientHello2 is the padding extension's 175 zero bytes.
  const clientHello2 = Buffer.concat([clientHello2Prefix, Buffer.alloc(512 - clientHello2Prefix.length)]);
  const serverHello2 = hex(`020000770303bb341d847fd789c47c387172dc0c9bf147fccacb5043d86ca4c5
    98d3ff571b9800130100004f003300450017004104583e054b7a66672ae020ad
    9d2686fcc85b5ad41a134a0f03ee72b893052bd85b4c8de6776f5b04ac07d835
    40eab3e3d9c547bc6528c4317d294686093a6cad7d002b00020304`);
  // EncryptedExtensions, Certificate, CertificateVerify, Finished as one flight.
  const serverFlight = hex(`080000180016000a0008000600170018001d001c00024001000000000b0001b9
    000001b50001b0308201ac30820115a003020102020102300d06092a864886f7
    0d01010b0500300e310c300a06035504031303727361301e170d313630373330
    3031323335395a170d3236303733303031323335395a300e310c300a06035504
    03130372736130819f300d06092a864886f70d010101050003818d0030818902
    818100b4bb498f8279303d980836399b36c6988c0c68de55e1bdb826d3901a24
    61eafd2de49a91d015abbc9a95137ace6c1af19eaa6af98c7ced43120998e187
    a80ee0ccb0524b1b018c3e0b63264d449a6d38e22a5fda430846748030530ef0
    461c8ca9d9efbfae8ea6d1d03e2bd193eff0ab9a8002c47428a6d35a8d88d79f
    7f1e3f0203010001a31a301830090603551d1304023000300b0603551d0f0404
    030205a0300d06092a864886f70d01010b05000381810085aad2a0e5b9276b90
    8c65f73a7267170618a54c5f8a7b337d2df7a594365417f2eae8f8a58c8f8172
    f9319cf36b7fd6c55b80f21a03015156726096fd335e5e67f2dbf102702e608c
    cae6bec1fc63a42a99be5c3eb7107c3c54e9b9eb2bd5203b1c3b84e0a8b2f759
    409ba3eac9d91d402dcc0cc8f8961229ac9187b42b4de100000f000084080400
    8033ab13d4462707231b5dcae6c8190b63d1dabc74f28c395370da0b07e5b830
    66d0246a31acd95df475bfd799a4a70d33ad93d3a317a9b2c0d237a5685b219e
    774112e391a247607d1aeff1bbd0a39f382ee1a5fe88ae99ec59228e6497e45d
    48ce275a6d5ef40d169fb6f9d33b052ed3dcdd6b5a48baafffbcb290128415bd
    38140000208863e6bfb0420a927fa27f34336a70ae426e968e3eb884945b9685
    6dba3976d1`);

  /** Splits a flight of concatenated handshake messages. */
  function messages(flight: Buffer): Buffer[] {
    const out: Buffer[] = [];
    for (let at = 0; at < flight.length;) {
      const end = at + 4 + flight.readUIntBE(at + 1, 3);
      out.push(flight.subarray(at, end));
      at = end;
    }
    return out;
  }

  it("derives the P-256 public keys and shared secret from the trace's private keys", () => {
    const client = generateKeyShare("secp256r1", clientP256PrivateKey);
    const server = generateKeyShare("secp256r1", serverP256PrivateKey);
    expect(client.publicKey.toString("hex")).toBe(clientP256PublicKey.toString("hex"));
    expect(server.publicKey.toString("hex")).toBe(serverP256PublicKey.toString("hex"));
    const shared = "c142ce13ca11b5c2233652e63ad3d97844f1621fbfb9de69d547dc8fedeabeb4";
    expect(client.computeSharedSecret(serverP256PublicKey).toString("hex")).toBe(shared);
    expect(server.computeSharedSecret(clientP256PublicKey).toString("hex")).toBe(shared);
  });

  it("parses the HelloRetryRequest: magic random, selected group secp256r1, a cookie", () => {
    const hrr = parseServerHello(body(helloRetryRequest));
    expect(hrr.isHelloRetryRequest).toBe(true);
    expect(hrr.cipherSuite).toBe(0x1301);
    expect(hrr.extensions.get(EXTENSION_TYPE.key_share)!.readUInt16BE(0)).toBe(0x0017);
    expect(hrr.extensions.get(EXTENSION_TYPE.cookie)!.length).toBe(0x74);
    const ch2 = parseClientHello(body(clientHello2));
    expect(ch2.extensions.get(EXTENSION_TYPE.cookie)!.equals(hrr.extensions.get(EXTENSION_TYPE.cookie)!)).toBe(true);
  });

  it("applies the message_hash transcript rule and reproduces every secret and the server Finished", () => {
    const shared = generateKeyShare("secp256r1", serverP256PrivateKey).computeSharedSecret(clientP256PublicKey);
    const hs = handshakeSecret(suite, shared);
    expect(hs.toString("hex")).toBe("ce022e5e6e81e50736d773f2d3adfce8220d049bf510f0dbfac927ef4243b148");
    const transcript = TranscriptHash.afterHelloRetryRequest(suite.hash, clientHello1);
    for (const m of [helloRetryRequest, clientHello2, serverHello2]) transcript.update(m);
    const helloHash = transcript.current();
    expect(helloHash.toString("hex")).toBe("8aa8e828ec2f8a884fec95a3139de01c15a3daa7ff5bfc3f4bfcc21b438d7bf8");
    const serverHs = deriveSecret(suite, hs, "s hs traffic", helloHash);
    expect(deriveSecret(suite, hs, "c hs traffic", helloHash).toString("hex")).toBe("158aa7ab8855073582b41d674b4055cabcc534728f659314861b4e08e2011566");
    expect(serverHs.toString("hex")).toBe("3403e781e2af7b6508da28574f6e95a1abf162de83a97927c37672a4a0cef8a1");
    const master = masterSecret(suite, hs);
    expect(master.toString("hex")).toBe("1131545d0baf79ddce9b87f06945781a57dd18ef378dcd2060f8f9a569027ed8");

    const [ee, cert, cv, fin] = messages(serverFlight);
    expect(fin).toBeDefined();
    for (const m of [ee!, cert!]) transcript.update(m);
    const x509 = new X509Certificate(parseCertificate(body(cert!)).entries[0]!.certData);
    const certificateVerifyMessage = parseCertificateVerify(body(cv!));
    expect(verifyCertificateVerify(certificateVerifyMessage.algorithm, x509.publicKey, certificateVerifyContent("server", transcript.current()), certificateVerifyMessage.signature)).toBe(true);
    transcript.update(cv!);
    expect(finishedVerifyData(suite, serverHs, transcript.current()).toString("hex")).toBe(parseFinished(body(fin!), 32).toString("hex"));
    transcript.update(fin!);
    const throughServerFinished = transcript.current();
    expect(throughServerFinished.toString("hex")).toBe("50f63cbf36b0dd049e7a0ba27d6455745ea2aaac54bb167f9950b2b7ce9509da");
    expect(deriveSecret(suite, master, "c ap traffic", throughServerFinished).toString("hex")).toBe("75ecf4b972525aa0dcd057c9944d4cd5d82671d8843141d7dc2a4ff15a21dc51");
    expect(deriveSecret(suite, master, "s ap traffic", throughServerFinished).toString("hex")).toBe("5c74f87df04225db0f8209c9de6429e49435fdefa7cad61864874d12f31cfc8d");
    expect(deriveSecret(suite, master, "exp master", throughServerFinished).toString("hex")).toBe("7c06d3ae106a3a374ace4837b3985cac67780a6e2c5c04b58319d584df09d223");
  });
});
