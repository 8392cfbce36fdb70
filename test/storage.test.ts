import { readFileSync } from "node:fs";
import { join } from "node:path";
import { getTableName, is, sql } from "drizzle-orm";
import { PgTable } from "drizzle-orm/pg-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker, ManualClock, searchAudit, verifyAuditChain, appendAudit, type Person } from "../src/broker/index.js";
import { MIGRATIONS_FOLDER, type Storage } from "../src/db/client.js";
import * as schema from "../src/db/schema.js";
import { brokerConfig } from "./support/fixtures.js";
import { testPgliteStorage, testPostgresStorage } from "./support/databases.js";

const MINUTE = 60_000;
const T0 = new Date("2026-11-22T10:00:00Z");
const at = (minutes: number) => new Date(T0.getTime() + minutes * MINUTE);

const journal = JSON.parse(readFileSync(join(MIGRATIONS_FOLDER, "meta", "_journal.json"), "utf8")) as { entries: { tag: string }[] };
const schemaTables = (Object.values(schema) as unknown[])
  .filter((value): value is PgTable => is(value, PgTable))
  .map((table) => getTableName(table))
  .sort();

/** `db.execute` returns a driver-specific result; both drivers expose `rows`. */
async function rows<T>(storage: Storage, query: ReturnType<typeof sql>): Promise<T[]> {
  const result = (await storage.db.execute(query)) as unknown as { rows: T[] };
  return result.rows;
}

/** The database's own message for a refused statement (drizzle wraps it as `cause`). */
async function refusal(attempt: Promise<unknown>): Promise<{ message: string; code: unknown }> {
  try {
    await attempt;
  } catch (error) {
    const cause = (error as { cause?: { message?: string; code?: unknown } }).cause;
    return { message: `${(error as Error).message}\n${cause?.message ?? ""}`, code: cause?.code ?? (error as { code?: unknown }).code };
  }
  throw new Error("the statement was accepted");
}

type Opener = () => Promise<Storage>;

