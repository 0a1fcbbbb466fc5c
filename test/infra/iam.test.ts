/**
 * One least-privilege role per function, asserted by action: what each may do (exactly), and the explicit
 * denies that keep the enforcement point from altering the archive, the ledger or the signing key (DESIGN.md
 * invariant 6) whatever else is attached to a role later.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ROLE, SETTINGS, STAGE } from "./fixtures.ts";
import {
  allowedActions,
  denyStatementsFor,
  flatText,
  list,
  roleStatements,
  type Statement,
} from "./policy.ts";
import { type Synth, synthesize } from "./synth.ts";

/** Statements about the ledger table, not the event index (test/infra/event-index.test.ts covers that one). */
const onLedger = (s: Statement) => !/EventIndex[0-9A-F]{8}/.test(JSON.stringify(s.Resource));

let synth: Synth;
beforeAll(async () => {
  synth = await synthesize(STAGE, SETTINGS);
});

const LOGS_AND_TRACES = [
  "logs:CreateLogStream",
  "logs:PutLogEvents",
  "xray:PutTelemetryRecords",
  "xray:PutTraceSegments",
];
const WRITER = [
  "s3:PutObject",
  "s3:PutObjectRetention",
  "s3:GetObject",
  "s3:ListBucket",
  "s3:ListBucketVersions",
  "dynamodb:GetItem",
  "dynamodb:BatchGetItem",
  "dynamodb:Query",
  "dynamodb:PutItem",
  "dynamodb:UpdateItem",
  "dynamodb:ConditionCheckItem",
  "kms:Sign",
  "kms:GetPublicKey",
  ...LOGS_AND_TRACES,
];
/**
 * Ingest validates, authenticates (producer keys in the ledger) and hands off: it reads, puts pending items and
 * wakes the sequencer, no more.
 */
const INGEST = [
  "dynamodb:GetItem",
  "dynamodb:BatchGetItem",
  "dynamodb:Query",
  "dynamodb:PutItem",
  "kms:GetPublicKey",
  "lambda:InvokeFunction",
  ...LOGS_AND_TRACES,
];
/** Runtime alerts (core's head-mismatch, store-mismatch; the HTTP app's integrity errors): default bus, metric. */
const ALERTS = ["events:PutEvents", "cloudwatch:PutMetricData"];
const SQS_CONSUMER = [
  "sqs:ReceiveMessage",
  "sqs:ChangeMessageVisibility",
  "sqs:GetQueueUrl",
  "sqs:DeleteMessage",
  "sqs:GetQueueAttributes",
];
const LEDGER_READS = [
  "dynamodb:GetItem",
  "dynamodb:BatchGetItem",
  "dynamodb:Query",
  "dynamodb:Scan",
  "dynamodb:DescribeTable",
];

const EXPECTED_ALLOWS: Record<keyof typeof ROLE, string[]> = {
  ingestHttp: [...INGEST, ...ALERTS],
  ingestQueue: [...INGEST, ...SQS_CONSUMER],
  sequencer: [...WRITER, "dynamodb:BatchWriteItem", "sqs:SendMessage", "lambda:InvokeFunction", ...ALERTS],
  producerAdmin: [...WRITER.filter((a) => a !== "s3:ListBucketVersions"), "dynamodb:DeleteItem", ...ALERTS],
  query: [
    "s3:GetObject",
    "s3:ListBucket",
    ...LEDGER_READS,
    "kms:GetPublicKey",
    "kms:DescribeKey",
    ...ALERTS,
    ...LOGS_AND_TRACES,
  ],
  verifier: [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketObjectLockConfiguration",
    ...LEDGER_READS,
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "kms:DescribeKey",
    "kms:GetPublicKey",
    "cloudwatch:PutMetricData",
    "events:PutEvents",
    "sns:Publish",
    "kms:Decrypt",
    "kms:GenerateDataKey*",
    ...LOGS_AND_TRACES,
  ],
  auditor: [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:GetBucketObjectLockConfiguration",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    ...LEDGER_READS,
    "kms:GetPublicKey",
    "kms:Verify",
  ],
};

const FUNCTION_ROLES = [
  "ingestHttp",
  "ingestQueue",
  "sequencer",
  "producerAdmin",
  "query",
  "verifier",
] as const;
const INGEST_ROLES = ["ingestHttp", "ingestQueue"] as const;
const WRITER_ROLES = ["sequencer", "producerAdmin"] as const;
const READER_ROLES = ["query", "verifier"] as const;

/** A deny that applies to the archive (both the bucket and its objects) without any condition. */
const deniesOnArchive = (statements: Statement[], action: string) =>
  denyStatementsFor(statements, action).filter(
    (s) =>
      s.Condition === undefined &&
      list(s.Resource).some(
        (r) => /Archive[0-9A-F]{8}/.test(JSON.stringify(r)) && !flatText(r).endsWith("/*"),
      ) &&
      list(s.Resource).some((r) => flatText(r).endsWith("/*")),
  );

