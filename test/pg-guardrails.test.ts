import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HeldSnapshot, Person } from "../src/broker/index.js";
import { BackendReader, BackendType, decodeErrorFields } from "../src/proxy/postgres/backend-codec.js";
import { openUpstream, type UpstreamSession } from "../src/proxy/postgres/upstream.js";
import { createTestDatabase } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { nextEvent } from "./support/jobs.js";

/**
 * Issue 13, the classifier's half: a grant holder who tries to get a statement past the rules.
 * Every attempt is checked by its effect on the target itself (the rows of `orders` are counted
 * there, not through the proxy), and the honest form of the same work is shown to still run.
 */

const run = promisify(execFile);

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let test: TestGateway;
let dev: Person, lead: Person;
let port: number;
let dir: string;
let target: pg.Client;

const ORDERS = 5;

async function ordersOnTarget(): Promise<number> {
  const { rows } = await target.query<{ n: string }>("SELECT count(*) AS n FROM orders");
  return Number(rows[0]!.n);
}

const grants = new Map<string, Promise<{ uri: string; user: string; password: string }>>();

/** dev's grant on a target (one per target: a person holds one live grant per target). */
function grant(targetName: string): Promise<{ uri: string; user: string; password: string }> {
  let granted = grants.get(targetName);
  if (!granted) grants.set(targetName, (granted = newGrant(targetName)));
  return granted;
}

async function newGrant(targetName: string): Promise<{ uri: string; user: string; password: string }> {
  const { broker } = test.gateway;
  const request = await broker.request(dev, { target: targetName, duration: "1h", reason: "INC-13 guardrails" });
  const result = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const uri = result.connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`);
  const url = new URL(uri);
  return { uri, user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
}

/** psql with each entry of `commands` as its own -c (its own Query message, in one session). */
async function psql(uri: string, commands: string[], env: NodeJS.ProcessEnv = {}, extra: string[] = []) {
  const args = [uri, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=0", ...extra];
  for (const command of commands) args.push("-c", command);
  try {
    const { stdout, stderr } = await run("psql", args, { env: { ...process.env, PGCONNECT_TIMEOUT: "5", ...env }, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** A raw protocol session through the proxy, for what psql cannot send (start-up parameters, bytes that are not UTF-8). */
async function rawSession(targetName: string, params: Record<string, string> = {}): Promise<UpstreamSession> {
  const { user, password } = await grant(targetName);
  return openUpstream({ host: "127.0.0.1", port, user, password, database: targetName, sslmode: "disable" }, params);
}

/** Sends one Query message of exactly these bytes and collects the errors until ReadyForQuery. */
async function rawQuery(session: UpstreamSession, sql: Buffer): Promise<{ errors: Record<string, string>[]; rows: number }> {
  const message = Buffer.alloc(5 + sql.length + 1);
  message[0] = 0x51;
  message.writeInt32BE(4 + sql.length + 1, 1);
  sql.copy(message, 5);
  const reader = new BackendReader();
  const errors: Record<string, string>[] = [];
  let rows = 0;
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      reader.push(chunk, (type, frame) => {
        if (type === BackendType.ErrorResponse) errors.push(decodeErrorFields(frame));
        if (type === BackendType.DataRow) rows += 1;
        if (type === BackendType.ReadyForQuery) {
          session.socket.off("data", onData);
          resolve({ errors, rows });
        }
      });
    };
    session.socket.on("data", onData);
    session.socket.once("close", () => resolve({ errors, rows }));
    session.socket.once("error", reject);
    session.socket.write(message);
  });
}

const heldEvent = (predicate: (held: HeldSnapshot) => boolean = () => true) =>
  nextEvent<{ held: HeldSnapshot }>((l) => test.gateway.cluster.events.on("statement.held", l), (p) => predicate(p.held), 20_000);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "jitgate-guardrails-"));
  upstream = await createTestDatabase("pgguard_upstream");
  target = new pg.Client({ connectionString: upstream.url });
  await target.connect();
  await target.query(`
    CREATE TABLE orders (id int PRIMARY KEY, email text, note text);
    INSERT INTO orders SELECT g, 'user' || g || '@example.com', 'order ' || g FROM generate_series(1, ${ORDERS}) g;
    CREATE TABLE scratch (id int, v text);
    CREATE PROCEDURE touch(i int) LANGUAGE sql AS 'UPDATE orders SET note = note WHERE id = i';`);
  test = await startTestGateway(
    "pgguard",
    `
defaults: { reviewTimeout: 20s }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: guarded-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    commands:
      block: [delete-without-where, update-without-where, truncate, drop-database, copy-program, alter-system, server-files, replication]
      review: [set-role, large-objects, remote-connection]
      unverifiable: block
  - name: lenient-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    commands:
      block: [delete-without-where, update-without-where]
      unverifiable: allow
  - name: baseline-db
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
});

