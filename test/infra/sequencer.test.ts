/**
 * The hand-off and the sequencer (stacks/Sequencer.ts): an SQS FIFO queue with one message group per stream, a
 * FIFO dead-letter queue, the sequencer function fed by the queue, and who may send where.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ROLE, SETTINGS, STAGE } from "./fixtures.ts";
import { list, refersTo, roleStatements, type Statement } from "./policy.ts";
import { resourcesOf, type Synth, synthesize } from "./synth.ts";

let synth: Synth;
beforeAll(async () => {
  synth = await synthesize(STAGE, SETTINGS);
});

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
  return found[0]![1];
};
const env = (prefix: string) => (fn(prefix).Environment as { Variables: Record<string, unknown> }).Variables;
const sendsTo = (role: string) =>
  roleStatements(synth, role)
    .filter((s: Statement) => s.Effect === "Allow" && list(s.Action).includes("sqs:SendMessage"))
    .flatMap((s) => list(s.Resource));

describe("sequencer queue", () => {
  it("is FIFO in high-throughput mode: dedup and throughput per message group (= stream)", () => {
    const [, props] = queue("SequencerQueue");
    expect(props).toMatchObject({
      FifoQueue: true,
      DeduplicationScope: "messageGroup",
      FifoThroughputLimit: "perMessageGroupId",
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 4 * 86_400,
    });
  });

  it("redrives to a FIFO dead-letter queue after 10 receives, kept 14 days", () => {
    const [, props] = queue("SequencerQueue");
    const [, dlq] = queue("SequencerDeadLetters");
    const redrive = props.RedrivePolicy as { deadLetterTargetArn: unknown; maxReceiveCount: number };
    expect(refersTo(redrive.deadLetterTargetArn, "SequencerDeadLetters")).toBe(true);
    expect(redrive.maxReceiveCount).toBe(10);
    expect(dlq).toMatchObject({
      FifoQueue: true,
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 14 * 86_400,
    });
  });

  it("refuses non-TLS access to both queues", () => {
    for (const prefix of ["SequencerQueue", "SequencerDeadLetters"]) {
      const [id] = queue(prefix);
      const policies = resourcesOf(synth.json.Ingest!, "AWS::SQS::QueuePolicy").filter(([, p]) =>
        JSON.stringify(p.Queues).includes(id),
      );
      expect(JSON.stringify(policies), prefix).toContain('"aws:SecureTransport":"false"');
    }
  });

  it("has a visibility timeout of at least six times the sequencer's timeout", () => {
    const [, props] = queue("SequencerQueue");
    expect(props.VisibilityTimeout as number).toBeGreaterThanOrEqual(
      6 * (fn("SequencerFunction").Timeout as number),
    );
  });
});

describe("sequencer function", () => {
  it("is fed by the sequencer queue, 10 messages at most (the FIFO limit), with partial batch failures", () => {
    const mappings = resourcesOf(synth.json.Ingest!, "AWS::Lambda::EventSourceMapping").filter(([, m]) =>
      refersTo(m.FunctionName, "SequencerFunction"),
    );
    expect(mappings).toHaveLength(1);
    const [, mapping] = mappings[0]!;
    expect(refersTo(mapping.EventSourceArn, "SequencerQueue")).toBe(true);
    expect(mapping.BatchSize).toBe(10);
    expect(mapping.FunctionResponseTypes).toEqual(["ReportBatchItemFailures"]);
  });

  it("is told its dead-letter queue and the dedup window (14 days by default)", () => {
    const variables = env("SequencerFunction");
    expect(refersTo(variables.SEQUENCER_DLQ_URL, "SequencerDeadLetters")).toBe(true);
    expect(variables.DEDUP_WINDOW_SECONDS).toBe(String(14 * 86_400));
    expect(variables.SEQUENCER_QUEUE_URL).toBeUndefined();
  });

  it("may send only to its dead-letter queue", () => {
    const targets = sendsTo(ROLE.sequencer);
    expect(targets).toHaveLength(1);
    expect(refersTo(targets[0], "SequencerDeadLetters")).toBe(true);
  });
});

describe.each([
  ["IngestHttpFunction", ROLE.ingestHttp],
  ["IngestQueueFunction", ROLE.ingestQueue],
])("%s hand-off", (name, role) => {
  it("is told the sequencer queue and the dedup window", () => {
    const variables = env(name);
    expect(refersTo(variables.SEQUENCER_QUEUE_URL, "SequencerQueue")).toBe(true);
    expect(variables.DEDUP_WINDOW_SECONDS).toBe(String(14 * 86_400));
  });

  it("may send only to the sequencer queue", () => {
    const targets = sendsTo(role);
    expect(targets).toHaveLength(1);
    expect(refersTo(targets[0], "SequencerQueue")).toBe(true);
  });
});
