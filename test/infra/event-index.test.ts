/**
 * The event index (stacks/Ledger.ts `EventIndex`, packages/aws/src/DynamoEventIndex.ts): a postings table every
 * function is told about; only the functions that commit segments may create postings (PutItem, never a batch
 * write that could delete), the query function reads them with Query and GetItem only, and no role may delete
 * postings or reconfigure the table. IAM is not enforced by the emulators, so it is asserted here.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ROLE, SETTINGS, STAGE } from "./fixtures.ts";
import { coversAction, list, refersTo, roleStatements, type Statement } from "./policy.ts";
import { allResources, type Synth, synthesize } from "./synth.ts";

let synth: Synth;
beforeAll(async () => {
  synth = await synthesize(STAGE, SETTINGS);
});

const INDEX = "EventIndex";
const onIndex = (s: Statement) => list(s.Resource).some((r) => refersTo(r, INDEX));
/** What the role's Allow statements on the index table permit. */
const allowedOnIndex = (role: string) =>
  [
    ...new Set(
      roleStatements(synth, role)
        .filter((s) => s.Effect === "Allow" && onIndex(s))
        .flatMap((s) => list(s.Action)),
    ),
  ].sort();
const deniedOnIndex = (role: string, action: string) =>
  roleStatements(synth, role).some((s) => s.Effect === "Deny" && onIndex(s) && coversAction(s, action));

describe("event index table", () => {
  it("is an on-demand pk/sk table with no secondary index, PITR, deletion protection, kept on stack removal", () => {
    const tables = allResources(synth).filter(
      ({ stack, type, id }) => stack === "Ledger" && type === "AWS::DynamoDB::Table" && id.startsWith(INDEX),
    );
    expect(tables).toHaveLength(1);
    const table = tables[0]!.resource;
    const properties = table.Properties as Record<string, unknown>;
    expect(properties.KeySchema).toEqual([
      { AttributeName: "pk", KeyType: "HASH" },
      { AttributeName: "sk", KeyType: "RANGE" },
    ]);
    expect(properties.BillingMode).toBe("PAY_PER_REQUEST");
    expect(properties.GlobalSecondaryIndexes).toBeUndefined();
    expect(properties.TimeToLiveSpecification).toBeUndefined(); // postings never expire
    expect(properties.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
    expect(properties.DeletionProtectionEnabled).toBe(true);
    expect(table.DeletionPolicy).toBe("Retain");
  });

  it("is named to every function through EVENT_INDEX_TABLE", () => {
    const functions = allResources(synth).filter(
      ({ resource, id }) => resource.Type === "AWS::Lambda::Function" && !id.startsWith("CustomResource"),
    );
    const sink = functions.filter(({ resource }) =>
      Object.hasOwn(
        ((resource.Properties?.Environment as { Variables?: object } | undefined)?.Variables ?? {}) as object,
        "LEDGER_TABLE",
      ),
    );
    expect(sink.length).toBeGreaterThanOrEqual(6);
    for (const { resource, id } of sink) {
      const variables = (resource.Properties!.Environment as { Variables: Record<string, unknown> })
        .Variables;
      expect(refersTo(variables.EVENT_INDEX_TABLE, INDEX), id).toBe(true);
    }
  });
});

describe("who may do what with postings", () => {
  it("the sequencer and producer administration create postings with PutItem, and nothing else", () => {
    expect(allowedOnIndex(ROLE.sequencer)).toEqual(["dynamodb:PutItem"]);
    expect(allowedOnIndex(ROLE.producerAdmin)).toEqual(["dynamodb:PutItem"]);
    for (const role of [ROLE.sequencer, ROLE.producerAdmin]) {
      // A batch write's delete requests are not DeleteItem to IAM: denied outright, as are deletes.
      expect(deniedOnIndex(role, "dynamodb:BatchWriteItem"), role).toBe(true);
      expect(deniedOnIndex(role, "dynamodb:DeleteItem"), role).toBe(true);
    }
  });

  it("the query function reads postings with Query and GetItem only, on the index table only", () => {
    expect(allowedOnIndex(ROLE.query)).toEqual(["dynamodb:GetItem", "dynamodb:Query"]);
    const statement = roleStatements(synth, ROLE.query).find((s) => s.Sid === "ReadPostings")!;
    expect(list(statement.Resource)).toHaveLength(1);
    expect(refersTo(statement.Resource, INDEX)).toBe(true);
    for (const action of [
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:DeleteItem",
    ])
      expect(deniedOnIndex(ROLE.query, action), action).toBe(true);
  });

  it.each([ROLE.ingestHttp, ROLE.ingestQueue, ROLE.verifier])(
    "%s may not touch postings: nothing allowed, every write denied",
    (role) => {
      expect(allowedOnIndex(role)).toEqual([]);
      for (const action of [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteItem",
      ])
        expect(deniedOnIndex(role, action), action).toBe(true);
    },
  );

  it.each([ROLE.sequencer, ROLE.producerAdmin, ROLE.query, ROLE.ingestHttp, ROLE.ingestQueue, ROLE.verifier])(
    "%s may not delete or reconfigure the index table",
    (role) => {
      for (const action of [
        "dynamodb:DeleteTable",
        "dynamodb:UpdateTable",
        "dynamodb:UpdateContinuousBackups",
      ])
        expect(deniedOnIndex(role, action), action).toBe(true);
    },
  );
});
