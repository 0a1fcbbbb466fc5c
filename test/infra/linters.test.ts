/**
 * The template linters an AWS reviewer runs, cfn-lint and checkov (pinned in linters-requirements.txt, installed
 * into `.venv-lint` on first use), over the synthesized templates with production-like settings and with the
 * defaults: no finding. What the design answers otherwise is skipped on its resource with the answer
 * (stacks/linters.ts), and every skip must say why.
 */
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureVenv } from "../emulators/harness.ts";
import { SETTINGS } from "./fixtures.ts";
import { ROOT, synthesize } from "./synth.ts";

const run = promisify(execFile);
let cfnLint: string;
let checkov: string;
const outputs: string[] = [];

beforeAll(async () => {
  cfnLint = await ensureVenv(
    ".venv-lint",
    path.join(ROOT, "test/infra/linters-requirements.txt"),
    "cfn-lint",
  );
  checkov = path.join(path.dirname(cfnLint), "checkov");
  // Stages of their own: other infra test files write theirs at the same time.
  outputs.push((await synthesize("lint", SETTINGS)).outputDir);
  outputs.push((await synthesize("lint-defaults", {})).outputDir);
}, 900_000);

const templatesIn = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".template.json"))
    .map((f) => path.join(dir, f));

/** A linter's JSON report; both exit non-zero when they find something, with the report on stdout. */
async function report(file: string, args: string[]): Promise<unknown> {
  const out = await run(file, args, { maxBuffer: 64 * 1024 * 1024 }).catch(
    (e: { stdout?: string; stderr?: string }) => {
      if (!e.stdout) throw new Error(`${path.basename(file)} failed: ${e.stderr}`);
      return e as { stdout: string };
    },
  );
  return JSON.parse(out.stdout);
}

interface CheckovReport {
  results: {
    failed_checks: { check_id: string; resource: string; file_path: string }[];
    skipped_checks: { check_id: string; resource: string; check_result: { suppress_comment?: string } }[];
  };
  summary: { passed: number; failed: number; skipped: number };
}

describe("template linters", () => {
  it("cfn-lint finds nothing in any template", async () => {
    for (const dir of outputs) {
      const templates = templatesIn(dir);
      expect(templates).toHaveLength(7);
      expect([dir, await report(cfnLint, ["--format", "json", "--", ...templates])]).toEqual([dir, []]);
    }
  });

  it("checkov fails no check, and each check it skips is skipped with the reason", async () => {
    for (const dir of outputs) {
      const raw = await report(checkov, [
        "--directory",
        dir,
        "--framework",
        "cloudformation",
        "--skip-download",
        "--output",
        "json",
      ]);
      // One report per framework run; a directory of CloudFormation templates gives one.
      const r = (Array.isArray(raw) ? raw : [raw]) as CheckovReport[];
      expect(r).toHaveLength(1);
      const { results, summary } = r[0]!;
      expect(results.failed_checks.map((f) => `${f.check_id} ${f.resource} ${f.file_path}`)).toEqual([]);
      expect(summary.passed).toBeGreaterThan(200);
      const unexplained = results.skipped_checks.filter(
        (s) => (s.check_result.suppress_comment ?? "").length < 60,
      );
      expect(unexplained.map((s) => `${s.check_id} ${s.resource}`)).toEqual([]);
    }
  });
});
