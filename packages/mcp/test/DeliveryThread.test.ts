import { ClientError, ReceiptError, WitnessError } from "@auditsink/client";
import { describe, expect, it } from "vitest";
import { revive, sentError } from "../src/DeliveryThread.ts";

describe("delivery failures across threads", () => {
  const evidence = { stream: "agents.mcp", older: "a\n1\n", newer: "a\n0\n" };
  it.each([
    [
      new ClientError("rejected", "403: not allowed", { status: 403 }),
      { code: "rejected", details: { status: 403 } },
    ],
    [new ClientError("unavailable", "connection refused"), { code: "unavailable" }],
    [new ReceiptError("receipt-inclusion-invalid", "bad proof"), { code: "receipt-inclusion-invalid" }],
    [new WitnessError("log-fork", "contradict", evidence), { code: "log-fork", evidence }],
  ] as const)("revives %s as the same class with its code", (error, fields) => {
    // Act: what the delivery thread posts is structured-cloned, as postMessage does
    const revived = revive(structuredClone(sentError(error)));

    // Assess
    expect(revived).toBeInstanceOf(error.constructor);
    expect(revived.message).toBe(error.message);
    expect(revived).toMatchObject(fields);
  });

  it("keeps the message of any other error", () => {
    const revived = revive(structuredClone(sentError(new TypeError("boom"))));
    expect(revived).toBeInstanceOf(Error);
    expect(revived.message).toBe("boom");
  });
});
