import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  // `@auditsink/*` resolves to each package's TypeScript source through tsconfig.base.json's `paths` (as tsx and
  // tsc do), so tests never run stale compiled output; installed packages resolve to dist/ through `exports`.
  // Child processes start from dist/, which the global setup builds first (test/built.ts).
  resolve: { tsconfigPaths: true },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    globalSetup: ["test/build.global.ts"],
    // Most files wait on child processes, emulators and disks rather than compute: at least three files at a time,
    // even on a two-core machine, where Vitest's default (one fewer than the cores) is one. There the suite took
    // 824 s with one, 680 s with two, 557 s with three.
    maxWorkers: Math.max(3, availableParallelism() - 1),
    testTimeout: 30_000,
    hookTimeout: 180_000,
  },
});
