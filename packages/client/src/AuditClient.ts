/**
 * The producer SDK: sign events with the producer's key, batch them, send them with idempotent retries, and
 * verify every receipt before resolving — checkpoint signature against the pinned sink key, inclusion proof
 * (core's verifyReceipt), and consistency with the newest checkpoint seen before (CheckpointWitness).
 */

import type { KeyObject } from "node:crypto";
import {
  type CheckpointVerdict,
  canonicalBytes,
  checkWitnessPolicy,
  eventKey,
  jcsOrdered,
  MAX_SIGNED_BATCH_EVENTS,
  type NoteKey,
  newEventId,
  openCheckpoint,
  type Receipt,
  receiptsOfAnswer,
  type SignedEvent,
  sha256,
  signBatch,
  signEvent,
  toHex,
  type UnsignedEvent,
  verifyReceipt,
  verifyTlogProof,
  type WitnessPolicy,
  witnessPolicy,
} from "@auditsink/core";
import { CheckpointWitness, type ConsistencySource } from "./CheckpointWitness.ts";
import { ClientError, ReceiptError, WitnessPolicyError } from "./errors.ts";
import { toNoteKey } from "./keys.ts";
import { backoffDelay, DEFAULT_RETRY, type RetryOptions, sleep } from "./retry.ts";

export interface BatchOptions {
  /** Send when this many events wait for one stream (default 100). */
  maxEvents?: number;
  /** Send when the waiting events' JSON reaches this many bytes (default 1 MiB). */
  maxBytes?: number;
  /** Longest an event waits for companions before it is sent (default 20 ms). */
  lingerMs?: number;
}

export interface AuditClientOptions {
  /** Base URL of the sink, for example `http://127.0.0.1:8787` or the stage's API URL. */
  endpoint: string;
  /** The producer's private key (Ed25519 or ECDSA P-256), registered with the sink. */
  producerKey: KeyObject;
  /** The sink's checkpoint key(s) the producer pins: NoteKeys or verifier key strings. */
  sinkKey: NoteKey | string | readonly (NoteKey | string)[];
  /** The sink's deployment name; when given, checkpoint origins must be `<deployment>/<stream>`. */
  deployment?: string;
  /** Stream used when send() names none. */
  stream?: string;
  /** CloudEvents `source` used when an event names none, for example `agent://support-bot`. */
  source?: string;
  batch?: BatchOptions;
  retry?: RetryOptions;
  /** Keeps the newest checkpoint per stream across restarts, so a rollback across restarts is caught too. */
  stateFile?: string;
  /** Extra request headers (for example an authorizer's token). */
  headers?: Record<string, string>;
  /** Per-attempt timeout (default 10 s). */
  timeoutMs?: number;
  /** The fetch implementation (default globalThis.fetch). */
  fetch?: typeof fetch;
  /**
   * How the client signs the events it sends (docs/FORMAT.md §3b): `batch` (default) signs every batch of more
   * than one event once — a batch-signed envelope in which each event carries its membership proof — and a lone
   * event per event; `event` signs each event on its own (the per-event envelope, §3). Either way each event
   * proves on its own that this producer signed it.
   */
  signing?: "batch" | "event";
  /**
   * How many events sent with an explicit `id` the client remembers (default 10,000), so that sending one again
   * sends the same signed bytes and resolves with the original receipt (see send()).
   */
  rememberEvents?: number;
  /**
   * A witness policy (docs/TRANSPARENCY.md §3): `quorum` (default: all) of these witness verifier keys must have
   * cosigned a checkpoint for checkWitnessed() and waitWitnessed() to succeed. Receipts are not held back for it:
   * witnesses cosign after the commit, so a receipt's own checkpoint is never cosigned yet. A receipt is
   * witnessed once a cosigned checkpoint that meets the policy has a size above its index and is consistent with
   * the receipt's checkpoint — which waitWitnessed(receipt) checks.
   */
  witnesses?: { verifierKeys: readonly string[]; quorum?: number };
}

