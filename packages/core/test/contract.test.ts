import * as vitest from "vitest";
import { describePortContracts } from "../src/contract.ts";
import { MemoryDedupStore, MemoryHeadStore, MemoryObjectStore } from "../src/memory.ts";

describePortContracts(vitest, "memory", () => ({
  objects: new MemoryObjectStore(),
  heads: new MemoryHeadStore(),
  dedup: new MemoryDedupStore(),
}));
