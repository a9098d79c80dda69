import { describe, expect, it } from "vitest";
import { CIPHER_SUITES } from "./crypto/cipher-suites.ts";
import { QuicTransportError } from "./errors.ts";
import { openPacket, parseUnprotectedHeader, sealPacket } from "./packet-header.ts";
import { aeadSeal, deriveInitialKeys, deriveInitialSecrets, derivePacketKeys, headerProtectionMask, nextKeyPhaseKeys, nextKeyPhaseSecret } from "./packet-protection.ts";
import { encodeRetry, verifyRetryIntegrity } from "./retry.ts";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");
const DCID = hex("8394c8f03e515708");

// RFC 9001 Appendix A.2: CRYPTO frame of the client Initial (padded to 1162 bytes).
const CLIENT_CRYPTO = hex(`
060040f1010000ed0303ebf8fa56f129 39b9584a3896472ec40bb863cfd3e868
04fe3a47f06a2b69484c000004130113 02010000c000000010000e00000b6578
616d706c652e636f6dff01000100000a 00080006001d00170018001000070005
04616c706e0005000501000000000033 00260024001d00209370b2c9caa47fba
baf4559fedba753de171fa71f50f1ce1 5d43e994ec74d748002b000302030400
0d0010000e0403050306030203080408 050806002d00020101001c0002400100
3900320408ffffffffffffffff050480 00ffff07048000ffff08011001048000
75300901100f088394c8f03e51570806 048000ffff`);

const CLIENT_INITIAL_PACKET = hex(`
c000000001088394c8f03e5157080000 449e7b9aec34d1b1c98dd7689fb8ec11
d242b123dc9bd8bab936b47d92ec356c 0bab7df5976d27cd449f63300099f399
1c260ec4c60d17b31f8429157bb35a12 82a643a8d2262cad67500cadb8e7378c
8eb7539ec4d4905fed1bee1fc8aafba1 7c750e2c7ace01e6005f80fcb7df6212
30c83711b39343fa028cea7f7fb5ff89 eac2308249a02252155e2347b63d58c5
457afd84d05dfffdb20392844ae81215 4682e9cf012f9021a6f0be17ddd0c208
4dce25ff9b06cde535d0f920a2db1bf3 62c23e596d11a4f5a6cf3948838a3aec
4e15daf8500a6ef69ec4e3feb6b1d98e 610ac8b7ec3faf6ad760b7bad1db4ba3
485e8a94dc250ae3fdb41ed15fb6a8e5 eba0fc3dd60bc8e30c5c4287e53805db
059ae0648db2f64264ed5e39be2e20d8 2df566da8dd5998ccabdae053060ae6c
7b4378e846d29f37ed7b4ea9ec5d82e7 961b7f25a9323851f681d582363aa5f8
9937f5a67258bf63ad6f1a0b1d96dbd4 faddfcefc5266ba6611722395c906556
be52afe3f565636ad1b17d508b73d874 3eeb524be22b3dcbc2c7468d54119c74
68449a13d8e3b95811a198f3491de3e7 fe942b330407abf82a4ed7c1b311663a
c69890f4157015853d91e923037c227a 33cdd5ec281ca3f79c44546b9d90ca00
f064c99e3dd97911d39fe9c5d0b23a22 9a234cb36186c4819e8b9c5927726632
291d6a418211cc2962e20fe47feb3edf 330f2c603a9d48c0fcb5699dbfe58964
25c5bac4aee82e57a85aaf4e2513e4f0 5796b07ba2ee47d80506f8d2c25e50fd
14de71e6c418559302f939b0e1abd576 f279c4b2e0feb85c1f28ff18f58891ff
ef132eef2fa09346aee33c28eb130ff2 8f5b766953334113211996d20011a198
e3fc433f9f2541010ae17c1bf202580f 6047472fb36857fe843b19f5984009dd
c324044e847a4f4a0ab34f719595de37 252d6235365e9b84392b061085349d73
203a4a13e96f5432ec0fd4a1ee65accd d5e3904df54c1da510b0ff20dcc0c77f
cb2c0e0eb605cb0504db87632cf3d8b4 dae6e705769d1de354270123cb11450e
fc60ac47683d7b8d0f811365565fd98c 4c8eb936bcab8d069fc33bd801b03ade
a2e1fbc5aa463d08ca19896d2bf59a07 1b851e6c239052172f296bfb5e724047
90a2181014f3b94a4e97d117b4381303 68cc39dbb2d198065ae3986547926cd2
162f40a29f0c3c8745c0f50fba3852e5 66d44575c29d39a03f0cda721984b6f4
40591f355e12d439ff150aab7613499d bd49adabc8676eef023b15b65bfc5ca0
6948109f23f350db82123535eb8a7433 bdabcb909271a6ecbcb58b936a88cd4e
8f2e6ff5800175f113253d8fa9ca8885 c2f552e657dc603f252e1a8e308f76f0
be79e2fb8f5d5fbbe2e30ecadd220723 c8c0aea8078cdfcb3868263ff8f09400
54da48781893a7e49ad5aff4af300cd8 04a6b6279ab3ff3afb64491c85194aab
760d58a606654f9f4400e8b38591356f bf6425aca26dc85244259ff2b19c41b9
f96f3ca9ec1dde434da7d2d392b905dd f3d1f9af93d1af5950bd493f5aa731b4
056df31bd267b6b90a079831aaf579be 0a39013137aac6d404f518cfd4684064
7e78bfe706ca4cf5e9c5453e9f7cfd2b 8b4c8d169a44e55c88d4a9a7f9474241
e221af44860018ab0856972e194cd934`);

