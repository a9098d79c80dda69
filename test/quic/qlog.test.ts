import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Connection } from "../../node-images/quic/connection.ts";
import { Endpoint } from "../../node-images/quic/endpoint.ts";
import type { SocketAddress } from "../../node-images/quic/path.ts";
import {
  QLOG_FILE_SCHEMA,
  QLOG_QUIC_EVENT_SCHEMA,
  QLOG_SERIALIZATION_FORMAT,
  QlogTrace,
  convertForQvis,
  parseJsonSeq,
  type QlogFactory,
} from "../../node-images/quic/qlog.ts";
import { SimulatedNetwork } from "../../node-images/quic/simulated-network.ts";
import { UdpEndpoint } from "../../node-images/quic/udp-endpoint.ts";
import { clientTls, serverTls } from "./pki-fixture.ts";
import { HashServer, StreamRequest, drainEvents } from "./sim-apps.ts";

const SERVER: SocketAddress = { address: "203.0.113.1", port: 443 };
const CLIENT: SocketAddress = { address: "192.0.2.10", port: 50000 };

type QlogRecord = { time: number; name: string; data: Record<string, unknown>; tuple?: string };

/** A factory that keeps every trace it makes (no sink: the test takes the text itself). */
function collectingFactory(): { factory: QlogFactory; traces: QlogTrace[] } {
  const traces: QlogTrace[] = [];
  const factory: QlogFactory = (info) => {
    const t = new QlogTrace({ vantagePoint: info.role, originalDestinationConnectionId: info.originalDestinationConnectionId, startedAt: info.now });
    traces.push(t);
    return t;
  };
  return { factory, traces };
}

/** RFC 7464 framing, checked byte by byte, then each record parsed as JSON. */
function records(text: string): Array<Record<string, unknown>> {
  const parts = text.split("\u001e");
  expect(parts[0], "the text starts with RS").toBe("");
  for (const part of parts.slice(1)) expect(part.endsWith("\n"), "every record ends with LF").toBe(true);
  const parsed = parseJsonSeq(text) as Array<Record<string, unknown>>;
  expect(parsed.length).toBe(parts.length - 1);
  return parsed;
}

function expectValidHeader(header: Record<string, unknown>, vantage: "client" | "server"): void {
  expect(header.file_schema).toBe(QLOG_FILE_SCHEMA);
  expect(header.serialization_format).toBe(QLOG_SERIALIZATION_FORMAT);
  // main schema -13 §5: the two identifying fields SHOULD be in the first 256 bytes.
  expect(JSON.stringify(header).indexOf("serialization_format")).toBeLessThan(256);
  const trace = header.trace as Record<string, unknown>;
  expect(trace.event_schemas).toEqual([QLOG_QUIC_EVENT_SCHEMA]);
  expect((trace.vantage_point as { type: string }).type).toBe(vantage);
  const common = trace.common_fields as Record<string, unknown>;
  expect(common.group_id).toMatch(/^([0-9a-f]{2})+$/);
  expect(common.time_format).toBe("relative_to_epoch");
  expect(common.reference_time).toMatchObject({ clock_type: "monotonic", epoch: "unknown" });
}

function isCloseOnly(e: QlogRecord): boolean {
  const frames = e.data.frames as Array<{ frame_type: string }>;
  return frames.length === 1 && frames[0]!.frame_type === "connection_close";
}

