/**
 * The tc netem path: exact argv, ownership (never replace a qdisc we did not create), read-back,
 * and undo of a half-applied change. The parts that need a netem kernel run in
 * netem-measurement.test.ts, skipped with the reason where the kernel has no sch_netem.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  applyNetem,
  buildNetemCommands,
  buildNetemRemovalCommands,
  compareNetemReadback,
  netemLimitPackets,
  parseTcQdiscJson,
  planRootQdisc,
  probeNetem,
  type Exec,
  type TcQdisc,
} from "../../orchestrator/impairments/netem.ts";
import { NetemError } from "../../orchestrator/impairments/netem-errors.ts";
import { execArgv } from "../../orchestrator/impairments/exec-argv.ts";

const recorded = JSON.parse(readFileSync(new URL("./fixtures/tc-qdisc-recorded.json", import.meta.url), "utf8")) as Record<string, TcQdisc[]>;
const constructed = JSON.parse(readFileSync(new URL("./fixtures/tc-qdisc-netem-constructed.json", import.meta.url), "utf8")) as Record<string, TcQdisc[]>;

const canNetns = (await execArgv(["ip", "netns", "list"])).exitCode === 0 && process.getuid?.() === 0;

describe("netem command building", () => {
  it("egress: our handle, computed limit, jitter with its distribution, correlated loss as a Gilbert chain, and a rate that keeps order", () => {
    expect(buildNetemCommands("eth0", { delayMs: 50, jitterMs: 5, jitterDistribution: "normal", lossPercent: 2, lossCorrelationPercent: 25 }, "egress")).toEqual([
      ["tc", "qdisc", "add", "dev", "eth0", "root", "handle", "5171:", "netem", "limit", "108334", "delay", "50ms", "5ms", "distribution", "normal", "loss", "gemodel", "1.5%", "73.5%", "100%", "0%", "rate", "100gbit"],
    ]);
  });

  it("no order-keeping rate when reorder is requested; reorder with gap 1, duplicate, corrupt, requested rate", () => {
    expect(buildNetemCommands("eth0", { delayMs: 20, jitterMs: 2, reorderPercent: 10, reorderCorrelationPercent: 50, duplicatePercent: 1, corruptPercent: 0.5, rateBitsPerSecond: 10_000_000 }, "egress", { verb: "change" })).toEqual([
      ["tc", "qdisc", "change", "dev", "eth0", "root", "handle", "5171:", "netem", "limit", "1000", "delay", "20ms", "2ms", "distribution", "uniform", "duplicate", "1%", "corrupt", "0.5%", "reorder", "10%", "50%", "gap", "1", "rate", "10000000bit"],
    ]);
  });

  it("ingress goes through our ifb: device, ingress qdisc, match-all redirect, netem on the ifb", () => {
    expect(buildNetemCommands("veth-server1", { delayMs: 10 }, "ingress")).toEqual([
      ["ip", "link", "add", "ifb-veth-server", "type", "ifb"],
      ["ip", "link", "set", "dev", "ifb-veth-server", "up"],
      ["tc", "qdisc", "add", "dev", "veth-server1", "handle", "ffff:", "ingress"],
      ["tc", "filter", "add", "dev", "veth-server1", "parent", "ffff:", "protocol", "all", "prio", "1", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "ifb-veth-server"],
      ["tc", "qdisc", "add", "dev", "ifb-veth-server", "root", "handle", "5171:", "netem", "limit", "16668", "delay", "10ms"],
    ]);
    expect(buildNetemRemovalCommands("veth-server1", "both")).toEqual([
      ["tc", "qdisc", "del", "dev", "veth-server1", "root", "handle", "5171:"],
      ["tc", "qdisc", "del", "dev", "veth-server1", "handle", "ffff:", "ingress"],
      ["ip", "link", "del", "ifb-veth-server"],
    ]);
  });

  it("seed is passed only where tc supports it", () => {
    expect(buildNetemCommands("eth0", { lossPercent: 1, seed: 7 }, "egress")[0]).not.toContain("seed");
    expect(buildNetemCommands("eth0", { lossPercent: 1, seed: 7 }, "egress", { seedSupported: true })[0]!.slice(-2)).toEqual(["seed", "7"]);
  });

  it("limit covers rate × (delay + 3·jitter) twice over, at least 1000, so the queue never becomes hidden loss", () => {
    // 100 Mbit/s × 200 ms = 20 Mbit = 1667 packets of 1500 bytes → ×2 = 3334.
    expect(netemLimitPackets({ rateBitsPerSecond: 100_000_000, delayMs: 200 })).toBe(3334);
    expect(netemLimitPackets({ rateBitsPerSecond: 1_000_000, delayMs: 10 })).toBe(1000);
    expect(netemLimitPackets({ limitPackets: 50, delayMs: 500 })).toBe(50);
  });
});

describe("netem ownership and read-back (recorded tc -j output)", () => {
  it("adds over an empty device or the kernel default root, changes our own, refuses a foreign root", () => {
    expect(planRootQdisc("v0", recorded["vethEmpty"]!)).toBe("add");
    expect(planRootQdisc("eth0", constructed["defaultFqCodel"]!)).toBe("add");
    expect(planRootQdisc("eth0", constructed["oursNetem"]!)).toBe("change");
    expect(() => planRootQdisc("v0", recorded["foreignTbfRoot"]!)).toThrow(/tbf 1:.*refusing/);
    try {
      planRootQdisc("v0", recorded["foreignTbfRootAndIngress"]!);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(NetemError);
      expect((error as NetemError).code).toBe("NETEM_FOREIGN_QDISC");
    }
  });

  it("read-back matches the spec it was built from and names each difference otherwise", () => {
    const spec = { delayMs: 50, jitterMs: 5, jitterDistribution: "normal" as const, lossPercent: 2 };
    expect(compareNetemReadback("eth0", constructed["oursNetem"]!, spec)).toEqual([]);
    expect(compareNetemReadback("eth0", constructed["oursNetem"]!, { ...spec, delayMs: 40, lossPercent: 3 })).toEqual([
      "limit: expected 91668, read 108334",
      "delay: expected 40 ms, read 50 ms",
      "loss: expected 3 %, read 2 %",
    ]);
    expect(compareNetemReadback("eth0", recorded["foreignTbfRoot"]!, spec)).toEqual(["eth0: no netem 5171: after applying"]);
    expect(parseTcQdiscJson("")).toEqual([]);
  });

  it("applyNetem undoes a half-applied ingress change when a step fails (scripted tc)", async () => {
    const ran: string[] = [];
    const exec: Exec = async (argv) => {
      ran.push(argv.join(" "));
      if (argv.includes("-j")) return { exitCode: 0, stdout: "[]", stderr: "" };
      if (argv[1] === "link" && argv[2] === "show") return { exitCode: 1, stdout: "", stderr: "does not exist" };
      if (argv[0] === "tc" && argv.includes("netem")) return { exitCode: 2, stdout: "", stderr: "Error: Specified qdisc kind is unknown." };
      return { exitCode: 0, stdout: "", stderr: "" };
    };
    await expect(applyNetem(exec, "v0", { delayMs: 10 }, "ingress")).rejects.toMatchObject({ code: "NETEM_COMMAND_FAILED" });
    // Ingress only: the egress root is not touched; the ingress qdisc and the ifb we added are removed.
    expect(ran.slice(-3)).toEqual(["tc qdisc add dev ifb-v0 root handle 5171: netem limit 16668 delay 10ms", "tc qdisc del dev v0 handle ffff: ingress", "ip link del ifb-v0"]);
  });
});

describe.skipIf(!canNetns)("netem against this kernel's tc, in a throw-away netns (needs root and ip netns)", () => {
  async function inNetns<T>(body: (exec: Exec) => Promise<T>): Promise<T> {
    const netns = `qmt-test-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
    expect((await execArgv(["ip", "netns", "add", netns])).exitCode).toBe(0);
    try {
      const exec: Exec = (argv) => execArgv(["ip", "netns", "exec", netns, ...argv]);
      expect((await exec(["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"])).exitCode).toBe(0);
      return await body(exec);
    } finally {
      await execArgv(["ip", "netns", "del", netns]);
    }
  }

  it("refuses to replace a foreign root qdisc and leaves it in place", async () => {
    await inNetns(async (exec) => {
      expect((await exec(["tc", "qdisc", "add", "dev", "v0", "root", "handle", "1:", "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "400ms"])).exitCode).toBe(0);
      await expect(applyNetem(exec, "v0", { delayMs: 10 }, "egress")).rejects.toMatchObject({ code: "NETEM_FOREIGN_QDISC" });
      const after = parseTcQdiscJson((await exec(["tc", "-j", "qdisc", "show", "dev", "v0"])).stdout);
      expect(after.map((q) => `${q.kind} ${q.handle}`)).toEqual(["tbf 1:"]);
    });
  });

  it("leaves nothing behind when netem itself fails half-way through an ingress setup", async () => {
    const { available } = await probeNetem(execArgv);
    await inNetns(async (exec) => {
      const attempt = applyNetem(exec, "v0", { delayMs: 10 }, "ingress");
      if (available) {
        await attempt;
        await (await import("../../orchestrator/impairments/netem.ts")).removeNetem(exec, "v0", "ingress");
      } else {
        await expect(attempt).rejects.toMatchObject({ code: "NETEM_COMMAND_FAILED" });
      }
      expect((await exec(["tc", "-j", "qdisc", "show", "dev", "v0"])).stdout.trim()).toBe("[]");
      expect((await exec(["ip", "link", "show", "dev", "ifb-v0"])).exitCode).not.toBe(0);
    });
  });

  it("probeNetem answers and removes its namespace", async () => {
    const before = (await execArgv(["ip", "netns", "list"])).stdout;
    const result = await probeNetem(execArgv);
    if (!result.available) expect(result.reason).toMatch(/sch_netem|netem/);
    expect((await execArgv(["ip", "netns", "list"])).stdout).toBe(before);
  });
});
