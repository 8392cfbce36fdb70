import { execFile, spawn } from "node:child_process";
import { connect } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HeldSnapshot, Person, SessionSnapshot, SessionSummary } from "../src/broker/index.js";
import { sessionStatements, sessions } from "../src/db/schema.js";
import { createTestDatabase } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { startupBanner } from "../src/main.js";
import { eventually } from "./support/fake-slack.js";
import { nextEvent, WIDE_LATENESS_MS } from "./support/jobs.js";

const run = promisify(execFile);

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let test: TestGateway;
let dev: Person, lead: Person, other: Person;
let port: number;
let dir: string;

/** A grant for `who` on orders-db, and its connection URI pointed at the test proxy's port. */
async function grantUri(who: Person, duration = "1h", target = "orders-db"): Promise<{ uri: string; grantId: string }> {
  const { broker } = test.gateway;
  const request = await broker.request(who, { target, duration, reason: "INC-1 check orders" });
  const result = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const uri = result.connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`);
  return { uri, grantId: result.grant!.id };
}

async function psql(uri: string, sql: string, extra: string[] = []) {
  try {
    const { stdout, stderr } = await run("psql", [uri, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=0", ...extra, "-c", sql], {
      env: { ...process.env, PGCONNECT_TIMEOUT: "5" },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const heldEvent = (predicate: (held: HeldSnapshot) => boolean = () => true) =>
  nextEvent<{ held: HeldSnapshot }>((l) => test.gateway.cluster.events.on("statement.held", l), (p) => predicate(p.held), 20_000);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "jitgate-pgproxy-"));
  upstream = await createTestDatabase("pgproxy_upstream");
  const seed = new pg.Client({ connectionString: upstream.url });
  await seed.connect();
  await seed.query(`
    CREATE TABLE orders (id int PRIMARY KEY, email text, card_number text, note text);
    INSERT INTO orders VALUES
      (1, 'ann@example.com', '4111 1111 1111 1111', 'paid with 4111-1111-1111-1111, call +49 151 1234 5678'),
      (2, 'bob@example.com', '5500 0000 0000 0004', 'order 12345');
    CREATE TABLE scratch (id int, v text);
    INSERT INTO scratch SELECT g, 'row ' || g FROM generate_series(1, 10) g;`);
  await seed.end();
  test = await startTestGateway(
    "pgproxy",
    `
defaults: { reviewTimeout: 4s }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432, maxMessageSize: 1048576 }
targets:
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    reasonPattern: "^INC-[0-9]+"
    commands:
      block: [ddl, drop-database, "^ALTER SYSTEM"]
      review: [delete-without-where, update-without-where, truncate]
    mask: [{ column: email }, { detect: credit-card }, { detect: phone }]
  - name: plain-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
`,
    { UPSTREAM_URL: upstream.url },
  );
  port = test.gateway.postgresProxy!.address.port;
  const { broker } = test.gateway;
  dev = await broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com", displayName: "Dev" });
  lead = await broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com", displayName: "Lead" });
  other = await broker.identify({ platform: "slack", externalId: "U3", email: "other@example.com", displayName: "Other" });
});

afterAll(async () => {
  await test?.close();
  await upstream?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe("admission", () => {
  it("says at start that without audit.sealKey the originals of masked values are not kept", () => {
    expect(startupBanner(test.gateway, "pg-proxy test")).toContain("no audit.sealKey, so the originals of masked values are NOT kept");
    expect(test.logs.some((line) => line.includes("no audit.sealKey: recorded results keep masked values only"))).toBe(true);
  });

  it("connects with the grant's credential and selects, with emails, cards and phones masked", async () => {
    const { uri } = await grantUri(dev);
    const result = await psql(uri, "SELECT id, email, card_number, note FROM orders ORDER BY id");
    expect(result.stderr).toBe("");
    expect(result.stdout.trim().split("\n")).toEqual([
      "1|***|****-****-****-1111|paid with ****-****-****-1111, call +** *** **** **78",
      "2|***|****-****-****-0004|order 12345",
    ]);
  });

  it("refuses a login without a live grant as PostgreSQL refuses a wrong password (nothing tells who holds a grant)", async () => {
    const result = await psql(`postgres://other%40example.com:whatever@127.0.0.1:${port}/orders-db?sslmode=disable`, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('FATAL:  password authentication failed for user "other@example.com"');
  });

  it("refuses a wrong password with 28P01, and an unknown target the same way", async () => {
    const { uri } = await grantUri(other, "30m");
    const wrong = uri.replace(/:([A-Za-z0-9_-]{32})@/, ":not-the-secret@");
    const client = new pg.Client({ connectionString: wrong });
    await expect(client.connect()).rejects.toMatchObject({ code: "28P01" });
    const unknown = new pg.Client({ connectionString: uri.replace("/orders-db?", "/nope-db?") });
    await expect(unknown.connect()).rejects.toMatchObject({ code: "28P01" });
  });
});

