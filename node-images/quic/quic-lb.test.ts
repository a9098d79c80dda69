import { describe, expect, it } from "vitest";
import { SeededRandom } from "../common/seeded-random.ts";
import {
  configRotationOf,
  QuicLbCodec,
  QuicLbConfigError,
  quicLbConnectionIdGenerator,
  UNROUTABLE_CONFIG_ID,
  unroutableConnectionId,
  type QuicLbConfig,
} from "./quic-lb.ts";

const hex = (s: string): Buffer => Buffer.from(s, "hex");
// draft-ietf-quic-load-balancers-21 Appendix B.2: one key for all encrypted vectors.
const VECTOR_KEY = hex("8f95f09245765f80256934e50c66207f");

function expectVector(config: QuicLbConfig, sid: string, nonce: string, cid: string): void {
  const codec = new QuicLbCodec(config);
  expect(codec.encode(hex(sid), hex(nonce)).toString("hex")).toBe(cid);
  expect(codec.decodeServerId(hex(cid))?.toString("hex")).toBe(sid);
}

describe("QUIC-LB connection IDs (draft-ietf-quic-load-balancers-21)", () => {
  it("B.1 plaintext vector: cr 0, sid c4605e, nonce 4504cc4f", () => {
    expectVector({ configId: 0, serverIdLength: 3, nonceLength: 4 }, "c4605e", "4504cc4f", "07c4605e4504cc4f");
  });

  it("B.1 second plaintext row's parameters round-trip (the draft prints a 9-digit nonce, so no exact CID to compare)", () => {
    const codec = new QuicLbCodec({ configId: 1, serverIdLength: 5, nonceLength: 5 });
    const cid = codec.encode(hex("350d28b420"), hex("3487d9700b"));
    expect(cid[0]).toBe(0x2a); // config 1 (0b001) ‖ length 10
    expect(cid.subarray(1, 6).toString("hex")).toBe("350d28b420"); // plaintext: the server ID is visible
    expect(codec.decodeServerId(cid)?.toString("hex")).toBe("350d28b420");
  });

  it("§4.3.2.4 four-pass encryption example (odd length, 7 octets)", () => {
    const config = { configId: 0, serverIdLength: 3, nonceLength: 4, key: hex("fdf726a9893ec05c0632d3956680baf0") };
    expectVector(config, "31441a", "9c69c275", "0767947d29be054a");
  });

  it("B.2 encrypted, four passes, 7 octets: cr 0, sid ed793a", () => {
    expectVector({ configId: 0, serverIdLength: 3, nonceLength: 4, key: VECTOR_KEY }, "ed793a", "ee080dbf", "0720b1d07b359d3c");
  });

  it("B.2 encrypted, 15 octets, server ID longer than nonce: the fourth decryption pass", () => {
    expectVector(
      { configId: 1, serverIdLength: 10, nonceLength: 5, key: VECTOR_KEY },
      "ed793a51d49b8f5fab65",
      "ee080dbf48",
      "2fcc381bc74cb4fbad2823a3d1f8fed2",
    );
  });

  it("B.2 encrypted, 16 octets: the single-pass AES-ECB special case", () => {
    expectVector(
      { configId: 2, serverIdLength: 8, nonceLength: 8, key: VECTOR_KEY },
      "ed793a51d49b8f5f",
      "ee080dbf48c0d1e5",
      "504dd2d05a7b0de9b2b9907afb5ecf8cc3",
    );
  });

  it("B.2 encrypted, 18 octets: ciphertext matches the draft (its first octet 0x12 disagrees with its cr_bits 3, so cr 0 is used)", () => {
    // The first octet is not encrypted; the draft's row prints 0x12 (cr 0, length 18) beside cr_bits 3.
    expectVector(
      { configId: 0, serverIdLength: 9, nonceLength: 9, key: VECTOR_KEY },
      "ed793a51d49b8f5fab",
      "ee080dbf48c0d1e55d",
      "125779c9cc86beb3a3a4a3ca96fce4bfe0cdbc",
    );
  });

  it("round-trips every server ID / nonce split, with and without a key", () => {
    const rng = new SeededRandom(42);
    const bytes = (n: number): Buffer => rng.bytes(n);
    for (let total = 5; total <= 19; total++) {
      for (let sid = 1; sid <= Math.min(15, total - 4); sid++) {
        for (const key of [undefined, bytes(16)]) {
          const codec = new QuicLbCodec({ configId: total % 7, serverIdLength: sid, nonceLength: total - sid, key });
          for (let i = 0; i < 5; i++) {
            const serverId = bytes(sid);
            const cid = codec.encode(serverId, bytes(total - sid));
            expect(cid.length).toBe(total + 1);
            expect(configRotationOf(cid[0]!)).toBe(total % 7);
            expect(cid[0]! & 0x1f).toBe(total);
            expect(codec.decodeServerId(cid)).toEqual(serverId);
          }
        }
      }
    }
  });

  it("encrypted CIDs of one server share no visible server ID bytes", () => {
    const codec = new QuicLbCodec({ configId: 0, serverIdLength: 2, nonceLength: 6, key: VECTOR_KEY });
    const a = codec.encode(hex("0001"), hex("000000000001"));
    const b = codec.encode(hex("0001"), hex("000000000002"));
    expect(a.subarray(1, 3).equals(b.subarray(1, 3))).toBe(false);
  });

  it("§3.1: another config's rotation bits or a too-short CID decode to nothing", () => {
    const codec = new QuicLbCodec({ configId: 3, serverIdLength: 2, nonceLength: 4 });
    const cid = codec.encode(hex("abcd"), hex("01020304"));
    expect(codec.decodeServerId(cid.subarray(0, 6))).toBeUndefined();
    const other = Buffer.from(cid);
    other[0] = (2 << 5) | 6;
    expect(codec.decodeServerId(other)).toBeUndefined();
  });

  it("§2.3: without length encoding the low bits are the caller's random bits", () => {
    const codec = new QuicLbCodec({ configId: 5, serverIdLength: 2, nonceLength: 4, key: VECTOR_KEY, encodeLength: false });
    const cid = codec.encode(hex("6964"), hex("61626364"), 0x1b);
    expect(cid[0]).toBe(0xbb);
    expect(codec.decodeServerId(cid)?.toString("hex")).toBe("6964");
  });

  it("rejects configurations outside §4.2 with the field named", () => {
    const bad: Array<[Partial<QuicLbConfig>, string]> = [
      [{ configId: 7 }, "configId"],
      [{ serverIdLength: 0 }, "serverIdLength"],
      [{ nonceLength: 3 }, "nonceLength"],
      [{ serverIdLength: 15, nonceLength: 5 }, "nonceLength"],
      [{ key: Buffer.alloc(15) }, "key"],
    ];
    for (const [patch, field] of bad) {
      const attempt = (): QuicLbCodec => new QuicLbCodec({ configId: 0, serverIdLength: 1, nonceLength: 4, ...patch });
      expect(attempt).toThrow(QuicLbConfigError);
      expect(attempt).toThrow(new RegExp(`^${field}:`));
    }
  });

  it("the generator issues distinct CIDs that decode to its server ID, and counts nonces when keyed (§8.6)", () => {
    const config = { configId: 1, serverIdLength: 1, nonceLength: 4, key: VECTOR_KEY };
    const generate = quicLbConnectionIdGenerator(config, hex("07"));
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const cid = generate(i);
      seen.add(cid.toString("hex"));
      expect(generate.codec.decodeServerId(cid)?.toString("hex")).toBe("07");
    }
    expect(seen.size).toBe(1000);
  });

  it("§2.2: a fallback CID carries config rotation 0b111 and keeps its length", () => {
    const cid = unroutableConnectionId(9);
    expect(cid.length).toBe(9);
    expect(configRotationOf(cid[0]!)).toBe(UNROUTABLE_CONFIG_ID);
  });
});
