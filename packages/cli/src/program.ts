/**
 * The `auditsink` command line (commander). Each action only parses options, calls one function of this
 * package and prints; exit status: 0 everything verified / succeeded, 1 verification found failures,
 * 2 the command could not run (see errors.ts).
 */
import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { receiptTlogProof } from "@auditsink/core";
import cliProgress from "cli-progress";
import { Command, InvalidArgumentError, Option } from "commander";
import envPaths from "env-paths";
import { CliError, EXIT_FAILURES, EXIT_OK } from "./errors.ts";
import { exportBundle } from "./exportBundle.ts";
import { importWithPeer } from "./optional.ts";
import type { Target } from "./producer.ts";
import { proveConsistency, proveInclusion } from "./prove.ts";
import type { S3ReadOptions } from "./stores.ts";
import { tail } from "./tail.ts";
import { checkTlog } from "./tlog.ts";
import type { TrustOptions } from "./trust.ts";
import { runVerify, type VerifyProgress, type VerifyResult } from "./verify.ts";

/** The version of this package (package.json sits one level above both src/ and dist/). */
function packageVersion(): string {
  return (
    JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
  ).version;
}

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Whether stderr is a terminal (the progress bar is drawn only then). */
  isTTY: boolean;
  /** The terminal the progress bar draws on (default: a stream writing through `err`). */
  errStream?: NodeJS.WritableStream;
  /** Receives the exit status of a command that decides one (verify). */
  setExitCode: (code: number) => void;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  isTTY: Boolean(process.stderr.isTTY),
  errStream: process.stderr,
  setExitCode: (c) => {
    process.exitCode = c;
  },
};

const int = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`${name} must be an integer`);
  return n;
};
const share = (name: string) => (value: string) => {
  const n = Number(value);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError(`${name} must be a number in (0, 1]`);
  return n;
};
/**
 * The MCP gateway loads only for `mcp-proxy`: `@auditsink/mcp` (the MCP SDK and its servers' dependencies) is an
 * optional peer of this package, so an auditor's install for `verify` stays small.
 */
function loadMcpProxy(): Promise<typeof import("./mcpProxy.ts")> {
  return importWithPeer(() => import("./mcpProxy.ts"), "@auditsink/mcp", "mcp-proxy needs the MCP gateway");
}

/** An integer of at least 1 (a count of worker threads, a number of seconds). */
const positiveInt = (name: string) => (value: string) => {
  const n = int(name)(value);
  if (n < 1) throw new InvalidArgumentError(`${name} must be at least 1`);
  return n;
};
const collect = (value: string, previous: string[] = []) => [...previous, value];
const list = (value: string, previous: string[] = []) => [
  ...previous,
  ...value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
];

interface TrustFlags {
  trustedKeys?: string[];
  verifierKey?: string[];
  fingerprint?: string[];
}
interface S3Flags {
  endpoint?: string;
  region?: string;
}

function trustOf(o: TrustFlags): TrustOptions {
  return {
    ...(o.trustedKeys ? { keyFiles: o.trustedKeys } : {}),
    ...(o.verifierKey ? { keys: o.verifierKey } : {}),
    ...(o.fingerprint ? { fingerprints: o.fingerprint } : {}),
  };
}
function s3Of(o: S3Flags): S3ReadOptions {
  return { ...(o.endpoint ? { endpoint: o.endpoint } : {}), ...(o.region ? { region: o.region } : {}) };
}

/** The pinned checkpoint keys, as files or strings. */
function withPinnedKeys(cmd: Command): Command {
  return cmd
    .option(
      "--trusted-keys <file>",
      "file of pinned checkpoint verifier keys, one per line (repeatable)",
      collect,
    )
    .option(
      "--verifier-key <key>",
      "a pinned checkpoint verifier key string <name>+<id>+<base64> (repeatable)",
      collect,
    );
}
function withTrust(cmd: Command): Command {
  return withPinnedKeys(cmd).option(
    "--fingerprint <sha256>",
    "pin the source's key whose DER SPKI has this SHA-256 (hex; repeatable)",
    collect,
  );
}
function withS3(cmd: Command): Command {
  return cmd
    .option("--endpoint <url>", "S3 endpoint override for s3:// sources (S3-compatible stores, emulators)")
    .option("--region <region>", "AWS region for s3:// sources (default: AWS_REGION or us-east-1)");
}

const SOURCE_HELP = "a data directory, an evidence bundle directory, or s3://bucket[/prefix]";

function printJson(io: Io, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}

