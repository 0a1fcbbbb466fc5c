import {
  EventBridgePublisher,
  entrySize,
  PUT_EVENTS_MAX_BYTES,
  PUT_EVENTS_MAX_ENTRIES,
  packEntries,
} from "@auditsink/client/eventbridge";
import { generateKeyPair, type SignedEvent, signEvent } from "@auditsink/core";
import type { PutEventsCommand, PutEventsCommandOutput } from "@aws-sdk/client-eventbridge";
import { describe, expect, it } from "vitest";

const { privateKey } = generateKeyPair("ed25519");
const event = (id: string, pad = 0): SignedEvent =>
  signEvent(
    {
      specversion: "1.0",
      id,
      source: "agent://support-bot",
      type: "ai.agent.tool_call",
      time: "2026-11-24T12:00:00.000Z",
      data: { "gen_ai.tool.name": "search", pad: "x".repeat(pad) } as never,
    },
    privateKey,
  );

/** A stand-in EventBridge client: unit tests may fake a client for an edge case (partial failures). */
function fakeBus(failures: (entryIndex: number, call: number) => string | undefined) {
  const calls: { Detail?: string }[][] = [];
  return {
    calls,
    async send(command: PutEventsCommand): Promise<PutEventsCommandOutput> {
      const entries = command.input.Entries ?? [];
      calls.push(entries);
      const call = calls.length;
      const results = entries.map((_, i) => {
        const code = failures(i, call);
        return code ? { ErrorCode: code, ErrorMessage: "injected" } : { EventId: `${call}-${i}` };
      });
      return {
        FailedEntryCount: results.filter((r) => r.ErrorCode).length,
        Entries: results,
        $metadata: {},
      };
    },
  };
}

describe("packEntries", () => {
  it("keeps every PutEvents request within 10 entries and 256 KB", () => {
    const bus = new EventBridgePublisher({ eventBusName: "b", client: fakeBus(() => undefined) });
    const entries = Array.from({ length: 25 }, (_, i) => bus.toEntry("s", event(String(i), 40_000)));
    const batches = packEntries(entries);
    expect(batches.flat()).toHaveLength(25);
    for (const b of batches) {
      expect(b.length).toBeLessThanOrEqual(PUT_EVENTS_MAX_ENTRIES);
      expect(b.reduce((n, e) => n + entrySize(e), 0)).toBeLessThanOrEqual(PUT_EVENTS_MAX_BYTES);
    }
    expect(batches.length).toBeGreaterThan(3);
  });

  it("refuses an entry larger than a whole request", () => {
    const bus = new EventBridgePublisher({ eventBusName: "b", client: fakeBus(() => undefined) });
    expect(() => packEntries([bus.toEntry("s", event("big", PUT_EVENTS_MAX_BYTES))])).toThrow(
      /PutEvents limit/,
    );
  });
});

describe("EventBridgePublisher.put", () => {
  it("puts again only the entries that failed, until all are accepted", async () => {
    // Prepare: entries 1 and 3 fail on the first call.
    const bus = fakeBus((i, call) =>
      call === 1 && (i === 1 || i === 3) ? "ThrottlingException" : undefined,
    );
    const publisher = new EventBridgePublisher({ eventBusName: "b", client: bus, retry: { baseDelayMs: 1 } });
    const events = ["a", "b", "c", "d"].map((id) => event(id));
    // Act
    const ids = await publisher.put("agent-actions", events);
    // Assess
    expect(ids).toEqual(["1-0", "2-0", "1-2", "2-1"]);
    expect(bus.calls[1]!.map((e) => JSON.parse(e.Detail!).event.id)).toEqual(["b", "d"]);
    expect(JSON.parse(bus.calls[0]![0]!.Detail!)).toEqual({ stream: "agent-actions", event: events[0] });
  });

  it("rejects with ClientError('unavailable') when entries keep failing", async () => {
    const bus = fakeBus((i) => (i === 0 ? "InternalFailure" : undefined));
    const publisher = new EventBridgePublisher({
      eventBusName: "b",
      client: bus,
      retry: { maxAttempts: 3, baseDelayMs: 1 },
    });
    await expect(publisher.put("s", [event("a"), event("b")])).rejects.toMatchObject({
      name: "ClientError",
      code: "unavailable",
    });
    expect(bus.calls).toHaveLength(3);
  });
});
