import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "node-images/**/*.test.ts", "orchestrator/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Docker and network-namespace tests share one engine and one kernel; files run one at a time
    // inside those folders through their own describe blocks, the rest in parallel.
    pool: "forks",
  },
});
