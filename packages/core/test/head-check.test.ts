/**
 * The head store is a cache the writer checks before it signs (issue: a restarted sink signed a wrong root from
 * a corrupted `heads/<stream>.json`). On load, a stored head that disagrees with the checkpoint at its size is
 * refused, reported as `head-mismatch`, and the head is rebuilt from the stored segments.
 */
import { describe, expect, it } from "vitest";
import { verifyStoredStream } from "../src/fetch.ts";
import type { Alert, AlertSink } from "../src/ports.ts";
import { segmentKey } from "../src/record.ts";
import { Sink } from "../src/sink.ts";
import { DEPLOYMENT, memoryPorts, type Ports, producer } from "./fixtures.ts";

const STREAM = "agent-actions";
/** One clock for every sink here, so two sinks given the same events write the same records. */
const clock = { now: () => new Date("2026-11-24T12:00:00.000Z") };

function collectingAlerts(): AlertSink & { alerts: Alert[] } {
  const alerts: Alert[] = [];
  return { alerts, send: async (a) => void alerts.push(...a) };
}

/** A log of three committed batches (sizes 2, 3, 1), then a restarted sink over the same stores. */
async function logThenRestart(corrupt: (ports: Ports) => void) {
  const ports = memoryPorts();
  const agent = producer(ports, "agent-1");
  const first = new Sink({ deployment: DEPLOYMENT, ...ports, clock });
  let n = 0;
  for (const size of [2, 3, 1]) {
    await first.submit(
      STREAM,
      Array.from({ length: size }, () => agent.event(`e-${n++}`)),
    );
  }
  corrupt(ports);
  const alerts = collectingAlerts();
  const restarted = new Sink({ deployment: DEPLOYMENT, ...ports, alerts, clock });
  return { ports, agent, restarted, alerts };
}

async function failuresOf(ports: Ports) {
  const report = await verifyStoredStream(ports.objects, STREAM, {
    trusted: [ports.signer.key],
    deployment: DEPLOYMENT,
  });
  return report.failures.map((f) => f.code);
}

describe("a writer loading its head", () => {
  it("refuses a stored frontier that disagrees with the checkpoint, alerts, and signs the right root", async () => {
    // Prepare
    const { ports, agent, restarted, alerts } = await logThenRestart((p) => {
      const head = p.heads.heads.get(STREAM)!;
      head.frontier[0] = "ab".repeat(32);
    });
    // Act
    const [receipt] = await restarted.submit(STREAM, [agent.event("after")]);
    // Assess
    expect(receipt!.index).toBe(6);
    expect(await failuresOf(ports)).toEqual([]);
    expect(alerts.alerts.map((a) => [a.code, a.stream, a.at])).toEqual([["head-mismatch", STREAM, 6]]);
    expect(alerts.alerts[0]!.message).toContain("root of checkpoint 6");
  });

  it("refuses a stored head hash that disagrees with the checkpoint, and chains the next record correctly", async () => {
    const { ports, agent, restarted, alerts } = await logThenRestart((p) => {
      p.heads.heads.get(STREAM)!.headHash = "cd".repeat(32);
    });
    await restarted.submit(STREAM, [agent.event("after")]);
    expect(await failuresOf(ports)).toEqual([]);
    expect(alerts.alerts.map((a) => a.code)).toEqual(["head-mismatch"]);
  });

  it("refuses a malformed stored head (a frontier of the wrong length)", async () => {
    const { ports, agent, restarted, alerts } = await logThenRestart((p) => {
      p.heads.heads.get(STREAM)!.frontier.push("ef".repeat(32));
    });
    await restarted.submit(STREAM, [agent.event("after")]);
    expect(await failuresOf(ports)).toEqual([]);
    expect(alerts.alerts.map((a) => a.code)).toEqual(["head-mismatch"]);
  });

  it("uses a head that agrees with its checkpoint without alerting", async () => {
    const { ports, agent, restarted, alerts } = await logThenRestart(() => undefined);
    await restarted.submit(STREAM, [agent.event("after")]);
    expect(await failuresOf(ports)).toEqual([]);
    expect(alerts.alerts).toEqual([]);
  });

  it("refuses to sign when the stored segments disagree with a stored checkpoint, and alerts", async () => {
    // Prepare: the head is lost and the last segment replaced by one with the same indexes and other content.
    const { ports, agent, restarted, alerts } = await logThenRestart((p) => {
      p.heads.heads.delete(STREAM);
    });
    const forged = memoryPorts();
    forged.producers = ports.producers;
    const forger = new Sink({ deployment: DEPLOYMENT, ...forged, clock });
    let n = 0;
    for (const size of [2, 3]) {
      await forger.submit(
        STREAM,
        Array.from({ length: size }, () => agent.event(`e-${n++}`)),
      );
    }
    await forger.submit(STREAM, [agent.event("forged")]);
    ports.objects.objects.set(segmentKey(STREAM, 5), forged.objects.objects.get(segmentKey(STREAM, 5))!);
    const before = ports.objects.objects.size;
    // Act
    const outcome = await restarted.submit(STREAM, [agent.event("after")]).catch((e: unknown) => e);
    // Assess
    expect(outcome).toMatchObject({ code: "unavailable" });
    expect(ports.objects.objects.size).toBe(before);
    expect(alerts.alerts.map((a) => [a.code, a.at])).toEqual([["store-mismatch", 6]]);
  });
});
