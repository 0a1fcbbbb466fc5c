import { CfnResource, type IAspect } from "aws-cdk-lib";
import type { CfnFunction } from "aws-cdk-lib/aws-lambda";
import type { IConstruct } from "constructs";

/**
 * What the standard template linters report that the design answers otherwise, with the answer, as the linters
 * read it from each resource's Metadata: checkov's `skip` (id and comment) and cfn-lint's `ignore_checks`.
 * Everything else they report is fixed in the stacks; test/infra/linters.test.ts runs both on the synthesized
 * templates and expects no finding.
 */
const CHECKOV: Record<string, { id: string; comment: string; when?: (r: CfnResource) => boolean }[]> = {
  "AWS::Lambda::Function": [
    {
      id: "CKV_AWS_116",
      comment:
        "No function loses work to a failed asynchronous invocation: ingest-http, producer-admin and query answer " +
        "API Gateway synchronously; ingest-queue reads SQS, whose redrive policy keeps what fails in a dead-letter " +
        "queue; the sequencer and the verifier keep their state in DynamoDB and S3 and are woken again (waiting " +
        "requests, the one-minute sweep, the schedule); SST's custom-resource handler answers CloudFormation.",
    },
    {
      id: "CKV_AWS_117",
      comment:
        "The functions call only AWS service APIs (S3, DynamoDB, KMS, SQS, SNS, EventBridge, Lambda, CloudWatch, " +
        "X-Ray) over TLS, authorized by IAM; nothing they reach is in a VPC, and one would add NAT gateways or " +
        "interface endpoints without narrowing access beyond the roles and the bucket, key and queue policies.",
    },
    {
      id: "CKV_AWS_115",
      comment:
        "Bounded by what invokes each function: the API stage's throttle (ingest-http, producer-admin, query), " +
        "the SQS event source's scaling (ingest-queue), one lease holder per active stream (the sequencer, where " +
        "a reserved concurrency would queue wake-ups in Lambda: docs/AWS.md, Limits); SST's custom-resource " +
        "handler runs only during deploys. The verifier, which must not run beside itself, has 1.",
      when: (r) => (r as CfnFunction).reservedConcurrentExecutions === undefined,
    },
    {
      id: "CKV_AWS_173",
      comment:
        "The environment holds resource names and settings, no secret (the signing key never leaves KMS); " +
        "Lambda encrypts environment variables at rest with an AWS managed key.",
      when: (r) => (r as CfnFunction).environment !== undefined,
    },
  ],
  "AWS::Logs::LogGroup": [
    {
      id: "CKV_AWS_158",
      comment:
        "The functions' and API's operational logs (runs, counts, stream names, problem codes, request ids), not " +
        "event contents, which live in the archive; CloudWatch Logs encrypts log data at rest.",
    },
  ],
  "AWS::SQS::Queue": [
    {
      id: "CKV_AWS_27",
      comment:
        "Encrypted at rest with SQS managed keys (SqsManagedSseEnabled) and TLS-only by policy; this check " +
        "recognises only a KMS key.",
    },
  ],
  "AWS::DynamoDB::Table": [
    {
      id: "CKV_AWS_119",
      comment:
        "Encrypted at rest with DynamoDB's own key. What the tables hold (heads, dedup entries, leases, answers, " +
        "event-index postings, parts waiting to be committed) is signed by producers or covered by KMS-signed " +
        "checkpoints: integrity does not rest on the table's key.",
    },
  ],
};

/**
 * cfn-lint W3005 (a DependsOn also implied by a GetAtt): CDK's Lambda construct makes each function depend on its
 * role and the role's policy, so that the policy exists before the function first runs.
 */
const CFN_LINT_IGNORE: Record<string, string[]> = { "AWS::Lambda::Function": ["W3005"] };

export class LinterFindings implements IAspect {
  visit(node: IConstruct): void {
    if (!CfnResource.isCfnResource(node)) return;
    const skips = (CHECKOV[node.cfnResourceType] ?? []).filter((s) => s.when?.(node) ?? true);
    if (skips.length > 0) addCheckovSkips(node, skips);
    const ignore = CFN_LINT_IGNORE[node.cfnResourceType];
    if (ignore) node.addMetadata("cfn-lint", { config: { ignore_checks: ignore } });
  }
}

/** A checkov skip for one resource, with the reason (for findings particular to it, such as the log bucket's). */
export function skipCheckov(resource: IConstruct, id: string, comment: string): void {
  addCheckovSkips(resource.node.defaultChild as CfnResource, [{ id, comment }]);
}

function addCheckovSkips(cfn: CfnResource, skips: readonly { id: string; comment: string }[]): void {
  const before = (cfn.getMetadata("checkov") as { skip?: unknown[] } | undefined)?.skip ?? [];
  cfn.addMetadata("checkov", { skip: [...before, ...skips.map(({ id, comment }) => ({ id, comment }))] });
}
