/**
 * Producer registration and revocation as audit events: every change to the registry is first recorded in the
 * system stream (`_system`), signed by the sink's own checkpoint key, so the registry's history is in the log.
 * Both runtimes wrap their ProducerAdmin adapter in AuditedProducerAdmin.
 */
import { StoreError } from "./errors.ts";
import { eventSigningBytes, type SignedEvent, SYSTEM_STREAM, type UnsignedEvent } from "./event.ts";
import { keyAlgorithm, keyFingerprint, lowSEcdsaSignature, spkiDer } from "./keys.ts";
import type { Clock, ProducerAdmin, ProducerInfo, ProducerKey, Signer } from "./ports.ts";
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
 * A ProducerAdmin that records each change in the system stream before applying it. A change that is refused
 * (key taken, unknown producer) is refused before anything is recorded.
 */
export class AuditedProducerAdmin implements ProducerAdmin {
  constructor(
    private readonly inner: ProducerAdmin,
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
    if (await this.inner.key(keyId)) throw new StoreError("conflict", `key ${keyId} is already registered`);
    await this.record(PRODUCER_REGISTERED, {
      producer: input.id,
      keyId,
      algorithm: keyAlgorithm(input.publicKey),
      publicKey: spkiDer(input.publicKey).toString("base64"),
      streams: input.streams,
      ...(input.heartbeatSeconds !== undefined ? { heartbeatSeconds: input.heartbeatSeconds } : {}),
    });
    return this.inner.register(input);
  }

  async revoke(id: string, keyId?: string): Promise<ProducerInfo> {
    const info = (await this.inner.list()).find((p) => p.id === id);
    if (!info) throw new StoreError("conflict", `no producer ${id}`);
    if (keyId !== undefined && !info.keys.some((k) => k.keyId === keyId)) {
      throw new StoreError("conflict", `producer ${id} has no key ${keyId}`);
    }
    const keys = info.keys.filter((k) => (keyId === undefined || k.keyId === keyId) && !k.revokedAt);
    await this.record(PRODUCER_REVOKED, { producer: id, keyIds: keys.map((k) => k.keyId) });
    return this.inner.revoke(id, keyId);
  }

  private async record(type: string, data: Record<string, unknown>): Promise<void> {
    const event = await signSystemEvent(this.sink.options.signer, type, data, this.clock);
    const [receipt] = await this.sink.commit(SYSTEM_STREAM, [admit(event, SYSTEM_PRODUCER)]);
    this.lastReceipt = receipt;
  }
}
