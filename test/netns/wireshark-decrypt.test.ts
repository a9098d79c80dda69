/**
 * Issue 4: our SSLKEYLOGFILE is in the NSS key log format, so Wireshark decrypts our captures. Proved with
 * the real dissector: the preferred-address exchange of preferred-address-netns.test.ts (client and server in
 * namespaces, tcpdump in the server namespace, the client writing the key log) is handed to tshark with
 * `-o tls.keylog_file:<file>`, and tshark must show the frames inside 1-RTT (short header) packets: STREAM
 * frames both ways, and PATH_CHALLENGE / PATH_RESPONSE on the preferred path (RFC 9000 §9.6, §8.2). The
 * control reads the same capture without the key log: tshark still opens the Initial packets (their keys
 * come from the client's DCID, RFC 9001 §5.2) but no 1-RTT packet, so no STREAM frame is visible.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTestCertificates } from "../interop/issue-certificates.ts";
import { hasCommand, NETNS_ADDRESSES, NetnsTopology, netnsUnavailableReason } from "./netns-topology.ts";
import { PacketCapture, type CaptureCounters } from "./packet-capture.ts";
import { MigrationServerProcess, runMigrationClient, type ClientRun } from "./peer-processes.ts";

const SERVER_PORT = 4433;
/** Enough for STREAM frames before and after the move, each way; small so tshark reads the capture fast. */
const TRANSFER_BYTES = 100_000;
const CLIENT_DEADLINE_MS = 15_000;
const TSHARK_DEADLINE_MS = 20_000;

/** RFC 9000 §19.8: STREAM frames are types 0x08..0x0f. */
const STREAM_TYPE_MIN = 0x08;
const STREAM_TYPE_MAX = 0x0f;
/** RFC 9000 §19.17, §19.18. */
const PATH_CHALLENGE_TYPE = 0x1a;
const PATH_RESPONSE_TYPE = 0x1b;

const skipReason =
  netnsUnavailableReason() ??
  (hasCommand("tcpdump") ? undefined : "tcpdump is not installed") ??
  (hasCommand("tshark") ? undefined : "tshark is not installed");

/** One QUIC packet as tshark dissected it. */
interface DissectedPacket {
  from: string;
  to: string;
  shortHeader: boolean;
  frameTypes: number[];
  /** tshark could not open the payload (it shows the undecrypted rest as quic.remaining_payload). */
  undecrypted: boolean;
}

interface FrameCounts {
  shortHeaderPackets: number;
  /** Short-header packets whose frames tshark shows. */
  shortHeaderDecrypted: number;
  shortHeaderUndecrypted: number;
  stream: number;
  streamClientToServer: number;
  streamServerToClient: number;
  streamOnPreferred: number;
  /** The client validating the preferred path (RFC 9000 §9.6.2 via §8.2), and the server's answer. */
  pathChallengeToPreferred: number;
  pathResponseFromPreferred: number;
  /** The server validating the client on its new path, if it does; reported, not required. */
  pathChallengeFromPreferred: number;
  pathResponseToPreferred: number;
  /** Every frame tshark showed, any packet type (Initial packets decrypt without the key log). */
  anyFrame: number;
}