describe.each(Object.keys(ROLE) as (keyof typeof ROLE)[])("%s role", (role) => {
  it("is allowed exactly the actions its work needs", () => {
    expect(allowedActions(roleStatements(synth, ROLE[role]))).toEqual(
      [...new Set(EXPECTED_ALLOWS[role])].sort(),
    );
  });

  it("has no allow on every resource except for X-Ray traces and the verifier's own metric namespace", () => {
    const starAllows = roleStatements(synth, ROLE[role]).filter(
      (s) => s.Effect === "Allow" && JSON.stringify(s.Resource) === '"*"',
    );
    for (const s of starAllows) {
      const actions = list(s.Action);
      const onlyTracing = actions.every((a) => a.startsWith("xray:"));
      const metricInNamespace =
        actions.join() === "cloudwatch:PutMetricData" &&
        JSON.stringify(s.Condition) ===
          JSON.stringify({ StringEquals: { "cloudwatch:namespace": "auditsink" } });
      expect(onlyTracing || metricInNamespace, JSON.stringify(s)).toBe(true);
    }
  });
});

describe.each(FUNCTION_ROLES)("%s role's explicit denies", (role) => {
  const statements = () => roleStatements(synth, ROLE[role]);

  it.each([
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:BypassGovernanceRetention",
    "s3:PutObjectLegalHold",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:DeleteBucket",
  ])("deny %s on the archive", (action) => {
    expect(deniesOnArchive(statements(), action)).toHaveLength(1);
  });

  it.each(["kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy", "kms:CreateGrant"])(
    "deny %s on the signing key",
    (action) => {
      const denies = denyStatementsFor(statements(), action).filter((s) =>
        /SigningKey/.test(JSON.stringify(s.Resource)),
      );
      expect(denies).toHaveLength(1);
    },
  );

  it.each([
    "dynamodb:DeleteTable",
    "dynamodb:UpdateTable",
    "dynamodb:UpdateContinuousBackups",
    "dynamodb:DeleteItem",
  ])("deny %s on the ledger", (action) => {
    const denies = denyStatementsFor(statements(), action).filter((s) =>
      /Ledger[0-9A-F]{8}/.test(JSON.stringify(s.Resource)),
    );
    expect(denies).toHaveLength(1);
  });
});

describe.each(WRITER_ROLES)("%s role (writer and signer)", (role) => {
  const statements = () => roleStatements(synth, ROLE[role]);

  it("may not put an object without If-None-Match", () => {
    const denies = denyStatementsFor(statements(), "s3:PutObject").filter((s) => s.Condition !== undefined);
    expect(denies).toHaveLength(1);
    expect(denies[0]!.Condition).toEqual({ Null: { "s3:if-none-match": "true" } });
  });

  it("may not set a retention shorter than the stage's, longer than it plus two days, or other than COMPLIANCE", () => {
    const conditions = denyStatementsFor(statements(), "s3:PutObjectRetention").map((s) => s.Condition);
    expect(conditions).toContainEqual({
      NumericLessThan: { "s3:object-lock-remaining-retention-days": "399" },
    });
    expect(conditions).toContainEqual({
      NumericGreaterThan: { "s3:object-lock-remaining-retention-days": "402" },
    });
    expect(conditions).toContainEqual({ StringNotEquals: { "s3:object-lock-mode": "COMPLIANCE" } });
  });

  it("signs only with the signing key", () => {
    const signs = statements().filter((s) => s.Effect === "Allow" && list(s.Action).includes("kms:Sign"));
    expect(signs).toHaveLength(1);
    expect(JSON.stringify(signs[0]!.Resource)).toMatch(/SigningKey/);
  });

  it("writes ledger items only in its own partitions (dynamodb:LeadingKeys), in a batch only receipts and pending items", () => {
    const writes = statements().filter(
      (s) =>
        s.Effect === "Allow" &&
        onLedger(s) &&
        list(s.Action).some((a) => a.startsWith("dynamodb:") && !/Get|Query/.test(a)),
    );
    const single = writes.filter(
      (s) =>
        !list(s.Action).includes("dynamodb:BatchWriteItem") &&
        !list(s.Action).includes("dynamodb:DeleteItem"),
    );
    expect(single).toHaveLength(1);
    expect(list(single[0]!.Action).sort()).toEqual([
      "dynamodb:ConditionCheckItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
    ]);
    expect(single[0]!.Condition).toEqual({
      "ForAllValues:StringLike": {
        "dynamodb:LeadingKeys":
          role === "producerAdmin"
            ? ["producer#*", "key#*", "ack#*", "stream#_system", "event#*"]
            : ["stream#*", "event#*", "lease#*"],
      },
    });
    const batches = writes.filter((s) => list(s.Action).includes("dynamodb:BatchWriteItem"));
    if (role === "producerAdmin") {
      expect(batches).toEqual([]);
    } else {
      expect(batches).toHaveLength(1);
      expect(list(batches[0]!.Action)).toEqual(["dynamodb:BatchWriteItem"]);
      expect(batches[0]!.Condition).toEqual({
        "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["receipt#*", "pending#*"] },
      });
    }
  });
});

