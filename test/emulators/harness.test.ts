/**
 * The emulator harness itself (issue 10, item 19: a test once got ECONNREFUSED from an emulator it believed it
 * had started). An emulator counts as started only when its own process holds the listening socket and a real
 * request to the service gets that service's answer; a port someone else holds makes it start again elsewhere.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { DynamoDBClient, ListTablesCommand } from "@aws-sdk/client-dynamodb";
import { CreateBucketCommand, ListBucketsCommand, S3Client } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import { freePort, startDynamoLocal, startMoto } from "./harness.ts";

const credentials = { accessKeyId: "testing", secretAccessKey: "testing" };

/** A process that already listens on a port and answers like the emulator would: the race, made certain. */
async function impostor(status: number, body: string): Promise<{ port: number; server: Server }> {
  const server = createServer((_req, res) => {
    res.writeHead(status, { server: "Werkzeug/3.1.9", "content-type": "application/xml" });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as AddressInfo).port, server };
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

function picks(first: number): { pickPort: () => Promise<number>; asked: number[] } {
  const asked: number[] = [];
  return {
    asked,
    pickPort: async () => {
      const port = asked.length === 0 ? first : await freePort();
      asked.push(port);
      return port;
    },
  };
}

describe("startDynamoLocal", () => {
  it("starts its own DynamoDB Local on another port when the one it picked is already taken", async () => {
    // Prepare: something answering like DynamoDB Local on the first port the harness will ask for.
    const taken = await impostor(400, '{"__type":"MissingAuthenticationToken"}');
    cleanup.push(() => new Promise((r) => taken.server.close(() => r())));
    const choice = picks(taken.port);
    // Act
    const dynamo = await startDynamoLocal({ pickPort: choice.pickPort });
    cleanup.push(dynamo.stop);
    await new Promise<void>((r) => taken.server.close(() => r()));
    // Assess: the harness noticed, asked again, and the endpoint is a real DynamoDB that outlives the impostor.
    expect(choice.asked.length).toBeGreaterThan(1);
    expect(dynamo.endpoint).not.toBe(`http://127.0.0.1:${taken.port}`);
    const client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: "us-east-1", credentials });
    expect((await client.send(new ListTablesCommand({}))).TableNames).toEqual([]);
  }, 180_000);
});

describe("startMoto", () => {
  it("starts its own moto on another port when the one it was asked for is taken, ready for S3 at once", async () => {
    const taken = await impostor(200, "<ListAllMyBucketsResult/>");
    cleanup.push(() => new Promise((r) => taken.server.close(() => r())));
    const choice = picks(taken.port);
    // Act
    const moto = await startMoto({ pickPort: choice.pickPort });
    cleanup.push(moto.stop);
    // Assess: the first real S3 request after the start succeeds, on moto's own port.
    expect(choice.asked.length).toBeGreaterThan(1);
    expect(moto.endpoint).not.toBe(`http://127.0.0.1:${taken.port}`);
    const s3 = new S3Client({
      endpoint: moto.endpoint,
      region: "us-east-1",
      credentials,
      forcePathStyle: true,
    });
    await s3.send(new CreateBucketCommand({ Bucket: "harness-ready" }));
    expect((await s3.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name)).toEqual([
      "harness-ready",
    ]);
  }, 180_000);

  it("by default lets moto choose its port, so two started at once never share one", async () => {
    const [a, b] = await Promise.all([startMoto(), startMoto()]);
    cleanup.push(a.stop, b.stop);
    expect(a.endpoint).not.toBe(b.endpoint);
    for (const endpoint of [a.endpoint, b.endpoint]) {
      const s3 = new S3Client({ endpoint, region: "us-east-1", credentials, forcePathStyle: true });
      expect((await s3.send(new ListBucketsCommand({}))).Buckets ?? []).toEqual([]);
    }
  }, 180_000);
});
