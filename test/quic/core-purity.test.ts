import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

// STYLE.md: the QUIC core has no I/O and no clock. Only the I/O adapter may import sockets or timers.
const CORE = join(import.meta.dirname, "../../node-images/quic");
const IO_ADAPTERS = new Set(["udp-endpoint.ts", "qlog-file.ts"]);
const FORBIDDEN = [
  { pattern: /from\s+["']node:dgram["']/, what: "node:dgram" },
  { pattern: /from\s+["']node:(net|http|https|fs|child_process|timers)["']/, what: "I/O or timer modules" },
  { pattern: /\bDate\.now\(|new Date\(/, what: "Date" },
  { pattern: /\b(setTimeout|setInterval|setImmediate)\(/, what: "timers" },
  { pattern: /\bperformance\.now\(/, what: "a clock" },
];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return name === "fixtures" ? [] : sourceFiles(p);
    return name.endsWith(".ts") && !name.endsWith(".test.ts") ? [p] : [];
  });
}

describe("the QUIC core is sans-I/O", () => {
  it("imports no sockets, timers or clocks outside udp-endpoint.ts", () => {
    const offences: string[] = [];
    const files = sourceFiles(CORE);
    expect(files.length).toBeGreaterThan(10);
    for (const file of files) {
      if (IO_ADAPTERS.has(relative(CORE, file))) continue;
      // Comments may name what the code must not use; only code counts.
      const text = readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
      for (const { pattern, what } of FORBIDDEN) if (pattern.test(text)) offences.push(`${relative(CORE, file)} uses ${what}`);
    }
    expect(offences).toEqual([]);
  });
});
