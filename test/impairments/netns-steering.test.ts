/**
 * The pure parts of the Docker driver's userspace impairer: shadow-block choice and mirroring, the
 * nftables ruleset it applies, the conntrack table parser, and the ustar writer used to copy the
 * impairer into its sidecar. (Its behaviour over real containers: docker-userspace-impairer.test.ts.)
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { chooseShadowBlock, planSteering, shadowOf, steeringRuleset } from "../../orchestrator/impairments/netns-steering.ts";
import { findByReply, parseConntrackTable } from "../../orchestrator/impairments/conntrack-table.ts";
import { ustarArchive } from "../../orchestrator/impairments/ustar.ts";

describe("netns steering (userspace impairer on docker)", () => {
  it("takes the first block of 198.18.0.0/15 as large as the subnet that overlaps no route", () => {
    expect(chooseShadowBlock(26, [])).toEqual({ address: "198.18.0.0", prefixLength: 26 });
    expect(chooseShadowBlock(26, [{ address: "198.18.0.0", prefixLength: 24 }])).toEqual({ address: "198.18.1.0", prefixLength: 26 });
    expect(chooseShadowBlock(16, [{ address: "198.18.5.0", prefixLength: 24 }])).toEqual({ address: "198.19.0.0", prefixLength: 16 });
    expect(() => chooseShadowBlock(14, [])).toThrow(/larger than the shadow pool/);
    expect(() => chooseShadowBlock(16, [{ address: "198.18.0.0", prefixLength: 15 }])).toThrow(/no free \/16/);
  });

  it("mirrors the subnet onto the block; the subnet's broadcast mirror is the relay, no peer's", () => {
    const plan = planSteering({ iface: "eth0", nodeAddress: "192.0.2.10", prefixLength: 26, block: { address: "198.18.0.0", prefixLength: 26 } });
    expect(plan.subnet).toEqual({ address: "192.0.2.0", prefixLength: 26 });
    expect(plan.relayAddress).toBe("198.18.0.63");
    expect(shadowOf(plan, "192.0.2.11")).toBe("198.18.0.11");
    expect(shadowOf(plan, "192.0.2.63")).toBeUndefined();
    expect(shadowOf(plan, "10.0.0.1")).toBeUndefined();
  });

  it("writes one table of our own: DNAT in prerouting and output to the relay's ports, SNAT of the shadow block in postrouting", () => {
    const plan = planSteering({ iface: "eth1", nodeAddress: "192.0.2.10", prefixLength: 26, block: { address: "198.18.0.0", prefixLength: 26 } });
    const ruleset = steeringRuleset(plan);
    expect(ruleset).toContain("table ip qmt_impair_eth1 {");
    expect(ruleset).toContain('iifname "eth1" meta l4proto udp ip saddr 192.0.2.0/26 ip daddr 192.0.2.10 dnat to 198.18.0.63:20000-20031');
    expect(ruleset).toContain('oifname "eth1" meta l4proto udp ip saddr 192.0.2.10 ip daddr != { 224.0.0.0/4, 255.255.255.255, 192.0.2.63 } dnat to 198.18.0.63:20000-20031');
    expect(ruleset).toContain("ip saddr 198.18.0.10 snat ip to udp sport map @node_ports");
    expect(ruleset).toContain("ip saddr 198.18.0.0/26 ip saddr != { 198.18.0.10, 198.18.0.63 } snat ip prefix to ip saddr map { 198.18.0.0/26 : 192.0.2.0/26 }");
    expect(() => planSteering({ iface: "eth0; drop", nodeAddress: "192.0.2.10", prefixLength: 26, block: { address: "198.18.0.0", prefixLength: 26 } })).toThrow(/table name/);
  });

  it("parses the conntrack table and finds a flow by its reply direction", () => {
    const table = [
      "ipv4     2 udp      17 29 src=192.0.2.11 dst=192.0.2.10 sport=5000 dport=4433 [UNREPLIED] src=198.18.0.63 dst=192.0.2.11 sport=20000 dport=5000 mark=0 zone=0 use=2",
      "ipv4     2 tcp      6 431999 ESTABLISHED src=192.0.2.11 dst=192.0.2.10 sport=40000 dport=80 src=192.0.2.10 dst=192.0.2.11 sport=80 dport=40000 [ASSURED] mark=0 zone=0 use=2",
      "ipv4     2 icmp     1 29 src=192.0.2.11 dst=192.0.2.10 type=8 code=0 id=1 src=192.0.2.10 dst=192.0.2.11 type=0 code=0 id=1 mark=0 zone=0 use=2",
      "garbage",
    ].join("\n");
    const entries = parseConntrackTable(table);
    expect(entries.map((e) => e.protocol)).toEqual(["udp", "tcp"]);
    const found = findByReply(entries, { address: "198.18.0.63", port: 20000 }, { address: "192.0.2.11", port: 5000 });
    expect(found?.original.dst).toEqual({ address: "192.0.2.10", port: 4433 });
    expect(findByReply(entries, { address: "198.18.0.63", port: 20001 }, { address: "192.0.2.11", port: 5000 })).toBeUndefined();
  });

  it("writes a tar that tar(1) lists and extracts byte for byte", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "qmt-ustar-"));
    try {
      const data = Buffer.from("export const x = 1;\n".repeat(40));
      writeFileSync(path.join(dir, "a.tar"), ustarArchive([{ name: "opt/" }, { name: "opt/q/" }, { name: "opt/q/x.ts", data }, { name: "opt/q/empty", data: Buffer.alloc(0) }]));
      expect(execFileSync("tar", ["-tf", path.join(dir, "a.tar")], { encoding: "utf8" }).trim().split("\n")).toEqual(["opt/", "opt/q/", "opt/q/x.ts", "opt/q/empty"]);
      execFileSync("tar", ["-xf", path.join(dir, "a.tar"), "-C", dir]);
      expect(readFileSync(path.join(dir, "opt/q/x.ts")).equals(data)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
