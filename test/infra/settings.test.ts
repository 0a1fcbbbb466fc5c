/**
 * Stage settings and sst.config.ts: what an operator can configure, what is refused before anything is
 * deployed, and the pinned toolchain.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import config, { DEFAULT_REGION, DEFAULT_STAGE } from "../../sst.config.ts";
import { resolveSettings, settingsFromEnv } from "../../stacks/settings.ts";
import { ROOT, resourcesOf, synthesize, synthesizeConfig } from "./synth.ts";

describe("resolveSettings", () => {
  it("defaults to the 180-day floor, a 5-minute verifier, no email, no extra accounts and a 14-day dedup window", () => {
    expect(resolveSettings({})).toEqual({
      retentionDays: 180,
      producerAccounts: [],
      auditorAccounts: [],
      verifierIntervalMinutes: 5,
      logRetentionDays: 365,
      apiRateLimit: 1000,
      apiBurstLimit: 2000,
      dedupWindowDays: 14,
      trustedKeyFingerprints: [],
      checkpointKey: "ecdsa-p256",
      witnesses: [],
      witnessIntervalSeconds: 10,
      witnessStreams: [],
    });
  });

  it("refuses a pinned key fingerprint that is not 64 hex digits, naming the setting", () => {
    expect(() => resolveSettings({ trustedKeyFingerprints: ["abc"] })).toThrow(
      /trustedKeyFingerprints holds "abc", which is not a SHA-256 fingerprint/,
    );
  });

  it.each([179, 90, 0, -1])(
    "refuses a retention of %i days with a message naming the floor and the setting",
    (days) => {
      expect(() => resolveSettings({ retentionDays: days })).toThrow(
        new RegExp(
          `retentionDays is ${days}, below the 180-day floor.*AUDITSINK_RETENTION_DAYS to 180 or more`,
        ),
      );
    },
  );

  it("accepts 180 days and more, up to S3's 100-year maximum", () => {
    expect(resolveSettings({ retentionDays: 180 }).retentionDays).toBe(180);
    expect(resolveSettings({ retentionDays: 36_500 }).retentionDays).toBe(36_500);
    expect(() => resolveSettings({ retentionDays: 36_501 })).toThrow(/100-year/);
    expect(() => resolveSettings({ retentionDays: 200.5 })).toThrow(/whole number/);
  });

  it("refuses what cannot be deployed, naming the setting", () => {
    expect(() => resolveSettings({ alertEmail: "secops" })).toThrow(
      /alertEmail "secops" is not an email address/,
    );
    expect(() => resolveSettings({ producerAccounts: ["12345"] })).toThrow(/producerAccounts holds "12345"/);
    expect(() => resolveSettings({ auditorAccounts: ["abcdefghijkl"] })).toThrow(/auditorAccounts/);
    expect(() => resolveSettings({ verifierIntervalMinutes: 0 })).toThrow(/verifierIntervalMinutes/);
    expect(() => resolveSettings({ verifierIntervalMinutes: 61 })).toThrow(/verifierIntervalMinutes/);
    expect(() => resolveSettings({ logRetentionDays: 100 })).toThrow(/logRetentionDays is 100/);
    expect(() => resolveSettings({ apiRateLimit: 0 })).toThrow(/apiRateLimit/);
  });

  it("sorts and deduplicates account lists", () => {
    expect(
      resolveSettings({ producerAccounts: ["222222222222", "111111111111", "222222222222"] })
        .producerAccounts,
    ).toEqual(["111111111111", "222222222222"]);
  });
});

describe("dedupWindowDays", () => {
  it.each([0, 367, 1.5])("refuses %s days, naming the setting", (days) => {
    expect(() => resolveSettings({ dedupWindowDays: days })).toThrow(/dedupWindowDays/);
  });
});

/** Two witnesses' c2sp.org/tlog-cosignature verifier keys. */
const W1 = "witness.example/w1+8c2b6f5a+BPi5KgPJH6VJRrG5Lq6qT3pBXkgb4dkA7Xb9Oi5vUpnE";
const W2 = "witness.example/w2+d40e9a17+BKMxhc8GxlxSU5KzT2zRkR6ENl3vWo8bVHj1FnOJmAaQ";

