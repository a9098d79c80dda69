/**
 * RFC 9002 mechanisms seen from the wire, with whole connections in the simulated network. The unit
 * tests in node-images/quic/recovery/ check LossDetection, AckTracker, Pacer and the congestion
 * controllers alone; these check that the Connection wires them up: the PTO fires and probes after a
 * lost tail, persistent congestion collapses the window, ACKs follow the every-second-packet and
 * max_ack_delay rules, and pacing spreads what the window would otherwise send in one burst.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { Connection } from "../../node-images/quic/connection.ts";
import { Endpoint } from "../../node-images/quic/endpoint.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import { minimumWindowBytes } from "../../node-images/quic/recovery/congestion/congestion-controller.ts";
import { PACING_BURST_DATAGRAMS, PACING_GAIN } from "../../node-images/quic/recovery/pacer.ts";
import { SimulatedNetwork } from "../../node-images/quic/simulated-network.ts";
import { clientTls, serverTls } from "./pki-fixture.ts";
import { HashServer, StreamRequest, drainEvents, seededBytes } from "./sim-apps.ts";

const SERVER: SocketAddress = { address: "203.0.113.1", port: 443 };
const CLIENT: SocketAddress = { address: "192.0.2.10", port: 50000 };
const ONE_WAY_MS = 10;
/** Our default max_ack_delay transport parameter (RFC 9000 §18.2 default). */
const MAX_ACK_DELAY_MS = 25;
const MDS = 1200;

interface WireEvent {
  at: number;
  toServer: boolean;
  bytes: number;
  dropped: boolean;
}

/** A confirmed connection on a clean 20 ms RTT link, quiet afterwards; `withApp` adds the SINK/SOURCE server. */
function establish(seed: number, withApp: boolean) {
  const net = new SimulatedNetwork({ seed, defaults: { delayMs: ONE_WAY_MS } });
  const server = new Endpoint({ server: { tls: serverTls() } });
  const client = new Endpoint();
  net.attach(SERVER, server);
  net.attach(CLIENT, client);
  const app = withApp ? new HashServer(server) : undefined;
  const wire: WireEvent[] = [];
  net.tap((d) => wire.push({ at: d.at, toServer: d.to.address === SERVER.address, bytes: d.datagram.length, dropped: d.dropped }));
  const conn = client.connect({ tls: clientTls() }, { local: CLIENT, remote: SERVER }, net.now);
  const pump = (): void => {
    app?.pump(net.now);
    drainEvents(client);
    if (!app) drainEvents(server);
  };
  const r = net.run({ maxTimeMs: 2_000, until: () => { pump(); return conn.isHandshakeConfirmed && [...server.connections()].every((c) => c.isHandshakeConfirmed); } });
  expect(r.done).toBe(true);
  // Let the last ACKs and NEW_CONNECTION_IDs settle.
  net.run({ maxTimeMs: 300, until: () => { pump(); return false; } });
  const serverConn = [...server.connections()][0]!;
  return { net, server, client, conn, serverConn, app, wire, pump };
}

function sink(body: Buffer): Buffer {
  return Buffer.concat([Buffer.from("SINK\n"), body]);
}

