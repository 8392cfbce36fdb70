import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eq } from "drizzle-orm";
import { Broker, SessionBroker, StatementLog } from "../src/broker/index.js";
import type { Storage } from "../src/db/client.js";
import { sessionStatements } from "../src/db/schema.js";
import { brokerConfig } from "./support/fixtures.js";
import { testPgliteStorage, testPostgresStorage } from "./support/databases.js";

describe.each([
  ["postgres", () => testPostgresStorage("statement_log")],
  ["pglite", testPgliteStorage],
] as const)("the statement timeline on %s", (_driver, open) => {
  let storage: Storage;
  let sessionId: string;

  beforeAll(async () => {
    storage = await open();
    const broker = new Broker({ db: storage.db, config: brokerConfig() });
    await broker.syncTargets();
    const dev = await broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com" });
    const lead = await broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com" });
    const request = await broker.request(dev, { target: "web-1", duration: "1h", reason: "x" });
    const { grant } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
    sessionId = (await new SessionBroker(broker).open({ grantId: grant!.id, protocol: "postgres", clientAddress: null })).session.id;
  });

  afterAll(async () => {
    await storage?.close();
  });

  it("records rows from concurrent callers before resolving, then their outcomes", async () => {
    const log = new StatementLog(storage.db, (error) => {
      throw error;
    }, 10);
    const startedAt = new Date("2026-11-22T10:00:00Z");
    await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        log.record([
          {
            sessionId,
            seq: i + 1,
            protocol: "simple",
            kind: "select",
            text: `SELECT ${i}`,
            parameters: i % 2 === 0 ? ["a", null] : null,
            verdict: "allow",
            startedAt,
          },
        ]),
      ),
    );
    const recorded = await storage.db.select().from(sessionStatements).where(eq(sessionStatements.sessionId, sessionId));
    expect(recorded).toHaveLength(30);
    expect(recorded.find((r) => r.seq === 1)).toMatchObject({ text: "SELECT 0", parameters: ["a", null], startedAt, durationMs: null });
    log.complete({ sessionId, seq: 1, durationMs: 1.6, rows: 1, commandTag: "SELECT 1", error: null });
    log.complete({ sessionId, seq: 2, durationMs: 2, rows: null, commandTag: null, error: "42P01 missing" });
    await log.flushOutcomes();
    const [first, second] = await storage.db
      .select()
      .from(sessionStatements)
      .where(eq(sessionStatements.sessionId, sessionId))
      .orderBy(sessionStatements.seq)
      .limit(2);
    expect(first).toMatchObject({ durationMs: 2, rows: 1, commandTag: "SELECT 1", error: null });
    expect(second).toMatchObject({ durationMs: 2, rows: null, commandTag: null, error: "42P01 missing" });
  });

  it("rejects when the row cannot be written (the proxy then refuses the statement)", async () => {
    const log = new StatementLog(storage.db);
    await expect(
      log.record([{ sessionId: "ses_missing", seq: 1, protocol: "simple", kind: "select", text: "SELECT 1", verdict: "allow", startedAt: new Date() }]),
    ).rejects.toThrow(/foreign key/);
  });
});
