/**
 * Connection migration (RFC 9000 §9) and the server's preferred address (§9.6), for both roles: which path
 * is validated, when the active path changes, and what happens when validation fails. The connection owns
 * the wire (packets, keys, CIDs); this module owns the decisions, like ngtcp2's `conn_select_preferred_addr`
 * plus `ngtcp2_pv` with its fallback. Checklist IDs (PA-xx) are ../../shared/spec/preferred-address.md's.
 *
 * Everything here is plain data and numbers, so it is cheap at 10,000 connections and serialises with the
 * connection (toJSON).
 */
import type { LocalConnectionIds, PeerConnectionIds } from "./connection-ids.ts";
import type { ConnectionEvent, MigrationReason } from "./events.ts";
import type { Frame } from "./frames.ts";
import { PathValidator, type RandomSource, type ValidationPurpose } from "./path-validation.ts";
import { pathAddressEquals, socketAddressEquals, type Path, type PathAddress, type SocketAddress } from "./path.ts";
import type { PreferredAddress } from "./preferred-address.ts";
import type { Instant } from "./time.ts";

/** What a client does with a server's preferred address. */
export type PreferredAddressPolicy = "follow" | "ignore" | "validate-only";

/** The spec's migration timeline (monotonic ms; each set once, at the first occurrence). */
export interface MigrationTimeline {
  handshakeConfirmed?: Instant;
  probeSent?: Instant;
  pathValidated?: Instant;
  firstDataOnNewPath?: Instant;
  serverSwitched?: Instant;
  oldPathRetired?: Instant;
  fallback?: { at: Instant; reason: string };
}

export interface MigrationStats {
  validationsStarted: number;
  validationsSucceeded: number;
  validationsFailed: number;
  /** PA-10: moves given up, the connection living on where it was. */
  fallbacks: number;
  /** Active path changes. */
  migrations: number;
  challengesReceived: number;
  challengesSent: number;
  responsesSent: number;
  /** PATH_RESPONSE whose data matches no outstanding challenge: ignored (§8.2.2 allows closing; we count). */
  responsesUnmatched: number;
  /** Challenges superseded by a newer one on the same path before we answered (a flood answers once). */
  responsesSuperseded: number;
  /** Responses or challenges not sent: no unused peer CID for that path (PA-29) or no amplification budget. */
  probesNotSent: number;
  /** Candidate paths dropped to admit a new one (a flood of new addresses). */
  pathsEvicted: number;
}

/** Paths a connection keeps at once (the active one, a fallback, candidates); a flood evicts the oldest. */
export const MAX_PATHS = 4;

/** What migration needs of the connection: its paths, CIDs, events and timers. */
export interface MigrationHost {
  readonly role: "client" | "server";
  readonly paths: Path[];
  activePath: Path;
  readonly peerCids: PeerConnectionIds;
  readonly localCids: LocalConnectionIds;
  readonly timeline: MigrationTimeline;
  readonly random: RandomSource;
  emit(event: ConnectionEvent): void;
  newPath(address: PathAddress, opts: { validated: boolean; amplificationLimited: boolean }): Path;
  /** PTO of a path now (RFC 9002 §6.2.1, with max_ack_delay once confirmed). */
  ptoMs(path: Path): number;
  /** PTO computed with kInitialRtt (PA-24's second term). */
  initialPtoMs(): number;
  peerPreferredAddress(): PreferredAddress | undefined;
  peerDisablesActiveMigration(): boolean;
  isHandshakeConfirmed(): boolean;
}

