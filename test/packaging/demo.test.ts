/** `npm run demo` writes plain text when its output is not a terminal (a CI log, a file): no ANSI escapes. */
import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { userEnv } from "./processes.ts";

const run = promisify(execFile);
const repo = join(import.meta.dirname, "../..");

describe("npm run demo", () => {
  it("prints its steps without escape codes into a pipe", async () => {
    // Act: stdout and stderr are pipes here, as in CI.
    const { stdout, stderr } = await run("npm", ["run", "--silent", "demo"], {
      cwd: repo,
      env: userEnv({ NO_COLOR: "" }),
    });
    const leftover = /rm -rf (\S+)\)/.exec(stdout)?.[1];
    if (leftover) await rm(leftover, { recursive: true, force: true });
    // Assess
    expect(stdout).toMatch(/^1\. Start the embedded sink$/m);
    expect(stdout).not.toContain("\x1b");
    expect(stderr).not.toContain("\x1b");
  }, 60_000); // The whole demo (two sinks, two producers, a tampered copy verified) runs in ~7 s on an idle machine.
});
