/**
 * The write-once ObjectStore on S3: a versioned bucket with Object Lock, written only with create-only puts.
 *
 * Every put carries `If-None-Match: *` (S3 conditional writes: 412 when the key has a current version), a
 * SHA-256 checksum S3 checks before it stores the bytes, and Object Lock COMPLIANCE retention until now +
 * the retention floor. Nothing here deletes, overwrites or changes the retention of an object.
 * Because Object Lock still allows a delete marker or a new version over a key, the verifier lists every
 * version (`versions`) and their lock fields (`lock`), not just the newest.
 */
import { createHash } from "node:crypto";
import type { ObjectStore } from "@auditsink/core";
import {
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  type ListObjectVersionsCommandOutput,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { MIN_RETENTION_DAYS } from "./config.ts";
import { awsErrorName, storeFailure } from "./errors.ts";

const DAY_MS = 86_400_000;

/** One stored version of a key, or a delete marker. */
export interface ObjectVersion {
  key: string;
  versionId: string;
  isLatest: boolean;
  deleteMarker: boolean;
  lastModified?: Date;
}

/** Where a version listing resumes (S3 `KeyMarker` and `VersionIdMarker`). */
export interface VersionMarker {
  keyMarker?: string;
  versionMarker?: string;
}

/** The Object Lock fields of one version, as HeadObject reports them. */
export interface ObjectLock {
  mode?: string;
  retainUntil?: Date;
  legalHold?: string;
  lastModified?: Date;
}

export interface S3WriteOnceStoreOptions {
  /** Retention floor in days (never below 180). */
  retentionDays?: number;
  /** The clock retention dates are computed from. */
  now?: () => Date;
}

export class S3WriteOnceStore implements ObjectStore {
  readonly retentionDays: number;
  private readonly now: () => Date;

  constructor(
    private readonly s3: S3Client,
    readonly bucket: string,
    options: S3WriteOnceStoreOptions = {},
  ) {
    this.retentionDays = Math.max(options.retentionDays ?? MIN_RETENTION_DAYS, MIN_RETENTION_DAYS);
    this.now = options.now ?? (() => new Date());
  }

  /** Create-only put: true when this call created the object, false when the key already had a version. */
  async putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean> {
    const body = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    try {
      await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          IfNoneMatch: "*",
          ChecksumAlgorithm: "SHA256",
          ChecksumSHA256: createHash("sha256").update(body).digest("base64"),
          ContentType: key.endsWith(".json") ? "application/json" : "text/plain; charset=utf-8",
          ObjectLockMode: "COMPLIANCE",
          ObjectLockRetainUntilDate: new Date(this.now().getTime() + this.retentionDays * DAY_MS),
        }),
      );
      return true;
    } catch (e) {
      const { name, status } = awsErrorName(e);
      if (status === 412 || name === "PreconditionFailed") return false;
      // 409 ConditionalRequestConflict: a concurrent conditional write to the key is in flight. Whoever wins,
      // the key is taken or about to be; the caller's retry will see 412 or the object.
      throw storeFailure(`PutObject ${key}`, e);
    }
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      const out = await this.s3.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, ChecksumMode: "ENABLED" }),
      );
      return out.Body ? await out.Body.transformToByteArray() : new Uint8Array();
    } catch (e) {
      const { name, status } = awsErrorName(e);
      if (name === "NoSuchKey" || status === 404) return undefined;
      throw storeFailure(`GetObject ${key}`, e);
    }
  }

  async list(prefix: string, options: { startAfter?: string; limit?: number } = {}): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    try {
      do {
        const want = options.limit === undefined ? 1000 : Math.min(1000, options.limit - keys.length);
        const out = await this.s3.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            MaxKeys: want,
            ...(token ? { ContinuationToken: token } : {}),
            ...(!token && options.startAfter !== undefined ? { StartAfter: options.startAfter } : {}),
          }),
        );
        for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key);
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token && (options.limit === undefined || keys.length < options.limit));
    } catch (e) {
      throw storeFailure(`ListObjectsV2 ${prefix}`, e);
    }
    return keys;
  }

  /**
   * Every version and delete marker under `prefix`, in key order (S3 lists newest version first per key).
   * `after` starts the listing at the first key strictly after it (S3 `KeyMarker`): keys sort by index, so a
   * verifier lists only what follows its watermark, whatever the archive's size.
   */
  async *versions(prefix: string, options: { after?: string } = {}): AsyncGenerator<ObjectVersion> {
    let marker: VersionMarker = options.after ? { keyMarker: options.after } : {};
    for (;;) {
      const page = await this.versionPage(prefix, marker);
      yield* page.versions;
      if (!page.next) return;
      marker = page.next;
    }
  }

  /**
   * One page (at most `maxKeys`, S3's limit 1,000) of the version listing under `prefix` from `marker` on, in
   * key order, and the marker of the next page when there is one (a resumable listing keeps it).
   */
  async versionPage(
    prefix: string,
    marker: VersionMarker = {},
    maxKeys = 1000,
  ): Promise<{ versions: ObjectVersion[]; next?: VersionMarker }> {
    let out: ListObjectVersionsCommandOutput;
    try {
      out = await this.s3.send(
        new ListObjectVersionsCommand({
          Bucket: this.bucket,
          Prefix: prefix,
          MaxKeys: maxKeys,
          ...(marker.keyMarker ? { KeyMarker: marker.keyMarker } : {}),
          ...(marker.keyMarker && marker.versionMarker ? { VersionIdMarker: marker.versionMarker } : {}),
        }),
      );
    } catch (e) {
      throw storeFailure(`ListObjectVersions ${prefix}`, e);
    }
    const versions: ObjectVersion[] = [
      ...(out.Versions ?? []).map((v) => ({ ...v, deleteMarker: false })),
      ...(out.DeleteMarkers ?? []).map((v) => ({ ...v, deleteMarker: true })),
    ].map((v) => ({
      key: v.Key ?? "",
      versionId: v.VersionId ?? "null",
      isLatest: v.IsLatest ?? false,
      deleteMarker: v.deleteMarker,
      ...(v.LastModified ? { lastModified: v.LastModified } : {}),
    }));
    // Stable: within a key, versions keep S3's newest-first order, delete markers after them.
    versions.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    if (!out.IsTruncated || !out.NextKeyMarker) return { versions };
    return {
      versions,
      next: {
        keyMarker: out.NextKeyMarker,
        ...(out.NextVersionIdMarker ? { versionMarker: out.NextVersionIdMarker } : {}),
      },
    };
  }

  /** The bytes of one version of `key` (undefined when that version does not exist). */
  async getVersion(key: string, versionId: string): Promise<Uint8Array | undefined> {
    try {
      const out = await this.s3.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          VersionId: versionId,
          ChecksumMode: "ENABLED",
        }),
      );
      return out.Body ? await out.Body.transformToByteArray() : new Uint8Array();
    } catch (e) {
      const { name, status } = awsErrorName(e);
      if (name === "NoSuchKey" || name === "NoSuchVersion" || status === 404) return undefined;
      throw storeFailure(`GetObject ${key} ${versionId}`, e);
    }
  }

  /**
   * The lock fields of one version. HeadObject is used rather than GetObjectRetention because it returns
   * mode, date and legal hold in one call (and moto lacks GetObjectRetention, see docs/AWS.md).
   */
  async lock(key: string, versionId: string): Promise<ObjectLock> {
    try {
      const out = await this.s3.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: key, VersionId: versionId }),
      );
      return {
        ...(out.ObjectLockMode ? { mode: out.ObjectLockMode } : {}),
        ...(out.ObjectLockRetainUntilDate ? { retainUntil: out.ObjectLockRetainUntilDate } : {}),
        ...(out.ObjectLockLegalHoldStatus ? { legalHold: out.ObjectLockLegalHoldStatus } : {}),
        ...(out.LastModified ? { lastModified: out.LastModified } : {}),
      };
    } catch (e) {
      throw storeFailure(`HeadObject ${key} ${versionId}`, e);
    }
  }

  /** Whether Object Lock is enabled on the bucket (the verifier alerts when it is not). */
  async lockEnabled(): Promise<boolean> {
    try {
      const out = await this.s3.send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }));
      return out.ObjectLockConfiguration?.ObjectLockEnabled === "Enabled";
    } catch (e) {
      if (awsErrorName(e).name === "ObjectLockConfigurationNotFoundError") return false;
      throw storeFailure("GetObjectLockConfiguration", e);
    }
  }

  /** Whether a current version exists at `key` (HEAD costs a tenth of a PUT). */
  async exists(key: string): Promise<boolean> {
    try {
      await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (e) {
      const { name, status } = awsErrorName(e);
      if (name === "NotFound" || status === 404) return false;
      throw storeFailure(`HeadObject ${key}`, e);
    }
  }
}
