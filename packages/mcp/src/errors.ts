/** Coded errors of the MCP gateway. */
import { CodedError } from "@auditsink/core";

export type GatewayErrorCode =
  /** The gateway or policy configuration is unusable; the message names the field. */
  | "bad-config"
  /** Another gateway process holds the spool directory. */
  | "spool-locked"
  /** A spool file cannot be read back (not a torn last line: those are dropped, they were never acknowledged). */
  | "spool-corrupt"
  /** Fail-closed: the sink cannot record the event, so the call is refused or its result withheld. */
  | "sink-unavailable"
  /** The sink's receipt did not verify, or it contradicted a checkpoint seen before (rollback or fork). */
  | "receipt-failed"
  /** An upstream MCP server could not be started or reached. */
  | "upstream-unavailable";

export class GatewayError extends CodedError<GatewayErrorCode> {
  override readonly name = "GatewayError";
}
