/**
 * The set of streams, committed in the log itself (docs/FORMAT.md §4): before a stream's first segment is
 * written, the sink records a `dev.auditsink.stream.created` event for it in the `_system` stream, signed with its
 * checkpoint key. A verifier then requires every recorded stream to exist in the store and every stored stream to
 * be recorded, so deleting a whole stream (with its head) or planting one is caught like any other change.
 */
import { eventSigningBytes, type SignedEvent, SYSTEM_STREAM, type UnsignedEvent } from "./event.ts";
import { keyFingerprint } from "./keys.ts";
import type { Clock, Signer } from "./ports.ts";
import { systemClock } from "./ports.ts";
import type { AuditRecord } from "./record.ts";

export const STREAM_CREATED = "dev.auditsink.stream.created";

/** The producer name the sink's own system events are recorded under. */
export const SYSTEM_PRODUCER = "auditsink";

/**
 * The event recording that `stream` was created. Its id is fixed per stream (`stream/<name>`), so a second
 * attempt (after a crash between recording and the first segment) is refused by dedup, never recorded twice.
 */
export async function streamCreatedEvent(
  signer: Signer,
  stream: string,
  clock: Clock = systemClock,
): Promise<SignedEvent> {
  const unsigned: UnsignedEvent = {
    specversion: "1.0",
    id: `stream/${stream}`,
    source: `auditsink://${signer.key.name}`,
    type: STREAM_CREATED,
    time: clock.now().toISOString(),
    data: { stream },
    sigkeyid: keyFingerprint(signer.key.publicKey),
  };
  const signature = Buffer.from(await signer.sign(eventSigningBytes(unsigned))).toString("base64");
  return { ...unsigned, signature } as SignedEvent;
}

/** The stream a stored record says the sink created, or undefined when it is not such a record. */
export function streamCreatedBy(record: AuditRecord): string | undefined {
  if (record.stream !== SYSTEM_STREAM || record.producer !== SYSTEM_PRODUCER) return undefined;
  const event = record.event as { type?: unknown; data?: unknown };
  if (event.type !== STREAM_CREATED || typeof event.data !== "object" || event.data === null)
    return undefined;
  const name = (event.data as { stream?: unknown }).stream;
  return typeof name === "string" ? name : undefined;
}
