/**
 * Coded errors of the producer SDK. A WitnessError is deliberately its own class: it means the sink showed this
 * producer a log that contradicts one it showed before (rolled back or forked), which is evidence of tampering,
 * not a transient failure, and callers should alert on it rather than retry.
 */
import type { ReceiptFailureCode } from "@auditsink/core";

export type ClientErrorCode =
  /** The sink refused the request (4xx other than 429); retrying the same events cannot succeed. */
  | "rejected"
  /** Retries were exhausted on network errors, 5xx or 429. */
  | "unavailable"
  /** The sink answered with something that is not what the API promises. */
  | "bad-response"
  /** The client was closed before the event was sent. */
  | "closed"
  /** Options or a key file are unusable. */
  | "bad-config";

export class ClientError extends Error {
  override readonly name = "ClientError";
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    readonly details: { status?: number; problem?: unknown } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A receipt that does not verify: bad checkpoint signature, wrong origin, bad inclusion proof, wrong event. */
export class ReceiptError extends Error {
  override readonly name = "ReceiptError";
  constructor(
    readonly code: ReceiptFailureCode | "receipt-missing",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type WitnessErrorCode =
  /** The sink now presents a smaller log than a checkpoint it signed before and cannot prove it extends it. */
  | "log-rollback"
  /** Two signed checkpoints that cannot both be views of one append-only log: a split view or rewrite. */
  | "log-fork";

/**
 * The sink contradicted a checkpoint this producer saw before. `older` and `newer` are the two signed
 * checkpoint texts: together they are the evidence to hand to an auditor.
 */
export class WitnessError extends Error {
  override readonly name = "WitnessError";
  constructor(
    readonly code: WitnessErrorCode,
    message: string,
    readonly evidence: { stream: string; older: string; newer: string },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The newest checkpoint the sink serves as witnessed does not meet the producer's witness policy
 * (AuditClientOptions.witnesses): too few of the pinned witnesses cosigned it, or none in time
 * (AuditClient.waitWitnessed). Not evidence of tampering by itself — a witness may be down — but until it is met
 * nothing proves the sink shows this producer the same log it shows everyone else.
 */
export class WitnessPolicyError extends Error {
  override readonly name = "WitnessPolicyError";
  readonly code = "witness-policy-unmet";
  constructor(
    message: string,
    /** The cosigned checkpoint the sink served (absent: it serves none). */
    readonly cosigned?: string,
  ) {
    super(message);
  }
}