afterAll(async () => {
  await target?.end();
  await test?.close();
  await upstream?.drop();
  rmSync(dir, { recursive: true, force: true });
});

const PAYLOAD = "select 'a\\''; delete from orders; --'";
/** What PAYLOAD is with standard_conforming_strings on: one string literal (`''` is a quote). */
const PAYLOAD_READ = "a\\'; delete from orders; --";

describe("the classifier reads what the server reads", () => {
  it("refuses SET standard_conforming_strings = off, so the quote trick stays one bad literal", async () => {
    const { uri } = await grant("guarded-db");
    const result = await psql(uri, ["SET standard_conforming_strings = off", PAYLOAD, "show standard_conforming_strings"]);
    expect(result.stderr).toContain(
      'ERROR:  jitgate: statement blocked by rule "pinned-setting": standard_conforming_strings stays on through jitgate, so that the gateway reads statements as the server does',
    );
    expect(result.stdout.trim().split("\n")).toEqual([PAYLOAD_READ, "on"]);
    expect(await ordersOnTarget()).toBe(ORDERS);
  });

  it.each([
    ["SET LOCAL", "begin; set local standard_conforming_strings = off; " + PAYLOAD],
    ["comments and case", "SeT /* x */ STANDARD_CONFORMING_STRINGS -- y\n = 'OFF'"],
    ["a Unicode-escaped name", 'SET U&"standard\\005fconforming\\005fstrings" = off'],
    ["a number", "SET standard_conforming_strings = 0"],
    ["set_config in a select", "select set_config('standard_conforming_strings', 'off', false); " + PAYLOAD],
    ["set_config in a WHERE", "select 1 from orders where set_config('standard_conforming_strings', 'off', false) is not null limit 1"],
    ["set_config with a computed name", "select set_config('standard_' || 'conforming_strings', 'off', false)"],
    ["pg_settings", "update pg_settings set setting = 'off' where name = 'standard_conforming_strings'"],
    ["a function's SET clause", "create function sneaky() returns int language sql set standard_conforming_strings = off as 'select 1'"],
    ["ALTER ROLE … SET", "alter role current_user set standard_conforming_strings = off"],
    ["ALTER DATABASE … SET", "alter database current set client_encoding = 'SJIS'"],
    ["SET client_encoding", "set client_encoding = 'SJIS'"],
    ["SET NAMES", "set names 'BIG5'"],
    ["SET in a DO block", "do $$begin set standard_conforming_strings = off; end$$"],
  ])("refuses changing a pinned setting by %s", async (_name, sql) => {
    const { uri } = await grant("guarded-db");
    const result = await psql(uri, [sql, PAYLOAD, "show standard_conforming_strings", "show client_encoding"]);
    expect(result.stderr).toContain('rule "pinned-setting"');
    expect(result.stdout.trim().split("\n")).toEqual([PAYLOAD_READ, "on", "UTF8"]);
    expect(await ordersOnTarget()).toBe(ORDERS);
    const { rows } = await target.query("SELECT count(*)::int AS n FROM pg_db_role_setting");
    expect(rows[0]).toEqual({ n: 0 });
  });

  it.each([
    ["-c standard_conforming_strings=off"],
    ["--standard-conforming-strings=off"],
    ["-cstandard_conforming_strings=off"],
    ["-c client_encoding=SJIS"],
    ["-c role=postgres"],
    ["-d 5"],
  ])("refuses PGOPTIONS=%s at start-up", async (options) => {
    const { uri } = await grant("guarded-db");
    const result = await psql(uri, [PAYLOAD], { PGOPTIONS: options });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/rule "pinned-setting"|cannot be chosen at start-up|only hold settings/);
    expect(await ordersOnTarget()).toBe(ORDERS);
  });

  it("passes honest start-up options on, and pins the settings even against the target's own role defaults", async () => {
    const { uri } = await grant("guarded-db");
    const honest = await psql(uri, ["show search_path", "show standard_conforming_strings"], { PGOPTIONS: "-c search_path=public" });
    expect(honest.stderr).toBe("");
    expect(honest.stdout.trim().split("\n")).toEqual(["public", "on"]);

    // Someone with direct access set a hostile default for the gateway's own role; the session
    // starts with the pinned value anyway, and RESET returns to it.
    await target.query(`ALTER ROLE CURRENT_USER IN DATABASE ${upstream.name} SET standard_conforming_strings = off`);
    try {
      const result = await psql(uri, ["show standard_conforming_strings", "reset standard_conforming_strings", "show standard_conforming_strings", "reset all", "discard all", PAYLOAD, "show standard_conforming_strings"]);
      expect(result.stdout.trim().split("\n")).toEqual(["on", "on", PAYLOAD_READ, "on"]);
      expect(await ordersOnTarget()).toBe(ORDERS);
    } finally {
      await target.query(`ALTER ROLE CURRENT_USER IN DATABASE ${upstream.name} RESET standard_conforming_strings`);
    }
  });

  it.each(["SJIS", "BIG5", "GBK", "GB18030", "UHC", "LATIN1"])("refuses client_encoding %s at start-up, and takes UTF8", async (encoding) => {
    const { uri } = await grant("guarded-db");
    const refused = await psql(uri, ["select 1"], { PGCLIENTENCODING: encoding });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('client_encoding stays UTF8 through jitgate');
    const honest = await psql(uri, ["select 'ü'"], { PGCLIENTENCODING: "UTF8" });
    expect(honest.stdout.trim()).toBe("ü");
  });

  it("refuses pinned settings as start-up parameters of their own (raw protocol)", async () => {
    await expect(rawSession("guarded-db", { standard_conforming_strings: "off" })).rejects.toThrow(/standard_conforming_strings stays on/);
    // Setting names are case-insensitive to the server. (A plain client_encoding here would be
    // overridden by the UTF8 that pg-protocol's start-up message always ends with.)
    await expect(rawSession("guarded-db", { Client_Encoding: "SJIS" })).rejects.toThrow(/client_encoding stays UTF8/);
    await expect(rawSession("guarded-db", { options: "-c standard_conforming_strings=off" })).rejects.toThrow(/pinned-setting/);
  });

  it("refuses a statement whose bytes are SJIS with a backslash as second byte (raw protocol), and runs the UTF-8 form", async () => {
    const session = await rawSession("guarded-db");
    try {
      // In SJIS, 0x95 0x5C is one character (表); read as anything else, 0x5C is a backslash.
      const sjis = Buffer.concat([Buffer.from("select '"), Buffer.from([0x95, 0x5c]), Buffer.from("'; delete from orders; --'")]);
      const refused = await rawQuery(session, sjis);
      expect(refused.errors[0]).toMatchObject({
        C: "42501",
        M: 'jitgate: statement blocked by rule "invalid-encoding": the statement is not valid UTF-8, and client_encoding stays UTF8 through jitgate',
      });
      expect(await ordersOnTarget()).toBe(ORDERS);
      const honest = await rawQuery(session, Buffer.from("select '表'"));
      expect(honest).toEqual({ errors: [], rows: 1 });
    } finally {
      session.socket.destroy();
    }
  });

  it("refuses set_config with a bound setting name in the extended protocol, and runs the honest form", async () => {
    const { uri } = await grant("guarded-db");
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    try {
      await expect(client.query({ text: "select set_config($1, 'off', false)", values: ["standard_conforming_strings"] })).rejects.toMatchObject({
        code: "42501",
        message: expect.stringContaining('rule "pinned-setting"'),
      });
      await expect(client.query({ text: "select set_config('standard_conforming_strings', $1, false)", values: ["off"] })).rejects.toMatchObject({ code: "42501" });
      const honest = await client.query({ text: "select set_config('search_path', $1, false) as path", values: ["public"] });
      expect(honest.rows).toEqual([{ path: "public" }]);
      expect((await client.query("show standard_conforming_strings")).rows).toEqual([{ standard_conforming_strings: "on" }]);
    } finally {
      await client.end();
    }
  });

  it("ends the session when the server reports a pinned setting changed by a way the rules let through", async () => {
    // lenient-db lets unverifiable statements run, so dynamic SQL reaches the server.
    const { uri } = await grant("lenient-db");
    const result = await psql(uri, ["do $$begin execute 'set standard_conforming_strings = ' || 'off'; end$$", PAYLOAD]);
    expect(result.stderr).toContain("jitgate ended the session: the target reports standard_conforming_strings=off");
    expect(await ordersOnTarget()).toBe(ORDERS);
  });
});