function verifyText(r: VerifyResult): string {
  const lines: string[] = [];
  lines.push(
    `source ${r.source.kind} ${r.source.location}${r.source.deployment ? ` (deployment ${r.source.deployment})` : ""}`,
  );
  lines.push(`trusted keys (${r.trust.how}: ${r.trust.detail}): ${r.trust.fingerprints.join(", ")}`);
  if (r.witnessPolicy)
    lines.push(
      `witness policy: ${r.witnessPolicy.quorum} of ${r.witnessPolicy.witnesses.length} (${r.witnessPolicy.witnesses.join(", ")})`,
    );
  if (r.trust.how === "trust-on-first-use")
    lines.push(
      "  WARNING: trust on first use — these keys were not checked out of band; compare the fingerprint with the operator's",
    );
  lines.push(
    `producer signatures ${r.producerSignatures ? "re-verified" : "not checked (no producer keys)"}`,
  );
  for (const s of r.streams) {
    const status =
      s.failures.length === 0 ? "OK" : `${s.failures.length} FAILURE${s.failures.length > 1 ? "S" : ""}`;
    lines.push(
      `stream ${s.stream}: ${s.state.size > s.from ? `records ${s.from}…${s.state.size - 1}` : "no records"} (${s.records} verified), ${s.segments} segments, ${s.checkpoints} checkpoints, ${s.receipts} receipts — ${status}`,
    );
    if (r.witnessPolicy)
      lines.push(
        s.witnessed
          ? `  witnessed up to size ${s.witnessed.size}: cosigned by ${s.witnessed.witnesses.join(", ")}`
          : "  witnessed: no cosigned checkpoint meets the witness policy",
      );
    for (const f of s.failures) lines.push(`  FAIL ${f.code} at ${f.at ?? "-"}: ${f.message}`);
    for (const w of s.warnings) lines.push(`  warn ${w.code} at ${w.at ?? "-"}: ${w.message}`);
  }
  if (r.archive.length > 0)
    lines.push(`archive: ${r.archive.length} FAILURE${r.archive.length > 1 ? "S" : ""}`);
  for (const f of r.archive)
    lines.push(`  FAIL ${f.code}${f.stream ? ` stream ${f.stream}` : ""} at ${f.at ?? "-"}: ${f.message}`);
  const rc = r.receipts;
  if (rc.given > 0) {
    lines.push(
      `receipts: ${rc.given} given, ${rc.checked} checked against the log, ${rc.notChecked} not checked, ${rc.failures.length} not receipts`,
    );
    for (const f of rc.failures) lines.push(`  FAIL ${f.code} at ${f.at ?? "-"}: ${f.message}`);
  }
  lines.push(
    r.ok
      ? `verified: ${r.streams.length} stream(s), no failures`
      : `NOT VERIFIED: ${r.failures} failure(s) in ${r.streams.filter((s) => s.failures.length).length} of ${r.streams.length} stream(s)${r.archive.length ? `, ${r.archive.length} about the archive` : ""}${rc.failures.length ? `, ${rc.failures.length} receipt(s) malformed` : ""}`,
  );
  return `${lines.join("\n")}\n`;
}

