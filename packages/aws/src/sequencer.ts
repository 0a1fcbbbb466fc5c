/**
 * The sequencer: the one holder of a stream's lease (StreamLease.ts) commits everything pending for the stream
 * (PendingQueue.ts) with core's commit path, `Sink.commit`, so one segment create, one KMS signature and one head
 * compare-and-set serve every event waiting for the stream, however many producers sent them.
 *
 * A run for one stream (`sequenceStream`, woken by ingest through SequencerWake):
 *   1. take the stream's lease (a conditional write); if another sequencer holds it, stop: that one will commit;
 *   2. read what is pending (strongly consistent Query, oldest first, up to DEFAULT_TAKE); an item that is not a
 *      hand-off part (a bug, or a tampered table) goes to the dead-letter queue, so it never blocks its stream;
 *   3. authenticate every event again (a key revoked since ingest is refused here, not committed);
 *   4. commit with one `Sink.commit`. If a part reuses an accepted id with other content (id-conflict), the parts
 *      are committed one by one (still grouped into one segment by the Sink's writer) so only that part is refused;
 *   5. write the answers (receipts, or the problem) for the parts someone waits for; a refused part nobody waits
 *      for (EventBridge path) goes to the dead-letter queue with its reason;
 *   6. delete the committed items and renew the lease when half of it is gone; go back to 2;
 *   7. when nothing is pending: release the lease, then read pending once more. Ingest writes pending and then
 *      reads the lease, so if something arrived meanwhile either ingest saw the lease released and woke a
 *      sequencer, or this read sees the item: then take the lease again and go on (no lost wake-up).
 * Before the Lambda timeout the run releases the lease and, if anything is pending, wakes a fresh sequencer.
 * A store failure ends the run with the lease released and the items still pending: nothing is deleted before
 * it is committed and answered, and the retry is idempotent (dedup returns the records already made).
 *
 * `sweepPending` (scheduled) wakes the sequencer of every stream whose lease lapsed while items wait: the
 * recovery for a sequencer that crashed holding its lease after ingest saw it held.
 *
 * Witnesses (docs/TRANSPARENCY.md §3), when configured: after a run has committed, released the lease and so
 * answered every request (receipts are written in step 5), the same invocation submits the stream's newest
 * checkpoint to the witnesses (`submitToWitnesses`) — at most once per interval per stream, each request
 * bounded by the witness timeout, and only if the invocation has the time. Nobody waits for it: the producers
 * have their receipts and a new wake-up finds the lease free. A round skipped by the rate limit is made up by the
 * scheduled run (`catchUpWitnesses`): every stream whose newest checkpoint is not cosigned yet is submitted.
 */
import { randomUUID } from "node:crypto";
import {
  type Admitted,
  admit,
  assertStreamName,
  type CosignRound,
  IngestError,
  parseSignedEvent,
  type SignedEvent,
  type Signer,
  type Sink,
  SYSTEM_PRODUCER,
  SYSTEM_STREAM,
  systemProducerKey,
  verifyEventSignatureAsync,
} from "@auditsink/core";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { Context } from "aws-lambda";
import { z } from "zod";
import { storeFailure } from "./errors.ts";
import type { DynamoReceiptStore, HandOffAnswer, HandOffMessage } from "./handoff.ts";
import { emit, logger, METRICS, metrics } from "./observability.ts";
import { DEFAULT_TAKE, type PendingItem, type PendingQueue, type TakeLimits } from "./PendingQueue.ts";
import type { AwsRuntime } from "./runtime.ts";
import type { SequencerWake } from "./SequencerWake.ts";
import type { StreamLease } from "./StreamLease.ts";

const messageSchema = z.object({
  v: z.literal(1),
  requestId: z.string().min(1).max(64),
  part: z.number().int().min(0),
  parts: z.number().int().min(1),
  first: z.number().int().min(0),
  stream: z.string(),
  events: z.array(z.unknown()).min(1),
  receipt: z.boolean(),
});

/** Where pending parts the sequencer can never commit go, with the reason (an SQS queue). */
export class DeadLetters {
  constructor(
    private readonly sqs: SQSClient,
    readonly queueUrl: string,
  ) {}

  async send(body: string, reason: { code: string; message: string }): Promise<void> {
    try {
      await this.sqs.send(
        new SendMessageCommand({
          QueueUrl: this.queueUrl,
          MessageBody: body,
          MessageAttributes: {
            code: { DataType: "String", StringValue: reason.code },
            reason: { DataType: "String", StringValue: reason.message.slice(0, 1000) },
          },
        }),
      );
    } catch (e) {
      throw storeFailure("SendMessage sequencer dead letters", e);
    }
  }
}

