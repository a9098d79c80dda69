/**
 * Issue 4, "Show": over real UDP in network namespaces this test creates (client 10.77.0.2; server original
 * 10.77.1.1 and preferred 10.77.2.1), our client follows our server's preferred address, and a capture in the
 * server namespace, decrypted with the client's key log, shows that after the move application data flows
 * on the new path only. The verdict comes from the packets (capture-verdict.ts), not from a timer or from
 * what the endpoints say about themselves; a control run with policy "ignore" must get the opposite verdict.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTestCertificates, type CertificateFiles } from "../interop/issue-certificates.ts";
import { classifyCapture, judgeMigration, parseKeyLog, type MigrationCaptureVerdict } from "./capture-verdict.ts";
import { hasCommand, NETNS_ADDRESSES, NetnsTopology, netnsUnavailableReason } from "./netns-topology.ts";
import { PacketCapture, type CaptureCounters } from "./packet-capture.ts";
import { readPcap } from "./pcap.ts";
import { MigrationServerProcess, runMigrationClient, type ClientRun, type ServerStopReport } from "./peer-processes.ts";

const SERVER_PORT = 4433;
const ORIGINAL = { address: NETNS_ADDRESSES.serverOriginal, port: SERVER_PORT };
const PREFERRED = { address: NETNS_ADDRESSES.serverPreferred, port: SERVER_PORT };
/** Enough for data to flow before, during and well after the move, each way. */
const TRANSFER_BYTES = 1_000_000;
const CLIENT_DEADLINE_MS = 30_000;

const skipReason = netnsUnavailableReason() ?? (hasCommand("tcpdump") ? undefined : "tcpdump is not installed");

interface CapturedExchange {
  verdict: MigrationCaptureVerdict;
  counters: CaptureCounters;
  client: ClientRun;
  server: ServerStopReport;
  skippedRecords: Record<string, number>;
}

