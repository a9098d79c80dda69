/**
 * The preferred address's connection ID and the pieces of path validation in isolation, the migration
 * timeline, and bad input (malformed preferred_address, unknown PATH_RESPONSE data, challenge floods).
 */
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../node-images/common/seeded-random.ts";
import { LocalConnectionIds, PeerConnectionIds } from "../../node-images/quic/connection-ids.ts";
import { QuicTransportError } from "../../node-images/quic/errors.ts";
import { Migration, type MigrationHost } from "../../node-images/quic/migration.ts";
import { PathValidator } from "../../node-images/quic/path-validation.ts";
import { Path, type PathAddress } from "../../node-images/quic/path.ts";
import { decodePreferredAddress, encodePreferredAddress } from "../../node-images/quic/preferred-address.ts";
import type { ConnectionEvent } from "../../node-images/quic/events.ts";
import { CLIENT, CLIENT6, MigrationPair, PREFERRED4, PREFERRED6, VIP, VIP6 } from "./migration-fixture.ts";

/** A Migration over real Path and CID objects, without a connection: for the frame-level rules. */
function migrationFixture(role: "client" | "server") {
  const first = new Path(0, { local: CLIENT, remote: VIP }, { validated: true, congestionControl: "newreno", maxDatagramSizeBytes: 1200 });
  let nextId = 1;
  const events: ConnectionEvent[] = [];
  const peerCids = new PeerConnectionIds({ sequenceNumber: 0, connectionId: Buffer.alloc(8, 1), statelessResetToken: undefined, inUseByPath: 0 }, 8);
  for (let seq = 1; seq <= 3; seq++) peerCids.onNewConnectionId({ sequenceNumber: seq, retirePriorTo: 0, connectionId: Buffer.alloc(8, 1 + seq), statelessResetToken: Buffer.alloc(16, seq) });
  let random = 0;
  const host: MigrationHost = {
    role,
    paths: [first],
    activePath: first,
    peerCids,
    localCids: new LocalConnectionIds(() => Buffer.alloc(8, 9), () => Buffer.alloc(16)),
    timeline: {},
    random: (n) => Buffer.alloc(n, ++random),
    emit: (e) => events.push(e),
    newPath: (address: PathAddress, opts) => {
      const p = new Path(nextId++, address, { ...opts, congestionControl: "newreno", maxDatagramSizeBytes: 1200 });
      host.paths.push(p);
      return p;
    },
    ptoMs: () => 100,
    initialPtoMs: () => 1024,
    peerPreferredAddress: () => undefined,
    peerDisablesActiveMigration: () => false,
    isHandshakeConfirmed: () => true,
  };
  return { host, migration: new Migration(host), events, first };
}

describe("preferred address connection ID", () => {
  it("PA-04 carries the CID and reset token of sequence 1, counted against active_connection_id_limit, usable on any path", () => {
    const p = new MigrationPair({ delayMs: 10, policy: "ignore" });
    expect(p.run(() => p.conn.isHandshakeConfirmed && p.net.now > 100)).toBe(true);
    const offered = p.serverConn.localParameters.preferredAddress!;
    const seq1 = p.serverConn.localCids.bySequence(1)!;
    expect(offered.connectionId.equals(seq1.connectionId)).toBe(true);
    expect(offered.statelessResetToken.equals(seq1.statelessResetToken)).toBe(true);
    const atClient = p.conn.peerCids.available.find((c) => c.sequenceNumber === 1)!;
    expect(atClient.connectionId.equals(seq1.connectionId)).toBe(true);
    expect(p.conn.peerCids.available.length).toBeLessThanOrEqual(p.conn.localParameters.activeConnectionIdLimit);
    // "ignore" never moves, yet the CID serves another path: a client migration takes it.
    expect(p.conn.migration.preferredState).toBe("ignored");
    p.net.attach({ address: "192.0.2.30", port: 50003 }, p.client);
    expect(p.conn.migrate({ address: "192.0.2.30", port: 50003 }, p.net.now)).toBe(true);
    const path = p.conn.paths.find((x) => x.address.local.address === "192.0.2.30")!;
    expect(p.conn.peerCids.usedByPath(path.id)!.sequenceNumber).toBe(1);
  });

  it("PA-06 an IPv6 client picks the IPv6 preferred address and moves there", () => {
    const p = new MigrationPair({ delayMs: 10, vip: VIP6, client: CLIENT6, preferred: { ipv4: PREFERRED4, ipv6: PREFERRED6 } });
    expect(p.run(() => p.conn.timeline.firstDataOnNewPath !== undefined && p.serverConn.timeline.serverSwitched !== undefined)).toBe(true);
    expect(p.conn.activePath.address).toEqual({ local: CLIENT6, remote: PREFERRED6 });
    expect(p.serverConn.activePath.address).toEqual({ local: PREFERRED6, remote: CLIENT6 });
  });
});

