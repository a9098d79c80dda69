import { describe, expect, it } from "vitest";
import { SeededRandom } from "../common/seeded-random.ts";
import { QuicLbCodec, unroutableConnectionId, type QuicLbConfig } from "../quic/quic-lb.ts";
import { decapsulate, encapsulate } from "./encapsulation.ts";
import { QuicLbRouter, RouterError, type RouteDecision } from "./router.ts";

const KEY = Buffer.from("8f95f09245765f80256934e50c66207f", "hex");
const CONFIG: QuicLbConfig = { configId: 1, serverIdLength: 1, nonceLength: 7, key: KEY };
const rng = new SeededRandom(7);

function router(options: Partial<ConstructorParameters<typeof QuicLbRouter>[0]> = {}): QuicLbRouter {
  return new QuicLbRouter({
    configs: [CONFIG],
    backends: [
      { id: "b1", serverId: Buffer.from([1]), address: { address: "127.0.0.2", port: 5001 } },
      { id: "b2", serverId: Buffer.from([2]), address: { address: "127.0.0.3", port: 5001 } },
      { id: "b3", serverId: Buffer.from([3]), address: { address: "127.0.0.4", port: 5001 } },
    ],
    ...options,
  });
}

/** A version 1 Initial (RFC 9000 §17.2.2) padded to `size`: only what the router reads is real. */
function initial(dcid: Buffer, size = 1200, version = 1): Buffer {
  const d = Buffer.alloc(size);
  d[0] = 0xc0;
  d.writeUInt32BE(version, 1);
  d[5] = dcid.length;
  dcid.copy(d, 6);
  d[6 + dcid.length] = 0; // SCID length
  return d;
}

function handshake(dcid: Buffer): Buffer {
  const d = initial(dcid, 100);
  d[0] = 0xe0; // long header, type 0b10 (Handshake)
  return d;
}

function shortHeader(dcid: Buffer, payloadBytes = 40): Buffer {
  return Buffer.concat([Buffer.from([0x40]), dcid, rng.bytes(payloadBytes)]);
}

function backendOf(d: RouteDecision): string {
  if (d.action !== "forward") throw new Error(`expected forward, got drop ${d.reason}`);
  return d.backend.id;
}

const cidFor = (serverId: number): Buffer => new QuicLbCodec(CONFIG).encode(Buffer.from([serverId]), rng.bytes(7));

