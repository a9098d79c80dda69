/**
 * Connection migration and the server's preferred address (RFC 9000 §8.2, §9, §9.6) in the simulated network.
 * Test names start with the checklist ID of ../../../shared/spec/preferred-address.md they check.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { Endpoint } from "../../node-images/quic/endpoint.ts";
import { MAX_PATHS } from "../../node-images/quic/migration.ts";
import { formatSocketAddress, socketAddressEquals } from "../../node-images/quic/path.ts";
import { ATTACKER, CLIENT, CLIENT2, MigrationPair, PREFERRED4, RebindingNat, VIP, sink } from "./migration-fixture.ts";
import { seededBytes } from "./sim-apps.ts";

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Upload `bytes` and check the server's hash of it: "no data lost". */
function upload(p: MigrationPair, bytes: number, seed = 7) {
  const body = seededBytes(seed, bytes);
  const req = p.request(sink(body));
  return {
    req,
    intact: () => req.done && JSON.parse(req.reply.toString()).sha256 === sha256(body),
  };
}

/** A finished move: the client validated and moved, and the server switched (PA-19). */
function moved(p: MigrationPair): boolean {
  return p.conn.timeline.firstDataOnNewPath !== undefined && [...p.server.connections()].some((c) => c.timeline.serverSwitched !== undefined);
}

