/**
 * End to end over real UDP on 127.0.0.0/8: the LB process (main.ts) in front of two tiny backends
 * that speak the tunnel encapsulation and hand out QUIC-LB CIDs. Shows hash routing of Initials,
 * CID routing of short headers from any address, draining, the control API, /metrics, and an LB
 * killed and restarted mid-stream with CID-routed traffic carrying on.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createHttpServer } from "node:http";
import { createServer as createTcpServer } from "node:net";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { quicLbConnectionIdGenerator, type QuicLbConfig } from "../quic/quic-lb.ts";
import { decapsulate, encapsulate } from "./encapsulation.ts";

const MAIN = join(import.meta.dirname, "main.ts");
const TOKEN = randomBytes(16).toString("hex");
const QUIC_LB: QuicLbConfig = { configId: 0, serverIdLength: 1, nonceLength: 8, key: randomBytes(16) };

interface Listening {
  vips: string[];
  tunnel: string;
  management: string;
}

async function bindUdp(address: string): Promise<Socket> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, address, () => resolve());
  });
  return socket;
}

/** A backend: answers an Initial with "name cid", a short header with "name echo <payload>", both through the tunnel. */
async function startBackend(name: string, address: string, serverId: number): Promise<{ name: string; socket: Socket; received: number }> {
  const socket = await bindUdp(address);
  const generate = quicLbConnectionIdGenerator(QUIC_LB, Buffer.from([serverId]));
  const backend = { name, socket, received: 0 };
  socket.on("message", (msg, rinfo) => {
    const d = decapsulate(msg);
    if (!d.ok) return;
    backend.received++;
    const isLong = (d.payload[0]! & 0x80) !== 0;
    const reply = isLong ? `${name} ${generate(0).toString("hex")}` : `${name} echo ${d.payload.subarray(1 + generate.codec.connectionIdLength).toString()}`;
    // Reply to the tunnel address the datagram came from, asking the LB to send from the VIP the client used.
    socket.send(encapsulate({ client: d.client, vip: d.vip }, Buffer.from(reply)), rinfo.port, rinfo.address);
  });
  return backend;
}

function initialDatagram(dcid: Buffer): Buffer {
  const d = Buffer.alloc(1200);
  d[0] = 0xc0;
  d.writeUInt32BE(1, 1);
  d[5] = dcid.length;
  dcid.copy(d, 6);
  return d;
}

function shortDatagram(cid: Buffer, text: string): Buffer {
  return Buffer.concat([Buffer.from([0x40]), cid, Buffer.from(text)]);
}

/** Send, and resend every 200 ms, until a reply arrives or the deadline passes. */
function exchange(socket: Socket, datagram: Buffer, to: { address: string; port: number }, deadlineMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const send = (): void => socket.send(datagram, to.port, to.address);
    const resend = setInterval(send, 200);
    const timeout = setTimeout(() => finish(new Error(`no reply within ${deadlineMs} ms`)), deadlineMs);
    const onMessage = (msg: Buffer): void => finish(undefined, msg.toString());
    const finish = (err?: Error, value?: string): void => {
      clearInterval(resend);
      clearTimeout(timeout);
      socket.off("message", onMessage);
      if (err) reject(err);
      else resolve(value!);
    };
    socket.on("message", onMessage);
    send();
  });
}

function parseAddress(text: string): { address: string; port: number } {
  const i = text.lastIndexOf(":");
  return { address: text.slice(0, i), port: Number(text.slice(i + 1)) };
}

