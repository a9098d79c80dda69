/**
 * The bench runner. `npm run bench` lists the benchmarks; `npm run bench -- <name>` runs one in a
 * fresh Node process (so heap figures are its own) and passes its output through. Each benchmark,
 * `bench/<name>.bench.ts`, prints as its last stdout line one JSON object
 * `{"bench": "<name>", "metrics": {...}, "targets": {...}}`; its first comment line describes it.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = import.meta.dirname;
const benches = readdirSync(dir)
  .filter((f) => f.endsWith(".bench.ts"))
  .map((f) => {
    const name = f.replace(/\.bench\.ts$/, "");
    const first = readFileSync(join(dir, f), "utf8").split("\n").find((l) => l.trim().startsWith("/**") || l.trim().startsWith("*")) ?? "";
    return { name, file: join(dir, f), description: first.replace(/^\s*\/?\*+\s?/, "").replace(/\*\/\s*$/, "").trim() };
  })
  .sort((a, b) => a.name.localeCompare(b.name));

const args = process.argv.slice(2);
if (args.length === 0 || args[0] === "--help" || args[0] === "-h" || args[0] === "list") {
  console.log("Usage: npm run bench -- <name> [args]    (prints a JSON result as its last line)\n\nBenchmarks:");
  for (const b of benches) console.log(`  ${b.name.padEnd(20)} ${b.description}`);
  process.exit(0);
}
const bench = benches.find((b) => b.name === args[0]);
if (!bench) {
  console.error(`bench: unknown benchmark "${args[0]}"; known: ${benches.map((b) => b.name).join(", ")}`);
  process.exit(2);
}
const r = spawnSync(process.execPath, ["--expose-gc", bench.file, ...args.slice(1)], { stdio: "inherit" });
process.exit(r.status ?? 1);
