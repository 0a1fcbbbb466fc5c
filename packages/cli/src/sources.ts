/**
 * What a command reads from: a data directory (`<dir>/objects`, with the sink's own key, heads and producers),
 * an evidence bundle (a directory with manifest.json, see bundle.ts), or `s3://bucket[/prefix]`.
 */
import type { KeyObject } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  listStoredStreams,
  type ObjectStore,
  type ProducerInfo,
  type PublicKeyDocument,
  parseStoredJson,
  publicKeyFromSpki,
  StreamReader,
} from "@auditsink/core";
import { DirectoryObjects, dataDirObjects, LocalError } from "@auditsink/local";
import { type BundleHandle, readBundle, usableManifest } from "./bundle.ts";
import { CliError } from "./errors.ts";
import { importWithPeer } from "./optional.ts";
import { parseS3Url, type S3ReadOptions } from "./stores.ts";

export interface Source {
  kind: "data-dir" | "bundle" | "s3";
  /** The path or URL as given. */
  location: string;
  store: ObjectStore;
  /** The deployment name, when the source records it. */
  deployment?: string;
  /** Verifier key strings the source offers (candidates for --fingerprint; never trusted by themselves). */
  offeredKeys: string[];
  /** Producer public keys by key id, when the source has them: producer signatures are then re-verified. */
  producerKeys?: Map<string, KeyObject>;
  producers?: ProducerInfo[];
  bundle?: BundleHandle;
  /** The head store as core's runVerification reads it (data directories): raw values, checked there. */
  heads?: { get(stream: string): Promise<unknown>; streams(): Promise<string[]> };
  streams(): Promise<string[]>;
  /**
   * A reader of one stream's records and proofs. A bundle's reader starts at the bundle's first segment, from
   * the manifest's frontier (an invalid manifest is an error here: `verify` reports what is wrong with it).
   */
  reader(stream: string): StreamReader;
}

/** A file's bytes, or undefined when there is none; any other failure is `source-unreadable`. */
export async function readBytes(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliError("source-unreadable", `cannot read ${path}`, { cause: e });
  }
}

async function readText(path: string): Promise<string | undefined> {
  return (await readBytes(path))?.toString("utf8");
}

export function producerKeyMap(producers: readonly ProducerInfo[]): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  for (const p of producers) for (const k of p.keys) keys.set(k.keyId, publicKeyFromSpki(k.publicKey));
  return keys;
}

async function readProducers(path: string): Promise<ProducerInfo[] | undefined> {
  const text = await readText(path);
  if (text === undefined) return undefined;
  try {
    return (JSON.parse(text) as { producers: ProducerInfo[] }).producers;
  } catch (cause) {
    throw new CliError("source-unreadable", `${path} is not a producers file`, { cause });
  }
}

/** Verifier key strings in the store's public key documents (`keys/<key id>.json`, core publicKeyDocument). */
async function storedKeys(store: ObjectStore): Promise<string[]> {
  const keys: string[] = [];
  for (const key of await store.list("keys/")) {
    const bytes = await store.get(key);
    try {
      const doc = JSON.parse(Buffer.from(bytes ?? []).toString("utf8")) as PublicKeyDocument;
      if (typeof doc.verifierKey === "string") keys.push(doc.verifierKey);
    } catch {
      // Not a key document; the verifier's full walk reports objects outside the layout.
    }
  }
  return keys;
}

/**
 * The S3 client loads only for s3:// sources: it costs every other command half a second of startup, and an
 * auditor who verifies a directory or bundle offline need not install it (`@aws-sdk/client-s3` is an optional
 * peer dependency of this package).
 */
function loadS3ReadStore(): Promise<typeof import("./S3ReadStore.ts")> {
  return importWithPeer(
    () => import("./S3ReadStore.ts"),
    "@aws-sdk/client-s3",
    "reading s3:// sources needs the AWS SDK's S3 client",
  );
}

export async function openSource(location: string, s3: S3ReadOptions = {}): Promise<Source> {
  const s3Location = parseS3Url(location);
  if (location.startsWith("s3://")) {
    if (!s3Location) throw new CliError("usage", `${location} is not s3://bucket[/prefix]`);
    const { S3ReadStore } = await loadS3ReadStore();
    const store = new S3ReadStore(s3Location, s3);
    return {
      kind: "s3",
      location,
      store,
      offeredKeys: await storedKeys(store),
      streams: () => listStoredStreams(store),
      reader: (stream) => new StreamReader(store, stream),
    };
  }
  const dir = resolve(location);
  const isDir = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) throw new CliError("source-unreadable", `${location} is not a directory or s3:// URL`);
  const bundle = await readBundle(dir);
  if (bundle) {
    const producers = await readProducers(join(dir, "keys", "producers.json"));
    const keysText = (await readText(join(dir, "keys", "verifier-keys.txt"))) ?? "";
    const store = new DirectoryObjects(join(dir, "objects"));
    return {
      kind: "bundle",
      location,
      store,
      ...(bundle.manifest ? { deployment: bundle.manifest.deployment } : {}),
      offeredKeys: [
        ...keysText.split("\n").filter((l) => l.trim() && !l.startsWith("#")),
        ...(await storedKeys(store)),
      ],
      ...(producers ? { producers, producerKeys: producerKeyMap(producers) } : {}),
      bundle,
      streams: async () => (bundle.stream ? [bundle.stream] : []),
      reader: (stream) => {
        const manifest = usableManifest(bundle);
        if (stream !== manifest.stream)
          throw new CliError("not-found", `the bundle holds stream ${manifest.stream}, not ${stream}`);
        return new StreamReader(store, stream, manifest.start.size > 0 ? manifest.start : undefined);
      },
    };
  }
  const objects = join(dir, "objects");
  const hasObjects = await stat(objects).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!hasObjects) {
    throw new CliError(
      "source-unreadable",
      `${location} is neither an evidence bundle (no manifest.json) nor a data directory (no objects/)`,
    );
  }
  const store = await dataDirObjects(objects).catch((e: unknown) => {
    throw e instanceof LocalError ? new CliError("source-unreadable", e.message) : e;
  });
  const config = await readText(join(dir, "sink.json"));
  const vkey = await readText(join(dir, "keys", "verifier-key.txt"));
  const producers = await readProducers(join(dir, "producers.json"));
  return {
    kind: "data-dir",
    location,
    store,
    ...(config ? { deployment: (JSON.parse(config) as { deployment: string }).deployment } : {}),
    offeredKeys: [...(vkey ? [vkey.trim()] : []), ...(await storedKeys(store))],
    ...(producers ? { producers, producerKeys: producerKeyMap(producers) } : {}),
    heads: {
      // A head file that is not JSON by the rules it was written by (docs/FORMAT.md §3: a duplicate member, say,
      // which parsers read two ways) is handed on as its text: the verifier reports it (head-malformed).
      get: async (stream) => {
        const bytes = await readBytes(join(dir, "heads", `${stream}.json`));
        if (bytes === undefined) return undefined;
        const parsed = parseStoredJson(bytes);
        return parsed.ok ? parsed.value : bytes.toString("utf8");
      },
      streams: async () =>
        (await readdir(join(dir, "heads")).catch(() => [] as string[]))
          .filter((f) => f.endsWith(".json"))
          .map((f) => f.slice(0, -".json".length))
          .sort(),
    },
    streams: () => listStoredStreams(store),
    reader: (stream) => new StreamReader(store, stream),
  };
}
