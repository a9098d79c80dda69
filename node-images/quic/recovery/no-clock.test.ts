import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/** STYLE.md: the QUIC core has no clock and no I/O; time only comes in as `now: Instant`. */
describe("recovery modules are sans-I/O", () => {
  it("no source file reads a clock, sets a timer or opens a socket", () => {
    const dir = import.meta.dirname;
    const files = [...readdirSync(dir), ...readdirSync(join(dir, "congestion")).map((f) => join("congestion", f))].filter(
      (f) => f.endsWith(".ts") && !f.endsWith(".test.ts"),
    );
    expect(files.length).toBeGreaterThanOrEqual(8);
    for (const f of files) {
      const source = readFileSync(join(dir, f), "utf8");
      expect(source, f).not.toMatch(/\bDate\b|performance\.now|setTimeout|setInterval|setImmediate|node:dgram|node:net|process\.hrtime/);
    }
  });
});
