/**
 * QUIC-LB connection IDs (draft-ietf-quic-load-balancers-21): a server encodes its server ID in
 * every CID it issues, so a stateless load balancer routes any packet, on any client address, to
 * the server that holds the connection.
 *
 *   CID = First Octet (config rotation:3, length or random:5) ‖ Server ID ‖ Nonce      (§2.4, §4.1)
 *
 * Without a key the server ID is in plaintext; with a key the Server ID ‖ Nonce block is encrypted
 * with AES-128-ECB: one pass when it is exactly 16 octets (§4.3.1), otherwise a four-round Feistel
 * network whose round function is AES-ECB (§4.3.2). The load balancer's decoding is §4.4.
 *
 * The encoder plugs into the core as a ConnectionIdGenerator (connection-ids.ts); the LB router
 * (node-images/lb/router.ts) uses the decoder.
 */
import { createCipheriv, createDecipheriv, randomBytes, type Cipheriv, type Decipheriv } from "node:crypto";
import type { ConnectionIdGenerator } from "./connection-ids.ts";

/** §2.2: config rotation 0b111 means "no QUIC-LB configuration: route by the 4-tuple". */
export const UNROUTABLE_CONFIG_ID = 7;
/** RFC 9000 §17.2: version 1 connection IDs are at most 20 octets. */
const MAX_CID_BYTES = 20;
const AES_BLOCK_BYTES = 16;

export interface QuicLbConfig {
  /** Config rotation codepoint, 0..6 (§2.1). */
  configId: number;
  /** Octets of server ID, at least 1 (§3.3). */
  serverIdLength: number;
  /** Octets of nonce, at least 4; server ID + nonce ≤ 19 (§4.2). */
  nonceLength: number;
  /** 16-octet AES-128 key; none means the plaintext algorithm. */
  key?: Uint8Array;
  /** Write the CID length (minus one) into the first octet's low 5 bits (§2.3). Default true. */
  encodeLength?: boolean;
}

export class QuicLbConfigError extends Error {
  override readonly name = "QuicLbConfigError";
  readonly code = "QUIC_LB_CONFIG_INVALID";
  /** The config field at fault, e.g. `nonceLength`. */
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** §4.2 and the YANG model's ranges (Appendix A). Throws QuicLbConfigError naming the field. */
export function validateQuicLbConfig(config: QuicLbConfig): void {
  const int = (v: number): boolean => Number.isInteger(v);
  if (!int(config.configId) || config.configId < 0 || config.configId > 6) {
    throw new QuicLbConfigError("configId", `expected 0..6 (7 is reserved for unroutable CIDs), got ${config.configId}`);
  }
  if (!int(config.serverIdLength) || config.serverIdLength < 1 || config.serverIdLength > 15) {
    throw new QuicLbConfigError("serverIdLength", `expected 1..15 octets, got ${config.serverIdLength}`);
  }
  if (!int(config.nonceLength) || config.nonceLength < 4 || config.nonceLength > 18) {
    throw new QuicLbConfigError("nonceLength", `expected 4..18 octets, got ${config.nonceLength}`);
  }
  if (config.serverIdLength + config.nonceLength > MAX_CID_BYTES - 1) {
    throw new QuicLbConfigError("nonceLength", `server ID and nonce must sum to at most 19 octets, got ${config.serverIdLength + config.nonceLength}`);
  }
  if (config.key !== undefined && config.key.length !== AES_BLOCK_BYTES) {
    throw new QuicLbConfigError("key", `expected 16 octets, got ${config.key.length}`);
  }
}

/** The config rotation bits of a CID's first octet. */
export function configRotationOf(firstOctet: number): number {
  return firstOctet >>> 5;
}

/** Encoder and decoder for one configuration. Holds the AES context, so build it once. */
export class QuicLbCodec {
  readonly config: Readonly<QuicLbConfig>;
  /** Octets of a CID under this config: first octet, server ID, nonce. */
  readonly connectionIdLength: number;
  private readonly plaintextLength: number;
  private readonly halfLength: number;
  private readonly odd: boolean;
  // ECB has no chaining: one context encrypts any number of independent blocks through update().
  private readonly encryptor: Cipheriv | undefined;
  private readonly decryptor: Decipheriv | undefined;