async function startLb(configFile: string): Promise<{ child: ChildProcess; listening: Listening; logs: Array<Record<string, unknown>> }> {
  const child = spawn(process.execPath, [MAIN, "--config", configFile], {
    env: { ...process.env, QMT_CONTROL_TOKEN: TOKEN },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  const lines = createInterface({ input: child.stdout! });
  const logs: Array<Record<string, unknown>> = [];
  lines.on("line", (line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  const listening = await new Promise<Listening>((resolve, reject) => {
    const timeout = setTimeout(() => reject(new Error(`LB not listening within 10 s; stderr: ${stderr}`)), 10_000);
    child.once("exit", (code) => reject(new Error(`LB exited with ${code}: ${stderr}`)));
    lines.on("line", (line) => {
      const entry = JSON.parse(line) as { event?: string } & Listening;
      if (entry.event === "listening") {
        clearTimeout(timeout);
        resolve(entry);
      }
    });
  });
  return { child, listening, logs };
}

function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

async function control(management: string, method: string, path: string, token = TOKEN): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${management}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.text() };
}

describe("LB process over real UDP (127.0.0.0/8)", () => {
  const dir = mkdtempSync(join(tmpdir(), "qmt-lb-"));
  const sockets: Socket[] = [];
  let lb: Awaited<ReturnType<typeof startLb>> | undefined;
  let backends: Array<{ name: string; socket: Socket; received: number }> = [];

  const writeConfig = (addresses: { vip: string; tunnel: string; management: string }): string => {
    const file = join(dir, `lb-${Date.now()}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        vips: [addresses.vip],
        tunnel: addresses.tunnel,
        management: addresses.management,
        quicLb: { configs: [{ ...QUIC_LB, key: Buffer.from(QUIC_LB.key!).toString("hex") }] },
        backends: backends.map((b, i) => ({ id: b.name, serverId: `0${i + 1}`, address: `${b.socket.address().address}:${b.socket.address().port}` })),
      }),
    );
    return file;
  };

  beforeAll(async () => {
    backends = [await startBackend("b1", "127.0.0.2", 1), await startBackend("b2", "127.0.0.3", 2)];
    lb = await startLb(writeConfig({ vip: "127.0.0.1:0", tunnel: "127.0.0.1:0", management: "127.0.0.1:0" }));
  });

  afterAll(async () => {
    if (lb) await killed(lb.child);
    for (const s of [...sockets, ...backends.map((b) => b.socket)]) s.close();
  });

  const client = async (): Promise<Socket> => {
    const s = await bindUdp("127.0.0.1");
    sockets.push(s);
    return s;
  };

  it("routes Initials by hash, short headers by CID from any address, and survives an LB restart mid-stream", async () => {
    const vip = parseAddress(lb!.listening.vips[0]!);
    const alice = await client();
    const dcid = randomBytes(8);
    const [owner, cidHex] = (await exchange(alice, initialDatagram(dcid), vip)).split(" ");
    // Retransmissions of the same Initial from the same address reach the same backend.
    for (let i = 0; i < 3; i++) expect((await exchange(alice, initialDatagram(dcid), vip)).split(" ")[0]).toBe(owner);
    const cid = Buffer.from(cidHex!, "hex");
    expect(await exchange(alice, shortDatagram(cid, "seq 1"), vip)).toBe(`${owner} echo seq 1`);
    // A new client address (a migration or NAT rebinding) with the same CID: still the owner.
    const moved = await client();
    expect(await exchange(moved, shortDatagram(cid, "seq 2"), vip)).toBe(`${owner} echo seq 2`);

    // Kill the LB (no goodbye) and start a new one on the same addresses: no state to lose.
    const previous = lb!.listening;
    await killed(lb!.child);
    lb = await startLb(writeConfig({ vip: previous.vips[0]!, tunnel: previous.tunnel, management: previous.management }));
    expect(await exchange(alice, shortDatagram(cid, "seq 3"), vip)).toBe(`${owner} echo seq 3`);
    expect(await exchange(moved, shortDatagram(cid, "seq 4"), vip)).toBe(`${owner} echo seq 4`);

    // Both backends get new connections from a spread of client addresses.
    const owners = new Set<string>();
    for (let i = 0; i < 12; i++) owners.add((await exchange(await client(), initialDatagram(randomBytes(8)), vip)).split(" ")[0]!);
    expect([...owners].sort()).toEqual(["b1", "b2"]);
  });

  it("draining through the control API stops new connections to a backend but keeps its CID traffic", async () => {
    const { management } = lb!.listening;
    const vip = parseAddress(lb!.listening.vips[0]!);
    const alice = await client();
    const [owner, cidHex] = (await exchange(alice, initialDatagram(randomBytes(8)), vip)).split(" ");
    expect((await control(management, "POST", `/backends/${owner}/drain`)).status).toBe(200);
    for (let i = 0; i < 10; i++) expect((await exchange(await client(), initialDatagram(randomBytes(8)), vip)).split(" ")[0]).not.toBe(owner);
    expect(await exchange(alice, shortDatagram(Buffer.from(cidHex!, "hex"), "still here"), vip)).toBe(`${owner} echo still here`);

    const status = await control(management, "GET", "/status");
    expect(JSON.parse(status.body).backends).toContainEqual(expect.objectContaining({ id: owner, state: "draining" }));
    expect((await control(management, "GET", "/status", "not-the-token-at-all")).status).toBe(401);
    expect((await control(management, "POST", `/backends/${owner}/activate`)).status).toBe(200);
    expect((await control(management, "DELETE", "/backends/nobody")).status).toBe(404);

    const metrics = await (await fetch(`http://${management}/metrics`)).text();
    expect(metrics).toMatch(/qmt_lb_packets_total\{route="cid"\} [1-9]/);
    expect(metrics).toMatch(/qmt_lb_packets_total\{route="hash"\} [1-9]/);
    expect(metrics).toMatch(/qmt_lb_reply_bytes_total [1-9]/);
    expect(metrics).toMatch(/qmt_lb_backends\{state="active"\} 2/);
    expect(metrics).toMatch(/qmt_control_requests_total\{route="\/status",outcome="UNAUTHORIZED"\} 1/);
  });

  it("counts malformed client datagrams and forged tunnel replies as drops, and keeps running", async () => {
    const { management } = lb!.listening;
    const vip = parseAddress(lb!.listening.vips[0]!);
    const tunnel = parseAddress(lb!.listening.tunnel);
    const mallory = await client();
    mallory.send(Buffer.from([0xc0, 0, 0, 0]), vip.port, vip.address); // truncated long header
    mallory.send(initialDatagram(randomBytes(8)).subarray(0, 300), vip.port, vip.address); // Initial < 1200 bytes
    // Not a joined backend: the LB must not become an open relay from its VIP.
    mallory.send(encapsulate({ client: { address: "127.0.0.1", port: 9 }, vip }, Buffer.from("spoof")), tunnel.port, tunnel.address);
    const deadline = Date.now() + 5000;
    let metrics = "";
    while (Date.now() < deadline) {
      metrics = await (await fetch(`http://${management}/metrics`)).text();
      if (/reason="reply_from_unknown_backend"\} 1/.test(metrics) && /reason="initial_too_small"\} 1/.test(metrics) && /reason="malformed_long_header"\} 1/.test(metrics)) break;
      await new Promise((r) => setTimeout(r, 50)); // poll interval of a condition with a deadline
    }
    expect(metrics).toMatch(/qmt_lb_drops_total\{reason="malformed_long_header"\} 1/);
    expect(metrics).toMatch(/qmt_lb_drops_total\{reason="initial_too_small"\} 1/);
    expect(metrics).toMatch(/qmt_lb_drops_total\{reason="reply_from_unknown_backend"\} 1/);
    expect((await control(management, "GET", "/status")).status).toBe(200);
  });
});

