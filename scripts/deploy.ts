/**
 * `npm run deploy -- --stage <name> [--region <region>] [more sst deploy flags]`: checks that AWS credentials
 * are present and valid before running `sst deploy`, which otherwise can end without a word and exit 0 when
 * there are none. The credentials come from the AWS SDK's default provider chain (environment, shared config
 * and credentials files with AWS_PROFILE, SSO, web identity, container or instance role) and are proven with STS
 * GetCallerIdentity; the region is the one sst.config.ts will use. Whatever is missing is printed, and the exit
 * status is 1 without anything deployed.
 */
import { spawn } from "node:child_process";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { DEFAULT_REGION, DEFAULT_STAGE } from "../stacks/defaults.ts";

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  return args[i]!.includes("=") ? args[i]!.slice(name.length + 1) : args[i + 1];
};
const region = flag("--region") ?? DEFAULT_REGION;
const stage = flag("--stage") ?? DEFAULT_STAGE;
const fail = (lines: string[]): never => {
  process.stderr.write(`deploy: ${lines.join("\n  ")}\n`);
  process.exit(1);
};

// One attempt with short timeouts: a missing or unreachable identity is reported in seconds, not retried.
const sts = new STSClient({
  region,
  maxAttempts: 1,
  requestHandler: { connectionTimeout: 5_000, requestTimeout: 10_000 },
});
try {
  await sts.config.credentials();
} catch (e) {
  fail([
    `no AWS credentials found (${(e as Error).message}). Provide one of:`,
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials) in the environment;",
    "a profile in ~/.aws/credentials or ~/.aws/config (`aws configure`, or `aws sso login --profile <name>`), chosen with AWS_PROFILE;",
    "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (CI with OIDC);",
    "a container or instance role (on ECS, EC2, CodeBuild).",
  ]);
}
let identity: { Account?: string; Arn?: string };
try {
  identity = await sts.send(new GetCallerIdentityCommand({}));
} catch (e) {
  fail([
    `AWS credentials were found but STS GetCallerIdentity in ${region} failed: ${(e as Error).name}: ${(e as Error).message}`,
    "check that they are not expired (temporary credentials, SSO sessions) and that this machine reaches AWS.",
  ]);
  throw e; // unreachable: fail() exits
}
process.stderr.write(
  `deploy: stage ${stage}, region ${region}${flag("--region") ? "" : " (sst.config.ts default; --region to change)"}, account ${identity.Account} as ${identity.Arn}\n`,
);
const sst = spawn("npx", ["sst", "deploy", ...args], { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => sst.kill(signal));
sst.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
