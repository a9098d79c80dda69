/**
 * Datagram fuzzing of the Endpoint and Connection receive paths (STYLE.md: "a malformed datagram is a
 * counted drop, never an exception out of the endpoint").
 *
 * Real datagrams are captured from a handshake and a transfer in the simulated network, then
 * 100,000+ seeded datagrams (pure random bytes, unmodified replays, and mutations of the captured
 * ones: bit flips, truncation, byte insertion, header field tweaks, coalesced garbage) are fed to four
 * endpoints: the server and the client of the captured connection (established), a fresh server and
 * a fresh client (no connections). For every datagram fed, we check that nothing throws and that it
 * was accounted for: an endpoint drop counter, a connection drop counter, a packet processed, or a
 * Version Negotiation / Retry sent. At the end, heap growth and connection tables stay bounded.
 */
import v8 from "node:v8";
import vm from "node:vm";
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../node-images/common/seeded-random.ts";
import type { Connection } from "../../node-images/quic/connection.ts";
import { Endpoint } from "../../node-images/quic/endpoint.ts";
import type { PathAddress, SocketAddress } from "../../node-images/quic/path.ts";
import { SimulatedNetwork } from "../../node-images/quic/simulated-network.ts";
import { clientTls, serverTls } from "./pki-fixture.ts";
import { HashServer, StreamRequest, drainEvents, seededBytes } from "./sim-apps.ts";

const SERVER: SocketAddress = { address: "203.0.113.1", port: 443 };
const CLIENT: SocketAddress = { address: "192.0.2.10", port: 50000 };
const DATAGRAMS = 100_000;
/** Heap growth allowed over the whole run (after GC): a leak of even 100 bytes per datagram would exceed it. */
const MAX_HEAP_GROWTH_BYTES = 8 * 1024 * 1024;
/** A server may accept a handful of connections from replayed valid Initials, never one per corrupted datagram. */
const MAX_FRESH_SERVER_CONNECTIONS = 16;

interface Captured {
  datagram: Buffer;
  toServer: boolean;
}

/** A handshake and a 200 kB transfer both ways, with every datagram recorded. */
function captureRealTraffic() {
  const net = new SimulatedNetwork({ seed: 42, defaults: { delayMs: 5 } });
  const server = new Endpoint({ server: { tls: serverTls() } });
  const client = new Endpoint();
  net.attach(SERVER, server);
  net.attach(CLIENT, client);
  const captured: Captured[] = [];
  net.tap((d) => captured.push({ datagram: Buffer.from(d.datagram), toServer: d.to.address === SERVER.address }));
  const app = new HashServer(server);
  const conn = client.connect({ tls: clientTls() }, { local: CLIENT, remote: SERVER }, net.now);
  const up = new StreamRequest(client, conn, Buffer.concat([Buffer.from("SINK\n"), seededBytes(1, 200_000)]));
  const down = new StreamRequest(client, conn, Buffer.from("SOURCE 200000 2\n"));
  const r = net.run({ maxTimeMs: 10_000, until: () => { app.pump(net.now); up.pump(net.now); down.pump(net.now); drainEvents(client); return up.done && down.done; } });
  expect(r.done).toBe(true);
  // Let the last ACKs cross so both sides are quiet.
  net.run({ maxTimeMs: 100 });
  drainEvents(server);
  drainEvents(client);
  return { net, server, client, conn, captured };
}

