/**
 * Real witness software for the tests: litewitness (c2sp.org/tlog-witness) and witnessctl from the Go module
 * filippo.io/torchwood v0.6.1, pinned by test/witness/go/go.mod and go.sum, built once per checkout into
 * `.emulators/litewitness-<hash of the Go sources>/` (ignored by git) with the Go toolchain on the machine.
 * litewitness reads its Ed25519 key from an ssh-agent; test/witness/go/agent (golang.org/x/crypto's agent
 * keyring) serves a key generated here, so nothing beyond Go is needed. A missing Go fails the run.
 *
 * @example
 *   const witness = await startLitewitness("witness.test/w1");
 *   await witness.addLog(origin, logVerifierKey);
 *   ... POST `${witness.url}/add-checkpoint` ...
 *   await witness.stop();
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import lockfile from "proper-lockfile";
import { freePort, ownsListener, startWithRetry, stopProcess } from "../emulators/harness.ts";

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const GO_MODULE = join(ROOT, "test/witness/go");
const STATE = join(ROOT, ".emulators");

/**
 * A fresh build takes about 3 minutes on 2 loaded cores (mostly modernc.org/sqlite, litewitness's pure-Go SQLite)
 * plus the module downloads; later runs find the binaries and take no time. Test files that start litewitness
 * give their beforeAll this timeout.
 */
export const LITEWITNESS_BUILD_TIMEOUT_MS = 600_000;

export interface WitnessBinaries {
  litewitness: string;
  witnessctl: string;
  agent: string;
}

/** Builds litewitness, witnessctl and the agent unless this exact source set was built already. */
export async function ensureLitewitness(): Promise<WitnessBinaries> {
  const sources = ["go.mod", "go.sum", "agent/main.go"].map((f) => readFileSync(join(GO_MODULE, f)));
  const digest = createHash("sha256").update(Buffer.concat(sources)).digest("hex").slice(0, 16);
  const dir = join(STATE, `litewitness-${digest}`);
  const bins = {
    litewitness: join(dir, "litewitness"),
    witnessctl: join(dir, "witnessctl"),
    agent: join(dir, "agent"),
  };
  const built = () => Object.values(bins).every((b) => existsSync(b)) && existsSync(join(dir, "built"));
  if (built()) return bins;
  mkdirSync(STATE, { recursive: true });
  // Several test files may start at once: one builds, the others wait for it.
  const release = await lockfile.lock(STATE, {
    lockfilePath: join(STATE, "litewitness.lock"),
    retries: { retries: 1200, minTimeout: 500, maxTimeout: 1000 },
    stale: LITEWITNESS_BUILD_TIMEOUT_MS,
  });
  try {
    if (!built()) {
      mkdirSync(dir, { recursive: true });
      await run(
        "go",
        [
          "build",
          "-o",
          `${dir}/`,
          "filippo.io/torchwood/cmd/litewitness",
          "filippo.io/torchwood/cmd/witnessctl",
          "./agent",
        ],
        // CGO off: litewitness's SQLite is pure Go, so no C compiler is needed; -mod=readonly: go.sum decides.
        {
          cwd: GO_MODULE,
          env: { ...process.env, CGO_ENABLED: "0", GOFLAGS: "-mod=readonly" },
          maxBuffer: 16 * 1024 * 1024,
        },
      ).catch((e: Error & { stderr?: string }) => {
        throw new Error(
          `building litewitness failed (is Go ≥ 1.24 installed?): ${e.message}\n${e.stderr ?? ""}`,
        );
      });
      writeFileSync(join(dir, "built"), new Date().toISOString());
    }
  } finally {
    await release();
  }
  return bins;
}