describe.each(INGEST_ROLES)("%s role (internet-facing: validates, authenticates, hands off)", (role) => {
  const statements = () => roleStatements(synth, ROLE[role]);

  it.each(["s3:PutObject", "s3:PutObjectRetention"])("is denied %s on the archive outright", (action) => {
    expect(allowedActions(statements())).not.toContain(action);
    const denies = denyStatementsFor(statements(), action).filter((s) => s.Condition === undefined);
    expect(denies).toHaveLength(1);
  });

  it("is denied kms:Sign", () => {
    expect(allowedActions(statements())).not.toContain("kms:Sign");
    expect(denyStatementsFor(statements(), "kms:Sign")).toHaveLength(1);
  });

  it.each([
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
  ])("is denied %s on every ledger item but its pending items", (action) => {
    const denies = denyStatementsFor(statements(), action).filter(onLedger);
    expect(denies).toHaveLength(1);
    expect(denies[0]!.Condition).toEqual({
      "ForAnyValue:StringNotLike": { "dynamodb:LeadingKeys": ["pending#*"] },
    });
    expect(JSON.stringify(denies[0]!.Resource)).toMatch(/Ledger[0-9A-F]{8}/);
  });

  it("sends to no queue, and wakes only the sequencer", () => {
    const sends = statements().filter(
      (s) => s.Effect === "Allow" && list(s.Action).includes("sqs:SendMessage"),
    );
    expect(sends).toEqual([]);
    const invokes = statements().filter(
      (s) => s.Effect === "Allow" && list(s.Action).includes("lambda:InvokeFunction"),
    );
    expect(invokes).toHaveLength(1);
    expect(list(invokes[0]!.Resource).map(flatText)).toEqual([
      expect.stringMatching(/:function:auditsink-ci-sequencer$/),
    ]);
  });
});

describe("sequencer role", () => {
  const statements = () => roleStatements(synth, ROLE.sequencer);

  it("creates objects only under streams/ (the _system stream's included)", () => {
    const puts = statements().filter((s) => s.Effect === "Allow" && list(s.Action).includes("s3:PutObject"));
    expect(puts).toHaveLength(1);
    expect(list(puts[0]!.Action).sort()).toEqual(["s3:PutObject", "s3:PutObjectRetention"]);
    expect(list(puts[0]!.Resource).map(flatText)).toEqual([
      expect.stringMatching(/Archive[0-9A-F]{8}Arn[0-9A-F]*\/streams\/\*$/),
    ]);
  });

  it("is denied writing the public key documents", () => {
    const denies = denyStatementsFor(statements(), "s3:PutObject").filter((s) => s.Condition === undefined);
    expect(denies).toHaveLength(1);
    expect(list(denies[0]!.Action).sort()).toEqual(["s3:PutObject", "s3:PutObjectRetention"]);
    expect(list(denies[0]!.Resource).map(flatText)).toEqual([expect.stringMatching(/\/keys\/\*$/)]);
  });

  it.each([
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
  ])(
    "is denied %s on producers, keys, acknowledgement confirmations, watermarks, findings and verifier items",
    (action) => {
      const denies = denyStatementsFor(statements(), action).filter((s) =>
        JSON.stringify(s.Condition ?? {}).includes("LeadingKeys"),
      );
      expect(denies).toHaveLength(1);
      expect(denies[0]!.Condition).toEqual({
        "ForAnyValue:StringLike": {
          "dynamodb:LeadingKeys": ["producer#*", "key#*", "ack#*", "watermark#*", "finding#*", "verifier"],
        },
      });
    },
  );

  it("dead-letters only to its own dead-letter queue", () => {
    const sends = statements().filter(
      (s) => s.Effect === "Allow" && list(s.Action).includes("sqs:SendMessage"),
    );
    expect(sends).toHaveLength(1);
    expect(JSON.stringify(sends[0]!.Resource)).toMatch(/SequencerDeadLetters[0-9A-F]{8}/);
  });
});

