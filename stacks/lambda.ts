import { Duration, RemovalPolicy, type Stack } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import { NagSuppressions } from "cdk-nag";
import { type App, Function as SstFunction } from "sst/constructs";
import {
  checkpointOrigin,
  FUNCTIONS,
  type FunctionPurpose,
  METRICS_NAMESPACE,
  roleName,
  serviceName,
  useSettings,
} from "./naming.ts";

/** Resources every function is told about through its environment. */
export interface SinkResources {
  archiveBucketName: string;
  ledgerTableName: string;
  /** The event index's postings table (stacks/Ledger.ts). */
  eventIndexTableName: string;
  signingKeyArn: string;
}

export interface SinkFunctionProps {
  resources: SinkResources;
  /** Seconds. */
  timeout: number;
  memorySize: number;
  /** What the function's role may do, besides writing its own logs and traces. */
  statements: iam.PolicyStatement[];
  environment?: Record<string, string>;
  description: string;
  /** A fixed function name, when other resources must name the function before it exists. */
  functionName?: string;
}

/**
 * One Lambda function with its own role and log group (one least-privilege role per function).
 *
 * The role has a fixed name (see naming.ts) so that resource policies can name it before it exists, and no
 * managed policies: log and trace permissions are granted on this function's log group and X-Ray only.
 */
export function sinkFunction(stack: Stack, purpose: FunctionPurpose, props: SinkFunctionProps) {
  const app = stack.node.root as App;
  const settings = useSettings(app);
  const id = pascal(purpose);

  const role = new iam.Role(stack, `${id}Role`, {
    roleName: roleName(app, purpose),
    description: `auditsink ${app.stage}: ${purpose} function`,
    assumedBy: new iam.ServicePrincipal("lambda.amazonaws.com"),
  });
  for (const statement of props.statements) role.addToPolicy(statement);

  const logGroup = new logs.LogGroup(stack, `${id}Logs`, {
    retention: settings.logRetentionDays as logs.RetentionDays,
    removalPolicy: RemovalPolicy.RETAIN,
  });
  logGroup.grantWrite(role);

  const fn = new SstFunction(stack, `${id}Function`, {
    ...(props.functionName ? { functionName: props.functionName } : {}),
    description: props.description,
    handler: FUNCTIONS[purpose],
    runtime: "nodejs22.x",
    architecture: "arm_64",
    memorySize: props.memorySize,
    timeout: props.timeout,
    tracing: "active",
    role,
    logGroup,
    // Source maps ship inside the bundle and Node applies them to stack traces in the logs. (Left to SST's
    // default, they would be uploaded to SST's bootstrap bucket by an extra custom resource in every stack.)
    nodejs: { format: "esm", sourcemap: true },
    environment: {
      NODE_OPTIONS: "--enable-source-maps",
      ARCHIVE_BUCKET: props.resources.archiveBucketName,
      LEDGER_TABLE: props.resources.ledgerTableName,
      EVENT_INDEX_TABLE: props.resources.eventIndexTableName,
      SIGNING_KEY_ID: props.resources.signingKeyArn,
      ORIGIN: checkpointOrigin(app, stack.account),
      RETENTION_DAYS: String(settings.retentionDays),
      POWERTOOLS_SERVICE_NAME: serviceName(app, purpose),
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      ...props.environment,
    },
  });

  NagSuppressions.addResourceSuppressions(fn, [
    {
      id: "AwsSolutions-L1",
      reason:
        "The sink targets nodejs22.x (DESIGN.md §7), the runtime its dependencies and tests are pinned to; moving " +
        "to a newer runtime is a deliberate upgrade, not a side effect of a CDK release.",
    },
  ]);
  NagSuppressions.addResourceSuppressions(
    role,
    [
      {
        id: "AwsSolutions-IAM5",
        reason:
          "Each wildcard is the narrowest scope the runtime's contract allows: archived objects are addressed by " +
          "stream and index (<archive>/*, and creation only under <archive>/streams/*, or for producer administration <archive>/streams/_system/* and <archive>/keys/*); the " +
          "ledger's GSI is <table>/index/*; X-Ray's PutTraceSegments and PutTelemetryRecords accept no resource " +
          "but *; and publishing to the KMS-encrypted alerts topic needs kms:GenerateDataKey* on that one key.",
        appliesTo: [
          {
            regex:
              "/^Resource::<Archive[0-9A-F]{8}\\.Arn>\\/(\\*|streams\\/\\*|streams\\/_system\\/\\*|keys\\/\\*)$/",
          },
          { regex: "/^Resource::<Ledger[0-9A-F]{8}\\.Arn>\\/index\\/\\*$/" },
          "Resource::*",
          "Action::kms:GenerateDataKey*",
        ],
      },
    ],
    true,
  );
  return { fn, role, logGroup };
}

/** Lambda's recommendation for SQS event sources: visibility timeout at least six times the function timeout. */
export function queueVisibilityFor(functionTimeoutSeconds: number): Duration {
  return Duration.seconds(functionTimeoutSeconds * 6);
}

function pascal(purpose: string): string {
  return purpose
    .split("-")
    .map((part) => part[0]!.toUpperCase() + part.slice(1))
    .join("");
}
