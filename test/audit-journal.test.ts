import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker, SessionBroker, StatementLog } from "../src/broker/index.js";
import { JournaledStatements } from "../src/broker/statement-journal.js";
import type { Storage } from "../src/db/client.js";
import { sessionStatements } from "../src/db/schema.js";
import { FileJournal, JournalFullError, JournalLockedError, parseRecords } from "../src/infra/journal.js";
import { eventually } from "./support/fake-slack.js";
import { brokerConfig } from "./support/fixtures.js";
import { testPgliteStorage, testPostgresStorage } from "./support/databases.js";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "jitgate-journal-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** The directory as a crash leaves it: the files as they are on disk, the journal never closed. */
function crashCopy(dir: string): string {
  const copy = tempDir();
  cpSync(dir, copy, { recursive: true });
  return copy;
}

const open = (dir: string, options: Partial<Parameters<typeof FileJournal.open>[0]> = {}) =>
  FileJournal.open({ dir, fsync: "always", intervalMs: 5, maxBytes: 1024 * 1024, ...options });

async function readAll(journal: FileJournal): Promise<string[]> {
  const { records } = await journal.read(journal.shipped, 1_000_000);
  return records.map((r) => r.toString("utf8"));
}

const segmentsOf = (dir: string) => readdirSync(dir).filter((name) => name.endsWith(".journal")).sort();

describe("the journal file", () => {
  it("keeps its records across a reopen", async () => {
    const dir = tempDir();
    const journal = open(dir);
    await Promise.all(["one", "two", "three"].map((text) => journal.append(Buffer.from(text), { durable: true, capped: true })));
    const again = open(crashCopy(dir), { maxBytes: 2 * 1024 * 1024 });
    expect(again.recovered.cutBytes).toBe(0);
    expect(await readAll(again)).toEqual(["one", "two", "three"]);
    await again.append(Buffer.from("four"), { durable: true, capped: true });
    expect(await readAll(again)).toEqual(["one", "two", "three", "four"]);
    await again.close();
    await journal.close();
  });

  it("cuts a torn tail (a record cut mid-way) and keeps every record before it", async () => {
    const dir = tempDir();
    const journal = open(dir);
    for (const text of ["first", "second", "third"]) await journal.append(Buffer.from(text), { durable: true, capped: true });
    await journal.close();
    const [segment] = segmentsOf(dir);
    const path = join(dir, segment!);
    const size = statSync(path).size;
    truncateSync(path, size - 3);
    const again = open(dir);
    expect(again.recovered.cutBytes).toBe(8 + "third".length - 3);
    expect(await readAll(again)).toEqual(["first", "second"]);
    expect(statSync(path).size).toBe(size - 8 - "third".length);
    // What comes next follows the intact records, not the garbage.
    await again.append(Buffer.from("fourth"), { durable: true, capped: true });
    await again.close();
    const third = open(dir);
    expect(await readAll(third)).toEqual(["first", "second", "fourth"]);
    await third.close();
  });

  it("cuts at a flipped byte (its CRC fails) rather than misread the record", async () => {
    const dir = tempDir();
    const journal = open(dir);
    for (const text of ["alpha", "bravo", "charlie"]) await journal.append(Buffer.from(text), { durable: true, capped: true });
    await journal.close();
    const path = join(dir, segmentsOf(dir)[0]!);
    const bytes = readFileSync(path);
    // A byte inside "bravo"'s payload.
    const at = 8 + "alpha".length + 8 + 2;
    bytes[at] = bytes[at]! ^ 0x20;
    writeFileSync(path, bytes);
    expect(parseRecords(bytes).records.map((r) => r.toString())).toEqual(["alpha"]);
    const again = open(dir);
    expect(again.recovered.cutBytes).toBe(8 + "bravo".length + 8 + "charlie".length);
    expect(await readAll(again)).toEqual(["alpha"]);
    await again.close();
  });

  it("does not read a tail of zeros as records", () => {
    const framed = Buffer.alloc(64);
    expect(parseRecords(framed)).toEqual({ records: [], used: 0 });
  });

  it("writes the records of one event-loop turn in one write, and syncs once for them (fsync: always)", async () => {
    const dir = tempDir();
    const journal = open(dir);
    const before = { ...journal.stats };
    await Promise.all(Array.from({ length: 50 }, (_, i) => journal.append(Buffer.from(`record ${i}`), { durable: true, capped: true })));
    expect(journal.stats.writes - before.writes).toBe(1);
    expect(journal.stats.syncs - before.syncs).toBe(1);
    // Records appended while that write is in flight form the next group.
    const first = Promise.all(Array.from({ length: 10 }, (_, i) => journal.append(Buffer.from(`a${i}`), { durable: true, capped: true })));
    await new Promise<void>((resolve) => setImmediate(resolve));
    const second = Promise.all(Array.from({ length: 10 }, (_, i) => journal.append(Buffer.from(`b${i}`), { durable: true, capped: true })));
    await Promise.all([first, second]);
    expect(journal.stats.writes - before.writes).toBe(3);
    expect(await readAll(journal)).toHaveLength(70);
    await journal.close();
  });

  it("with fsync: interval, a statement waits for the write only and fdatasync runs on the timer", async () => {
    const dir = tempDir();
    const journal = open(dir, { fsync: "interval", intervalMs: 1 });
    await Promise.all(Array.from({ length: 20 }, (_, i) => journal.append(Buffer.from(`r${i}`), { durable: true, capped: true })));
    expect(journal.stats).toMatchObject({ writes: 1, syncs: 0 });
    await eventually(() => journal.stats.syncs > 0, 10_000, "the interval's fdatasync");
    await journal.close();
  });

  it("refuses capped records past maxBytes until what is unshipped drops under half of it; outcomes are not capped", async () => {
    const dir = tempDir();
    const journal = open(dir, { maxBytes: 1000 });
    const record = Buffer.alloc(92, "x"); // 100 bytes framed
    for (let i = 0; i < 10; i++) await journal.append(record, { durable: true, capped: true });
    await expect(journal.append(record, { durable: true, capped: true })).rejects.toBeInstanceOf(JournalFullError);
    expect(journal.refusing?.message).toMatch(/the audit journal is full \(1000 of 1000 bytes/);
    await journal.append(Buffer.from("an outcome"), { durable: true, capped: false });
    // Shipping 300 bytes is not enough (hysteresis): still refused.
    await journal.markShipped(journal.shipped + 300);
    await expect(journal.append(record, { durable: true, capped: true })).rejects.toBeInstanceOf(JournalFullError);
    const { next } = await journal.read(journal.shipped, 1_000);
    await journal.markShipped(next);
    expect(journal.refusing).toBeUndefined();
    await journal.append(record, { durable: true, capped: true });
    await journal.close();
  });

  it("rotates segments, deletes shipped ones, and resumes from its checkpoint after a reopen", async () => {
    const dir = tempDir();
    const journal = open(dir, { segmentBytes: 200, maxBytes: 1024 * 1024 });
    for (let i = 0; i < 10; i++) await journal.append(Buffer.from(`record number ${i} `.padEnd(60, ".")), { durable: true, capped: true });
    expect(segmentsOf(dir).length).toBeGreaterThan(2);
    const { records, next } = await journal.read(journal.shipped, 6);
    expect(records).toHaveLength(6);
    await journal.markShipped(next);
    await journal.close();
    const again = open(dir, { segmentBytes: 200 });
    const rest = await readAll(again);
    expect(rest.map((r) => r.slice(0, 16))).toEqual(["record number 6 ", "record number 7 ", "record number 8 ", "record number 9 "]);
    expect(segmentsOf(dir).length).toBeLessThanOrEqual(3);
    await again.close();
  });

  it("is locked to one gateway at a time", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "lock"), "1"); // pid 1 is alive (init)
    expect(() => open(dir)).toThrow(JournalLockedError);
    expect(() => open(dir)).toThrow(/in use by process 1: give each gateway its own audit.journal.dir/);
  });
});