describe("statements are classified wherever they hide", () => {
  it.each([
    ["a DO block", ["do $$begin delete from orders; end$$"], "delete-without-where"],
    ["a DO block with a tagged dollar quote", ["DO $x$ BEGIN DELETE FROM orders; END $x$"], "delete-without-where"],
    ["a DO block in an E'' string with an octal escape", ["do E'begin \\144elete from orders; end'"], "delete-without-where"],
    ["EXECUTE of built text in a DO block", ["do $$begin execute 'delete ' || 'from orders'; end$$"], "unverifiable"],
    ["EXECUTE of a constant in a DO block", ["do $$begin execute 'delete from orders'; end$$"], "delete-without-where"],
    ["a function with DELETE in its body, then called", ["create function wipe() returns void language plpgsql as $$begin delete from orders; end$$", "select wipe()"], "delete-without-where"],
    ["a SQL function with BEGIN ATOMIC, then called", ["create function wipe2() returns int language sql begin atomic delete from orders; select 1; end", "select wipe2()"], "delete-without-where"],
    ["a SQL function with a quoted body", ["create function wipe3() returns void language sql as 'delete from orders'", "select wipe3()"], "delete-without-where"],
    ["a procedure, then called", ["create procedure wipe4() language plpgsql as $$begin delete from orders; end$$", "call wipe4()"], "delete-without-where"],
    ["a trigger", ["create function wipe5() returns trigger language plpgsql as $$begin delete from orders; return new; end$$", "create trigger t after insert on scratch for each statement execute function wipe5()", "insert into scratch values (1, 'x')"], "delete-without-where"],
    ["a rule", ["create rule r as on insert to scratch do also delete from orders", "insert into scratch values (1, 'x')"], "delete-without-where"],
    ["PREPARE of a blocked statement", ["prepare p as delete from orders", "execute p"], "delete-without-where"],
    ["a data-modifying CTE", ["with d as (delete from orders returning *) select count(*) from d"], "delete-without-where"],
    ["EXPLAIN ANALYZE", ["explain analyze delete from orders"], "delete-without-where"],
    ["a Unicode-escaped quote", ["select U&'\\0027'; delete from orders; --'"], "delete-without-where"],
    ["an E'' escaped quote", ["select E'\\''; delete from orders; --'"], "delete-without-where"],
    ["MERGE … ON true WHEN MATCHED THEN DELETE", ["merge into orders o using (select 1) s on true when matched then delete"], "delete-without-where"],
    ["MERGE … WHEN NOT MATCHED BY SOURCE THEN DELETE", ["merge into orders o using (select 0 as id) s on o.id = s.id when not matched by source then delete"], "delete-without-where"],
    ["MERGE … WHEN MATCHED THEN UPDATE", ["merge into orders o using orders s on o.id = s.id when matched then update set email = null"], "update-without-where"],
    ["query_to_xml of built text", ["select query_to_xml('select ' || 'set_config(''standard_conforming_strings'', ''off'', false)', true, true, '')"], "unverifiable"],
  ])("%s", async (_name, commands, rule) => {
    const { uri } = await grant("guarded-db");
    const result = await psql(uri, commands);
    expect(result.stderr).toContain(`statement blocked by rule "${rule}"`);
    expect(await ordersOnTarget()).toBe(ORDERS);
    await target.query("DELETE FROM scratch; DROP TRIGGER IF EXISTS t ON scratch; DROP RULE IF EXISTS r ON scratch");
  });

  it("still runs the honest forms: DO, functions, triggers, PREPARE/EXECUTE, CTEs, EXPLAIN ANALYZE, CALL", async () => {
    const { uri } = await grant("guarded-db");
    const result = await psql(uri, [
      "do $$begin update orders set note = 'seen' where id = 1; end$$",
      "do $$begin execute 'select 1'; end$$",
      "create function stamp() returns trigger language plpgsql as $$begin new.v := 'stamped'; return new; end$$",
      "create trigger stamp before insert on scratch for each row execute function stamp()",
      "insert into scratch values (1, 'x')",
      "select v from scratch",
      "create function two() returns int language sql begin atomic select 2; end",
      "select two()",
      "prepare q as select count(*) from orders where id = $1",
      "execute q(1)",
      "with o as (select id from orders) select count(*) from o",
      "explain (analyze, costs off, timing off, summary off) select 1",
      "call touch(1)",
      "merge into orders o using (select 1 as id) s on o.id = s.id when matched and o.id = 1 then update set note = 'merged'",
      "select note from orders where id = 1",
    ]);
    expect(result.stderr).toBe("");
    expect(result.stdout.trim().split("\n")).toEqual(["stamped", "2", "1", String(ORDERS), "Result (actual rows=1 loops=1)", "merged"]);
    await target.query("DROP TRIGGER stamp ON scratch; DELETE FROM scratch");
  });

  it("gives unverifiable statements the target's verdict: held by default", async () => {
    const { uri } = await grant("baseline-db");
    const held = heldEvent((h) => h.rule === "unverifiable");
    const running = psql(uri, ["do $$begin execute 'delete ' || 'from orders'; end$$"]);
    const { payload } = await held;
    await test.gateway.sessions.decide(lead, { heldId: payload.held.id, verdict: "denied" });
    const result = await running;
    expect(result.stderr).toContain('the held statement was denied in the request thread (rule "unverifiable")');
    expect(await ordersOnTarget()).toBe(ORDERS);
  });
});