/** One mutated, replayed or random datagram. */
function nextDatagram(rng: SeededRandom, captured: readonly Captured[]): { datagram: Buffer; kind: string } {
  const pick = (): Buffer => captured[Math.floor(rng.next() * captured.length)]!.datagram;
  const roll = rng.next();
  if (roll < 0.05) return { datagram: rng.bytes(Math.floor(rng.next() * 1500)), kind: "random" };
  if (roll < 0.1) return { datagram: Buffer.from(pick()), kind: "replay" };
  const d = Buffer.from(pick());
  const op = Math.floor(rng.next() * 7);
  switch (op) {
    case 0: {
      // Bit flips: 1 to 8 random bits anywhere.
      const flips = 1 + Math.floor(rng.next() * 8);
      for (let i = 0; i < flips && d.length > 0; i++) {
        const at = Math.floor(rng.next() * d.length);
        d[at] = d[at]! ^ (1 << Math.floor(rng.next() * 8));
      }
      return { datagram: d, kind: "bitflip" };
    }
    case 1:
      return { datagram: d.subarray(0, Math.floor(rng.next() * d.length)), kind: "truncate" };
    case 2: {
      const at = Math.floor(rng.next() * (d.length + 1));
      return { datagram: Buffer.concat([d.subarray(0, at), rng.bytes(1 + Math.floor(rng.next() * 16)), d.subarray(at)]), kind: "insert" };
    }
    case 3: {
      // Header field tweaks: first byte (form, fixed bit, type, key phase, PN length), version, CID lengths, varints.
      const field = Math.floor(rng.next() * 6);
      if (d.length === 0) return { datagram: d, kind: "header" };
      if (field === 0) d[0] = d[0]! ^ (1 << Math.floor(rng.next() * 8));
      else if (field === 1 && d.length >= 5) d.writeUInt32BE([0, 2, 0xff00001d, 0x6b3343cf, rng.nextUint32()][Math.floor(rng.next() * 5)]! >>> 0, 1);
      else if (field === 2 && d.length >= 6) d[5] = Math.floor(rng.next() * 256); // DCID length
      else if (field === 3 && d.length >= 7) d[6 + (d[5]! % 21)] = Math.floor(rng.next() * 256); // SCID length (or a DCID byte)
      else if (field === 4 && d.length >= 30) {
        // A varint (token length or Length) somewhere after the CIDs: set its two length bits.
        const at = 7 + Math.floor(rng.next() * 24);
        d[at] = (d[at]! & 0x3f) | (Math.floor(rng.next() * 4) << 6);
      } else d[0] = d[0]! ^ 0x04; // short header: key phase bit
      return { datagram: d, kind: "header" };
    }
    case 4:
      // Coalesced garbage after a real packet.
      return { datagram: Buffer.concat([d, rng.bytes(1 + Math.floor(rng.next() * 200))]), kind: "coalesce_garbage" };
    case 5:
      // Two real packets coalesced (legal only for long headers), possibly from different directions.
      return { datagram: Buffer.concat([d, pick()]).subarray(0, 1500), kind: "coalesce_real" };
    default:
      // Garbage in front of a real packet.
      return { datagram: Buffer.concat([rng.bytes(1 + Math.floor(rng.next() * 40)), d]), kind: "prefix_garbage" };
  }
}

/**
 * Everything an endpoint has counted for received datagrams: its own drops and answers, and for its
 * connections (current, plus those removed, kept in `retired`) their drops and processed packets.
 */
class Accounting {
  readonly endpoint: Endpoint;
  private retired = 0;
  private readonly known = new Set<Connection>();

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
    for (const c of endpoint.connections()) this.known.add(c);
  }

  static connectionTotal(c: Connection): number {
    let n = c.stats.packetsReceived;
    for (const v of Object.values(c.stats.drops)) n += v ?? 0;
    return n;
  }

  total(): number {
    const e = this.endpoint;
    let n = this.retired + e.counters.versionNegotiationSent + e.counters.retrySent;
    for (const v of Object.values(e.drops)) n += v ?? 0;
    for (const c of this.known) n += Accounting.connectionTotal(c);
    return n;
  }

  /** Drain events; connections that left are folded into `retired` once their counts are final. */
  drainEvents(): void {
    for (let ev = this.endpoint.pollEvent(); ev; ev = this.endpoint.pollEvent()) {
      if (ev.type === "connectionAccepted") this.known.add(ev.connection);
      if (ev.type === "connectionRemoved" && this.known.delete(ev.connection)) this.retired += Accounting.connectionTotal(ev.connection);
    }
  }
}

