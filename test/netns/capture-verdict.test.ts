/**
 * The capture verdict (capture-verdict.ts) on captures we can shape: a preferred-address move in the simulated
 * network, written to a pcap and read back like tcpdump's, then the same capture with violations planted in it.
 * The namespace test (preferred-address-netns.test.ts) runs the same code on a real capture.
 */
import { describe, expect, it } from "vitest";
import { Endpoint } from "../../node-images/quic/endpoint.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import { SimulatedNetwork } from "../../node-images/quic/simulated-network.ts";
import { clientTls, serverTls } from "../quic/pki-fixture.ts";
import { HashServer, StreamRequest, drainEvents } from "../quic/sim-apps.ts";
import { classifyCapture, judgeMigration, parseKeyLog, KeyLogError, type ClassifiedCapture, type QuicDatagramRecord } from "./capture-verdict.ts";
import { readPcap, writeRawIpv4Pcap } from "./pcap.ts";

const ORIGINAL: SocketAddress = { address: "10.77.1.1", port: 4433 };
const PREFERRED: SocketAddress = { address: "10.77.2.1", port: 4433 };
const CLIENT: SocketAddress = { address: "10.77.0.2", port: 50000 };

/** A 200 kB download across the move, tapped on the wire, through a pcap file and back. */
function simulatedCapture(policy: "follow" | "ignore"): ClassifiedCapture {
  const keyLog: string[] = [];
  const net = new SimulatedNetwork({ seed: 9, defaults: { delayMs: 5 } });
  const server = new Endpoint({ server: { tls: serverTls(), preferredAddress: { ipv4: PREFERRED } } });
  const client = new Endpoint();
  net.attach(ORIGINAL, server);
  net.attach(PREFERRED, server);
  net.attach(CLIENT, client);
  const wire: Array<{ timeUs: number; src: SocketAddress; dst: SocketAddress; payload: Buffer }> = [];
  net.tap((d) => {
    if (!d.dropped) wire.push({ timeUs: 1e12 + d.at * 1000, src: d.from, dst: d.to, payload: Buffer.from(d.datagram) });
  });
  const app = new HashServer(server);
  const conn = client.connect({ tls: { ...clientTls(), keyLog: (l: string) => keyLog.push(l) }, preferredAddressPolicy: policy }, { local: CLIENT, remote: ORIGINAL }, net.now);
  const req = new StreamRequest(client, conn, Buffer.from("SOURCE 200000 3\n"));
  const r = net.run({ maxTimeMs: 10_000, until: () => { app.pump(net.now); req.pump(net.now); drainEvents(client); return req.done; } });
  expect(r.done).toBe(true);
  const pcap = readPcap(writeRawIpv4Pcap(wire));
  return classifyCapture(pcap.udp, { original: ORIGINAL, preferred: PREFERRED, keyLog: parseKeyLog(keyLog.join("\n")), connectionIdLength: 8 });
}

/** A copy of `capture` with one datagram added at capture position `afterIndex` + 0.5. */
function withPlanted(capture: ClassifiedCapture, afterIndex: number, d: Omit<QuicDatagramRecord, "index" | "timeUs" | "client" | "server" | "bytes">): ClassifiedCapture {
  const server = d.path === "original" ? ORIGINAL : PREFERRED;
  const planted: QuicDatagramRecord = { ...d, index: afterIndex + 0.5, timeUs: 0, client: CLIENT, server, bytes: 1200 };
  const datagrams = [...capture.datagrams, planted].sort((a, b) => a.index - b.index);
  return { ...capture, datagrams };
}