/** Wait on a condition with a deadline (no fixed sleeps). */
async function until(what: string, condition: () => boolean | Promise<boolean>, deadlineMs = 5000): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`not within ${deadlineMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25)); // poll interval of a condition with a deadline
  }
}

describe("LB process health checks: a backend that never answers, one with nothing listening", () => {
  const dir = mkdtempSync(join(tmpdir(), "qmt-lb-health-"));
  const sockets: Socket[] = [];
  let lb: Awaited<ReturnType<typeof startLb>> | undefined;
  let backends: Array<{ name: string; socket: Socket; received: number }> = [];
  const healthServer = createHttpServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}'));
  /** Accepts TCP and never answers. */
  const hungServer = createTcpServer((socket) => {
    socket.on("error", () => undefined);
    socket.resume();
  });
  const portOf = (server: { address(): unknown }): number => (server.address() as { port: number }).port;

  beforeAll(async () => {
    backends = [await startBackend("ok", "127.0.0.41", 1), await startBackend("dead", "127.0.0.42", 2), await startBackend("hung", "127.0.0.43", 3)];
    await new Promise<void>((r) => healthServer.listen(0, "127.0.0.41", () => r()));
    await new Promise<void>((r) => hungServer.listen(0, "127.0.0.43", () => r()));
    const file = join(dir, "lb.json");
    const at = (b: { socket: Socket }): string => `${b.socket.address().address}:${b.socket.address().port}`;
    writeFileSync(
      file,
      JSON.stringify({
        vips: ["127.0.0.40:0"],
        tunnel: "127.0.0.40:0",
        management: "127.0.0.40:0",
        quicLb: { configs: [{ ...QUIC_LB, key: Buffer.from(QUIC_LB.key!).toString("hex") }] },
        backends: [
          { id: "ok", serverId: "01", address: at(backends[0]!), healthUrl: `http://127.0.0.41:${portOf(healthServer)}/healthz` },
          // Port 9 (discard) on an address where nothing listens: connection refused.
          { id: "dead", serverId: "02", address: at(backends[1]!), healthUrl: "http://127.0.0.42:9/healthz" },
        ],
        healthCheck: { intervalMs: 100, timeoutMs: 80, unhealthyAfter: 2, healthyAfter: 2 },
      }),
    );
    lb = await startLb(file);
  });

  afterAll(async () => {
    if (lb) await killed(lb.child);
    for (const s of [...sockets, ...backends.map((b) => b.socket)]) s.close();
    healthServer.closeAllConnections();
    await Promise.all([healthServer, hungServer].map((s) => new Promise<void>((r) => s.close(() => r()))));
  });

  it("logs and counts the failures, keeps new Initials on the healthy backend, and stops cleanly on SIGTERM", async () => {
    const { management } = lb!.listening;
    // A third backend joins through the control API with a health URL that accepts and never answers.
    const join = await fetch(`http://${management}/backends`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ id: "hung", serverId: "03", address: `127.0.0.43:${backends[2]!.socket.address().port}`, healthUrl: `http://127.0.0.43:${portOf(hungServer)}/healthz` }),
    });
    expect(join.status).toBe(201);
    await until("dead and hung unhealthy", () => ["dead", "hung"].every((b) => lb!.logs.some((l) => l.event === "backendUnhealthy" && l.backend === b)));
    expect(lb!.logs.find((l) => l.event === "backendUnhealthy" && l.backend === "dead")).toMatchObject({ result: "refused", detail: expect.stringMatching(/ECONNREFUSED/), role: "lb" });
    expect(lb!.logs.find((l) => l.event === "backendUnhealthy" && l.backend === "hung")).toMatchObject({ result: "timeout", detail: "no answer within 80 ms" });
    expect(lb!.logs.some((l) => l.event === "backendUnhealthy" && l.backend === "ok")).toBe(false);

    const vip = parseAddress(lb!.listening.vips[0]!);
    for (let i = 0; i < 10; i++) {
      const s = await bindUdp("127.0.0.1");
      sockets.push(s);
      expect((await exchange(s, initialDatagram(randomBytes(8)), vip)).split(" ")[0]).toBe("ok");
    }

    const status = JSON.parse((await control(management, "GET", "/status")).body) as { backends: Array<{ id: string; healthy: boolean; health?: { state: string; lastResult: string } }> };
    expect(status.backends.map((b) => `${b.id}:${b.healthy}:${b.health?.lastResult}`).sort()).toEqual(["dead:false:refused", "hung:false:timeout", "ok:true:ok"]);
    const metrics = await (await fetch(`http://${management}/metrics`)).text();
    expect(metrics).toMatch(/^qmt_lb_health_checks_total\{result="refused"\} ([2-9]|[1-9]\d+)$/m);
    expect(metrics).toMatch(/^qmt_lb_health_checks_total\{result="timeout"\} ([2-9]|[1-9]\d+)$/m);
    expect(metrics).toMatch(/^qmt_lb_health_checks_total\{result="ok"\} ([2-9]|[1-9]\d+)$/m);
    expect(metrics).toMatch(/^qmt_lb_backends\{state="unhealthy"\} 2$/m);
    expect(metrics).toMatch(/^qmt_lb_backends\{state="active"\} 1$/m);

    // Bad input on the new field is a clear 400, counted; the LB keeps running.
    const badJoin = await fetch(`http://${management}/backends`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ id: "x", serverId: "04", address: "127.0.0.44:1", healthUrl: "gopher://nowhere" }),
    });
    expect(badJoin.status).toBe(400);
    expect(((await badJoin.json()) as { error: { code: string; message: string } }).error.message).toMatch(/^healthUrl: expected an http URL/);

    // Shutdown with a probe to the hung backend possibly in flight: timers cleared, exit 0, promptly.
    const exited = new Promise<number | null>((resolve) => lb!.child.once("exit", (code) => resolve(code)));
    lb!.child.kill("SIGTERM");
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r("still running after 5 s"), 5000))]);
    expect(code).toBe(0);
  });
});
