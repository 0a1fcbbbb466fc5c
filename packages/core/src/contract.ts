/**
 * The port contracts as one test suite every adapter runs (memory, local files, AWS on emulators):
 * `describePortContracts("S3WriteOnceStore", () => ({ objects: … }))` inside a Vitest file.
 * Lives in src (not test) so adapter packages can import it; it only imports vitest when called.
 */
import { dedupKey, SYSTEM_STREAM, signEvent } from "./event.ts";
import { ZERO_HASH } from "./hash.ts";
import { generateKeyPair, keyFingerprint } from "./keys.ts";
import type { DedupStore, Head, HeadStore, ObjectStore, ProducerStore } from "./ports.ts";
import {
  AuditedProducerAdmin,
  PRODUCER_REGISTERED,
  PRODUCER_REVOKED,
  SYSTEM_PRODUCER,
} from "./producer-audit.ts";
import { buildRecords } from "./record.ts";
import { admit, dedupEntriesOf, type Sink } from "./sink.ts";

export interface ContractSubjects {
  objects?: ObjectStore;
  heads?: HeadStore;
  dedup?: DedupStore;
}

type Vitest = typeof import("vitest");

const head = (size: number): Head => ({ size, headHash: String(size % 10).repeat(64), frontier: [] });

/**
 * Registers the contract tests. `make` is called before each test and must return fresh, empty subjects
 * (a new prefix, table or directory per call is enough).
 */
export function describePortContracts(
  vitest: Vitest,
  name: string,
  make: () => Promise<ContractSubjects> | ContractSubjects,
): void {
  const { describe, expect, it } = vitest;
  describe(`${name}: port contracts`, () => {
    it("ObjectStore.putIfAbsent creates once; a second put changes nothing", async () => {
      const { objects } = await make();
      if (!objects) return expect(objects).toBeUndefined();
      expect(await objects.putIfAbsent("streams/a/segments/00000000000000000000", Buffer.from("one"))).toBe(
        true,
      );
      expect(await objects.putIfAbsent("streams/a/segments/00000000000000000000", Buffer.from("two"))).toBe(
        false,
      );
      expect(Buffer.from((await objects.get("streams/a/segments/00000000000000000000"))!).toString()).toBe(
        "one",
      );
      expect(await objects.get("streams/a/segments/00000000000000000001")).toBeUndefined();
    });

    it("ObjectStore: concurrent creates of one key have exactly one winner", async () => {
      const { objects } = await make();
      if (!objects) return expect(objects).toBeUndefined();
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          objects.putIfAbsent("streams/race/segments/00000000000000000000", Buffer.from(`w${i}`)),
        ),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true);
      expect(Buffer.from((await objects.get("streams/race/segments/00000000000000000000"))!).toString()).toBe(
        `w${winner}`,
      );
    });

    it("ObjectStore.list pages in ascending order after startAfter", async () => {
      const { objects } = await make();
      if (!objects) return expect(objects).toBeUndefined();
      const keys = [3, 1, 2, 10].map((n) => `streams/l/segments/${String(n).padStart(20, "0")}`);
      for (const k of keys) await objects.putIfAbsent(k, Buffer.from(k));
      await objects.putIfAbsent("streams/other/segments/00000000000000000000", Buffer.from("x"));
      const sorted = [...keys].sort();
      expect(await objects.list("streams/l/")).toEqual(sorted);
      expect(await objects.list("streams/l/", { startAfter: sorted[1]!, limit: 1 })).toEqual([sorted[2]]);
      expect(await objects.list("streams/none/")).toEqual([]);
    });

    it("HeadStore.advance moves forward only from the expected size", async () => {
      const { heads } = await make();
      if (!heads) return expect(heads).toBeUndefined();
      expect(await heads.get("h")).toBeUndefined();
      expect(await heads.advance("h", 5, head(6))).toBe(false);
      expect(await heads.advance("h", 0, head(3))).toBe(true);
      expect(await heads.advance("h", 0, head(4))).toBe(false);
      expect(await heads.advance("h", 3, head(2))).toBe(false);
      expect(
        await heads.advance("h", 3, { ...head(7), frontier: ["ab".repeat(32)], checkpoint: "cp\n" }),
      ).toBe(true);
      expect(await heads.get("h")).toEqual({ ...head(7), frontier: ["ab".repeat(32)], checkpoint: "cp\n" });
      expect(await heads.streams()).toContain("h");
    });

    it("HeadStore: concurrent advances from one size have exactly one winner", async () => {
      const { heads } = await make();
      if (!heads) return expect(heads).toBeUndefined();
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => heads.advance("race", 0, head(i + 1))),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await heads.get("race"))!.size).toBe(results.indexOf(true) + 1);
    });

    it("DedupStore keeps the first entry for a key", async () => {
      const { dedup } = await make();
      if (!dedup) return expect(dedup).toBeUndefined();
      // Entries come with the segment they were made from, as the sink writes them.
      const { privateKey } = generateKeyPair("ed25519");
      const time = "2026-01-01T00:00:00.000Z";
      const event = signEvent({ specversion: "1.0", id: "id-1", source: "src", type: "t", time }, privateKey);
      const segment = (first: number) => ({
        stream: "s",
        first,
        records: buildRecords("s", first, ZERO_HASH, time, [admit(event, "p")]),
      });
      const [entry] = dedupEntriesOf("s", segment(4).records);
      await dedup.putMany([entry!], segment(4));
      await dedup.putMany(dedupEntriesOf("s", segment(9).records), segment(9));
      const found = await dedup.getMany([entry!.key, dedupKey("p", { source: "src", id: "id-2" })]);
      expect(found.get(entry!.key)).toEqual(entry);
      expect(found.size).toBe(1);
      expect((await dedup.getMany([])).size).toBe(0);
    });
  });
}