function runUpload(s: ReturnType<typeof establish>, bytes: number, seed: number, opts: { maxTimeMs?: number; onStep?: () => void } = {}): StreamRequest {
  const body = seededBytes(seed, bytes);
  const req = new StreamRequest(s.client, s.conn, sink(body));
  const r = s.net.run({ maxTimeMs: opts.maxTimeMs ?? 60_000, until: () => { s.pump(); req.pump(s.net.now); opts.onStep?.(); return req.done; } });
  expect(r.done).toBe(true);
  expect(JSON.parse(req.reply.toString())).toEqual({ bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") });
  return req;
}

function cwndOf(conn: Connection): number {
  return conn.activePath.congestion.congestionWindowBytes();
}

describe("RFC 9002 at connection level (simulated network)", () => {
  it("§6.2 the PTO fires when the tail is lost and its probe carries the data through", () => {
    const s = establish(11, false);
    const { net, client, conn, serverConn, wire } = s;
    // Lose exactly the next client→server datagram: the tail of a short request.
    net.setLink(CLIENT.address, SERVER.address, { delayMs: ONE_WAY_MS, blackhole: true });
    net.tap((d) => {
      if (d.dropped && d.to.address === SERVER.address) net.setLink(CLIENT.address, SERVER.address, { delayMs: ONE_WAY_MS });
    });
    const streamId = conn.openStream(true)!;
    conn.streamWrite(streamId, Buffer.from("the tail"));
    // RFC 9002 §6.2.1: PTO = smoothed_rtt + max(4 rttvar, kGranularity) + max_ack_delay once the handshake is confirmed.
    const expectedPtoMs = conn.activePath.rtt.ptoBaseMs() + MAX_ACK_DELAY_MS;
    const sentAt = net.now;
    const before = wire.length;
    client.wake(conn, net.now);
    let arrived = false;
    net.run({
      maxTimeMs: 2_000,
      until: () => {
        s.pump();
        arrived ||= (serverConn.streamRead(streamId)?.toString() ?? "") === "the tail";
        return arrived;
      },
    });
    const clientSends = wire.slice(before).filter((w) => w.toServer);
    expect(clientSends[0]).toMatchObject({ at: sentAt, dropped: true });
    // Nothing else left the client until the PTO: the first datagram after the loss is the probe, at the PTO.
    expect(clientSends[1]!.dropped).toBe(false);
    expect(clientSends[1]!.at - sentAt).toBeCloseTo(expectedPtoMs, 3);
    expect(arrived).toBe(true);
    expect(conn.internalErrors).toEqual([]);
  });

  it("§7.6.2 a blackout longer than the persistent-congestion duration collapses the window to kMinimumWindow; a short one does not", () => {
    const blackout = (durationMs: number, seed: number) => {
      const s = establish(seed, true);
      // Grow the window first.
      runUpload(s, 1 << 20, seed);
      const cwndBefore = cwndOf(s.conn);
      // Start a larger upload, black out client→server 50 ms into it, then heal. (One direction only: when both
      // are dark, the server's own PTO probe can arrive first with an ACK of pre-blackout packets, whose
      // seconds-long RTT sample rightly stretches the persistent-congestion duration past the blackout.)
      const start = s.net.now;
      let minCwndAfter = Number.POSITIVE_INFINITY;
      let phase: "before" | "dark" | "healed" = "before";
      runUpload(s, 2 << 20, seed + 1, {
        onStep: () => {
          const t = s.net.now - start;
          if (phase === "before" && t >= 50) {
            phase = "dark";
            s.net.setLink(CLIENT.address, SERVER.address, { delayMs: ONE_WAY_MS, blackhole: true });
          } else if (phase === "dark" && t >= 50 + durationMs) {
            phase = "healed";
            s.net.setLink(CLIENT.address, SERVER.address, { delayMs: ONE_WAY_MS });
          }
          if (phase === "healed") minCwndAfter = Math.min(minCwndAfter, cwndOf(s.conn));
        },
      });
      expect(s.conn.internalErrors).toEqual([]);
      return { cwndBefore, minCwndAfter, lost: s.conn.stats.packetsLost };
    };
    const long = blackout(1_000, 21);
    expect(long.cwndBefore).toBeGreaterThan(20 * MDS);
    expect(long.lost).toBeGreaterThan(0);
    expect(long.minCwndAfter).toBe(minimumWindowBytes(MDS));
    // 10 ms is far below 3 × PTO: loss recovery halves (or so) the window but does not collapse it.
    const short = blackout(10, 31);
    expect(short.minCwndAfter).toBeGreaterThan(minimumWindowBytes(MDS));
  });

  it("RFC 9000 §13.2.1-2: one ack-eliciting packet is acknowledged after max_ack_delay, a second one at once", () => {
    const s = establish(41, false);
    const { net, client, conn, wire } = s;
    const streamId = conn.openStream(true)!;

    // One packet: the server, with nothing else to send, waits max_ack_delay before acknowledging.
    let before = wire.length;
    const oneAt = net.now;
    conn.streamWrite(streamId, Buffer.from("one"));
    client.wake(conn, net.now);
    net.run({ maxTimeMs: 200, until: () => { s.pump(); return false; } });
    let sent = wire.slice(before);
    expect(sent.filter((w) => w.toServer)).toHaveLength(1);
    const ackOfOne = sent.find((w) => !w.toServer)!;
    expect(ackOfOne.at - (oneAt + ONE_WAY_MS)).toBeCloseTo(MAX_ACK_DELAY_MS, 6);

    // Two packets in one instant: the second makes the ACK due at once (§13.2.2).
    before = wire.length;
    const twoAt = net.now;
    conn.streamWrite(streamId, Buffer.from("two"));
    client.wake(conn, net.now);
    net.flush(client);
    conn.streamWrite(streamId, Buffer.from("three"));
    client.wake(conn, net.now);
    net.flush(client);
    net.run({ maxTimeMs: 200, until: () => { s.pump(); return false; } });
    sent = wire.slice(before);
    expect(sent.filter((w) => w.toServer && w.at === twoAt)).toHaveLength(2);
    const ackOfTwo = sent.find((w) => !w.toServer)!;
    expect(ackOfTwo.at).toBeCloseTo(twoAt + ONE_WAY_MS, 6);
    // Exactly one ACK each time: the server does not acknowledge ACK-only traffic.
    expect(sent.filter((w) => !w.toServer)).toHaveLength(1);
  });

  it("§7.7 pacing spreads a window's worth of data over the RTT instead of one burst", () => {
    const s = establish(51, true);
    runUpload(s, 1 << 20, 51);
    // Idle long enough for the pacer's bucket to refill (it holds one burst at most).
    s.net.run({ maxTimeMs: 100, until: () => { s.pump(); return false; } });
    const cwndBytes = cwndOf(s.conn);
    const srttMs = s.conn.activePath.rtt.smoothedRttMs;
    expect(cwndBytes).toBeGreaterThan(100 * MDS);
    const before = s.wire.length;
    const start = s.net.now;
    runUpload(s, 1 << 20, 52);
    // Within the first RTT no ACK has arrived yet, so cwnd and the pacing rate are those measured above.
    const firstRtt = s.wire.slice(before).filter((w) => w.toServer && w.at < start + 2 * ONE_WAY_MS);
    const atStart = firstRtt.filter((w) => w.at === start).length;
    expect(atStart).toBeLessThanOrEqual(PACING_BURST_DATAGRAMS);
    // The window and the flow-control credit allowed far more than a burst in that RTT.
    expect(firstRtt.length).toBeGreaterThan(3 * PACING_BURST_DATAGRAMS);
    // After the burst, datagrams leave one by one at N × cwnd / smoothed_rtt.
    const gaps = firstRtt.slice(PACING_BURST_DATAGRAMS).map((w, i, a) => (i === 0 ? undefined : w.at - a[i - 1]!.at)).filter((g): g is number => g !== undefined);
    gaps.sort((a, b) => a - b);
    const medianGapMs = gaps[gaps.length >> 1]!;
    const expectedGapMs = MDS / ((PACING_GAIN * cwndBytes) / srttMs);
    expect(medianGapMs).toBeGreaterThan(0.8 * expectedGapMs);
    expect(medianGapMs).toBeLessThan(1.25 * expectedGapMs);
  });
});
