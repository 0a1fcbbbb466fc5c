export * from "./app.ts";
export * from "./errors.ts";
export * from "./schemas.ts";