function heapUsedAfterGc(): number {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe("datagram fuzzing: mutated real packets never throw, every datagram is counted", () => {
  it(`feeds ${DATAGRAMS.toLocaleString("en")} seeded mutated/random datagrams to established and fresh client and server endpoints`, () => {
    const { net, server, client, conn, captured } = captureRealTraffic();
    expect(captured.length).toBeGreaterThan(100);
    const serverConn = [...server.connections()][0]!;
    const freshServer = new Endpoint({ server: { tls: serverTls() } });
    const freshClient = new Endpoint();
    const targets = [
      { name: "established server", endpoint: server, path: { local: SERVER, remote: CLIENT } },
      { name: "established client", endpoint: client, path: { local: CLIENT, remote: SERVER } },
      { name: "fresh server", endpoint: freshServer, path: { local: SERVER, remote: CLIENT } },
      { name: "fresh client", endpoint: freshClient, path: { local: CLIENT, remote: SERVER } },
    ].map((t) => ({ ...t, accounting: new Accounting(t.endpoint), uncounted: 0, fed: 0 }));

    const rng = new SeededRandom(20240607);
    const kinds: Record<string, number> = {};
    const exceptions: string[] = [];
    const heapBefore = heapUsedAfterGc();
    let now = net.now;
    let maxFreshServerConnections = 0;
    for (let i = 0; i < DATAGRAMS; i++) {
      const { datagram, kind } = nextDatagram(rng, captured);
      kinds[kind] = (kinds[kind] ?? 0) + 1;
      // Virtual time creeps forward (10 s over the run) so timers fire, but stays inside the 30 s idle timeout.
      now += 0.1;
      for (const t of targets) {
        const before = t.accounting.total();
        try {
          t.endpoint.receive(datagram, t.path as PathAddress, now);
          for (let tx = t.endpoint.pollTransmit(now), n = 0; tx && n < 64; tx = t.endpoint.pollTransmit(now), n++);
          if ((t.endpoint.nextTimeout() ?? Infinity) <= now) t.endpoint.handleTimeout(now);
        } catch (err) {
          if (exceptions.length < 10) exceptions.push(`${t.name} #${i} ${kind}: ${(err as Error).stack?.split("\n").slice(0, 3).join(" | ")}`);
        }
        t.accounting.drainEvents();
        t.fed++;
        if (t.accounting.total() <= before) t.uncounted++;
      }
      maxFreshServerConnections = Math.max(maxFreshServerConnections, freshServer.connectionCount);
    }
    const heapAfter = heapUsedAfterGc();

    expect(exceptions).toEqual([]);
    const report = targets.map((t) => ({ name: t.name, fed: t.fed, uncounted: t.uncounted, connections: t.endpoint.connectionCount, drops: t.endpoint.drops }));
    expect(report.filter((r) => r.uncounted > 0)).toEqual([]);
    // No exception escaped the core either: bugs caught at the boundary are kept in internalErrors.
    expect(conn.internalErrors).toEqual([]);
    expect(serverConn.internalErrors).toEqual([]);
    // Off-path garbage must not kill the established connection (it cannot authenticate).
    expect(conn.state).toBe("established");
    expect(serverConn.state).toBe("established");
    // A replayed, unmodified first Initial is a valid new connection attempt (RFC 9000 §8.1: only a Retry
    // could tell): servers may accept a few, but corrupted Initials leave no state behind.
    expect([...server.connections()]).toContain(serverConn);
    expect(server.connectionCount).toBeLessThanOrEqual(1 + MAX_FRESH_SERVER_CONNECTIONS);
    expect(maxFreshServerConnections).toBeLessThanOrEqual(MAX_FRESH_SERVER_CONNECTIONS);
    expect(freshServer.drops.initial_undecryptable ?? 0).toBeGreaterThan(0);
    expect(client.connectionCount).toBe(1);
    expect(freshClient.connectionCount).toBe(0);
    expect(heapAfter - heapBefore).toBeLessThan(MAX_HEAP_GROWTH_BYTES);
    expect(Object.keys(kinds).length).toBeGreaterThanOrEqual(9);
  });
});