export interface SequencerDeps {
  sink: Sink;
  /** The sink's checkpoint signer: it also signs the system stream's events (producer registrations). */
  signer: Signer;
  receipts: DynamoReceiptStore;
  deadLetters: DeadLetters;
  pending: PendingQueue;
  lease: StreamLease;
  /** Wakes a fresh sequencer (this function, asynchronously) when a run stops with work left. */
  wake: SequencerWake;
  /** How much one commit takes at most (default DEFAULT_TAKE). */
  take?: TakeLimits;
}

interface Parsed {
  message: HandOffMessage;
  items?: Admitted[];
  answer?: HandOffAnswer;
}

export interface SequenceRun {
  /** Why the run ended: nothing pending, another holds the lease, the time ran out, or the lease was lost. */
  stopped: "drained" | "held" | "deadline" | "lease-lost";
  /** Events in each commit, in order. */
  commits: number[];
  committed: number;
  refused: number;
  deadLettered: number;
}

export interface SequenceOptions {
  /** Epoch ms by which the run must have stopped (the Lambda's remaining time, less a margin). */
  deadline?: number;
  /** The lease owner id (default: a fresh random id per run). */
  owner?: string;
}

/**
 * Commits everything pending for `stream` while holding its lease (steps 1–7 above). Rejects only on a store
 * failure, with the lease released and the failed items still pending.
 */
export async function sequenceStream(
  deps: SequencerDeps,
  stream: string,
  options: SequenceOptions = {},
): Promise<SequenceRun> {
  const owner = options.owner ?? randomUUID();
  const deadline = options.deadline ?? Number.POSITIVE_INFINITY;
  const run: SequenceRun = { stopped: "drained", commits: [], committed: 0, refused: 0, deadLettered: 0 };
  let until = await deps.lease.acquire(stream, owner);
  if (until === undefined) return { ...run, stopped: "held" };
  try {
    for (;;) {
      if (Date.now() >= deadline) {
        await deps.lease.release(stream, owner);
        until = undefined;
        if ((await deps.pending.oldest(stream)) !== undefined) await deps.wake.wake(stream);
        return { ...run, stopped: "deadline" };
      }
      if (until - Date.now() < deps.lease.leaseMs / 2) {
        until = await deps.lease.renew(stream, owner);
        if (until === undefined) return { ...run, stopped: "lease-lost" };
      }
      const taken = await deps.pending.take(stream, deps.take ?? DEFAULT_TAKE);
      if (taken.length === 0) {
        await deps.lease.release(stream, owner);
        until = undefined;
        // Released first, then read: an item written before ingest read the lease is seen here (step 7).
        if ((await deps.pending.oldest(stream)) === undefined) return run;
        until = await deps.lease.acquire(stream, owner);
        if (until === undefined) return { ...run, stopped: "held" };
        continue;
      }
      await commitTaken(deps, stream, taken, run);
    }
  } finally {
    if (until !== undefined) await deps.lease.release(stream, owner).catch(() => undefined);
  }
}

/** Steps 2–6 for one taken set of pending items. */
async function commitTaken(
  deps: SequencerDeps,
  stream: string,
  taken: PendingItem[],
  run: SequenceRun,
): Promise<void> {
  const parsed: Parsed[] = [];
  for (const item of taken) {
    const message = parseMessage(item.body, stream);
    if (message instanceof IngestError) {
      await deps.deadLetters.send(item.body ?? "(not gzip)", message);
      run.deadLettered++;
    } else parsed.push({ message });
  }
  await authenticateAll(deps, stream, parsed);
  await commitStream(deps.sink, stream, parsed);
  const answers: { requestId: string; part: number; answer: HandOffAnswer }[] = [];
  let events = 0;
  for (const p of parsed) {
    const answer = p.answer!;
    if ("error" in answer) run.refused++;
    else events += answer.receipts.length;
    if (p.message.receipt) answers.push({ requestId: p.message.requestId, part: p.message.part, answer });
    else if ("error" in answer) {
      await deps.deadLetters.send(JSON.stringify(p.message), answer.error);
      run.deadLettered++;
    }
  }
  await deps.receipts.put(answers);
  // Only now are the items answered and committed: they may go.
  await deps.pending.remove(stream, taken);
  run.committed += events;
  run.commits.push(events);
}

/** Stream names a wake-up may name: any valid stream, and the system stream. */
/**
 * Submits `stream`'s newest checkpoint to the configured witnesses and stores the cosigned note, unless the
 * stream is not one witnessed, its last round in this container was less than an interval ago, or fewer than
 * two witness timeouts remain before `deadline` (a round makes at most two requests per witness, in parallel
 * across witnesses). Never throws: a witness's failure is logged (and reported by the verifier's policy check).
 */