/** A 200 kB download over a lossy simulated link, then a client close, with qlog on both sides. */
function lossyTransfer(seed: number, factory: QlogFactory | undefined) {
  const net = new SimulatedNetwork({ seed, defaults: { delayMs: 15, lossPercent: 4 } });
  const server = new Endpoint({ server: { tls: serverTls(), qlog: factory } });
  const client = new Endpoint();
  net.attach(SERVER, server);
  net.attach(CLIENT, client);
  const app = new HashServer(server);
  const conn = client.connect({ tls: clientTls(), qlog: factory }, { local: CLIENT, remote: SERVER }, net.now);
  const req = new StreamRequest(client, conn, Buffer.from("SOURCE 200000 7\n"));
  const r = net.run({ maxTimeMs: 30_000, until: () => { app.pump(net.now); req.pump(net.now); drainEvents(client); return req.done; } });
  expect(r.done).toBe(true);
  expect(req.reply.length).toBe(200_000);
  const serverConn = [...server.connections()][0]!;
  conn.close(net.now, 0, "done");
  client.wake(conn, net.now);
  net.run({ maxTimeMs: 30_000, until: () => { app.pump(net.now); drainEvents(client); return conn.isClosed && serverConn.isClosed; } });
  expect(conn.isClosed).toBe(true);
  expect(serverConn.isClosed).toBe(true);
  return { conn, serverConn };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe(`qlog (${QLOG_QUIC_EVENT_SCHEMA}) in the simulated network`, () => {
  it("writes a valid JSON-SEQ trace per side whose packet_sent, packet_received and packet_lost match the connection's counters", () => {
    const { factory, traces } = collectingFactory();
    const { conn, serverConn } = lossyTransfer(11, factory);
    expect(traces.map((t) => t.vantagePoint).sort()).toEqual(["client", "server"]);
    expect(traces.every((t) => t.isFinished), "traces end when the connections are closed").toBe(true);
    expect(traces[0]!.groupId).toBe(traces[1]!.groupId);

    for (const [trace, c] of [[traces.find((t) => t.vantagePoint === "client")!, conn], [traces.find((t) => t.vantagePoint === "server")!, serverConn]] as const) {
      const all = records(trace.takeChunk());
      expectValidHeader(all[0]!, trace.vantagePoint);
      const events = all.slice(1) as QlogRecord[];
      expect(events.length).toBe(trace.eventCount);
      for (let i = 1; i < events.length; i++) expect(events[i]!.time).toBeGreaterThanOrEqual(events[i - 1]!.time);
      for (const e of events) expect(e.name).toMatch(/^quic:[a-z_0-9]+$/);
      const named = (n: string) => events.filter((e) => e.name === `quic:${n}`);

      const sent = named("packet_sent");
      // CONNECTION_CLOSE packets (transmitClose) are logged but not counted in stats.packetsSent.
      expect(sent.filter((e) => !isCloseOnly(e)).length).toBe(c.stats.packetsSent);
      expect(named("packet_received").length).toBe(c.stats.packetsReceived);
      expect(c.stats.packetsLost).toBeGreaterThan(0);
      const lost = named("packet_lost");
      expect(lost.length).toBe(c.stats.packetsLost);
      for (const e of lost) {
        expect((e.data.header as { packet_number: number }).packet_number).toBeTypeOf("number");
        expect(["reordering_threshold", "time_threshold"]).toContain(e.data.trigger);
      }

      // Packets list their frames in qlog form; the header carries type, number and CIDs.
      const first = sent[0]!;
      expect(first.data.header).toMatchObject({ packet_type: "initial", packet_number: 0 });
      expect((first.data.header as { dcid: string }).dcid).toMatch(/^[0-9a-f]+$/);
      expect((first.data.raw as { length: number }).length).toBeGreaterThan(0);
      const frameTypes = new Set(sent.flatMap((e) => (e.data.frames as Array<{ frame_type: string }>).map((f) => f.frame_type)));
      for (const t of ["crypto", "ack", "stream"]) expect(frameTypes, `frame ${t} in packet_sent`).toContain(t);
      const stream = sent.flatMap((e) => e.data.frames as Array<Record<string, unknown>>).find((f) => f.frame_type === "stream")!;
      expect(stream).toMatchObject({ stream_id: 0 });
      expect((stream.raw as { length: number }).length).toBeGreaterThan(0);
      const oneRtt = sent.find((e) => (e.data.header as { packet_type: string }).packet_type === "1RTT")!;
      expect(oneRtt.data.header).toHaveProperty("key_phase_bit", false);

      expect(named("connection_started")).toHaveLength(1);
      expect(named("parameters_set").map((e) => e.data.initiator).sort()).toEqual(["local", "remote"]);
      expect(named("key_updated").map((e) => e.data.key_type)).toEqual(expect.arrayContaining(["client_handshake_secret", "server_1rtt_secret"]));
      expect(named("key_discarded").map((e) => e.data.key_type)).toEqual(expect.arrayContaining(["client_initial_secret", "server_handshake_secret"]));
      const metrics = named("recovery_metrics_updated");
      expect(metrics.some((e) => typeof e.data.smoothed_rtt === "number" && typeof e.data.min_rtt === "number")).toBe(true);
      expect(metrics.some((e) => typeof e.data.congestion_window === "number")).toBe(true);
      expect(named("congestion_state_updated").some((e) => e.data.new === "recovery")).toBe(true);
      const states = named("connection_state_updated").map((e) => e.data.new);
      expect(states[0]).toBe("attempted");
      expect(states).toEqual(expect.arrayContaining(["handshake_complete", "handshake_confirmed"]));
      expect(states[states.length - 1]).toBe("closed");
      const closed = named("connection_closed");
      expect(closed).toHaveLength(1);
      expect(closed[0]!.data).toMatchObject({ initiator: trace.vantagePoint === "client" ? "local" : "remote", application_error: "unknown", error_code: 0 });
      expect(named("tuple_assigned")[0]!.data).toMatchObject({ tuple_id: "" });
    }
    // The client sent CONNECTION_CLOSE and logged it.
    const clientEvents = records(traces.find((t) => t.vantagePoint === "client")!.takeChunk());
    expect(clientEvents).toEqual([]); // everything was taken above; a second take is empty
  });

  it("with qlog off, no QlogTrace method runs (and with qlog on the same instrumentation sees calls)", () => {
    const calls: string[] = [];
    const proto = QlogTrace.prototype as unknown as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(QlogTrace.prototype)) {
      const d = Object.getOwnPropertyDescriptor(QlogTrace.prototype, name)!;
      if (name === "constructor" || typeof d.value !== "function") continue;
      vi.spyOn(proto as Record<string, (...a: unknown[]) => unknown>, name).mockImplementation(function (this: unknown) {
        calls.push(name);
        throw new Error(`qlog work with qlog off: ${name}`);
      });
    }
    const { conn, serverConn } = lossyTransfer(12, undefined);
    expect(calls).toEqual([]);
    expect(conn.internalErrors).toEqual([]);
    expect(serverConn.internalErrors).toEqual([]);

    // The same spies do fire when qlog is on: the check above can fail.
    vi.restoreAllMocks();
    const spy = vi.spyOn(QlogTrace.prototype, "packetSent");
    lossyTransfer(12, collectingFactory().factory);
    expect(spy.mock.calls.length).toBeGreaterThan(10);
  });

  it("maps the migration events (probe, validation, move, retirement, fallback) to migration_state_updated and tuple_assigned", () => {
    const t = new QlogTrace({ vantagePoint: "client", originalDestinationConnectionId: Buffer.from("0102030405060708", "hex"), startedAt: 100 });
    const original = { local: CLIENT, remote: SERVER };
    const preferred = { local: CLIENT, remote: { address: "2001:db8::1", port: 4433 } };
    t.connectionStarted(100, original, { dcid: Buffer.from("0102030405060708", "hex"), scid: Buffer.from("aabbccdd", "hex") });
    const ids = (a: typeof original) => (a === preferred ? 1 : 0);
    t.connectionEvent({ type: "pathProbeSent", at: 140, path: preferred, purpose: "preferred_address" }, "established", ids);
    t.connectionEvent({ type: "pathValidationFailed", at: 150, path: preferred, reason: "timeout" }, "established", ids);
    t.connectionEvent({ type: "pathValidated", at: 160, path: preferred }, "established", ids);
    t.connectionEvent({ type: "pathMigrated", at: 170, from: original, to: preferred, reason: "preferred_address" }, "established", ids);
    t.connectionEvent({ type: "oldPathRetired", at: 180, path: original }, "established", ids);
    t.connectionEvent({ type: "migrationFellBack", at: 190, path: preferred, reason: "test" }, "established", ids);
    const events = records(t.takeChunk()).slice(1) as QlogRecord[];
    const migration = events.filter((e) => e.name === "quic:migration_state_updated");
    expect(migration.map((e) => [e.time, e.data.new, e.data.tuple_id])).toEqual([
      [40, "probing_started", "1"],
      [50, "probing_abandoned", "1"],
      [60, "probing_successful", "1"],
      [70, "migration_started", "1"],
      [80, "migration_complete", undefined],
      [90, "migration_abandoned", "1"],
    ]);
    expect(migration[3]!.data.tuple_remote).toEqual({ ip_v6: "2001:db8::1", port_v6: 4433 });
    const tuples = events.filter((e) => e.name === "quic:tuple_assigned");
    expect(tuples.map((e) => e.data.tuple_id)).toEqual(["", "1"]);
    expect(tuples[0]!.data.tuple_remote).toEqual({ ip_v4: SERVER.address, port_v4: SERVER.port, connection_ids: ["0102030405060708"] });
  });

  it("hands chunks to its sink in batches and closes it once", () => {
    const chunks: string[] = [];
    let closes = 0;
    const t = new QlogTrace({
      vantagePoint: "server", originalDestinationConnectionId: Buffer.alloc(8, 1), startedAt: 0, batchEvents: 4,
      sink: { write: (c) => chunks.push(c), close: () => closes++ },
    });
    for (let i = 0; i < 10; i++) t.stateUpdated(i, `s${i}`);
    expect(chunks).toHaveLength(2); // header + 4 events, then 4 events
    t.finish();
    t.finish();
    t.stateUpdated(20, "late");
    expect(closes).toBe(1);
    const all = records(chunks.join(""));
    expect(all).toHaveLength(11);
    expect(all.slice(1).map((e) => (e.data as { new: string }).new)).toEqual(Array.from({ length: 10 }, (_, i) => `s${i}`));
  });

  it("converts a trace to the qlog 0.3 names and header qvis reads", () => {
    const t = new QlogTrace({ vantagePoint: "client", originalDestinationConnectionId: Buffer.alloc(8, 2), startedAt: 0 });
    t.stateUpdated(1, "attempted");
    t.packetDropped("decrypt_failed");
    const converted = records(convertForQvis(t.takeChunk()));
    expect(converted[0]).toMatchObject({ qlog_version: "0.3", qlog_format: "JSON-SEQ", file_schema: QLOG_FILE_SCHEMA });
    expect(converted.slice(1).map((e) => e.name)).toEqual(["transport:connection_state_updated", "transport:packet_dropped"]);
    expect(converted[2]!.data).toEqual({ trigger: "decryption_failure", details: { reason: "decrypt_failed" } });
  });
});

