#!/usr/bin/env node
/** The `auditsink` executable: `npm start` runs `main.ts start`, `npm run auditsink -- <command>` the rest. */
import { run } from "./program.ts";

const code = await run(process.argv.slice(2));
process.exitCode = code;
// `start` keeps the process alive with its server; every other command ends when its work is done. A failing
// command ends here, but only once stdout and stderr have drained: a report piped to a slower reader (more than
// the 64 KiB a pipe buffers) would otherwise be cut off by exiting with writes still queued.
if (code !== 0) {
  const drained = (stream: NodeJS.WriteStream) =>
    new Promise<void>((resolve) => {
      stream.write("", () => resolve());
    });
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  process.exit(code);
}
