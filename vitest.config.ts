import { defineConfig } from "vitest/config";

/**
 * Two projects. `timing` holds the tests that measure delay and jitter to a fraction of a millisecond
 * (the userspace impairer, netem in QEMU): they run after everything else, one file at a time, on a
 * quiet machine, because a loaded 2-core machine stalls the process by tens of ms. `npm test` runs
 * `main` and then `timing`; `npx vitest run` alone runs both at once (fine on a quiet machine).
 */
const TIMING = ["test/impairments/udp-impairer.test.ts", "test/impairments/docker-userspace-impairer.test.ts", "test/impairments/netem-qemu.test.ts", "test/impairments/netem-measurement.test.ts"];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    projects: [
      {
        extends: true,
        test: {
          name: "main",
          include: ["test/**/*.test.ts", "node-images/**/*.test.ts", "orchestrator/**/*.test.ts"],
          exclude: [...TIMING, "**/node_modules/**"],
        },
      },
      {
        extends: true,
        test: { name: "timing", include: TIMING, fileParallelism: false },
      },
    ],
  },
});
