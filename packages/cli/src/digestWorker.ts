/**
 * A verification worker: runs core's digestSegment (split, SHA-256, leaf hash, parse, producer signature) on
 * segments the main thread hands it. The main thread's StreamVerifier keeps every order-dependent check.
 */
import { parentPort, workerData } from "node:worker_threads";
import { digestSegment, publicKeyFromSpki } from "@auditsink/core";

const { producerKeys } = workerData as { producerKeys?: [string, string][] };
const keys = producerKeys
  ? new Map(producerKeys.map(([id, spki]) => [id, publicKeyFromSpki(spki)]))
  : undefined;

parentPort!.on("message", ({ id, bytes }: { id: number; bytes: Uint8Array }) => {
  const digest = digestSegment(bytes, keys);
  parentPort!.postMessage({ id, digest }, [
    digest.hashes.buffer as ArrayBuffer,
    digest.leaves.buffer as ArrayBuffer,
  ]);
});
parentPort!.postMessage({ ready: true });
