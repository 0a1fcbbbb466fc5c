/**
 * `auditsink producer create|list|revoke`, against a running sink's API (`--url`, admin bearer token) or a data
 * directory the sink is not running on (`--data`, through packages/local; the data directory lock refuses a
 * second writer). Either way the change is recorded as an event in the `_system` stream.
 */
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  generateKeyPair,
  type KeyAlgorithm,
  keyFingerprint,
  type ProducerInfo,
  spkiDer,
} from "@auditsink/core";
import { openLocalSink } from "@auditsink/local";
import { CliError } from "./errors.ts";

export interface Target {
  url?: string;
  adminToken?: string;
  data?: string;
}

export async function api(
  target: Target,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<unknown> {
  const url = `${target.url!.replace(/\/+$/, "")}${path}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: {
        accept: "application/json",
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
        ...(target.adminToken ? { authorization: `Bearer ${target.adminToken}` } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (cause) {
    throw new CliError("source-unreadable", `cannot reach ${url}`, { cause });
  }
  const text = await res.text();
  const json = text ? (JSON.parse(text) as unknown) : undefined;
  if (!res.ok) {
    const p = json as { title?: string; detail?: string } | undefined;
    throw new CliError(
      "request-failed",
      `${method} ${path}: ${res.status} ${p?.detail ?? p?.title ?? res.statusText}`,
    );
  }
  return json;
}

function requireTarget(target: Target): void {
  if (!target.url === !target.data) throw new CliError("usage", "give exactly one of --url and --data");
}

export interface CreateOptions extends Target {
  id: string;
  streams: string[];
  heartbeatSeconds?: number;
  algorithm?: KeyAlgorithm;
  /** Where the private key goes (PKCS#8 PEM, mode 0600; never overwritten). Default `<id>.key.pem`. */
  keyFile?: string;
}

export interface CreateResult {
  producer: ProducerInfo;
  keyId: string;
  keyFile: string;
}

export async function createProducer(options: CreateOptions): Promise<CreateResult> {
  requireTarget(options);
  if (options.streams.length === 0)
    throw new CliError("usage", "give the streams the producer may write (--streams)");
  const { privateKey, publicKey } = generateKeyPair(options.algorithm ?? "ed25519");
  const keyFile = options.keyFile ?? `${options.id}.key.pem`;
  // Create the key file first (exclusively, 0600): a registered key whose private half was lost is useless.
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(keyFile, "wx", 0o600);
  } catch (cause) {
    throw new CliError("usage", `cannot create ${keyFile} (it must not exist yet)`, { cause });
  }
  try {
    await fh.writeFile(privateKey.export({ type: "pkcs8", format: "pem" }) as string);
    await fh.sync();
  } finally {
    await fh.close();
  }
  const input = {
    id: options.id,
    streams: options.streams,
    ...(options.heartbeatSeconds !== undefined ? { heartbeatSeconds: options.heartbeatSeconds } : {}),
  };
  let producer: ProducerInfo;
  if (options.url) {
    producer = (await api(options, "POST", "/v1/producers", {
      ...input,
      publicKey: spkiDer(publicKey).toString("base64"),
    })) as ProducerInfo;
  } else {
    const local = await openLocalSink({ dataDir: options.data!, purpose: "auditsink producer create" });
    try {
      producer = await local.producers.register({ ...input, publicKey });
    } finally {
      await local.close();
    }
  }
  return { producer, keyId: keyFingerprint(publicKey), keyFile };
}

export async function listProducers(target: Target): Promise<ProducerInfo[]> {
  requireTarget(target);
  if (target.url)
    return ((await api(target, "GET", "/v1/producers")) as { producers: ProducerInfo[] }).producers;
  // Reading the registry file needs no lock: it is replaced atomically.
  try {
    return (
      JSON.parse(await readFile(join(target.data!, "producers.json"), "utf8")) as {
        producers: ProducerInfo[];
      }
    ).producers;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new CliError("source-unreadable", `cannot read ${target.data}/producers.json`, { cause: e });
  }
}

export async function revokeProducer(target: Target, id: string, keyId?: string): Promise<ProducerInfo> {
  requireTarget(target);
  if (target.url) {
    return (await api(
      target,
      "POST",
      `/v1/producers/${encodeURIComponent(id)}/revoke`,
      keyId ? { keyId } : undefined,
    )) as ProducerInfo;
  }
  const local = await openLocalSink({ dataDir: target.data!, purpose: "auditsink producer revoke" });
  try {
    return await local.producers.revoke(id, keyId);
  } finally {
    await local.close();
  }
}
