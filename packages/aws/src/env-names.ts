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

/**
 * Environment names of the witness settings (docs/TRANSPARENCY.md §3; stacks/Sequencer.ts and stacks/Verify.ts
 * set them from the stage's witness settings). `WITNESSES` holds `<url> <vkey>` specs, one per line.
 */
export const WITNESS_ENV = {
  witnesses: "WITNESSES",
  quorum: "WITNESS_QUORUM",
  intervalSeconds: "WITNESS_INTERVAL_SECONDS",
  maxLagSeconds: "WITNESS_MAX_LAG_SECONDS",
  streams: "WITNESS_STREAMS",
  timeoutSeconds: "WITNESS_TIMEOUT_SECONDS",
} as const;
