import { describe, expect, it } from "vitest";
import { CIPHER_SUITES } from "./crypto/cipher-suites.ts";
import { QuicTransportError } from "./errors.ts";
import { encodeVersionNegotiation, openPacket, parseUnprotectedHeader, sealPacket } from "./packet-header.ts";
import { deriveInitialKeys, derivePacketKeys } from "./packet-protection.ts";
import { encodeStatelessReset, isStatelessReset, statelessResetToken } from "./stateless-reset.ts";
import { decodeTransportParameters, defaultTransportParameters, encodeTransportParameters } from "./transport-parameters.ts";

/** Seeded 32-bit PRNG (mulberry32), integers in [0, 2^32). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

describe("Version Negotiation (RFC 9000 §17.2.1)", () => {
  it("encodes and parses the supported versions", () => {
    const vn = encodeVersionNegotiation(Buffer.of(1, 2, 3), Buffer.of(4, 5), [1, 0x6b3343cf]);
    expect(vn[0]! & 0x80).toBe(0x80);
    expect(vn.readUInt32BE(1)).toBe(0);
    const h = parseUnprotectedHeader(vn, 0, 8);
    expect(h.type).toBe("version_negotiation");
    expect(Buffer.from(h.dcid)).toEqual(Buffer.of(1, 2, 3));
    expect(Buffer.from(h.scid!)).toEqual(Buffer.of(4, 5));
    expect(h.supportedVersions).toEqual([1, 0x6b3343cf]);
  });

  it("parses only the invariants of an unknown version (RFC 8999)", () => {
    const packet = Buffer.concat([Buffer.of(0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 25), Buffer.alloc(25, 1), Buffer.of(0), Buffer.alloc(1200)]);
    const h = parseUnprotectedHeader(packet, 0, 8);
    expect(h.version).toBe(0x1a2a3a4a);
    expect(h.dcid.length).toBe(25);
    expect(h.packetEnd).toBe(packet.length);
  });
});

describe("stateless reset (RFC 9000 §10.3)", () => {
  const key = Buffer.alloc(32, 9);
  const cid = Buffer.of(1, 2, 3, 4, 5, 6, 7, 8);

  it("derives a 16-byte token with HMAC-SHA256 of the connection ID", () => {
    const token = statelessResetToken(key, cid);
    expect(token.length).toBe(16);
    expect(token).toEqual(statelessResetToken(key, Buffer.from(cid)));
    expect(token).not.toEqual(statelessResetToken(key, Buffer.of(1, 2, 3, 4, 5, 6, 7, 9)));
  });

  it("looks like a short header, is smaller than the trigger, at least 21 bytes, and ends with the token", () => {
    const token = statelessResetToken(key, cid);
    for (const trigger of [22, 43, 1200]) {
      const reset = encodeStatelessReset(token, trigger);
      expect(reset.length).toBeLessThan(trigger);
      expect(reset.length).toBeGreaterThanOrEqual(21);
      expect(reset[0]! & 0xc0).toBe(0x40);
      expect(reset.subarray(reset.length - 16)).toEqual(token);
      expect(isStatelessReset(reset, (t) => t.equals(token))).toBe(true);
      expect(isStatelessReset(reset, () => false)).toBe(false);
    }
    expect(() => encodeStatelessReset(token, 21)).toThrow(RangeError);
    expect(isStatelessReset(Buffer.alloc(20), () => true)).toBe(false);
  });
});

describe("wire mutation: malformed input only ever throws QuicTransportError", () => {
  it("truncated or bit-flipped packets: parse throws QuicTransportError, open returns undefined or throws it (50,000 seeded cases)", () => {
    const next = mulberry32(99);
    const int = (max: number): number => next() % (max + 1);
    const initial = deriveInitialKeys(Buffer.alloc(8, 3)).client;
    const oneRtt = derivePacketKeys(CIPHER_SUITES.TLS_CHACHA20_POLY1305_SHA256, Buffer.alloc(32, 4));
    const packets = [
      sealPacket({ type: "initial", dcid: Buffer.alloc(8, 3), scid: Buffer.alloc(8, 5), token: Buffer.alloc(20, 6), packetNumber: 0, largestAcked: undefined, payload: Buffer.of(6, 0, 3, 1, 2, 3), minPayloadLength: 100 }, initial),
      sealPacket({ type: "handshake", dcid: Buffer.alloc(8, 3), scid: Buffer.alloc(8, 5), packetNumber: 300, largestAcked: 2, payload: Buffer.of(1) }, initial),
      sealPacket({ type: "1rtt", dcid: Buffer.alloc(8, 3), packetNumber: 70000, largestAcked: 100, payload: Buffer.alloc(50, 1) }, oneRtt),
      encodeVersionNegotiation(Buffer.alloc(8, 3), Buffer.alloc(8, 5), [1, 2]),
    ];
    const started = performance.now();
    let opened = 0;
    for (let i = 0; i < 50_000; i++) {
      const source = packets[int(packets.length - 1)]!;
      const datagram = Buffer.from(int(1) ? source.subarray(0, int(source.length)) : source);
      for (let flips = 1 + int(2); flips > 0 && datagram.length > 0; flips--) {
        const at = int(Math.min(datagram.length - 1, 40));
        datagram[at] = datagram[at]! ^ (1 << int(7));
      }
      try {
        const header = parseUnprotectedHeader(datagram, 0, 8);
        if (header.pnOffset >= 0) {
          if (openPacket(datagram, header, header.form === "short" ? oneRtt : initial, int(100000)) !== undefined) opened++;
        }
      } catch (err) {
        if (!(err instanceof QuicTransportError)) throw err;
      }
    }
    expect(opened).toBeLessThan(50);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("truncated or bit-flipped transport parameters only throw TRANSPORT_PARAMETER_ERROR (50,000 seeded cases)", () => {
    const next = mulberry32(7);
    const int = (max: number): number => next() % (max + 1);
    const encoded = encodeTransportParameters({
      ...defaultTransportParameters(), maxIdleTimeoutMs: 30000, initialMaxData: 1 << 24, initialMaxStreamsBidi: 100,
      statelessResetToken: Buffer.alloc(16, 1), initialSourceConnectionId: Buffer.alloc(8, 2),
      preferredAddress: { ipv4: { address: "10.0.0.1", port: 443 }, connectionId: Buffer.alloc(8, 3), statelessResetToken: Buffer.alloc(16, 4) },
      maxDatagramFrameSize: 1200,
    }, "server");
    for (let i = 0; i < 50_000; i++) {
      const mutated = Buffer.from(int(1) ? encoded.subarray(0, int(encoded.length)) : encoded);
      for (let flips = int(3); flips > 0 && mutated.length > 0; flips--) {
        const at = int(mutated.length - 1);
        mutated[at] = mutated[at]! ^ (1 << int(7));
      }
      try {
        decodeTransportParameters(mutated, int(1) ? "server" : "client");
      } catch (err) {
        if (!(err instanceof QuicTransportError) || err.code !== 0x08) throw err;
      }
    }
  });
});