export class Migration {
  readonly policy: PreferredAddressPolicy;
  readonly stats: MigrationStats = {
    validationsStarted: 0,
    validationsSucceeded: 0,
    validationsFailed: 0,
    fallbacks: 0,
    migrations: 0,
    challengesReceived: 0,
    challengesSent: 0,
    responsesSent: 0,
    responsesUnmatched: 0,
    responsesSuperseded: 0,
    probesNotSent: 0,
    pathsEvicted: 0,
  };
  /** The server's address from the handshake (PA-11 is about it). */
  readonly handshakeRemote: SocketAddress;
  /** Client: state of the move to the preferred address. */
  preferredState: "none" | "unreachable" | "ignored" | "probing" | "validated" | "moved" | "failed" = "none";
  private readonly host: MigrationHost;
  private readonly validators: PathValidator[] = [];
  /** Latest challenge data to answer, per path id (PA-22: on the path it arrived on). */
  private readonly pendingResponses = new Map<number, Buffer>();
  /** Server: paths where a non-probing packet with the largest PN arrived (PA-17's first condition). */
  private readonly nonProbingSeen = new Set<number>();
  /** The path to go back to when a peer's move does not validate (§9.3.2). */
  private fallbackPathId: number | undefined;
  /** The path that just became active; its first non-probing packet is `firstDataOnNewPath`. */
  private firstDataPendingPathId: number | undefined;
  /** Client: a validated path from a new local address kept while the preferred one is still pending (PA-12). */
  private deferredPathId: number | undefined;
  /** Peer CID sequence numbers retired because their path was left, with that path's address. */
  private readonly retiredOldPaths = new Map<number, PathAddress>();
  /** Client: the old path stays open for the server's packets until the server has switched too. */
  private leftPathId: number | undefined;

  constructor(host: MigrationHost, policy: PreferredAddressPolicy = "follow") {
    this.host = host;
    this.policy = policy;
    this.handshakeRemote = host.activePath.address.remote;
  }

  // ---------------------------------------------------------------------------------------------
  // Triggers
  // ---------------------------------------------------------------------------------------------

  /** PA-05: the client starts toward the preferred address only once the handshake is confirmed. */
  onHandshakeConfirmed(now: Instant): void {
    this.host.timeline.handshakeConfirmed ??= now;
    if (this.host.role !== "client") return;
    const pa = this.host.peerPreferredAddress();
    if (!pa) return;
    if (this.policy === "ignore") {
      this.preferredState = "ignored";
      return;
    }
    const local = this.host.activePath.address.local;
    const target = this.pickPreferred(pa, local);
    if (!target) {
      this.preferredState = "unreachable";
      return;
    }
    if (socketAddressEquals(target, this.host.activePath.address.remote)) return;
    this.preferredState = "probing";
    this.startValidation({ local, remote: target }, "preferred_address", now, 1);
  }

  /** PA-06: an offered address of the family the client's local address has. */
  private pickPreferred(pa: PreferredAddress, local: SocketAddress): SocketAddress | undefined {
    const ipv6 = local.address.includes(":");
    const e = ipv6 ? pa.ipv6 : pa.ipv4;
    return e ? { address: e.address, port: e.port } : undefined;
  }

  /**
   * Client active migration (§9.2) to a new local address: validate, then move; on failure stay (fallback).
   * With a preferred-address move still pending, both server addresses are validated from the new local
   * address (PA-12). False when not permitted now (not confirmed, server, or disable_active_migration toward the
   * handshake address: PA-11).
   */
  migrate(newLocal: SocketAddress, now: Instant): boolean {
    const h = this.host;
    if (h.role !== "client" || !h.isHandshakeConfirmed()) return false;
    const remote = h.activePath.address.remote;
    // §18.2: disable_active_migration forbids a new local address toward the handshake address only.
    if (h.peerDisablesActiveMigration() && socketAddressEquals(remote, this.handshakeRemote)) return false;
    if (socketAddressEquals(newLocal, h.activePath.address.local)) return false;
    const started = this.startValidation({ local: newLocal, remote }, "local_migration", now, undefined);
    if (!started) return false;
    const preferredPending = this.validators.find((v) => v.isPending && v.purpose === "preferred_address");
    if (preferredPending) {
      const preferredRemote = this.pathById(preferredPending.pathId)?.address.remote;
      if (preferredRemote) this.startValidation({ local: newLocal, remote: preferredRemote }, "preferred_address", now, 1);
    }
    return true;
  }

  private startValidation(address: PathAddress, purpose: ValidationPurpose, now: Instant, preferSequence: number | undefined): PathValidator | undefined {
    const h = this.host;
    let path = h.paths.find((p) => pathAddressEquals(p.address, address));
    if (!path) {
      path = this.admitPath(address, { validated: false, amplificationLimited: false });
      if (!path) return undefined;
    }
    // PA-07 / PA-29: a CID never used on another path.
    if (!h.peerCids.forPath(path.id, preferSequence)) {
      this.removePath(path);
      this.stats.probesNotSent++;
      return undefined;
    }
    return this.addValidator(path, purpose, now);
  }

