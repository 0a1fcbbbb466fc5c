/** The S3 half of stores.ts: ListObjectsV2 and GetObject under an optional prefix, nothing else. */

import { StoreError } from "@auditsink/core";
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { ReadOnlyStore, type S3Location, type S3ReadOptions } from "./stores.ts";

/** Reads the sink's objects from a bucket with ListObjectsV2 and GetObject, and nothing else. */
export class S3ReadStore extends ReadOnlyStore {
  private readonly s3: S3Client;

  constructor(
    readonly location: S3Location,
    options: S3ReadOptions = {},
  ) {
    super();
    this.s3 = new S3Client({
      region: options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1",
      ...(options.endpoint ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      const out = await this.s3.send(
        new GetObjectCommand({ Bucket: this.location.bucket, Key: this.location.prefix + key }),
      );
      return out.Body ? await out.Body.transformToByteArray() : new Uint8Array();
    } catch (e) {
      if ((e as { name?: string }).name === "NoSuchKey") return undefined;
      throw new StoreError("store-failed", `GetObject ${key}`, { cause: e });
    }
  }

  async list(prefix: string, options: { startAfter?: string; limit?: number } = {}): Promise<string[]> {
    const keys: string[] = [];
    const base = this.location.prefix;
    let token: string | undefined;
    try {
      do {
        const out = await this.s3.send(
          new ListObjectsV2Command({
            Bucket: this.location.bucket,
            Prefix: base + prefix,
            ...(options.startAfter !== undefined ? { StartAfter: base + options.startAfter } : {}),
            ...(token ? { ContinuationToken: token } : {}),
            MaxKeys: Math.min(1000, options.limit ?? 1000),
          }),
        );
        for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key.slice(base.length));
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token && (options.limit === undefined || keys.length < options.limit));
    } catch (e) {
      throw new StoreError("store-failed", `ListObjectsV2 ${prefix}`, { cause: e });
    }
    return options.limit === undefined ? keys : keys.slice(0, options.limit);
  }
}
