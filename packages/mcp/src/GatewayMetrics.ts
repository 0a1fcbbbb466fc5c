/**
 * The gateway's Prometheus metrics (prom-client, like the embedded sink's), served on `/metrics` by the HTTP
 * listener. docs/MCP.md §Metrics describes each one.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly toolCalls = new Counter({
    name: "auditsink_mcp_tool_calls_total",
    help: "tools/call requests decided, by decision and result status",
    labelNames: ["decision", "status"] as const,
    registers: [this.registry],
  });
  readonly toolCallDuration = new Histogram({
    name: "auditsink_mcp_tool_call_duration_seconds",
    help: "From the agent's tools/call to the gateway's answer, by decision",
    labelNames: ["decision"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly eventsSpooled = new Counter({
    name: "auditsink_mcp_events_spooled_total",
    help: "Audit events signed and written durably to the spool",
    registers: [this.registry],
  });
  readonly eventsDelivered = new Counter({
    name: "auditsink_mcp_events_delivered_total",
    help: "Spooled events the sink accepted with a receipt that verified",
    registers: [this.registry],
  });
  readonly eventsRejected = new Counter({
    name: "auditsink_mcp_events_rejected_total",
    help: "Spooled events the sink refused for good (kept in rejected.jsonl)",
    registers: [this.registry],
  });
  readonly deliveryFailures = new Counter({
    name: "auditsink_mcp_delivery_failures_total",
    help: "Delivery attempts that failed, by error code (unavailable, rejected, bad-response, spool, ...)",
    labelNames: ["code"] as const,
    registers: [this.registry],
  });
  readonly receiptFailures = new Counter({
    name: "auditsink_mcp_receipt_failures_total",
    help: "Receipts that did not verify or contradicted an earlier checkpoint (log-rollback, log-fork), by code",
    labelNames: ["code"] as const,
    registers: [this.registry],
  });
  readonly backlog = new Gauge({
    name: "auditsink_mcp_spool_backlog_events",
    help: "Spooled events waiting for a verified receipt",
    registers: [this.registry],
  });
  readonly sinkReachable = new Gauge({
    name: "auditsink_mcp_sink_reachable",
    help: "1 when the last delivery attempt reached the sink and its receipts verified, else 0",
    registers: [this.registry],
  });
  readonly refusedFailClosed = new Counter({
    name: "auditsink_mcp_fail_closed_refusals_total",
    help: "Calls refused or whose result was withheld because the sink could not record them (fail-closed)",
    registers: [this.registry],
  });
}
