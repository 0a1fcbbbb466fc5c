/**
 * Real witness software for the tests: litewitness (c2sp.org/tlog-witness) from the Go module
 * filippo.io/torchwood v0.6.1, its logs and keys added by test/go/witnessdb (witnessctl's SQL; witnessctl itself
 * needs a module the proxy does not serve), pinned by test/go's go.mod and go.sum and built by test/go-tools.ts with the Go
 * toolchain on the machine. litewitness reads its Ed25519 key from an ssh-agent; test/go/witness-agent
 * (golang.org/x/crypto's agent keyring) serves a key generated here, so nothing beyond Go is needed. A missing Go
 * fails the run.
 *
 * @example
 *   const witness = await startLitewitness("witness.test/w1");
 *   await witness.addLog(origin, logVerifierKey);
 *   ... POST `${witness.url}/add-checkpoint` ...
 *   await witness.stop();
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort, ownsListener, startWithRetry, stopProcess } from "../emulators/harness.ts";
import { GO_BUILD_TIMEOUT_MS, goTools } from "../go-tools.ts";

const run = promisify(execFile);

/** Test files that start litewitness give their beforeAll this timeout (a cold build of test/go). */
export const LITEWITNESS_BUILD_TIMEOUT_MS = GO_BUILD_TIMEOUT_MS;

export interface Litewitness {
  /** The witness's name, as it appears in its cosignature lines. */
  name: string;
  /** `http://127.0.0.1:<port>`: the submission prefix (POST <url>/add-checkpoint). */
  url: string;
  /** The witness's c2sp.org/tlog-cosignature verifier key (`<name>+<key id>+base64(0x04 || key)`). */
  verifierKey: string;
  /** Makes the witness know a log (witnessdb add-log, add-key): it then cosigns that origin from size 0. */
  addLog(origin: string, logVerifierKey: string): Promise<void>;
  /** The logs and sizes the witness holds (witnessdb list-logs). */
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
  const go = await goTools();
  const bins = { litewitness: go.litewitness, witnessdb: go.witnessdb, agent: go.witnessAgent };
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
  const ctl = (...args: string[]) => run(bins.witnessdb, [...args, "-db", db]);
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
      const { stdout } = await run(bins.witnessdb, ["list-logs", "-db", db]);
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