describe("the classification cache", () => {
  it("does not let a folded number turn EXPLAIN (ANALYZE 0) into a pass for EXPLAIN (ANALYZE 1)", async () => {
    const { uri } = await grant("lenient-db");
    const result = await psql(uri, ["explain (analyze 0, costs off) delete from orders", "explain (analyze 1, costs off) delete from orders"]);
    expect(result.stdout).toContain("Delete on orders");
    expect(result.stderr).toContain('statement blocked by rule "delete-without-where"');
    expect(await ordersOnTarget()).toBe(ORDERS);
  });

  it("does not fold digits inside quotes: an octal escape in a DO body is not a number", async () => {
    // `\101` is A (the body does not parse, and lenient-db lets unverifiable bodies run, so the server
    // refuses it); `\105` is E. Folding both to `\0` would give the second the first one's verdict.
    const { uri } = await grant("lenient-db");
    const result = await psql(uri, ["DO E'BEGIN DELET\\101 FROM orders; END'", "DO E'BEGIN DELET\\105 FROM orders; END'"]);
    expect(result.stderr).toContain("syntax error");
    expect(result.stderr).toContain('statement blocked by rule "delete-without-where"');
    expect(await ordersOnTarget()).toBe(ORDERS);
  });

  it("shares an entry between statements that differ only in a number, with each one's own text recorded", async () => {
    const { uri } = await grant("lenient-db");
    const result = await psql(uri, ["select note from orders where id = 2", "select note from orders where id = 3", "delete from orders where id = 99", "delete from orders"]);
    expect(result.stdout.trim().split("\n")).toEqual(["order 2", "order 3"]);
    expect(result.stderr).toContain('statement blocked by rule "delete-without-where"');
    expect(await ordersOnTarget()).toBe(ORDERS);
  });
});

