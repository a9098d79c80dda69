/**
 * Key updates (RFC 9001 §6) in the simulated network: either side starts them mid-transfer, the other follows,
 * and no packet fails to decrypt. Found by the quiche interop test (test/interop/quiche-interop.test.ts): updated
 * keys were derived with a new header-protection key, which §6 forbids ("The header protection key is not
 * updated"), so the peer could not even read the packet number of the first packet of the new phase.
 */
import { describe, expect, it } from "vitest";
import type { Connection } from "../../node-images/quic/connection.ts";
import { Endpoint, type EndpointEvent } from "../../node-images/quic/endpoint.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import { SimulatedNetwork, type LinkConditions } from "../../node-images/quic/simulated-network.ts";
import { clientTls, serverTls } from "./pki-fixture.ts";
import { HashServer, drainEvents, seededBytes } from "./sim-apps.ts";

const SERVER: SocketAddress = { address: "203.0.113.1", port: 443 };
const CLIENT: SocketAddress = { address: "192.0.2.10", port: 50000 };
const DOWNLOAD_BYTES = 2 * 1024 * 1024;
const KEY_UPDATES_AT_BYTES = [400_000, 900_000, 1_400_000];

function keyUpdates(events: EndpointEvent[], initiator: "local" | "peer"): number {
  return events.filter((e) => e.type === "connection" && e.event.type === "keyUpdated" && e.event.initiator === initiator).length;
}

/** Downloads DOWNLOAD_BYTES while `initiator` starts a key update at each threshold of received bytes. */
function downloadWithKeyUpdates(conditions: LinkConditions, seed: number, initiator: "client" | "server") {
  const net = new SimulatedNetwork({ seed, defaults: { ...conditions, rateBitsPerSecond: 400e6 } });
  const server = new Endpoint({ server: { tls: serverTls() } });
  const client = new Endpoint();
  net.attach(SERVER, server);
  net.attach(CLIENT, client);
  // HashServer consumes the server's events; keep a copy of them for the assertions.
  const serverEvents: EndpointEvent[] = [];
  const pollServerEvent = server.pollEvent.bind(server);
  server.pollEvent = () => {
    const e = pollServerEvent();
    if (e) serverEvents.push(e);
    return e;
  };
  const app = new HashServer(server);
  const conn = client.connect({ tls: clientTls() }, { local: CLIENT, remote: SERVER }, net.now);
  const clientEvents: EndpointEvent[] = [];
  const chunks: Buffer[] = [];
  let receivedBytes = 0;
  let streamId: number | undefined;
  let finished = false;
  const pending = [...KEY_UPDATES_AT_BYTES];
  const run = net.run({
    maxTimeMs: 120_000,
    until: () => {
      app.pump(net.now);
      drainEvents(client, clientEvents);
      if (conn.state !== "established") return false;
      if (streamId === undefined) {
        streamId = conn.openStream(true)!;
        conn.streamWrite(streamId, Buffer.from(`SOURCE ${DOWNLOAD_BYTES} 3\n`));
        conn.streamFinish(streamId);
      }
      for (let d = conn.streamRead(streamId); d && d.length > 0; d = conn.streamRead(streamId)) {
        chunks.push(d);
        receivedBytes += d.length;
      }
      const next = pending[0];
      if (next !== undefined && receivedBytes >= next) {
        const serverConn: Connection | undefined = [...server.connections()][0];
        const updater = initiator === "client" ? conn : serverConn;
        // false while RFC 9001 §6.1 forbids it (nothing of the current phase acknowledged yet): try again next step.
        if (updater?.initiateKeyUpdate(net.now)) {
          pending.shift();
          if (initiator === "client") client.wake(conn, net.now);
          else server.wake(serverConn!, net.now);
        }
      }
      client.wake(conn, net.now);
      finished = conn.streamIsFinished(streamId);
      return finished;
    },
  });
  const serverConn = [...server.connections()][0]!;
  return { run, conn, serverConn, clientEvents, serverEvents, pending, reply: Buffer.concat(chunks) };
}

describe("key update (RFC 9001 §6) in the simulated network", () => {
  it.each([
    ["client", "server"],
    ["server", "client"],
  ] as const)("the %s starts three key updates mid-transfer; the %s follows each, with no decryption failure", (initiator, _follower) => {
    const r = downloadWithKeyUpdates({ delayMs: 10 }, 5, initiator);
    expect(r.run.done).toBe(true);
    expect(r.pending).toEqual([]);
    expect(r.reply.equals(seededBytes(3, DOWNLOAD_BYTES))).toBe(true);
    const [initiatorEvents, followerEvents] = initiator === "client" ? [r.clientEvents, r.serverEvents] : [r.serverEvents, r.clientEvents];
    expect(keyUpdates(initiatorEvents, "local")).toBe(3);
    expect(keyUpdates(followerEvents, "peer")).toBe(3);
    expect(r.conn.stats.drops.decrypt_failed ?? 0).toBe(0);
    expect(r.serverConn.stats.drops.decrypt_failed ?? 0).toBe(0);
    expect(r.conn.internalErrors).toEqual([]);
    expect(r.serverConn.internalErrors).toEqual([]);
  });

  it("completes three client-started key updates under 5% loss and reordering", () => {
    const r = downloadWithKeyUpdates({ delayMs: 20, jitterMs: 2, lossPercent: 5, reorderPercent: 2 }, 6, "client");
    expect(r.run.done).toBe(true);
    expect(r.pending).toEqual([]);
    expect(r.reply.equals(seededBytes(3, DOWNLOAD_BYTES))).toBe(true);
    expect(keyUpdates(r.serverEvents, "peer")).toBe(3);
    expect(r.conn.internalErrors).toEqual([]);
    expect(r.serverConn.internalErrors).toEqual([]);
  });
});