/** What checkWitnessed() found: the newest cosigned checkpoint, which witnesses of the policy signed it. */
export interface Witnessed {
  stream: string;
  /** Its tree size: every record below it is covered. */
  size: number;
  witnesses: { name: string; time: number }[];
  /** The cosigned checkpoint note (the sink's signature and each cosignature). */
  checkpoint: string;
}

/** What a caller hands to send(): a CloudEvent without the signature; missing `id`, `time`, `source` are filled. */
export interface AuditEventInput {
  type: string;
  /** Default: a random UUID. Keep it stable across your own retries: `source` + `id` is the idempotency key. */
  id?: string;
  /** Default: the client's `source`. */
  source?: string;
  /** Default: now, RFC 3339 UTC. */
  time?: string;
  subject?: string;
  datacontenttype?: string;
  dataschema?: string;
  data?: unknown;
  data_base64?: string;
  /** CloudEvents extension attributes: names of 1–20 lowercase letters or digits. */
  extensions?: Record<string, string | number | boolean>;
}

/**
 * The event as it will be signed: defaults filled in (`specversion`, a UUIDv7 `id`, `source`, `time` now) and the
 * extension attributes made members.
 */
export function fillEvent(input: AuditEventInput, defaultSource?: string): UnsignedEvent {
  const source = input.source ?? defaultSource;
  if (!source)
    throw new ClientError("bad-config", "the event has no source and the client no default source");
  const { extensions, ...attributes } = input;
  return jcsOrdered({
    ...extensions,
    ...attributes,
    specversion: "1.0",
    id: input.id ?? newEventId(),
    source,
    time: input.time ?? new Date().toISOString(),
  } as UnsignedEvent);
}

interface Pending {
  /** Signed, or (batch signing) filled in and signed with its companions when its batch is sent. */
  event: SignedEvent | UnsignedEvent;
  signed: boolean;
  /** Told the signed event once it is signed (so a later send() of the same id resends these bytes). */
  onSigned?: (event: SignedEvent) => void;
  bytes: number;
  resolve: (receipt: Receipt) => void;
  reject: (error: unknown) => void;
}

/** An event sent with an explicit id: what was asked, what was signed, and the receipt once it came. */
interface Remembered {
  /** SHA-256 of the RFC 8785 form of the stream and the input as given (defaults not filled in). */
  asked: string;
  /** The signed event, or the filled-in event still waiting for its batch's signature. */
  event: SignedEvent | UnsignedEvent;
  outcome?: Promise<Receipt>;
}

interface Queue {
  items: Pending[];
  bytes: number;
  timer?: NodeJS.Timeout;
}

/**
 * @example
 *   const client = await AuditClient.create({
 *     endpoint: "http://127.0.0.1:8787",
 *     producerKey: await loadProducerKey("support-bot.key.pem"),
 *     sinkKey: "auditsink.local/dev+1a2b3c4d+Ak...",
 *     stream: "agent-actions",
 *     source: "agent://support-bot",
 *   });
 *   const receipt = await client.send({ type: "ai.agent.tool_call", data: { "gen_ai.tool.name": "search" } });
 *   await client.close();
 */
export class AuditClient {
  private readonly queues = new Map<string, Queue>();
  /** Per stream, the tail of the chain of batches in flight: batches of one stream go out one at a time. */
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly trusted: NoteKey[];
  private readonly retry: Required<RetryOptions>;
  private readonly batch: Required<BatchOptions>;
  private readonly fetch: typeof fetch;
  private readonly endpoint: string;
  /** By stream, source and id, oldest first (a Map keeps insertion order); at most `rememberEvents`. */
  private readonly remembered = new Map<string, Remembered>();
  private closed = false;
  private readonly policy: WitnessPolicy | undefined;

