/** What the embedded benchmarks share: keep-alive HTTP/1.1 requests to a sink on loopback, and percentiles. */
import { type Agent, request } from "node:http";

/** The p-th percentile (nearest rank) of ascending samples; 0 for none. */
export const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

/** One request to 127.0.0.1:`port` through `agent`; resolves with the status and the body as text. */
export function send(
  agent: Agent,
  port: number,
  method: "GET" | "POST",
  path: string,
  body?: string,
  contentType = "application/cloudevents-batch+json",
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        agent,
        headers:
          body === undefined
            ? {}
            : { "content-type": contentType, "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}