  constructor(config: QuicLbConfig) {
    validateQuicLbConfig(config);
    this.config = { ...config, key: config.key ? Buffer.from(config.key) : undefined };
    this.plaintextLength = config.serverIdLength + config.nonceLength;
    this.connectionIdLength = 1 + this.plaintextLength;
    this.halfLength = Math.ceil(this.plaintextLength / 2);
    this.odd = this.plaintextLength % 2 === 1;
    if (config.key) {
      this.encryptor = createCipheriv("aes-128-ecb", config.key, null).setAutoPadding(false);
      if (this.plaintextLength === AES_BLOCK_BYTES) this.decryptor = createDecipheriv("aes-128-ecb", config.key, null).setAutoPadding(false);
    }
  }

  /**
   * The CID for `serverId` and `nonce` (§4.3). `lowBits` fills the first octet's five low bits when
   * the length is not encoded (§2.3: they should look random).
   */
  encode(serverId: Uint8Array, nonce: Uint8Array, lowBits = 0): Buffer {
    const { serverIdLength, nonceLength } = this.config;
    if (serverId.length !== serverIdLength) throw new RangeError(`server ID must be ${serverIdLength} octets, got ${serverId.length}`);
    if (nonce.length !== nonceLength) throw new RangeError(`nonce must be ${nonceLength} octets, got ${nonce.length}`);
    const cid = Buffer.alloc(this.connectionIdLength);
    const low = (this.config.encodeLength ?? true) ? this.plaintextLength : lowBits & 0x1f;
    cid[0] = (this.config.configId << 5) | low;
    const plaintext = Buffer.concat([serverId, nonce]);
    const block = !this.encryptor ? plaintext : this.plaintextLength === AES_BLOCK_BYTES ? this.aes(plaintext) : this.feistelEncrypt(plaintext);
    block.copy(cid, 1);
    return cid;
  }

  /**
   * The server ID in `cid` (§4.4), or undefined when the CID does not belong to this config: wrong
   * config rotation bits or too short to decode (§3.1 "unroutable").
   */
  decodeServerId(cid: Uint8Array): Buffer | undefined {
    if (cid.length < this.connectionIdLength || configRotationOf(cid[0]!) !== this.config.configId) return undefined;
    const block = cid.subarray(1, this.connectionIdLength);
    const sidLength = this.config.serverIdLength;
    if (!this.encryptor) return Buffer.from(block.subarray(0, sidLength));
    if (this.decryptor) return this.decryptor.update(block).subarray(0, sidLength);
    return this.feistelDecrypt(block, sidLength).subarray(0, sidLength);
  }

  private aes(block: Uint8Array): Buffer {
    return this.encryptor!.update(block);
  }

  /** §4.3.2.2 expand(): the half ‖ zero padding ‖ plaintext length ‖ pass number, 16 octets. */
  private round(pass: number, half: Buffer): Buffer {
    const input = Buffer.alloc(AES_BLOCK_BYTES);
    half.copy(input, 0);
    input[14] = this.plaintextLength;
    input[15] = pass;
    return this.aes(input).subarray(0, this.halfLength);
  }

  // With an odd length the middle octet is split: left keeps its high nibble, right its low one.
  private clearLeft(left: Buffer): Buffer {
    if (this.odd) left[this.halfLength - 1]! &= 0xf0;
    return left;
  }

  private clearRight(right: Buffer): Buffer {
    if (this.odd) right[0]! &= 0x0f;
    return right;
  }

  private split(block: Uint8Array): { left: Buffer; right: Buffer } {
    const left = this.clearLeft(Buffer.from(block.subarray(0, this.halfLength)));
    const right = this.clearRight(Buffer.from(block.subarray(block.length - this.halfLength)));
    return { left, right };
  }

