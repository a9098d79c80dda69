import { describe, expect, it } from "vitest";
import { CIPHER_SUITES } from "../../node-images/quic/crypto/cipher-suites.ts";
import { Endpoint } from "../../node-images/quic/endpoint.ts";
import { parseFrames } from "../../node-images/quic/frames.ts";
import { openPacket, parseUnprotectedHeader } from "../../node-images/quic/packet-header.ts";
import { derivePacketKeys } from "../../node-images/quic/packet-protection.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import { SimulatedNetwork } from "../../node-images/quic/simulated-network.ts";
import { clientTls, serverTls } from "./pki-fixture.ts";
import { HashServer, StreamRequest, drainEvents } from "./sim-apps.ts";

const SERVER: SocketAddress = { address: "203.0.113.1", port: 443 };
const CLIENT: SocketAddress = { address: "192.0.2.10", port: 50000 };

function parseKeyLog(lines: string[]): Map<string, { clientRandom: string; secret: Buffer }> {
  const out = new Map<string, { clientRandom: string; secret: Buffer }>();
  for (const line of lines) {
    const m = /^([A-Z_0-9]+) ([0-9a-f]{64}) ([0-9a-f]+)$/.exec(line);
    if (!m) throw new Error(`not an NSS key log line: ${line}`);
    out.set(m[1]!, { clientRandom: m[2]!, secret: Buffer.from(m[3]!, "hex") });
  }
  return out;
}

describe("SSLKEYLOGFILE (NSS key log format)", () => {
  it.each(["TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"] as const)(
    "both sides log the same four secrets, and they alone decrypt captured 1-RTT packets (%s)",
    (suiteName) => {
      const clientLines: string[] = [];
      const serverLines: string[] = [];
      const net = new SimulatedNetwork({ seed: 5, defaults: { delayMs: 5 } });
      const server = new Endpoint({ server: { tls: { ...serverTls(), cipherSuites: [suiteName], keyLog: (l: string) => serverLines.push(l) } } });
      const client = new Endpoint();
      net.attach(SERVER, server);
      net.attach(CLIENT, client);
      const captured: Buffer[] = [];
      net.tap((d) => {
        if (socketIs(d.from, SERVER)) captured.push(Buffer.from(d.datagram));
      });
      const app = new HashServer(server);
      const conn = client.connect({ tls: { ...clientTls(), keyLog: (l: string) => clientLines.push(l) } }, { local: CLIENT, remote: SERVER }, net.now);
      const req = new StreamRequest(client, conn, Buffer.from("SOURCE 5000 3\n"));
      const r = net.run({ maxTimeMs: 5_000, until: () => { app.pump(net.now); req.pump(net.now); drainEvents(client); return req.done; } });
      expect(r.done).toBe(true);

      const fromClient = parseKeyLog(clientLines);
      const fromServer = parseKeyLog(serverLines);
      expect([...fromClient.keys()].sort()).toEqual(["CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"]);
      for (const [label, v] of fromClient) expect(fromServer.get(label)).toEqual(v);

      // Decrypt what the server sent with keys derived from the log only, as Wireshark does.
      const keys = derivePacketKeys(CIPHER_SUITES[suiteName], fromClient.get("SERVER_TRAFFIC_SECRET_0")!.secret);
      const dcidLength = 8; // our client's CIDs
      let opened = 0;
      let streamBytes = 0;
      let largest: number | undefined;
      for (const d of captured) {
        if ((d[0]! & 0x80) !== 0) continue; // long headers: Initial/Handshake
        const header = parseUnprotectedHeader(d, 0, dcidLength);
        const p = openPacket(d, header, keys, largest);
        expect(p, "a 1-RTT packet the key log cannot open").toBeDefined();
        largest = Math.max(largest ?? -1, p!.packetNumber);
        opened++;
        for (const f of parseFrames(p!.payload, "1rtt")) if (f.type === "stream") streamBytes += f.data.length;
      }
      expect(opened).toBeGreaterThan(3);
      expect(streamBytes).toBeGreaterThanOrEqual(5000);
    },
  );
});

function socketIs(a: SocketAddress, b: SocketAddress): boolean {
  return a.address === b.address && a.port === b.port;
}
