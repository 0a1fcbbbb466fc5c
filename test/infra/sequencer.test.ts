/**
 * The hand-off and the sequencer (stacks/Sequencer.ts): ingest writes pending items and wakes the sequencer by
 * an asynchronous invoke; the sequencer holds each stream's lease, dead-letters poison to a standard queue, may
 * wake itself, and is swept every minute by a schedule. Who may write which ledger items, and invoke what.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ROLE, SETTINGS, STAGE } from "./fixtures.ts";
import { denyStatementsFor, flatText, list, refersTo, roleStatements, type Statement } from "./policy.ts";
import { resourcesOf, type Synth, synthesize } from "./synth.ts";

let synth: Synth;
beforeAll(async () => {
  synth = await synthesize(STAGE, SETTINGS);
});

const SEQUENCER_NAME = `auditsink-${STAGE}-sequencer`;
const queue = (prefix: string) => {
  const found = resourcesOf(synth.json.Ingest!, "AWS::SQS::Queue").filter(([id]) => id.startsWith(prefix));
  expect(found, prefix).toHaveLength(1);
  return found[0]!;
};
const fn = (prefix: string) => {
  const found = resourcesOf(synth.json.Ingest!, "AWS::Lambda::Function").filter(([id]) =>
    id.startsWith(prefix),
  );
  expect(found, prefix).toHaveLength(1);
  return found[0]!;
};
const env = (prefix: string) =>
  (fn(prefix)[1].Environment as { Variables: Record<string, unknown> }).Variables;
const allowing = (role: string, action: string) =>
  roleStatements(synth, role).filter(
    (s: Statement) => s.Effect === "Allow" && list(s.Action).includes(action),
  );
const invokes = (role: string) => allowing(role, "lambda:InvokeFunction").flatMap((s) => list(s.Resource));

describe("sequencer function", () => {
  it("has a fixed name, so ingest and the sequencer itself can be allowed to invoke exactly it", () => {
    expect(fn("SequencerFunction")[1].FunctionName).toBe(SEQUENCER_NAME);
  });

  it("is fed by no queue: woken by invocations, with two async retries within an hour", () => {
    const id = "SequencerFunction";
    const mappings = resourcesOf(synth.json.Ingest!, "AWS::Lambda::EventSourceMapping").filter(([, m]) =>
      refersTo(m.FunctionName, id),
    );
    expect(mappings).toEqual([]);
    const configs = resourcesOf(synth.json.Ingest!, "AWS::Lambda::EventInvokeConfig").filter(([, c]) =>
      refersTo(c.FunctionName, id),
    );
    expect(configs).toHaveLength(1);
    expect(configs[0]![1]).toMatchObject({ MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 3600 });
    expect(resourcesOf(synth.json.Ingest!, "AWS::SQS::Queue").map(([qid]) => qid)).not.toContainEqual(
      expect.stringMatching(/^SequencerQueue/),
    );
  });

  it("is run every minute by a schedule (the sweep of lapsed leases)", () => {
    const id = "SequencerFunction";
    const rules = resourcesOf(synth.json.Ingest!, "AWS::Events::Rule").filter(([rid]) =>
      rid.startsWith("SequencerSweepSchedule"),
    );
    expect(rules).toHaveLength(1);
    const [, rule] = rules[0]!;
    expect(rule.ScheduleExpression).toBe("rate(1 minute)");
    const targets = rule.Targets as { Arn: unknown; RetryPolicy?: unknown }[];
    expect(targets).toHaveLength(1);
    expect(refersTo(targets[0]!.Arn, id)).toBe(true);
    const permissions = resourcesOf(synth.json.Ingest!, "AWS::Lambda::Permission").filter(
      ([, p]) => refersTo(p.FunctionName, id) && p.Principal === "events.amazonaws.com",
    );
    expect(permissions).toHaveLength(1);
  });

  it("is told its dead-letter queue, its own name and the dedup window (14 days by default)", () => {
    const variables = env("SequencerFunction");
    expect(refersTo(variables.SEQUENCER_DLQ_URL, "SequencerDeadLetters")).toBe(true);
    expect(variables.SEQUENCER_FUNCTION_NAME).toBe(SEQUENCER_NAME);
    expect(variables.DEDUP_WINDOW_SECONDS).toBe(String(14 * 86_400));
  });

  it("may send only to its dead-letter queue, and invoke only itself", () => {
    const targets = allowing(ROLE.sequencer, "sqs:SendMessage").flatMap((s) => list(s.Resource));
    expect(targets).toHaveLength(1);
    expect(refersTo(targets[0], "SequencerDeadLetters")).toBe(true);
    expect(invokes(ROLE.sequencer).map(flatText)).toEqual([
      expect.stringMatching(new RegExp(`:lambda:.*:function:${SEQUENCER_NAME}$`)),
    ]);
  });

  it("writes heads, dedup entries and leases; batch-writes only receipts and pending items (their deletes)", () => {
    const writes = allowing(ROLE.sequencer, "dynamodb:UpdateItem");
    expect(writes).toHaveLength(1);
    expect(writes[0]!.Condition).toEqual({
      "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["stream#*", "event#*", "lease#*"] },
    });
    const batch = allowing(ROLE.sequencer, "dynamodb:BatchWriteItem");
    expect(batch).toHaveLength(1);
    expect(list(batch[0]!.Action)).toEqual(["dynamodb:BatchWriteItem"]);
    expect(batch[0]!.Condition).toEqual({
      "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["receipt#*", "pending#*"] },
    });
  });

  it("dead-letters to a standard queue kept 14 days, encrypted, TLS only", () => {
    const [id, dlq] = queue("SequencerDeadLetters");
    expect(dlq).toMatchObject({ SqsManagedSseEnabled: true, MessageRetentionPeriod: 14 * 86_400 });
    expect(dlq.FifoQueue).toBeUndefined();
    const policies = resourcesOf(synth.json.Ingest!, "AWS::SQS::QueuePolicy").filter(([, p]) =>
      JSON.stringify(p.Queues).includes(id),
    );
    expect(JSON.stringify(policies)).toContain('"aws:SecureTransport":"false"');
  });
});

describe.each([
  ["IngestHttpFunction", ROLE.ingestHttp],
  ["IngestQueueFunction", ROLE.ingestQueue],
])("%s hand-off", (name, role) => {
  it("is told the sequencer's name and the dedup window", () => {
    const variables = env(name);
    expect(variables.SEQUENCER_FUNCTION_NAME).toBe(SEQUENCER_NAME);
    expect(variables.SEQUENCER_QUEUE_URL).toBeUndefined();
    expect(variables.DEDUP_WINDOW_SECONDS).toBe(String(14 * 86_400));
  });

  it("may invoke only the sequencer, and send to no queue", () => {
    expect(invokes(role).map(flatText)).toEqual([
      expect.stringMatching(new RegExp(`:lambda:.*:function:${SEQUENCER_NAME}$`)),
    ]);
    expect(allowing(role, "sqs:SendMessage")).toEqual([]);
  });

  it("may put only pending items (dynamodb:LeadingKeys pending#*), and no other write", () => {
    const puts = allowing(role, "dynamodb:PutItem");
    expect(puts).toHaveLength(1);
    expect(list(puts[0]!.Action)).toEqual(["dynamodb:PutItem"]);
    expect(puts[0]!.Condition).toEqual({
      "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["pending#*"] },
    });
    for (const action of ["dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"])
      expect(allowing(role, action), action).toEqual([]);
  });

  it.each([
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
  ])("is denied %s on every ledger item outside pending#* (leases, heads, receipts…)", (action) => {
    const denies = denyStatementsFor(roleStatements(synth, role), action).filter((s) =>
      JSON.stringify(s.Condition ?? {}).includes("LeadingKeys"),
    );
    expect(denies).toHaveLength(1);
    expect(denies[0]!.Condition).toEqual({
      "ForAnyValue:StringNotLike": { "dynamodb:LeadingKeys": ["pending#*"] },
    });
    expect(JSON.stringify(denies[0]!.Resource)).toMatch(/Ledger[0-9A-F]{8}/);
  });
});