  private addValidator(path: Path, purpose: ValidationPurpose, now: Instant): PathValidator {
    const existing = this.validators.find((v) => v.pathId === path.id && v.isPending);
    if (existing) return existing;
    const h = this.host;
    // PA-24: 3 × max(current PTO, PTO of the new path with kInitialRtt); PA-25: retries at the PTO an Initial
    // would use on this connection, doubling.
    const currentPto = h.ptoMs(h.activePath);
    const v = new PathValidator(path.id, purpose, now, {
      timeoutMs: 3 * Math.max(currentPto, h.initialPtoMs()),
      retransmitIntervalMs: currentPto,
    });
    this.validators.push(v);
    this.stats.validationsStarted++;
    return v;
  }

  /**
   * A path for a 4-tuple we have not seen (PA-13 is the client's caller's business). Bounded: a flood of new
   * addresses evicts the oldest candidate, never the active path or the fallback.
   */
  admitPath(address: PathAddress, opts: { validated: boolean; amplificationLimited: boolean }): Path | undefined {
    const h = this.host;
    if (h.paths.length >= MAX_PATHS) {
      const victim = h.paths.find((p) => p !== h.activePath && p.id !== this.fallbackPathId && p.id !== this.leftPathId && p.id !== this.deferredPathId);
      if (!victim) return undefined;
      this.removePath(victim);
      this.stats.pathsEvicted++;
    }
    return h.newPath(address, opts);
  }

  /** Server side: the anti-amplification limit applies unless the peer's address is already proven (PA-20, PA-27). */
  peerAddressProven(remote: SocketAddress): boolean {
    return this.host.paths.some((p) => p.validated && socketAddressEquals(p.address.remote, remote));
  }

  // ---------------------------------------------------------------------------------------------
  // Receiving
  // ---------------------------------------------------------------------------------------------

  onPathChallenge(path: Path, data: Uint8Array, now: Instant): void {
    this.stats.challengesReceived++;
    if (this.pendingResponses.has(path.id)) this.stats.responsesSuperseded++;
    this.pendingResponses.set(path.id, Buffer.from(data));
    // PA-18: a server reached on a new path probes back from there itself, so a spoofed move cannot succeed.
    if (this.host.role === "server" && path !== this.host.activePath && !path.validated && this.host.isHandshakeConfirmed()) {
      const purpose: ValidationPurpose = socketAddressEquals(path.address.local, this.host.activePath.address.local) ? "peer_migration" : "preferred_address_server";
      this.addValidator(path, purpose, now);
    }
  }

  onPathResponse(path: Path, data: Uint8Array, now: Instant): void {
    // PA-23: a response validates the path its challenge went out on, whichever path it came back on.
    for (const v of this.validators) {
      const hit = v.matches(data, now);
      if (!hit) continue;
      v.onValidated();
      this.stats.validationsSucceeded++;
      const validatedPath = this.pathById(v.pathId);
      if (!validatedPath) return;
      validatedPath.validated = true;
      // The round trip of the challenge is the new path's first RTT sample (its estimator started fresh: PA-14).
      if (!validatedPath.rtt.hasSample) validatedPath.rtt.update(hit.rttMs, 0, true, 0);
      this.host.timeline.pathValidated ??= now;
      this.host.emit({ type: "pathValidated", at: now, path: validatedPath.address });
      this.onValidated(v, validatedPath, now);
      this.forget(v);
      return;
    }
    this.stats.responsesUnmatched++;
    void path;
  }

