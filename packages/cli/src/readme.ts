import type { BundleManifest } from "./bundle.ts";

/** The README an auditor reads first: what the bundle claims and how to check it without trusting anyone. */
export function bundleReadme(m: BundleManifest, inclusion: number, consistency: number): string {
  const window = `${m.window.from ?? "the first record"} to ${m.window.to ?? "the last record"}`;
  return `# auditsink evidence bundle — stream \`${m.stream}\`

Deployment \`${m.deployment}\`, exported ${m.createdAt}.

Records received from ${window}: indexes ${m.records.first} to ${m.records.end - 1}
(${m.records.end - m.records.first} records). The bundle holds the whole stored segments around them
(records ${m.segments.first} to ${m.segments.end - 1}) and the signed checkpoints up to size ${m.coveredBy},
which covers them all.

## What is in here

| path | what |
|---|---|
| \`objects/streams/${m.stream}/segments/*\` | the records, byte for byte as the sink stored them (one JSON record per line, RFC 8785) |
| \`objects/streams/${m.stream}/checkpoints/*\` | signed checkpoints (C2SP tlog-checkpoint in a C2SP signed note), file name = tree size |
| \`proofs/inclusion.json\` | ${inclusion} receipts: record hash + signed checkpoint + RFC 9162 inclusion proof |
| \`proofs/consistency.json\` | ${consistency} RFC 9162 consistency proofs between successive checkpoints |
| \`keys/verifier-keys.txt\` | the deployment's checkpoint keys, as C2SP verifier key strings |
| \`keys/producers.json\` | producer public keys (when exported), to re-check every producer's signature |
| \`manifest.json\` | the numbers above, and the Merkle frontier at record ${m.segments.first} |

## How to check it

1. **Pin the checkpoint key out of band.** Do not trust \`keys/verifier-keys.txt\` because it is in this
   bundle: compare its fingerprint with one the operator published or gave you separately.
   The fingerprints (SHA-256 of the key's DER SubjectPublicKeyInfo) are:
${m.keyFingerprints.map((f) => `   - \`${f}\``).join("\n")}
2. Verify, offline:

   \`\`\`
   auditsink verify <this directory> --fingerprint ${m.keyFingerprints[0] ?? "<sha256>"}
   \`\`\`

   or with your own copy of the key: \`auditsink verify <this directory> --trusted-keys my-pinned-keys.txt\`.
   Add \`--json\` for a machine-readable report. Exit status 0 means everything verified; 1 lists every
   failure with its code and location (docs/FORMAT.md §Failure codes, docs/CLI.md).
3. What that checks: every record links the hash of the one before (hash chain); the records recompute the
   RFC 9162 Merkle root of every bundled checkpoint${m.segments.first > 0 ? `, starting from the frontier in manifest.json (which the covering checkpoint authenticates: a wrong frontier gives a wrong root)` : ""};
   every checkpoint's signature verifies with the pinned key and names \`${m.deployment}/${m.stream}\`;
   no two checkpoints disagree; every receipt's inclusion proof places its record in the signed tree; every
   consistency proof shows each checkpoint extends the one before; and, when producer keys are present,
   every event's producer signature verifies.

Nothing here needs the sink, its database or its operator: the records, checkpoints, proofs and the pinned
key are enough (docs/FORMAT.md describes every byte, so you can also check it with your own tools).
`;
}