describe("checkpoint key and witnesses", () => {
  it("refuses witnesses with an ECDSA P-256 checkpoint key, naming the setting to change", () => {
    expect(() => resolveSettings({ witnesses: [`https://w1.example/ ${W1}`] })).toThrow(
      /witnesses need an Ed25519 checkpoint key.*AUDITSINK_CHECKPOINT_KEY=ed25519/,
    );
  });

  it("refuses an unknown key algorithm, a malformed witness, and a quorum beyond the witnesses", () => {
    expect(() => resolveSettings({ checkpointKey: "rsa" as never })).toThrow(/checkpointKey must be/);
    expect(() => resolveSettings({ checkpointKey: "ed25519", witnesses: [W1] })).toThrow(
      /witnesses holds .* not "<http\(s\) URL> <verifier key>"/,
    );
    expect(() =>
      resolveSettings({ checkpointKey: "ed25519", witnesses: ["https://w1.example/ not-a-key"] }),
    ).toThrow(/witnesses holds/);
    expect(() =>
      resolveSettings({
        checkpointKey: "ed25519",
        witnesses: [`https://w1.example/ ${W1}`],
        witnessQuorum: 2,
      }),
    ).toThrow(/witnessQuorum must be a whole number from 1 to the number of witnesses \(1\)/);
    expect(() => resolveSettings({ witnessMaxLagSeconds: 0 })).toThrow(/witnessMaxLagSeconds/);
  });
});

describe("settingsFromEnv", () => {
  it("reads every AUDITSINK_* variable", () => {
    expect(
      settingsFromEnv({
        AUDITSINK_RETENTION_DAYS: "400",
        AUDITSINK_ALERT_EMAIL: "secops@example.com",
        AUDITSINK_PRODUCER_ACCOUNTS: " 111122223333, 444455556666 ,",
        AUDITSINK_AUDITOR_ACCOUNTS: "777788889999",
        AUDITSINK_VERIFIER_INTERVAL_MINUTES: "10",
        AUDITSINK_LOG_RETENTION_DAYS: "731",
        AUDITSINK_API_RATE_LIMIT: "50",
        AUDITSINK_API_BURST_LIMIT: "100",
        AUDITSINK_DEDUP_WINDOW_DAYS: "30",
        AUDITSINK_TRUSTED_KEY_FINGERPRINTS: `${"B".repeat(64)}, ${"a".repeat(64)}`,
        AUDITSINK_CHECKPOINT_KEY: "ed25519",
        AUDITSINK_WITNESSES: `https://w1.example/ ${W1}\n# a comment\nhttps://w2.example/ ${W2}`,
        AUDITSINK_WITNESS_QUORUM: "1",
        AUDITSINK_WITNESS_INTERVAL: "60",
        AUDITSINK_WITNESS_MAX_LAG: "900",
        AUDITSINK_WITNESS_STREAMS: "agents.*, billing",
      }),
    ).toEqual({
      retentionDays: 400,
      alertEmail: "secops@example.com",
      producerAccounts: ["111122223333", "444455556666"],
      auditorAccounts: ["777788889999"],
      verifierIntervalMinutes: 10,
      logRetentionDays: 731,
      apiRateLimit: 50,
      apiBurstLimit: 100,
      dedupWindowDays: 30,
      trustedKeyFingerprints: ["a".repeat(64), "b".repeat(64)],
      checkpointKey: "ed25519",
      witnesses: [`https://w1.example/ ${W1}`, `https://w2.example/ ${W2}`],
      witnessQuorum: 1,
      witnessIntervalSeconds: 60,
      witnessMaxLagSeconds: 900,
      witnessStreams: ["agents.*", "billing"],
    });
  });

  it("treats empty variables as unset", () => {
    expect(settingsFromEnv({ AUDITSINK_ALERT_EMAIL: "", AUDITSINK_PRODUCER_ACCOUNTS: " " })).toEqual(
      resolveSettings({}),
    );
  });

  it("refuses a retention under 180 days and text where a number belongs", () => {
    expect(() => settingsFromEnv({ AUDITSINK_RETENTION_DAYS: "179" })).toThrow(
      /Invalid stage settings: retentionDays is 179, below the 180-day floor/,
    );
    expect(() => settingsFromEnv({ AUDITSINK_RETENTION_DAYS: "six months" })).toThrow(
      /AUDITSINK_RETENTION_DAYS must be a whole number, got "six months"/,
    );
  });
});

