/**
 * Environment variable names the stacks set and the runtime reads. No imports: the stacks (bundled by SST for
 * synthesis) import this file, and must not pull the runtime (core and its dependencies) into that bundle.
 */

/** Environment names of the verifier's settings (stacks/Verify.ts sets them). */
export const VERIFIER_ENV = {
  trustedKeyFingerprints: "TRUSTED_KEY_FINGERPRINTS",
  archiveChangesQueueUrl: "ARCHIVE_CHANGES_QUEUE_URL",
  sweepPagesPerRun: "SWEEP_PAGES_PER_RUN",
  sweepIntervalDays: "SWEEP_INTERVAL_DAYS",
} as const;
