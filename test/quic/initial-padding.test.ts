/**
 * RFC 9000 §14.1: a client pads every datagram carrying an Initial packet to at least 1200 bytes. An LB or
 * server enforcing it (node-images/lb drops `initial_too_small`) would otherwise drop PTO probes and
 * closes, and handshakes that lost their first flight would never complete.
 */
import { describe, expect, it } from "vitest";
import { Connection } from "../../node-images/quic/connection.ts";
import { clientTls } from "./pki-fixture.ts";

const PATH = { local: { address: "192.0.2.1", port: 1000 }, remote: { address: "192.0.2.2", port: 443 } };

describe("client Initial datagrams (RFC 9000 §14.1)", () => {
  it("are at least 1200 bytes for the first flight and every PTO probe, with no server answering", () => {
    const c = Connection.connect({ tls: clientTls() }, PATH, 0);
    let now = 0;
    const sizes: number[] = [];
    for (let k = 0; k < 6; k++) {
      for (let t = c.pollTransmit(now); t; t = c.pollTransmit(now)) sizes.push(t.datagram.length);
      const at = c.nextTimeout();
      if (at === undefined) break;
      now = at;
      c.handleTimeout(now);
    }
    expect(sizes.length).toBeGreaterThanOrEqual(5);
    for (const s of sizes) expect(s).toBeGreaterThanOrEqual(1200);
  });

  it("are at least 1200 bytes for a CONNECTION_CLOSE sent before the server answered", () => {
    const c = Connection.connect({ tls: clientTls() }, PATH, 0);
    expect(c.pollTransmit(0)).toBeDefined();
    c.close(1, 0, "giving up");
    const close = c.pollTransmit(1);
    expect(close).toBeDefined();
    expect(close!.datagram.length).toBeGreaterThanOrEqual(1200);
  });
});