const SERVER_PAYLOAD = hex(`
02000000000600405a020000560303ee fce7f7b37ba1d1632e96677825ddf739
88cfc79825df566dc5430b9a045a1200 130100002e00330024001d00209d3c94
0d89690b84d08a60993c144eca684d10 81287c834d5311bcf32bb9da1a002b00
020304`);

const SERVER_INITIAL_PACKET = hex(`
cf000000010008f067a5502a4262b500 4075c0d95a482cd0991cd25b0aac406a
5816b6394100f37a1c69797554780bb3 8cc5a99f5ede4cf73c3ec2493a1839b3
dbcba3f6ea46c5b7684df3548e7ddeb9 c3bf9c73cc3f3bded74b562bfb19fb84
022f8ef4cdd93795d77d06edbb7aaf2f 58891850abbdca3d20398c276456cbc4
2158407dd074ee`);

const RETRY_PACKET = hex(`ff000000010008f067a5502a4262b574 6f6b656e04a265ba2eff4d829058fb3f 0f2496ba`);

describe("RFC 9001 Appendix A.1: Initial keys", () => {
  it("derives the client and server Initial secrets, keys, IVs and header-protection keys", () => {
    const secrets = deriveInitialSecrets(DCID);
    expect(secrets.client.toString("hex")).toBe("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea");
    expect(secrets.server.toString("hex")).toBe("3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b");
    const keys = deriveInitialKeys(DCID);
    expect(keys.client.key.toString("hex")).toBe("1f369613dd76d5467730efcbe3b1a22d");
    expect(keys.client.iv.toString("hex")).toBe("fa044b2f42a3fd3b46fb255c");
    expect(keys.client.hpKey.toString("hex")).toBe("9f50449e04a0e810283a1e9933adedd2");
    expect(keys.server.key.toString("hex")).toBe("cf3a5331653c364c88f0f379b6067e37");
    expect(keys.server.iv.toString("hex")).toBe("0ac1493ca1905853b0bba03e");
    expect(keys.server.hpKey.toString("hex")).toBe("c206b8d9b9f0f37644430b490eeaa314");
  });
});

describe("RFC 9001 Appendix A.2: client Initial", () => {
  const payload = Buffer.concat([CLIENT_CRYPTO, Buffer.alloc(1162 - CLIENT_CRYPTO.length)]);

  it("seals the published packet byte for byte", () => {
    const packet = sealPacket(
      { type: "initial", dcid: DCID, scid: new Uint8Array(0), token: new Uint8Array(0), packetNumber: 2, largestAcked: undefined, payload, packetNumberLength: 4 },
      deriveInitialKeys(DCID).client,
    );
    expect(packet.length).toBe(1200);
    expect(packet.toString("hex")).toBe(CLIENT_INITIAL_PACKET.toString("hex"));
  });

  it("parses and opens the published packet", () => {
    const header = parseUnprotectedHeader(CLIENT_INITIAL_PACKET, 0, 8);
    expect(header).toMatchObject({ form: "long", type: "initial", version: 1, pnOffset: 18, payloadLength: 1182, packetEnd: 1200 });
    expect(Buffer.from(header.dcid).equals(DCID)).toBe(true);
    const opened = openPacket(CLIENT_INITIAL_PACKET, header, deriveInitialKeys(DCID).client, undefined);
    expect(opened?.packetNumber).toBe(2);
    expect(opened?.payload.equals(payload)).toBe(true);
  });

  it("returns undefined when a ciphertext bit is flipped", () => {
    const damaged = Buffer.from(CLIENT_INITIAL_PACKET);
    damaged[100] = damaged[100]! ^ 1;
    const header = parseUnprotectedHeader(damaged, 0, 8);
    expect(openPacket(damaged, header, deriveInitialKeys(DCID).client, undefined)).toBeUndefined();
  });
});