  private constructor(
    private readonly options: AuditClientOptions,
    readonly witness: CheckpointWitness,
  ) {
    const keys = Array.isArray(options.sinkKey) ? options.sinkKey : [options.sinkKey];
    this.trusted = keys.map((k) => toNoteKey(k as NoteKey | string));
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.batch = { maxEvents: 100, maxBytes: 1024 * 1024, lingerMs: 20, ...options.batch };
    this.fetch = options.fetch ?? globalThis.fetch;
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    try {
      this.policy = options.witnesses
        ? witnessPolicy(options.witnesses.verifierKeys, options.witnesses.quorum)
        : undefined;
    } catch (e) {
      throw new ClientError("bad-config", `witnesses: ${(e as Error).message}`, {}, { cause: e });
    }
  }

  static async create(options: AuditClientOptions): Promise<AuditClient> {
    const keys = Array.isArray(options.sinkKey) ? options.sinkKey : [options.sinkKey];
    const trusted = keys.map((k) => toNoteKey(k as NoteKey | string));
    const witness = await CheckpointWitness.open({
      trusted,
      ...(options.stateFile ? { stateFile: options.stateFile } : {}),
    });
    return new AuditClient(options, witness);
  }

  /** Signs an event on its own (the per-event envelope), without sending it (for example for EventBridge). */
  sign(input: AuditEventInput): SignedEvent {
    return signEvent(this.fill(input), this.options.producerKey);
  }

  /**
   * Signs events as one batch (the batch-signed envelope, docs/FORMAT.md §3b), without sending them: one
   * signature, and each event carries its membership proof, so each can be sent, stored and verified alone.
   * @example
   *   const [call, decision] = client.signBatch([{ type: "ai.agent.tool_call" }, { type: "ai.agent.decision" }]);
   */
  signBatch(inputs: readonly AuditEventInput[]): SignedEvent[] {
    return signBatch(
      inputs.map((input) => this.fill(input)),
      this.options.producerKey,
    );
  }

  private fill(input: AuditEventInput): UnsignedEvent {
    return fillEvent(input, this.options.source);
  }

  /**
   * Signs and queues an event; resolves with its receipt once the receipt has verified. Rejects with
   * ClientError (refused, unavailable), ReceiptError (the receipt does not verify) or WitnessError (the sink
   * contradicted a checkpoint it showed before).
   *
   * Idempotent by `id`: the event is signed once, and every retry, inside the client or by calling send() again
   * with the same stream, source, id and content, sends the same signed bytes (the same `time` too, when it was
   * filled in), so the sink answers with the original receipt and never records it twice. A send() that is
   * still in flight or has succeeded is answered with its own promise. The client remembers the last
   * `rememberEvents` ids; after a restart, pass the `time` you used the first time, or resend the SignedEvent.
   */
  send(input: AuditEventInput | SignedEvent, options: { stream?: string } = {}): Promise<Receipt> {
    if (this.closed) return Promise.reject(new ClientError("closed", "the client is closed"));
    const stream = options.stream ?? this.options.stream;
    if (!stream)
      return Promise.reject(new ClientError("bad-config", "no stream given and no default stream"));
    let event: SignedEvent | UnsignedEvent;
    let memory: { key: string; asked: string } | undefined;
    try {
      if ("signature" in input) event = input;
      else if (input.id === undefined) event = this.prepare(input);
      else {
        const source = input.source ?? this.options.source ?? "";
        memory = {
          key: `${stream}\u0000${eventKey({ source, id: input.id })}`,
          asked: toHex(sha256(canonicalBytes({ stream, input: { ...input, source } }))),
        };
        const known = this.remembered.get(memory.key);
        if (known && known.asked === memory.asked) {
          if (known.outcome) return known.outcome;
          event = known.event;
        } else event = this.prepare(input);
      }
    } catch (e) {
      return Promise.reject(e);
    }
    const entry: Remembered | undefined = memory ? { asked: memory.asked, event } : undefined;
    const outcome = this.enqueue(stream, event, entry && ((signed) => (entry.event = signed)));
    if (memory && entry) this.remember(memory.key, Object.assign(entry, { outcome }));
    return outcome;
  }