describe("path validation rules", () => {
  it("PA-21 a validator's challenges are 8 bytes from the random source, each new", () => {
    let n = 0;
    const v = new PathValidator(1, "preferred_address", 0, { timeoutMs: 3000, retransmitIntervalMs: 100 });
    const a = v.nextChallenge((len) => Buffer.alloc(len, ++n), 0);
    const b = v.nextChallenge((len) => Buffer.alloc(len, ++n), 100);
    expect(a.length).toBe(8);
    expect(a.equals(b)).toBe(false);
    expect(() => v.nextChallenge(() => Buffer.alloc(4), 300)).toThrow(RangeError);
  });

  it("PA-23 a matching PATH_RESPONSE validates the path its challenge went out on, whichever path it came back on", () => {
    const { host, migration, events } = migrationFixture("client");
    expect(migration.migrate({ address: "192.0.2.40", port: 1 }, 0)).toBe(true);
    const probePath = host.paths[1]!;
    const frames = migration.probeFrames(probePath, 0, true);
    const challenge = frames.find((f) => f.type === "path_challenge");
    expect(challenge?.type).toBe("path_challenge");
    // The response comes back on the original path.
    migration.onPathResponse(host.paths[0]!, challenge!.type === "path_challenge" ? challenge!.data : Buffer.alloc(8), 20);
    expect(probePath.validated).toBe(true);
    expect(host.activePath).toBe(probePath);
    expect(events.map((e) => e.type)).toEqual(["pathProbeSent", "pathValidated", "pathMigrated"]);
    expect(probePath.rtt.latestRttMs).toBe(20);
  });

  it("PA-25 retries back off from the PTO and stop at the PA-24 deadline", () => {
    const v = new PathValidator(1, "local_migration", 0, { timeoutMs: 3000, retransmitIntervalMs: 100 });
    const sent: number[] = [];
    for (let t = 0; t <= 3500; t++) {
      if (v.challengeDue(t)) {
        v.nextChallenge((n) => Buffer.alloc(n, t & 0xff), t);
        sent.push(t);
      }
      if (v.checkTimeout(t)) break;
    }
    expect(sent).toEqual([0, 100, 300, 700, 1500]);
    expect(v.state).toBe("failed");
  });
});

describe("the migration timeline", () => {
  it("records every step on both sides, monotonic, serialised with the connection, one event each", () => {
    const p = new MigrationPair({ delayMs: 25 });
    expect(p.run(() => p.conn.timeline.oldPathRetired !== undefined && p.serverConn.timeline.oldPathRetired !== undefined)).toBe(true);
    const c = p.conn.timeline;
    const order = [c.handshakeConfirmed!, c.probeSent!, c.pathValidated!, c.firstDataOnNewPath!, c.oldPathRetired!];
    expect(order.every((t) => typeof t === "number")).toBe(true);
    for (let i = 1; i < order.length; i++) expect(order[i]!).toBeGreaterThanOrEqual(order[i - 1]!);
    // Migration latency: one round trip of the new path (50 ms) is the floor.
    expect(c.firstDataOnNewPath! - c.handshakeConfirmed!).toBeCloseTo(50, 0);
    const s = p.serverConn.timeline;
    expect(s.serverSwitched).toBeGreaterThanOrEqual(s.pathValidated!);
    expect(s.oldPathRetired).toBeGreaterThanOrEqual(s.serverSwitched!);
    const json = JSON.parse(JSON.stringify(p.conn.toJSON()));
    expect(json.timeline.firstDataOnNewPath).toBe(c.firstDataOnNewPath);
    expect(json.migration.preferredState).toBe("moved");
    expect(json.paths[0].address.remote).toEqual(PREFERRED4);
    expect(json.peerCids.available.length).toBeGreaterThan(0);
    const types = p.clientEvents.map((e) => e.type);
    for (const t of ["handshakeConfirmed", "pathProbeSent", "pathValidated", "pathMigrated", "newPathFirstDataSent", "oldPathRetired"] as const) expect(types).toContain(t);
    expect(p.conn.internalErrors).toEqual([]);
    expect(p.serverConn.internalErrors).toEqual([]);
  });
});