export interface Litewitness {
  /** The witness's name, as it appears in its cosignature lines. */
  name: string;
  /** `http://127.0.0.1:<port>`: the submission prefix (POST <url>/add-checkpoint). */
  url: string;
  /** The witness's c2sp.org/tlog-cosignature verifier key (`<name>+<key id>+base64(0x04 || key)`). */
  verifierKey: string;
  /** Makes the witness know a log (witnessctl add-log, add-key): it then cosigns that origin from size 0. */
  addLog(origin: string, logVerifierKey: string): Promise<void>;
  /** The logs and sizes the witness holds (witnessctl list-logs). */
  listLogs(): Promise<{ origin: string; size: number; root_hash: string }[]>;
  /** Stops the witness (its database stays: `restart` brings it back on the same port with the same state). */
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** Stops the witness and its agent and removes their files. */
  close(): Promise<void>;
}

/** The SSH SHA256 fingerprint litewitness's -key names the key by: SHA-256 of the ssh-ed25519 wire public key. */
function sshFingerprint(raw: Buffer): string {
  const field = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const wire = Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]);
  return `SHA256:${createHash("sha256").update(wire).digest("base64").replace(/=+$/, "")}`;
}

function rawEd25519(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: "jwk" }).x!, "base64url");
}

/** Starts a litewitness named `name` with a new Ed25519 witness key, on a free loopback port. */
export async function startLitewitness(name: string): Promise<Litewitness> {
  const bins = await ensureLitewitness();
  // A short directory: a Unix socket path must stay under 108 bytes.
  const dir = mkdtempSync(join(tmpdir(), "lw-"));
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url");
  writeFileSync(join(dir, "seed"), seed.toString("hex"), { mode: 0o600 });
  const socket = join(dir, "agent.sock");
  const agent = spawn(bins.agent, [socket, join(dir, "seed")], { stdio: ["ignore", "ignore", "pipe"] });
  const deadline = Date.now() + 10_000;
  while (!existsSync(socket)) {
    if (agent.exitCode !== null || Date.now() > deadline) throw new Error("witness-agent did not start");
    await new Promise((r) => setTimeout(r, 20));
  }
  const db = join(dir, "litewitness.db");
  const raw = rawEd25519(publicKey);
  const fingerprint = sshFingerprint(raw);
  let port = 0;
  let child: ChildProcess | undefined;
  let stderr = "";
  const launch = async (fixed?: number) => {
    const started = await startWithRetry(
      (p) => {
        stderr = "";
        const c = spawn(
          bins.litewitness,
          ["-db", db, "-name", name, "-key", fingerprint, "-ssh-agent", socket, "-listen", `127.0.0.1:${p}`],
          { stdio: ["ignore", "ignore", "pipe"] },
        );
        c.stderr?.on("data", (d) => {
          stderr += String(d);
        });
        return c;
      },
      (c, _startup, asked) => (ownsListener(c.pid, asked) ? asked : undefined),
      (p) => `http://127.0.0.1:${p}/`,
      (r, body) => r.status === 200 && body.includes(`# litewitness ${name}`),
      "litewitness",
      { askPort: fixed ? async () => fixed : freePort, attempts: fixed ? 1 : 5 },
    );
    child = started.child;
    port = started.port;
  };
  await launch();
  const verifierKey = /vkey=(\S+)/.exec(stderr)?.[1];
  if (!verifierKey) throw new Error(`litewitness printed no verifier key:\n${stderr}`);
  const ctl = (...args: string[]) => run(bins.witnessctl, [...args, "-db", db]);
  return {
    name,
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    verifierKey,
    async addLog(origin, logVerifierKey) {
      await ctl("add-log", "-origin", origin);
      await ctl("add-key", "-origin", origin, "-key", logVerifierKey);
    },
    async listLogs() {
      const { stdout } = await run(bins.witnessctl, ["list-logs", "-db", db]);
      return stdout
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l));
    },
    stop: async () => {
      if (child) await stopProcess(child);
    },
    restart: () => launch(port),
    async close() {
      if (child) await stopProcess(child);
      await stopProcess(agent);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
