/** Shared setup of the MCP gateway tests: a sink with a registered producer, the gateway, and the records. */

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { tail } from "@auditsink/cli";
import { toNoteKey } from "@auditsink/client";
import { type AuditRecord, type Receipt, verifyReceipt } from "@auditsink/core";
import { type GatewayConfig, type PolicyConfig, startGateway } from "@auditsink/mcp";

const require = createRequire(import.meta.url);
/** The reference servers, run with this Node (no npx, no network). */
export const EVERYTHING = require.resolve("@modelcontextprotocol/server-everything/dist/index.js");
export const FILESYSTEM = require.resolve("@modelcontextprotocol/server-filesystem/dist/index.js");
export const everythingServer = {
  name: "everything",
  command: process.execPath,
  args: [EVERYTHING, "stdio"],
};

export interface SinkInfo {
  url: string;
  keyFile: string;
  verifierKey: string;
}

export function gatewayConfig(
  sink: SinkInfo,
  work: string,
  extra: Partial<GatewayConfig> & { policy?: PolicyConfig } = {},
): GatewayConfig {
  return {
    servers: [everythingServer],
    sink: {
      url: sink.url,
      keyFile: sink.keyFile,
      verifierKey: sink.verifierKey,
      stream: "agents.mcp",
      source: "mcp-proxy://test",
    },
    spool: join(work, "spool"),
    failMode: "open",
    events: { arguments: "include" },
    ...extra,
  };
}

export async function gateway(config: GatewayConfig) {
  return startGateway(config, { log: () => undefined });
}

/** The records of `agents.mcp` in a (stopped) sink's data directory, oldest first. */
export async function records(dataDir: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  await tail(dataDir, { stream: "agents.mcp", from: 0 }, (r) => out.push(r.record));
  return out;
}

/** The receipts the gateway kept (spool/receipts.jsonl), each checked against the pinned sink key. */
export async function keptReceipts(spool: string, verifierKey: string): Promise<Receipt[]> {
  const text = await readFile(join(spool, "receipts.jsonl"), "utf8").catch(() => "");
  const receipts = text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Receipt);
  for (const r of receipts) {
    const verdict = verifyReceipt(r, { trusted: [toNoteKey(verifierKey)] });
    if (!verdict.ok) throw new Error(`receipt ${r.index} does not verify: ${verdict.detail}`);
  }
  return receipts;
}
