/**
 * From a packet capture and an NSS key log to a verdict on a preferred-address move (RFC 9000 §9.6), read
 * from packets alone: which frames went over which 4-tuple, before and after the move.
 *
 * 1-RTT packets are opened with keys derived from CLIENT_TRAFFIC_SECRET_0 / SERVER_TRAFFIC_SECRET_0 (as
 * Wireshark does; key updates followed with "quic ku", RFC 9001 §6); long-header packets are classified by
 * type only. Probing frames are RFC 9000 §9.1's: PATH_CHALLENGE, PATH_RESPONSE, NEW_CONNECTION_ID, PADDING.
 *
 * The move is the client's first non-probing packet on the preferred path (PA-09). "After the move" is judged
 * in each sender's own order, read from the packets themselves rather than from the capture clock: the capture
 * point sees a datagram before the receiving process has read it, so a server packet captured just after the
 * client's move may have been built before the server knew of it. So:
 *   - a client packet is after the move when its packet number is at or above the move packet's;
 *   - a server packet is after the move when it acknowledges the client's move packet (or a later one), or its
 *     packet number is at or above the server's own first non-probing packet on the preferred path (PA-19).
 * The verdict (checklist IDs of ../../../shared/spec/preferred-address.md):
 *   - handshake: every long-header packet travelled on the original path (the Initial went to the original address);
 *   - PA-08: what the client sent on the preferred path before the server's first PATH_RESPONSE there (so before
 *     the client could have validated it) was probing only;
 *   - PA-17: the server's first non-probing packet on the preferred path is captured after the client's;
 *   - PA-09/PA-19: after the move, no STREAM frame on the original path in either direction, and STREAM frames on
 *     the preferred path.
 */
import { CIPHER_SUITES, type CipherSuite } from "../../node-images/quic/crypto/cipher-suites.ts";
import { parseFrames, type Frame } from "../../node-images/quic/frames.ts";
import { openPacket, parseUnprotectedHeader, type PacketType } from "../../node-images/quic/packet-header.ts";
import { derivePacketKeys, nextKeyPhaseKeys, nextKeyPhaseSecret, type PacketKeys } from "../../node-images/quic/packet-protection.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import type { UdpDatagramRecord } from "./pcap.ts";

export type Direction = "client_to_server" | "server_to_client";
export type PathName = "original" | "preferred" | "other";

/** RFC 9000 §9.1: a packet with only these frames is a probing packet. */
const PROBING_FRAMES: ReadonlySet<Frame["type"]> = new Set(["path_challenge", "path_response", "new_connection_id", "padding"]);

export class KeyLogError extends Error {
  override readonly name = "KeyLogError";
  readonly code = "KEY_LOG_INVALID";
}

export interface KeyLogSecret {
  clientRandom: string;
  secret: Buffer;
}

/** NSS key log text (one `LABEL <client random hex> <secret hex>` per line, # comments) by label. */
export function parseKeyLog(text: string, file = "key log"): Map<string, KeyLogSecret> {
  const out = new Map<string, KeyLogSecret>();
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Z_0-9]+) ([0-9a-fA-F]{64}) ([0-9a-fA-F]+)$/.exec(line);
    if (!m) throw new KeyLogError(`${file}:${i + 1}: expected "LABEL <64 hex> <hex secret>", got ${JSON.stringify(line.slice(0, 80))}`);
    out.set(m[1]!, { clientRandom: m[2]!.toLowerCase(), secret: Buffer.from(m[3]!, "hex") });
  }
  return out;
}

export interface QuicPacketRecord {
  type: PacketType;
  /** Decrypted 1-RTT packets: the full packet number, and the largest packet number its ACK frames acknowledge. */
  packetNumber?: number;
  largestAcked?: number;
  /** Frame types of a decrypted packet; undefined when it was not decrypted (long headers, or no key). */
  frames: Frame["type"][] | undefined;
  /**
   * A short-header datagram that did not decrypt and whose DCID is none the receiver ever issued: a stateless
   * reset (RFC 9000 §10.3) or another connection's packet. The receiver cannot deliver it to this connection,
   * so it cannot carry this connection's data; it is counted apart from `undecryptable`.
   */
  foreignCid?: boolean;
}

export interface QuicDatagramRecord {
  index: number;
  timeUs: number;
  direction: Direction;
  path: PathName;
  client: SocketAddress;
  server: SocketAddress;
  bytes: number;
  packets: QuicPacketRecord[];
}

export interface ClassifyOptions {
  original: SocketAddress;
  preferred: SocketAddress;
  keyLog: Map<string, KeyLogSecret>;
  /** Length of the connection IDs both endpoints issue (short headers do not say). */
  connectionIdLength: number;
}