describe.each<[string, Opener]>([
  ["postgres", () => testPostgresStorage("storage")],
  ["pglite", testPgliteStorage],
])("storage on %s", (kind, open) => {
  let storage: Storage;
  let broker: Broker;
  const clock = new ManualClock(T0);
  let dev: Person, lead: Person;
  let requestId: string, grantId: string;

  beforeAll(async () => {
    storage = await open();
    broker = new Broker({ db: storage.db, config: brokerConfig(), clock });
  });

  afterAll(async () => {
    await storage?.close();
  });

  describe("migrations", () => {
    const applied = () => rows<{ hash: string; created_at: string }>(storage, sql`select hash, created_at from drizzle.__drizzle_migrations order by id`);

    it("are applied, one row per journal entry", async () => {
      expect(storage.kind).toBe(kind);
      await storage.ping();
      expect(await applied()).toHaveLength(journal.entries.length);
    });

    it("applying them again is a no-op", async () => {
      const before = await applied();
      await storage.migrate();
      await storage.migrate();
      expect(await applied()).toEqual(before);
    });

    it("created every table of the schema", async () => {
      const tables = await rows<{ table_name: string }>(
        storage,
        sql`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`,
      );
      expect(schemaTables.length).toBeGreaterThanOrEqual(10);
      expect(tables.map((t) => t.table_name).sort()).toEqual(schemaTables);
    });

    it("installed the append-only triggers on audit_events", async () => {
      const triggers = await rows<{ tgname: string; tgenabled: string }>(
        storage,
        sql`select tgname, tgenabled from pg_trigger where tgrelid = 'audit_events'::regclass and not tgisinternal order by tgname`,
      );
      expect(triggers).toEqual([
        { tgname: "audit_events_no_truncate", tgenabled: "O" },
        { tgname: "audit_events_no_update_delete", tgenabled: "O" },
      ]);
    });
  });

  describe("broker flow", () => {
    it("request → approve → grant with a connection line → credential works → revoke kills it", async () => {
      await broker.syncTargets();
      dev = await broker.identify({ platform: "slack", externalId: "U0DEV", email: "Dev@Example.com", displayName: "Dev" });
      lead = await broker.identify({ platform: "teams", externalId: "29:lead", email: "lead@example.com", displayName: "Lead" });
      expect(dev.email).toBe("dev@example.com");
      expect(lead.id).not.toBe(dev.id);
      // The same person seen again (another platform, same email) is not a new person.
      expect((await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com" })).id).toBe(lead.id);

      const request = await broker.request(dev, { target: "orders-db", duration: "1h", reason: "INC-7 stuck orders" });
      requestId = request.id;
      expect(request).toMatchObject({ state: "pending", approvalsRequired: 1, durationMs: 3_600_000 });

      clock.set(at(1));
      const decided = await broker.decide(lead, { requestId, verdict: "approve", reason: "go" });
      expect(decided.request).toMatchObject({ state: "approved" });
      expect(decided.grant).toMatchObject({ state: "active", personId: dev.id, target: "orders-db" });
      grantId = decided.grant!.id;
      expect(decided.request.grantId).toBe(grantId);
      const connection = decided.connection!;
      expect(connection.login).toBe("dev@example.com");
      expect(connection.line).toBe(
        `postgres://dev%40example.com:${connection.secret}@db-gw.example.com:15432/orders-db?sslmode=disable`,
      );

      const credentialRows = () => rows<{ grant_id: string }>(storage, sql`select grant_id from grant_credentials where grant_id = ${grantId}`);
      expect(await credentialRows()).toHaveLength(1);
      // Only the verifier is stored, never the secret.
      const stored = await rows<Record<string, unknown>>(storage, sql`select * from grant_credentials`);
      expect(JSON.stringify(stored)).not.toContain(connection.secret);

      const check = { login: connection.login, target: "orders-db", secret: connection.secret };
      await expect(broker.checkCredential(check)).resolves.toMatchObject({ id: grantId });
      await expect(broker.checkCredential({ ...check, secret: "nope" })).rejects.toMatchObject({ code: "broker_invalid_credential" });

      clock.set(at(10));
      const revoked = await broker.revoke(dev, { grantId, reason: "done" });
      expect(revoked).toMatchObject({ state: "revoked", endedBy: dev.id });
      expect(revoked.endedAt).toEqual(at(10));
      expect(await credentialRows()).toHaveLength(0);
      await expect(broker.checkCredential(check)).rejects.toMatchObject({ code: "broker_invalid_credential" });
    });

    it("wrote the audit events in order, each in the transaction of its change", async () => {
      const events = await searchAudit(storage.db, { requestId });
      expect(events.map((e) => e.kind)).toEqual([
        "request.created",
        "request.decided",
        "request.approved",
        "grant.issued",
        "grant.revoked",
      ]);
      expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(events.map((e) => e.actorEmail)).toEqual([
        "dev@example.com",
        "lead@example.com",
        "lead@example.com",
        "lead@example.com",
        "dev@example.com",
      ]);
      expect(events.map((e) => e.at)).toEqual([at(0), at(1), at(1), at(1), at(10)]);
      expect(events.slice(3).every((e) => e.grantId === grantId)).toBe(true);
      expect(events[3]!.data).toMatchObject({ personId: dev.id, login: "dev@example.com" });
      expect(events[4]!.data).toMatchObject({ reason: "done" });

      // xmin is the id of the transaction that wrote a row version: each change and its audit event share one.
      const xmin = async (query: ReturnType<typeof sql>) => (await rows<{ xmin: string }>(storage, query))[0]!.xmin;
      const auditXmin = (seq: number) => xmin(sql`select xmin::text as xmin from audit_events where seq = ${seq}`);
      const decisionXmin = await xmin(sql`select xmin::text as xmin from decisions where request_id = ${requestId}`);
      const requestXmin = await xmin(sql`select xmin::text as xmin from access_requests where id = ${requestId}`);
      const grantXmin = await xmin(sql`select xmin::text as xmin from grants where id = ${grantId}`);
      expect(await auditXmin(2)).toBe(decisionXmin);
      expect(await auditXmin(3)).toBe(decisionXmin);
      expect(await auditXmin(4)).toBe(decisionXmin);
      expect(requestXmin).toBe(decisionXmin); // approved and linked to its grant in the same transaction
      expect(await auditXmin(5)).toBe(grantXmin); // the revoke's UPDATE of the grant
      expect(await auditXmin(1)).not.toBe(decisionXmin);
      expect(await auditXmin(5)).not.toBe(decisionXmin);
    });

    it("an audit event appended in a transaction that fails is rolled back with it", async () => {
      const attempt = storage.db.transaction(async (tx) => {
        await appendAudit(tx, at(11), { kind: "test.rolled-back", actorId: dev.id });
        throw new Error("change failed");
      });
      await expect(attempt).rejects.toThrow("change failed");
      expect(await searchAudit(storage.db, { kind: "test.rolled-back" })).toEqual([]);
    });

    it("the chain verifies with the right count", async () => {
      const verdict = await verifyAuditChain(storage.db);
      const [last] = await rows<{ hash: string }>(storage, sql`select hash from audit_events order by seq desc limit 1`);
      expect(verdict).toEqual({ ok: true, count: 5, head: last!.hash });
    });
  });

  describe("audit_events is append-only in the database", () => {
    it.each([
      ["UPDATE", sql`update audit_events set data = '{"rewritten": true}'::jsonb where seq = 2`],
      ["DELETE", sql`delete from audit_events where seq = 2`],
      ["TRUNCATE", sql`truncate audit_events`],
    ])("%s is refused", async (op, statement) => {
      const refused = await refusal(storage.db.execute(statement));
      expect(refused.message).toContain(`audit_events is append-only: ${op} refused`);
      expect(refused.code).toBe("42501");
    });

    it("a refused change inside a transaction rolls the transaction back", async () => {
      const attempt = storage.db.transaction(async (tx) => {
        await appendAudit(tx, at(12), { kind: "test.before-refusal" });
        await tx.execute(sql`delete from audit_events where seq = 1`);
      });
      expect((await refusal(attempt)).message).toMatch(/append-only: DELETE refused/);
      expect(await searchAudit(storage.db, { kind: "test.before-refusal" })).toEqual([]);
    });

    it("the chain is untouched", async () => {
      expect(await verifyAuditChain(storage.db)).toMatchObject({ ok: true, count: 5 });
      const [row] = await rows<{ data: unknown }>(storage, sql`select data from audit_events where seq = 2`);
      expect(row!.data).toMatchObject({ verdict: "approve" });
    });
  });

  describe("searchAudit", () => {
    const kinds = (found: { kind: string }[]) => found.map((e) => e.kind);

    beforeAll(async () => {
      // One more event, on another target, later: seq 6.
      clock.set(at(20));
      await broker.request(lead, { target: "web-1", duration: "30m", reason: "deploy" });
    });

    it("without filters returns everything in order", async () => {
      const all = await searchAudit(storage.db, {});
      expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(await verifyAuditChain(storage.db)).toMatchObject({ ok: true, count: 6 });
    });

    it("filters by user: email, person id or chat id", async () => {
      expect(kinds(await searchAudit(storage.db, { user: "dev@example.com" }))).toEqual(["request.created", "grant.revoked"]);
      expect(kinds(await searchAudit(storage.db, { user: "lead@example.com" }))).toEqual([
        "request.decided",
        "request.approved",
        "grant.issued",
        "request.created",
      ]);
      expect(kinds(await searchAudit(storage.db, { user: dev.id }))).toEqual(["request.created", "grant.revoked"]);
      expect((await searchAudit(storage.db, { user: "U0LEAD" })).map((e) => e.seq)).toEqual([2, 3, 4, 6]);
      expect((await searchAudit(storage.db, { user: "29:lead" })).map((e) => e.seq)).toEqual([2, 3, 4, 6]);
      expect(await searchAudit(storage.db, { user: "nobody@example.com" })).toEqual([]);
    });

    it("filters by target", async () => {
      expect((await searchAudit(storage.db, { target: "orders-db" })).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(kinds(await searchAudit(storage.db, { target: "web-1" }))).toEqual(["request.created"]);
      expect(await searchAudit(storage.db, { target: "payments-db" })).toEqual([]);
    });

    it("filters by since and until, both inclusive", async () => {
      expect((await searchAudit(storage.db, { since: at(1) })).map((e) => e.seq)).toEqual([2, 3, 4, 5, 6]);
      expect((await searchAudit(storage.db, { until: at(1) })).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
      expect((await searchAudit(storage.db, { since: at(2), until: at(15) })).map((e) => e.seq)).toEqual([5]);
      expect(await searchAudit(storage.db, { since: at(21) })).toEqual([]);
    });

    it("filters by kind, exactly or by prefix", async () => {
      expect((await searchAudit(storage.db, { kind: "request.created" })).map((e) => e.seq)).toEqual([1, 6]);
      expect(kinds(await searchAudit(storage.db, { kind: "grant.*" }))).toEqual(["grant.issued", "grant.revoked"]);
      expect(kinds(await searchAudit(storage.db, { kind: "request.*" }))).toEqual([
        "request.created",
        "request.decided",
        "request.approved",
        "request.created",
      ]);
    });

    it("combines filters, and pages with limit/afterSeq", async () => {
      expect(kinds(await searchAudit(storage.db, { user: "lead@example.com", target: "orders-db", kind: "grant.*" }))).toEqual([
        "grant.issued",
      ]);
      expect((await searchAudit(storage.db, { user: "dev@example.com", since: at(5) })).map((e) => e.seq)).toEqual([5]);
      expect((await searchAudit(storage.db, { limit: 2, afterSeq: 2 })).map((e) => e.seq)).toEqual([3, 4]);
    });

    it("names the actor", async () => {
      const [first] = await searchAudit(storage.db, { limit: 1 });
      expect(first).toMatchObject({ actorId: dev.id, actorEmail: "dev@example.com", actorName: "Dev" });
    });
  });
});