  /** Per-event signing signs now; batch signing fills the event in and signs it when its batch goes out. */
  private prepare(input: AuditEventInput): SignedEvent | UnsignedEvent {
    return this.options.signing === "event" ? this.sign(input) : this.fill(input);
  }

  /** Keeps `entry`; a failed send keeps only the signed event, so the next send() retries the same bytes. */
  private remember(key: string, entry: Remembered): void {
    this.remembered.delete(key);
    this.remembered.set(key, entry);
    const max = this.options.rememberEvents ?? 10_000;
    for (const oldest of this.remembered.keys()) {
      if (this.remembered.size <= max) break;
      this.remembered.delete(oldest);
    }
    entry.outcome?.catch(() => {
      if (this.remembered.get(key) === entry) delete entry.outcome;
    });
  }

  private enqueue(
    stream: string,
    event: SignedEvent | UnsignedEvent,
    onSigned?: (event: SignedEvent) => void,
  ): Promise<Receipt> {
    const bytes = canonicalBytes(event).length;
    const signed = typeof event.signature === "string";
    return new Promise<Receipt>((resolve, reject) => {
      let q = this.queues.get(stream);
      if (!q) {
        q = { items: [], bytes: 0 };
        this.queues.set(stream, q);
      }
      if (q.items.length > 0 && q.bytes + bytes > this.batch.maxBytes) this.dispatch(stream);
      q = this.queues.get(stream) ?? { items: [], bytes: 0 };
      this.queues.set(stream, q);
      q.items.push({ event, signed, ...(onSigned ? { onSigned } : {}), bytes, resolve, reject });
      q.bytes += bytes;
      if (q.items.length >= this.batch.maxEvents || q.bytes >= this.batch.maxBytes) this.dispatch(stream);
      else q.timer ??= setTimeout(() => this.dispatch(stream), this.batch.lingerMs);
    });
  }

  /** Sends everything queued now and resolves when every batch sent so far has been answered. */
  async flush(): Promise<void> {
    for (const stream of [...this.queues.keys()]) this.dispatch(stream);
    await Promise.all([...this.inflight.values()]);
  }

  /** Flushes, then refuses further events. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  /**
   * The receipt of an event the sink accepted, by its `source` and `id` — for a producer that lost the response
   * to a send. Verified like every receipt before it resolves: checkpoint signature against the pinned sink key,
   * origin, inclusion proof, and consistency with the newest checkpoint seen. Its checkpoint is the stream's
   * newest, not necessarily the one the lost response carried. Rejects with ClientError `rejected` (status 404)
   * when the sink holds no such event, and ReceiptError when the receipt does not verify.
   * @example
   *   const receipt = await client.receipt("agent://support-bot", "call-42");
   */
  async receipt(source: string, id: string, options: { producer?: string } = {}): Promise<Receipt> {
    const query = new URLSearchParams({
      source,
      id,
      ...(options.producer ? { producer: options.producer } : {}),
    });
    const res = await this.request("GET", `/v1/receipts?${query}`);
    const r = (await res.json()) as Receipt;
    if (r?.source !== source || r?.id !== id) {
      throw new ClientError("bad-response", `the sink answered with a receipt for another event`);
    }
    const verdict = verifyReceipt(r, {
      trusted: this.trusted,
      ...(this.options.deployment ? { deployment: this.options.deployment } : {}),
    });
    if (!verdict.ok) throw new ReceiptError(verdict.code, `receipt for record ${r.index}: ${verdict.detail}`);
    await this.witness.observe(r.stream, r.checkpoint, this.consistencyProof);
    return r;
  }

