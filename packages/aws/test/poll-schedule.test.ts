import { describe, expect, it } from "vitest";
import { PollSchedule } from "../src/handoff.ts";

describe("PollSchedule", () => {
  it("starts at the configured minimums", () => {
    const s = new PollSchedule(60, 40);
    expect([s.firstMs, s.intervalMs]).toEqual([60, 40]);
  });

  it("looks later and less often once answers are known to take longer", () => {
    const s = new PollSchedule(20, 20);
    s.answered(800, 3);
    expect(s.firstMs).toBe(640);
    expect(s.intervalMs).toBe(100);
    s.answered(1800, 4);
    expect(s.firstMs).toBe(Math.round(0.8 * (0.8 * 800 + 0.2 * 1800)));
  });

  it("never waits past its caps, however slow answers were", () => {
    const s = new PollSchedule(20, 20);
    s.answered(60_000, 50);
    expect(s.firstMs).toBe(PollSchedule.MAX_FIRST_MS);
    expect(s.intervalMs).toBe(PollSchedule.MAX_INTERVAL_MS);
  });

  it("an answer found at the first look moves the first look earlier, never later", () => {
    const s = new PollSchedule(20, 20);
    s.answered(500, 2);
    const before = s.firstMs;
    // Found at once: the answer was ready by the first look, however long that look was delayed.
    s.answered(5_000, 1);
    expect(s.firstMs).toBeLessThan(before);
    for (let i = 0; i < 30; i++) s.answered(400, 1);
    expect(s.firstMs).toBe(20);
    expect(s.intervalMs).toBe(20);
  });
});
