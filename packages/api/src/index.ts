export * from "./app.ts";
export * from "./errors.ts";
export * from "./observe.ts";
export * from "./schemas.ts";