describe("producerAdmin role", () => {
  const statements = () => roleStatements(synth, ROLE.producerAdmin);

  it("deletes ledger items only of producers and keys (the undo of a registration its _system event missed)", () => {
    const deletes = statements().filter(
      (s) => s.Effect === "Allow" && list(s.Action).includes("dynamodb:DeleteItem"),
    );
    expect(deletes).toHaveLength(1);
    expect(list(deletes[0]!.Action)).toEqual(["dynamodb:DeleteItem"]);
    expect(deletes[0]!.Condition).toEqual({
      "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["producer#*", "key#*"] },
    });
    const denies = denyStatementsFor(statements(), "dynamodb:DeleteItem").filter(onLedger);
    expect(denies).toHaveLength(1);
    expect(denies[0]!.Condition).toEqual({
      "ForAnyValue:StringNotLike": { "dynamodb:LeadingKeys": ["producer#*", "key#*"] },
    });
  });

  it("creates objects only under keys/ and streams/_system/", () => {
    const puts = statements().filter((s) => s.Effect === "Allow" && list(s.Action).includes("s3:PutObject"));
    expect(puts).toHaveLength(1);
    expect(list(puts[0]!.Resource).map(flatText)).toEqual([
      expect.stringMatching(/Archive[0-9A-F]{8}Arn[0-9A-F]*\/keys\/\*$/),
      expect.stringMatching(/Archive[0-9A-F]{8}Arn[0-9A-F]*\/streams\/_system\/\*$/),
    ]);
  });
});

describe.each(READER_ROLES)("%s role (reader)", (role) => {
  const statements = () => roleStatements(synth, ROLE[role]);

  it.each(["s3:PutObject", "s3:PutObjectRetention"])("is denied %s on the archive outright", (action) => {
    const denies = denyStatementsFor(statements(), action).filter((s) => s.Condition === undefined);
    expect(denies).toHaveLength(1);
  });

  it("is denied kms:Sign", () => {
    expect(denyStatementsFor(statements(), "kms:Sign")).toHaveLength(1);
  });
});

describe.each(["ingestHttp", "sequencer", "producerAdmin", "query"] as const)(
  "%s role (sends runtime alerts)",
  (role) => {
    const statements = () => roleStatements(synth, ROLE[role]);

    it("puts alert events on this account's default bus only", () => {
      const puts = statements().filter(
        (s) => s.Effect === "Allow" && list(s.Action).includes("events:PutEvents"),
      );
      expect(puts).toHaveLength(1);
      expect(list(puts[0]!.Action)).toEqual(["events:PutEvents"]);
      expect(flatText(puts[0]!.Resource)).toMatch(/:events:eu-central-1:123456789012:event-bus\/default$/);
    });

    it("puts metrics only in the auditsink namespace", () => {
      const puts = statements().filter(
        (s) => s.Effect === "Allow" && list(s.Action).includes("cloudwatch:PutMetricData"),
      );
      expect(puts).toHaveLength(1);
      expect(puts[0]!.Condition).toEqual({ StringEquals: { "cloudwatch:namespace": "auditsink" } });
    });
  },
);

describe("query role", () => {
  it.each(["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"])(
    "is denied %s on the ledger",
    (action) => {
      expect(denyStatementsFor(roleStatements(synth, ROLE.query), action).filter(onLedger)).toHaveLength(1);
    },
  );
});

describe("verifier role", () => {
  it("writes only its watermark, finding and cursor items of the ledger", () => {
    const writes = roleStatements(synth, ROLE.verifier).filter(
      (s) => s.Effect === "Allow" && list(s.Action).includes("dynamodb:PutItem"),
    );
    expect(writes).toHaveLength(1);
    expect(list(writes[0]!.Action).sort()).toEqual(["dynamodb:PutItem", "dynamodb:UpdateItem"]);
    expect(writes[0]!.Condition).toEqual({
      "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["watermark#*", "finding#*", "verifier"] },
    });
  });

  it("reads and deletes messages of the archive-changes queue only", () => {
    const sqs = roleStatements(synth, ROLE.verifier).filter(
      (s) => s.Effect === "Allow" && list(s.Action).some((a) => a.startsWith("sqs:")),
    );
    expect(sqs).toHaveLength(1);
    expect(JSON.stringify(sqs[0]!.Resource)).toMatch(/ArchiveChanges[0-9A-F]{8}/);
    expect(JSON.stringify(sqs[0]!.Resource)).not.toMatch(/DeadLetters/);
  });

  it("publishes alert events to the default bus only", () => {
    const puts = roleStatements(synth, ROLE.verifier).filter(
      (s) => s.Effect === "Allow" && list(s.Action).includes("events:PutEvents"),
    );
    expect(puts).toHaveLength(1);
    expect(flatText(puts[0]!.Resource)).toMatch(/:events:eu-central-1:123456789012:event-bus\/default$/);
  });
});
