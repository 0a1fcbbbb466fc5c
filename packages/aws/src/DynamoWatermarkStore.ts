/**
 * What the scheduled verifier keeps between runs, all in the ledger table under partitions only the verifier's
 * role may write (stacks/Verify.ts, `dynamodb:LeadingKeys`):
 *   - per stream, the state of its last verified prefix (core VerifierState): `watermark#<stream>`;
 *   - its findings, de-duplicated by id, with their acknowledgement: `finding#<id>`;
 *   - a cursor naming the stream to start the next run with, the resumable sweep's position, and when each
 *     producer was last heard from: partition `verifier`.
 * Watermarks only move forward. One verifier runs at a time (reserved concurrency 1), so the cursors are plain
 * puts.
 */

import { createHash } from "node:crypto";
import type { VerifierState } from "@auditsink/core";
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { storeFailure } from "./errors.ts";
import { indexes, keys, queryIndex } from "./ledger-table.ts";

/** What a finding is about; its id is derived from these, so the same problem found again is the same finding. */
export interface FindingSubject {
  code: string;
  stream?: string;
  at?: string | number;
}

/** How a finding was acknowledged: by an event in the `_system` stream (docs/AWS.md §Findings). */
export interface Acknowledgement {
  /** Index of the acknowledging record in `_system`. */
  index: number;
  reason: string;
  /** When the acknowledgement was recorded (the event's `time`). */
  time: string;
}

export interface StoredFinding extends FindingSubject {
  id: string;
  message: string;
  firstSeen: string;
  lastSeen: string;
  acknowledged?: Acknowledgement;
}

/** A finding's id: the first 32 hex digits of SHA-256 over code, stream and subject, NUL-separated. */
export function findingId(f: FindingSubject): string {
  return createHash("sha256")
    .update(`${f.code}\0${f.stream ?? ""}\0${f.at === undefined ? "" : String(f.at)}`)
    .digest("hex")
    .slice(0, 32);
}

/** A stream's watermark: the verified prefix's state and the newest archive keys below it. */
export interface Watermark {
  state: VerifierState;
  /** The newest segment key verified (every record in it is below `state.size`). */
  segmentKey?: string;
  /** The newest checkpoint key verified below `state.size`. */
  checkpointKey?: string;
}

/** The sweep's position in the archive's version listing (S3 KeyMarker / VersionIdMarker). */
export interface SweepCursor {
  keyMarker?: string;
  versionMarker?: string;
  /** Versions of `keyMarker` seen so far (a key's versions may span two pages). */
  versionsOfMarker?: number;
  /** When the current pass started, and when the last one finished. */
  startedAt?: string;
  completedAt?: string;
}

const isConditionFailure = (e: unknown) =>
  e instanceof ConditionalCheckFailedException || (e as Error).name === "ConditionalCheckFailedException";