  private onValidated(v: PathValidator, path: Path, now: Instant): void {
    const h = this.host;
    switch (v.purpose) {
      case "preferred_address":
        if (this.policy === "validate-only") {
          this.preferredState = "validated";
          // Validated and left: the CID it used must not appear on another path (PA-29).
          this.removePath(path);
          return;
        }
        this.preferredState = "moved";
        // PA-12: the preferred address won; validations toward the original address are abandoned.
        for (const other of this.validators.filter((x) => x.isPending && x.purpose === "local_migration")) {
          const p = this.pathById(other.pathId);
          this.forget(other);
          if (p) this.removePath(p);
        }
        if (this.deferredPathId !== undefined) {
          const p = this.pathById(this.deferredPathId);
          this.deferredPathId = undefined;
          if (p) this.removePath(p);
        }
        this.switchTo(path, "preferred_address", now);
        return;
      case "local_migration": {
        // PA-12: while the preferred address from the same local address may still validate, wait for it.
        const preferredPending = this.validators.some((x) => x.isPending && x.purpose === "preferred_address" && socketAddressEquals(this.pathById(x.pathId)?.address.local ?? path.address.local, path.address.local) && x !== v);
        if (preferredPending) {
          this.deferredPathId = path.id;
          return;
        }
        this.switchTo(path, "local_migration", now);
        return;
      }
      case "peer_migration":
      case "preferred_address_server":
        if (path.id === this.fallbackPathId) this.fallbackPathId = undefined;
        if (path === h.activePath) {
          // Switched already (§9.3: immediately on the peer's move); validated now, so the fallback is moot:
          // the old path goes, and its CID with it (PA-29).
          const old = this.fallbackPathId !== undefined ? this.pathById(this.fallbackPathId) : undefined;
          this.fallbackPathId = undefined;
          if (old) this.removePath(old);
          return;
        }
        // PA-17 / PA-19: switch once the peer has also sent a non-probing packet there.
        if (this.nonProbingSeen.has(path.id)) this.switchTo(path, v.purpose === "peer_migration" ? "peer_migration" : "preferred_address", now);
        return;
    }
  }

  /**
   * After a 1-RTT packet was processed. PA-28: only a non-probing packet that has the largest packet number
   * so far moves anything; probing packets never do.
   */
  onPacketReceived(path: Path, nonProbing: boolean, largest: boolean, now: Instant): void {
    const h = this.host;
    if (!nonProbing) return;
    path.nonProbingPacketsReceived++;
    if (h.role === "client") {
      // The server sends from the preferred address once it switched (PA-19): the old path can go.
      if (path === h.activePath && this.leftPathId !== undefined) {
        const left = this.pathById(this.leftPathId);
        this.leftPathId = undefined;
        if (left) this.removePath(left);
      }
      return;
    }
    if (!largest || path === h.activePath || !h.isHandshakeConfirmed()) return;
    this.nonProbingSeen.add(path.id);
    if (path.validated) {
      this.switchTo(path, socketAddressEquals(path.address.local, h.activePath.address.local) ? "peer_migration" : "preferred_address", now);
      return;
    }
    if (!socketAddressEquals(path.address.local, h.activePath.address.local)) {
      // PA-17: on the preferred address, keep sending from the original until this path is validated.
      this.addValidator(path, "preferred_address_server", now);
      return;
    }
    // §9.3: the peer's address changed (NAT rebinding or its migration): send there now, within the
    // amplification limit (PA-27), validate it, and go back to the last validated path if that fails (§9.3.2).
    this.addValidator(path, "peer_migration", now);
    const previous = h.activePath;
    this.switchTo(path, "peer_migration", now);
    if (previous.validated) this.fallbackPathId = previous.id;
  }

