/** Region used unless `--region` is given: EU, where AI Act record-keeping applies. */
export const DEFAULT_REGION = "eu-central-1";
/** Stage used unless `--stage` is given. */
export const DEFAULT_STAGE = "dev";