describe("client follows the server's preferred address", () => {
  it("PA-05 starts probing the preferred address only after the handshake is confirmed", () => {
    const p = new MigrationPair({ delayMs: 10 });
    expect(p.run(() => moved(p))).toBe(true);
    const confirmed = p.conn.timeline.handshakeConfirmed!;
    expect(p.conn.timeline.probeSent).toBeGreaterThanOrEqual(confirmed);
    expect(p.datagrams(CLIENT, PREFERRED4, { before: confirmed })).toEqual([]);
    expect(p.datagrams(CLIENT, PREFERRED4).length).toBeGreaterThan(0);
  });

  it("PA-06 picks the offered IPv4 address for an IPv4 client and validates it", () => {
    const p = new MigrationPair({ delayMs: 10, preferred: { ipv4: PREFERRED4, ipv6: { address: "2001:db8:1::7", port: 4433 } } });
    expect(p.run(() => moved(p))).toBe(true);
    expect(p.conn.activePath.address.remote).toEqual(PREFERRED4);
    expect(p.clientEvents.some((e) => e.type === "pathValidated" && socketAddressEquals(e.path.remote, PREFERRED4))).toBe(true);
  });

  it("PA-06 stays on the handshake address when only another family is offered", () => {
    const p = new MigrationPair({ delayMs: 10, preferred: { ipv6: { address: "2001:db8:1::7", port: 4433 } } });
    const t = upload(p, 20_000);
    expect(p.run(() => t.intact())).toBe(true);
    expect(p.conn.migration.preferredState).toBe("unreachable");
    expect(p.conn.activePath.address.remote).toEqual(VIP);
  });

  it("PA-07 uses a connection ID on the preferred path that never appeared on the original path, and retires the old one", () => {
    const p = new MigrationPair({ delayMs: 10 });
    const t = upload(p, 100_000);
    expect(p.run(() => moved(p) && t.intact() && p.conn.timeline.oldPathRetired !== undefined)).toBe(true);
    const oldCids = new Set(p.datagrams(CLIENT, VIP).map((w) => w.dcid).filter((d) => d !== undefined));
    const newCids = new Set(p.datagrams(CLIENT, PREFERRED4).map((w) => w.dcid));
    expect(newCids.size).toBeGreaterThan(0);
    for (const c of newCids) expect(c !== undefined && oldCids.has(c)).toBe(false);
    // The server's CID of sequence 0 (the handshake path's) is retired by the client.
    expect(p.serverConn.localCids.bySequence(0)!.retired).toBe(true);
  });

  it("PA-08 sends only probing frames to the preferred address until it is validated; data keeps flowing on the original path", () => {
    const p = new MigrationPair({ delayMs: 10 });
    // A slow preferred path: 150 ms each way, so the probe is outstanding while data flows.
    p.net.setLink(CLIENT.address, PREFERRED4.address, { delayMs: 150 });
    p.net.setLink(PREFERRED4.address, CLIENT.address, { delayMs: 150 });
    const violations: string[] = [];
    p.net.tap((d) => {
      if (!socketAddressEquals(d.from, CLIENT) || !socketAddressEquals(d.to, PREFERRED4)) return;
      const path = p.pathOf(p.conn, { local: CLIENT, remote: PREFERRED4 });
      if (p.conn.timeline.pathValidated === undefined && (path?.nonProbingPacketsSent ?? 0) > 0) violations.push(`non-probing at ${d.at}`);
    });
    const t = upload(p, 400_000);
    expect(p.run(() => moved(p) && t.intact())).toBe(true);
    expect(violations).toEqual([]);
    const { probeSent, pathValidated } = p.conn.timeline;
    expect(p.datagrams(CLIENT, VIP, { after: probeSent, before: pathValidated }).length).toBeGreaterThan(10);
  });

  it("PA-09 sends every later packet to the preferred address once it is validated", () => {
    const p = new MigrationPair({ delayMs: 10 });
    const t = upload(p, 300_000);
    expect(p.run(() => moved(p) && t.intact())).toBe(true);
    expect(p.datagrams(CLIENT, VIP, { after: p.conn.timeline.pathValidated }).length).toBe(0);
    expect(p.datagrams(CLIENT, PREFERRED4, { after: p.conn.timeline.pathValidated }).length).toBeGreaterThan(10);
    expect(p.conn.activePath.address).toEqual({ local: CLIENT, remote: PREFERRED4 });
  });

  it("PA-10 falls back to the original address when the preferred path is black-holed: within 3 × PTO, counted, no data lost", () => {
    const p = new MigrationPair({ delayMs: 10 });
    p.net.setLink(CLIENT.address, PREFERRED4.address, { delayMs: 10, blackhole: true });
    const t = upload(p, 2_000_000);
    expect(p.run(() => t.intact() && p.conn.timeline.fallback !== undefined, 20_000)).toBe(true);
    const { probeSent, fallback } = p.conn.timeline;
    // PA-24 bound: 3 × max(PTO, PTO with kInitialRtt 333 ms + max_ack_delay 25 ms) = 3 × 1024 ms.
    expect(fallback!.at - probeSent!).toBeLessThanOrEqual(3 * 1024 + 1);
    expect(fallback!.reason).toBe("preferred_address_validation_timeout");
    expect(p.conn.migration.stats.fallbacks).toBe(1);
    expect(p.conn.state).toBe("established");
    expect(p.conn.activePath.address.remote).toEqual(VIP);
    expect(p.clientEvents.some((e) => e.type === "migrationFellBack")).toBe(true);
    expect(p.conn.internalErrors).toEqual([]);
    // The connection lives on: a second request after the fallback works too.
    const after = upload(p, 10_000, 9);
    expect(p.run(() => after.intact())).toBe(true);
  });

  it("PA-11 follows the preferred address although the server sent disable_active_migration, which only forbids new local addresses toward the handshake address", () => {
    const stay = new MigrationPair({ delayMs: 10, policy: "ignore", server: { transportParameters: { disableActiveMigration: true } } });
    expect(stay.run(() => stay.conn.isHandshakeConfirmed)).toBe(true);
    stay.net.attach(CLIENT2, stay.client);
    expect(stay.conn.migrate(CLIENT2, stay.net.now)).toBe(false);

    const p = new MigrationPair({ delayMs: 10, server: { transportParameters: { disableActiveMigration: true } } });
    expect(p.run(() => moved(p))).toBe(true);
    p.net.attach(CLIENT2, p.client);
    expect(p.conn.migrate(CLIENT2, p.net.now)).toBe(true);
    p.client.wake(p.conn, p.net.now);
    expect(p.run(() => socketAddressEquals(p.conn.activePath.address.local, CLIENT2))).toBe(true);
    expect(p.conn.activePath.address.remote).toEqual(PREFERRED4);
  });

  it("PA-12 a client rebinding while it moves validates both server addresses from its new address and moves to the preferred one", () => {
    const p = new MigrationPair({ delayMs: 10 });
    // The old local address cannot reach the preferred address; the new one can.
    p.net.setLink(CLIENT.address, PREFERRED4.address, { delayMs: 10, blackhole: true });
    p.net.attach(CLIENT2, p.client);
    expect(p.run(() => p.conn.timeline.probeSent !== undefined)).toBe(true);
    expect(p.conn.migrate(CLIENT2, p.net.now)).toBe(true);
    p.client.wake(p.conn, p.net.now);
    const t = upload(p, 50_000);
    expect(p.run(() => t.intact() && p.conn.migration.preferredState === "moved" && moved(p))).toBe(true);
    expect(p.conn.activePath.address).toEqual({ local: CLIENT2, remote: PREFERRED4 });
    const probed = p.clientEvents.filter((e) => e.type === "pathProbeSent").map((e) => e.type === "pathProbeSent" && `${formatSocketAddress(e.path.local)}>${formatSocketAddress(e.path.remote)}`);
    expect(probed).toContain(`${formatSocketAddress(CLIENT2)}>${formatSocketAddress(VIP)}`);
    expect(probed).toContain(`${formatSocketAddress(CLIENT2)}>${formatSocketAddress(PREFERRED4)}`);
    // The validation toward the original address was abandoned: no move there.
    expect(p.clientEvents.filter((e) => e.type === "pathMigrated").length).toBe(1);
  });

  it("PA-12 stays on the original server address from the new local address when only that one validates", () => {
    const p = new MigrationPair({ delayMs: 10 });
    p.net.setLink(CLIENT.address, PREFERRED4.address, { delayMs: 10, blackhole: true });
    p.net.setLink(CLIENT2.address, PREFERRED4.address, { delayMs: 10, blackhole: true });
    p.net.attach(CLIENT2, p.client);
    expect(p.run(() => p.conn.timeline.probeSent !== undefined)).toBe(true);
    expect(p.conn.migrate(CLIENT2, p.net.now)).toBe(true);
    p.client.wake(p.conn, p.net.now);
    const t = upload(p, 50_000);
    expect(p.run(() => t.intact() && p.conn.migration.preferredState === "failed" && socketAddressEquals(p.conn.activePath.address.local, CLIENT2), 20_000)).toBe(true);
    expect(p.conn.activePath.address).toEqual({ local: CLIENT2, remote: VIP });
    expect(p.conn.migration.stats.fallbacks).toBe(1);
  });

  it("PA-13 discards packets from a server address it neither uses nor validates", () => {
    const p = new MigrationPair({ delayMs: 10 });
    expect(p.run(() => moved(p))).toBe(true);
    const cid = p.conn.localCids.active()[0]!.connectionId;
    const forged = Buffer.concat([Buffer.from([0x40]), cid, seededBytes(3, 60)]);
    p.client.receive(forged, { local: CLIENT, remote: ATTACKER }, p.net.now);
    expect(p.conn.stats.drops.unknown_server_address).toBe(1);
    expect(p.conn.state).toBe("established");
  });

  it("PA-14 starts the preferred path with its own RTT estimate and a fresh congestion controller", () => {
    const p = new MigrationPair({ delayMs: 40 });
    p.net.setLink(CLIENT.address, PREFERRED4.address, { delayMs: 5 });
    p.net.setLink(PREFERRED4.address, CLIENT.address, { delayMs: 5 });
    const t = upload(p, 400_000);
    let cwndAtSwitch: number | undefined;
    let oldCwnd: number | undefined;
    p.run(() => {
      if (cwndAtSwitch === undefined && p.conn.timeline.pathValidated !== undefined) {
        cwndAtSwitch = p.conn.activePath.congestion.congestionWindowBytes();
        oldCwnd = p.conn.paths[0]!.congestion.congestionWindowBytes();
      }
      return moved(p) && t.intact();
    });
    const fresh = p.conn.paths.find((x) => x !== p.conn.activePath) ?? p.conn.activePath;
    void fresh;
    expect(p.conn.activePath.rtt.minRttMs).toBeGreaterThanOrEqual(10);
    expect(p.conn.activePath.rtt.minRttMs).toBeLessThan(20);
    // The old path had 80 ms; the new one never inherited it.
    expect(p.conn.activePath.rtt.smoothedRttMs).toBeLessThan(30);
    expect(cwndAtSwitch).toBeDefined();
    expect(cwndAtSwitch!).toBeLessThanOrEqual(oldCwnd!);
    expect(p.serverConn.activePath.rtt.minRttMs).toBeLessThan(20);
  });

  it("PA-15 recognises a stateless reset carrying the preferred address's token", () => {
    const key = Buffer.alloc(32, 7);
    const p = new MigrationPair({ delayMs: 10, statelessResetKey: key });
    expect(p.run(() => moved(p))).toBe(true);
    // The backend at the preferred address loses its state: a fresh endpoint with the same static key.
    const { Endpoint: EndpointClass } = { Endpoint: p.server.constructor as new (c: object) => Endpoint };
    const amnesiac = new EndpointClass({ statelessResetKey: key });
    p.net.attach(PREFERRED4, amnesiac);
    const t = upload(p, 5_000, 11);
    void t;
    expect(p.run(() => p.conn.isClosed)).toBe(true);
    expect(p.clientEvents.some((e) => e.type === "connectionClosed" && e.initiator === "stateless_reset")).toBe(true);
    expect(amnesiac.counters.statelessResetSent).toBeGreaterThan(0);
  });
});