export interface ClassifiedCapture {
  datagrams: QuicDatagramRecord[];
  /** 1-RTT packets with one of the connection's CIDs that no logged key opened (these could hide data). */
  undecryptable: number;
  /** Short-header datagrams to a CID the receiver never issued (see QuicPacketRecord.foreignCid). */
  foreignCid: number;
  malformed: number;
  unrelated: number;
  cipherSuite: CipherSuite["name"] | undefined;
}

/** Keys of one direction across key updates: generation g has Key Phase bit g % 2. */
class DirectionKeys {
  private generations: PacketKeys[];
  private current = 0;
  largestPn: number | undefined;
  private readonly suite: CipherSuite;
  private secret: Buffer;

  constructor(suite: CipherSuite, secret: Buffer) {
    this.suite = suite;
    this.secret = secret;
    this.generations = [derivePacketKeys(suite, secret)];
  }

  private generation(g: number): PacketKeys {
    while (this.generations.length <= g) {
      this.secret = nextKeyPhaseSecret(this.suite, this.secret);
      this.generations.push(nextKeyPhaseKeys(this.generations[this.generations.length - 1]!, this.secret));
    }
    return this.generations[g]!;
  }

  /** Keys for a packet's Key Phase bit: the current generation, or the next one (a key update). */
  keysFor = (keyPhase: 0 | 1): PacketKeys => this.generation(keyPhase === this.current % 2 ? this.current : this.current + 1);

  accepted(keyPhase: 0 | 1, packetNumber: number): void {
    if (keyPhase !== this.current % 2) this.current++;
    this.largestPn = Math.max(this.largestPn ?? -1, packetNumber);
  }
}

function sameSocket(a: SocketAddress, b: SocketAddress): boolean {
  return a.address === b.address && a.port === b.port;
}

/** Picks the suite whose keys open a first 1-RTT packet (the key log does not name the suite). */
function detectSuite(records: readonly UdpDatagramRecord[], opts: ClassifyOptions): CipherSuite | undefined {
  const secret = opts.keyLog.get("SERVER_TRAFFIC_SECRET_0")?.secret;
  if (!secret) return undefined;
  const servers = [opts.original, opts.preferred];
  const firstShort = records.find((r) => servers.some((s) => sameSocket(s, r.src)) && r.payload.length > 0 && (r.payload[0]! & 0xc0) === 0x40);
  if (!firstShort) return undefined;
  for (const suite of Object.values(CIPHER_SUITES)) {
    if (suite.hashLength !== secret.length) continue;
    try {
      const header = parseUnprotectedHeader(firstShort.payload, 0, opts.connectionIdLength);
      if (openPacket(firstShort.payload, header, derivePacketKeys(suite, secret), undefined)) return suite;
    } catch {
      continue; // not this suite
    }
  }
  return undefined;
}

export function classifyCapture(records: readonly UdpDatagramRecord[], opts: ClassifyOptions): ClassifiedCapture {
  const suite = detectSuite(records, opts);
  const clientSecret = opts.keyLog.get("CLIENT_TRAFFIC_SECRET_0")?.secret;
  const serverSecret = opts.keyLog.get("SERVER_TRAFFIC_SECRET_0")?.secret;
  const keys: Record<Direction, DirectionKeys | undefined> = {
    client_to_server: suite && clientSecret ? new DirectionKeys(suite, clientSecret) : undefined,
    server_to_client: suite && serverSecret ? new DirectionKeys(suite, serverSecret) : undefined,
  };
  const out: ClassifiedCapture = { datagrams: [], undecryptable: 0, foreignCid: 0, malformed: 0, unrelated: 0, cipherSuite: suite?.name };
  // Connection IDs each side issued (hex): SCIDs of its long headers, its NEW_CONNECTION_ID frames, and the DCIDs
  // of packets sent to it that decrypted (the preferred address's CID travels encrypted in the handshake).
  const issuedBy: Record<"client" | "server", Set<string>> = { client: new Set(), server: new Set() };
  for (const r of records) {
    let direction: Direction;
    let server: SocketAddress;
    let client: SocketAddress;
    if (sameSocket(r.dst, opts.original) || sameSocket(r.dst, opts.preferred)) {
      direction = "client_to_server";
      server = r.dst;
      client = r.src;
    } else if (sameSocket(r.src, opts.original) || sameSocket(r.src, opts.preferred)) {
      direction = "server_to_client";
      server = r.src;
      client = r.dst;
    } else {
      out.unrelated++;
      continue;
    }
    const path: PathName = sameSocket(server, opts.original) ? "original" : sameSocket(server, opts.preferred) ? "preferred" : "other";
    const packets: QuicPacketRecord[] = [];
    // RFC 9000 §12.2: coalesced packets; a short header always runs to the end of the datagram.
    let offset = 0;
    for (let n = 0; n < 8 && offset < r.payload.length; n++) {
      let header;
      try {
        header = parseUnprotectedHeader(r.payload, offset, opts.connectionIdLength);
      } catch {
        out.malformed++;
        break;
      }
      if (header.form === "long") {
        if (header.scid) issuedBy[direction === "client_to_server" ? "client" : "server"].add(Buffer.from(header.scid).toString("hex"));
        packets.push({ type: header.type, frames: undefined });
        if (header.packetEnd <= offset) break;
        offset = header.packetEnd;
        continue;
      }
      const k = keys[direction];
      const packet: QuicPacketRecord = { type: "1rtt", frames: undefined };
      if (k) {
        try {
          const opened = openPacket(r.payload, header, k.keysFor, k.largestPn);
          if (opened) {
            k.accepted(opened.keyPhase, opened.packetNumber);
            const frames = parseFrames(opened.payload, "1rtt");
            packet.packetNumber = opened.packetNumber;
            packet.frames = frames.map((f) => f.type);
            issuedBy[direction === "client_to_server" ? "server" : "client"].add(Buffer.from(header.dcid).toString("hex"));
            for (const f of frames) {
              if (f.type === "new_connection_id") issuedBy[direction === "client_to_server" ? "client" : "server"].add(Buffer.from(f.connectionId).toString("hex"));
              if (f.type !== "ack") continue;
              for (const range of f.ranges) packet.largestAcked = Math.max(packet.largestAcked ?? -1, range.largest);
            }
          }
        } catch {
          out.malformed++;
        }
      }
      if (packet.frames === undefined) {
        const receiver = direction === "client_to_server" ? "server" : "client";
        if (issuedBy[receiver].has(Buffer.from(header.dcid).toString("hex"))) out.undecryptable++;
        else {
          packet.foreignCid = true;
          out.foreignCid++;
        }
      }
      packets.push(packet);
      break;
    }
    out.datagrams.push({ index: r.index, timeUs: r.timeUs, direction, path, client, server, bytes: r.payload.length, packets });
  }
  return out;
}

