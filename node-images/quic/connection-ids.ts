/**
 * Connection IDs (RFC 9000 §5.1): the ones we issue to the peer and the ones the peer issued to us.
 * Plain data, serialisable. The generator is pluggable so the LB's QUIC-LB encoded server IDs fit in.
 */
import { randomBytes } from "node:crypto";
import { QuicTransportError } from "./errors.ts";
import { ownedCopy } from "./varint.ts";

/** Makes the connection ID with a given sequence number. QUIC-LB plugs in here. */
export type ConnectionIdGenerator = (sequenceNumber: number) => Buffer;

export function randomConnectionIdGenerator(length: number): ConnectionIdGenerator {
  return () => randomBytes(length);
}

export interface IssuedConnectionId {
  sequenceNumber: number;
  connectionId: Buffer;
  statelessResetToken: Buffer;
  retired: boolean;
}

/** Connection IDs we issued; the peer addresses packets to us with these. */
export class LocalConnectionIds {
  readonly issued: IssuedConnectionId[] = [];
  private nextSequence = 0;
  /** NEW_CONNECTION_ID frames waiting to be sent (sequence numbers). */
  readonly pendingAnnouncements: number[] = [];
  retirePriorTo = 0;

  private readonly generate: ConnectionIdGenerator;
  private readonly resetTokenFor: (cid: Buffer) => Buffer;

  constructor(generate: ConnectionIdGenerator, resetTokenFor: (cid: Buffer) => Buffer) {
    this.generate = generate;
    this.resetTokenFor = resetTokenFor;
  }

  /** Issue a new CID. `announce` queues a NEW_CONNECTION_ID frame (not for seq 0 or the preferred address's seq 1). */
  issue(announce: boolean): IssuedConnectionId {
    const sequenceNumber = this.nextSequence++;
    const connectionId = this.generate(sequenceNumber);
    const entry = { sequenceNumber, connectionId, statelessResetToken: this.resetTokenFor(connectionId), retired: false };
    this.issued.push(entry);
    if (announce) this.pendingAnnouncements.push(sequenceNumber);
    return entry;
  }

  active(): IssuedConnectionId[] {
    return this.issued.filter((c) => !c.retired);
  }

  bySequence(sequenceNumber: number): IssuedConnectionId | undefined {
    return this.issued.find((c) => c.sequenceNumber === sequenceNumber);
  }

  has(cid: Uint8Array): boolean {
    return this.issued.some((c) => !c.retired && Buffer.compare(c.connectionId, cid) === 0);
  }

  /** Issue until `limit` are active (the peer's active_connection_id_limit, §5.1.1). */
  topUp(limit: number): IssuedConnectionId[] {
    const added: IssuedConnectionId[] = [];
    while (this.active().length < limit) added.push(this.issue(true));
    return added;
  }

  /** RETIRE_CONNECTION_ID from the peer (§19.16). `packetDcid` is the DCID of the packet that carried it. */
  onRetire(sequenceNumber: number, packetDcid: Uint8Array): IssuedConnectionId | undefined {
    if (sequenceNumber >= this.nextSequence) {
      throw new QuicTransportError("PROTOCOL_VIOLATION", `RETIRE_CONNECTION_ID for unissued sequence ${sequenceNumber}`, 0x19);
    }
    const entry = this.bySequence(sequenceNumber);
    if (!entry || entry.retired) return undefined;
    if (Buffer.compare(entry.connectionId, packetDcid) === 0) {
      throw new QuicTransportError("PROTOCOL_VIOLATION", "RETIRE_CONNECTION_ID retires the CID of its own packet", 0x19);
    }
    entry.retired = true;
    return entry;
  }

  toJSON(): object {
    return {
      issued: this.issued.map((c) => ({ ...c, connectionId: c.connectionId.toString("hex"), statelessResetToken: c.statelessResetToken.toString("hex") })),
      nextSequence: this.nextSequence,
      retirePriorTo: this.retirePriorTo,
    };
  }
}

export interface PeerConnectionId {
  sequenceNumber: number;
  connectionId: Buffer;
  statelessResetToken: Buffer | undefined;
  /** Path id using it, if any (§9.5: one CID per path). */
  inUseByPath: number | undefined;
}

/** Connection IDs the peer issued to us; we address packets to the peer with these. */
export class PeerConnectionIds {
  readonly available: PeerConnectionId[] = [];
  /** Sequence numbers to send RETIRE_CONNECTION_ID for. */
  readonly pendingRetirements: number[] = [];
  private retirePriorTo = 0;
  private readonly limit: number;