describe("server with a preferred address", () => {
  it("PA-16 answers a PATH_CHALLENGE on its preferred address with a PATH_RESPONSE on that path (validate-only client)", () => {
    const p = new MigrationPair({ delayMs: 10, policy: "validate-only" });
    const t = upload(p, 50_000);
    expect(p.run(() => t.intact() && p.conn.migration.preferredState === "validated")).toBe(true);
    expect(p.datagrams(PREFERRED4, CLIENT).length).toBeGreaterThan(0);
    expect(p.serverConn.migration.stats.responsesSent).toBe(p.serverConn.migration.stats.challengesReceived);
    // validate-only: validated, not moved.
    expect(p.conn.activePath.address.remote).toEqual(VIP);
    expect(p.serverConn.activePath.address.local).toEqual(VIP);
  });

  it("PA-17 keeps sending non-probing packets from the original address until the client sent data to the preferred one and the server validated it", () => {
    const p = new MigrationPair({ delayMs: 10 });
    p.net.setLink(PREFERRED4.address, CLIENT.address, { delayMs: 60 });
    const violations: string[] = [];
    p.net.tap((d) => {
      if (!socketAddressEquals(d.from, PREFERRED4)) return;
      const s = [...p.server.connections()][0];
      const path = s && p.pathOf(s, { local: PREFERRED4, remote: CLIENT });
      if (s && s.timeline.serverSwitched === undefined && (path?.nonProbingPacketsSent ?? 0) > 0) violations.push(`data from the preferred address at ${d.at}`);
    });
    // A download: the server has data to send all through the move.
    const down = p.request(Buffer.from("SOURCE 2000000 5\n"));
    expect(p.run(() => moved(p) && down.done)).toBe(true);
    expect(down.reply.equals(seededBytes(5, 2_000_000))).toBe(true);
    expect(violations).toEqual([]);
    const s = p.serverConn.timeline;
    expect(s.serverSwitched).toBeGreaterThanOrEqual(s.pathValidated!);
    expect(p.datagrams(VIP, CLIENT, { after: p.conn.timeline.pathValidated, before: s.serverSwitched }).length).toBeGreaterThan(0);
  });

  it("PA-18 probes the client from the preferred address itself, so a forged packet there moves nothing", () => {
    const p = new MigrationPair({ delayMs: 10, policy: "ignore" });
    p.net.setLink(ATTACKER.address, PREFERRED4.address, { delayMs: 1 });
    let injected = false;
    p.net.tap((d) => {
      if (injected || !socketAddressEquals(d.from, CLIENT) || d.datagram.length < 500 || !p.conn.isHandshakeConfirmed) return;
      if ((d.datagram[0]! & 0x80) !== 0) return;
      injected = true;
      // An off-path attacker replays a captured packet to the preferred address from its own address.
      p.net.send(ATTACKER, PREFERRED4, Buffer.from(d.datagram));
    });
    const t = upload(p, 300_000);
    expect(p.run(() => t.intact() && injected && p.serverConn.migration.stats.validationsFailed > 0, 20_000)).toBe(true);
    expect(p.datagrams(PREFERRED4, ATTACKER).length).toBeGreaterThan(0);
    expect(p.serverConn.activePath.address).toEqual({ local: VIP, remote: CLIENT });
    expect(p.serverConn.timeline.serverSwitched).toBeUndefined();
  });

  it("PA-19 sends every packet from the preferred address once both conditions hold", () => {
    const p = new MigrationPair({ delayMs: 10 });
    const t = upload(p, 300_000);
    expect(p.run(() => moved(p) && t.intact())).toBe(true);
    const switched = p.serverConn.timeline.serverSwitched!;
    expect(p.datagrams(VIP, CLIENT, { after: switched }).length).toBe(0);
    expect(p.datagrams(PREFERRED4, CLIENT, { after: switched }).length).toBeGreaterThan(10);
    expect(p.serverConn.activePath.address).toEqual({ local: PREFERRED4, remote: CLIENT });
  });

  it("PA-20 a forged address change on the handshake address is limited to 3× and undone, and the connection carries on", () => {
    const p = new MigrationPair({ delayMs: 10, policy: "ignore" });
    p.net.setLink(ATTACKER.address, VIP.address, { delayMs: 1 });
    let injected = false;
    p.net.tap((d) => {
      if (injected || !socketAddressEquals(d.from, CLIENT) || d.datagram.length < 500 || !p.conn.isHandshakeConfirmed) return;
      if ((d.datagram[0]! & 0x80) !== 0) return;
      injected = true;
      p.net.send(ATTACKER, VIP, Buffer.from(d.datagram));
    });
    const t = upload(p, 300_000);
    expect(p.run(() => t.intact() && injected, 20_000)).toBe(true);
    p.run(() => false, 4_000);
    const toAttacker = p.bytesBetween(formatSocketAddress(VIP), formatSocketAddress(ATTACKER));
    const fromAttacker = p.bytesBetween(formatSocketAddress(ATTACKER), formatSocketAddress(VIP));
    expect(fromAttacker).toBeGreaterThan(0);
    expect(toAttacker).toBeLessThanOrEqual(3 * fromAttacker);
    expect(p.serverConn.activePath.address).toEqual({ local: VIP, remote: CLIENT });
    expect(p.serverConn.state).toBe("established");
  });
});

