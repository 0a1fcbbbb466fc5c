/**
 * Producer registration and revocation as audit events: every change to the registry is first recorded in the
 * system stream (`_system`), signed by the sink's own checkpoint key, so the registry's history is in the log.
 * Both runtimes wrap their ProducerAdmin adapter in AuditedProducerAdmin.
 */
import { IngestError, StoreError } from "./errors.ts";
import { eventSigningBytes, type SignedEvent, SYSTEM_STREAM, type UnsignedEvent } from "./event.ts";
import { keyAlgorithm, keyFingerprint, lowSEcdsaSignature, spkiDer } from "./keys.ts";
import type { Clock, ProducerAdmin, ProducerInfo, ProducerKey, ProducerStore, Signer } from "./ports.ts";
import { systemClock } from "./ports.ts";
import type { Receipt } from "./receipt.ts";
import { admit, type Sink } from "./sink.ts";

/** The producer name the sink's own system events are recorded under. */
export const SYSTEM_PRODUCER = "auditsink";

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
    id: crypto.randomUUID(),
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
 *     nothing. A revocation stands even if its event cannot be recorded (the call fails; revoking is never
 *     delayed for the log's sake).
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
    const info = (await this.inner.list()).find((p) => p.id === id);
    if (!info) throw new StoreError("conflict", `no producer ${id}`);
    return info;
  }

  private async record(type: string, data: Record<string, unknown>): Promise<void> {
    const event = await signSystemEvent(this.sink.options.signer, type, data, this.clock);
    const [receipt] = await this.sink.commit(SYSTEM_STREAM, [admit(event, SYSTEM_PRODUCER)]);
    this.lastReceipt = receipt;
  }
}