describe("safe defaults: a target without commands gets the baseline", () => {
  it.each([
    ["select pg_read_file('postgresql.conf')", "server-files"],
    ["select pg_read_binary_file('postgresql.conf')", "server-files"],
    ["select pg_ls_dir('.')", "server-files"],
    ["select lo_import('/etc/hostname')", "server-files"],
    ["select lo_export(1, '/tmp/jitgate-lo')", "server-files"],
    ["copy orders to '/tmp/jitgate-orders'", "server-files"],
    ["copy (select 1) to program 'cat > /tmp/jitgate-x'", "copy-program"],
    ["alter system set work_mem = '1GB'", "alter-system"],
    ["select pg_create_logical_replication_slot('jitgate', 'test_decoding')", "replication"],
  ])("blocks `%s`", async (sql, rule) => {
    const { uri } = await grant("baseline-db");
    const result = await psql(uri, [sql]);
    expect(result.stderr).toContain(`statement blocked by rule "${rule}"`);
    const { rows } = await target.query("SELECT count(*)::int AS n FROM pg_replication_slots");
    expect(rows[0]).toEqual({ n: 0 });
  });

  it("holds SET ROLE, and runs plain work", async () => {
    const { uri } = await grant("baseline-db");
    const held = heldEvent((h) => h.rule === "set-role");
    const running = psql(uri, ["select count(*) from orders", "set role postgres", "select current_user = session_user"]);
    const { payload } = await held;
    await test.gateway.sessions.decide(lead, { heldId: payload.held.id, verdict: "denied" });
    const result = await running;
    expect(result.stdout.trim().split("\n")).toEqual([String(ORDERS), "t"]);
    expect(result.stderr).toContain('(rule "set-role")');
  });
});
