/**
 * `auditsink send`: events from a file or stdin (JSON lines, a JSON array / CloudEvents batch, or one JSON
 * object), or one event from flags, through the SDK's AuditClient — so every receipt is verified before it is
 * printed, and retries are idempotent.
 */
import { readFile } from "node:fs/promises";
import { AuditClient, type AuditEventInput, loadProducerKey } from "@auditsink/client";
import { formatVerifierKey, type Receipt, type SignedEvent } from "@auditsink/core";
import { CliError } from "./errors.ts";
import { api } from "./producer.ts";
import { resolveTrust, type TrustOptions } from "./trust.ts";

export interface SendOptions extends TrustOptions {
  url: string;
  keyFile: string;
  stream: string;
  source?: string;
  /** Read events from this file ("-" or absent with no --type: stdin). */
  file?: string;
  /** One event from flags. */
  type?: string;
  data?: string;
  subject?: string;
  id?: string;
  stateFile?: string;
  /** Printed on stderr when the sink key was not pinned and is taken from the sink itself. */
  warn?: (text: string) => void;
}

export function parseEvents(text: string): (AuditEventInput | SignedEvent)[] {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  try {
    if (trimmed.startsWith("[")) return JSON.parse(trimmed) as AuditEventInput[];
    try {
      const one = JSON.parse(trimmed) as AuditEventInput | { events: AuditEventInput[] };
      return "events" in one && Array.isArray(one.events) ? one.events : [one as AuditEventInput];
    } catch {
      return trimmed
        .split("\n")
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as AuditEventInput);
    }
  } catch (cause) {
    throw new CliError("usage", "the input is not JSON lines, a JSON array or a JSON object", { cause });
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** An event as read from input: drop `specversion` (the client sets it) unless the event is already signed. */
function toInput(e: AuditEventInput | SignedEvent): AuditEventInput | SignedEvent {
  if ("signature" in e && e.signature) return e as SignedEvent;
  const { specversion: _v, ...rest } = e as AuditEventInput & { specversion?: string };
  return rest;
}

export async function send(options: SendOptions): Promise<Receipt[]> {
  let events: (AuditEventInput | SignedEvent)[];
  if (options.type) {
    let data: unknown;
    try {
      data = options.data === undefined ? undefined : JSON.parse(options.data);
    } catch (cause) {
      throw new CliError("usage", "--data must be JSON", { cause });
    }
    events = [
      {
        type: options.type,
        ...(data !== undefined ? { data } : {}),
        ...(options.subject ? { subject: options.subject } : {}),
        ...(options.id ? { id: options.id } : {}),
      },
    ];
  } else {
    const text =
      options.file && options.file !== "-" ? await readFile(options.file, "utf8") : await readStdin();
    events = parseEvents(text);
  }
  if (events.length === 0) throw new CliError("usage", "no events to send");
  let sinkKeys: string[];
  const pinned = Boolean(options.keyFiles?.length || options.keys?.length);
  // The keys the sink serves are only candidates: for --fingerprint, or (with a note) when nothing is pinned.
  const served = async () =>
    ((await api({ url: options.url }, "GET", "/v1/keys")) as { keys: { verifierKey: string }[] }).keys.map(
      (k) => k.verifierKey,
    );
  const offered = pinned && !options.fingerprints?.length ? [] : await served();
  if (pinned || options.fingerprints?.length) {
    sinkKeys = (await resolveTrust(options, offered, false)).trusted.map(formatVerifierKey);
  } else {
    sinkKeys = offered;
    options.warn?.(
      "note: receipts are checked against the key the sink itself serves (GET /v1/keys); pin it with --sink-key or --fingerprint\n",
    );
  }
  const client = await AuditClient.create({
    endpoint: options.url,
    producerKey: await loadProducerKey(options.keyFile),
    sinkKey: sinkKeys,
    stream: options.stream,
    source: options.source ?? `urn:auditsink:cli:${options.stream}`,
    ...(options.stateFile ? { stateFile: options.stateFile } : {}),
  });
  try {
    return await Promise.all(events.map((e) => client.send(toInput(e))));
  } finally {
    await client.close();
  }
}