describe.skipIf(skipReason !== undefined)(
  `Wireshark (tshark) decrypts our captures with our SSLKEYLOGFILE${skipReason ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    let topology: NetnsTopology | undefined;
    let dir: string;
    let pcapFile: string;
    let keyLogFile: string;
    let client: ClientRun;
    let counters: CaptureCounters;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "qmt-wireshark-"));
      const certs = writeTestCertificates(join(dir, "certs"));
      topology = await NetnsTopology.create();
      const t = topology;
      pcapFile = join(dir, "follow.pcap");
      keyLogFile = join(dir, "follow.keys");
      writeFileSync(keyLogFile, "");
      const capture = await PacketCapture.start(t, t.serverNs, "veth0", pcapFile);
      let stopped = false;
      try {
        const server = await MigrationServerProcess.start(t, t.serverNs, [
          "--listen", `${NETNS_ADDRESSES.serverOriginal}:${SERVER_PORT}`,
          "--listen", `${NETNS_ADDRESSES.serverPreferred}:${SERVER_PORT}`,
          "--preferred", `${NETNS_ADDRESSES.serverPreferred}:${SERVER_PORT}`,
          "--cert", certs.serverCertFile,
          "--key", certs.serverKeyFile,
        ]);
        try {
          client = await runMigrationClient(t, t.clientNs, [
            "--remote", `${NETNS_ADDRESSES.serverOriginal}:${SERVER_PORT}`,
            "--local", NETNS_ADDRESSES.client,
            "--ca", certs.caCertFile,
            "--policy", "follow",
            "--download", String(TRANSFER_BYTES),
            "--upload", String(TRANSFER_BYTES),
            "--keylog", keyLogFile,
            // Half the upload after the move: STREAM frames on the preferred path however slow the machine
            // (a loaded CI machine once finished the whole transfer before the move).
            "--upload-after-move",
          ], CLIENT_DEADLINE_MS);
        } finally {
          await server.stop();
        }
        counters = await capture.stop();
        stopped = true;
      } finally {
        if (!stopped) await capture.stop().catch(() => undefined);
      }
    }, 40_000);

    afterAll(async () => {
      try {
        await topology?.dispose();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("the exchange completed and the capture is whole", () => {
      expect(client.exitCode, client.stderr).toBe(0);
      expect(client.connections[0]?.ok, client.connections[0]?.error).toBe(true);
      expect(client.connections[0]!.connection.preferredState).toBe("moved");
      expect(counters.droppedByKernel).toBe(0);
      expect(counters.captured).toBe(counters.receivedByFilter);
      // NSS key log format: "<LABEL> <client_random hex> <secret hex>", the four QUIC/TLS 1.3 labels Wireshark reads.
      const labels = new Set(readFileSync(keyLogFile, "utf8").trim().split("\n").map((l) => l.split(" ")[0]));
      expect([...labels].sort()).toEqual([
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_TRAFFIC_SECRET_0",
      ]);
    });

    it("with the key log, tshark shows every 1-RTT packet's frames: STREAM both ways, PATH_CHALLENGE/PATH_RESPONSE on the preferred path", () => {
      const counts = countFrames(dissect(pcapFile, keyLogFile));
      console.log(`[wireshark] with key log: ${JSON.stringify(counts)}`);
      expect(counts.shortHeaderPackets).toBeGreaterThan(0);
      expect(counts.shortHeaderUndecrypted).toBe(0);
      expect(counts.shortHeaderDecrypted).toBe(counts.shortHeaderPackets);
      expect(counts.streamClientToServer).toBeGreaterThan(0);
      expect(counts.streamServerToClient).toBeGreaterThan(0);
      expect(counts.streamOnPreferred).toBeGreaterThan(0);
      expect(counts.pathChallengeToPreferred).toBeGreaterThan(0);
      expect(counts.pathResponseFromPreferred).toBeGreaterThan(0);
    });

    it("control: without the key log, tshark opens the Initial packets but no 1-RTT packet, so no STREAM frame", () => {
      const counts = countFrames(dissect(pcapFile, undefined));
      console.log(`[wireshark] without key log: ${JSON.stringify(counts)}`);
      expect(counts.shortHeaderPackets).toBeGreaterThan(0);
      expect(counts.anyFrame).toBeGreaterThan(0); // tshark did dissect QUIC: Initial packets need no key log
      expect(counts.shortHeaderDecrypted).toBe(0);
      expect(counts.shortHeaderUndecrypted).toBe(counts.shortHeaderPackets);
      expect(counts.stream).toBe(0);
      expect(counts.pathChallengeToPreferred).toBe(0);
      expect(counts.pathResponseFromPreferred).toBe(0);
    });

    it("control: a key log holding only the handshake secrets leaves every 1-RTT packet closed (tshark reads the *_TRAFFIC_SECRET_0 lines)", () => {
      const handshakeOnly = join(dir, "handshake-only.keys");
      const lines = readFileSync(keyLogFile, "utf8").split("\n").filter((l) => l.includes("_HANDSHAKE_TRAFFIC_SECRET "));
      expect(lines.length).toBeGreaterThan(0);
      writeFileSync(handshakeOnly, lines.join("\n") + "\n");
      const counts = countFrames(dissect(pcapFile, handshakeOnly));
      const withoutKeys = countFrames(dissect(pcapFile, undefined));
      console.log(`[wireshark] handshake secrets only: ${JSON.stringify(counts)}`);
      // More frames than with no key log at all: the Handshake packets (CRYPTO) open now.
      expect(counts.anyFrame).toBeGreaterThan(withoutKeys.anyFrame);
      expect(counts.shortHeaderDecrypted).toBe(0);
      expect(counts.shortHeaderUndecrypted).toBe(counts.shortHeaderPackets);
      expect(counts.stream).toBe(0);
    });
  },
);

/**
 * Runs tshark on the capture and returns its QUIC packets. `-d udp.port==4433,quic`: the dissector claims
 * UDP 443 by default, not our port. `-2`: two passes, so a packet's keys are known even when the key
 * material came later in the file's order. PDML rather than `-T fields -e quic.frame_type`: fields are
 * aggregated per datagram, which loses which of the coalesced QUIC packets a frame (or a failed decryption,
 * shown as quic.remaining_payload) belongs to; PDML keeps one <proto name="quic"> per packet.
 */
function dissect(pcapFile: string, keyLogFile: string | undefined): DissectedPacket[] {
  const args = ["-n", "-2", "-r", pcapFile, "-d", `udp.port==${SERVER_PORT},quic`];
  // An empty key log file for the control, so any key log in the user's Wireshark preferences is overridden.
  args.push("-o", `tls.keylog_file:${keyLogFile ?? ""}`);
  args.push("-Y", "quic", "-T", "pdml");
  const r = spawnSync("tshark", args, { encoding: "utf8", timeout: TSHARK_DEADLINE_MS, maxBuffer: 512 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`tshark ${args.join(" ")} failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.error?.message || "").trim()}`);
  return parsePdml(r.stdout);
}

/** Just enough PDML: per frame the IP addresses, per <proto name="quic"> its header form, frame types and undecrypted rest. */
function parsePdml(pdml: string): DissectedPacket[] {
  const packets: DissectedPacket[] = [];
  const frames = pdml.split("<packet>").slice(1);
  for (const frame of frames) {
    const from = /<field name="ip\.src"[^>]* show="([^"]+)"/.exec(frame)?.[1] ?? "";
    const to = /<field name="ip\.dst"[^>]* show="([^"]+)"/.exec(frame)?.[1] ?? "";
    // One datagram may coalesce several QUIC packets (RFC 9000 §12.2): one <proto name="quic"> each.
    for (const quic of frame.split('<proto name="quic"').slice(1)) {
      const headerForm = /<field name="quic\.header_form"[^>]* show="(\d+)"/.exec(quic)?.[1];
      const frameTypes = [...quic.matchAll(/<field name="quic\.frame_type"[^>]* show="(\d+)"/g)].map((m) => Number(m[1]));
      packets.push({ from, to, shortHeader: headerForm === "0", frameTypes, undecrypted: quic.includes('name="quic.remaining_payload"') });
    }
  }
  return packets;
}

function countFrames(packets: readonly DissectedPacket[]): FrameCounts {
  const preferred = NETNS_ADDRESSES.serverPreferred;
  const c: FrameCounts = { shortHeaderPackets: 0, shortHeaderDecrypted: 0, shortHeaderUndecrypted: 0, stream: 0, streamClientToServer: 0, streamServerToClient: 0, streamOnPreferred: 0, pathChallengeToPreferred: 0, pathResponseFromPreferred: 0, pathChallengeFromPreferred: 0, pathResponseToPreferred: 0, anyFrame: 0 };
  for (const p of packets) {
    c.anyFrame += p.frameTypes.length;
    if (p.shortHeader) {
      c.shortHeaderPackets++;
      if (p.frameTypes.length > 0) c.shortHeaderDecrypted++;
      if (p.undecrypted) c.shortHeaderUndecrypted++;
    }
    const onPreferred = p.from === preferred || p.to === preferred;
    for (const type of p.frameTypes) {
      if (type >= STREAM_TYPE_MIN && type <= STREAM_TYPE_MAX) {
        c.stream++;
        if (p.from === NETNS_ADDRESSES.client) c.streamClientToServer++;
        else c.streamServerToClient++;
        if (onPreferred) c.streamOnPreferred++;
      }
      if (type === PATH_CHALLENGE_TYPE && p.to === preferred) c.pathChallengeToPreferred++;
      if (type === PATH_RESPONSE_TYPE && p.from === preferred) c.pathResponseFromPreferred++;
      if (type === PATH_CHALLENGE_TYPE && p.from === preferred) c.pathChallengeFromPreferred++;
      if (type === PATH_RESPONSE_TYPE && p.to === preferred) c.pathResponseToPreferred++;
    }
  }
  return c;
}