  constructor(initial: PeerConnectionId, activeConnectionIdLimit: number) {
    this.available.push(initial);
    this.limit = activeConnectionIdLimit;
  }

  /**
   * The CID a path uses; assigns an unused one when the path has none (PA-07, PA-29). `preferSequence` picks
   * that one if it is unused (the preferred address's sequence 1 for the path toward it).
   */
  forPath(pathId: number, preferSequence?: number): PeerConnectionId | undefined {
    const current = this.available.find((c) => c.inUseByPath === pathId);
    if (current) return current;
    const fresh = (preferSequence !== undefined ? this.available.find((c) => c.sequenceNumber === preferSequence && c.inUseByPath === undefined) : undefined)
      ?? this.available.find((c) => c.inUseByPath === undefined);
    if (fresh) fresh.inUseByPath = pathId;
    return fresh;
  }

  /** The server learns the client's chosen SCID in the first packet; the client replaces the initial DCID with the server's SCID. */
  replaceInitial(connectionId: Buffer): void {
    const first = this.available.find((c) => c.sequenceNumber === 0);
    if (first) first.connectionId = connectionId;
  }

  /** The CID a path uses, without assigning one. */
  usedByPath(pathId: number): PeerConnectionId | undefined {
    return this.available.find((c) => c.inUseByPath === pathId);
  }

  /** CIDs not used on any path yet (PA-30: a move needs one). */
  get unusedCount(): number {
    let n = 0;
    for (const c of this.available) if (c.inUseByPath === undefined) n++;
    return n;
  }

  /**
   * PA-04: the preferred address's CID and reset token are sequence 1, exactly as if a NEW_CONNECTION_ID had
   * carried them (§5.1.1): they count against active_connection_id_limit and may be used on any path.
   */
  addPreferredAddressCid(connectionId: Buffer, statelessResetToken: Buffer): void {
    this.onNewConnectionId({ sequenceNumber: 1, retirePriorTo: 0, connectionId, statelessResetToken });
  }

  setInitialResetToken(token: Buffer): void {
    const first = this.available.find((c) => c.sequenceNumber === 0);
    if (first) first.statelessResetToken = token;
  }

  /** NEW_CONNECTION_ID (§19.15), including retire_prior_to (§5.1.2). */
  onNewConnectionId(f: { sequenceNumber: number; retirePriorTo: number; connectionId: Uint8Array; statelessResetToken: Uint8Array }): void {
    const existing = this.available.find((c) => c.sequenceNumber === f.sequenceNumber);
    if (existing) {
      if (Buffer.compare(existing.connectionId, f.connectionId) !== 0) {
        throw new QuicTransportError("PROTOCOL_VIOLATION", "NEW_CONNECTION_ID reuses a sequence number with another CID", 0x18);
      }
      return;
    }
    if (f.sequenceNumber < this.retirePriorTo) {
      // Already retired by an earlier retire_prior_to: retire it immediately (§19.15).
      this.pendingRetirements.push(f.sequenceNumber);
      return;
    }
    this.available.push({
      sequenceNumber: f.sequenceNumber,
      connectionId: ownedCopy(f.connectionId),
      statelessResetToken: ownedCopy(f.statelessResetToken),
      inUseByPath: undefined,
    });
    if (f.retirePriorTo > this.retirePriorTo) {
      this.retirePriorTo = f.retirePriorTo;
      for (const c of this.available.filter((c) => c.sequenceNumber < f.retirePriorTo)) this.retire(c.sequenceNumber);
    }
    if (this.available.length > this.limit) {
      throw new QuicTransportError("CONNECTION_ID_LIMIT_ERROR", `peer exceeded active_connection_id_limit ${this.limit}`, 0x18);
    }
  }

  /** Stop using a CID and tell the peer. Paths using it must pick another with forPath(). */
  retire(sequenceNumber: number): void {
    const i = this.available.findIndex((c) => c.sequenceNumber === sequenceNumber);
    if (i < 0) return;
    this.available.splice(i, 1);
    this.pendingRetirements.push(sequenceNumber);
  }

  isStatelessResetToken(token: Uint8Array): boolean {
    return this.available.some((c) => c.statelessResetToken !== undefined && Buffer.compare(c.statelessResetToken, token) === 0);
  }

  toJSON(): object {
    return {
      available: this.available.map((c) => ({
        ...c,
        connectionId: c.connectionId.toString("hex"),
        statelessResetToken: c.statelessResetToken?.toString("hex"),
      })),
      pendingRetirements: this.pendingRetirements,
      retirePriorTo: this.retirePriorTo,
    };
  }
}
