/**
 * Runs in the delivery thread (DeliveryThread): one AuditClient for the life of the thread, one task per message:
 * sign a window's new events as one batch, or send a window. Batches are cut by the recorder and sent by flush();
 * the client's own retries are short, the recorder retries for as long as it takes.
 */
import { parentPort, workerData } from "node:worker_threads";
import { AuditClient, privateKeyFromPem } from "@auditsink/client";
import { signBatch } from "@auditsink/core";
import {
  type DeliveryData,
  type DeliveryOutcome,
  type DeliveryTask,
  type SigningOutcome,
  type SigningTask,
  sentError,
} from "./DeliveryThread.ts";

const { client: options } = workerData as DeliveryData;
const { producerKeyPem, sinkKeys, ...rest } = options;
const ready = (async () => {
  const producerKey = privateKeyFromPem(producerKeyPem);
  return { producerKey, client: await AuditClient.create({ ...rest, producerKey, sinkKey: sinkKeys }) };
})();
ready.catch(() => undefined); // reported by the first task, which awaits it

async function deliver(task: DeliveryTask): Promise<DeliveryOutcome> {
  let c: AuditClient;
  try {
    c = (await ready).client;
  } catch (e) {
    return { receipts: [], failure: sentError(e) };
  }
  const outcomes = task.events.map((e) => c.send(e, { stream: task.stream }));
  await c.flush();
  const receipts = [];
  for (const s of await Promise.allSettled(outcomes)) {
    if (s.status === "rejected") return { receipts, failure: sentError(s.reason) };
    receipts.push(s.value);
  }
  return { receipts };
}

async function sign(task: SigningTask): Promise<SigningOutcome> {
  const signed = signBatch(task.events, (await ready).producerKey);
  const { sigkeyid, signature } = signed[0]!;
  return { batch: { sigkeyid, signature, sigbatch: signed.map((e) => e.sigbatch!) } };
}

parentPort!.on("message", (task: DeliveryTask | SigningTask) => {
  const outcome =
    task.kind === "sign"
      ? sign(task)
      : deliver(task).catch((e: unknown) => ({ receipts: [], failure: sentError(e) }));
  void outcome.catch((e: unknown) => ({ failure: sentError(e) })).then((o) => parentPort!.postMessage(o));
});
