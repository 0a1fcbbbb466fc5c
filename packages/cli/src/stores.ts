/**
 * Read-only ObjectStores for the places an auditor verifies from: a data directory or evidence bundle on disk
 * (@auditsink/local DirectoryObjects, the sink's own reads), and an S3 bucket (S3ReadStore.ts, loaded only for
 * s3:// sources). They implement only the read half of core's ObjectStore port; a write is refused, so
 * verification can never change what it checks.
 */
import type { ObjectStore } from "@auditsink/core";
import { refuseWrite } from "@auditsink/local";

export abstract class ReadOnlyStore implements ObjectStore {
  putIfAbsent(key: string): Promise<boolean> {
    return refuseWrite(key);
  }
  abstract get(key: string): Promise<Uint8Array | undefined>;
  abstract list(prefix: string, options?: { startAfter?: string; limit?: number }): Promise<string[]>;
}

export interface S3Location {
  bucket: string;
  /** Key prefix the sink's objects live under ("" or ending in "/"). */
  prefix: string;
}

/** Parses `s3://bucket[/prefix]`. */
export function parseS3Url(url: string): S3Location | undefined {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) return undefined;
  const prefix = (m[2] ?? "").replace(/^\/+|\/+$/g, "");
  return { bucket: m[1]!, prefix: prefix ? `${prefix}/` : "" };
}

export interface S3ReadOptions {
  /** Endpoint override for S3-compatible stores and emulators; implies path-style addressing. */
  endpoint?: string;
  region?: string;
  /**
   * Credentials; default: the SDK's chain (environment, profile, instance role) — give it a read-only identity.
   * Typed here rather than with the SDK's types: `@aws-sdk/client-s3` is an optional peer, absent from an
   * auditor's offline install, and these declarations must compile there too.
   */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}
