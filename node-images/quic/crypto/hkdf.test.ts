import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../common/seeded-random.ts";
import { hkdfExpand, hkdfExtract, hkdfExpandLabel, hmac } from "./hkdf.ts";

describe("HKDF", () => {
  it("RFC 5869 test case 1 (SHA-256)", () => {
    const ikm = Buffer.alloc(22, 0x0b);
    const salt = Buffer.from("000102030405060708090a0b0c", "hex");
    const info = Buffer.from("f0f1f2f3f4f5f6f7f8f9", "hex");
    const prk = hkdfExtract("sha256", salt, ikm);
    expect(prk.toString("hex")).toBe("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
    expect(hkdfExpand("sha256", prk, info, 42).toString("hex")).toBe(
      "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    );
  });

  it("RFC 9001 §A.1 client initial key via HKDF-Expand-Label", () => {
    const initialSalt = Buffer.from("38762cf7f55934b34d179ae6a4c80cadccbb7f0a", "hex");
    const dcid = Buffer.from("8394c8f03e515708", "hex");
    const initialSecret = hkdfExtract("sha256", initialSalt, dcid);
    const client = hkdfExpandLabel("sha256", initialSecret, "client in", Buffer.alloc(0), 32);
    expect(client.toString("hex")).toBe("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea");
    expect(hkdfExpandLabel("sha256", client, "quic key", Buffer.alloc(0), 16).toString("hex")).toBe(
      "1f369613dd76d5467730efcbe3b1a22d",
    );
  });

  it("RFC 2104 HMAC on createHash matches node:crypto's HMAC (SHA-256, SHA-384; keys shorter than, equal to and longer than a block)", () => {
    const rng = new SeededRandom(2104);
    for (const hash of ["sha256", "sha384"]) {
      for (const keyLength of [0, 1, 16, 32, 48, 63, 64, 65, 127, 128, 129, 200]) {
        const key = rng.bytes(keyLength);
        const a = rng.bytes(Math.floor(rng.next() * 100));
        const b = rng.bytes(Math.floor(rng.next() * 100));
        expect(hmac(hash, key, a, b).toString("hex")).toBe(createHmac(hash, key).update(a).update(b).digest("hex"));
      }
    }
  });
});
