import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../node-images/common/seeded-random.ts";
import type { Connection } from "../../node-images/quic/connection.ts";
import { Endpoint } from "../../node-images/quic/endpoint.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import { SimulatedNetwork, type LinkConditions } from "../../node-images/quic/simulated-network.ts";
import { clientTls, serverTls } from "./pki-fixture.ts";
import { HashServer, StreamRequest, drainEvents, seededBytes } from "./sim-apps.ts";

const SERVER: SocketAddress = { address: "203.0.113.1", port: 443 };
const CLIENT: SocketAddress = { address: "192.0.2.10", port: 50000 };

function setup(conditions: LinkConditions, seed: number, opts: { requireRetry?: boolean; cc?: "newreno" | "cubic" } = {}) {
  const net = new SimulatedNetwork({ seed, defaults: conditions });
  const server = new Endpoint({ server: { tls: serverTls(), congestionControl: opts.cc }, requireRetry: opts.requireRetry });
  const client = new Endpoint();
  net.attach(SERVER, server);
  net.attach(CLIENT, client);
  const app = new HashServer(server);
  return { net, server, client, app };
}

function sink(body: Buffer): Buffer {
  return Buffer.concat([Buffer.from("SINK\n"), body]);
}

describe("QUIC handshake and transfer in the simulated network", () => {
  it("completes a handshake and answers one stream (no impairment)", () => {
    const { net, server, client, app } = setup({ delayMs: 10 }, 1);
    const conn = client.connect({ tls: clientTls() }, { local: CLIENT, remote: SERVER }, net.now);
    const body = seededBytes(1, 10_000);
    const req = new StreamRequest(client, conn, sink(body));
    const events: unknown[] = [];
    const r = net.run({ maxTimeMs: 5_000, until: () => { app.pump(net.now); req.pump(net.now); drainEvents(client, events as never); return req.done; } });
    expect(r.done).toBe(true);
    expect(JSON.parse(req.reply.toString())).toEqual({ bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") });
    expect(conn.alpn).toBe("hq-interop");
    // One RTT (20 ms) for the handshake, one for the request: the client is done within a few RTTs.
    expect(req.finishedAt!).toBeLessThan(100);
    expect(conn.internalErrors).toEqual([]);
    expect(app.errors).toEqual([]);
    expect(server.connectionCount).toBe(1);
  });

  it("confirms the handshake on both sides and discards Initial and Handshake keys", () => {
    const { net, server, client } = setup({ delayMs: 5 }, 2);
    const conn = client.connect({ tls: clientTls() }, { local: CLIENT, remote: SERVER }, net.now);
    net.run({ maxTimeMs: 2_000, until: () => conn.isHandshakeConfirmed && [...server.connections()].every((c) => c.isHandshakeConfirmed) });
    const serverConn = [...server.connections()][0]!;
    expect(conn.isHandshakeConfirmed).toBe(true);
    expect(serverConn.isHandshakeConfirmed).toBe(true);
    const json = JSON.stringify(conn.toJSON());
    expect(JSON.parse(json).state).toBe("established");
  });

  it("goes through a Retry when the server requires address validation (RFC 9000 §8.1.2)", () => {
    const { net, server, client, app } = setup({ delayMs: 10 }, 3, { requireRetry: true });
    const conn = client.connect({ tls: clientTls() }, { local: CLIENT, remote: SERVER }, net.now);
    const req = new StreamRequest(client, conn, sink(Buffer.from("hello")));
    const r = net.run({ maxTimeMs: 5_000, until: () => { app.pump(net.now); req.pump(net.now); drainEvents(client); return req.done; } });
    expect(r.done).toBe(true);
    expect(server.counters.retrySent).toBe(1);
    expect(server.drops.invalid_token ?? 0).toBe(0);
  });

  it("1,000 handshakes complete under 0-10% loss, reordering, duplication and 0-300 ms delay", () => {
    const rng = new SeededRandom(1000);
    const failures: string[] = [];
    let totalMs = 0;
    for (let i = 0; i < 1000; i++) {
      const conditions: LinkConditions = {
        delayMs: Math.floor(rng.next() * 150),
        jitterMs: Math.floor(rng.next() * 10),
        lossPercent: rng.next() * 10,
        reorderPercent: rng.next() * 5,
        duplicatePercent: rng.next() * 5,
      };
      const { net, server, client, app } = setup(conditions, i);
      const conn: Connection = client.connect({ tls: clientTls() }, { local: CLIENT, remote: SERVER }, net.now);
      const req = new StreamRequest(client, conn, sink(Buffer.from(`request ${i}`)));
      const r = net.run({ maxTimeMs: 60_000, until: () => { app.pump(net.now); req.pump(net.now); drainEvents(client); return req.done; } });
      if (!r.done || conn.internalErrors.length > 0) failures.push(`#${i} ${JSON.stringify(conditions)} state=${conn.state} ${conn.internalErrors.join(";")}`);
      totalMs += net.now;
      void server;
    }
    expect(failures).toEqual([]);
    expect(totalMs).toBeGreaterThan(0);
  });

  it.each([
    { name: "clean 20 ms", c: { delayMs: 10 } },
    { name: "5% loss, 50 ms", c: { delayMs: 25, lossPercent: 5 } },
    { name: "10% loss, reorder and duplicates, 300 ms RTT", c: { delayMs: 150, jitterMs: 5, lossPercent: 10, reorderPercent: 3, duplicatePercent: 2 } },
  ])("transfers 10 MB byte-exact both ways: $name", ({ c }) => {
    const { net, server, client, app } = setup({ ...c, rateBitsPerSecond: 400e6 }, 77);
    const conn = client.connect({ tls: clientTls() }, { local: CLIENT, remote: SERVER }, net.now);
    const upload = seededBytes(5, 10 * 1024 * 1024);
    const up = new StreamRequest(client, conn, sink(upload));
    const down = new StreamRequest(client, conn, Buffer.from(`SOURCE ${10 * 1024 * 1024} 9\n`));
    const r = net.run({ maxTimeMs: 3_600_000, until: () => { app.pump(net.now); up.pump(net.now); down.pump(net.now); drainEvents(client); return up.done && down.done; } });
    expect(r.done).toBe(true);
    expect(JSON.parse(up.reply.toString())).toEqual({ bytes: upload.length, sha256: createHash("sha256").update(upload).digest("hex") });
    expect(down.reply.equals(seededBytes(9, 10 * 1024 * 1024))).toBe(true);
    expect(conn.internalErrors).toEqual([]);
    void server;
  });
});
