/** The real CLI, spawned with this Node: help for every command, usage errors, dry-run plans. */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { COMMANDS } from "../../orchestrator/cli.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const cli = (...args: string[]) => execa(process.execPath, ["orchestrator/cli.ts", ...args], { cwd: repoRoot, reject: false });

describe("testbed CLI", () => {
  it("has the commands up, down, status, validate, impair, heal, logs, exec, images", () => {
    expect(COMMANDS.map((c) => c.name)).toEqual(["up", "down", "status", "validate", "impair", "heal", "logs", "exec", "images"]);
  });

  it.each(COMMANDS.map((c) => c.name))("%s --help prints usage with an example and exits 0", async (name) => {
    const result = await cli(name, "--help");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^usage: testbed ${name}`));
    expect(result.stdout).toContain(`example:\n  npm run testbed -- ${name}`);
  });

  it("--help lists every command", async () => {
    const result = await cli("--help");
    expect(result.exitCode).toBe(0);
    for (const c of COMMANDS) expect(result.stdout).toContain(`  ${c.name}`);
  });

  it("an unknown command is a usage error: one line, exit 2", async () => {
    const result = await cli("launch");
    expect(result.exitCode).toBe(2);
    expect(result.stderr.split("\n")).toHaveLength(1);
    expect(result.stderr).toContain('unknown command "launch"');
  });

  it("an unknown flag is a usage error: one line, exit 2", async () => {
    const result = await cli("up", "--dry-run", "--bogus");
    expect(result.exitCode).toBe(2);
    expect(result.stderr.split("\n")).toHaveLength(1);
    expect(result.stderr).toContain("--bogus");
  });

  it("impair refuses a bad flag value in the topology's words, exit 2", async () => {
    const result = await cli("impair", "client1", "public", "--delay", "fast");
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe('impair: --delay: expected a duration like "20ms", got "fast"');
  });

  it("validate accepts every shipped topology", async () => {
    for (const file of ["lb-bypass", "failover", "geo", "renumber"]) {
      const result = await cli("validate", `topologies/${file}.yaml`);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^topologies/${file}\\.yaml: ok`));
      expect(result.stderr).not.toContain("warning");
    }
  });

  it("validate warns (exit 0) when a server node cannot get the role config up writes: QMT_SERVER_ID out of range", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "qmt-validate-"));
    try {
      const file = path.join(dir, "no-server-id.yaml");
      writeFileSync(file, readFileSync(path.join(repoRoot, "topologies/lb-bypass.yaml"), "utf8").replace('QMT_SERVER_ID: "1"', 'QMT_SERVER_ID: "0"'));
      const result = await cli("validate", file);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toContain(": ok");
      expect(result.stderr).toMatch(/warning: no role configs: .*nodes\[backend1\]\.env\.QMT_SERVER_ID: expected an integer 1…255/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("up --dry-run --json prints the same plan twice, with run id dryrun, for the default topology", async () => {
    const first = await cli("up", "--dry-run", "--json");
    const second = await cli("up", "--dry-run", "--json");
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toBe(second.stdout);
    const plan = JSON.parse(first.stdout) as { runId: string; topology: { name: string }; nodes: { name: string }[] };
    expect(plan.runId).toBe("dryrun");
    expect(plan.topology.name).toBe("lb-bypass");
    expect(plan.nodes.map((n) => n.name)).toContain("backend2");
  });

  it("up --dry-run prints networks, nodes with images, and the impairment commands; the same file gives the same plan; nothing is created", async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), "qmt-cli-dry-"));
    try {
      const dry = (...args: string[]) => execa(process.execPath, [path.join(repoRoot, "orchestrator/cli.ts"), "up", path.join(repoRoot, "topologies/lb-bypass.yaml"), "--dry-run", ...args], { cwd, reject: false });
      const first = await dry("--driver", "docker");
      const second = await dry("--driver", "docker");
      expect(first.exitCode, first.stderr).toBe(0);
      expect(first.stdout).toBe(second.stdout);
      const lines = first.stdout.split("\n");
      expect(lines).toContain("  public       public   203.0.113.0/24");
      expect(lines).toContain("  mgmt         mgmt     172.20.0.0/24");
      expect(lines).toContain("  lb           lb         public=203.0.113.10 private=10.20.0.10 mgmt=172.20.0.10 image=qmt/lb:latest");
      expect(lines).toContain("  prometheus   prometheus mgmt=172.20.0.2 image=qmt/generic:latest");
      expect(lines).toContain("  client1/public both: delay 20ms, jitter 2ms normal, loss 0.5%, rate 100mbit");
      expect(lines).toContain("    docker exec dryrun-client1 tc qdisc add dev <if:public> root handle 5171: netem limit 1000 delay 20ms 2ms distribution normal loss random 0.5% rate 100000000bit");
      expect(lines.some((l) => l.includes("tc qdisc add dev ifb-<if:public> root handle 5171: netem"))).toBe(true);
      const local = await dry("--driver", "local");
      expect(local.stdout).toContain("    userspace UDP relay on client1's published public address, for every UDP port it binds (seed 1)");
      // Nothing created: no run state, no current run.
      expect(existsSync(path.join(cwd, ".cache"))).toBe(false);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it("up --dry-run on a broken file exits 2 with the validation line", async () => {
    const result = await cli("up", "test/topology/broken/unknown-role.yaml", "--dry-run");
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^test\/topology\/broken\/unknown-role\.yaml:12:11: nodes\[0\]\.role: expected one of lb, /);
  });

  it("status without a current run says so in one line, exit 1", async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), "qmt-cli-"));
    try {
      const result = await execa(process.execPath, [path.join(repoRoot, "orchestrator/cli.ts"), "status", "--driver", "local"], { cwd, reject: false });
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toMatch(/^no current run: [^\n]*$/);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
