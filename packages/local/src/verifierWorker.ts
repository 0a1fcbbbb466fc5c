/**
 * The verifier thread's worker (VerifierThread): carries out the scheduled verifier's jobs (verificationJob.ts)
 * over the data directory, read-only, with the sink's public checkpoint key. One job at a time.
 */
import { parentPort, workerData } from "node:worker_threads";
import { parseVerifierKey, publicKeyFromSpki, VerificationStoppedError } from "@auditsink/core";
import { LocalHeadStore } from "./LocalHeadStore.ts";
import { DirectoryObjects, storedStreams } from "./LocalObjectStore.ts";
import type { ThreadData, ToThread } from "./VerifierThread.ts";
import type { JobPorts } from "./verificationJob.ts";
import { runJob } from "./verificationJob.ts";
import { witnessRequirement } from "./witnesses.ts";

const data = workerData as ThreadData;
const port = parentPort!;
const ports: JobPorts = {
  objects: new DirectoryObjects(data.objects, "fanned"),
  heads: new LocalHeadStore(data.heads, data.tmp),
  deployment: data.deployment,
  trusted: data.trusted.map(parseVerifierKey),
  streams: () => storedStreams(data.objects),
  ...(data.witnesses ? { witnesses: witnessRequirement(data.witnesses) } : {}),
};
const running = new Map<number, AbortController>();

port.on("message", (message: ToThread) => {
  if (message.type === "stop") {
    running.get(message.id)?.abort(new Error("the verifier is stopping"));
    return;
  }
  const { id, job } = message;
  const abort = new AbortController();
  running.set(id, abort);
  runJob(
    ports,
    {
      ...job,
      producerKeys: new Map(job.producerKeys.map(([kid, spki]) => [kid, publicKeyFromSpki(spki)])),
      now: new Date(job.now),
    },
    { signal: abort.signal, onRecords: (records) => port.postMessage({ type: "records", id, records }) },
  )
    .then(
      (result) => port.postMessage({ type: "done", id, result }),
      (e: Error) =>
        port.postMessage(
          e instanceof VerificationStoppedError
            ? { type: "stopped", id, states: e.states }
            : { type: "failed", id, message: e.message },
        ),
    )
    .finally(() => running.delete(id));
});
