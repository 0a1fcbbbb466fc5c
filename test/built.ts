/**
 * The compiled entry points that tests start as child processes. test/build.global.ts brings every package's
 * dist/ up to date (tsc -b, incremental) before any test runs, so children start from current code without
 * compiling TypeScript on the fly: tsx costs each child start ~2 s of CPU, and the suite starts dozens.
 */
import { join } from "node:path";

const repo = join(import.meta.dirname, "..");

/** `node SERVE <data-dir> <port>`: the embedded sink (packages/local/src/serve.ts). */
export const SERVE = join(repo, "packages/local/dist/serve.js");
/** `node CLI <command> …`: the auditsink CLI (packages/cli/src/main.ts). */
export const CLI = join(repo, "packages/cli/dist/main.js");