describe("QuicLbRouter", () => {
  it("an Initial and its retransmissions from one client address reach one backend", () => {
    const r = router();
    for (let c = 0; c < 200; c++) {
      const client = { address: `127.1.${c >> 8}.${c & 0xff}`, port: 40000 + c };
      const dcid = rng.bytes(8);
      const first = r.route(initial(dcid), client);
      expect(first).toMatchObject({ action: "forward", route: expect.stringMatching(/^(hash|cid)$/) });
      for (let retransmit = 0; retransmit < 3; retransmit++) expect(backendOf(r.route(initial(dcid), client))).toBe(backendOf(first));
    }
  });

  it("the hash spreads client addresses over every active backend", () => {
    const r = router();
    const counts = new Map<string, number>();
    for (let port = 1; port <= 3000; port++) {
      const id = backendOf(r.route(initial(unroutableConnectionId(8)), { address: "127.0.0.1", port }));
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(["b1", "b2", "b3"]);
    for (const n of counts.values()) expect(n).toBeGreaterThan(800); // 1000 expected each
  });

  it("short headers go by the server ID decoded from the DCID, whatever the client address", () => {
    const r = router();
    for (const [serverId, id] of [[1, "b1"], [2, "b2"], [3, "b3"]] as const) {
      for (let port = 1; port <= 50; port++) {
        const d = r.route(shortHeader(cidFor(serverId)), { address: "127.9.9.9", port });
        expect(d).toMatchObject({ action: "forward", route: "cid" });
        expect(backendOf(d)).toBe(id);
      }
    }
  });

  it("long headers with a routable DCID (the server's CID, after its first Initial) go by CID", () => {
    const r = router();
    expect(r.route(handshake(cidFor(2)), { address: "127.0.0.1", port: 1 })).toMatchObject({ action: "forward", route: "cid", backend: { id: "b2" } });
  });

  it("a draining backend gets no new connections but keeps its CID-routed traffic", () => {
    const r = router();
    r.setState("b2", "draining");
    for (let port = 1; port <= 500; port++) expect(backendOf(r.route(initial(rng.bytes(8)), { address: "127.0.0.1", port }))).not.toBe("b2");
    expect(backendOf(r.route(shortHeader(cidFor(2)), { address: "127.0.0.1", port: 1 }))).toBe("b2");
    r.setState("b2", "active");
    const back = new Set<string>();
    for (let port = 1; port <= 500; port++) back.add(backendOf(r.route(initial(rng.bytes(8)), { address: "127.0.0.1", port })));
    expect(back.has("b2")).toBe(true);
  });

  it("rendezvous hashing moves only the clients of a backend that leaves", () => {
    const r = router();
    const clients = Array.from({ length: 600 }, (_, i) => ({ address: "127.0.0.1", port: 1000 + i }));
    const before = clients.map((c) => backendOf(r.route(initial(rng.bytes(8)), c)));
    r.leave("b3");
    const after = clients.map((c) => backendOf(r.route(initial(rng.bytes(8)), c)));
    before.forEach((b, i) => {
      if (b !== "b3") expect(after[i]).toBe(b);
      else expect(after[i]).not.toBe("b3");
    });
  });

  it("unroutable short headers (unknown config, unknown server ID) go by the same hash, or drop by policy", () => {
    const r = router();
    const client = { address: "127.0.0.1", port: 4242 };
    const expected = backendOf(r.route(initial(rng.bytes(8)), client));
    const unknownConfig = cidFor(1);
    unknownConfig[0] = (4 << 5) | (unknownConfig[0]! & 0x1f);
    expect(r.route(shortHeader(unknownConfig), client)).toMatchObject({ action: "forward", route: "unroutable", backend: { id: expected } });
    expect(r.route(shortHeader(cidFor(9)), client)).toMatchObject({ action: "forward", route: "unroutable", backend: { id: expected } });
    // §2.2: config rotation 0b111 asks for 4-tuple routing: the hash, by design.
    expect(r.route(shortHeader(unroutableConnectionId(8)), client)).toMatchObject({ action: "forward", route: "hash", backend: { id: expected } });
    const strict = router({ unroutableShortHeader: "drop" });
    expect(strict.route(shortHeader(cidFor(9)), client)).toEqual({ action: "drop", reason: "unroutable_short_header" });
  });

  it("malformed datagrams are counted drops with a reason, never exceptions", () => {
    const r = router();
    const client = { address: "127.0.0.1", port: 1 };
    const cases: Array<[Buffer, string]> = [
      [Buffer.alloc(0), "empty_datagram"],
      [Buffer.from([0xc0, 0, 0, 0]), "malformed_long_header"],
      [Buffer.from([0xc0, 0, 0, 0, 1, 30, 1, 2]), "malformed_long_header"], // DCID length past the end
      [initial(rng.bytes(21)), "malformed_long_header"], // > 20 octets in version 1
      [initial(rng.bytes(8), 1199), "initial_too_small"],
      [Buffer.from([0x40]), "malformed_short_header"],
      [shortHeader(cidFor(1)).subarray(0, 6), "malformed_short_header"],
    ];
    for (const [datagram, reason] of cases) expect(r.route(datagram, client)).toEqual({ action: "drop", reason });
    // Random bytes of every length: a decision every time.
    for (let n = 0; n < 2000; n++) expect(["forward", "drop"]).toContain(r.route(rng.bytes(n % 1300), client).action);
  });

  it("an unknown QUIC version with a long DCID is still routed by hash (RFC 8999: only invariants)", () => {
    const r = router();
    const d = initial(rng.bytes(40), 300, 0x1a2a3a4a);
    expect(r.route(d, { address: "127.0.0.1", port: 9 })).toMatchObject({ action: "forward", route: "hash" });
  });

  it("no active backend: the hash drops with no_backend, CID routing to a draining one still works", () => {
    const r = router();
    for (const id of ["b1", "b2", "b3"]) r.setState(id, "draining");
    expect(r.route(initial(rng.bytes(8)), { address: "127.0.0.1", port: 1 })).toEqual({ action: "drop", reason: "no_backend" });
    expect(backendOf(r.route(shortHeader(cidFor(3)), { address: "127.0.0.1", port: 1 }))).toBe("b3");
  });

  it("membership errors carry stable codes", () => {
    const r = router();
    const err = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        return (e as RouterError).code;
      }
      return "none";
    };
    expect(err(() => r.join({ id: "b4", serverId: Buffer.from([1]), address: { address: "127.0.0.5", port: 1 } }))).toBe("SERVER_ID_IN_USE");
    expect(err(() => r.join({ id: "b1", serverId: Buffer.from([9]), address: { address: "127.0.0.2", port: 5001 } }))).toBe("BACKEND_EXISTS");
    expect(err(() => r.join({ id: "b5", serverId: Buffer.from([1, 2]), address: { address: "127.0.0.5", port: 1 } }))).toBe("SERVER_ID_INVALID");
    expect(err(() => r.leave("nope"))).toBe("BACKEND_NOT_FOUND");
    expect(err(() => r.join({ id: "b1", serverId: Buffer.from([1]), address: { address: "127.0.0.2", port: 5001 } }))).toBe("none");
  });

  it("two routers with the same config decide identically (a restarted LB routes as before)", () => {
    const a = router();
    const b = router();
    for (let i = 0; i < 500; i++) {
      const client = { address: `127.0.${i & 3}.1`, port: 1000 + i };
      const d = i % 2 === 0 ? initial(rng.bytes(8)) : shortHeader(cidFor(1 + (i % 3)));
      expect(backendOf(b.route(d, client))).toBe(backendOf(a.route(d, client)));
    }
  });
});