describe("statement rules", () => {
  it("blocks DROP TABLE with 42501 naming the rule; the session goes on", async () => {
    const { uri } = await grantUri(await test.gateway.broker.identify({ platform: "slack", externalId: "U4", email: "b@example.com" }));
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    const blocked = nextEvent<{ rule: string; text: string }>((l) => test.gateway.cluster.events.on("statement.blocked", l), () => true);
    await expect(client.query("/* sneaky */ drop   TABLE \"scratch\"")).rejects.toMatchObject({
      code: "42501",
      message: 'jitgate: statement blocked by rule "ddl"',
    });
    expect((await blocked).payload).toMatchObject({ rule: "ddl", text: 'drop   TABLE "scratch"' });
    // Inside a transaction the block aborts it, exactly as a server-side error would.
    await client.query("BEGIN");
    await expect(client.query("ALTER SYSTEM SET work_mem = '1GB'")).rejects.toMatchObject({ code: "42501" });
    await expect(client.query("SELECT 1")).rejects.toMatchObject({ code: "25P02" });
    await client.query("ROLLBACK");
    expect((await client.query("SELECT count(*)::int AS n FROM scratch")).rows).toEqual([{ n: 10 }]);
    await client.end();
  });

  it("holds DELETE without WHERE until approved in the thread, then runs it", async () => {
    const { uri } = await grantUri(await test.gateway.broker.identify({ platform: "slack", externalId: "U5", email: "c@example.com" }));
    // The first statement has a WHERE (allowed); the second is held.
    const held = heldEvent((h) => h.text === "DELETE FROM scratch");
    const pending = psql(uri, "DELETE FROM scratch WHERE id > 100 OR true; DELETE FROM scratch");
    const { payload } = await held;
    expect(payload.held).toMatchObject({ target: "orders-db", rule: "delete-without-where", state: "held" });
    await expect(test.gateway.sessions.decide(payload.held.personId === dev.id ? other : dev, { heldId: payload.held.id, verdict: "approved" })).rejects.toMatchObject({
      code: "broker_not_an_approver",
    });
    await test.gateway.sessions.decide(lead, { heldId: payload.held.id, verdict: "approved" });
    const result = await pending;
    expect(result.stderr).toBe("");
    expect(result.stdout).toContain("DELETE 10");
  });

  it("a denied statement gets an error and the session goes on; a held statement in an extended-protocol pipeline", async () => {
    const { uri } = await grantUri(await test.gateway.broker.identify({ platform: "slack", externalId: "U6", email: "d@example.com" }));
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    await client.query("INSERT INTO scratch SELECT g, 'again' FROM generate_series(1, 3) g");
    const held = heldEvent();
    const denied = client.query({ text: "UPDATE scratch SET v = $1", values: ["x"] });
    const { payload } = await held;
    await test.gateway.sessions.decide(lead, { heldId: payload.held.id, verdict: "denied" });
    await expect(denied).rejects.toMatchObject({ code: "42501", message: expect.stringContaining("was denied in the request thread") });
    expect((await client.query({ text: "SELECT count(*)::int AS n FROM scratch WHERE v = $1", values: ["again"] })).rows).toEqual([{ n: 3 }]);
    await client.end();

    // pgbench sends the script as one pipeline: Parse/Bind/Execute × 3, then Sync.
    const script = join(dir, "pipeline.sql");
    writeFileSync(script, "\\startpipeline\nSELECT 1;\nTRUNCATE scratch;\nSELECT 2;\n\\endpipeline\n");
    const pipelineHeld = heldEvent((h) => h.text === "TRUNCATE scratch");
    const bench = run("pgbench", ["-n", "-M", "extended", "-t", "1", "-f", script, uri], { timeout: 30_000 });
    const pipelinePayload = (await pipelineHeld).payload;
    await test.gateway.sessions.decide(lead, { heldId: pipelinePayload.held.id, verdict: "approved" });
    const { stdout } = await bench;
    expect(stdout).toContain("number of transactions actually processed: 1/1");
    const check = new pg.Client({ connectionString: upstream.url });
    await check.connect();
    expect((await check.query("SELECT count(*)::int AS n FROM scratch")).rows).toEqual([{ n: 0 }]);
    await check.end();
  });

  it("a held statement with no decision times out with an error", async () => {
    const { uri } = await grantUri(await test.gateway.broker.identify({ platform: "slack", externalId: "U7", email: "e@example.com" }));
    const started = Date.now();
    const result = await psql(uri, "TRUNCATE orders");
    expect(result.stderr).toContain("got no decision in time");
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_500);
  });
});

