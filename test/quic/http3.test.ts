/**
 * HTTP/3 (RFC 9114) and HTTP/0.9 over ALPN hq-interop on our QUIC stack, in the simulated network
 * with seeded loss, reordering and delay: bodies byte-exact, GOAWAY drains, and bad input from a
 * peer ends in the RFC 9114 §8.1 code, never an exception out of the API.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { Connection } from "../../node-images/quic/connection.ts";
import { Endpoint, type EndpointEvent } from "../../node-images/quic/endpoint.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import { SimulatedNetwork, type LinkConditions } from "../../node-images/quic/simulated-network.ts";
import { Http3Client, type Http3ClientRequest } from "../../node-images/quic/http3/client.ts";
import { Http3Server, type Http3ServerRequest } from "../../node-images/quic/http3/server.ts";
import type { Http3Event } from "../../node-images/quic/http3/events.ts";
import { H3_ERROR_CODES, h3ErrorName } from "../../node-images/quic/http3/frames.ts";
import * as qpack from "../../node-images/quic/http3/qpack.ts";
import { HqClient, HqServer, parseHqRequestLine } from "../../node-images/quic/hq-interop.ts";
import { clientTls, serverTls } from "./pki-fixture.ts";
import { seededBytes } from "./sim-apps.ts";

const SERVER: SocketAddress = { address: "203.0.113.1", port: 443 };
const CLIENT: SocketAddress = { address: "192.0.2.10", port: 50000 };

/** Files the test server serves: /bytes/<n>/<seed> → n seeded bytes, /stream/<n>/<seed> → the same through a writer. */
function h3Site(req: Http3ServerRequest): void {
  const m = /^\/(bytes|stream)\/(\d+)\/(\d+)$/.exec(req.path);
  if (!m) {
    req.respond(404, [["content-type", "text/plain"]], Buffer.from("not found"));
    return;
  }
  const body = seededBytes(Number(m[3]), Number(m[2]));
  if (m[1] === "bytes") {
    req.respond(200, [["content-length", String(body.length)], ["content-type", "application/octet-stream"]], body);
    return;
  }
  const writer = req.respond(200, [["content-type", "application/octet-stream"]]);
  let offset = 0;
  const writeMore = (): void => {
    while (offset < body.length) {
      const chunk = body.subarray(offset, offset + 16_384);
      offset += chunk.length;
      if (!writer.write(chunk)) return;
    }
    writer.ondrain = undefined;
    writer.end();
  };
  writer.ondrain = writeMore;
  writeMore();
}