  /**
   * Fetches the stream's newest cosigned checkpoint and checks it: signed by the pinned sink key, cosigned by the
   * policy's quorum (AuditClientOptions.witnesses), and consistent with every checkpoint this client saw before
   * (receipts included: a fork throws WitnessError). Throws WitnessPolicyError when the sink serves none or it
   * falls short of the quorum.
   * @example
   *   const { size, witnesses } = await client.checkWitnessed("agent-actions");
   */
  async checkWitnessed(stream: string): Promise<Witnessed> {
    const policy = this.policy;
    if (!policy) throw new ClientError("bad-config", "checkWitnessed needs the witnesses option");
    const res = await this.request("GET", `/v1/streams/${encodeURIComponent(stream)}/checkpoint`);
    const body = (await res.json()) as { cosigned?: { checkpoint?: unknown } };
    const signed = body?.cosigned?.checkpoint;
    if (typeof signed !== "string")
      throw new WitnessPolicyError(`stream ${stream}: the sink serves no cosigned checkpoint`);
    const opened = openCheckpoint(signed, this.trusted);
    if (!opened.ok)
      throw new ReceiptError(
        "receipt-checkpoint-invalid",
        `cosigned checkpoint of ${stream}: ${opened.detail}`,
      );
    if (opened.checkpoint.origin !== `${opened.deployment}/${stream}`)
      throw new ReceiptError(
        "receipt-origin-mismatch",
        `cosigned checkpoint of ${stream} has origin ${opened.checkpoint.origin}`,
      );
    const verdict = checkWitnessPolicy(opened.note, policy);
    if (!verdict.met) throw new WitnessPolicyError(`stream ${stream}: ${verdict.detail}`, signed);
    await this.witness.observe(stream, signed, this.consistencyProof);
    return {
      stream,
      size: opened.checkpoint.size,
      witnesses: verdict.signed.map((w) => ({ name: w.name, time: w.time })),
      checkpoint: signed,
    };
  }

  /**
   * Waits until the receipt's record is covered by a checkpoint the policy's witnesses cosigned (size above its
   * index), polling checkWitnessed every `pollMs` (default 1 s) for at most `timeoutMs` (default 60 s; then
   * WitnessPolicyError). The cosigned checkpoint is checked consistent with the receipt's own.
   */
  async waitWitnessed(
    receipt: Receipt,
    options: { timeoutMs?: number; pollMs?: number } = {},
  ): Promise<Witnessed> {
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    await this.witness.observe(receipt.stream, receipt.checkpoint, this.consistencyProof);
    for (;;) {
      let last: unknown;
      try {
        const w = await this.checkWitnessed(receipt.stream);
        if (w.size > receipt.index) return w;
        last = new WitnessPolicyError(
          `stream ${receipt.stream}: the newest cosigned checkpoint (size ${w.size}) does not cover record ${receipt.index} yet`,
          w.checkpoint,
        );
      } catch (e) {
        if (!(e instanceof WitnessPolicyError)) throw e;
        last = e;
      }
      if (Date.now() + (options.pollMs ?? 1000) > deadline) throw last;
      await sleep(options.pollMs ?? 1000);
    }
  }

  /**
   * The receipt of an accepted event as a c2sp.org/tlog-proof (docs/FORMAT.md §9a) — the text to store as
   * `<name>.tlog-proof` beside the event, verifiable offline with `auditsink verify-proof` or core's
   * verifyTlogProof. Verified like receipt() before it resolves. A receipt already held converts without a
   * request: `receiptTlogProof(receipt)`.
   * @example
   *   await writeFile("call-42.tlog-proof", await client.receiptProof("agent://support-bot", "call-42"));
   */
  async receiptProof(source: string, id: string, options: { producer?: string } = {}): Promise<string> {
    const query = new URLSearchParams({
      source,
      id,
      ...(options.producer ? { producer: options.producer } : {}),
      format: "tlog-proof",
    });
    const text = await (await this.request("GET", `/v1/receipts?${query}`)).text();
    const verdict = verifyTlogProof(text, {
      trusted: this.trusted,
      ...(this.options.deployment ? { deployment: this.options.deployment } : {}),
    });
    if (!verdict.ok)
      throw new ReceiptError(verdict.code, `tlog-proof for ${source} ${id}: ${verdict.detail}`);
    const r = verdict.receipt!;
    if (r.source !== source || r.id !== id) {
      throw new ClientError("bad-response", `the sink answered with a proof for another event`);
    }
    await this.witness.observe(r.stream, r.checkpoint, this.consistencyProof);
    return text;
  }