describe("QLOGDIR over real UDP on loopback", () => {
  it("writes one <odcid>_<vantage>.sqlog per connection per side", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qlog-test-"));
    try {
      const server = await UdpEndpoint.bind({ bind: [{ address: "127.0.0.1", port: 0 }], server: { tls: serverTls() }, qlogDir: dir });
      const client = await UdpEndpoint.bind({ bind: [{ address: "127.0.0.1", port: 0 }], qlogDir: dir });
      const conns: Connection[] = [];
      try {
        for (let i = 0; i < 2; i++) conns.push(client.connect({ tls: clientTls() }, server.localAddresses[0]!));
        await waitFor(() => conns.every((c) => c.isHandshakeConfirmed) && [...server.endpoint.connections()].every((c) => c.isHandshakeConfirmed) && server.endpoint.connectionCount === 2, 5_000);
        conns[0]!.close(client.now(), 0, "bye");
        client.wake(conns[0]!);
        await waitFor(() => conns[0]!.isClosed, 5_000);
      } finally {
        await client.close();
        await server.close();
      }
      expect(client.qlog!.errors).toEqual([]);
      expect(server.qlog!.errors).toEqual([]);
      const files = readdirSync(dir).sort();
      const odcids = conns.map((c) => c.originalDcid.toString("hex"));
      expect(files).toEqual(odcids.flatMap((o) => [`${o}_client.sqlog`, `${o}_server.sqlog`]).sort());
      for (const f of files) {
        const all = records(readFileSync(join(dir, f), "utf8"));
        const vantage = f.endsWith("_client.sqlog") ? "client" : "server";
        expectValidHeader(all[0]!, vantage);
        expect((all[0]!.trace as { common_fields: { group_id: string } }).common_fields.group_id).toBe(f.split("_")[0]);
        const names = all.slice(1).map((e) => e.name);
        expect(names).toContain("quic:packet_sent");
        expect(names).toContain("quic:packet_received");
      }
      // The closed connection's client trace ends with its close; the others were cut at shutdown.
      const closedClient = records(readFileSync(join(dir, `${odcids[0]}_client.sqlog`), "utf8")).slice(1);
      expect(closedClient.map((e) => e.name)).toContain("quic:connection_closed");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function waitFor(cond: () => boolean, deadlineMs: number): Promise<void> {
  const end = performance.now() + deadlineMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error("condition not met before the deadline");
    await new Promise((r) => setTimeout(r, 5));
  }
}