function h3Pair(conditions: LinkConditions, seed: number) {
  const net = new SimulatedNetwork({ seed, defaults: conditions });
  const serverEp = new Endpoint({ server: { tls: serverTls("ecdsa-p256", ["h3"]) } });
  const clientEp = new Endpoint();
  net.attach(SERVER, serverEp);
  net.attach(CLIENT, clientEp);
  const serverEvents: Array<{ conn: Connection; event: Http3Event }> = [];
  const server = new Http3Server({
    onRequest: h3Site,
    wake: (c) => serverEp.wake(c, net.now),
    onEvent: (h3, event) => serverEvents.push({ conn: h3.quic, event }),
  });
  const quic = clientEp.connect({ tls: clientTls("ecdsa-p256", ["h3"]) }, { local: CLIENT, remote: SERVER }, net.now);
  const clientEvents: Http3Event[] = [];
  const client = new Http3Client(quic, { wake: (c) => clientEp.wake(c, net.now), onEvent: (e) => clientEvents.push(e) });
  const pump = (): void => {
    for (let e: EndpointEvent | undefined = serverEp.pollEvent(); e; e = serverEp.pollEvent()) server.handleEndpointEvent(e);
    for (let e: EndpointEvent | undefined = clientEp.pollEvent(); e; e = clientEp.pollEvent()) client.handleEndpointEvent(e);
  };
  return { net, serverEp, clientEp, server, client, quic, pump, serverEvents, clientEvents };
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("HTTP/3 GET in the simulated network", () => {
  it("answers one GET (RFC 9114 §4.1) with status, headers and body", () => {
    const p = h3Pair({ delayMs: 10 }, 1);
    const req = p.client.request({ path: "/bytes/1000/3", authority: "server.test" });
    const r = p.net.run({ maxTimeMs: 5_000, until: () => { p.pump(); return req.done; } });
    expect(r.done).toBe(true);
    expect(req.error).toBeUndefined();
    expect(req.status).toBe(200);
    expect(req.headers).toContainEqual(["content-length", "1000"]);
    expect(req.body.equals(seededBytes(3, 1000))).toBe(true);
    expect(p.quic.alpn).toBe("h3");
    // Both sides saw each other's SETTINGS on the control stream (§6.2.1).
    expect(p.clientEvents.some((e) => e.type === "settingsReceived")).toBe(true);
    expect(p.serverEvents.some((e) => e.event.type === "settingsReceived")).toBe(true);
  });
});

describe("HTTP/3 transfers under loss, reordering and duplication", () => {
  const lossy: LinkConditions = { delayMs: 20, jitterMs: 3, lossPercent: 5, reorderPercent: 2, duplicatePercent: 1, rateBitsPerSecond: 200e6 };

  it("GET of 1 MB (content-length, one DATA frame) and 1 MB through a streaming writer: byte-exact under 5% loss", () => {
    const p = h3Pair(lossy, 11);
    const whole = p.client.request({ path: "/bytes/1048576/21", authority: "server.test" });
    const streamed = p.client.request({ path: "/stream/1048576/22", authority: "server.test" });
    const r = p.net.run({ maxTimeMs: 120_000, until: () => { p.pump(); return whole.done && streamed.done; } });
    expect(r.done).toBe(true);
    expect([whole.error, streamed.error]).toEqual([undefined, undefined]);
    expect(sha(whole.body)).toBe(sha(seededBytes(21, 1_048_576)));
    expect(sha(streamed.body)).toBe(sha(seededBytes(22, 1_048_576)));
    expect(p.net.stats.lost).toBeGreaterThan(0);
    expect(p.quic.internalErrors).toEqual([]);
  });

  it("100 concurrent GETs of 10 KB each, byte-exact, then 30 more on the same connection once stream credit renews", () => {
    const p = h3Pair(lossy, 12);
    const reqs: Http3ClientRequest[] = [];
    // The server allows 100 bidirectional streams (RFC 9000 §4.6); the last 30 wait for MAX_STREAMS.
    for (let i = 0; i < 130; i++) reqs.push(p.client.request({ path: `/bytes/10240/${1000 + i}`, authority: "server.test" }));
    const r = p.net.run({ maxTimeMs: 120_000, until: () => { p.pump(); return reqs.every((q) => q.done); } });
    expect(r.done).toBe(true);
    const bad = reqs.flatMap((q, i) => (q.error || q.status !== 200 || !q.body.equals(seededBytes(1000 + i, 10_240)) ? [`#${i} ${q.error?.message ?? q.status}`] : []));
    expect(bad).toEqual([]);
    expect(new Set(reqs.map((q) => q.streamId)).size).toBe(130);
    expect(p.net.stats.lost).toBeGreaterThan(0);
  });

  it("404 for an unknown path; the promise API resolves with status and body", async () => {
    const p = h3Pair({ delayMs: 5 }, 13);
    const req = p.client.request({ path: "/missing", authority: "server.test", headers: [["User-Agent", "qmt-test"]] });
    p.net.run({ maxTimeMs: 5_000, until: () => { p.pump(); return req.done; } });
    const res = await req.response;
    expect(res.status).toBe(404);
    expect(res.body.toString()).toBe("not found");
    const seen = p.serverEvents.find((e) => e.event.type === "headersReceived");
    // Header names go out lowercase (§4.2) whatever case the caller used.
    expect(seen?.event.type === "headersReceived" && seen.event.headers).toContainEqual(["user-agent", "qmt-test"]);
  });

  it("GOAWAY (§5.2) drains: accepted requests complete, later ones are rejected as retryable, the client closes with H3_NO_ERROR", () => {
    const p = h3Pair({ delayMs: 20, lossPercent: 2 }, 14);
    const first = Array.from({ length: 10 }, (_, i) => p.client.request({ path: `/bytes/200000/${i}`, authority: "server.test" }));
    // Run until the server has accepted all ten (their HEADERS arrived), then announce GOAWAY.
    const accepted = () => p.serverEvents.filter((e) => e.event.type === "headersReceived").length;
    p.net.run({ maxTimeMs: 10_000, until: () => { p.pump(); return accepted() >= 10; } });
    expect(accepted()).toBe(10);
    p.server.goaway();
    const r = p.net.run({ maxTimeMs: 60_000, until: () => { p.pump(); return p.client.h3.goawayReceived !== undefined; } });
    expect(r.done).toBe(true);
    const late = p.client.request({ path: "/bytes/10/1", authority: "server.test" });
    const closed = () => p.clientEvents.find((e) => e.type === "connectionClosed");
    p.net.run({ maxTimeMs: 60_000, until: () => { p.pump(); return closed() !== undefined; } });
    expect(first.map((q) => q.error?.message)).toEqual(first.map(() => undefined));
    first.forEach((q, i) => expect(q.body.equals(seededBytes(i, 200_000))).toBe(true));
    expect(late.error?.code).toBe("H3_REQUEST_REJECTED");
    expect(late.error?.retryable).toBe(true);
    // The GOAWAY id is the stream after the last accepted request: 10 requests → streams 0..36 → 40.
    expect(p.client.h3.goawayReceived).toBe(40);
    expect(closed()).toMatchObject({ type: "connectionClosed", initiator: "local", isApplication: true, errorCode: 0x100 });
  });

  it("a request racing the GOAWAY on a stream at or above its id is reset with H3_REQUEST_REJECTED", () => {
    const p = h3Pair({ delayMs: 30 }, 15);
    const a = p.client.request({ path: "/bytes/100/1", authority: "server.test" });
    p.net.run({ maxTimeMs: 5_000, until: () => { p.pump(); return a.done; } });
    p.server.goaway(); // id 4: stream 0 was accepted
    const b = p.client.request({ path: "/bytes/100/2", authority: "server.test" }); // stream 4, in flight with the GOAWAY
    p.net.run({ maxTimeMs: 5_000, until: () => { p.pump(); return b.done; } });
    expect(a.body.equals(seededBytes(1, 100))).toBe(true);
    expect(b.error?.code).toBe("H3_REQUEST_REJECTED");
    expect(b.error?.retryable).toBe(true);
  });
});

// ------------------------------------------------------------------------------------------
// Bad input: a raw QUIC peer writes hand-made bytes to our HTTP/3 server (or client)
// ------------------------------------------------------------------------------------------

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
/** Uni stream type + SETTINGS (QPACK capacity 0, max field section 16384). */
const CONTROL_WITH_SETTINGS = "00 04 05 0100 06 4400".replace(/\s/g, "");
/** A valid GET for /bytes/5/1: HEADERS with :method GET, :scheme https, :path (literal), :authority (literal). */
const GET_HEADERS = (() => {
  const { encodeFieldSection } = qpack;
  const block = encodeFieldSection([[":method", "GET"], [":scheme", "https"], [":authority", "server.test"], [":path", "/bytes/5/1"]]);
  return Buffer.concat([Buffer.from([0x01, block.length]), block]);
})();

/** A trailer section (x-checksum: 1). */
const TRAILERS = (() => {
  const block = qpack.encodeFieldSection([["x-checksum", "1"]]);
  return Buffer.concat([Buffer.from([0x01, block.length]), block]);
})();

interface RawScript {
  /** Bytes for client-opened unidirectional streams, each with its own FIN flag. */
  uni?: Array<{ bytes: Buffer; fin?: boolean }>;
  /** Bytes for client-opened bidirectional (request) streams. */
  bidi?: Array<{ bytes: Buffer; fin?: boolean }>;
}

/** Run a raw client against our Http3Server; report how the server reacted. */
function rawClientVersusServer(script: RawScript, seed = 40) {
  const net = new SimulatedNetwork({ seed, defaults: { delayMs: 5 } });
  const serverEp = new Endpoint({ server: { tls: serverTls("ecdsa-p256", ["h3"]) } });
  const clientEp = new Endpoint();
  net.attach(SERVER, serverEp);
  net.attach(CLIENT, clientEp);
  const server = new Http3Server({ onRequest: h3Site, wake: (c) => serverEp.wake(c, net.now) });
  const conn = clientEp.connect({ tls: clientTls("ecdsa-p256", ["h3"]) }, { local: CLIENT, remote: SERVER }, net.now);
  const resets = new Map<number, number>();
  const replies = new Map<number, Buffer[]>();
  let closed: { errorCode: number; isApplication: boolean; reason: string } | undefined;
  const bidiIds: number[] = [];
  let started = false;
  net.run({
    maxTimeMs: 3_000,
    until: () => {
      for (let e = serverEp.pollEvent(); e; e = serverEp.pollEvent()) server.handleEndpointEvent(e);
      for (let e = clientEp.pollEvent(); e; e = clientEp.pollEvent()) {
        if (e.type !== "connection") continue;
        const ev = e.event;
        if (ev.type === "handshakeCompleted" && !started) {
          started = true;
          for (const s of script.uni ?? []) {
            const id = conn.openStream(false)!;
            conn.streamWrite(id, s.bytes);
            if (s.fin) conn.streamFinish(id);
          }
          for (const s of script.bidi ?? []) {
            const id = conn.openStream(true)!;
            bidiIds.push(id);
            conn.streamWrite(id, s.bytes);
            if (s.fin ?? true) conn.streamFinish(id);
          }
          clientEp.wake(conn, net.now);
        } else if (ev.type === "streamReset") {
          resets.set(ev.streamId, ev.errorCode);
        } else if (ev.type === "streamReadable") {
          for (let d = conn.streamRead(ev.streamId); d && d.length > 0; d = conn.streamRead(ev.streamId)) {
            if (!replies.has(ev.streamId)) replies.set(ev.streamId, []);
            replies.get(ev.streamId)!.push(d);
          }
        } else if (ev.type === "connectionClosed") {
          closed = { errorCode: ev.errorCode, isApplication: ev.isApplication, reason: ev.reason };
        }
      }
      return closed !== undefined || (bidiIds.length > 0 && bidiIds.every((id) => resets.has(id) || conn.streamIsFinished(id)));
    },
  });
  const h3 = [...server.connections.values()][0];
  const reply = (id: number) => Buffer.concat(replies.get(id) ?? []);
  return { closed, resets, bidiIds, reply, serverError: h3?.localError?.code, closeCode: closed?.isApplication ? h3ErrorName(closed.errorCode) : undefined };
}

const control = (more: string) => ({ bytes: hex(CONTROL_WITH_SETTINGS + more.replace(/\s/g, "")) });

describe("bad input from a client: connection errors with the RFC 9114 §8.1 code", () => {
  const cases: Array<{ name: string; script: RawScript; code: string }> = [
    { name: "§6.2.1 first control frame is not SETTINGS", script: { uni: [{ bytes: hex("00 07 01 00") }] }, code: "H3_MISSING_SETTINGS" },
    { name: "§7.2.4 a second SETTINGS frame", script: { uni: [control("04 00")] }, code: "H3_FRAME_UNEXPECTED" },
    { name: "§7.2.1 DATA on the control stream", script: { uni: [control("00 02 6869")] }, code: "H3_FRAME_UNEXPECTED" },
    { name: "§7.2.2 HEADERS on the control stream", script: { uni: [control("01 03 0000d1")] }, code: "H3_FRAME_UNEXPECTED" },
    { name: "§7.2.8 reserved HTTP/2 frame type 0x06 (PING) on the control stream", script: { uni: [control("06 00")] }, code: "H3_FRAME_UNEXPECTED" },
    { name: "§7.2.4 SETTINGS with a setting twice", script: { uni: [{ bytes: hex("00 04 04 0600 0601") }] }, code: "H3_SETTINGS_ERROR" },
    { name: "§7.2.4.1 SETTINGS with HTTP/2's SETTINGS_ENABLE_PUSH (0x02)", script: { uni: [{ bytes: hex("00 04 02 0200") }] }, code: "H3_SETTINGS_ERROR" },
    { name: "§7.1 SETTINGS payload cut inside a varint", script: { uni: [{ bytes: hex("00 04 02 0640") }] }, code: "H3_FRAME_ERROR" },
    { name: "§7.2.6 GOAWAY with a trailing byte", script: { uni: [control("07 02 0000")] }, code: "H3_FRAME_ERROR" },
    { name: "§7.2.3 CANCEL_PUSH for a push that never existed", script: { uni: [control("03 01 00")] }, code: "H3_ID_ERROR" },
    { name: "§6.2.1 a second control stream", script: { uni: [control(""), control("")] }, code: "H3_STREAM_CREATION_ERROR" },
    { name: "§6.2.1 the client closes its control stream", script: { uni: [{ ...control(""), fin: true }] }, code: "H3_CLOSED_CRITICAL_STREAM" },
    { name: "§6.2.2 a push stream from a client", script: { uni: [control(""), { bytes: hex("01 00") }] }, code: "H3_STREAM_CREATION_ERROR" },
    { name: "§7.2.4 SETTINGS on a request stream", script: { uni: [control("")], bidi: [{ bytes: hex("04 00") }] }, code: "H3_FRAME_UNEXPECTED" },
    { name: "§7.2.6 GOAWAY on a request stream", script: { uni: [control("")], bidi: [{ bytes: hex("07 01 00") }] }, code: "H3_FRAME_UNEXPECTED" },
    { name: "§4.1 DATA before HEADERS on a request stream", script: { uni: [control("")], bidi: [{ bytes: hex("00 02 6869") }] }, code: "H3_FRAME_UNEXPECTED" },
    { name: "§7.2.5 PUSH_PROMISE from a client", script: { uni: [control("")], bidi: [{ bytes: hex("05 04 00 0000d1") }] }, code: "H3_FRAME_UNEXPECTED" },
    { name: "§4.1 HEADERS after trailers", script: { uni: [control("")], bidi: [{ bytes: Buffer.concat([GET_HEADERS, TRAILERS, TRAILERS]) }] }, code: "H3_FRAME_UNEXPECTED" },
    { name: "§7.1 request stream ends inside a frame", script: { uni: [control("")], bidi: [{ bytes: Buffer.concat([GET_HEADERS, hex("00 10 6869")]) }] }, code: "H3_FRAME_ERROR" },
    { name: "§7.2.2 reserved HTTP/2 frame type 0x02 (PRIORITY) on a request stream", script: { uni: [control("")], bidi: [{ bytes: Buffer.concat([GET_HEADERS, hex("02 00")]) }] }, code: "H3_FRAME_UNEXPECTED" },
    { name: "RFC 9204 §2.2.3 HEADERS referencing the dynamic table we did not allow", script: { uni: [control("")], bidi: [{ bytes: hex("01 04 0381 1011") }] }, code: "QPACK_DECOMPRESSION_FAILED" },
    { name: "RFC 9204 §4.5 HEADERS with a truncated literal (QPACK garbage)", script: { uni: [control("")], bidi: [{ bytes: hex("01 05 0000 510b 2f") }] }, code: "QPACK_DECOMPRESSION_FAILED" },
    { name: "RFC 9204 §4.5.2 static index 120 (past the table)", script: { uni: [control("")], bidi: [{ bytes: hex("01 04 0000 ff39") }] }, code: "QPACK_DECOMPRESSION_FAILED" },
    { name: "RFC 9204 §4.3.1 encoder stream sets capacity 220 (we allowed 0)", script: { uni: [control(""), { bytes: hex("02 3fbd01") }] }, code: "QPACK_ENCODER_STREAM_ERROR" },
    { name: "RFC 9204 §4.3.2 encoder stream inserts an entry", script: { uni: [control(""), { bytes: hex("02 c00f7777772e6578616d706c652e636f6d") }] }, code: "QPACK_ENCODER_STREAM_ERROR" },
    { name: "RFC 9204 §4.4.1 decoder stream acknowledges a section we never sent", script: { uni: [control(""), { bytes: hex("03 84") }] }, code: "QPACK_DECODER_STREAM_ERROR" },
    { name: "RFC 9204 §4.2 the client closes its QPACK encoder stream", script: { uni: [control(""), { bytes: hex("02"), fin: true }] }, code: "H3_CLOSED_CRITICAL_STREAM" },
  ];
  it.each(cases)("$name → $code", ({ script, code }) => {
    const r = rawClientVersusServer(script);
    expect(r.serverError).toBe(code);
    expect(r.closeCode).toBe(code);
  });
});

describe("bad input from a client: stream errors leave the connection usable", () => {
  const field = (fields: Array<[string, string]>) => {
    const block = qpack.encodeFieldSection(fields);
    return Buffer.concat([Buffer.from([0x01, block.length]), block]);
  };
  const valid: Array<[string, string]> = [[":method", "GET"], [":scheme", "https"], [":authority", "server.test"], [":path", "/bytes/5/1"]];
  const cases: Array<{ name: string; bytes: Buffer; code: string }> = [
    { name: "missing :method", bytes: field(valid.filter(([n]) => n !== ":method")), code: "H3_MESSAGE_ERROR" },
    { name: "missing :path", bytes: field(valid.filter(([n]) => n !== ":path")), code: "H3_MESSAGE_ERROR" },
    { name: "missing :scheme", bytes: field(valid.filter(([n]) => n !== ":scheme")), code: "H3_MESSAGE_ERROR" },
    { name: "empty :path", bytes: field([...valid.slice(0, 3), [":path", ""]]), code: "H3_MESSAGE_ERROR" },
    { name: ":status in a request", bytes: field([...valid, [":status", "200"]]), code: "H3_MESSAGE_ERROR" },
    { name: "unknown pseudo-header", bytes: field([...valid, [":foo", "bar"]]), code: "H3_MESSAGE_ERROR" },
    { name: "duplicate :path", bytes: field([...valid, [":path", "/x"]]), code: "H3_MESSAGE_ERROR" },
    { name: "pseudo-header after a regular field", bytes: field([...valid.slice(0, 3), ["accept", "*/*"], [":path", "/"]]), code: "H3_MESSAGE_ERROR" },
    { name: "uppercase field name", bytes: field([...valid, ["Accept", "*/*"]]), code: "H3_MESSAGE_ERROR" },
    { name: "connection-specific field", bytes: field([...valid, ["connection", "keep-alive"]]), code: "H3_MESSAGE_ERROR" },
    { name: "content-length disagrees with DATA", bytes: Buffer.concat([field([...valid, ["content-length", "5"]]), hex("00 02 6869")]), code: "H3_MESSAGE_ERROR" },
    { name: "stream ends before any HEADERS", bytes: hex("21 00"), code: "H3_REQUEST_INCOMPLETE" },
  ];
  it.each(cases)("§4.1.2 $name → stream error $code, and a valid request on the same connection still succeeds", ({ bytes, code }) => {
    const r = rawClientVersusServer({ uni: [control("")], bidi: [{ bytes }, { bytes: GET_HEADERS }] });
    expect(r.closed).toBeUndefined();
    expect(r.serverError).toBeUndefined();
    expect(r.resets.get(r.bidiIds[0]!)).toBe(H3_ERROR_CODES[code as keyof typeof H3_ERROR_CODES]);
    // The valid request got HEADERS (:status 200) and a DATA frame with the five seeded bytes.
    const reply = r.reply(r.bidiIds[1]!);
    expect(reply.subarray(reply.length - 5).equals(seededBytes(1, 5))).toBe(true);
  });

  it("grease (§6.2.3, §7.2.8, §9): unknown stream types, frame types and settings are ignored", () => {
    const r = rawClientVersusServer({
      uni: [
        { bytes: hex("00 04 05 0100 4040 01") },   // SETTINGS with a grease identifier 0x40
        { bytes: hex("4040 68656c6c6f") },          // a grease stream type
        { bytes: hex("21 01 02 03") },              // another reserved stream type
      ],
      bidi: [{ bytes: Buffer.concat([hex("21 03 616263"), GET_HEADERS, hex("40 40 00")]) }],
    });
    expect(r.closed).toBeUndefined();
    const reply = r.reply(r.bidiIds[0]!);
    expect(reply.subarray(reply.length - 5).equals(seededBytes(1, 5))).toBe(true);
  });
});

/** Run our Http3Client against a raw server that answers every request stream with `response` bytes. */
function rawServerVersusClient(script: { uni?: Buffer[]; response?: Buffer; serverBidi?: Buffer }, seed = 50) {
  const net = new SimulatedNetwork({ seed, defaults: { delayMs: 5 } });
  const serverEp = new Endpoint({ server: { tls: serverTls("ecdsa-p256", ["h3"]) } });
  const clientEp = new Endpoint();
  net.attach(SERVER, serverEp);
  net.attach(CLIENT, clientEp);
  const quic = clientEp.connect({ tls: clientTls("ecdsa-p256", ["h3"]) }, { local: CLIENT, remote: SERVER }, net.now);
  const client = new Http3Client(quic, { wake: (c) => clientEp.wake(c, net.now) });
  const req = client.request({ path: "/", authority: "server.test" });
  const answered = new Set<number>();
  net.run({
    maxTimeMs: 3_000,
    until: () => {
      for (let e = serverEp.pollEvent(); e; e = serverEp.pollEvent()) {
        if (e.type !== "connection") continue;
        const { connection: c, event: ev } = e;
        if (ev.type === "handshakeCompleted") {
          for (const bytes of script.uni ?? [hex(CONTROL_WITH_SETTINGS)]) c.streamWrite(c.openStream(false)!, bytes);
          if (script.serverBidi) c.streamWrite(c.openStream(true)!, script.serverBidi);
        } else if (ev.type === "streamReadable" && (ev.streamId & 3) === 0) {
          while (c.streamRead(ev.streamId)?.length) { /* drain the request */ }
          if (!answered.has(ev.streamId) && script.response) {
            answered.add(ev.streamId);
            c.streamWrite(ev.streamId, script.response);
            c.streamFinish(ev.streamId);
          }
        }
        serverEp.wake(c, net.now);
      }
      for (let e = clientEp.pollEvent(); e; e = clientEp.pollEvent()) client.handleEndpointEvent(e);
      return req.done;
    },
  });
  return { req, clientError: client.h3.localError?.code };
}

describe("bad input from a server: our client reports the RFC 9114 code and throws nothing", () => {
  const response = (fields: Array<[string, string]>, body = "") => {
    const block = qpack.encodeFieldSection(fields);
    const data = Buffer.from(body);
    return Buffer.concat([Buffer.from([0x01, block.length]), block, ...(data.length ? [Buffer.from([0x00, data.length]), data] : [])]);
  };
  it("§4.3.2 a response without :status is malformed: stream error H3_MESSAGE_ERROR", () => {
    const r = rawServerVersusClient({ response: response([["content-type", "text/plain"]], "x") });
    expect(r.req.error?.code).toBe("H3_MESSAGE_ERROR");
    expect(r.clientError).toBeUndefined();
  });
  it("a well-formed raw response is accepted (the harness itself works)", () => {
    const r = rawServerVersusClient({ response: response([[":status", "200"]], "hello") });
    expect(r.req.error).toBeUndefined();
    expect(r.req.body.toString()).toBe("hello");
  });
  it("§7.2.7 MAX_PUSH_ID from a server is H3_FRAME_UNEXPECTED", () => {
    const r = rawServerVersusClient({ uni: [hex(CONTROL_WITH_SETTINGS + "0d0100")] });
    expect(r.clientError).toBe("H3_FRAME_UNEXPECTED");
    expect(r.req.error?.code).toBe("H3_FRAME_UNEXPECTED");
  });
  it("§5.2 GOAWAY naming a server-initiated stream is H3_ID_ERROR", () => {
    const r = rawServerVersusClient({ uni: [hex(CONTROL_WITH_SETTINGS + "070101")] });
    expect(r.clientError).toBe("H3_ID_ERROR");
  });
  it("§6.1 a server-initiated bidirectional stream is H3_STREAM_CREATION_ERROR", () => {
    const r = rawServerVersusClient({ serverBidi: hex("0102 0000") });
    expect(r.clientError).toBe("H3_STREAM_CREATION_ERROR");
  });
  it("§4.6 a push stream without MAX_PUSH_ID is H3_ID_ERROR", () => {
    const r = rawServerVersusClient({ uni: [hex(CONTROL_WITH_SETTINGS), hex("01 00")] });
    expect(r.clientError).toBe("H3_ID_ERROR");
  });
  it("§7.2.5 PUSH_PROMISE on a request stream without MAX_PUSH_ID is H3_ID_ERROR", () => {
    const r = rawServerVersusClient({ response: Buffer.concat([hex("05 04 00 0000d9")]) });
    expect(r.clientError).toBe("H3_ID_ERROR");
  });
});

describe("HTTP/0.9 over hq-interop in the simulated network", () => {
  function hqPair(conditions: LinkConditions, seed: number, files: Map<string, Buffer>) {
    const net = new SimulatedNetwork({ seed, defaults: conditions });
    const serverEp = new Endpoint({ server: { tls: serverTls() } });
    const clientEp = new Endpoint();
    net.attach(SERVER, serverEp);
    net.attach(CLIENT, clientEp);
    const server = new HqServer({ onRequest: (path) => files.get(path), wake: (c) => serverEp.wake(c, net.now) });
    const quic = clientEp.connect({ tls: clientTls() }, { local: CLIENT, remote: SERVER }, net.now);
    const client = new HqClient(quic, { wake: (c) => clientEp.wake(c, net.now) });
    const pump = (): void => {
      for (let e = serverEp.pollEvent(); e; e = serverEp.pollEvent()) server.handleEndpointEvent(e);
      for (let e = clientEp.pollEvent(); e; e = clientEp.pollEvent()) client.handleEndpointEvent(e);
    };
    return { net, server, client, quic, pump };
  }

  it("GETs 1 MB and 100 x 10 KB byte-exact under 5% loss; a missing file resets its stream", () => {
    const files = new Map<string, Buffer>([["/big.bin", seededBytes(70, 1_048_576)]]);
    for (let i = 0; i < 100; i++) files.set(`/small/${i}.bin`, seededBytes(100 + i, 10_240));
    const p = hqPair({ delayMs: 20, jitterMs: 3, lossPercent: 5, reorderPercent: 2, duplicatePercent: 1, rateBitsPerSecond: 200e6 }, 60, files);
    const big = p.client.get("/big.bin");
    const small = Array.from({ length: 100 }, (_, i) => p.client.get(`/small/${i}.bin`));
    const missing = p.client.get("/nope");
    const all = [big, ...small, missing];
    const r = p.net.run({ maxTimeMs: 120_000, until: () => { p.pump(); return all.every((q) => q.done); } });
    expect(r.done).toBe(true);
    expect(p.quic.alpn).toBe("hq-interop");
    expect(big.error).toBeUndefined();
    expect(sha(big.body)).toBe(sha(files.get("/big.bin")!));
    expect(small.flatMap((q, i) => (q.error || !q.body.equals(files.get(`/small/${i}.bin`)!) ? [i] : []))).toEqual([]);
    expect(missing.error).toMatch(/reset/);
    expect(p.server.counters).toMatchObject({ requests: 102, notFound: 1, badRequests: 0 });
  });

  it("parses request lines: GET with CRLF or LF; anything else is refused", () => {
    expect(parseHqRequestLine("GET /index.html\r")).toBe("/index.html");
    expect(parseHqRequestLine("GET /a/b")).toBe("/a/b");
    expect(parseHqRequestLine("POST /a\r")).toBeUndefined();
    expect(parseHqRequestLine("GET a\r")).toBeUndefined();
    expect(parseHqRequestLine("GET /a HTTP/1.1\r")).toBeUndefined();
  });
});

describe("garbage from a client never escapes as an exception", () => {
  it("200 seeded random byte strings on the control stream and on a request stream: each ends in an H3/QPACK code, a stream error, or is ignored", () => {
    const outcomes = new Map<string, number>();
    let x = 0x9e3779b9;
    const random = (n: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) >>> 24;
      return b;
    };
    for (let i = 0; i < 200; i++) {
      const garbage = random(1 + (i % 64));
      const script: RawScript = i % 2 === 0
        ? { uni: [{ bytes: Buffer.concat([hex(CONTROL_WITH_SETTINGS), garbage]) }] }
        : { uni: [control("")], bidi: [{ bytes: Buffer.concat([hex("01"), garbage]) }] };
      const r = rawClientVersusServer(script, 1000 + i);
      const outcome = r.closeCode ?? (r.resets.size > 0 ? `reset ${h3ErrorName(r.resets.values().next().value!)}` : "ignored or answered");
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      // A connection error must be one of RFC 9114 §8.1 / RFC 9204 §6's codes.
      if (r.closed) expect(r.closeCode, `case ${i}`).toMatch(/^(H3_|QPACK_)/);
    }
    // Random input exercises several distinct error paths, not one.
    expect(outcomes.size, JSON.stringify([...outcomes])).toBeGreaterThan(3);
  });
});