describe("capture verdict: a preferred-address move judged from packets", () => {
  const follow = simulatedCapture("follow");
  const ignore = simulatedCapture("ignore");

  it("PA-08 PA-09 PA-17 PA-19 a clean move: handshake on the original path, probing first, then STREAM frames only on the new path", () => {
    expect(follow.undecryptable).toBe(0);
    expect(follow.cipherSuite).toBe("TLS_AES_128_GCM_SHA256");
    const v = judgeMigration(follow);
    expect(v.moved).toBe(true);
    expect(v.handshakeOnOriginalPath).toBe(true);
    expect(v.pa08).toMatchObject({ holds: true });
    expect(v.pa08.clientDatagramsBeforeValidation).toBeGreaterThan(0);
    expect(v.pa17Holds).toBe(true);
    expect(v.dataOnOriginalBeforeMove).toBeGreaterThan(0);
    expect(v.streamOnOriginalAfterMove).toEqual({ client_to_server: 0, server_to_client: 0 });
    expect(v.streamOnPreferredAfterMove.server_to_client).toBeGreaterThan(0);
    expect(v.dataOnlyOnPreferredAfterMove).toBe(true);
    expect(v.tallies.before_move.preferred.client_to_server.byKind.path_challenge).toBeGreaterThan(0);
    expect(v.tallies.before_move.preferred.client_to_server.byKind.stream).toBeUndefined();
  });

  it("policy ignore gives the opposite verdict: no move, everything on the original path", () => {
    const v = judgeMigration(ignore);
    expect(v.moved).toBe(false);
    expect(v.dataOnlyOnPreferredAfterMove).toBe(false);
    expect(v.tallies.before_move.preferred.client_to_server.datagrams + v.tallies.before_move.preferred.server_to_client.datagrams).toBe(0);
    expect(v.tallies.before_move.original.server_to_client.byKind.stream).toBeGreaterThan(0);
  });

  it("fails when the client sends a STREAM frame on the original path after the move", () => {
    const clean = judgeMigration(follow);
    const planted = withPlanted(follow, clean.move!.index + 3, {
      direction: "client_to_server",
      path: "original",
      packets: [{ type: "1rtt", packetNumber: clean.move!.packetNumber + 2, frames: ["ack", "stream"] }],
    });
    const v = judgeMigration(planted);
    expect(v.streamOnOriginalAfterMove.client_to_server).toBe(1);
    expect(v.dataOnlyOnPreferredAfterMove).toBe(false);
  });

  it("fails when the server sends a STREAM frame on the original path after it saw the move (it acknowledges the move packet)", () => {
    const clean = judgeMigration(follow);
    const planted = withPlanted(follow, clean.move!.index + 1, {
      direction: "server_to_client",
      path: "original",
      packets: [{ type: "1rtt", packetNumber: 1, largestAcked: clean.move!.packetNumber, frames: ["ack", "stream"] }],
    });
    const v = judgeMigration(planted);
    expect(v.streamOnOriginalAfterMove.server_to_client).toBe(1);
    expect(v.dataOnlyOnPreferredAfterMove).toBe(false);
  });

  it("a server packet captured after the move but built before the server saw it is in flight, not a violation", () => {
    const clean = judgeMigration(follow);
    const planted = withPlanted(follow, clean.move!.index, {
      direction: "server_to_client",
      path: "original",
      packets: [{ type: "1rtt", packetNumber: 1, largestAcked: clean.move!.packetNumber - 1, frames: ["ack", "stream"] }],
    });
    const v = judgeMigration(planted);
    expect(v.serverInFlightOnOriginal).toEqual({ datagrams: 1, withStream: 1 });
    expect(v.dataOnlyOnPreferredAfterMove).toBe(true);
  });

  it("PA-08 fails when the client sends application data to the preferred address before it could have validated it", () => {
    const firstChallenge = follow.datagrams.find((d) => d.path === "preferred" && d.direction === "client_to_server")!;
    const planted = withPlanted(follow, firstChallenge.index, {
      direction: "client_to_server",
      path: "preferred",
      packets: [{ type: "1rtt", packetNumber: 1, frames: ["stream"] }],
    });
    expect(judgeMigration(planted).pa08.holds).toBe(false);
  });

  it("a packet to one of the connection's CIDs that does not decrypt voids the verdict; one to an unknown CID (a stateless reset) is counted apart", () => {
    const pcapOf = (mutate: (records: ReturnType<typeof readPcap>["udp"]) => void): ClassifiedCapture => {
      const keyLog: string[] = [];
      const net = new SimulatedNetwork({ seed: 9, defaults: { delayMs: 5 } });
      const server = new Endpoint({ server: { tls: serverTls(), preferredAddress: { ipv4: PREFERRED } } });
      const client = new Endpoint();
      net.attach(ORIGINAL, server);
      net.attach(PREFERRED, server);
      net.attach(CLIENT, client);
      const wire: Array<{ timeUs: number; src: SocketAddress; dst: SocketAddress; payload: Buffer }> = [];
      net.tap((d) => {
        if (!d.dropped) wire.push({ timeUs: d.at * 1000, src: d.from, dst: d.to, payload: Buffer.from(d.datagram) });
      });
      const app = new HashServer(server);
      const conn = client.connect({ tls: { ...clientTls(), keyLog: (l: string) => keyLog.push(l) } }, { local: CLIENT, remote: ORIGINAL }, net.now);
      const req = new StreamRequest(client, conn, Buffer.from("SOURCE 50000 3\n"));
      net.run({ maxTimeMs: 10_000, until: () => { app.pump(net.now); req.pump(net.now); drainEvents(client); return req.done; } });
      const records = readPcap(writeRawIpv4Pcap(wire)).udp;
      mutate(records);
      return classifyCapture(records, { original: ORIGINAL, preferred: PREFERRED, keyLog: parseKeyLog(keyLog.join("\n")), connectionIdLength: 8 });
    };
    const corrupted = pcapOf((records) => {
      const last = records.findLast((r) => r.src.address === PREFERRED.address && r.payload.length > 100)!;
      last.payload[last.payload.length - 1]! ^= 0xff; // breaks the AEAD tag
    });
    expect(corrupted.undecryptable).toBe(1);
    expect(judgeMigration(corrupted).dataOnlyOnPreferredAfterMove).toBe(false);

    const reset = pcapOf((records) => {
      const after = records.findLast((r) => r.src.address === PREFERRED.address)!;
      const payload = Buffer.alloc(43, 0x17);
      payload[0] = 0x40 | 0x17;
      records.push({ ...after, index: after.index + 1000, src: ORIGINAL, payload });
    });
    expect(reset.undecryptable).toBe(0);
    expect(reset.foreignCid).toBe(1);
    const v = judgeMigration(reset);
    expect(v.dataOnlyOnPreferredAfterMove).toBe(true);
    expect(v.tallies.after_move.original.server_to_client.byKind.foreign_cid).toBe(1);
  });

  it("rejects a key log line that is not NSS format, naming the file and line", () => {
    expect(() => parseKeyLog("# comment\nCLIENT_TRAFFIC_SECRET_0 abc def\n", "keys.log")).toThrow(KeyLogError);
    expect(() => parseKeyLog("\nnonsense", "keys.log")).toThrow(/keys\.log:2/);
  });
});
