/**
 * `auditsink findings list|ack`: the scheduled verifier's standing findings on a running embedded sink, and their
 * acknowledgement (recorded in the `_system` stream by the sink before the findings close; docs/EMBEDDED.md §5).
 */
import type { OpenFinding } from "@auditsink/local";
import { CliError } from "./errors.ts";
import { api, type Target } from "./producer.ts";

/** A finding as the sink reports it (`GET /v1/findings`). */
export type FindingView = OpenFinding;

function requireUrl(target: Target): void {
  if (!target.url) throw new CliError("usage", "--url is required (findings live in a running sink)");
}

export async function listFindings(
  target: Target,
): Promise<{ open: FindingView[]; acknowledged: FindingView[] }> {
  requireUrl(target);
  return (await api(target, "GET", "/v1/findings")) as { open: FindingView[]; acknowledged: FindingView[] };
}

export async function acknowledgeFindings(
  target: Target,
  ids: string[],
  note: string,
  by?: string,
): Promise<FindingView[]> {
  requireUrl(target);
  const r = (await api(target, "POST", "/v1/findings/acknowledge", {
    findings: ids,
    note,
    ...(by ? { by } : {}),
  })) as { acknowledged: FindingView[] };
  return r.acknowledged;
}
