import type { SSTConfig } from "sst";
import { DEFAULT_REGION, DEFAULT_STAGE } from "./stacks/defaults.ts";
import { auditsink } from "./stacks/index.ts";
import { settingsFromEnv } from "./stacks/settings.ts";

export { DEFAULT_REGION, DEFAULT_STAGE };

export default {
  config(input) {
    return {
      name: "auditsink",
      region: input.region ?? DEFAULT_REGION,
      stage: input.stage ?? DEFAULT_STAGE,
    };
  },
  stacks(app) {
    // Stage settings come from AUDITSINK_* variables; SST has loaded .env.<stage> into process.env by now.
    auditsink(app, settingsFromEnv(process.env));
  },
} satisfies SSTConfig;