describe("LB tunnel encapsulation", () => {
  it("round-trips IPv4 and IPv6 client and VIP addresses", () => {
    const payload = rng.bytes(1200);
    for (const [client, vip] of [
      [{ address: "203.0.113.7", port: 51234 }, { address: "127.0.0.10", port: 4433 }],
      [{ address: "2001:db8::7", port: 1 }, { address: "::1", port: 4433 }],
      [{ address: "fe80::1:2:3:4", port: 65535 }, { address: "2001:db8:0:0:1::1", port: 443 }],
    ]) {
      const d = decapsulate(encapsulate({ client: client!, vip: vip! }, payload));
      expect(d.ok).toBe(true);
      if (!d.ok) continue;
      expect(d.client.port).toBe(client!.port);
      expect(d.vip.port).toBe(vip!.port);
      // Compare as binary addresses: textual IPv6 forms may differ.
      expect(encapsulate({ client: d.client, vip: d.vip }, d.payload)).toEqual(encapsulate({ client: client!, vip: vip! }, payload));
    }
    const v4 = decapsulate(encapsulate({ client: { address: "203.0.113.7", port: 5 }, vip: { address: "127.0.0.10", port: 6 } }, payload));
    expect(v4).toMatchObject({ ok: true, client: { address: "203.0.113.7", port: 5 }, vip: { address: "127.0.0.10", port: 6 } });
    expect(decapsulate(encapsulate({ client: { address: "::1", port: 5 }, vip: { address: "::1", port: 6 } }, payload))).toMatchObject({ client: { address: "::1" } });
  });

  it("rejects malformed headers with a reason", () => {
    const good = encapsulate({ client: { address: "127.0.0.1", port: 1 }, vip: { address: "127.0.0.2", port: 2 } }, Buffer.from("x"));
    expect(decapsulate(good.subarray(0, 3))).toEqual({ ok: false, error: "too_short" });
    expect(decapsulate(good.subarray(0, 10))).toEqual({ ok: false, error: "too_short" });
    const badMagic = Buffer.from(good);
    badMagic[0] = 0;
    expect(decapsulate(badMagic)).toEqual({ ok: false, error: "bad_magic" });
    const badVersion = Buffer.from(good);
    badVersion[2] = 9;
    expect(decapsulate(badVersion)).toEqual({ ok: false, error: "bad_version" });
    const badFamily = Buffer.from(good);
    badFamily[3] = 5;
    expect(decapsulate(badFamily)).toEqual({ ok: false, error: "bad_family" });
  });
});