describe("the statement timeline", () => {
  it("records each statement before it runs, with outcome, and the session summary at close", async () => {
    const person = await test.gateway.broker.identify({ platform: "slack", externalId: "U8", email: "f@example.com" });
    const { uri, grantId } = await grantUri(person);
    const closed = nextEvent<{ session: SessionSnapshot; summary: SessionSummary }>(
      (l) => test.gateway.cluster.events.on("session.closed", l),
      (p) => p.session.grantId === grantId,
    );
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    await client.query("SELECT email FROM orders");
    await client.query({ text: "SELECT id FROM orders WHERE card_number = $1", values: ["4111 1111 1111 1111"] });
    await expect(client.query("SELECT * FROM missing_table")).rejects.toMatchObject({ code: "42P01" });
    await client.end();
    const { payload } = await closed;
    expect(payload.summary).toMatchObject({
      statementsByKind: { select: 3 },
      rowsReturned: 3,
      valuesMasked: 2,
      blocked: 0,
      endReason: "client",
    });
    const db = test.gateway.storage.db;
    const [session] = await db.select().from(sessions).where(eq(sessions.grantId, grantId));
    const rows = await db.select().from(sessionStatements).where(eq(sessionStatements.sessionId, session!.id)).orderBy(sessionStatements.seq);
    expect(rows.map((r) => [r.protocol, r.text, r.rows, r.commandTag, r.error])).toEqual([
      ["simple", "SELECT email FROM orders", 2, "SELECT 2", null],
      ["extended", "SELECT id FROM orders WHERE card_number = $1", 1, "SELECT 1", null],
      ["simple", "SELECT * FROM missing_table", 0, null, '42P01 relation "missing_table" does not exist'],
    ]);
    // Parameters are recorded with sensitive values redacted.
    expect(rows[1]!.parameters).toEqual(["****-****-****-1111"]);
  });
});

