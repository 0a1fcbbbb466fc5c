import { describe, expect, it } from "vitest";
import { parseCheckpointText, parsePlainCheckpoint } from "../src/checkpoint.ts";
import { FormatError } from "../src/errors.ts";

// c2sp.org/tlog-checkpoint: the specification's example body.
const SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
const ROOT = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

describe("parsePlainCheckpoint (c2sp.org/tlog-checkpoint)", () => {
  it("reads the specification's example: origin, size, root and no extension lines", () => {
    const cp = parsePlainCheckpoint(SPEC_BODY);
    expect(cp.origin).toBe("example.com/behind-the-sofa");
    expect(cp.size).toBe(20852163);
    expect(cp.root.toString("base64")).toBe("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=");
    expect(cp.extensions).toEqual([]);
  });

  it("keeps any extension lines, in order and uninterpreted", () => {
    const cp = parsePlainCheckpoint(`log.example/a b\n0\n${ROOT}\nzeta 1\nalpha\n— not a signature\n`);
    expect(cp.origin).toBe("log.example/a b"); // the origin SHOULD avoid spaces; a client MUST NOT assume it does
    expect(cp.extensions).toEqual(["zeta 1", "alpha", "— not a signature"]);
  });

  it("reads auditsink's own checkpoints, whose head and time are extension lines", () => {
    const body = `a.example/s\n1\n${ROOT}\nhead ${"ab".repeat(32)}\ntime 2026-11-24T12:00:00.000Z\n`;
    expect(parsePlainCheckpoint(body).extensions).toEqual([
      `head ${"ab".repeat(32)}`,
      "time 2026-11-24T12:00:00.000Z",
    ]);
    expect(parseCheckpointText(body)).toMatchObject({ origin: "a.example/s", size: 1 });
  });

  it.each([
    ["no final newline", `o\n0\n${ROOT}`],
    ["only two lines", "o\n0\n"],
    ["an empty origin", `\n0\n${ROOT}\n`],
    ["a size with a leading zero", `o\n01\n${ROOT}\n`],
    ["a signed size", `o\n+1\n${ROOT}\n`],
    ["a size past 2^53 − 1", `o\n9007199254740992\n${ROOT}\n`],
    ["a size of 17 digits", `o\n10000000000000000\n${ROOT}\n`],
    ["a root of 31 bytes", `o\n0\n${Buffer.alloc(31).toString("base64")}\n`],
    ["a root in base64url", `o\n0\n${"_".repeat(43)}=\n`],
    ["a root with non-zero pad bits", `o\n0\n${"A".repeat(42)}B=\n`],
    ["an empty extension line", `o\n0\n${ROOT}\n\nx\n`],
    ["a trailing blank line", `o\n0\n${ROOT}\n\n`],
    ["a carriage return", `o\r\n0\n${ROOT}\n`],
    ["a tab", `o\n0\n${ROOT}\na\tb\n`],
  ])("refuses a checkpoint with %s", (_, text) => {
    expect(() => parsePlainCheckpoint(text)).toThrow(FormatError);
  });

  it("says when a size is a decimal integer too large to handle exactly", () => {
    expect(() => parsePlainCheckpoint(`o\n18446744073709551615\n${ROOT}\n`)).toThrow(/larger than 2\^53/);
    expect(() => parsePlainCheckpoint(`o\n184467440737095516150\n${ROOT}\n`)).toThrow(/not a decimal/);
  });

  it("refuses what the plain parser refuses in auditsink's strict parse too, with the same error", () => {
    const text = `o\n01\n${ROOT}\ntime 2026-11-24T12:00:00.000Z\n`;
    expect(() => parseCheckpointText(text)).toThrow("checkpoint size is not a decimal integer");
  });

  it("auditsink's strict parse still refuses extension lines a plain checkpoint may carry", () => {
    const plain = `o\n0\n${ROOT}\ntime 2026-11-24T12:00:00.000Z\nextra\n`;
    expect(parsePlainCheckpoint(plain).extensions).toHaveLength(2);
    expect(() => parseCheckpointText(plain)).toThrow(/extension lines time/);
    expect(() => parseCheckpointText(SPEC_BODY)).toThrow(/extension lines head, time/);
  });
});
