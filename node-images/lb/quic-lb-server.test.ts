/**
 * Our QUIC server with a QUIC-LB CID generator, in the simulated network, with every client
 * datagram run through the router: once the client has the server's CID, every packet (Handshake,
 * 1-RTT) routes by CID to that server, from any address; only the first Initial flight goes by hash.
 */
import { describe, expect, it } from "vitest";
import { Endpoint } from "../quic/endpoint.ts";
import type { SocketAddress } from "../quic/path.ts";
import { quicLbConnectionIdGenerator, type QuicLbConfig } from "../quic/quic-lb.ts";
import { SimulatedNetwork } from "../quic/simulated-network.ts";
import { clientTls, serverTls } from "../../test/quic/pki-fixture.ts";
import { QuicLbRouter, type RouteDecision } from "./router.ts";

const CONFIG: QuicLbConfig = { configId: 2, serverIdLength: 2, nonceLength: 6, key: Buffer.from("00112233445566778899aabbccddeeff", "hex") };
const SERVER: SocketAddress = { address: "203.0.113.10", port: 443 };
const CLIENT: SocketAddress = { address: "192.0.2.10", port: 50000 };

describe("QUIC server with QUIC-LB connection IDs behind the router", () => {
  it("every client packet after the first Initial flight routes by CID to the server that issued it", () => {
    const net = new SimulatedNetwork({ seed: 11, defaults: { delayMs: 10 } });
    const generate = quicLbConnectionIdGenerator(CONFIG, Buffer.from("0a0b", "hex"));
    const server = new Endpoint({ server: { tls: serverTls(), connectionIdGenerator: generate }, connectionIdLength: generate.codec.connectionIdLength });
    const client = new Endpoint();
    net.attach(SERVER, server);
    net.attach(CLIENT, client);
    const router = new QuicLbRouter({
      configs: [CONFIG],
      backends: [
        { id: "other", serverId: Buffer.from("0001", "hex"), address: { address: "10.0.0.1", port: 1 } },
        { id: "ours", serverId: Buffer.from("0a0b", "hex"), address: { address: "10.0.0.2", port: 1 } },
      ],
    });
    const decisions: Array<{ long: boolean; decision: RouteDecision }> = [];
    net.tap(({ from, datagram }) => {
      if (from.port !== CLIENT.port) return;
      decisions.push({ long: (datagram[0]! & 0x80) !== 0, decision: router.route(datagram, from) });
    });
    const conn = client.connect({ tls: clientTls() }, { local: CLIENT, remote: SERVER }, net.now);
    // Run until the client has confirmed the handshake and sent 1-RTT (short header) packets.
    net.run({ maxTimeMs: 2_000, until: () => conn.isHandshakeConfirmed && decisions.filter((d) => !d.long).length >= 2 });
    expect(conn.isHandshakeConfirmed).toBe(true);
    const serverConn = [...server.connections()][0]!;
    // Every CID the server issued decodes to its server ID.
    const issued = serverConn.localCids.issued;
    expect(issued.length).toBeGreaterThan(1);
    for (const c of issued) expect(generate.codec.decodeServerId(c.connectionId)?.toString("hex")).toBe("0a0b");
    const short = decisions.filter((d) => !d.long);
    expect(short.length).toBeGreaterThan(0);
    for (const d of short) expect(d.decision).toMatchObject({ action: "forward", route: "cid", backend: { id: "ours" } });
    // The first datagram carries the client's own DCID: unroutable, so it goes by hash.
    expect(decisions[0]!.decision).toMatchObject({ action: "forward", route: "hash" });
    expect(decisions.some((d) => d.long && d.decision.action === "forward" && d.decision.route === "cid")).toBe(true);
  });
});