describe("RFC 9001 Appendix A.3: server Initial", () => {
  it("seals the published packet byte for byte and opens it", () => {
    const packet = sealPacket(
      { type: "initial", dcid: new Uint8Array(0), scid: hex("f067a5502a4262b5"), token: new Uint8Array(0), packetNumber: 1, largestAcked: undefined, payload: SERVER_PAYLOAD, packetNumberLength: 2 },
      deriveInitialKeys(DCID).server,
    );
    expect(packet.toString("hex")).toBe(SERVER_INITIAL_PACKET.toString("hex"));
    const header = parseUnprotectedHeader(packet, 0, 0);
    const opened = openPacket(packet, header, deriveInitialKeys(DCID).server, 0);
    expect(opened?.packetNumber).toBe(1);
    expect(opened?.payload.equals(SERVER_PAYLOAD)).toBe(true);
  });
});

describe("RFC 9001 Appendix A.4: Retry", () => {
  it("encodes the published Retry packet and verifies its integrity tag", () => {
    const packet = encodeRetry({
      dcid: new Uint8Array(0), scid: hex("f067a5502a4262b5"), token: Buffer.from("token"),
      originalDestinationConnectionId: DCID, unusedBits: 0x0f,
    });
    expect(packet.toString("hex")).toBe(RETRY_PACKET.toString("hex"));
    expect(verifyRetryIntegrity(RETRY_PACKET, DCID)).toBe(true);
    expect(verifyRetryIntegrity(RETRY_PACKET, hex("8394c8f03e515709"))).toBe(false);
    const header = parseUnprotectedHeader(RETRY_PACKET, 0, 0);
    expect(header.type).toBe("retry");
    expect(Buffer.from(header.token!).toString()).toBe("token");
  });
});

describe("RFC 9001 Appendix A.5: ChaCha20-Poly1305 short header packet", () => {
  const suite = CIPHER_SUITES.TLS_CHACHA20_POLY1305_SHA256;
  const secret = hex("9ac312a7f877468ebe69422748ad00a1 5443f18203a07d6060f688f30f21632b");

  it("derives the key, IV, header-protection key and key-update secret", () => {
    const keys = derivePacketKeys(suite, secret);
    expect(keys.key.toString("hex")).toBe("c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8");
    expect(keys.iv.toString("hex")).toBe("e0459b3474bdd0e44a41c144");
    expect(keys.hpKey.toString("hex")).toBe("25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4");
    expect(nextKeyPhaseSecret(suite, secret).toString("hex")).toBe("1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9");
  });

  it("seals the published 21-byte packet and opens it", () => {
    const keys = derivePacketKeys(suite, secret);
    const packet = sealPacket(
      { type: "1rtt", dcid: new Uint8Array(0), packetNumber: 654360564, largestAcked: undefined, payload: Uint8Array.of(0x01), packetNumberLength: 3 },
      keys,
    );
    expect(packet.toString("hex")).toBe("4cfe4189655e5cd55c41f69080575d7999c25a5bfb");
    const header = parseUnprotectedHeader(packet, 0, 0);
    const opened = openPacket(packet, header, keys, 654360563);
    expect(opened).toEqual({ packetNumber: 654360564, payload: Buffer.of(0x01), keyPhase: 0 });
  });
});

