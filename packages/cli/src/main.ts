#!/usr/bin/env node
/** The `auditsink` executable: `npm start` runs `main.ts start`, `npm run auditsink -- <command>` the rest. */
import { run } from "./program.ts";

const code = await run(process.argv.slice(2));
// `start` keeps the process alive with its server; every other command ends here.
if (code !== 0) process.exit(code);
