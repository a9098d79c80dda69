/**
 * Runs the netem measurements where this host's kernel cannot: boots Debian's kernel
 * (linux-image-amd64, with sch_netem as a module) under QEMU with a tiny initramfs holding
 * busybox, tc/ip, node and the probe (../netem-probe-main.ts). For each scenario the VM's init
 * applies our netem commands (buildNetemCommands) on `lo`, runs the probe, prints one result
 * line, and removes the qdisc. The host parses the lines.
 *
 * Needs: qemu-system-x86_64, /boot/vmlinuz-<v> with /lib/modules/<v>/kernel/net/sched/sch_netem.ko,
 * /bin/busybox (busybox-static), cpio, gzip.  Usage:
 *   node test/impairments/qemu/netem-in-qemu.ts      (prints JSON results)
 * QMT_QEMU_ACCEL=kvm uses KVM where /dev/kvm works; the default is tcg (pure emulation).
 */
import { copyFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { buildNetemCommands } from "../../../orchestrator/impairments/netem.ts";
import type { ImpairmentSpec } from "../../../orchestrator/topology/model.ts";

/** What netem-probe-main.ts prints in "summary" mode. */
export interface ProbeSummary {
  received: number;
  unique: number;
  medianOneWayMs: number | null;
  under10Ms: number;
  spanMs: number;
}

export interface QemuScenario {
  name: string;
  spec: ImpairmentSpec;
  count: number;
  intervalMs: number;
  bytes: number;
}

export function findQemuKernel(): { vmlinuz: string; netemModule: string } | undefined {
  if (!existsSync("/lib/modules")) return undefined;
  for (const version of readdirSync("/lib/modules")) {
    const vmlinuz = `/boot/vmlinuz-${version}`;
    const netemModule = `/lib/modules/${version}/kernel/net/sched/sch_netem.ko`;
    if (existsSync(vmlinuz) && existsSync(netemModule)) return { vmlinuz, netemModule };
  }
  return undefined;
}

export async function qemuPrerequisites(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (findQemuKernel() === undefined) return { ok: false, reason: "no /boot/vmlinuz-* with sch_netem.ko (apt-get install linux-image-amd64)" };
  for (const tool of ["qemu-system-x86_64", "cpio", "gzip"]) {
    if ((await execa("sh", ["-c", `command -v ${tool}`], { reject: false })).exitCode !== 0) return { ok: false, reason: `${tool} is not installed` };
  }
  if (!existsSync("/bin/busybox")) return { ok: false, reason: "no /bin/busybox (apt-get install busybox-static)" };
  return { ok: true };
}

async function copyWithLibraries(root: string, binary: string): Promise<void> {
  const target = path.join(root, binary);
  mkdirSync(path.dirname(target), { recursive: true });
  copyFileSync(binary, target);
  chmodSync(target, 0o755);
  const ldd = await execa("ldd", [binary], { reject: false });
  for (const match of String(ldd.stdout).matchAll(/(\/\S+\.so[^\s]*)/g)) {
    const library = match[1]!;
    const libraryTarget = path.join(root, library);
    if (existsSync(libraryTarget)) continue;
    mkdirSync(path.dirname(libraryTarget), { recursive: true });
    copyFileSync(library, libraryTarget);
  }
}

export async function runNetemScenariosInQemu(scenarios: QemuScenario[], opts: { timeoutMs?: number } = {}): Promise<Record<string, ProbeSummary>> {
  const kernel = findQemuKernel();
  if (kernel === undefined) throw new Error("no kernel with sch_netem.ko found");
  const work = mkdtempSync(path.join(tmpdir(), "qmt-qemu-"));
  try {
    const root = path.join(work, "root");
    for (const dir of ["bin", "proc", "sys", "dev", "tmp", "app", "run"]) mkdirSync(path.join(root, dir), { recursive: true });
    copyFileSync("/bin/busybox", path.join(root, "bin/busybox"));
    chmodSync(path.join(root, "bin/busybox"), 0o755);
    copyFileSync(kernel.netemModule, path.join(root, "sch_netem.ko"));
    const node = process.execPath;
    for (const binary of [node, "/usr/sbin/tc", "/usr/sbin/ip"]) await copyWithLibraries(root, binary);
    const distDir = "/usr/lib/x86_64-linux-gnu/tc";
    if (existsSync(distDir)) {
      mkdirSync(path.join(root, distDir), { recursive: true });
      for (const file of readdirSync(distDir)) copyFileSync(path.join(distDir, file), path.join(root, distDir, file));
    }
    const here = path.dirname(new URL(import.meta.url).pathname);
    copyFileSync(path.join(here, "..", "udp-probe.ts"), path.join(root, "app/udp-probe.ts"));
    copyFileSync(path.join(here, "..", "netem-probe-main.ts"), path.join(root, "app/netem-probe-main.ts"));
    writeFileSync(path.join(root, "app/package.json"), JSON.stringify({ type: "module" }));

    const quote = (arg: string): string => `'${arg.replace(/'/g, "'\\''")}'`;
    const lines = [
      "#!/bin/busybox sh",
      "/bin/busybox --install -s /bin",
      "export PATH=/usr/sbin:/bin", // our tc and ip before busybox's applets of the same names
      "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp",
      "insmod /sch_netem.ko || echo QMT-ERROR insmod",
      "/usr/sbin/ip link set lo up",
    ];
    for (const s of scenarios) {
      // Absolute paths: Debian's busybox-static prefers its own applets (tc, ip) over PATH.
      const commands = buildNetemCommands("lo", s.spec, "egress").map((argv) => [`/usr/sbin/${argv[0]}`, ...argv.slice(1)].map(quote).join(" "));
      lines.push(`echo QMT-COMMANDS ${s.name} ${quote(commands.join(" ; "))}`);
      lines.push(...commands.map((c) => `${c} || echo QMT-ERROR ${s.name} tc`));
      lines.push(`echo "QMT-RESULT ${s.name} $(${quote(node)} /app/netem-probe-main.ts ${s.count} ${s.intervalMs} ${s.bytes} summary)"`);
      lines.push("/usr/sbin/tc qdisc del dev lo root handle 5171:");
    }
    lines.push("echo QMT-DONE", "poweroff -f");
    writeFileSync(path.join(root, "init"), `${lines.join("\n")}\n`);
    chmodSync(path.join(root, "init"), 0o755);

    const initramfs = path.join(work, "initramfs.gz");
    await execa("sh", ["-c", `cd ${quote(root)} && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > ${quote(initramfs)}`]);
    const accel = process.env["QMT_QEMU_ACCEL"] ?? "tcg";
    const qemu = ["qemu-system-x86_64", "-accel", accel, "-m", "2048", "-smp", "1", "-nographic", "-no-reboot", "-kernel", kernel.vmlinuz, "-initrd", initramfs, "-append", "console=ttyS0 panic=-1 quiet"];
    // The guest's clock and timers are emulated: when other work starves QEMU on this 2-core
    // machine (vitest runs test files in parallel), every netem delay in the guest stretches. As
    // root, QEMU (all its threads) runs at nice -10 so the measurement is of netem, not of the load.
    const argv = process.getuid?.() === 0 ? ["nice", "-n", "-10", ...qemu] : qemu;
    const result = await execa(argv[0]!, argv.slice(1), { reject: false, timeout: opts.timeoutMs ?? 600_000 });
    const output = String(result.stdout);
    const results: Record<string, ProbeSummary> = {};
    for (const match of output.matchAll(/^QMT-RESULT (\S+) (.*)$/gm)) {
      results[match[1]!] = JSON.parse(match[2]!.trim()) as ProbeSummary;
    }
    const errors = [...output.matchAll(/^QMT-ERROR .*$/gm)].map((m) => m[0]);
    if (errors.length > 0 || Object.keys(results).length !== scenarios.length) {
      throw new Error(`qemu run incomplete (exit ${result.exitCode}): ${errors.join("; ")}\n${output.slice(-3000)}`);
    }
    return results;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const results = await runNetemScenariosInQemu([
    { name: "delay-jitter-loss", spec: { delayMs: 50, jitterMs: 5, jitterDistribution: "normal", lossPercent: 2, reorderPercent: 0 }, count: 2000, intervalMs: 2, bytes: 64 },
    { name: "delay-only", spec: { delayMs: 50 }, count: 500, intervalMs: 2, bytes: 64 },
  ]);
  console.log(JSON.stringify(results));
}