export async function submitToWitnesses(
  runtime: AwsRuntime,
  stream: string,
  deadline: number,
): Promise<CosignRound | undefined> {
  const witnesses = runtime.settings.witnesses;
  try {
    const made = await runtime.witnessCosigner();
    if (!made?.wanted(stream) || !made.cosigner.due(stream)) return undefined;
    const timeoutMs = (witnesses?.timeoutSeconds ?? 10) * 1000;
    if (Date.now() + 2 * timeoutMs > deadline) return undefined;
    const round = await made.cosigner.cosign(stream);
    if (round)
      logger.info("witnessed", {
        stream,
        size: round.size,
        cosigned: round.cosigned,
        quorumMet: round.quorumMet,
        failures: round.failures.length,
      });
    return round;
  } catch (e) {
    logger.error("witness submission round failed", { stream, error: (e as Error).message });
    return undefined;
  }
}

/**
 * The scheduled run's witness pass: every witnessed stream (from the leases index) whose newest checkpoint is
 * larger than its newest cosigned one is submitted (submitToWitnesses), so a round skipped by the rate limit,
 * or by a witness that was down, is made up within a sweep interval. Resolves with the streams submitted.
 */
export async function catchUpWitnesses(
  runtime: AwsRuntime,
  deps: Pick<SequencerDeps, "lease" | "sink">,
  deadline: number,
): Promise<string[]> {
  const submitted: string[] = [];
  try {
    const made = await runtime.witnessCosigner();
    if (!made) return submitted;
    for await (const { stream } of deps.lease.list()) {
      if (Date.now() >= deadline) break;
      if (!made.wanted(stream) || !made.cosigner.due(stream)) continue;
      const head = await deps.sink.head(stream);
      if (!head?.checkpoint) continue;
      const cosigned = await made.cosigner.newestCosigned(stream);
      if (cosigned && cosigned.size >= head.size) continue;
      if (await submitToWitnesses(runtime, stream, deadline)) submitted.push(stream);
    }
  } catch (e) {
    logger.error("witness catch-up failed", { error: (e as Error).message });
  }
  return submitted;
}

/** What a re-indexing invocation did; `next`, when present, is where to invoke it again. */
export interface Reindexed {
  reindexed: string;
  segments: number;
  next?: number;
}

/**
 * `{ "reindex": "<stream>", "from": <first index of a segment, default 0> }` (a manual invoke, docs/AWS.md
 * §Finding events): writes the postings of the stream's stored segments, bounded by the remaining time.
 */
async function reindex(
  runtime: AwsRuntime,
  body: Record<string, unknown>,
  context: Context,
): Promise<Reindexed> {
  const stream = wakeStream(body.reindex);
  const from = body.from ?? 0;
  if (stream === undefined || !Number.isSafeInteger(from) || (from as number) < 0) {
    throw new Error('reindex: expected {"reindex": "<stream>", "from": <non-negative integer>}');
  }
  const deadline = Date.now() + context.getRemainingTimeInMillis() - STOP_MARGIN_MS;
  const done = await runtime.events.reindex(stream, from as number, deadline);
  logger.info("reindexed", { stream, from, ...done });
  return { reindexed: stream, ...done };
}

function wakeStream(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  if (value === SYSTEM_STREAM) return value;
  try {
    assertStreamName(value);
    return value;
  } catch {
    return undefined;
  }
}

/**
 * Wakes the sequencer of every stream whose lease is free while an item has waited longer than `olderThanMs`
 * (leases listed from the index; one Query per such stream). Resolves with the streams woken.
 */
export async function sweepPending(
  deps: Pick<SequencerDeps, "lease" | "pending" | "wake">,
  options: { olderThanMs?: number; now?: number } = {},
): Promise<string[]> {
  const now = options.now ?? Date.now();
  const olderThan = options.olderThanMs ?? 30_000;
  const woken: string[] = [];
  for await (const lease of deps.lease.list()) {
    if (lease.until > now) continue;
    const oldest = await deps.pending.oldest(lease.stream, false);
    if (oldest !== undefined && now - oldest >= olderThan) {
      await deps.wake.wake(lease.stream);
      woken.push(lease.stream);
    }
  }
  return woken;
}

function parseMessage(body: string | undefined, stream: string): HandOffMessage | IngestError {
  if (body === undefined) return new IngestError("invalid-request", "pending item body is not gzip");
  try {
    const parsed = messageSchema.safeParse(JSON.parse(body));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return new IngestError("invalid-request", `${issue.path.join(".")}: ${issue.message}`);
    }
    if (parsed.data.stream !== stream)
      return new IngestError(
        "invalid-request",
        `stream: pending under ${stream}, names ${parsed.data.stream}`,
      );
    return parsed.data as HandOffMessage;
  } catch {
    return new IngestError("invalid-request", "message body is not JSON");
  }
}

