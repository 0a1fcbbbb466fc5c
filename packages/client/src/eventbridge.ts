/**
 * `@auditsink/client/eventbridge`: the EventBridge publisher, apart from the main entry so that producers that
 * send over HTTPS never load the AWS SDK. Needs `@aws-sdk/client-eventbridge` (an optional peer dependency).
 */
export * from "./EventBridgePublisher.ts";