describe("bad input", () => {
  it("PA-02 malformed preferred_address values are TRANSPORT_PARAMETER_ERROR or no address, never another exception", () => {
    const rng = new SeededRandom(42);
    const valid = encodePreferredAddress({ ipv4: { address: "198.51.100.7", port: 4433 }, connectionId: Buffer.alloc(8, 1), statelessResetToken: Buffer.alloc(16, 2) });
    let errors = 0;
    for (let i = 0; i < 2000; i++) {
      const input = Buffer.from(valid);
      const mode = i % 3;
      const bytes = mode === 0 ? input.subarray(0, Math.floor(rng.next() * input.length)) : mode === 1 ? Buffer.concat([input, Buffer.alloc(1 + (i % 5))]) : input;
      if (mode === 2) for (let k = 0; k < 3; k++) bytes[Math.floor(rng.next() * bytes.length)] = rng.nextUint32() & 0xff;
      try {
        const pa = decodePreferredAddress(bytes);
        if (pa) expect(pa.connectionId.length).toBeGreaterThan(0);
      } catch (err) {
        expect(err).toBeInstanceOf(QuicTransportError);
        expect((err as QuicTransportError).code).toBe(0x08);
        errors++;
      }
    }
    expect(errors).toBeGreaterThan(600);
  });

  it("PA-03 a zero-length CID in preferred_address is refused on decode and on encode", () => {
    const value = Buffer.concat([Buffer.from([198, 51, 100, 7, 0x11, 0x51]), Buffer.alloc(18), Buffer.from([0]), Buffer.alloc(16)]);
    expect(() => decodePreferredAddress(value)).toThrow(QuicTransportError);
    expect(() => encodePreferredAddress({ ipv4: { address: "198.51.100.7", port: 4433 }, connectionId: Buffer.alloc(0), statelessResetToken: Buffer.alloc(16) })).toThrow(RangeError);
  });

  it("PA-22 a PATH_RESPONSE with unknown data is counted and ignored, nothing thrown", () => {
    const { host, migration } = migrationFixture("client");
    migration.migrate({ address: "192.0.2.41", port: 2 }, 0);
    migration.probeFrames(host.paths[1]!, 0, true);
    migration.onPathResponse(host.paths[1]!, Buffer.alloc(8, 0xee), 5);
    expect(migration.stats.responsesUnmatched).toBe(1);
    expect(host.paths[1]!.validated).toBe(false);
    expect(host.activePath).toBe(host.paths[0]);
  });

  it("PA-22 a flood of PATH_CHALLENGEs from unvalidated addresses is answered once per path, paths stay bounded, the rest counted", () => {
    const { host, migration } = migrationFixture("server");
    for (let i = 0; i < 1000; i++) {
      const address = { local: VIP, remote: { address: "233.252.0.1", port: 1000 + (Math.floor(i / 20) % 50) } };
      const path = host.paths.find((p) => p.address.remote.port === address.remote.port) ?? migration.admitPath(address, { validated: false, amplificationLimited: true });
      expect(path).toBeDefined();
      migration.onPathChallenge(path!, Buffer.alloc(8, i & 0xff), i);
    }
    expect(host.paths.length).toBeLessThanOrEqual(4);
    expect(migration.stats.challengesReceived).toBe(1000);
    expect(migration.stats.pathsEvicted).toBeGreaterThan(0);
    expect(migration.stats.responsesSuperseded).toBeGreaterThan(0);
    // An unvalidated path with nothing received yet has no budget: nothing goes out (PA-27).
    for (const p of host.paths.slice(1)) expect(p.amplificationBudget()).toBe(0);
  });
});