  /** Fetches the stream's current checkpoint and checks it against the newest seen (a witness check). */
  async checkLog(stream: string): Promise<string> {
    const res = await this.request("GET", `/v1/streams/${encodeURIComponent(stream)}/checkpoint`);
    const text = await res.text();
    const signed = res.headers.get("content-type")?.includes("json")
      ? (JSON.parse(text) as { checkpoint?: string }).checkpoint
      : text;
    if (typeof signed !== "string")
      throw new ClientError("bad-response", "the checkpoint response has no checkpoint");
    await this.witness.observe(stream, signed, this.consistencyProof);
    return signed;
  }

  private dispatch(stream: string): void {
    const q = this.queues.get(stream);
    if (!q || q.items.length === 0) return;
    if (q.timer) clearTimeout(q.timer);
    this.queues.delete(stream);
    const batch = q.items;
    try {
      this.signPending(batch);
    } catch (e) {
      for (const p of batch) p.reject(e);
      return;
    }
    const previous = this.inflight.get(stream) ?? Promise.resolve();
    const run = previous.then(() => this.sendBatch(stream, batch));
    this.inflight.set(stream, run);
    void run.then(() => {
      if (this.inflight.get(stream) === run) this.inflight.delete(stream);
    });
  }

  /**
   * Signs the batch's events that wait for a signature: together as one signed batch when there are several
   * (split at MAX_SIGNED_BATCH_EVENTS), a lone one on its own. An id queued twice with other content is signed on
   * its own (a signed batch names each event once); the sink then refuses the request as id-conflict.
   */
  private signPending(batch: Pending[]): void {
    const waiting: Pending[] = [];
    const ids = new Set<string>();
    for (const p of batch) {
      if (p.signed) continue;
      const key = eventKey(p.event as SignedEvent);
      if (ids.has(key)) this.signed(p, signEvent(p.event, this.options.producerKey));
      else {
        ids.add(key);
        waiting.push(p);
      }
    }
    for (let at = 0; at < waiting.length; at += MAX_SIGNED_BATCH_EVENTS) {
      const part = waiting.slice(at, at + MAX_SIGNED_BATCH_EVENTS);
      const signed =
        part.length === 1
          ? [signEvent(part[0]!.event, this.options.producerKey)]
          : signBatch(
              part.map((p) => p.event),
              this.options.producerKey,
            );
      for (const [i, p] of part.entries()) this.signed(p, signed[i]!);
    }
  }

  private signed(p: Pending, event: SignedEvent): void {
    p.event = event;
    p.signed = true;
    p.onSigned?.(event);
  }

