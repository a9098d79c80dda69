import { describe, expect, it } from "vitest";
import { Endpoint } from "../../node-images/quic/endpoint.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import { QlogTrace, parseJsonSeq, type QlogFactory } from "../../node-images/quic/qlog.ts";
import { SimulatedNetwork } from "../../node-images/quic/simulated-network.ts";
import { clientTls, serverTls } from "./pki-fixture.ts";

const SERVER: SocketAddress = { address: "203.0.113.1", port: 443 };
const CLIENT: SocketAddress = { address: "192.0.2.10", port: 50000 };

describe("STREAMS_BLOCKED (RFC 9000 §4.6, §19.14)", () => {
  it("is sent once per limit, however often the application tries to open a stream beyond it", () => {
    let text = "";
    const clientQlog: QlogFactory = (info) =>
      new QlogTrace({ vantagePoint: info.role, originalDestinationConnectionId: info.originalDestinationConnectionId, startedAt: info.now, batchEvents: 1, sink: { write: (c) => (text += c), close: () => {} } });
    const net = new SimulatedNetwork({ seed: 3, defaults: { delayMs: 5 } });
    const server = new Endpoint({ server: { tls: serverTls(), transportParameters: { initialMaxStreamsBidi: 2 } } });
    const client = new Endpoint();
    net.attach(SERVER, server);
    net.attach(CLIENT, client);
    const conn = client.connect({ tls: clientTls(), qlog: clientQlog }, { local: CLIENT, remote: SERVER }, net.now);
    net.run({ maxTimeMs: 2_000, until: () => conn.isHandshakeConfirmed });
    expect(conn.openStream()).toBeDefined();
    expect(conn.openStream()).toBeDefined();
    for (let i = 0; i < 50; i++) {
      expect(conn.openStream()).toBeUndefined();
      client.wake(conn, net.now);
      net.run({ maxTimeMs: 2 });
    }
    net.run({ maxTimeMs: 200 });
    const blocked = parseJsonSeq(text)
      .filter((e): e is { name: string; data: { frames?: Array<{ frame_type: string; limit?: number }> } } => (e as { name?: string }).name === "quic:packet_sent")
      .flatMap((e) => e.data.frames ?? [])
      .filter((f) => f.frame_type === "streams_blocked");
    expect(blocked).toHaveLength(1);
    expect(blocked[0]!.limit).toBe(2);
  });
});
