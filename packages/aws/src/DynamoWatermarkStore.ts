/**
 * Where the scheduled verifier stopped: per stream, the state of its last verified prefix (core
 * VerifierState), a cursor naming the stream to start the next run with, and when each producer was last
 * heard from. Watermarks only move forward.
 */

import type { VerifierState } from "@auditsink/core";
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { storeFailure } from "./errors.ts";
import { keys } from "./ledger-table.ts";

export class DynamoWatermarkStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
  ) {}

  async get(stream: string): Promise<VerifierState | undefined> {
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.table, Key: keys.watermark(stream), ConsistentRead: true }),
      );
      return out.Item?.state as VerifierState | undefined;
    } catch (e) {
      throw storeFailure(`GetItem watermark ${stream}`, e);
    }
  }

  /** Stores `state` unless a watermark at least as far along is already stored. */
  async put(stream: string, state: VerifierState, verifiedAt: string): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...keys.watermark(stream), size: state.size, state, verifiedAt },
          ConditionExpression: "attribute_not_exists(pk) OR #size <= :size",
          ExpressionAttributeNames: { "#size": "size" },
          ExpressionAttributeValues: { ":size": state.size },
        }),
      );
    } catch (e) {
      if (
        e instanceof ConditionalCheckFailedException ||
        (e as Error).name === "ConditionalCheckFailedException"
      )
        return;
      throw storeFailure(`PutItem watermark ${stream}`, e);
    }
  }

  /** The stream the next verifier run starts with (after one that ran out of time). */
  async cursor(): Promise<string | undefined> {
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.table, Key: keys.verifierCursor(), ConsistentRead: true }),
      );
      return out.Item?.stream as string | undefined;
    } catch (e) {
      throw storeFailure("GetItem verifier cursor", e);
    }
  }

  async setCursor(stream: string | undefined): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...keys.verifierCursor(), ...(stream ? { stream } : {}) },
        }),
      );
    } catch (e) {
      throw storeFailure("PutItem verifier cursor", e);
    }
  }

  /** Newest `received` time per producer the verifier has read. */
  async lastSeen(): Promise<Record<string, string>> {
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.table, Key: keys.verifierHeartbeats(), ConsistentRead: true }),
      );
      return (out.Item?.lastSeen as Record<string, string> | undefined) ?? {};
    } catch (e) {
      throw storeFailure("GetItem verifier heartbeats", e);
    }
  }

  /** Replaces the last-seen map (the verifier merges before it writes; one verifier runs at a time). */
  async setLastSeen(lastSeen: Record<string, string>): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({ TableName: this.table, Item: { ...keys.verifierHeartbeats(), lastSeen } }),
      );
    } catch (e) {
      throw storeFailure("PutItem verifier heartbeats", e);
    }
  }
}