describe("sst.config.ts", () => {
  it("pins the app name, the default region and the default stage", async () => {
    expect(DEFAULT_REGION).toBe("eu-central-1");
    expect(DEFAULT_STAGE).toBe("dev");
    expect(await config.config({})).toEqual({ name: "auditsink", region: "eu-central-1", stage: "dev" });
    expect(await config.config({ stage: "prod", region: "us-east-1" })).toMatchObject({
      stage: "prod",
      region: "us-east-1",
    });
  });

  it("builds the stacks from the stage's AUDITSINK_* variables", async () => {
    const synth = await synthesizeConfig("ci-env", {
      AUDITSINK_RETENTION_DAYS: "365",
      AUDITSINK_ALERT_EMAIL: "audit-alerts@example.com",
    });
    const [[, bucket]] = resourcesOf(synth.json.Archive!, "AWS::S3::Bucket").filter(
      ([, p]) => p.ObjectLockEnabled === true,
    ) as [[string, Record<string, unknown>]];
    expect(bucket.ObjectLockConfiguration).toMatchObject({
      Rule: { DefaultRetention: { Mode: "COMPLIANCE", Days: 365 } },
    });
    expect(resourcesOf(synth.json.Verify!, "AWS::SNS::Subscription")[0]![1].Endpoint).toBe(
      "audit-alerts@example.com",
    );
  });

  it("refuses at synth time, before any stack exists, a retention under 180 days", async () => {
    await expect(synthesizeConfig("ci-env", { AUDITSINK_RETENTION_DAYS: "179" })).rejects.toThrow(
      /retentionDays is 179, below the 180-day floor/,
    );
    await expect(synthesize("ci-floor", { retentionDays: 179 })).rejects.toThrow(/below the 180-day floor/);
  });

  it("refuses a stage name that would not fit IAM's role names", async () => {
    await expect(synthesize("a-very-long-stage-name-for-testing", {})).rejects.toThrow(
      /Stage name "a-very-long-stage-name-for-testing" is too long/,
    );
  });
});

describe("toolchain", () => {
  const installed = (name: string) =>
    JSON.parse(readFileSync(path.join(ROOT, "node_modules", name, "package.json"), "utf8")) as {
      version: string;
      dependencies: Record<string, string>;
    };

  it("runs sst 2.49.x with exactly the aws-cdk-lib and constructs versions it requires", () => {
    const sst = installed("sst");
    expect(sst.version).toMatch(/^2\.49\.\d+$/);
    expect(installed("aws-cdk-lib").version).toBe(sst.dependencies["aws-cdk-lib"]);
    expect(installed("constructs").version).toBe(sst.dependencies.constructs);
  });

  it("locks those exact versions in package-lock.json", () => {
    const lock = JSON.parse(readFileSync(path.join(ROOT, "package-lock.json"), "utf8")) as {
      packages: Record<string, { version: string }>;
    };
    const sst = installed("sst");
    expect(lock.packages["node_modules/sst"]?.version).toBe(sst.version);
    expect(lock.packages["node_modules/aws-cdk-lib"]?.version).toBe(sst.dependencies["aws-cdk-lib"]);
    expect(lock.packages["node_modules/constructs"]?.version).toBe(sst.dependencies.constructs);
  });
});
