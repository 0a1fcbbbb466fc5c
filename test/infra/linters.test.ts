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
import { OUTPUT, ROOT, synthesize } from "./synth.ts";

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
async function report(file: string, args: string[], cwd = ROOT): Promise<unknown> {
  const out = await run(file, args, { cwd, maxBuffer: 64 * 1024 * 1024 }).catch(
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

// One run of each tool over both stages' templates; the first run after the install also compiles what it imports.
const LINTER_TIMEOUT_MS = 180_000;

describe("template linters", () => {
  it("cfn-lint finds nothing in any template", { timeout: LINTER_TIMEOUT_MS }, async () => {
    const templates = outputs.flatMap(templatesIn);
    expect(templates).toHaveLength(14);
    expect(await report(cfnLint, ["--format", "json", "--", ...templates])).toEqual([]);
  });

  it("checkov fails no check, and each check it skips is skipped with the reason", {
    timeout: LINTER_TIMEOUT_MS,
  }, async () => {
    // Templates named relative to test/output/infra: checkov 3.3.30 also scans the `__file__` member it adds to
    // each environment block for secrets, so an absolute path that happens to hold a run of exactly 40 letters,
    // digits and slashes (a checkout at /tmp/fresh15/main gives one) fails CKV_AWS_45 on every function.
    const raw = await report(
      checkov,
      [
        "--file",
        ...outputs.flatMap(templatesIn).map((t) => path.relative(OUTPUT, t)),
        "--framework",
        "cloudformation",
        "--skip-download",
        "--output",
        "json",
      ],
      OUTPUT,
    );
    // One report per framework run: CloudFormation here.
    const r = (Array.isArray(raw) ? raw : [raw]) as CheckovReport[];
    expect(r).toHaveLength(1);
    const { results, summary } = r[0]!;
    expect(results.failed_checks.map((f) => `${f.check_id} ${f.resource} ${f.file_path}`)).toEqual([]);
    // Both stages' templates were read: each stage has 7 templates and over 100 passing checks.
    expect(new Set(results.skipped_checks.map((c) => (c as { file_path?: string }).file_path)).size).toBe(14);
    expect(summary.passed).toBeGreaterThan(400);
    const unexplained = results.skipped_checks.filter(
      (s) => (s.check_result.suppress_comment ?? "").length < 60,
    );
    expect(unexplained.map((s) => `${s.check_id} ${s.resource}`)).toEqual([]);
  });
});