describe("sealPacket/openPacket", () => {
  const suite = CIPHER_SUITES.TLS_AES_256_GCM_SHA384;
  const keys0 = derivePacketKeys(suite, Buffer.alloc(48, 1));
  const keys1 = nextKeyPhaseKeys(keys0, nextKeyPhaseSecret(suite, Buffer.alloc(48, 1)));

  it("pads a 1-byte payload with a 1-byte packet number so the header-protection sample exists (RFC 9001 §5.4.2)", () => {
    const packet = sealPacket({ type: "1rtt", dcid: Buffer.alloc(8, 7), packetNumber: 0, largestAcked: undefined, payload: Uint8Array.of(1), keyPhase: 1 }, keys1);
    expect(packet.length).toBe(1 + 8 + 1 + 3 + 16);
    const header = parseUnprotectedHeader(packet, 0, 8);
    const opened = openPacket(packet, header, (phase) => (phase === 1 ? keys1 : keys0), undefined);
    expect(opened).toEqual({ packetNumber: 0, payload: Buffer.of(1, 0, 0), keyPhase: 1 });
  });

  it("honours minPayloadLength and parses coalesced packets by packetEnd", () => {
    const a = sealPacket({ type: "handshake", dcid: Buffer.alloc(4, 1), scid: Buffer.alloc(4, 2), packetNumber: 5, largestAcked: 3, payload: Uint8Array.of(1), minPayloadLength: 50 }, keys0);
    const b = sealPacket({ type: "1rtt", dcid: Buffer.alloc(4, 1), packetNumber: 9, largestAcked: 3, payload: Uint8Array.of(1, 1, 1, 1) }, keys1);
    const datagram = Buffer.concat([a, b]);
    const h1 = parseUnprotectedHeader(datagram, 0, 4);
    expect(h1.packetEnd).toBe(a.length);
    expect(openPacket(datagram, h1, keys0, 4)?.payload.length).toBe(50);
    const h2 = parseUnprotectedHeader(datagram, h1.packetEnd, 4);
    expect(h2.form).toBe("short");
    expect(openPacket(datagram, h2, keys1, 8)?.packetNumber).toBe(9);
  });

  it("throws PROTOCOL_VIOLATION for non-zero reserved bits on an authenticated packet (RFC 9000 §17.3.1)", () => {
    // Protect by hand a short header with a reserved bit (0x08) set, 2-byte packet number 7.
    const header = Buffer.of(0x40 | 0x08 | 0x01, 0x00, 0x07);
    const body = aeadSeal(keys0, 7, header, Buffer.alloc(20, 1));
    const packet = Buffer.concat([header, body]);
    const mask = headerProtectionMask(keys0, packet.subarray(1 + 4, 1 + 20));
    packet[0] = packet[0]! ^ (mask[0]! & 0x1f);
    packet[1] = packet[1]! ^ mask[1]!;
    packet[2] = packet[2]! ^ mask[2]!;
    const parsed = parseUnprotectedHeader(packet, 0, 0);
    expect(() => openPacket(packet, parsed, keys0, 6)).toThrow(expect.objectContaining({ name: "QuicTransportError", code: 0x0a }));
    // The same packet with the bit flipped after protection fails authentication instead: undefined, no throw.
    packet[0] = packet[0]! ^ 0x08;
    expect(openPacket(packet, parseUnprotectedHeader(packet, 0, 0), keys0, 6)).toBeUndefined();
  });

  it("round-trips a 0-RTT packet and reports undefined when the key phase has no keys", () => {
    const packet = sealPacket({ type: "0rtt", dcid: Buffer.alloc(8, 1), scid: Buffer.alloc(5, 2), packetNumber: 1000, largestAcked: 990, payload: Buffer.of(1, 1, 1, 1) }, keys0);
    const header = parseUnprotectedHeader(packet, 0, 8);
    expect(header).toMatchObject({ form: "long", type: "0rtt", version: 1, packetEnd: packet.length });
    expect(openPacket(packet, header, keys0, 999)?.packetNumber).toBe(1000);
    const short = sealPacket({ type: "1rtt", dcid: Buffer.alloc(8, 1), packetNumber: 3, largestAcked: 1, payload: Buffer.of(1, 1, 1, 1), keyPhase: 1 }, keys1);
    expect(openPacket(short, parseUnprotectedHeader(short, 0, 8), (phase) => (phase === 0 ? keys0 : undefined), 2)).toBeUndefined();
  });

  it("rejects a long header whose Length runs past the datagram with a QuicTransportError", () => {
    const truncated = CLIENT_INITIAL_PACKET.subarray(0, 600);
    expect(() => parseUnprotectedHeader(truncated, 0, 8)).toThrow(QuicTransportError);
  });
});
