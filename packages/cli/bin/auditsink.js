#!/usr/bin/env node
// The `auditsink` executable runs the compiled CLI. It is a committed file, not dist/main.js itself, so that npm
// links it on a fresh clone before `prepare` has built dist/ (npm skips bins whose target does not exist yet).
import("../dist/main.js").catch((e) => {
  if (e?.code === "ERR_MODULE_NOT_FOUND" && String(e.message).includes("dist/main.js")) {
    process.stderr.write("auditsink: the CLI is not built: run `npm run build` in the repository\n");
    process.exit(2);
  }
  throw e;
});