function isProbingOnly(d: QuicDatagramRecord): boolean {
  return d.packets.every((p) => p.frames !== undefined && p.frames.every((f) => PROBING_FRAMES.has(f)));
}

function carries(d: QuicDatagramRecord, frame: Frame["type"]): boolean {
  return d.packets.some((p) => p.frames?.includes(frame) === true);
}

export interface PathTally {
  datagrams: number;
  /** Datagrams carrying at least one packet or frame of each kind ("initial", "handshake", "stream", "ack", ...). */
  byKind: Record<string, number>;
}

export type Phase = "before_move" | "after_move";
type Tallies = Record<Phase, Record<Exclude<PathName, "other">, Record<Direction, PathTally>>>;

export interface MigrationCaptureVerdict {
  moved: boolean;
  /** Capture index and packet number of the client's first non-probing datagram on the preferred path (the move). */
  move: { index: number; packetNumber: number } | undefined;
  /** The server's first non-probing datagram on the preferred path (PA-19). */
  serverSwitch: { index: number; packetNumber: number } | undefined;
  /** Every long-header packet (Initial, Handshake) was on the original path, and there was at least one. */
  handshakeOnOriginalPath: boolean;
  /** PA-08: client datagrams on the preferred path before the server's first PATH_RESPONSE there, and how many were probing only. */
  pa08: { clientDatagramsBeforeValidation: number; probingOnly: number; holds: boolean };
  /** PA-17: the server moved only after the client's first non-probing packet there (vacuous when neither moved). */
  pa17Holds: boolean;
  /** Datagrams with STREAM frames on the original path after the move, per direction (the verdict wants 0, 0). */
  streamOnOriginalAfterMove: Record<Direction, number>;
  streamOnPreferredAfterMove: Record<Direction, number>;
  /** The claim under test: after the move, application data flowed on the preferred path only. */
  dataOnlyOnPreferredAfterMove: boolean;
  /** Before the move, datagrams with application data on the original path (both directions together). */
  dataOnOriginalBeforeMove: number;
  /** Server datagrams on the original path captured after the move but sent before the server knew of it. */
  serverInFlightOnOriginal: { datagrams: number; withStream: number };
  tallies: Tallies;
  otherPathDatagrams: number;
  undecryptable: number;
  foreignCid: number;
}

function emptyTally(): PathTally {
  return { datagrams: 0, byKind: {} };
}

function emptyTallies(): Tallies {
  const side = () => ({ client_to_server: emptyTally(), server_to_client: emptyTally() });
  return { before_move: { original: side(), preferred: side() }, after_move: { original: side(), preferred: side() } };
}

function shortPacket(d: QuicDatagramRecord): QuicPacketRecord | undefined {
  return d.packets.find((p) => p.type === "1rtt" && p.packetNumber !== undefined);
}