describe.skipIf(skipReason !== undefined)(
  `preferred address over real UDP in network namespaces, judged from a packet capture${skipReason ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    let topology: NetnsTopology | undefined;
    let dir: string;
    let certs: CertificateFiles;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "qmt-netns-"));
      certs = writeTestCertificates(join(dir, "certs"));
      topology = await NetnsTopology.create();
    });

    afterAll(async () => {
      try {
        await topology?.dispose();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    /** One client connection (1 MB each way) through a fresh server, captured in the server namespace. */
    async function capturedExchange(name: string, policy: "follow" | "ignore"): Promise<CapturedExchange> {
      const t = topology!;
      const pcapFile = join(dir, `${name}.pcap`);
      const keyLogFile = join(dir, `${name}.keys`);
      writeFileSync(keyLogFile, "");
      const capture = await PacketCapture.start(t, t.serverNs, "veth0", pcapFile);
      let counters: CaptureCounters | undefined;
      try {
        const server = await MigrationServerProcess.start(t, t.serverNs, [
          "--listen", `${ORIGINAL.address}:${ORIGINAL.port}`,
          "--listen", `${PREFERRED.address}:${PREFERRED.port}`,
          "--preferred", `${PREFERRED.address}:${PREFERRED.port}`,
          "--cert", certs.serverCertFile,
          "--key", certs.serverKeyFile,
        ]);
        let client: ClientRun;
        let serverReport: ServerStopReport;
        try {
          client = await runMigrationClient(t, t.clientNs, [
            "--remote", `${ORIGINAL.address}:${ORIGINAL.port}`,
            "--local", NETNS_ADDRESSES.client,
            "--ca", certs.caCertFile,
            "--policy", policy,
            "--download", String(TRANSFER_BYTES),
            "--upload", String(TRANSFER_BYTES),
            "--keylog", keyLogFile,
          ], CLIENT_DEADLINE_MS);
        } finally {
          serverReport = await server.stop();
        }
        counters = await capture.stop();
        const pcap = readPcap(readFileSync(pcapFile));
        const classified = classifyCapture(pcap.udp, {
          original: ORIGINAL,
          preferred: PREFERRED,
          keyLog: parseKeyLog(readFileSync(keyLogFile, "utf8"), keyLogFile),
          connectionIdLength: 8, // the endpoint default on both sides
        });
        return { verdict: judgeMigration(classified), counters, client, server: serverReport, skippedRecords: pcap.skipped };
      } finally {
        if (counters === undefined) await capture.stop().catch(() => undefined);
      }
    }

    it("PA-08 PA-09 PA-17 PA-19: the client follows the preferred address; after the move the capture shows STREAM frames on the new path only, both ways", async () => {
      const run = await capturedExchange("follow", "follow");
      const report = run.client.connections[0];
      expect(run.client.exitCode, run.client.stderr).toBe(0);
      expect(report?.ok, report?.error).toBe(true);
      expect(report!.downloadBytes).toBe(TRANSFER_BYTES);
      expect(run.server.connections[0]?.uploadBytes).toBe(TRANSFER_BYTES);
      // A capture missing packets could hide a violation: it must be whole.
      expect(run.counters.droppedByKernel).toBe(0);
      expect(run.counters.captured).toBe(run.counters.receivedByFilter);

      const v = run.verdict;
      console.log(`[netns] follow: ${JSON.stringify({ counters: run.counters, move: v.move, serverSwitch: v.serverSwitch, pa08: v.pa08, serverInFlightOnOriginal: v.serverInFlightOnOriginal, foreignCid: v.foreignCid, tallies: v.tallies, migrationLatencyMs: report!.migrationLatencyMs })}`);
      // Every packet addressed to the connection's CIDs was opened with the logged keys: nothing hides data.
      expect(v.undecryptable).toBe(0);
      expect(v.handshakeOnOriginalPath).toBe(true);
      expect(v.moved).toBe(true);
      expect(v.pa08.clientDatagramsBeforeValidation).toBeGreaterThan(0);
      expect(v.pa08.holds).toBe(true);
      expect(v.pa17Holds).toBe(true);
      // Data flowed on the original path before the move, and only on the new one after it.
      expect(v.dataOnOriginalBeforeMove).toBeGreaterThan(0);
      expect(v.streamOnOriginalAfterMove).toEqual({ client_to_server: 0, server_to_client: 0 });
      expect(v.streamOnPreferredAfterMove.client_to_server).toBeGreaterThan(0);
      expect(v.streamOnPreferredAfterMove.server_to_client).toBeGreaterThan(0);
      expect(v.dataOnlyOnPreferredAfterMove).toBe(true);
      expect(v.otherPathDatagrams).toBe(0);
      // What the endpoints say agrees with the wire.
      expect(report!.connection.preferredState).toBe("moved");
    });

    it("control: with policy \"ignore\" the same verdict code finds no move and application data on the original path only", async () => {
      const run = await capturedExchange("ignore", "ignore");
      const report = run.client.connections[0];
      expect(run.client.exitCode, run.client.stderr).toBe(0);
      expect(report?.ok, report?.error).toBe(true);
      expect(run.counters.droppedByKernel).toBe(0);
      expect(run.counters.captured).toBe(run.counters.receivedByFilter);
      const v = run.verdict;
      console.log(`[netns] ignore: ${JSON.stringify({ counters: run.counters, tallies: v.tallies })}`);
      expect(v.undecryptable).toBe(0);
      expect(v.handshakeOnOriginalPath).toBe(true);
      expect(v.moved).toBe(false);
      expect(v.dataOnlyOnPreferredAfterMove).toBe(false);
      const pref = v.tallies.before_move.preferred;
      expect(pref.client_to_server.datagrams + pref.server_to_client.datagrams).toBe(0);
      expect(v.tallies.before_move.original.client_to_server.byKind.stream).toBeGreaterThan(0);
      expect(v.tallies.before_move.original.server_to_client.byKind.stream).toBeGreaterThan(0);
      expect(report!.connection.preferredState).toBe("ignored");
    });

    it("a topology removes its namespaces when disposed", async () => {
      const t = await NetnsTopology.create();
      expect(t.exists()).toBe(true);
      await t.dispose();
      expect(t.exists()).toBe(false);
    });
  },
);
