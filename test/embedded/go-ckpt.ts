/**
 * test/go/ckpt (built by test/go-tools.ts): Go's golang.org/x/mod/sumdb/note and tlog and filippo.io/torchwood
 * checking auditsink's checkpoints and tlog-proofs (see its main.go).
 */
import { execFile } from "node:child_process";
import { goEnv, goTools } from "../go-tools.ts";

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
  const binary = (await goTools()).ckpt;
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