describe("COPY, replicas and failures", () => {
  it("COPY in and out pass through and are recorded", async () => {
    const person = await test.gateway.broker.identify({ platform: "slack", externalId: "U20", email: "copy@example.com" });
    const { uri, grantId } = await grantUri(person);
    const csv = join(dir, "in.csv");
    writeFileSync(csv, "101,copied one\n102,copied two\n");
    const copyIn = await psql(uri, `\\copy scratch FROM '${csv}' WITH (FORMAT csv)`);
    expect(copyIn.stderr).toBe("");
    expect(copyIn.stdout).toContain("COPY 2");
    // COPY … TO sends CopyData, not DataRows: on a masked target it is refused when what it copies
    // carries a masked column, and passes (through the detectors) when it provably does not.
    const copyOut = await psql(uri, "copy (SELECT id, email FROM orders ORDER BY id) TO STDOUT WITH (FORMAT csv)");
    expect(copyOut.stderr).toContain('jitgate: statement blocked by rule "copy-of-masked-columns"');
    expect(copyOut.stdout).not.toContain("@example.com");
    const copyScratch = await psql(uri, "COPY (SELECT id FROM scratch WHERE id > 100 ORDER BY id) TO STDOUT");
    expect(copyScratch.stdout).toBe("101\n102\n");
    // Where nothing is masked, COPY out passes through.
    const plain = await grantUri(person, "1h", "plain-db");
    const out = await psql(plain.uri, "COPY (SELECT id, v FROM scratch WHERE id > 100 ORDER BY id) TO STDOUT WITH (FORMAT csv)");
    expect(out.stdout).toBe("101,copied one\n102,copied two\n");
    const db = test.gateway.storage.db;
    // A statement's row is written before it runs and its outcome after: wait for the COPY's tag.
    const rows = await eventually(async () => {
      const recorded = await db
        .select({ text: sessionStatements.text, kind: sessionStatements.kind, tag: sessionStatements.commandTag })
        .from(sessionStatements)
        .innerJoin(sessions, eq(sessions.id, sessionStatements.sessionId))
        .where(eq(sessions.grantId, grantId))
        .orderBy(sessions.startedAt);
      return recorded.length >= 3 && recorded[0]!.tag !== null ? recorded : undefined;
    }, 10_000, "the three COPY statements with the first one's outcome");
    expect(rows).toEqual([
      { text: "COPY  scratch FROM STDIN WITH (FORMAT csv)", kind: "copy", tag: "COPY 2" },
      { text: "copy (SELECT id, email FROM orders ORDER BY id) TO STDOUT WITH (FORMAT csv)", kind: "copy", tag: null },
      { text: "COPY (SELECT id FROM scratch WHERE id > 100 ORDER BY id) TO STDOUT", kind: "copy", tag: "COPY 2" },
    ]);
  });

  it("an approval taken on another replica resumes the held statement", async () => {
    {
      // A second replica on the same database and Redis prefix, without a proxy of its own.
      const { startGateway } = await import("../src/main.js");
      const { createLogger } = await import("../src/infra/logger.js");
      const replica = await startGateway({
        config: { ...test.gateway.config, proxy: { loginFailures: test.gateway.config.proxy.loginFailures } },
        logger: createLogger("silent"),
        httpListen: "127.0.0.1:0",
      });
      try {
        const person = await test.gateway.broker.identify({ platform: "slack", externalId: "U21", email: "replica@example.com" });
        const { uri } = await grantUri(person);
        const held = heldEvent((h) => h.personId === person.id);
        const pending = psql(uri, "UPDATE scratch SET v = 'from replica two'");
        const { payload } = await held;
        const approver = await replica.broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com" });
        await replica.sessions.decide(approver, { heldId: payload.held.id, verdict: "approved" });
        const result = await pending;
        expect(result.stderr).toBe("");
        expect(result.stdout).toMatch(/UPDATE \d+/);
      } finally {
        await replica.close();
      }
    }
  });

  it("a statement is recorded in the audit journal first: it runs while session_statements cannot take it, and is shipped once it can", async () => {
    const person = await test.gateway.broker.identify({ platform: "slack", externalId: "U22", email: "fail@example.com" });
    const { uri } = await grantUri(person);
    const client = new pg.Client({ connectionString: uri });
    client.on("error", () => {});
    await client.connect();
    const admin = new pg.Client({ connectionString: new URL(test.gateway.config.database!).toString() });
    await admin.connect();
    await admin.query("ALTER TABLE session_statements RENAME TO session_statements_away");
    let renamed = true;
    try {
      const result = await client.query("SELECT id FROM orders WHERE id < 3 ORDER BY id");
      expect(result.rows).toEqual([{ id: 1 }, { id: 2 }]);
      // The journal holds it; the database does not have it yet.
      expect(await test.gateway.audit!.journaled.shipped(50)).toBe(false);
      await admin.query("ALTER TABLE session_statements_away RENAME TO session_statements");
      renamed = false;
      expect(await test.gateway.audit!.journaled.shipped(20_000)).toBe(true);
      const rows = await test.gateway.storage.db
        .select({ text: sessionStatements.text })
        .from(sessionStatements)
        .innerJoin(sessions, eq(sessions.id, sessionStatements.sessionId))
        .where(eq(sessions.personId, person.id));
      expect(rows.map((r) => r.text)).toContain("SELECT id FROM orders WHERE id < 3 ORDER BY id");
    } finally {
      if (renamed) await admin.query("ALTER TABLE session_statements_away RENAME TO session_statements");
      await admin.end();
      await client.end();
    }
  });
});

