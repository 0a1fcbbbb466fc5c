import type { SSTConfig } from "sst";
import { auditsink } from "./stacks/index.ts";
import { settingsFromEnv } from "./stacks/settings.ts";

/** Region used unless `--region` is given: EU, where AI Act record-keeping applies. */
export const DEFAULT_REGION = "eu-central-1";
/** Stage used unless `--stage` is given. */
export const DEFAULT_STAGE = "dev";

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
