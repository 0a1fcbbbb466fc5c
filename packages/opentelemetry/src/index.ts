export * from "./AuditSpanProcessor.ts";
export * from "./errors.ts";
export * from "./spanEvent.ts";
