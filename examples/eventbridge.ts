/**
 * On AWS, producers that already publish to EventBridge put signed events on the sink's bus instead of calling
 * its HTTP API. The sink commits them asynchronously (bus → rule → SQS → Lambda); receipts are fetched later
 * by `source` + `id` (GET /v1/events).
 *
 *   AUDITSINK_BUS=auditsink-prod-ingest AUDITSINK_KEY=agent.key.pem AUDITSINK_SINK_KEY=… npx tsx examples/eventbridge.ts
 */
import { EventBridgePublisher } from "@auditsink/client/eventbridge";
import { connect, isMain } from "./connect.ts";

if (isMain(import.meta.url)) {
  const client = await connect("agents.support-bot", "agent://support-bot");
  const bus = new EventBridgePublisher({ eventBusName: process.env.AUDITSINK_BUS ?? "auditsink-ingest" });
  // The client only signs here; the publisher packs entries within PutEvents limits and retries failed ones.
  const events = [1, 2, 3].map((n) =>
    client.sign({
      type: "ai.agent.tool_call",
      data: { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", n },
    }),
  );
  const ids = await bus.put("agents.support-bot", events);
  console.log(`put ${ids.length} events on the bus`);
}