  /** RETIRE_CONNECTION_ID we sent for `sequenceNumber` was acknowledged. */
  onRetireAcked(sequenceNumber: number, now: Instant): void {
    const address = this.retiredOldPaths.get(sequenceNumber);
    if (!address) return;
    this.retiredOldPaths.delete(sequenceNumber);
    // The server is done with the path it left (the client waits for the server's switch instead: PA-17).
    const left = this.host.role === "server" ? this.host.paths.find((p) => pathAddressEquals(p.address, address)) : undefined;
    if (left && left !== this.host.activePath && left.id !== this.fallbackPathId && !this.isValidating(left)) this.removePath(left);
    if (this.host.timeline.oldPathRetired === undefined) {
      this.host.timeline.oldPathRetired = now;
      this.host.emit({ type: "oldPathRetired", at: now, path: address });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Switching and falling back
  // ---------------------------------------------------------------------------------------------

  private switchTo(path: Path, reason: MigrationReason, now: Instant): void {
    const h = this.host;
    const from = h.activePath;
    if (from === path) return;
    // §9.5: a fresh CID for the new path; a peer that rebinds without one spare keeps the old one (no new linkage).
    if (!h.peerCids.forPath(path.id)) {
      const carried = h.peerCids.usedByPath(from.id);
      if (!carried) {
        this.stats.probesNotSent++;
        return;
      }
      carried.inUseByPath = path.id;
    }
    h.activePath = path;
    this.stats.migrations++;
    this.nonProbingSeen.delete(path.id);
    this.firstDataPendingPathId = path.id;
    if (h.role === "server" && reason === "preferred_address") h.timeline.serverSwitched ??= now;
    h.emit({ type: "pathMigrated", at: now, from: from.address, to: path.address, reason });
    // PA-07 / PA-29: the CID of the path left behind is retired (§5.1.2), and the new path has its own.
    const oldCid = h.peerCids.usedByPath(from.id);
    if (oldCid && reason !== "fallback" && !(reason === "peer_migration" && !path.validated)) {
      h.peerCids.retire(oldCid.sequenceNumber);
      this.retiredOldPaths.set(oldCid.sequenceNumber, from.address);
    }
    if (h.role === "client") {
      // The server may keep sending from the original address until it switched (PA-17): keep receiving there.
      if (this.leftPathId !== undefined) {
        const stale = this.pathById(this.leftPathId);
        if (stale) this.removePath(stale);
      }
      this.leftPathId = from.id;
    } else if (reason !== "peer_migration" || path.validated) {
      // The server has nothing more to receive on the old path than stragglers; keep it until evicted.
      this.fallbackPathId = undefined;
    }
  }

  private fallBack(v: PathValidator, path: Path | undefined, reason: string, now: Instant): void {
    const h = this.host;
    const address = path?.address ?? h.activePath.address;
    this.stats.fallbacks++;
    h.timeline.fallback ??= { at: now, reason };
    h.emit({ type: "migrationFellBack", at: now, path: address, reason });
    void v;
  }

  /** Validation deadlines (PA-24). */
  onTimeout(now: Instant): void {
    for (const v of [...this.validators]) {
      if (!v.checkTimeout(now)) continue;
      this.stats.validationsFailed++;
      this.forget(v);
      const path = this.pathById(v.pathId);
      if (path) this.host.emit({ type: "pathValidationFailed", at: now, path: path.address, reason: "timeout" });
      this.onFailed(v, path, now);
    }
  }

  private onFailed(v: PathValidator, path: Path | undefined, now: Instant): void {
    const h = this.host;
    switch (v.purpose) {
      case "preferred_address": {
        // PA-10: stay on the original address; the connection lives on.
        if (this.validators.some((x) => x.isPending && x.purpose === "preferred_address")) {
          if (path) this.removePath(path);
          return;
        }
        this.preferredState = "failed";
        if (path) this.removePath(path);
        this.fallBack(v, path, "preferred_address_validation_timeout", now);
        // PA-12: only the original address validated from the new local address: move there.
        if (this.deferredPathId !== undefined) {
          const deferred = this.pathById(this.deferredPathId);
          this.deferredPathId = undefined;
          if (deferred) this.switchTo(deferred, "local_migration", now);
        }
        return;
      }
      case "local_migration":
        if (path) this.removePath(path);
        this.fallBack(v, path, "local_migration_validation_timeout", now);
        return;
      case "peer_migration": {
        // §9.3.2: the new address did not prove itself: go back to the last validated one.
        const back = this.fallbackPathId !== undefined ? this.pathById(this.fallbackPathId) : undefined;
        this.fallbackPathId = undefined;
        if (path === h.activePath && back) {
          this.switchTo(back, "fallback", now);
          this.fallBack(v, path, "peer_address_validation_timeout", now);
        }
        if (path && path !== h.activePath) this.removePath(path);
        return;
      }
      case "preferred_address_server":
        // PA-17: never switched; the original path carries on.
        if (path && path !== h.activePath) this.removePath(path);
        return;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Sending
  // ---------------------------------------------------------------------------------------------

  /** A non-active path with a response or challenge to send now, if any (the connection sends a probe). */
  probePath(now: Instant): Path | undefined {
    const h = this.host;
    for (const p of h.paths) {
      if (p === h.activePath) continue;
      if (this.pendingResponses.has(p.id) || this.validators.some((v) => v.pathId === p.id && v.challengeDue(now))) return p;
    }
    return undefined;
  }

  /**
   * PATH_RESPONSE and PATH_CHALLENGE frames for a packet on `path`, at most `roomBytes`. Returns undefined
   * when none are due. The caller pads the datagram (PA-26).
   */
  probeFrames(path: Path, now: Instant, canSend: boolean): Frame[] {
    const frames: Frame[] = [];
    const response = this.pendingResponses.get(path.id);
    if (response) {
      this.pendingResponses.delete(path.id);
      // PA-22: exactly once per challenge (never retransmitted; a lost one is answered by the next challenge).
      if (canSend) {
        frames.push({ type: "path_response", data: response });
        this.stats.responsesSent++;
      } else this.stats.probesNotSent++;
    }
    const v = this.validators.find((x) => x.pathId === path.id && x.challengeDue(now));
    if (v) {
      // Without room (amplification) the challenge counts as sent and lost: the next one comes at the retry time.
      const data = v.nextChallenge(this.host.random, now);
      if (canSend) {
        frames.push({ type: "path_challenge", data });
        this.stats.challengesSent++;
        if (v.challengesSent === 1) {
          if (v.purpose === "preferred_address" || v.purpose === "preferred_address_server" || this.host.timeline.probeSent === undefined) {
            this.host.timeline.probeSent ??= now;
          }
          this.host.emit({ type: "pathProbeSent", at: now, path: path.address, purpose: v.purpose });
        }
      } else {
        this.stats.probesNotSent++;
      }
    }
    return frames;
  }

  /** A packet left on `path`; `nonProbing` when it carried any non-probing frame. */
  onPacketSent(path: Path, nonProbing: boolean, now: Instant): void {
    if (nonProbing) path.nonProbingPacketsSent++;
    if (!nonProbing || path.id !== this.firstDataPendingPathId) return;
    this.firstDataPendingPathId = undefined;
    if (this.host.timeline.firstDataOnNewPath === undefined) {
      this.host.timeline.firstDataOnNewPath = now;
      this.host.emit({ type: "newPathFirstDataSent", at: now, path: path.address });
    }
  }

  nextTimeout(): Instant | undefined {
    let next: Instant | undefined;
    for (const v of this.validators) {
      const t = v.nextTimeout();
      if (t !== undefined && (next === undefined || t < next)) next = t;
    }
    return next;
  }

  /** Does a validation still need `path`? */
  isValidating(path: Path): boolean {
    return this.validators.some((v) => v.pathId === path.id && v.isPending);
  }

  // ---------------------------------------------------------------------------------------------

  private pathById(id: number): Path | undefined {
    return this.host.paths.find((p) => p.id === id);
  }

  private forget(v: PathValidator): void {
    const i = this.validators.indexOf(v);
    if (i >= 0) this.validators.splice(i, 1);
  }

  /** Drop a path; a CID that went out on it is retired, never reused elsewhere (PA-29). */
  private removePath(path: Path): void {
    const h = this.host;
    if (path === h.activePath) return;
    const i = h.paths.indexOf(path);
    if (i >= 0) h.paths.splice(i, 1);
    for (const v of this.validators.filter((x) => x.pathId === path.id)) this.forget(v);
    this.pendingResponses.delete(path.id);
    this.nonProbingSeen.delete(path.id);
    if (this.leftPathId === path.id) this.leftPathId = undefined;
    if (this.fallbackPathId === path.id) this.fallbackPathId = undefined;
    if (this.deferredPathId === path.id) this.deferredPathId = undefined;
    const cid = h.peerCids.usedByPath(path.id);
    if (cid) h.peerCids.retire(cid.sequenceNumber);
  }

  toJSON(): object {
    return {
      policy: this.policy,
      preferredState: this.preferredState,
      handshakeRemote: this.handshakeRemote,
      validators: this.validators.map((v) => v.toJSON()),
      pendingResponses: [...this.pendingResponses].map(([pathId, data]) => ({ pathId, data: data.toString("hex") })),
      fallbackPathId: this.fallbackPathId,
      leftPathId: this.leftPathId,
      stats: this.stats,
    };
  }
}
