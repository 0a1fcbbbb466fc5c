/**
 * The stateful stacks: the write-once archive (S3 Object Lock), the ledger table and the signing key.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { APP_ROLES_PATTERN, ROLE, roleArnText, SETTINGS, STAGE } from "./fixtures.ts";
import { flatText, list, type Statement } from "./policy.ts";
import { resourcesOf, type Synth, synthesize, type TemplateJson } from "./synth.ts";

let synth: Synth;
beforeAll(async () => {
  synth = await synthesize(STAGE, SETTINGS);
});

const only = (template: TemplateJson, type: string) => {
  const found = resourcesOf(template, type);
  expect(found, type).toHaveLength(1);
  return found[0]!;
};

describe("Archive stack", () => {
  const archiveBucket = () => {
    const buckets = resourcesOf(synth.json.Archive!, "AWS::S3::Bucket").filter(
      ([, p]) => p.ObjectLockEnabled === true,
    );
    expect(buckets).toHaveLength(1);
    return buckets[0]!;
  };
  const bucketPolicy = (): Statement[] => {
    const [id] = archiveBucket();
    const policies = resourcesOf(synth.json.Archive!, "AWS::S3::BucketPolicy").filter(
      ([, p]) => JSON.stringify(p.Bucket) === JSON.stringify({ Ref: id }),
    );
    expect(policies).toHaveLength(1);
    return (policies[0]![1].PolicyDocument as { Statement: Statement[] }).Statement;
  };

  it("enables Object Lock with default COMPLIANCE retention of the configured days, on a versioned bucket", () => {
    const [, bucket] = archiveBucket();
    expect(bucket.ObjectLockConfiguration).toEqual({
      ObjectLockEnabled: "Enabled",
      Rule: { DefaultRetention: { Mode: "COMPLIANCE", Days: 400 } },
    });
    expect(bucket.VersioningConfiguration).toEqual({ Status: "Enabled" });
  });

  it("sends its object events to EventBridge natively (no custom-resource Lambda)", () => {
    const [, bucket] = archiveBucket();
    expect(bucket.NotificationConfiguration).toEqual({
      EventBridgeConfiguration: { EventBridgeEnabled: true },
    });
    const notificationHandlers = resourcesOf(synth.json.Archive!, "AWS::Lambda::Function").filter(([id]) =>
      id.startsWith("BucketNotificationsHandler"),
    );
    expect(notificationHandlers).toEqual([]);
  });

  it("blocks all public access, disables ACLs and encrypts at rest", () => {
    const [, bucket] = archiveBucket();
    expect(bucket.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(bucket.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }] });
    expect(bucket.BucketEncryption).toEqual({
      ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }],
    });
  });

  it("has no lifecycle rule that could expire or delete any version", () => {
    const [, bucket] = archiveBucket();
    const rules =
      (bucket.LifecycleConfiguration as { Rules?: Record<string, unknown>[] } | undefined)?.Rules ?? [];
    const deleting = rules.filter((rule) =>
      [
        "ExpirationInDays",
        "ExpirationDate",
        "ExpiredObjectDeleteMarker",
        "NoncurrentVersionExpiration",
        "NoncurrentVersionExpirationInDays",
      ].some((key) => key in rule),
    );
    expect(deleting).toEqual([]);
  });

  it("is retained when the stack is deleted or the bucket replaced", () => {
    const [id] = archiveBucket();
    const resource = synth.json.Archive!.Resources[id]!;
    expect(resource.DeletionPolicy).toBe("Retain");
    expect(resource.UpdateReplacePolicy).toBe("Retain");
  });

  it("keeps both bucket policies when the stack is deleted", () => {
    const policies = resourcesOf(synth.json.Archive!, "AWS::S3::BucketPolicy");
    expect(policies).toHaveLength(2);
    for (const [id] of policies) expect(synth.json.Archive!.Resources[id]!.DeletionPolicy, id).toBe("Retain");
  });

  it("logs server access to a separate, retained, private bucket", () => {
    const [, bucket] = archiveBucket();
    const logging = bucket.LoggingConfiguration as { DestinationBucketName: { Ref: string } };
    const target = synth.json.Archive!.Resources[logging.DestinationBucketName.Ref]!;
    expect(target.Type).toBe("AWS::S3::Bucket");
    expect(target.DeletionPolicy).toBe("Retain");
    expect(target.Properties?.PublicAccessBlockConfiguration).toMatchObject({ BlockPublicPolicy: true });
  });

  it("refuses any request without TLS, and TLS older than 1.2", () => {
    const statements = bucketPolicy();
    expect(statements).toContainEqual(
      expect.objectContaining({
        Effect: "Deny",
        Action: "s3:*",
        Principal: { AWS: "*" },
        Condition: { Bool: { "aws:SecureTransport": "false" } },
      }),
    );
    expect(statements).toContainEqual(
      expect.objectContaining({ Effect: "Deny", Condition: { NumericLessThan: { "s3:TlsVersion": 1.2 } } }),
    );
  });

  describe("bucket policy: explicit denies for every role of the app", () => {
    const appRoleDenies = () =>
      bucketPolicy().filter(
        (s) =>
          s.Effect === "Deny" &&
          JSON.stringify(s.Principal) === JSON.stringify({ AWS: "*" }) &&
          flatText(s.Condition?.ArnLike?.["aws:PrincipalArn"]) === APP_ROLES_PATTERN,
      );
    const denied = (action: string) => appRoleDenies().filter((s) => list(s.Action).includes(action));

    it.each([
      ["delete objects or add delete markers", "s3:DeleteObject"],
      ["delete object versions", "s3:DeleteObjectVersion"],
      ["bypass governance retention", "s3:BypassGovernanceRetention"],
      ["set or lift a legal hold", "s3:PutObjectLegalHold"],
      ["change the bucket's Object Lock configuration", "s3:PutBucketObjectLockConfiguration"],
      ["change the bucket policy", "s3:PutBucketPolicy"],
      ["delete the bucket policy", "s3:DeleteBucketPolicy"],
      ["suspend versioning", "s3:PutBucketVersioning"],
      ["add lifecycle rules", "s3:PutLifecycleConfiguration"],
      ["change encryption", "s3:PutEncryptionConfiguration"],
      ["open public access", "s3:PutBucketPublicAccessBlock"],
      ["delete the bucket", "s3:DeleteBucket"],
    ])("no app role may %s (%s), unconditionally", (_, action) => {
      const statements = denied(action).filter((s) => Object.keys(s.Condition ?? {}).join() === "ArnLike");
      expect(statements).toHaveLength(1);
      expect(flatText(statements[0]!.Resource)).toContain("/*");
    });

    it("no app role may set a retention shorter than the configured days (one day of slack for rounding)", () => {
      const statements = denied("s3:PutObjectRetention").filter((s) => s.Condition?.NumericLessThan);
      expect(statements).toHaveLength(1);
      expect(statements[0]!.Condition!.NumericLessThan).toEqual({
        "s3:object-lock-remaining-retention-days": "399",
      });
    });

    it("no app role may set a retention longer than the configured days plus a two-day margin", () => {
      const statements = denied("s3:PutObjectRetention").filter((s) => s.Condition?.NumericGreaterThan);
      expect(statements).toHaveLength(1);
      expect(statements[0]!.Condition!.NumericGreaterThan).toEqual({
        "s3:object-lock-remaining-retention-days": "402",
      });
    });

    it("no app role may set a retention mode other than COMPLIANCE", () => {
      const statements = denied("s3:PutObjectRetention").filter((s) => s.Condition?.StringNotEquals);
      expect(statements).toHaveLength(1);
      expect(statements[0]!.Condition!.StringNotEquals).toEqual({ "s3:object-lock-mode": "COMPLIANCE" });
    });

    it("no app role may put an object without If-None-Match (writes are create-only)", () => {
      const statements = denied("s3:PutObject");
      expect(statements).toHaveLength(1);
      expect(statements[0]!.Condition!.Null).toEqual({ "s3:if-none-match": "true" });
    });

    it("no statement of the bucket policy allows anything", () => {
      const allows = bucketPolicy().filter((s) => s.Effect === "Allow");
      expect(allows).toEqual([]);
    });
  });
});

describe("Ledger stack", () => {
  /** The ledger table (the stack's other table, the event index, is test/infra/event-index.test.ts's). */
  const ledger = (): [string, Record<string, unknown>] => {
    const tables = resourcesOf(synth.json.Ledger!, "AWS::DynamoDB::Table").filter(([id]) =>
      /^Ledger[0-9A-F]{8}$/.test(id),
    );
    expect(tables).toHaveLength(1);
    return tables[0]!;
  };

  it("holds two tables: the ledger and the event index", () => {
    expect(
      resourcesOf(synth.json.Ledger!, "AWS::DynamoDB::Table")
        .map(([id]) => id.replace(/[0-9A-F]{8}$/, ""))
        .sort(),
    ).toEqual(["EventIndex", "Ledger"]);
  });

  it("is one on-demand table with pk/sk, the gsi1 index (projection ALL) and TTL on expiresAt", () => {
    const [, table] = ledger();
    expect(table.BillingMode).toBe("PAY_PER_REQUEST");
    expect(table.KeySchema).toEqual([
      { AttributeName: "pk", KeyType: "HASH" },
      { AttributeName: "sk", KeyType: "RANGE" },
    ]);
    expect(table.AttributeDefinitions).toEqual(
      expect.arrayContaining([
        { AttributeName: "pk", AttributeType: "S" },
        { AttributeName: "sk", AttributeType: "S" },
        { AttributeName: "gsi1pk", AttributeType: "S" },
        { AttributeName: "gsi1sk", AttributeType: "S" },
      ]),
    );
    expect(table.GlobalSecondaryIndexes).toEqual([
      {
        IndexName: "gsi1",
        KeySchema: [
          { AttributeName: "gsi1pk", KeyType: "HASH" },
          { AttributeName: "gsi1sk", KeyType: "RANGE" },
        ],
        Projection: { ProjectionType: "ALL" },
      },
    ]);
    expect(table.TimeToLiveSpecification).toEqual({ AttributeName: "expiresAt", Enabled: true });
  });

  it("has point-in-time recovery and deletion protection, and is retained", () => {
    const [id, table] = ledger();
    expect(table.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
    expect(table.DeletionProtectionEnabled).toBe(true);
    expect(synth.json.Ledger!.Resources[id]!.DeletionPolicy).toBe("Retain");
    expect(synth.json.Ledger!.Resources[id]!.UpdateReplacePolicy).toBe("Retain");
  });
});

