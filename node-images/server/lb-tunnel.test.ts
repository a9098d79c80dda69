import { createSocket, type Socket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decapsulate, encapsulate } from "../lb/encapsulation.ts";
import type { PathAddress } from "../quic/path.ts";
import { LbTunnel } from "./lb-tunnel.ts";

let tunnel: LbTunnel;
let lb: Socket;
const received: Array<{ payload: Buffer; path: PathAddress }> = [];
const fromTunnel: Buffer[] = [];

beforeAll(async () => {
  tunnel = await LbTunnel.bind({ address: "127.0.0.1", port: 0 });
  tunnel.onReceive((payload, path) => received.push({ payload: Buffer.from(payload), path }));
  lb = createSocket("udp4");
  await new Promise<void>((r) => lb.bind(0, "127.0.0.1", () => r()));
  lb.on("message", (m) => fromTunnel.push(m));
});

afterAll(async () => {
  await tunnel.close();
  lb.close();
});

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met within 3 s");
    await new Promise((r) => setTimeout(r, 5));
  }
}

const client = { address: "192.0.2.7", port: 50000 };
const vip = { address: "203.0.113.10", port: 443 };

describe("LB tunnel (backend side)", () => {
  it("without a tunnelled datagram for a VIP yet, a transmit from it is a counted drop", () => {
    tunnel.send({ datagram: Buffer.from("early"), path: { local: vip, remote: client } });
    expect(tunnel.drops.tunnel_no_lb_for_vip).toBe(1);
  });

  it("hands a decapsulated datagram to the endpoint as arriving on the VIP from the client", async () => {
    lb.send(encapsulate({ client, vip }, Buffer.from("quic")), tunnel.address.port, tunnel.address.address);
    await until(() => received.length === 1);
    expect(received[0]!.payload.toString()).toBe("quic");
    expect(received[0]!.path).toEqual({ local: vip, remote: client });
  });

  it("sends a transmit from the VIP back to the LB that carried the flow, encapsulated", async () => {
    tunnel.send({ datagram: Buffer.from("reply"), path: { local: vip, remote: client } });
    await until(() => fromTunnel.length === 1);
    const d = decapsulate(fromTunnel[0]!);
    expect(d.ok && d.payload.toString()).toBe("reply");
    expect(d.ok && d.client).toEqual(client);
    expect(d.ok && d.vip).toEqual(vip);
    expect(tunnel.counters.datagramsOut).toBe(1);
  });

  it("counts malformed tunnel datagrams by reason and keeps going", async () => {
    lb.send(Buffer.from([0x51]), tunnel.address.port, tunnel.address.address);
    lb.send(Buffer.from("XXXXXXXXXXXXXXXXXXXX"), tunnel.address.port, tunnel.address.address);
    lb.send(Buffer.from([0x51, 0x4c, 9, 4, 0, 0]), tunnel.address.port, tunnel.address.address);
    await until(() => (tunnel.drops.tunnel_too_short ?? 0) + (tunnel.drops.tunnel_bad_magic ?? 0) + (tunnel.drops.tunnel_bad_version ?? 0) === 3);
    lb.send(encapsulate({ client, vip }, Buffer.from("after")), tunnel.address.port, tunnel.address.address);
    await until(() => received.length === 2);
  });
});
