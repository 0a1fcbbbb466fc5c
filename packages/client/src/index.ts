export * from "./AuditClient.ts";
export * from "./CheckpointWitness.ts";
export * from "./errors.ts";
export * from "./keys.ts";
export * from "./retry.ts";
export * from "./tlogSources.ts";
