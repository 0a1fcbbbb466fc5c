/**
 * A stage with an Ed25519 checkpoint key and witnesses (docs/TRANSPARENCY.md §2–§3): the KMS key's spec, the
 * witness environment of exactly the functions that submit (sequencer), serve (query) and check (verifier)
 * cosigned checkpoints — read back by the runtime's own settingsFromEnv — no new permission for anyone, and
 * cdk-nag still clean.
 */
import { randomBytes } from "node:crypto";
import { settingsFromEnv as runtimeSettings } from "@auditsink/aws";
import { makeWitnessKey } from "@auditsink/core";
import { beforeAll, describe, expect, it } from "vitest";
import { SETTINGS, STAGE } from "./fixtures.ts";
import { resourcesOf, type Synth, synthesize } from "./synth.ts";

const W1 = makeWitnessKey("witness.example/w1", randomBytes(32)).verifierKey;
const W2 = makeWitnessKey("witness.example/w2", randomBytes(32)).verifierKey;

let witnessed: Synth;
let plain: Synth;
beforeAll(async () => {
  witnessed = await synthesize(STAGE, {
    ...SETTINGS,
    checkpointKey: "ed25519",
    witnesses: [`https://w1.example/ ${W1}`, `https://w2.example/ ${W2}`],
    witnessQuorum: 1,
    witnessIntervalSeconds: 30,
    witnessStreams: ["agents.*"],
  });
  plain = await synthesize(STAGE, SETTINGS);
});

const functionEnv = (s: Synth, stack: string, prefix: string): Record<string, unknown> => {
  const found = resourcesOf(s.json[stack]!, "AWS::Lambda::Function").filter(([id]) => id.startsWith(prefix));
  expect(found).toHaveLength(1);
  return ((found[0]![1].Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ??
    {}) as Record<string, unknown>;
};

/** The function's environment as Lambda would hold it: CloudFormation references replaced by plain values. */
const resolved = (env: Record<string, unknown>): Record<string, string> =>
  Object.fromEntries(
    Object.entries(env).map(([k, v]) => [
      k,
      typeof v === "string"
        ? v
        : k === "SIGNING_KEY_ID"
          ? "arn:aws:kms:eu-central-1:1:key/k"
          : `resolved-${k}`,
    ]),
  );

describe("checkpointKey: ed25519", () => {
  it("makes the signing key ECC_NIST_EDWARDS25519 (SIGN_VERIFY), and the default stays ECC_NIST_P256", () => {
    const [[, key]] = resourcesOf(witnessed.json.Signing!, "AWS::KMS::Key") as [
      [string, Record<string, unknown>],
    ];
    const [[, defaultKey]] = resourcesOf(plain.json.Signing!, "AWS::KMS::Key") as [
      [string, Record<string, unknown>],
    ];
    expect(key).toMatchObject({ KeySpec: "ECC_NIST_EDWARDS25519", KeyUsage: "SIGN_VERIFY" });
    expect(key.Description).toMatch(/Ed25519/);
    expect(defaultKey).toMatchObject({ KeySpec: "ECC_NIST_P256", KeyUsage: "SIGN_VERIFY" });
  });
});

describe("witnesses", () => {
  it("tells the sequencer, query and verifier functions, whose runtime settings read the witness policy back", () => {
    for (const [stack, prefix] of [
      ["Ingest", "SequencerFunction"],
      ["Audit", "QueryFunction"],
      ["Verify", "VerifierFunction"],
    ] as const) {
      const env = functionEnv(witnessed, stack, prefix);
      expect(env).toMatchObject({
        WITNESSES: `https://w1.example/ ${W1}\nhttps://w2.example/ ${W2}`,
        WITNESS_QUORUM: "1",
        WITNESS_INTERVAL_SECONDS: "30",
        WITNESS_STREAMS: "agents.*",
      });
      expect(runtimeSettings(resolved(env)).witnesses).toEqual({
        witnesses: [
          { url: "https://w1.example/", verifierKey: W1 },
          { url: "https://w2.example/", verifierKey: W2 },
        ],
        quorum: 1,
        intervalSeconds: 30,
        streams: ["agents.*"],
      });
    }
  });

  it("tells no ingest function, and no function at all without witnesses", () => {
    for (const prefix of ["IngestHttpFunction", "IngestQueueFunction"])
      expect(
        Object.keys(functionEnv(witnessed, "Ingest", prefix)).filter((k) => k.startsWith("WITNESS")),
      ).toEqual([]);
    for (const [stack, prefix] of [
      ["Ingest", "SequencerFunction"],
      ["Audit", "QueryFunction"],
      ["Verify", "VerifierFunction"],
    ] as const)
      expect(Object.keys(functionEnv(plain, stack, prefix)).filter((k) => k.startsWith("WITNESS"))).toEqual(
        [],
      );
  });

  it("grants no new permission: the sequencer stores cosigned notes within its streams/* create grant", () => {
    for (const stack of ["Ingest", "Audit", "Verify", "Signing", "Archive"]) {
      const policies = (s: Synth) => JSON.stringify(resourcesOf(s.json[stack]!, "AWS::IAM::Policy"));
      expect(policies(witnessed)).toBe(policies(plain));
    }
    const sequencerPolicy = JSON.stringify(resourcesOf(witnessed.json.Ingest!, "AWS::IAM::Policy"));
    expect(sequencerPolicy).toContain('"Sid":"CreateArchiveObjects"');
  });

  it("keeps cdk-nag clean", () => {
    expect(witnessed.findings.filter((f) => f.level === "error" || f.level === "warning")).toEqual([]);
  });
});
