import { describe, expect, it } from "vitest";
import { Cleanups } from "../src/infra/cleanups.js";
import { capturedLogger } from "./support/logs.js";

describe("Cleanups (the gateway's shutdown)", () => {
  it("runs every step in reverse order, goes on past a failing one, and reports the failures after all ran", async () => {
    const { logger, lines } = capturedLogger();
    const cleanups = new Cleanups(logger);
    const ran: string[] = [];
    cleanups.add("database", () => void ran.push("database"));
    cleanups.add("redis", () => {
      ran.push("redis");
      throw new Error("redis would not quit");
    });
    cleanups.add("proxy", async () => void ran.push("proxy"));
    const closed = cleanups.close();
    await expect(closed).rejects.toThrow("1 shutdown step(s) failed");
    expect(ran).toEqual(["proxy", "redis", "database"]);
    expect(lines.some((line) => line.includes('"step":"redis"') && line.includes("redis would not quit"))).toBe(true);
  });

  it("is memoised: a second close returns the first one's promise and runs nothing again", async () => {
    const cleanups = new Cleanups(capturedLogger().logger);
    let runs = 0;
    cleanups.add("once", () => void runs++);
    const first = cleanups.close();
    expect(cleanups.close()).toBe(first);
    expect(cleanups.closing).toBe(true);
    await first;
    await cleanups.close();
    expect(runs).toBe(1);
  });

  it("gives up on a step that hangs after its deadline and still runs the rest", async () => {
    const cleanups = new Cleanups(capturedLogger().logger, 50);
    const ran: string[] = [];
    cleanups.add("database", () => void ran.push("database"));
    cleanups.add("stuck worker", () => new Promise<void>(() => {}));
    const error = await cleanups.close().then(
      () => undefined,
      (e: unknown) => e as AggregateError,
    );
    expect(error?.errors.map((e: Error) => e.message)).toEqual(["stuck worker did not close within 50 ms"]);
    expect(ran).toEqual(["database"]);
  });

  it("after a failed start, undoes what started and throws the start's own error", async () => {
    const cleanups = new Cleanups(capturedLogger().logger);
    const ran: string[] = [];
    cleanups.add("database", () => void ran.push("database"));
    cleanups.add("redis", () => {
      throw new Error("cleanup failure is not the story");
    });
    const startError = new Error("address already in use");
    await expect(cleanups.abort(startError)).rejects.toBe(startError);
    expect(ran).toEqual(["database"]);
  });
});
