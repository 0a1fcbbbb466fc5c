/**
 * Runs in the delivery thread (DeliveryThread): one AuditClient for the life of the thread, one window per message.
 * Batches are cut by the recorder and sent by flush(); the client's own retries are short, the recorder retries
 * for as long as it takes.
 */
import { parentPort, workerData } from "node:worker_threads";
import { AuditClient, privateKeyFromPem } from "@auditsink/client";
import { type DeliveryData, type DeliveryOutcome, type DeliveryTask, sentError } from "./DeliveryThread.ts";

const { client: options } = workerData as DeliveryData;
const { producerKeyPem, sinkKeys, ...rest } = options;
const client = AuditClient.create({
  ...rest,
  producerKey: privateKeyFromPem(producerKeyPem),
  sinkKey: sinkKeys,
});
client.catch(() => undefined); // reported by the first task, which awaits it

async function deliver(task: DeliveryTask): Promise<DeliveryOutcome> {
  let c: AuditClient;
  try {
    c = await client;
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

parentPort!.on("message", (task: DeliveryTask) => {
  void deliver(task)
    .catch((e: unknown) => ({ receipts: [], failure: sentError(e) }))
    .then((outcome) => parentPort!.postMessage(outcome));
});
