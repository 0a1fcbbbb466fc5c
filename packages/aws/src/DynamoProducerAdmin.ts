/**
 * Producers and their keys in the ledger table: the ProducerRegistry ingest reads, and the ProducerAdmin the
 * HTTP app writes. A key item carries its producer's stream scopes so authenticating an event is one read;
 * found keys are cached for a few seconds per Lambda container, so a revocation takes effect within that time
 * (unknown keys are not cached: a new registration works at once).
 */
import type { KeyObject } from "node:crypto";
import {
  keyAlgorithm,
  keyFingerprint,
  type ProducerInfo,
  type ProducerKey,
  type ProducerStore,
  publicKeyFromSpki,
  StoreError,
  spkiDer,
} from "@auditsink/core";
import { ConditionalCheckFailedException, TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { storeFailure } from "./errors.ts";
import { indexes, keys, queryIndex } from "./ledger-table.ts";

interface KeyItem {
  keyId: string;
  producer: string;
  publicKey: string;
  algorithm: "ed25519" | "ecdsa-p256";
  streams: string[];
  createdAt: string;
  revokedAt?: string;
}

interface ProducerItem {
  id: string;
  streams: string[];
  heartbeatSeconds?: number;
  keyIds: string[];
  createdAt: string;
}

export interface DynamoProducerAdminOptions {
  /** How long a key lookup is reused (default 0: every lookup reads the table). */
  cacheSeconds?: number;
  now?: () => Date;
}

export class DynamoProducerAdmin implements ProducerStore {
  private readonly cache = new Map<string, { at: number; key: ProducerKey }>();
  private readonly cacheMs: number;
  private readonly now: () => Date;

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
    options: DynamoProducerAdminOptions = {},
  ) {
    this.cacheMs = (options.cacheSeconds ?? 0) * 1000;
    this.now = options.now ?? (() => new Date());
  }

  async key(keyId: string): Promise<ProducerKey | undefined> {
    const cached = this.cache.get(keyId);
    if (cached && Date.now() - cached.at < this.cacheMs) return cached.key;
    let item: KeyItem | undefined;
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.table, Key: keys.producerKey(keyId), ConsistentRead: true }),
      );
      item = out.Item as KeyItem | undefined;
    } catch (e) {
      throw storeFailure(`GetItem key ${keyId}`, e);
    }
    const key = item && {
      keyId: item.keyId,
      publicKey: publicKeyFromSpki(item.publicKey),
      producer: item.producer,
      streams: item.streams,
      revoked: item.revokedAt !== undefined,
    };
    // Only found keys are cached: a key registered through another container must work at once.
    if (this.cacheMs > 0 && key) this.cache.set(keyId, { at: Date.now(), key });
    return key;
  }

  async register(input: {
    id: string;
    publicKey: KeyObject;
    streams: string[];
    heartbeatSeconds?: number;
  }): Promise<ProducerInfo> {
    const keyId = keyFingerprint(input.publicKey);
    const now = this.now().toISOString();
    const keyItem: KeyItem = {
      keyId,
      producer: input.id,
      publicKey: spkiDer(input.publicKey).toString("base64"),
      algorithm: keyAlgorithm(input.publicKey),
      streams: input.streams,
      createdAt: now,
    };
    try {
      await this.doc.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName: this.table,
                Item: { ...keys.producerKey(keyId), ...keyItem },
                ConditionExpression: "attribute_not_exists(pk)",
              },
            },
            {
              Update: {
                TableName: this.table,
                Key: keys.producer(input.id),
                UpdateExpression:
                  "SET id = :id, streams = :streams, keyIds = list_append(if_not_exists(keyIds, :none), :key), " +
                  "createdAt = if_not_exists(createdAt, :now), gsi1pk = :g, gsi1sk = :id" +
                  (input.heartbeatSeconds !== undefined
                    ? ", heartbeatSeconds = :hb"
                    : " REMOVE heartbeatSeconds"),
                ExpressionAttributeValues: {
                  ":id": input.id,
                  ":streams": input.streams,
                  ":none": [],
                  ":key": [keyId],
                  ":now": now,
                  ":g": indexes.producers,
                  ...(input.heartbeatSeconds !== undefined ? { ":hb": input.heartbeatSeconds } : {}),
                },
              },
            },
          ],
        }),
      );
    } catch (e) {
      if (e instanceof TransactionCanceledException || (e as Error).name === "TransactionCanceledException") {
        const reasons = (e as TransactionCanceledException).CancellationReasons ?? [];
        if (reasons[0]?.Code === "ConditionalCheckFailed")
          throw new StoreError("conflict", `key ${keyId} is already registered`, { cause: e });
      }
      throw storeFailure(`register producer ${input.id}`, e);
    }
    const info = await this.info(input.id);
    // The producer's other keys carry its stream scopes too: keep them in step with the new registration.
    for (const k of info!.keys) {
      if (k.keyId !== keyId) await this.updateKey(k.keyId, "SET streams = :s", { ":s": input.streams });
    }
    this.cache.clear();
    return (await this.info(input.id))!;
  }

  async revoke(id: string, keyId?: string): Promise<ProducerInfo> {
    await this.revokeKeys(id, keyId, this.now().toISOString());
    return (await this.info(id))!;
  }

  /** One conditional update per key (`revokedAt` not set yet): of concurrent revocations one wins each key. */
  async revokeKeys(id: string, keyId: string | undefined, at: string): Promise<string[]> {
    const producer = await this.producerItem(id);
    if (!producer) throw new StoreError("conflict", `no producer ${id}`);
    if (keyId !== undefined && !producer.keyIds.includes(keyId))
      throw new StoreError("conflict", `producer ${id} has no key ${keyId}`);
    const revoked: string[] = [];
    for (const k of keyId !== undefined ? [keyId] : producer.keyIds) {
      try {
        await this.doc.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.producerKey(k),
            UpdateExpression: "SET revokedAt = :at",
            ConditionExpression: "attribute_exists(pk) AND attribute_not_exists(revokedAt)",
            ExpressionAttributeValues: { ":at": at },
          }),
        );
        revoked.push(k);
      } catch (e) {
        if (!isConditionFailure(e)) throw storeFailure(`UpdateItem key ${k}`, e);
      }
      this.cache.delete(k);
    }
    return revoked;
  }

  /** Deletes the key item and takes the key off its producer (the producer item too when it was the only key). */
  async unregister(id: string, keyId: string): Promise<void> {
    const producer = await this.producerItem(id);
    const at = producer?.keyIds.indexOf(keyId) ?? -1;
    const deleteKey = {
      Delete: {
        TableName: this.table,
        Key: keys.producerKey(keyId),
        ConditionExpression: "attribute_not_exists(pk) OR producer = :p",
        ExpressionAttributeValues: { ":p": id },
      },
    };
    const fromProducer =
      at < 0
        ? []
        : producer!.keyIds.length === 1
          ? [
              {
                Delete: {
                  TableName: this.table,
                  Key: keys.producer(id),
                  ConditionExpression: "size(keyIds) = :one AND keyIds[0] = :k",
                  ExpressionAttributeValues: { ":one": 1, ":k": keyId },
                },
              },
            ]
          : [
              {
                Update: {
                  TableName: this.table,
                  Key: keys.producer(id),
                  UpdateExpression: `REMOVE keyIds[${at}]`,
                  ConditionExpression: `keyIds[${at}] = :k`,
                  ExpressionAttributeValues: { ":k": keyId },
                },
              },
            ];
    try {
      await this.doc.send(new TransactWriteCommand({ TransactItems: [deleteKey, ...fromProducer] }));
    } catch (e) {
      throw storeFailure(`unregister key ${keyId}`, e);
    }
    this.cache.delete(keyId);
  }

  async list(): Promise<ProducerInfo[]> {
    const out: ProducerInfo[] = [];
    try {
      for await (const item of queryIndex(this.doc, this.table, indexes.producers)) {
        out.push(await this.describe(item as unknown as ProducerItem));
      }
    } catch (e) {
      if (e instanceof StoreError) throw e;
      throw storeFailure("Query producers", e);
    }
    return out;
  }

  /** One producer as an operator sees it, or undefined. */
  async info(id: string): Promise<ProducerInfo | undefined> {
    const item = await this.producerItem(id);
    return item && this.describe(item);
  }

  private async producerItem(id: string): Promise<ProducerItem | undefined> {
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.table, Key: keys.producer(id), ConsistentRead: true }),
      );
      return out.Item as ProducerItem | undefined;
    } catch (e) {
      throw storeFailure(`GetItem producer ${id}`, e);
    }
  }

  private async describe(p: ProducerItem): Promise<ProducerInfo> {
    const items = new Map<string, KeyItem>();
    try {
      for (let i = 0; i < p.keyIds.length; i += 100) {
        const out = await this.doc.send(
          new BatchGetCommand({
            RequestItems: {
              [this.table]: {
                Keys: p.keyIds.slice(i, i + 100).map((k) => keys.producerKey(k)),
                ConsistentRead: true,
              },
            },
          }),
        );
        for (const k of out.Responses?.[this.table] ?? []) items.set(k.keyId as string, k as KeyItem);
      }
    } catch (e) {
      throw storeFailure(`BatchGetItem keys of ${p.id}`, e);
    }
    return {
      id: p.id,
      streams: p.streams,
      ...(p.heartbeatSeconds !== undefined ? { heartbeatSeconds: p.heartbeatSeconds } : {}),
      keys: p.keyIds.flatMap((k) => {
        const item = items.get(k);
        if (!item) return [];
        return [
          {
            keyId: item.keyId,
            publicKey: item.publicKey,
            algorithm: item.algorithm,
            createdAt: item.createdAt,
            ...(item.revokedAt ? { revokedAt: item.revokedAt } : {}),
          },
        ];
      }),
      createdAt: p.createdAt,
    };
  }

  private async updateKey(keyId: string, expression: string, values: Record<string, unknown>): Promise<void> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: keys.producerKey(keyId),
          UpdateExpression: expression,
          ExpressionAttributeValues: values,
          ConditionExpression: "attribute_exists(pk)",
        }),
      );
    } catch (e) {
      throw storeFailure(`UpdateItem key ${keyId}`, e);
    }
  }
}

function isConditionFailure(e: unknown): boolean {
  return (
    e instanceof ConditionalCheckFailedException || (e as Error).name === "ConditionalCheckFailedException"
  );
}