const answerOf = (e: IngestError): HandOffAnswer => ({
  error: { code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}) },
});

/** Authenticates every event again; a message with a refused event gets that problem as its answer. */
async function authenticateAll(deps: SequencerDeps, stream: string, parsed: Parsed[]): Promise<void> {
  const system = systemProducerKey(deps.signer);
  const authenticate = async (event: SignedEvent, field: string): Promise<Admitted> => {
    if (event.sigkeyid !== system.keyId) {
      // The system stream holds only the sink's own events (ingest never hands off another's there).
      if (stream === SYSTEM_STREAM) throw new IngestError("stream-not-allowed", "stream: reserved", "stream");
      assertStreamName(stream);
      return deps.sink.authenticate(stream, event, field);
    }
    // The sink's own events (core AuditedProducerAdmin), signed by its key: only in the system stream.
    const admitted = admit(event, SYSTEM_PRODUCER, field);
    if (
      stream !== SYSTEM_STREAM ||
      !(await verifyEventSignatureAsync(event, admitted.canonical, system.publicKey))
    ) {
      throw new IngestError(
        "bad-signature",
        `${field}.signature: not a system event of this sink`,
        `${field}.signature`,
      );
    }
    return admitted;
  };
  await Promise.all(
    parsed.map(async (p) => {
      try {
        p.items = await Promise.all(
          p.message.events.map((e, i) => {
            const field = `events[${p.message.first + i}]`;
            return authenticate(parseSignedEvent(e, field), field);
          }),
        );
      } catch (e) {
        if (!(e instanceof IngestError)) throw e;
        p.answer = answerOf(e);
      }
    }),
  );
}

/** One Sink.commit for the stream's accepted messages; one per message if an id conflicts. */
async function commitStream(sink: Sink, stream: string, parsed: Parsed[]): Promise<void> {
  const ready = parsed.filter((p) => p.items);
  if (ready.length === 0) return;
  try {
    const receipts = await sink.commit(
      stream,
      ready.flatMap((p) => p.items!),
    );
    let at = 0;
    for (const p of ready) {
      p.answer = { receipts: receipts.slice(at, at + p.items!.length) };
      at += p.items!.length;
    }
  } catch (error) {
    if (!(error instanceof IngestError && error.code === "id-conflict")) throw error;
    await Promise.all(
      ready.map(async (p) => {
        try {
          p.answer = { receipts: await sink.commit(stream, p.items!) };
        } catch (e) {
          if (!(e instanceof IngestError)) throw e;
          p.answer = answerOf(e);
        }
      }),
    );
  }
}

/** The margin a run keeps before the Lambda timeout: one commit, the release and the wake-up fit in it. */
export const STOP_MARGIN_MS = 10_000;

/**
 * The Lambda handler: `{ "stream": "<name>" }` (a wake-up, SequencerWake) runs that stream's sequencer; the
 * scheduled event (EventBridge schedule, `detail-type` "Scheduled Event") runs the sweep.
 */
export function createSequencerHandler(
  runtime: AwsRuntime,
): (
  event: unknown,
  context: Context,
) => Promise<SequenceRun | { woken: string[] } | { ignored: string } | Reindexed> {
  return async (event, context) => {
    logger.addContext(context);
    try {
      const deps = await runtime.startSequencer();
      const body = (event ?? {}) as Record<string, unknown>;
      const deadline = Date.now() + context.getRemainingTimeInMillis() - STOP_MARGIN_MS;
      if (body["detail-type"] === "Scheduled Event") {
        const woken = await sweepPending(deps);
        logger.info("swept", { woken: woken.length });
        const submitted = await catchUpWitnesses(runtime, deps, deadline);
        return { woken, ...(submitted.length > 0 ? { submittedToWitnesses: submitted } : {}) };
      }
      if (body.reindex !== undefined) return await reindex(runtime, body, context);
      const stream = wakeStream(body.stream);
      if (stream === undefined) {
        logger.warn("not a wake-up or schedule event; ignored");
        return { ignored: "not a wake-up" };
      }
      const run = await sequenceStream(deps, stream, { deadline });
      emit(METRICS.eventsRejected, run.refused + run.deadLettered);
      logger.info("sequenced", { stream, ...run, commits: run.commits.length });
      // Every request of the run is answered and the lease released: witnesses delay nobody now.
      if (run.commits.length > 0) await submitToWitnesses(runtime, stream, deadline);
      return run;
    } finally {
      metrics.publishStoredMetrics();
    }
  };
}