/** The progress bar, drawn on stderr (callers only create it when stderr is a terminal). */
function progressBar(io: Io): VerifyProgress {
  const stream =
    io.errStream ??
    Object.assign(
      new Writable({
        write(chunk, _encoding, done) {
          io.err(String(chunk));
          done();
        },
      }),
      { isTTY: true, columns: process.stderr.columns ?? 80, cursorTo: () => true, clearLine: () => true },
    );
  const bar = new cliProgress.SingleBar(
    {
      format: " {stream} [{bar}] {value}/{total} records | {eta_formatted}",
      stream,
      noTTYOutput: true,
      notTTYSchedule: 1000,
    },
    cliProgress.Presets.shades_classic,
  );
  let running = false;
  return {
    start(stream, total) {
      bar.start(Math.max(total, 1), 0, { stream });
      running = true;
    },
    update(records) {
      if (records > bar.getTotal()) bar.setTotal(records);
      bar.update(records);
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}

/** The admin bearer token: from the environment by preference, since a command line is visible to every user. */
function adminTokenFlag(cmd: Command): Command {
  return cmd.addOption(
    new Option("--admin-token <token>", "admin bearer token (prefer the environment variable)").env(
      "AUDITSINK_ADMIN_TOKEN",
    ),
  );
}

/** The data directory `start` uses by default: the user's data home, never the working tree (it holds keys). */
export function defaultDataDir(): string {
  return envPaths("auditsink", { suffix: "" }).data;
}

export function buildProgram(io: Io = processIo): Command {
  const program = new Command("auditsink")
    .description(
      "Tamper-evident audit sink: run it, register producers, send events, verify, export and prove.",
    )
    .version(packageVersion(), "-V, --version")
    .showHelpAfterError()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    // Subcommands inherit this: commander throws instead of exiting, and run() turns that into a status.
    .exitOverride();

  // Every option of `start` can also come from an AUDITSINK_* environment variable (a flag wins), so that a
  // supervisor (systemd, a container) configures the sink without a command line; docs/OPERATIONS.md lists them.
  program
    .command("start")
    .description("run the embedded sink (HTTP API, local data directory, scheduled verifier)")
    .addOption(
      new Option("--data-dir <dir>", "data directory (keys, records, state)")
        .env("AUDITSINK_DATA_DIR")
        .default(defaultDataDir(), "$XDG_DATA_HOME/auditsink, else ~/.local/share/auditsink"),
    )
    .addOption(new Option("--data <dir>").hideHelp()) // the flag's earlier name
    .addOption(
      new Option("--host <host>", "interface to listen on").env("AUDITSINK_HOST").default("127.0.0.1"),
    )
    .addOption(
      new Option("--port <port>", "port (0 picks a free one)")
        .env("AUDITSINK_PORT")
        .argParser(int("--port"))
        .default(8787),
    )
    .addOption(
      new Option(
        "--deployment <name>",
        "deployment name, fixed at first start (checkpoint key name and origin prefix)",
      ).env("AUDITSINK_DEPLOYMENT"),
    )
    .addOption(
      new Option(
        "--checkpoint-key <algorithm>",
        "algorithm of the checkpoint signing key when the data directory's key is first created (default ecdsa-p256; an existing key is never replaced)",
      )
        .env("AUDITSINK_CHECKPOINT_KEY")
        .choices(["ed25519", "ecdsa-p256"]),
    )
    .addOption(
      new Option(
        "--verify-interval <seconds>",
        "seconds between scheduled verifications (0: off; default 60)",
      )
        .env("AUDITSINK_VERIFY_INTERVAL")
        .argParser(int("--verify-interval")),
    )
    .addOption(
      new Option(
        "--full-verify-interval <seconds>",
        "a sweep of the whole archive starts at the latest this long after the last one started (default 300)",
      )
        .env("AUDITSINK_FULL_VERIFY_INTERVAL")
        .argParser(int("--full-verify-interval")),
    )
    .addOption(
      new Option(
        "--verify-sweep-share <fraction>",
        "share of the sink's time the sweep may take, in (0, 1] (default 0.1): with the archive's size, the bound on catching a changed old object",
      )
        .env("AUDITSINK_VERIFY_SWEEP_SHARE")
        .argParser(share("--verify-sweep-share")),
    )
    .addOption(
      new Option(
        "--tiles <mode>",
        "on: store every stream's full tlog-tiles tiles and entry bundles as it commits (docs/TRANSPARENCY.md); off: do not",
      )
        .env("AUDITSINK_TILES")
        .choices(["on", "off"])
        .default("on"),
    )
    .addOption(
      new Option("--webhook <url>", "also POST alerts here (retried with backoff from a durable outbox)").env(
        "AUDITSINK_WEBHOOK_URL",
      ),
    )
    .addOption(
      new Option(
        "--witness <url-and-key>",
        'a witness to ask for cosignatures: "<submission URL> <verifier key>" (repeatable; the environment variable takes several, one per line or comma-separated; docs/TRANSPARENCY.md §3)',
      )
        .env("AUDITSINK_WITNESSES")
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]),
    )
    .addOption(
      new Option(
        "--witness-quorum <n>",
        "valid cosignatures each checkpoint should get; fewer is reported by /healthz and metrics (default: every witness)",
      )
        .env("AUDITSINK_WITNESS_QUORUM")
        .argParser(positiveInt("--witness-quorum")),
    )
    .addOption(
      new Option(
        "--witness-interval <seconds>",
        "least time between two submissions of one stream's checkpoint to the witnesses (default 10)",
      )
        .env("AUDITSINK_WITNESS_INTERVAL")
        .argParser(int("--witness-interval")),
    )
    .addOption(
      new Option(
        "--witness-max-lag <seconds>",
        "the scheduled verifier reports witness-policy-unmet when a checkpoint waits longer for a quorum (default 300, or 3 intervals)",
      )
        .env("AUDITSINK_WITNESS_MAX_LAG")
        .argParser(int("--witness-max-lag")),
    )
    .addOption(
      new Option(
        "--witness-streams <patterns>",
        "streams whose checkpoints are submitted, comma-separated patterns like agents.* (default: every stream)",
      ).env("AUDITSINK_WITNESS_STREAMS"),
    )
    .addOption(
      new Option(
        "--log-level <level>",
        "lowest level logged as JSON lines on stderr: fatal, error, warn, info, debug, trace or silent",
      )
        .env("LOG_LEVEL")
        .default("info"),
    )
    .action(async (o) => {
      const { start } = await import("./start.ts");
      const { parseLogLevel, parseWitnessList } = await import("@auditsink/local");
      const witnessSpecs = (o.witness as string[] | undefined)?.flatMap(parseWitnessList) ?? [];
      await start({
        dataDir: o.data ?? o.dataDir,
        host: o.host,
        port: o.port,
        ...(o.deployment ? { deployment: o.deployment } : {}),
        ...(o.checkpointKey ? { checkpointKey: o.checkpointKey } : {}),
        ...(o.verifyInterval !== undefined ? { verifyIntervalSeconds: o.verifyInterval } : {}),
        ...(o.fullVerifyInterval !== undefined ? { fullVerifyIntervalSeconds: o.fullVerifyInterval } : {}),
        ...(o.verifySweepShare !== undefined ? { verifySweepShare: o.verifySweepShare } : {}),
        ...(o.webhook ? { webhookUrl: o.webhook } : {}),
        ...(witnessSpecs.length > 0
          ? {
              witnesses: {
                witnesses: witnessSpecs,
                ...(o.witnessQuorum !== undefined ? { quorum: o.witnessQuorum } : {}),
                ...(o.witnessInterval !== undefined ? { intervalSeconds: o.witnessInterval } : {}),
                ...(o.witnessMaxLag !== undefined ? { maxLagSeconds: o.witnessMaxLag } : {}),
                ...(o.witnessStreams
                  ? {
                      streams: String(o.witnessStreams)
                        .split(",")
                        .map((p: string) => p.trim()),
                    }
                  : {}),
              },
            }
          : {}),
        ...(o.tiles === "off" ? { tiles: false } : {}),
        logLevel: parseLogLevel(o.logLevel),
        // The human start-up text on a terminal only; elsewhere the `auditsink started` log line says it all.
        print: process.stdout.isTTY ? io.out : () => undefined,
      });
    });

  program
    .command("mcp-proxy")
    .description(
      "run the MCP gateway: forward an agent's MCP traffic to real servers, record every tools/call decision (docs/MCP.md)",
    )
    .addOption(
      new Option("--config <file>", "gateway configuration (YAML or JSON)")
        .env("AUDITSINK_MCP_CONFIG")
        .makeOptionMandatory(),
    )
    .option(
      "--http <port>",
      "serve Streamable HTTP on this port instead of stdio (0 picks a free one)",
      int("--http"),
    )
    .option("--host <host>", "interface for --http (default 127.0.0.1)")
    .addOption(
      new Option(
        "--session-idle <seconds>",
        "with --http: close an agent's MCP session after this long without a request (default 1800)",
      )
        .env("AUDITSINK_MCP_SESSION_IDLE")
        .argParser(positiveInt("--session-idle")),
    )
    .action(async (o) => {
      const { mcpProxy } = await loadMcpProxy();
      // stdout is the MCP channel on stdio: everything else goes to stderr.
      await mcpProxy({
        config: o.config,
        ...(o.http !== undefined ? { http: o.http } : {}),
        ...(o.host ? { host: o.host } : {}),
        ...(o.sessionIdle !== undefined ? { sessionIdleSeconds: o.sessionIdle } : {}),
        log: (line) => io.err(`${line}\n`),
      });
    });

  const producer = program.command("producer").description("register, list and revoke producers");
  const targetFlags = (cmd: Command) =>
    adminTokenFlag(cmd)
      .option("--url <url>", "a running sink's API")
      .option("--data-dir <dir>", "a data directory no sink is running on")
      .addOption(new Option("--data <dir>").hideHelp()) // the flag's earlier name
      .option("--json", "machine-readable output");
  const targetOf = (o: { url?: string; adminToken?: string; data?: string; dataDir?: string }): Target => ({
    ...(o.url ? { url: o.url } : {}),
    ...(o.adminToken ? { adminToken: o.adminToken } : {}),
    ...((o.data ?? o.dataDir) ? { data: o.data ?? o.dataDir } : {}),
  });
  targetFlags(
    producer
      .command("create")
      .description("create a key pair (private key written 0600) and register its public key")
      .requiredOption("--id <id>", "producer id")
      .requiredOption(
        "--streams <names>",
        "streams it may write: names or prefixes ending in '*' (comma list)",
        list,
      )
      .option("--heartbeat <seconds>", "alert when it sends nothing for this long", int("--heartbeat"))
      .addOption(
        new Option("--algorithm <alg>", "key algorithm")
          .choices(["ed25519", "ecdsa-p256"])
          .default("ed25519"),
      )
      .option("--key-file <file>", "where to write the private key (default <id>.key.pem)"),
  ).action(async (o) => {
    const { createProducer } = await import("./producer.ts");
    const r = await createProducer({
      ...targetOf(o),
      id: o.id,
      streams: o.streams,
      algorithm: o.algorithm,
      ...(o.heartbeat !== undefined ? { heartbeatSeconds: o.heartbeat } : {}),
      ...(o.keyFile ? { keyFile: o.keyFile } : {}),
    });
    if (o.json) printJson(io, r);
    else
      io.out(
        `producer ${r.producer.id} registered\n  key id   ${r.keyId}\n  key file ${r.keyFile} (keep it secret)\n`,
      );
  });
  targetFlags(producer.command("list").description("list producers and their keys")).action(async (o) => {
    const { listProducers } = await import("./producer.ts");
    const producers = await listProducers(targetOf(o));
    if (o.json) printJson(io, { producers });
    else
      for (const p of producers) {
        io.out(`${p.id}  streams ${p.streams.join(",")}\n`);
        for (const k of p.keys)
          io.out(`  ${k.keyId} ${k.algorithm}${k.revokedAt ? ` revoked ${k.revokedAt}` : ""}\n`);
      }
  });
  targetFlags(
    producer
      .command("revoke")
      .description("revoke one key of a producer, or all of its keys")
      .argument("<id>", "producer id")
      .option("--key-id <keyId>", "only this key (64 hex)"),
  ).action(async (id: string, o) => {
    const { revokeProducer } = await import("./producer.ts");
    const p = await revokeProducer(targetOf(o), id, o.keyId);
    if (o.json) printJson(io, p);
    else
      io.out(
        `producer ${p.id}: ${p.keys.filter((k) => k.revokedAt).length} of ${p.keys.length} keys revoked\n`,
      );
  });

  const findings = program
    .command("findings")
    .description("the scheduled verifier's standing findings on a running sink, and their acknowledgement");
  const findingFlags = (cmd: Command) =>
    adminTokenFlag(cmd)
      .requiredOption("--url <url>", "the running sink's API")
      .option("--json", "machine-readable output");
  findingFlags(
    findings.command("list").description("open findings (and acknowledged ones with --json)"),
  ).action(async (o) => {
    const { listFindings } = await import("./findings.ts");
    const r = await listFindings(targetOf(o));
    if (o.json) printJson(io, r);
    else {
      if (r.open.length === 0) io.out("no open findings\n");
      for (const f of r.open)
        io.out(`${f.id}  ${f.code}  ${f.stream ?? ""} ${f.at ?? ""}  since ${f.firstSeen}\n  ${f.message}\n`);
    }
  });
  findingFlags(
    findings
      .command("ack")
      .description("acknowledge findings: recorded in the _system stream, then they close")
      .argument("<ids...>", "finding ids (16 hex)")
      .requiredOption("--note <text>", "why (recorded in the log)")
      .option("--by <name>", "who acknowledges (recorded in the log)"),
  ).action(async (ids: string[], o) => {
    const { acknowledgeFindings } = await import("./findings.ts");
    const closed = await acknowledgeFindings(targetOf(o), ids, o.note, o.by);
    if (o.json) printJson(io, { acknowledged: closed });
    else io.out(`${closed.length} finding(s) acknowledged and recorded in _system\n`);
  });

  withTrust(
    program
      .command("send")
      .description("sign and send events (JSON lines, a JSON array or one object; or one event from flags)")
      .argument("[file]", "input file ('-' or absent: stdin)")
      .requiredOption("--url <url>", "the sink's API")
      .requiredOption("--key <file>", "the producer's private key (PEM)")
      .requiredOption("--stream <name>", "stream")
      .option("--source <uri>", "CloudEvents source for events that name none")
      .option("--type <type>", "send one event of this type instead of reading input")
      .option("--data <json>", "its data")
      .option("--subject <subject>", "its subject")
      .option("--id <id>", "its id (default: a random UUID)")
      .option("--sink-key <key>", "pin the sink's checkpoint verifier key (same as --verifier-key)", collect)
      .option(
        "--state-file <file>",
        "witness state: the newest checkpoint seen, to catch rollbacks and forks",
      )
      .option("--json", "print receipts as JSON lines"),
  ).action(async (file: string | undefined, o) => {
    const trust = trustOf({ ...o, verifierKey: [...(o.verifierKey ?? []), ...(o.sinkKey ?? [])] });
    const { send } = await import("./send.ts");
    const receipts = await send({
      ...trust,
      url: o.url,
      keyFile: o.key,
      stream: o.stream,
      ...(o.source ? { source: o.source } : {}),
      ...(file ? { file } : {}),
      ...(o.type ? { type: o.type } : {}),
      ...(o.data !== undefined ? { data: o.data } : {}),
      ...(o.subject ? { subject: o.subject } : {}),
      ...(o.id ? { id: o.id } : {}),
      ...(o.stateFile ? { stateFile: o.stateFile } : {}),
      warn: io.err,
    });
    for (const r of receipts) {
      if (o.json) io.out(`${JSON.stringify(r)}\n`);
      else
        io.out(
          `${r.stream} #${r.index}  ${r.source} ${r.id}  record ${r.recordHash.slice(0, 16)}…  receipt verified\n`,
        );
    }
  });

  withS3(
    withTrust(
      program
        .command("verify")
        .description("verify every record, chain link, Merkle root, checkpoint and signature, offline")
        .argument("<source>", SOURCE_HELP)
        .option("--stream <name>", "only this stream (repeatable)", collect)
        .option("--state <file>", "incremental: resume from this state file and save the new state to it")
        .option("--full", "verify from record 0 even with --state")
        .option(
          "--receipts <file>",
          "receipts to check against the log: JSON array, JSON lines, or one tlog-proof per file (repeatable)",
          collect,
        )
        .option("--no-producer-signatures", "skip re-verifying producer signatures")
        .option(
          "--trust-on-first-use <file>",
          "with nothing pinned: pin the source's one key to <file> on the first run (loudly), then trust only <file>",
        )
        .option(
          "--jobs <n>",
          "worker threads that check records (default: one per core; 1: no workers)",
          positiveInt("--jobs"),
        )
        .addOption(
          new Option("--threads <n>", "the earlier name of --jobs")
            .hideHelp()
            .argParser(positiveInt("--threads")),
        )
        .option(
          "--witness <vkey>",
          "a witness verifier key: checkpoints must be cosigned by a quorum of these (repeatable)",
          collect,
        )
        .option(
          "--witness-quorum <n>",
          "cosignatures required (default: every --witness)",
          positiveInt("--witness-quorum"),
        )
        .option(
          "--witness-max-lag <seconds>",
          "how long a checkpoint may wait for its cosignatures (default 300)",
          int("--witness-max-lag"),
        )
        .option("--no-progress", "no progress bar")
        .option("--json", "machine-readable report (never a progress bar)"),
    ),
  ).action(async (location: string, o) => {
    const showBar = io.isTTY && !o.json && o.progress !== false;
    const result = await runVerify(
      location,
      {
        ...trustOf(o),
        ...(o.trustOnFirstUse ? { trustOnFirstUse: o.trustOnFirstUse } : {}),
        ...(o.stream ? { streams: o.stream } : {}),
        ...(o.state ? { stateFile: o.state } : {}),
        ...(o.full ? { full: true } : {}),
        ...(o.receipts ? { receiptsFiles: o.receipts } : {}),
        producerSignatures: o.producerSignatures !== false,
        ...((o.jobs ?? o.threads) !== undefined ? { jobs: o.jobs ?? o.threads } : {}),
        ...(o.witness
          ? {
              witnesses: {
                verifierKeys: o.witness,
                ...(o.witnessQuorum !== undefined ? { quorum: o.witnessQuorum } : {}),
                ...(o.witnessMaxLag !== undefined ? { maxLagSeconds: o.witnessMaxLag } : {}),
              },
            }
          : {}),
        s3: s3Of(o),
      },
      showBar ? progressBar(io) : undefined,
    );
    if (result.trust.firstUse)
      io.err(
        `TRUST ON FIRST USE: pinned ${result.trust.fingerprints.join(", ")} to ${o.trustOnFirstUse} without any out-of-band check.\n` +
          "Compare this fingerprint with the one the operator publishes before relying on this or any later run.\n",
      );
    if (o.json) printJson(io, result);
    else io.out(verifyText(result));
    io.setExitCode(result.ok ? EXIT_OK : EXIT_FAILURES);
  });

  withS3(
    withTrust(
      program
        .command("export")
        .description("write an evidence bundle for a stream and time window, verifiable offline")
        .argument("<source>", SOURCE_HELP)
        .requiredOption("--stream <name>", "stream")
        .requiredOption("--out <dir>", "bundle directory (must not exist or be empty)")
        .option(
          "--received-since <time>",
          "records received at or after this time (RFC 3339; as GET /v1/events?receivedSince=)",
        )
        .option(
          "--received-until <time>",
          "records received before this time (RFC 3339; as GET /v1/events?receivedUntil=)",
        )
        .option("--from <time>", "the same as --received-since (older name)")
        .option("--to <time>", "the same as --received-until (older name)")
        .option(
          "--all-proofs",
          "an inclusion proof for every record (default: all up to 1,000, else first and last)",
        )
        .option("--json", "machine-readable summary"),
    ),
  ).action(async (location: string, o) => {
    const r = await exportBundle(location, {
      ...trustOf(o),
      stream: o.stream,
      out: o.out,
      ...((o.receivedSince ?? o.from) ? { from: o.receivedSince ?? o.from } : {}),
      ...((o.receivedUntil ?? o.to) ? { to: o.receivedUntil ?? o.to } : {}),
      ...(o.allProofs ? { allProofs: true } : {}),
      s3: s3Of(o),
    });
    if (o.json) printJson(io, r);
    else
      io.out(
        `bundle ${r.out}: records ${r.manifest.records.first}…${r.manifest.records.end - 1} of ${r.manifest.stream}, covered by checkpoint ${r.manifest.coveredBy}; ${r.files} files, ${r.bytes} bytes, ${r.inclusionProofs} inclusion and ${r.consistencyProofs} consistency proofs\n` +
          `check it: auditsink verify ${r.out} --fingerprint ${r.manifest.keyFingerprints[0]}\n`,
      );
  });

  withS3(
    withTrust(
      program
        .command("trust")
        .description(
          "the checkpoint keys to pin: the deployment's verifier key string and, per stream, the one named after its origin",
        )
        .argument("<source>", SOURCE_HELP)
        .option(
          "--stream <name>",
          "per-stream key strings for this stream (repeatable; default: every stream)",
          collect,
        )
        .option("--json", "machine-readable listing"),
    ),
  ).action(async (location: string, o) => {
    const { trustKeys } = await import("./trustKeys.ts");
    const r = await trustKeys(location, {
      ...trustOf(o),
      ...(o.stream ? { streams: o.stream } : {}),
      s3: s3Of(o),
    });
    if (o.json) return printJson(io, r);
    io.out(`keys ${r.detail}\n`);
    for (const k of r.keys) {
      io.out(`${k.name} (${k.algorithm}, fingerprint ${k.fingerprint})\n  every stream: ${k.verifierKey}\n`);
      for (const s of k.streams) io.out(`  ${s.stream}: ${s.verifierKey}\n`);
    }
  });

  const proofCmd = program
    .command("verify-proof")
    .description(
      "check a receipt kept as a c2sp.org/tlog-proof file, offline: signature, origin, inclusion, and the record",
    )
    .argument("<file>", "the .tlog-proof file")
    .option("--record <file>", "the record it proves (JSON: a segment line or GET …/records' record)");
  withPinnedKeys(proofCmd)
    .option("--deployment <name>", "require the checkpoint origin <name>/<stream>")
    .option("--json", "machine-readable result")
    .action(async (file: string, o) => {
      const { verifyProofFile } = await import("./verifyProof.ts");
      const r = await verifyProofFile(file, {
        ...trustOf(o),
        ...(o.record ? { recordFile: o.record } : {}),
        ...(o.deployment ? { deployment: o.deployment } : {}),
      });
      if (o.json) printJson(io, r);
      else if (r.ok) {
        const p = r.proof!;
        io.out(
          `verified: record #${p.index} of ${p.stream} (source ${p.source}, id ${p.id}) is in the log ${p.origin} of size ${p.size}\n` +
            (r.record === "checked"
              ? "record: checked against the file given\n"
              : `record: not given — proven is the record hash ${p.recordHash}; pass --record to check the record itself\n`),
        );
      } else io.out(`NOT VERIFIED: ${r.failure!.code}: ${r.failure!.detail}\n`);
      io.setExitCode(r.ok ? EXIT_OK : EXIT_FAILURES);
    });

  const prove = program
    .command("prove")
    .description("inclusion and consistency proofs, checked before printing");
  withS3(
    withTrust(
      prove
        .command("inclusion")
        .description(
          "a receipt (inclusion proof + signed checkpoint) for a record, by index or by source and id",
        )
        .argument("<source>", SOURCE_HELP)
        .requiredOption("--stream <name>", "stream")
        .option("--index <n>", "record index", int("--index"))
        .option("--event-source <source>", "the event's CloudEvents source")
        .option("--event-id <id>", "the event's CloudEvents id")
        .option("--size <n>", "prove against the checkpoint of this size", int("--size"))
        .addOption(
          new Option("--format <format>", "json (a receipt) or tlog-proof (c2sp.org/tlog-proof text)")
            .choices(["json", "tlog-proof"])
            .default("json"),
        ),
    ),
  ).action(async (location: string, o) => {
    const receipt = await proveInclusion(location, {
      ...trustOf(o),
      stream: o.stream,
      ...(o.index !== undefined ? { index: o.index } : {}),
      ...(o.eventSource ? { eventSource: o.eventSource } : {}),
      ...(o.eventId ? { eventId: o.eventId } : {}),
      ...(o.size !== undefined ? { size: o.size } : {}),
      s3: s3Of(o),
    });
    if (o.format === "tlog-proof") io.out(receiptTlogProof(receipt));
    else printJson(io, receipt);
  });
  withS3(
    withTrust(
      prove
        .command("consistency")
        .description("a consistency proof between two stored checkpoints")
        .argument("<source>", SOURCE_HELP)
        .requiredOption("--stream <name>", "stream")
        .requiredOption(
          "--from <size>",
          "older checkpoint size (0: the empty tree, an empty proof)",
          int("--from"),
        )
        .requiredOption("--to <size>", "newer checkpoint size", int("--to")),
    ),
  ).action(async (location: string, o) => {
    printJson(
      io,
      await proveConsistency(location, {
        ...trustOf(o),
        stream: o.stream,
        from: o.from,
        to: o.to,
        s3: s3Of(o),
      }),
    );
  });

  const tlog = program
    .command("tlog")
    .description(
      "read any c2sp.org/tlog-tiles log: a stream's /tlog/<stream>/ URL, a Tessera log, a directory",
    );
  tlog
    .command("check")
    .description(
      "verify the checkpoint with pinned keys, prove entries included and, with --state, the log consistent with the checkpoint seen last time (exit 1 when the log fails a check)",
    )
    .argument("<url|dir>", "the log's URL prefix (…/tlog/<stream>/) or a directory holding its files")
    .requiredOption("--key <vkey>", "the log's verifier key <name>+<id>+<base64> (repeatable)", collect)
    .option("--origin <origin>", "the log's checkpoint origin (default: the first key's name)")
    .option(
      "--entry-index <n>",
      "an entry to read and prove included (repeatable)",
      (v: string, prev: number[] = []) => [...prev, int("--entry-index")(v)],
    )
    .option("--state <file>", "the checkpoint seen last time: prove consistency from it, then replace it")
    .action(async (location: string, o) => {
      const r = await checkTlog(location, {
        verifierKeys: o.key,
        ...(o.origin ? { origin: o.origin } : {}),
        entries: o.entryIndex ?? [],
        ...(o.state ? { state: o.state } : {}),
      });
      printJson(io, r);
      if (!r.ok) io.setExitCode(EXIT_FAILURES);
    });

  withS3(
    program
      .command("query")
      .description("find events by agent, run, type, trace, identity and time, as GET /v1/events does")
      .argument("<source>", SOURCE_HELP)
      .option("--agent <id>", "gen_ai.agent.id in the event data (or the agentid extension)")
      .option("--run <id>", "gen_ai.conversation.id in the event data (or the runid extension)")
      .option("--type <type>", "CloudEvents type")
      .option("--trace-id <hex>", "trace id of the event's traceparent (32 lowercase hex)")
      .option("--source <uri>", "CloudEvents source of the event (not the <source> read from)")
      .option("--id <id>", "CloudEvents id")
      .option("--producer <id>", "the registered producer whose key signed the event")
      .option("--since <time>", "event time (written by the producer) at or after (RFC 3339)")
      .option("--until <time>", "event time before (RFC 3339)")
      .option("--received-since <time>", "record received time (written by the sink) at or after (RFC 3339)")
      .option("--received-until <time>", "record received time before (RFC 3339)")
      .option("--limit <n>", "page size, 1–1000 (default 100)")
      .option("--cursor <cursor>", "the next page: the cursor the previous page printed on stderr")
      .option("--all", "every page, following the cursor")
      .option("--json", "JSON lines: one {stream, index, recordHash, received, producer, event} per event"),
  ).action(async (location: string, o) => {
    const { openQuerySource, parseQuery, QUERY_FLAGS, queryEvents } = await import("./query.ts");
    const flags = Object.fromEntries(Object.keys(QUERY_FLAGS).map((k) => [k, o[k]]));
    const query = await parseQuery(flags);
    const index = await openQuerySource(location, s3Of(o));
    let found = 0;
    try {
      const cursor = await queryEvents(
        index,
        query,
        (events) => {
          found += events.length;
          for (const e of events) {
            if (o.json) io.out(`${JSON.stringify(e)}\n`);
            else
              io.out(
                `${e.stream} #${e.index}  ${e.event.time}  ${e.event.type}  ${e.event.source} ${e.event.id}  (${e.producer}, received ${e.received})\n`,
              );
          }
        },
        Boolean(o.all),
      );
      // The next page's cursor goes to stderr, so that stdout holds only events (one JSON object per line).
      if (cursor) io.err(`cursor ${cursor}\n`);
      else if (found === 0 && !o.json) io.err("no events match\n");
    } finally {
      await index.close();
    }
  });

  withS3(
    program
      .command("tail")
      .description("print a stream's records, and with --follow the new ones as they are committed")
      .argument("<source>", SOURCE_HELP)
      .requiredOption("--stream <name>", "stream")
      .option("--from <index>", "first index; negative counts from the end", int("--from"), -10)
      .option("-f, --follow", "keep printing new records")
      .option("--interval <ms>", "poll interval with --follow", int("--interval"), 1000)
      .option("--json", "JSON lines"),
  ).action(async (location: string, o) => {
    const controller = new AbortController();
    process.once("SIGINT", () => controller.abort());
    await tail(
      location,
      {
        stream: o.stream,
        from: o.from,
        follow: Boolean(o.follow),
        intervalMs: o.interval,
        s3: s3Of(o),
        signal: controller.signal,
      },
      (r) => {
        if (o.json) io.out(`${JSON.stringify(r)}\n`);
        else
          io.out(
            `#${r.index} ${r.record.received} ${r.record.producer} ${r.record.event.type} ${r.record.event.source} ${r.record.event.id}\n`,
          );
      },
    );
  });

  return program;
}

/** Runs the CLI; resolves with the exit status. */
export async function run(argv: readonly string[], io: Io = processIo): Promise<number> {
  let code = EXIT_OK;
  const program = buildProgram({ ...io, setExitCode: (c) => (code = c) });
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (e) {
    const err = e as { code?: string; exitCode?: number; message?: string };
    if (typeof err.code === "string" && err.code.startsWith("commander.")) {
      return err.exitCode === 0 ? EXIT_OK : 2;
    }
    if (e instanceof CliError) io.err(`auditsink: ${e.message}\n`);
    else io.err(`auditsink: ${(e as Error).message ?? String(e)}\n`);
    return 2;
  }
  return code;
}