describe("Signing stack", () => {
  const key = () => only(synth.json.Signing!, "AWS::KMS::Key");
  const keyPolicy = (): Statement[] => (key()[1].KeyPolicy as { Statement: Statement[] }).Statement;
  const principalArns = (s: Statement, operator: string) =>
    list(s.Condition?.[operator]?.["aws:PrincipalArn"]).map(flatText).sort();
  const signers = [roleArnText(ROLE.sequencer), roleArnText(ROLE.producerAdmin)].sort();

  it("is an ECC_NIST_P256 SIGN_VERIFY key with a 30-day deletion window, retained", () => {
    const [id, props] = key();
    expect(props).toMatchObject({
      KeySpec: "ECC_NIST_P256",
      KeyUsage: "SIGN_VERIFY",
      PendingWindowInDays: 30,
    });
    expect(synth.json.Signing!.Resources[id]!.DeletionPolicy).toBe("Retain");
    expect(synth.json.Signing!.Resources[id]!.UpdateReplacePolicy).toBe("Retain");
  });

  it("allows kms:Sign only to the sequencer (checkpoints) and producer administration (`_system` records)", () => {
    const allowsSign = keyPolicy().filter(
      (s) => s.Effect === "Allow" && list(s.Action).some((a) => a === "kms:Sign" || a === "kms:*"),
    );
    expect(allowsSign).toHaveLength(1);
    expect(list(allowsSign[0]!.Action).sort()).toEqual(["kms:GetPublicKey", "kms:Sign"]);
    expect(principalArns(allowsSign[0]!, "ArnEquals")).toEqual(signers);
  });

  it("denies kms:Sign to every principal other than the sequencer and producer administration", () => {
    const denySign = keyPolicy().filter((s) => s.Effect === "Deny" && list(s.Action).includes("kms:Sign"));
    expect(denySign).toHaveLength(1);
    expect(denySign[0]!.Principal).toEqual({ AWS: "*" });
    expect(principalArns(denySign[0]!, "ArnNotEquals")).toEqual(signers);
  });

  it.each(["kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy", "kms:CreateGrant"])(
    "denies %s to every role of the app",
    (action) => {
      const denies = keyPolicy().filter(
        (s) =>
          s.Effect === "Deny" &&
          list(s.Action).includes(action) &&
          principalArns(s, "ArnLike").join() === APP_ROLES_PATTERN,
      );
      expect(denies).toHaveLength(1);
    },
  );

  it("grants no statement kms:* and lets no app role administer the key", () => {
    for (const s of keyPolicy().filter((s) => s.Effect === "Allow")) {
      expect(list(s.Action)).not.toContain("kms:*");
    }
    const admin = keyPolicy().find((s) => s.Sid === "KeyAdministration")!;
    expect(list(admin.Action)).not.toContain("kms:Sign");
    expect(list(admin.Action)).not.toContain("kms:Verify");
  });

  it("lets the verifier and query roles read the public key and the auditor verify, nothing more", () => {
    const read = keyPolicy().find((s) => s.Sid === "ReadPublicKey")!;
    expect(list(read.Action).sort()).toEqual(["kms:DescribeKey", "kms:GetPublicKey"]);
    expect(principalArns(read, "ArnEquals")).toEqual(
      [roleArnText(ROLE.query), roleArnText(ROLE.verifier)].sort(),
    );
    const audit = keyPolicy().find((s) => s.Sid === "AuditorVerify")!;
    expect(list(audit.Action).sort()).toEqual(["kms:GetPublicKey", "kms:Verify"]);
    expect(principalArns(audit, "ArnEquals")).toEqual([roleArnText(ROLE.auditor)]);
  });

  it("publishes the checkpoint origin producers pin, the same one the functions sign under", () => {
    expect(synth.json.Signing!.Outputs?.CheckpointOrigin).toEqual({
      Value: "auditsink.ci.eu-central-1.123456789012",
    });
  });

  it("names roles that the other stacks really create", () => {
    const created = Object.values(synth.json)
      .flatMap((t) => resourcesOf(t, "AWS::IAM::Role"))
      .map(([, p]) => p.RoleName)
      .filter((name): name is string => typeof name === "string");
    expect(created.sort()).toEqual(Object.values(ROLE).sort());
  });
});
