/**
 * Producer registration and revocation as audit events: every change to the registry is recorded in the system
 * stream (`_system`), signed by the sink's own checkpoint key, so the registry's history is in the log. Both
 * runtimes wrap their ProducerStore in AuditedProducerAdmin, which holds the rules once.
 */
import { IngestError, StoreError } from "./errors.ts";
import {
  eventSigningBytes,
  newEventId,
  type SignedEvent,
  SYSTEM_STREAM,
  type UnsignedEvent,
} from "./event.ts";
import { keyAlgorithm, keyFingerprint, lowSEcdsaSignature, spkiDer } from "./keys.ts";
import type {
  Clock,
  ProducerAdmin,
  ProducerInfo,
  ProducerKey,
  ProducerStore,
  RegistryChange,
  Signer,
} from "./ports.ts";
import { systemClock } from "./ports.ts";
import type { Receipt } from "./receipt.ts";
import { admit, type Sink } from "./sink.ts";

import { SYSTEM_PRODUCER } from "./stream-set.ts";

export { SYSTEM_PRODUCER };

export const PRODUCER_REGISTERED = "dev.auditsink.producer.registered";
export const PRODUCER_REVOKED = "dev.auditsink.producer.revoked";

/** Signs a system event with the sink's signer (its key id is keyFingerprint of the signer's public key). */
export async function signSystemEvent(
  signer: Signer,
  type: string,
  data: Record<string, unknown>,
  clock: Clock = systemClock,
): Promise<SignedEvent> {
  const unsigned: UnsignedEvent = {
    specversion: "1.0",
    id: newEventId(),
    source: `auditsink://${signer.key.name}`,
    type,
    time: clock.now().toISOString(),
    data: data as never,
    sigkeyid: keyFingerprint(signer.key.publicKey),
  };
  let signature: Buffer = Buffer.from(await signer.sign(eventSigningBytes(unsigned)));
  // System events follow the producer rules too: ECDSA signatures in low-S DER form (docs/FORMAT.md §Signatures).
  if (keyAlgorithm(signer.key.publicKey) === "ecdsa-p256") signature = lowSEcdsaSignature(signature);
  return { ...unsigned, signature: signature.toString("base64") } as SignedEvent;
}

/** The registry entry a verifier needs to re-check the signatures of system events. */
export function systemProducerKey(signer: Signer): ProducerKey {
  return {
    keyId: keyFingerprint(signer.key.publicKey),
    publicKey: signer.key.publicKey,
    producer: SYSTEM_PRODUCER,
    streams: [SYSTEM_STREAM],
    revoked: false,
  };
}

/**
 * The registry's rules, once for every runtime (the adapters only store: ProducerStore). Each change is made
 * with the store's conditional write first and recorded in the system stream second, so that of concurrent
 * attempts at one change exactly one succeeds and exactly one event records it:
 *   - register: the reserved producer id and the sink's own key are refused (400); a key already registered is
 *     a 409 and records nothing; if the event cannot be recorded the registration is undone and the call fails;
 *   - revoke: only keys this call revoked are recorded; revoking what is already revoked is a 409 and records
 *     nothing. A revocation is in force from the store write on and is never undone: if its event cannot be
 *     recorded the call fails and the revocation stands (revoking is never delayed for the log's sake).
 * Once the event is recorded the store is told (ProducerStore.recorded). A store that keeps the change's intent
 * durable with the change until then lets a restart after a crash between the two close the gap from the log:
 * an unrecorded registration is undone, an unrecorded revocation is recorded (completeRevocation); the
 * embedded registry does (docs/EMBEDDED.md §6.3).
 * A newly registered key can authenticate events from the moment the store holds it, a few milliseconds before
 * its registration event is committed.
 */
export class AuditedProducerAdmin implements ProducerAdmin {
  constructor(
    private readonly inner: ProducerStore,
    private readonly sink: Sink,
    private readonly clock: Clock = systemClock,
  ) {}

  key(keyId: string): Promise<ProducerKey | undefined> {
    return this.inner.key(keyId);
  }

  list(): Promise<ProducerInfo[]> {
    return this.inner.list();
  }

  /** The receipt of the newest system event this admin recorded (for callers that show it). */
  lastReceipt: Receipt | undefined;

  async register(input: Parameters<ProducerAdmin["register"]>[0]): Promise<ProducerInfo> {
    const keyId = keyFingerprint(input.publicKey);
    if (input.id === SYSTEM_PRODUCER)
      throw new IngestError("invalid-request", `id: ${SYSTEM_PRODUCER} is reserved for the sink`, "id");
    if (keyId === keyFingerprint(this.sink.options.signer.key.publicKey))
      throw new IngestError("invalid-request", "publicKey: is the sink's own checkpoint key", "publicKey");
    const info = await this.inner.register(input);
    try {
      await this.record(PRODUCER_REGISTERED, {
        producer: input.id,
        keyId,
        algorithm: keyAlgorithm(input.publicKey),
        publicKey: spkiDer(input.publicKey).toString("base64"),
        streams: input.streams,
        ...(input.heartbeatSeconds !== undefined ? { heartbeatSeconds: input.heartbeatSeconds } : {}),
      });
    } catch (error) {
      await this.inner.unregister(input.id, keyId);
      throw error;
    }
    await this.inner.recorded?.({ kind: "register", producer: input.id, keyIds: [keyId] });
    return info;
  }

  async revoke(id: string, keyId?: string): Promise<ProducerInfo> {
    const revoked = await this.inner.revokeKeys(id, keyId, this.clock.now().toISOString());
    if (revoked.length === 0) {
      throw new StoreError(
        "conflict",
        keyId === undefined ? `every key of ${id} is already revoked` : `key ${keyId} is already revoked`,
      );
    }
    await this.record(PRODUCER_REVOKED, { producer: id, keyIds: revoked });
    await this.inner.recorded?.({ kind: "revoke", producer: id, keyIds: revoked });
    const info = (await this.inner.list()).find((p) => p.id === id);
    if (!info) throw new StoreError("conflict", `no producer ${id}`);
    return info;
  }

  /**
   * Records a revocation the store holds but the system stream does not (a crash between the two), then tells
   * the store. Run at start-up by a store that keeps pending changes; revocations are completed, never undone.
   */
  async completeRevocation(change: RegistryChange): Promise<void> {
    await this.record(PRODUCER_REVOKED, { producer: change.producer, keyIds: change.keyIds });
    await this.inner.recorded?.(change);
  }

  private async record(type: string, data: Record<string, unknown>): Promise<void> {
    const event = await signSystemEvent(this.sink.options.signer, type, data, this.clock);
    const [receipt] = await this.sink.commit(SYSTEM_STREAM, [admit(event, SYSTEM_PRODUCER)]);
    this.lastReceipt = receipt;
  }
}