describe("path validation", () => {
  it("PA-21 fills PATH_CHALLENGE with 8 bytes from the injected random source", () => {
    const calls: number[] = [];
    let counter = 0;
    const random = (n: number): Buffer => {
      calls.push(n);
      return Buffer.alloc(n, ++counter);
    };
    const p = new MigrationPair({ delayMs: 10, clientConfig: { random } });
    expect(p.run(() => moved(p))).toBe(true);
    expect(calls.length).toBe(p.conn.migration.stats.challengesSent);
    expect(calls.every((n) => n === 8)).toBe(true);
  });

  it("PA-22 a lost PATH_RESPONSE is not retransmitted; the next challenge gets its own, exactly one per challenge", () => {
    const p = new MigrationPair({ delayMs: 10 });
    p.net.setLink(PREFERRED4.address, CLIENT.address, { delayMs: 10, blackhole: true });
    expect(p.run(() => p.conn.timeline.probeSent !== undefined && p.serverConn.migration.stats.responsesSent > 0)).toBe(true);
    p.net.setLink(PREFERRED4.address, CLIENT.address, { delayMs: 10 });
    expect(p.run(() => moved(p), 10_000)).toBe(true);
    const s = p.serverConn.migration.stats;
    expect(p.conn.migration.stats.challengesSent).toBeGreaterThanOrEqual(2);
    expect(s.responsesSent).toBe(s.challengesReceived);
    expect(s.responsesSent).toBe(p.conn.migration.stats.challengesSent);
  });

  it("PA-24 abandons validation after 3 × max(PTO, PTO with kInitialRtt): about 3 s with default parameters", () => {
    const p = new MigrationPair({ delayMs: 10 });
    p.net.setLink(CLIENT.address, PREFERRED4.address, { delayMs: 10, blackhole: true });
    expect(p.run(() => p.conn.timeline.fallback !== undefined, 10_000)).toBe(true);
    const took = p.conn.timeline.fallback!.at - p.conn.timeline.probeSent!;
    expect(took).toBeGreaterThan(2_900);
    expect(took).toBeLessThanOrEqual(3 * 1024 + 1);
    expect(p.clientEvents.some((e) => e.type === "pathValidationFailed")).toBe(true);
  });

  it("PA-25 retries a lost PATH_CHALLENGE, no more often than an Initial would be retransmitted (backing off)", () => {
    const p = new MigrationPair({ delayMs: 10 });
    p.net.setLink(CLIENT.address, PREFERRED4.address, { delayMs: 10, blackhole: true });
    expect(p.run(() => p.conn.timeline.probeSent !== undefined)).toBe(true);
    p.run(() => false, 400);
    p.net.setLink(CLIENT.address, PREFERRED4.address, { delayMs: 10 });
    expect(p.run(() => moved(p), 10_000)).toBe(true);
    const probes = p.datagrams(CLIENT, PREFERRED4, { before: p.conn.timeline.pathValidated! }).map((w) => w.at);
    expect(probes.length).toBeGreaterThanOrEqual(3);
    const gaps = probes.slice(1).map((t, i) => t - probes[i]!);
    // PTO of the 20 ms path: smoothed RTT + 4 × rttvar + max_ack_delay > 45 ms; each retry waits twice as long.
    expect(gaps[0]!).toBeGreaterThan(45);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]!).toBeGreaterThanOrEqual(1.9 * gaps[i - 1]!);
  });

  it("PA-26 pads datagrams with PATH_CHALLENGE or PATH_RESPONSE to 1200 bytes", () => {
    const p = new MigrationPair({ delayMs: 10 });
    expect(p.run(() => moved(p))).toBe(true);
    const probes = p.datagrams(CLIENT, PREFERRED4, { before: p.conn.timeline.pathValidated });
    const answers = p.datagrams(PREFERRED4, CLIENT, { before: p.serverConn.timeline.serverSwitched });
    expect(probes.length).toBeGreaterThan(0);
    expect(answers.length).toBeGreaterThan(0);
    for (const w of [...probes, ...answers]) expect(w.bytes).toBeGreaterThanOrEqual(1200);
  });

  it("PA-27 never sends more than 3 × what it received to an unvalidated address (measured on the wire)", () => {
    const p = new MigrationPair({ delayMs: 10, policy: "ignore" });
    p.net.setLink(ATTACKER.address, PREFERRED4.address, { delayMs: 1 });
    p.net.setLink(ATTACKER.address, VIP.address, { delayMs: 1 });
    let injected = 0;
    p.net.tap((d) => {
      if (injected >= 6 || !socketAddressEquals(d.from, CLIENT) || !p.conn.isHandshakeConfirmed || (d.datagram[0]! & 0x80) !== 0) return;
      injected++;
      // Small replayed packets: the budget, not the padding, decides what the server may send.
      p.net.send(ATTACKER, injected % 2 ? PREFERRED4 : VIP, Buffer.from(d.datagram));
    });
    const t = upload(p, 300_000);
    expect(p.run(() => t.intact() && injected >= 6, 20_000)).toBe(true);
    p.run(() => false, 4_000);
    for (const server of [VIP, PREFERRED4]) {
      const sent = p.bytesBetween(formatSocketAddress(server), formatSocketAddress(ATTACKER));
      const received = p.bytesBetween(formatSocketAddress(ATTACKER), formatSocketAddress(server));
      expect(sent).toBeLessThanOrEqual(3 * received);
    }
    expect(p.serverConn.internalErrors).toEqual([]);
  });

  it("PA-28 a NAT rebinding of the client's port moves the server on the first non-probing packet from the new port", () => {
    const p = new MigrationPair({ delayMs: 10, policy: "ignore" });
    const nat = new RebindingNat(p.net, p.client, CLIENT);
    p.net.attach(CLIENT, nat as unknown as Endpoint);
    const t = upload(p, 600_000);
    expect(p.run(() => p.conn.isHandshakeConfirmed && p.net.now > 80)).toBe(true);
    const rebound = { address: CLIENT.address, port: 40404 };
    nat.outside = rebound;
    nat.attachOutside(rebound);
    expect(p.run(() => t.intact())).toBe(true);
    expect(p.serverConn.activePath.address).toEqual({ local: VIP, remote: rebound });
    expect(p.serverConn.activePath.validated).toBe(true);
    expect(p.datagrams(VIP, CLIENT, { after: p.net.now - 1 }).length).toBe(0);
  });

  it("PA-28 a NAT rebinding to another address is followed too, and probing-only packets never move the server", () => {
    const p = new MigrationPair({ delayMs: 10, policy: "validate-only" });
    const nat = new RebindingNat(p.net, p.client, CLIENT);
    p.net.attach(CLIENT, nat as unknown as Endpoint);
    const t = upload(p, 300_000);
    expect(p.run(() => p.conn.migration.preferredState === "validated")).toBe(true);
    // Probes reached the preferred address and were answered, but only probes: the server stays.
    expect(p.serverConn.activePath.address.local).toEqual(VIP);
    const rebound = { address: "192.0.2.99", port: 50000 };
    nat.outside = rebound;
    nat.attachOutside(rebound);
    expect(p.run(() => t.intact())).toBe(true);
    expect(p.serverConn.activePath.address).toEqual({ local: VIP, remote: rebound });
  });
});

