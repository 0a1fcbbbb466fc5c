/**
 * The embedded sink's one logger (pino): JSON lines with a string `level`, an ISO `time` and a `msg`, written to
 * stderr by default (stdout stays for the human start-up text). docs/OPERATIONS.md §Logs lists the fields.
 * Secrets never reach a line: no code logs headers, tokens or signatures, and the redaction below censors those
 * names anyway should an object carrying one ever be logged.
 */
import { type Level, type Logger, pino, stdTimeFunctions } from "pino";

export type { Logger };

/** Levels from most to least severe; `silent` logs nothing. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  /** Lowest level written (default `info`). */
  level?: LogLevel;
  /** Receives each JSON line without its newline (default: stderr). */
  write?: (line: string) => void;
}

/**
 * Fields censored should an object carrying one be logged. Named paths only: a wildcard (`*.token`) makes pino
 * copy every logged object and cost ~45 µs a line, more than the rest of a request's logging and metrics.
 */
const SECRET_FIELDS = [
  "authorization",
  "adminToken",
  "token",
  "signature",
  "privateKey",
  "headers.authorization",
  "event.signature",
];

/** A checked LOG_LEVEL / `--log-level` value; throws naming the allowed levels. */
export function parseLogLevel(value: string): LogLevel {
  const level = value.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel;
  throw new Error(`log level must be one of ${LOG_LEVELS.join(", ")}, not ${JSON.stringify(value)}`);
}

/**
 * @example
 *   const logger = createLogger({ level: parseLogLevel(process.env.LOG_LEVEL ?? "info") });
 *   logger.warn({ file }, "index.db does not match the store: moved aside, rebuilding it from the store");
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const write = options.write;
  return pino(
    {
      level: options.level ?? "info",
      base: { pid: process.pid },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: SECRET_FIELDS, censor: "[redacted]" },
    },
    write
      ? { write: (line: string) => write(line.endsWith("\n") ? line.slice(0, -1) : line) }
      : pino.destination({ dest: 2, sync: true }),
  );
}

/** A logger that writes nothing (the default of library calls that take one). */
export const silentLogger: Logger = pino({ level: "silent" });

/** Routes polled by machines: their lines are `debug`, so a scrape every few seconds does not drown the log. */
const POLLED_ROUTES = new Set(["/healthz", "/metrics"]);

/**
 * The level of a request log line (docs/OPERATIONS.md §Logs): 5xx `error`; a client that hung up, and refused
 * authentication (401, 403), `warn`; other answers `info`, or `debug` for health checks and scrapes.
 */
export function requestLevel(route: string, status: number, aborted: boolean): Level {
  if (aborted) return "warn";
  if (status >= 500) return "error";
  if (status === 401 || status === 403) return "warn";
  return POLLED_ROUTES.has(route) && status < 400 ? "debug" : "info";
}