export class DynamoWatermarkStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
  ) {}

  private async getItem(
    key: Record<string, string>,
    what: string,
  ): Promise<Record<string, unknown> | undefined> {
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.table, Key: key, ConsistentRead: true }),
      );
      return out.Item;
    } catch (e) {
      throw storeFailure(`GetItem ${what}`, e);
    }
  }

  private async putItem(item: Record<string, unknown>, what: string): Promise<void> {
    try {
      await this.doc.send(new PutCommand({ TableName: this.table, Item: item }));
    } catch (e) {
      throw storeFailure(`PutItem ${what}`, e);
    }
  }

  async get(stream: string): Promise<VerifierState | undefined> {
    return (await this.mark(stream))?.state;
  }

  /** The watermark with the archive keys it stands at (where the next listing of the stream starts). */
  async mark(stream: string): Promise<Watermark | undefined> {
    const item =
      (await this.getItem(keys.watermark(stream), `watermark ${stream}`)) ??
      (await this.getItem(keys.legacyWatermark(stream), `watermark ${stream}`));
    if (!item?.state) return undefined;
    return {
      state: item.state as VerifierState,
      ...(typeof item.segmentKey === "string" ? { segmentKey: item.segmentKey } : {}),
      ...(typeof item.checkpointKey === "string" ? { checkpointKey: item.checkpointKey } : {}),
    };
  }

  /** Stores `state` unless a watermark at least as far along is already stored. */
  async put(
    stream: string,
    state: VerifierState,
    verifiedAt: string,
    at: Omit<Watermark, "state"> = {},
  ): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...keys.watermark(stream), size: state.size, state, verifiedAt, ...at },
          ConditionExpression: "attribute_not_exists(pk) OR #size <= :size",
          ExpressionAttributeNames: { "#size": "size" },
          ExpressionAttributeValues: { ":size": state.size },
        }),
      );
    } catch (e) {
      if (isConditionFailure(e)) return;
      throw storeFailure(`PutItem watermark ${stream}`, e);
    }
  }

  /** The stream the next verifier run starts with (after one that ran out of time). */
  async cursor(): Promise<string | undefined> {
    return (await this.getItem(keys.verifierCursor(), "verifier cursor"))?.stream as string | undefined;
  }

  async setCursor(stream: string | undefined): Promise<void> {
    await this.putItem({ ...keys.verifierCursor(), ...(stream ? { stream } : {}) }, "verifier cursor");
  }

  async sweep(): Promise<SweepCursor> {
    return ((await this.getItem(keys.verifierSweep(), "verifier sweep"))?.cursor as SweepCursor) ?? {};
  }

  async setSweep(cursor: SweepCursor): Promise<void> {
    await this.putItem({ ...keys.verifierSweep(), cursor }, "verifier sweep");
  }

  /** Newest `received` time per producer the verifier has read. */
  async lastSeen(): Promise<Record<string, string>> {
    const item = await this.getItem(keys.verifierHeartbeats(), "verifier heartbeats");
    return (item?.lastSeen as Record<string, string> | undefined) ?? {};
  }

  /** Replaces the last-seen map (the verifier merges before it writes; one verifier runs at a time). */
  async setLastSeen(lastSeen: Record<string, string>): Promise<void> {
    await this.putItem({ ...keys.verifierHeartbeats(), lastSeen }, "verifier heartbeats");
  }

  /**
   * Records that `finding` was seen at `time`: created the first time (resolves `isNew: true`), otherwise only
   * `lastSeen` and the message move. Resolves the stored finding, with its acknowledgement if it has one.
   */
  async recordFinding(
    finding: FindingSubject & { message: string },
    time: string,
  ): Promise<{ isNew: boolean; stored: StoredFinding }> {
    const id = findingId(finding);
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: keys.finding(id),
          UpdateExpression:
            "SET #id = :id, #code = :code, #message = :message, #lastSeen = :time, " +
            "#firstSeen = if_not_exists(#firstSeen, :time), gsi1pk = :gsi, " +
            "gsi1sk = if_not_exists(gsi1sk, :sk)" +
            (finding.stream !== undefined ? ", #stream = :stream" : "") +
            (finding.at !== undefined ? ", #at = :at" : ""),
          ExpressionAttributeNames: {
            "#id": "id",
            "#code": "code",
            "#message": "message",
            "#lastSeen": "lastSeen",
            "#firstSeen": "firstSeen",
            ...(finding.stream !== undefined ? { "#stream": "stream" } : {}),
            ...(finding.at !== undefined ? { "#at": "at" } : {}),
          },
          ExpressionAttributeValues: {
            ":id": id,
            ":code": finding.code,
            ":message": finding.message,
            ":time": time,
            ":gsi": indexes.findings,
            ":sk": `${time}#${id}`,
            ...(finding.stream !== undefined ? { ":stream": finding.stream } : {}),
            ...(finding.at !== undefined ? { ":at": finding.at } : {}),
          },
          ReturnValues: "ALL_OLD",
        }),
      );
      const old = out.Attributes;
      const firstSeen = old?.firstSeen !== undefined ? String(old.firstSeen) : time;
      const stored = toFinding({ ...old, ...finding, id, lastSeen: time, firstSeen });
      return { isNew: old === undefined, stored };
    } catch (e) {
      throw storeFailure(`UpdateItem finding ${id}`, e);
    }
  }

  /**
   * Marks finding `id` acknowledged, unless it is unknown or already acknowledged. Resolves whether it changed.
   * Only the verifier calls this, after reading the acknowledgement from the verified `_system` stream.
   */
  async acknowledge(id: string, ack: Acknowledgement): Promise<boolean> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: keys.finding(id),
          UpdateExpression: "SET acknowledged = :ack",
          ConditionExpression: "attribute_exists(pk) AND attribute_not_exists(acknowledged)",
          ExpressionAttributeValues: { ":ack": ack },
        }),
      );
      return true;
    } catch (e) {
      if (isConditionFailure(e)) return false;
      throw storeFailure(`UpdateItem finding ${id}`, e);
    }
  }

  /** Producer administration's confirmation of an acknowledgement it recorded at `_system` record `index`. */
  async confirmAcknowledgement(id: string, index: number, reason: string): Promise<void> {
    await this.putItem({ ...keys.acknowledgement(id), index, reason }, `acknowledgement ${id}`);
  }

  /** The `_system` record index producer administration confirmed for finding `id`'s acknowledgement. */
  async confirmedAcknowledgement(id: string): Promise<number | undefined> {
    const item = await this.getItem(keys.acknowledgement(id), `acknowledgement ${id}`);
    return typeof item?.index === "number" ? item.index : undefined;
  }

  async finding(id: string): Promise<StoredFinding | undefined> {
    const item = await this.getItem(keys.finding(id), `finding ${id}`);
    return item ? toFinding(item) : undefined;
  }

  /** Every finding, oldest first (the report; as many items as there are findings, not records). */
  async findings(): Promise<StoredFinding[]> {
    const out: StoredFinding[] = [];
    try {
      for await (const item of queryIndex(this.doc, this.table, indexes.findings)) out.push(toFinding(item));
    } catch (e) {
      throw storeFailure("Query findings", e);
    }
    return out;
  }
}

function toFinding(item: Record<string, unknown>): StoredFinding {
  return {
    id: String(item.id),
    code: String(item.code),
    ...(item.stream !== undefined ? { stream: String(item.stream) } : {}),
    ...(item.at !== undefined ? { at: item.at as string | number } : {}),
    message: String(item.message),
    firstSeen: String(item.firstSeen),
    lastSeen: String(item.lastSeen),
    ...(item.acknowledged ? { acknowledged: item.acknowledged as Acknowledgement } : {}),
  };
}
