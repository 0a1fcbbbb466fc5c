/** Vitest global setup: builds every package's dist/ (incremental; ~1 s when nothing changed). See test/built.ts. */
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

export default function setup(): void {
  const repo = join(import.meta.dirname, "..");
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const packages = readdirSync(join(repo, "packages")).map((p) => join("packages", p));
  execFileSync(process.execPath, [tsc, "-b", ...packages], { cwd: repo, stdio: "inherit" });
}
