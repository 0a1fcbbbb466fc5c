import { Aws } from "aws-cdk-lib";

/**
 * The execute-api ARN that IAM evaluates for one HTTP API route:
 * `arn:<partition>:execute-api:<region>:<account>:<api>/$default/<METHOD>/<path>`, path parameters as wildcards
 * (`$default` is the only stage the Api construct deploys).
 */
export function executeApiArn(apiId: string, route: string): string {
  const [method, path] = route.split(" ") as [string, string];
  const resourcePath = path.replace(/\{[^}]+\}/g, "*");
  return `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${apiId}/$default/${method}${resourcePath}`;
}

/** cdk-nag finding ids of execute-api resources of the app's HTTP API (see executeApiArn). */
export const EXECUTE_API_FINDING =
  "/^Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<Api[0-9A-F]{8}>\\/\\$default\\/(GET|POST)\\/(v1|tlog)\\/.*$/";