describe("expiry", () => {
  it("a grant's live session ends with 57P01 at expiry, never before", async () => {
    const person = await test.gateway.broker.identify({ platform: "slack", externalId: "U9", email: "g@example.com" });
    // Long enough to log in and query before expiry on a loaded machine.
    const request = await test.gateway.broker.request(person, { target: "orders-db", duration: "5s", reason: "INC-9 quick look" });
    const { connection, grant } = await test.gateway.broker.decide(lead, { requestId: request.id, verdict: "approve" });
    const client = new pg.Client({ connectionString: connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`) });
    const ended = new Promise<{ error: { code?: string; message: string }; at: number }>((resolve) =>
      client.on("error", (error) => resolve({ error: error as never, at: Date.now() })),
    );
    await client.connect();
    expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    const { error, at } = await ended;
    expect(error).toMatchObject({ code: "57P01", message: "access grant expired" });
    expect(at - grant!.expiresAt.getTime()).toBeGreaterThanOrEqual(0);
    expect(at - grant!.expiresAt.getTime()).toBeLessThan(WIDE_LATENESS_MS);
  });

  it("revoke ends the live session at once", async () => {
    const person = await test.gateway.broker.identify({ platform: "slack", externalId: "U10", email: "h@example.com" });
    const { uri, grantId } = await grantUri(person);
    const client = new pg.Client({ connectionString: uri });
    const ended = new Promise<{ code?: string; message: string }>((resolve) => client.on("error", (error) => resolve(error as never)));
    await client.connect();
    await test.gateway.broker.revoke(lead, { grantId, reason: "done" });
    expect(await ended).toMatchObject({ code: "57P01", message: "access grant revoked" });
  });
});

describe("robustness", () => {
  const rawExchange = (bytes: Buffer) =>
    new Promise<Buffer>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1");
      const chunks: Buffer[] = [];
      socket.on("connect", () => socket.write(bytes));
      socket.on("data", (chunk) => chunks.push(chunk));
      socket.on("close", () => resolve(Buffer.concat(chunks)));
      socket.on("error", reject);
    });

  it("a malformed startup packet and an oversized length each close only that connection", async () => {
    const { uri } = await grantUri(await test.gateway.broker.identify({ platform: "slack", externalId: "U11", email: "i@example.com" }));
    const bystander = new pg.Client({ connectionString: uri });
    await bystander.connect();

    const malformed = await rawExchange(Buffer.from([0, 0, 0, 2, 1, 2, 3, 4]));
    expect(malformed[0]).toBe(0x45); // ErrorResponse
    expect(malformed.toString("latin1")).toContain("C08P01");
    expect(malformed.toString("latin1")).toContain("invalid message length 2");

    const oversized = Buffer.alloc(8);
    oversized.writeInt32BE(50_000_000, 0);
    const answer = await rawExchange(oversized);
    expect(answer.toString("latin1")).toContain("C08P01");
    expect(answer.toString("latin1")).toContain("over the limit");

    // After login, a message over proxy.postgres.maxMessageSize (1 MiB here) ends that session.
    const big = spawn("psql", [uri, "-X", "-f", "-"], { stdio: ["pipe", "pipe", "pipe"] });
    let bigError = "";
    big.stderr.on("data", (chunk) => (bigError += chunk));
    big.stdin.end(`SELECT length('${"x".repeat(1_100_000)}');\n`);
    await new Promise((resolve) => big.on("close", resolve));
    expect(bigError).toContain("message of 1100");
    expect(bigError).toContain("bytes is over the limit of 1048576");
    expect((await bystander.query("SELECT 42 AS answer")).rows).toEqual([{ answer: 42 }]);
    await bystander.end();
  });

  it("a CancelRequest reaches the right upstream backend", async () => {
    const { uri } = await grantUri(await test.gateway.broker.identify({ platform: "slack", externalId: "U12", email: "j@example.com" }));
    const child = spawn("psql", [uri, "-X", "-c", "SELECT pg_sleep(60)"], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const exited = new Promise((resolve) => child.on("close", resolve));
    // Cancel only once the statement runs on the upstream backend.
    const observer = new pg.Client({ connectionString: upstream.url });
    await observer.connect();
    try {
      await eventually(async () => {
        const { rows } = await observer.query("SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(60)'");
        return rows.length > 0;
      }, 10_000, "pg_sleep running upstream");
    } finally {
      await observer.end();
    }
    const started = Date.now();
    child.kill("SIGINT");
    await exited;
    expect(stderr).toContain("canceling statement due to user request");
    // Wide: uncancelled, the statement would run a minute more.
    expect(Date.now() - started).toBeLessThan(WIDE_LATENESS_MS);
  });

  it("pgbench -S through the proxy completes", async () => {
    const { uri } = await grantUri(await test.gateway.broker.identify({ platform: "slack", externalId: "U13", email: "k@example.com" }));
    await run("pgbench", ["-i", "-q", "-s", "1", upstream.url], { timeout: 60_000 });
    const { stdout } = await run("pgbench", ["-n", "-S", "-c", "2", "-t", "200", uri], { timeout: 60_000 });
    expect(stdout).toContain("number of transactions actually processed: 400/400");
  });
});