/** The datagram with the lowest packet number among those matching (sender order, not capture order). */
function firstBySender(ds: readonly QuicDatagramRecord[], match: (d: QuicDatagramRecord) => boolean): { index: number; packetNumber: number } | undefined {
  let best: { index: number; packetNumber: number } | undefined;
  for (const d of ds) {
    const pn = shortPacket(d)?.packetNumber;
    if (pn === undefined || !match(d)) continue;
    if (best === undefined || pn < best.packetNumber) best = { index: d.index, packetNumber: pn };
  }
  return best;
}

export function judgeMigration(capture: ClassifiedCapture): MigrationCaptureVerdict {
  const ds = capture.datagrams;
  const nonProbing = (d: QuicDatagramRecord) => !isProbingOnly(d);
  const move = firstBySender(ds, (d) => d.path === "preferred" && d.direction === "client_to_server" && nonProbing(d));
  const serverSwitch = firstBySender(ds, (d) => d.path === "preferred" && d.direction === "server_to_client" && nonProbing(d));
  const firstResponse = ds.find((d) => d.path === "preferred" && d.direction === "server_to_client" && carries(d, "path_response"));

  /** Sender order: see the header comment. Long-header datagrams (the handshake) are always before. */
  const afterMove = (d: QuicDatagramRecord): boolean => {
    if (move === undefined) return false;
    const p = shortPacket(d);
    if (p === undefined) return d.packets.some((q) => q.type === "1rtt") && d.index >= move.index; // undecrypted: capture order
    if (d.direction === "client_to_server") return p.packetNumber! >= move.packetNumber;
    return (p.largestAcked !== undefined && p.largestAcked >= move.packetNumber) || (serverSwitch !== undefined && p.packetNumber! >= serverSwitch.packetNumber);
  };

  const tallies = emptyTallies();
  let otherPathDatagrams = 0;
  const streamOnOriginalAfterMove = { client_to_server: 0, server_to_client: 0 };
  const streamOnPreferredAfterMove = { client_to_server: 0, server_to_client: 0 };
  const serverInFlightOnOriginal = { datagrams: 0, withStream: 0 };
  let dataOnOriginalBeforeMove = 0;
  for (const d of ds) {
    if (d.path === "other") {
      otherPathDatagrams++;
      continue;
    }
    const after = afterMove(d);
    const t = tallies[after ? "after_move" : "before_move"][d.path][d.direction];
    t.datagrams++;
    const kinds = new Set<string>();
    for (const p of d.packets) {
      if (p.type !== "1rtt") kinds.add(p.type);
      else if (p.foreignCid) kinds.add("foreign_cid");
      else if (p.frames === undefined) kinds.add("undecrypted");
      else for (const f of p.frames) kinds.add(f);
    }
    for (const k of kinds) t.byKind[k] = (t.byKind[k] ?? 0) + 1;
    const stream = kinds.has("stream");
    if (after && stream) (d.path === "original" ? streamOnOriginalAfterMove : streamOnPreferredAfterMove)[d.direction]++;
    if (!after && stream && d.path === "original") dataOnOriginalBeforeMove++;
    if (!after && move !== undefined && d.index > move.index && d.path === "original" && d.direction === "server_to_client") {
      serverInFlightOnOriginal.datagrams++;
      if (stream) serverInFlightOnOriginal.withStream++;
    }
  }

  const longHeader = ds.filter((d) => d.packets.some((p) => p.type !== "1rtt"));
  const handshakeOnOriginalPath = longHeader.length > 0 && longHeader.every((d) => d.path === "original");

  const beforeValidation = ds.filter(
    (d) => d.path === "preferred" && d.direction === "client_to_server" && (firstResponse === undefined || d.index < firstResponse.index),
  );
  const probingOnly = beforeValidation.filter(isProbingOnly).length;
  const pa08 = { clientDatagramsBeforeValidation: beforeValidation.length, probingOnly, holds: probingOnly === beforeValidation.length };

  const pa17Holds = serverSwitch === undefined || (move !== undefined && move.index < serverSwitch.index);
  const dataOnlyOnPreferredAfterMove =
    move !== undefined &&
    capture.undecryptable === 0 &&
    streamOnOriginalAfterMove.client_to_server === 0 &&
    streamOnOriginalAfterMove.server_to_client === 0 &&
    streamOnPreferredAfterMove.client_to_server + streamOnPreferredAfterMove.server_to_client > 0;
  return {
    moved: move !== undefined,
    move,
    serverSwitch,
    handshakeOnOriginalPath,
    pa08,
    pa17Holds,
    streamOnOriginalAfterMove,
    streamOnPreferredAfterMove,
    dataOnlyOnPreferredAfterMove,
    dataOnOriginalBeforeMove,
    serverInFlightOnOriginal,
    tallies,
    otherPathDatagrams,
    undecryptable: capture.undecryptable,
    foreignCid: capture.foreignCid,
  };
}
