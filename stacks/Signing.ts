import { RemovalPolicy } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import type { StackContext } from "sst/constructs";
import { appRoleArnPattern, checkpointOrigin, roleArn, SIGNER_ROLES, useSettings } from "./naming.ts";
import { KEY_PROTECTED_ACTIONS } from "./policies.ts";
import { CHECKPOINT_KEY_SPECS } from "./settings.ts";

/** Key administration for the account's IAM administrators: everything except using the key. */
const KEY_ADMIN_ACTIONS = [
  "kms:Create*",
  "kms:Describe*",
  "kms:Enable*",
  "kms:List*",
  "kms:Put*",
  "kms:Update*",
  "kms:Revoke*",
  "kms:Disable*",
  "kms:Get*",
  "kms:Delete*",
  "kms:TagResource",
  "kms:UntagResource",
  "kms:ScheduleKeyDeletion",
  "kms:CancelKeyDeletion",
];

/**
 * The checkpoint signing key, never exportable: ECDSA P-256 (KMS ECC_NIST_P256, C2SP signed-note type 0x02) by
 * default, or Ed25519 (ECC_NIST_EDWARDS25519, type 0x01) with the `checkpointKey` setting. The key is an L1
 * CfnKey, so its KeySpec is the plain CloudFormation string: aws-cdk-lib 2.224.0's `kms.KeySpec` enum has no
 * ECC_NIST_EDWARDS25519 member, and none is needed here. The spec is fixed at the stage's first deploy:
 * CloudFormation fails an update that changes an existing key's KeySpec (AWS::KMS::Key, "Important").
 *
 * The key policy is written out in full (an L1 key) because the L2 default grants `kms:*` to the account,
 * which would let any IAM policy in the account grant kms:Sign. Here only the two ingest roles may sign, an
 * explicit deny stops everyone else, and no app role may disable, delete or re-permission the key. Statements
 * name roles by ARN in conditions, so the key can exist before the roles (KMS validates principals, not
 * condition values).
 */
export function Signing({ app, stack }: StackContext) {
  const account = new iam.AccountRootPrincipal();
  const signerArns = SIGNER_ROLES.map((purpose) => roleArn(app, purpose, stack.partition, stack.account));
  const readerArns = (["query", "verifier"] as const).map((purpose) =>
    roleArn(app, purpose, stack.partition, stack.account),
  );
  const auditorArn = roleArn(app, "auditor", stack.partition, stack.account);
  const { checkpointKey } = useSettings(app);

  const policy = new iam.PolicyDocument({
    statements: [
      new iam.PolicyStatement({
        sid: "KeyAdministration",
        principals: [account],
        actions: KEY_ADMIN_ACTIONS,
        resources: ["*"],
      }),
      new iam.PolicyStatement({
        sid: "SignCheckpoints",
        principals: [account],
        actions: ["kms:Sign", "kms:GetPublicKey"],
        resources: ["*"],
        conditions: { ArnEquals: { "aws:PrincipalArn": signerArns } },
      }),
      new iam.PolicyStatement({
        sid: "ReadPublicKey",
        principals: [account],
        actions: ["kms:GetPublicKey", "kms:DescribeKey"],
        resources: ["*"],
        conditions: { ArnEquals: { "aws:PrincipalArn": readerArns } },
      }),
      new iam.PolicyStatement({
        sid: "AuditorVerify",
        principals: [account],
        actions: ["kms:GetPublicKey", "kms:Verify"],
        resources: ["*"],
        conditions: { ArnEquals: { "aws:PrincipalArn": [auditorArn] } },
      }),
      new iam.PolicyStatement({
        sid: "DenySignExceptSigners",
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ["kms:Sign"],
        resources: ["*"],
        conditions: { ArnNotEquals: { "aws:PrincipalArn": signerArns } },
      }),
      new iam.PolicyStatement({
        sid: "DenyAppRolesKeyLifecycle",
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: KEY_PROTECTED_ACTIONS,
        resources: ["*"],
        conditions: {
          ArnLike: { "aws:PrincipalArn": appRoleArnPattern(app, stack.partition, stack.account) },
        },
      }),
    ],
  });

  const key = new kms.CfnKey(stack, "SigningKey", {
    description: `auditsink ${app.stage}: signs C2SP checkpoints (${checkpointKey === "ed25519" ? "Ed25519" : "ECDSA P-256"})`,
    keySpec: CHECKPOINT_KEY_SPECS[checkpointKey],
    keyUsage: "SIGN_VERIFY",
    enabled: true,
    pendingWindowInDays: 30,
    keyPolicy: policy,
  });
  key.applyRemovalPolicy(RemovalPolicy.RETAIN);

  // The alias is only a name: it goes with the stack, so the stage can be deployed again after a teardown.
  const alias = new kms.CfnAlias(stack, "SigningKeyAlias", {
    aliasName: `alias/${app.name}-${app.stage}-signing`,
    targetKeyId: key.ref,
  });

  stack.addOutputs({
    SigningKeyArn: key.attrArn,
    SigningKeyAlias: alias.aliasName,
    // The deployment name producers pin (AuditClient `deployment`): checkpoint origins are `<this>/<stream>`.
    CheckpointOrigin: checkpointOrigin(app, stack.account),
  });
  return { signingKeyArn: key.attrArn };
}