/**
 * The registry trail's rules (AuditedProducerAdmin over a ProducerStore), run against every store: exactly one
 * of concurrent registrations of a key succeeds and exactly one event records it; a repeated revocation is a
 * conflict and records nothing; the reserved producer id and the sink's own key cannot be registered.
 * `make` must return a fresh store and the sink whose `_system` stream records its changes.
 */
export function describeProducerRegistryRules(
  vitest: Vitest,
  name: string,
  make: () => Promise<{ store: ProducerStore; sink: Sink }>,
): void {
  const { describe, expect, it } = vitest;
  const trail = async (sink: Sink) => {
    const size = (await sink.head(SYSTEM_STREAM))?.size ?? 0;
    const reader = sink.reader(SYSTEM_STREAM);
    await reader.ensure(size);
    return (await reader.records(0, size)).map((r) => ({
      type: r.record.event.type,
      data: r.record.event.data as { producer: string; keyId?: string; keyIds?: string[] },
    }));
  };
  describe(`${name}: registry trail rules`, () => {
    it("five concurrent registrations of one key: one succeeds, four conflict, one registered event", async () => {
      // Prepare
      const { store, sink } = await make();
      const admin = new AuditedProducerAdmin(store, sink);
      const { publicKey } = generateKeyPair("ed25519");
      // Act
      const outcomes = await Promise.allSettled(
        Array.from({ length: 5 }, (_, i) => admin.register({ id: `agent-${i}`, publicKey, streams: ["a"] })),
      );
      // Assess
      expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
      for (const o of outcomes.filter((o) => o.status === "rejected"))
        expect((o as PromiseRejectedResult).reason).toMatchObject({ name: "StoreError", code: "conflict" });
      const events = (await trail(sink)).filter((e) => e.type === PRODUCER_REGISTERED);
      expect(events).toHaveLength(1);
      expect(events[0]!.data.keyId).toBe(keyFingerprint(publicKey));
      expect((await store.list()).flatMap((p) => p.keys)).toHaveLength(1);
    });

    it("a repeated or concurrent revocation records one revoked event; the others conflict", async () => {
      // Prepare
      const { store, sink } = await make();
      const admin = new AuditedProducerAdmin(store, sink);
      const { publicKey } = generateKeyPair("ed25519");
      await admin.register({ id: "agent", publicKey, streams: ["a"] });
      // Act
      const concurrent = await Promise.allSettled([admin.revoke("agent"), admin.revoke("agent")]);
      const again = await admin.revoke("agent", keyFingerprint(publicKey)).catch((e: unknown) => e);
      // Assess
      expect(concurrent.filter((o) => o.status === "fulfilled")).toHaveLength(1);
      expect(again).toMatchObject({ name: "StoreError", code: "conflict" });
      const events = (await trail(sink)).filter((e) => e.type === PRODUCER_REVOKED);
      expect(events.map((e) => e.data.keyIds)).toEqual([[keyFingerprint(publicKey)]]);
      expect((await store.key(keyFingerprint(publicKey)))?.revoked).toBe(true);
    });

    it("refuses the reserved producer id and the sink's own key, recording nothing", async () => {
      // Prepare
      const { store, sink } = await make();
      const admin = new AuditedProducerAdmin(store, sink);
      // Act
      const reserved = await admin
        .register({ id: SYSTEM_PRODUCER, publicKey: generateKeyPair("ed25519").publicKey, streams: ["a"] })
        .catch((e: unknown) => e);
      const ownKey = await admin
        .register({ id: "impostor", publicKey: sink.options.signer.key.publicKey, streams: ["*"] })
        .catch((e: unknown) => e);
      // Assess
      expect(reserved).toMatchObject({ code: "invalid-request", field: "id" });
      expect(ownKey).toMatchObject({ code: "invalid-request", field: "publicKey" });
      expect(await trail(sink)).toEqual([]);
      expect(await store.list()).toEqual([]);
    });
  });
}
