import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

// packages/core is pure logic over ports: no AWS SDK, no filesystem, no network servers or clients.
const FORBIDDEN =
  /from\s+["'](@aws-sdk\/[^"']*|node:fs[^"']*|fs|fs\/promises|node:http|node:https|http|https|node:net|net|node:child_process)["']/;

describe("packages/core layering", () => {
  const src = join(import.meta.dirname, "..", "src");
  const files = readdirSync(src, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));

  it("has source files to check", () => {
    expect(files.length).toBeGreaterThan(10);
  });

  it.each(files)("%s imports no I/O module", (file) => {
    const offending = readFileSync(join(src, file), "utf8")
      .split("\n")
      .filter((line) => FORBIDDEN.test(line));
    expect(offending).toEqual([]);
  });

  it("the check catches a forbidden import", () => {
    expect(FORBIDDEN.test('import { readFile } from "node:fs/promises";')).toBe(true);
    expect(FORBIDDEN.test('import { S3Client } from "@aws-sdk/client-s3";')).toBe(true);
    expect(FORBIDDEN.test('import { hash } from "node:crypto";')).toBe(false);
  });
});