describe("connection IDs around a move", () => {
  it("PA-29 the server answers on the preferred path with a client CID it never used on the original path", () => {
    const p = new MigrationPair({ delayMs: 10 });
    const t = upload(p, 100_000);
    expect(p.run(() => moved(p) && t.intact())).toBe(true);
    const oldCids = new Set(p.datagrams(VIP, CLIENT).map((w) => w.dcid).filter((d) => d !== undefined));
    const newCids = new Set(p.datagrams(PREFERRED4, CLIENT).map((w) => w.dcid));
    expect(newCids.size).toBeGreaterThan(0);
    for (const c of newCids) expect(c !== undefined && oldCids.has(c)).toBe(false);
  });

  it("PA-30 keeps spare CIDs on both sides after a move, so a second move does not stall", () => {
    const p = new MigrationPair({ delayMs: 10 });
    expect(p.run(() => moved(p) && p.conn.timeline.oldPathRetired !== undefined && p.serverConn.timeline.oldPathRetired !== undefined)).toBe(true);
    p.run(() => false, 100);
    expect(p.conn.peerCids.unusedCount).toBeGreaterThanOrEqual(1);
    expect(p.serverConn.peerCids.unusedCount).toBeGreaterThanOrEqual(1);
    p.net.attach(CLIENT2, p.client);
    expect(p.conn.migrate(CLIENT2, p.net.now)).toBe(true);
    p.client.wake(p.conn, p.net.now);
    const t = upload(p, 50_000);
    expect(p.run(() => t.intact() && socketAddressEquals(p.conn.activePath.address.local, CLIENT2))).toBe(true);
    expect(p.serverConn.activePath.address.remote).toEqual(CLIENT2);
  });

  it("PA-31 honours RETIRE_CONNECTION_ID on both sides after a move and tops the pool up again", () => {
    const p = new MigrationPair({ delayMs: 10 });
    expect(p.run(() => moved(p) && p.conn.timeline.oldPathRetired !== undefined && p.serverConn.timeline.oldPathRetired !== undefined)).toBe(true);
    p.run(() => false, 100);
    // The client retired the server's handshake CID; the server retired the client's.
    expect(p.serverConn.localCids.bySequence(0)!.retired).toBe(true);
    expect(p.conn.localCids.bySequence(0)!.retired).toBe(true);
    // Both issued replacements up to the peer's limit (§5.1.1).
    expect(p.serverConn.localCids.active().length).toBe(4);
    expect(p.conn.localCids.active().length).toBe(4);
    expect(p.conn.peerCids.available.some((c) => c.sequenceNumber === 0)).toBe(false);
  });
});