describe.each([
  ["postgres", () => testPostgresStorage("audit_journal")],
  ["pglite", testPgliteStorage],
] as const)("shipping the journal into session_statements on %s", (_driver, openStorage) => {
  let storage: Storage;
  let sessionId: string;

  beforeAll(async () => {
    storage = await openStorage();
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

  const statement = (seq: number) => ({
    sessionId,
    seq,
    protocol: "simple",
    kind: "select",
    text: `SELECT ${seq}`,
    parameters: seq % 2 === 0 ? ["a", null] : null,
    verdict: "allow" as const,
    startedAt: new Date("2026-11-22T10:00:00Z"),
  });

  it("ships statements and outcomes in order; a replay after a crash changes nothing; leftovers ship after a reopen", async () => {
    const dir = tempDir();
    const errors: unknown[] = [];
    const journal = open(dir);
    const statements = new JournaledStatements(journal, new StatementLog(storage.db), (error) => errors.push(error));
    await Promise.all(Array.from({ length: 40 }, (_, i) => statements.record([statement(i + 1)])));
    statements.complete({ sessionId, seq: 1, durationMs: 1.6, rows: 1, commandTag: "SELECT 1", error: null });
    expect(await statements.shipped(20_000)).toBe(true);
    const rows = await storage.db.select().from(sessionStatements).where(eq(sessionStatements.sessionId, sessionId)).orderBy(sessionStatements.seq);
    expect(rows).toHaveLength(40);
    expect(rows[0]).toMatchObject({ text: "SELECT 1", durationMs: 2, rows: 1, commandTag: "SELECT 1", parameters: null });
    expect(rows[1]).toMatchObject({ text: "SELECT 2", parameters: ["a", null], durationMs: null });

    statements.complete({ sessionId, seq: 2, durationMs: 3, rows: null, commandTag: null, error: "42P01 missing" });
    await new Promise<void>((resolve) => journal.onWritten(resolve));
    // A crash after the insert and before the shipped mark: the checkpoint is lost, everything replays.
    const crashed = crashCopy(dir);
    rmSync(join(crashed, "shipped"));
    await statements.close();
    const reopened = open(crashed);
    expect(reopened.shipped).toBe(0);
    const replay = new JournaledStatements(reopened, new StatementLog(storage.db), (error) => errors.push(error));
    await replay.shipAll(20_000);
    const after = await storage.db.select().from(sessionStatements).where(eq(sessionStatements.sessionId, sessionId)).orderBy(sessionStatements.seq);
    expect(after).toHaveLength(40);
    expect(after[0]).toMatchObject({ durationMs: 2, rows: 1, commandTag: "SELECT 1" });
    expect(after[1]).toMatchObject({ durationMs: 3, error: "42P01 missing" });
    await replay.close();
    expect(errors).toEqual([]);
    // Everything shipped: a clean close leaves nothing behind.
    expect(() => readdirSync(crashed)).toThrow(/ENOENT/);
  });

  it("writes a statement and its outcome shipped in the same batch with one insert, no update", async () => {
    const dir = tempDir();
    const down = () => Promise.reject(new Error("the database is down"));
    const journal = open(dir);
    const unshipped = new JournaledStatements(journal, { insert: down, updateOutcomes: down, insertResults: down, insertSealKeys: down });
    await unshipped.record([statement(301), statement(302)]);
    unshipped.complete({ sessionId, seq: 301, durationMs: 4.4, rows: 7, commandTag: "SELECT 7", error: null });
    unshipped.complete({ sessionId, seq: 302, durationMs: 1, rows: null, commandTag: null, error: "57014 canceling statement" });
    await new Promise<void>((resolve) => journal.onWritten(resolve));
    // What the gateway left when it stopped with the database down: both statements and both outcomes.
    const left = crashCopy(dir);
    await unshipped.close(0);

    const log = new StatementLog(storage.db);
    const calls: string[] = [];
    const writer = {
      insert: (rows: Parameters<StatementLog["insert"]>[0]) => (calls.push(`insert ${rows.length}`), log.insert(rows)),
      updateOutcomes: (batch: Parameters<StatementLog["updateOutcomes"]>[0]) => (calls.push(`update ${batch.length}`), log.updateOutcomes(batch)),
      insertResults: (batch: Parameters<StatementLog["insertResults"]>[0]) => log.insertResults(batch),
      insertSealKeys: (batch: Parameters<StatementLog["insertSealKeys"]>[0]) => log.insertSealKeys(batch),
    };
    const shipper = new JournaledStatements(open(left), writer);
    await shipper.shipAll(20_000);
    expect(calls).toEqual(["insert 2"]);
    const rows = await storage.db.select().from(sessionStatements).where(eq(sessionStatements.sessionId, sessionId)).orderBy(sessionStatements.seq);
    expect(rows.find((r) => r.seq === 301)).toMatchObject({ durationMs: 4, rows: 7, commandTag: "SELECT 7", error: null });
    expect(rows.find((r) => r.seq === 302)).toMatchObject({ durationMs: 1, rows: null, error: "57014 canceling statement" });
    await shipper.close();
  });

  it("keeps a record whose values PostgreSQL cannot store (a NUL character), escaped", async () => {
    const dir = tempDir();
    const errors: unknown[] = [];
    const statements = new JournaledStatements(open(dir), new StatementLog(storage.db), (error) => errors.push(error));
    await statements.record([{ ...statement(201), text: "SELECT $1 -- \u0000", parameters: ["a\u0000b", null] }, statement(202)]);
    expect(await statements.shipped(20_000)).toBe(true);
    const rows = await storage.db.select().from(sessionStatements).where(eq(sessionStatements.sessionId, sessionId)).orderBy(sessionStatements.seq);
    expect(rows.find((r) => r.seq === 201)).toMatchObject({ text: "SELECT $1 -- \\0", parameters: ["a\\0b", null] });
    expect(rows.find((r) => r.seq === 202)).toBeDefined();
    expect(errors).toEqual([]);
    await statements.close();
  });

  it("skips a record the database will never take (reported), and ships the ones after it", async () => {
    const dir = tempDir();
    const errors: string[] = [];
    const journal = open(dir);
    const statements = new JournaledStatements(journal, new StatementLog(storage.db), (_error, what) => errors.push(what));
    await statements.record([statement(101), { ...statement(102), sessionId: "ses_missing" }, statement(103)]);
    expect(await statements.shipped(20_000)).toBe(true);
    const rows = await storage.db.select({ seq: sessionStatements.seq }).from(sessionStatements).where(eq(sessionStatements.sessionId, sessionId));
    expect(rows.map((r) => r.seq)).toEqual(expect.arrayContaining([101, 103]));
    expect(errors).toEqual(["audit journal statement the database refuses (skipped)"]);
    await statements.close();
  });
});

describe("audit.journal in the configuration", () => {
  it("takes sizes with units and refuses bad values with clear messages", async () => {
    const { parseConfig } = await import("../src/config/load.js");
    expect(parseConfig("audit: { journal: { fsync: interval, intervalMs: 10, maxBytes: 64KiB } }", "t", {}).audit.journal).toEqual({ fsync: "interval", intervalMs: 10, maxBytes: 65_536 });
    expect(parseConfig("audit: { journal: { maxBytes: 1GiB } }", "t", {}).audit.journal.maxBytes).toBe(1024 ** 3);
    expect(() => parseConfig("audit: { journal: { fsync: never, intervalMs: 0, maxBytes: 12XB, size: 1 } }", "t", {})).toThrow(
      new RegExp(
        [
          'audit.journal.fsync: must be "always"',
          "audit.journal.intervalMs: must be at least 1 ms",
          'audit.journal.maxBytes: "12XB" is not a size like 256MiB, 64KiB or 1GiB',
          "audit.journal.size: unknown key",
        ]
          .map((line) => line.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
          .join("[\\s\\S]*"),
      ),
    );
    expect(() => parseConfig("audit: { journal: { maxBytes: 1KiB } }", "t", {})).toThrow(/audit.journal.maxBytes: must be at least 16KiB/);
  });
});

describe("the session page reads through the journal", () => {
  let storage: Awaited<ReturnType<typeof testPostgresStorage>>;
  let http: import("../src/infra/web/http-server.js").HttpServer;
  let statements: JournaledStatements;
  let base: string;
  let sessionId: string;
  let cookie: string;

  beforeAll(async () => {
    const { seedAuditHistory } = await import("./audit-pages-seed.js");
    const { auditTestAuth } = await import("./audit-pages-auth.js");
    const { mountAuditPages } = await import("../src/http/audit/audit-pages.js");
    const { HttpServer } = await import("../src/infra/web/http-server.js");
    storage = await testPostgresStorage("journal_pages");
    const seeded = await seedAuditHistory(storage.db);
    sessionId = seeded.pg.sessionId;
    statements = new JournaledStatements(open(tempDir()), new StatementLog(storage.db));
    http = new HttpServer((error) => {
      throw error;
    });
    const auth = auditTestAuth(seeded.broker, http);
    mountAuditPages(http, { broker: seeded.broker, auth: auth.auth, statementsShipped: (ms) => statements.shipped(ms) });
    const address = await http.listen("127.0.0.1:0");
    base = `http://127.0.0.1:${address.port}`;
    cookie = await auth.cookieFor(base, "lee");
  });

  afterAll(async () => {
    await statements?.close(1_000);
    await http?.close();
    await storage?.close();
  });

  const page = async () => (await fetch(`${base}/audit/sessions/${sessionId}`, { headers: { cookie } })).text();
  const record = (seq: number, text: string) =>
    statements.record([{ sessionId, seq, protocol: "simple", kind: "select", text, verdict: "allow", startedAt: new Date() }]);

  it("shows a statement still in the journal (it waits for the shipper), and says so rather than show a partial timeline when the database does not take it", async () => {
    await record(901, "SELECT 'just journaled'");
    expect(await page()).toContain("SELECT &#39;just journaled&#39;");

    const admin = (await import("pg")).default;
    const client = new admin.Client({ connectionString: storage.url });
    await client.connect();
    // Inserts wait behind this lock (reads do not): the shipper is stuck, the page can still read.
    await client.query("BEGIN");
    await client.query("LOCK TABLE session_statements IN EXCLUSIVE MODE");
    try {
      await record(902, "SELECT 'not shipped yet'");
      const stuck = await page();
      expect(stuck).toContain("The statement timeline cannot be shown now: some of its statements are still in this gateway&#39;s audit journal");
      expect(stuck).not.toContain("just journaled");
    } finally {
      await client.query("COMMIT");
      await client.end();
    }
    const after = await page();
    expect(after).toContain("SELECT &#39;not shipped yet&#39;");
    expect(after).not.toContain("cannot be shown now");
  });
});