  /** Never rejects: each event's promise carries its own outcome. */
  private async sendBatch(stream: string, batch: Pending[]): Promise<void> {
    let receipts: unknown;
    let inline: { from: number; to: number; proof: string[] } | undefined;
    try {
      // Ask for the consistency proof from the newest checkpoint seen, so witnessing needs no second request
      // (and no access to the read API, which on AWS is for auditors).
      // Compact receipts (FORMAT.md §9b): the checkpoint and the proof path the batch shares travel once.
      const known = this.witness.newestSize(stream);
      const query = known ? `?receipts=compact&consistencyFrom=${known}` : "?receipts=compact";
      const res = await this.request("POST", `/v1/streams/${encodeURIComponent(stream)}/events${query}`, {
        events: batch.map((p) => p.event),
      });
      const body = (await res.json()) as { consistency?: typeof inline };
      const answer = receiptsOfAnswer(body);
      if (!answer.ok) throw new ClientError("bad-response", `the sink's answer: ${answer.detail}`);
      receipts = answer.receipts;
      if (body.consistency && Array.isArray(body.consistency.proof)) inline = body.consistency;
    } catch (e) {
      for (const p of batch) p.reject(e);
      return;
    }
    const proofs: ConsistencySource = (s, from, to) =>
      inline && inline.from === from && inline.to === to
        ? Promise.resolve(inline.proof)
        : this.consistencyProof(s, from, to);
    const byKey = new Map<string, Receipt>();
    for (const r of receipts as Receipt[]) byKey.set(eventKey(r), r);
    const observed = new Map<string, Promise<void>>();
    // A batch's receipts share their checkpoint: its signatures are verified once for all of them.
    const opened = new Map<string, CheckpointVerdict>();
    await Promise.all(
      batch.map(async (p) => {
        try {
          const r = byKey.get(eventKey(p.event as SignedEvent));
          if (!r || r.stream !== stream) {
            throw new ReceiptError("receipt-missing", `no receipt for event ${p.event.source} ${p.event.id}`);
          }
          const verdict = verifyReceipt(r, {
            trusted: this.trusted,
            opened,
            ...(this.options.deployment ? { deployment: this.options.deployment } : {}),
          });
          if (!verdict.ok)
            throw new ReceiptError(verdict.code, `receipt for record ${r.index}: ${verdict.detail}`);
          let seen = observed.get(r.checkpoint);
          if (!seen) {
            seen = this.witness.observe(stream, r.checkpoint, proofs);
            observed.set(r.checkpoint, seen);
          }
          await seen;
          p.resolve(r);
        } catch (e) {
          p.reject(e);
        }
      }),
    );
  }

  private readonly consistencyProof = async (stream: string, from: number, to: number): Promise<string[]> => {
    const res = await this.request(
      "GET",
      `/v1/streams/${encodeURIComponent(stream)}/proofs/consistency?from=${from}&to=${to}`,
    );
    const body = (await res.json()) as { proof?: unknown };
    if (!Array.isArray(body.proof))
      throw new ClientError("bad-response", "the consistency response has no proof");
    return body.proof as string[];
  };

  /**
   * One request with retries: network errors, timeouts, 5xx and 429 are retried with backoff and jitter (the
   * body is the same signed events each time, so a retry can only get the original receipts back).
   */
  private async request(method: "GET" | "POST", path: string, body?: unknown): Promise<Response> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let lastError: unknown;
    let retryAfter = 0;
    for (let attempt = 1; attempt <= this.retry.maxAttempts; attempt++) {
      if (attempt > 1) await sleep(Math.max(backoffDelay(attempt - 1, this.retry), retryAfter));
      let res: Response;
      try {
        res = await this.fetch(`${this.endpoint}${path}`, {
          method,
          headers: {
            accept: "application/json",
            ...(payload ? { "content-type": "application/json" } : {}),
            ...this.options.headers,
          },
          ...(payload ? { body: payload } : {}),
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
        });
      } catch (cause) {
        lastError = cause;
        retryAfter = 0;
        continue;
      }
      if (res.ok) return res;
      const problem = await res.json().catch(() => undefined);
      const detail = (problem as { detail?: string } | undefined)?.detail ?? res.statusText;
      if (res.status === 429 || res.status >= 500) {
        lastError = new ClientError("unavailable", `${method} ${path}: ${res.status} ${detail}`, {
          status: res.status,
          problem,
        });
        retryAfter = retryAfterMs(res.headers.get("retry-after"), this.retry.maxDelayMs);
        continue;
      }
      throw new ClientError("rejected", `${method} ${path}: ${res.status} ${detail}`, {
        status: res.status,
        problem,
      });
    }
    if (lastError instanceof ClientError) throw lastError;
    throw new ClientError(
      "unavailable",
      `${method} ${path}: no answer after ${this.retry.maxAttempts} attempts`,
      {},
      { cause: lastError },
    );
  }
}

/** Honours a Retry-After of whole seconds on 429/503, capped at the retry policy's largest delay. */
function retryAfterMs(header: string | null, max: number): number {
  const seconds = Number(header);
  return header && Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds * 1000, max) : 0;
}