describe("bad input around migration", () => {
  it("PA-27 a flood of new client addresses (a port-hopping NAT) keeps paths bounded, counts what it drops, and the transfer survives", () => {
    const p = new MigrationPair({ delayMs: 10, policy: "ignore" });
    const nat = new RebindingNat(p.net, p.client, CLIENT);
    p.net.attach(CLIENT, nat as unknown as Endpoint);
    const t = upload(p, 400_000);
    expect(p.run(() => p.conn.isHandshakeConfirmed && p.net.now > 60)).toBe(true);
    nat.hopping = true;
    let maxPaths = 0;
    p.run(() => {
      maxPaths = Math.max(maxPaths, p.serverConn.paths.length);
      return false;
    }, 300);
    nat.hopping = false;
    const settled = { address: CLIENT.address, port: 45454 };
    nat.outside = settled;
    nat.attachOutside(settled);
    expect(p.run(() => t.intact(), 30_000)).toBe(true);
    expect(maxPaths).toBeLessThanOrEqual(MAX_PATHS);
    expect(p.serverConn.migration.stats.pathsEvicted).toBeGreaterThan(0);
    expect(p.serverConn.internalErrors).toEqual([]);
    expect(p.conn.internalErrors).toEqual([]);
  });
});

describe("moves under impairment", () => {
  it("PA-10 50 moves under 0-5% loss, reordering and duplication: each moves or falls back, every transfer byte-exact", () => {
    const failures: string[] = [];
    let movedCount = 0;
    for (let i = 0; i < 50; i++) {
      const delayMs = 5 + ((i * 37) % 100);
      const p = new MigrationPair({ seed: 500 + i, defaults: { delayMs, jitterMs: 2, lossPercent: (i % 6), reorderPercent: 2, duplicatePercent: 2 } });
      const t = upload(p, 60_000, i);
      const ok = p.run(() => t.intact() && (moved(p) || p.conn.timeline.fallback !== undefined), 60_000);
      if (!ok || p.conn.internalErrors.length > 0 || p.serverConn.internalErrors.length > 0) {
        failures.push(`#${i} delay ${delayMs}: done=${ok} state=${p.conn.state} ${String(p.conn.internalErrors)} ${String(p.serverConn.internalErrors)}`);
      }
      if (moved(p)) movedCount++;
    }
    expect(failures).toEqual([]);
    expect(movedCount).toBeGreaterThan(40);
  });
});

describe("packets in flight on the old path after the move (found over real sockets, test/netns)", () => {
  it("are still delivered for 3 PTO after their CID is retired, not answered with a stateless reset", () => {
    const p = new MigrationPair({ delayMs: 5 });
    // The old path is slower than the new one: the RETIRE_CONNECTION_ID for the old CID, sent on the new
    // path, overtakes the client's last packets on the old one.
    p.net.setLink(CLIENT.address, VIP.address, { delayMs: 40 });
    const t = upload(p, 1_000_000);
    expect(p.run(() => moved(p) && t.intact(), 30_000)).toBe(true);
    expect(p.server.counters.statelessResetSent).toBe(0);
    expect(p.server.counters.retiredCidRouted).toBeGreaterThan(0);
    expect(p.server.drops.unknown_connection_id ?? 0).toBe(0);
  });
});
