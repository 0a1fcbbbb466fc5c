/**
 * `npm run deploy` refuses to start `sst deploy` without AWS credentials: it says what is missing and exits 1,
 * quickly (the SDK's provider chain is tried once; nothing waits on AWS).
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { tempDir } from "../embedded/helpers.ts";

const run = promisify(execFile);
const repo = join(import.meta.dirname, "../..");

describe("npm run deploy", () => {
  it("fails with what to provide when there are no AWS credentials, before SST runs", async () => {
    // Prepare: no AWS_* variables and a home directory without ~/.aws.
    const home = await tempDir("auditsink-deploy-home-");
    try {
      // Act
      const result = await run("npm", ["run", "deploy", "--", "--stage", "ci-no-credentials"], {
        cwd: repo,
        env: { PATH: process.env.PATH, HOME: home.dir, npm_config_update_notifier: "false" },
      }).then(
        () => ({ code: 0, stderr: "" }),
        (e: { code: number; stderr: string }) => e,
      );
      // Assess
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/deploy: no AWS credentials found/);
      expect(result.stderr).toMatch(/AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
      expect(result.stderr).toMatch(/AWS_PROFILE/);
      expect(result.stderr).not.toMatch(/SST|sst deploy/);
    } finally {
      await home.remove();
    }
  });
});