  private join(left: Buffer, right: Buffer): Buffer {
    const out = Buffer.alloc(this.plaintextLength);
    left.copy(out, 0);
    // The shared middle octet (odd length) is the OR of left's high and right's low nibble.
    if (this.odd) {
      out[this.halfLength - 1]! |= right[0]!;
      right.copy(out, this.halfLength, 1);
    } else {
      right.copy(out, this.halfLength);
    }
    return out;
  }

  /** §4.3.2.3 steps 2-12. */
  private feistelEncrypt(plaintext: Buffer): Buffer {
    const { left: left0, right: right0 } = this.split(plaintext);
    const right1 = this.clearRight(xor(right0, this.round(1, left0)));
    const left1 = this.clearLeft(xor(left0, this.round(2, right1)));
    const right2 = this.clearRight(xor(right1, this.round(3, left1)));
    const left2 = this.clearLeft(xor(left1, this.round(4, right2)));
    return this.join(left2, right2);
  }

  /** §4.4.2: three passes when the server ID fits in left_0, a fourth otherwise. */
  private feistelDecrypt(ciphertext: Uint8Array, sidLength: number): Buffer {
    const { left: left2, right: right2 } = this.split(ciphertext);
    const left1 = this.clearLeft(xor(left2, this.round(4, right2)));
    const right1 = this.clearRight(xor(right2, this.round(3, left1)));
    const left0 = this.clearLeft(xor(left1, this.round(2, right1)));
    // left_0 holds whole octets 0..half-1 (even length) or 0..half-2 (odd: its last octet is half a nibble).
    const wholeOctetsInLeft = this.odd ? this.halfLength - 1 : this.halfLength;
    if (sidLength <= wholeOctetsInLeft) return left0;
    const right0 = this.clearRight(xor(right1, this.round(1, left0)));
    return this.join(left0, right0);
  }
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/**
 * A ConnectionIdGenerator for a server with `serverId` under `config`. Nonces: random when there
 * is no key (§4.3: no observable relation between CIDs); with a key, a counter from a random start,
 * never reused (§8.6). When the counter comes back to its start the nonce space is exhausted and
 * the generator falls back to 4-tuple-routed CIDs (config rotation 0b111, §8.6, §2.2).
 */
export function quicLbConnectionIdGenerator(
  config: QuicLbConfig,
  serverId: Uint8Array,
  random: (n: number) => Buffer = randomBytes,
): ConnectionIdGenerator & { readonly codec: QuicLbCodec; readonly exhausted: boolean } {
  const codec = new QuicLbCodec(config);
  if (serverId.length !== config.serverIdLength) {
    throw new QuicLbConfigError("serverId", `expected ${config.serverIdLength} octet(s), got ${serverId.length}`);
  }
  const counter = random(config.nonceLength);
  const start = Buffer.from(counter);
  let exhausted = false;
  const generate = (): Buffer => {
    if (exhausted) return unroutableConnectionId(codec.connectionIdLength, random);
    if (!config.key) return codec.encode(serverId, random(config.nonceLength), random(1)[0]!);
    const cid = codec.encode(serverId, counter, random(1)[0]!);
    increment(counter);
    if (counter.equals(start)) exhausted = true;
    return cid;
  };
  return Object.defineProperties(generate, {
    codec: { value: codec },
    exhausted: { get: () => exhausted },
  }) as unknown as ConnectionIdGenerator & { readonly codec: QuicLbCodec; readonly exhausted: boolean };
}

/** §2.2: a CID with config rotation 0b111 and random remaining bits, for servers without a config. */
export function unroutableConnectionId(length: number, random: (n: number) => Buffer = randomBytes): Buffer {
  const cid = random(length);
  cid[0] = (UNROUTABLE_CONFIG_ID << 5) | (cid[0]! & 0x1f);
  return cid;
}

function increment(counter: Buffer): void {
  for (let i = counter.length - 1; i >= 0; i--) {
    counter[i] = (counter[i]! + 1) & 0xff;
    if (counter[i] !== 0) return;
  }
}
