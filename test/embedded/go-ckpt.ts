/**
 * test/go/ckpt, built once per version of its sources into node_modules/.cache: Go's golang.org/x/mod/sumdb/note
 * and tlog and filippo.io/torchwood checking auditsink's checkpoints and tlog-proofs (see its main.go). A fresh
 * clone needs only Go on the PATH and the Go module proxy; go.sum pins every module.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const repo = join(import.meta.dirname, "..", "..");
const GO_MODULE = join(repo, "test/go/ckpt");
/** Go's environment: the installed toolchain, modules exactly as go.sum pins them. */
const goEnv = { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=readonly", CGO_ENABLED: "0" };

/** Builds test/go/ckpt once per version of its sources (node_modules/.cache), and returns the binary. */
async function goCheck(): Promise<string> {
  const h = createHash("sha256");
  for (const f of readdirSync(GO_MODULE).sort()) h.update(f).update(readFileSync(join(GO_MODULE, f)));
  const dir = join(repo, "node_modules/.cache/auditsink-go-ckpt", h.digest("hex").slice(0, 16));
  const binary = join(dir, "ckpt");
  if (existsSync(binary)) return binary;
  const tmp = `${dir}.tmp-${process.pid}`;
  await mkdir(tmp, { recursive: true });
  await run("go", ["build", "-o", join(tmp, "ckpt"), "."], { cwd: GO_MODULE, env: goEnv }).catch((cause) => {
    throw new Error("test/go/ckpt needs Go (https://go.dev/dl/) on the PATH and the Go module proxy", {
      cause,
    });
  });
  await rename(tmp, dir).catch(async (e) => {
    if (!existsSync(binary)) throw e;
    await rm(tmp, { recursive: true, force: true }); // built by another process first
  });
  return binary;
}

interface GoResult {
  ok: boolean;
  error?: string;
  origin?: string;
  size: number;
  extra?: string;
}

/** Runs test/go/ckpt over checkpoints (and tlog-proofs) with verifier keys; one result per input, in order. */
export async function goVerify(input: {
  checkpoints?: { signed: string; vkey: string }[];
  proofs?: { proof: string; vkey: string; recordHash: string }[];
}): Promise<{ checkpoints: GoResult[]; proofs: GoResult[] }> {
  const binary = await goCheck();
  const child = execFile(binary, [], { env: goEnv, maxBuffer: 16 << 20 });
  const out = new Promise<string>((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => {
      stdout += d;
    });
    child.stderr!.on("data", (d) => {
      stderr += d;
    });
    child.on("close", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`ckpt: ${stderr}`))));
  });
  child.stdin!.end(JSON.stringify({ checkpoints: [], proofs: [], ...input }));
  return JSON.parse(await out);
}
