import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { HeldSnapshot, Person } from "../src/broker/index.js";
import { createTestDatabase } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { eventually } from "./support/fake-slack.js";
import { nextEvent } from "./support/jobs.js";
import { serialize } from "pg-protocol";
import { BackendReader, BackendType, decodeErrorFields } from "../src/proxy/postgres/backend-codec.js";
import { openUpstream, type UpstreamSession } from "../src/proxy/postgres/upstream.js";

/**
 * Issue 13, must 2: `CREATE TRIGGER` takes the strictest verdict of the function it attaches,
 * whose body is in the target's catalog, not in the statement. The functions are created by a DBA
 * directly on the database (not through jitgate, so no rule ever read them); the grant holder
 * then tries to attach them through the proxy on a target that allows DDL but holds
 * delete-without-where. Every attempt is checked by its effect on the target itself: the trigger
 * is not in pg_trigger after a deny, and an insert afterwards leaves the rows of `orders`.
 */

const run = promisify(execFile);

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let test: TestGateway;
let dev: Person, lead: Person;
let port: number;
let dba: pg.Client;
let uri: string;
let blockingUri: string;
let ddlUri: string;

const ORDERS = 5;
const TRIGGER_ON_ORDERS = "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal ORDER BY tgname";

async function ordersOnTarget(): Promise<number> {
  const { rows } = await dba.query<{ n: number }>("SELECT count(*)::int AS n FROM orders");
  return rows[0]!.n;
}

async function triggersOnOrders(): Promise<{ tgname: string; tgenabled: string }[]> {
  return (await dba.query<{ tgname: string; tgenabled: string }>(TRIGGER_ON_ORDERS)).rows;
}

/** psql with each entry of `commands` as its own -c (its own Query message, in one session). */
async function psql(commands: string[], to = uri) {
  const args = [to, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=0"];
  for (const command of commands) args.push("-c", command);
  try {
    const { stdout, stderr } = await run("psql", args, { env: { ...process.env, PGCONNECT_TIMEOUT: "5" }, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

const heldEvent = (predicate: (held: HeldSnapshot) => boolean) =>
  nextEvent<{ held: HeldSnapshot }>((l) => test.gateway.cluster.events.on("statement.held", l), (p) => predicate(p.held), 20_000);

/** Runs `work`, expects one statement held by `rule`, denies it in the thread, and returns what `work` got and what was held. */
async function deniedWhileHeld<T>(rule: string, work: () => Promise<T>): Promise<{ result: T; held: HeldSnapshot }> {
  const held = heldEvent((h) => h.rule === rule);
  const running = work();
  const { payload } = await held;
  await test.gateway.sessions.decide(lead, { heldId: payload.held.id, verdict: "denied" });
  return { result: await running, held: payload.held };
}

/** Writes raw protocol messages and collects the ErrorResponses until ReadyForQuery. */
async function exchange(session: UpstreamSession, messages: Buffer[]): Promise<Record<string, string>[]> {
  return (await exchangeFrames(session, messages)).errors;
}

/** Writes raw protocol messages; the types of the messages received (as letters) and the errors, until ReadyForQuery. */
function exchangeFrames(session: UpstreamSession, messages: Buffer[]): Promise<{ types: string; errors: Record<string, string>[] }> {
  const reader = new BackendReader();
  const errors: Record<string, string>[] = [];
  let types = "";
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      reader.push(chunk, (type, frame) => {
        types += String.fromCharCode(type);
        if (type === BackendType.ErrorResponse) errors.push(decodeErrorFields(frame));
        if (type === BackendType.ReadyForQuery) {
          session.socket.off("data", onData);
          resolve({ types, errors });
        }
      });
    };
    session.socket.on("data", onData);
    session.socket.once("close", () => resolve({ types, errors }));
    session.socket.once("error", reject);
    session.socket.write(Buffer.concat(messages));
  });
}

async function rawSession(to = uri): Promise<UpstreamSession> {
  const url = new URL(to);
  return openUpstream(
    { host: "127.0.0.1", port, user: decodeURIComponent(url.username), password: decodeURIComponent(url.password), database: url.pathname.slice(1), sslmode: "disable" },
    {},
  );
}

/** An insert through the proxy: the attacker's way to fire a trigger. */
async function insertThroughProxy(id: number): Promise<void> {
  const result = await psql([`insert into orders (id, note) values (${id}, 'new')`]);
  expect(result.stderr).toBe("");
}

beforeAll(async () => {
  upstream = await createTestDatabase("pgtrigger_upstream");
  dba = new pg.Client({ connectionString: upstream.url });
  await dba.connect();
  // The DBA's functions, created directly on the database: jitgate never saw their bodies.
  await dba.query(`
    CREATE TABLE orders (id int PRIMARY KEY, note text, updated_at timestamptz);
    INSERT INTO orders (id, note) SELECT g, 'order ' || g FROM generate_series(1, ${ORDERS}) g;
    CREATE FUNCTION public.wipe() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM orders; RETURN NEW; END$$;
    CREATE SCHEMA dba;
    CREATE FUNCTION dba."Wipe All"() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM public.orders; RETURN NULL; END$$;
    CREATE SCHEMA hidden;
    CREATE FUNCTION hidden.purge() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN EXECUTE 'DELETE FROM public.orders WHERE true'; DELETE FROM public.orders; RETURN NEW; END$$;
    CREATE FUNCTION public.c_stamp() RETURNS trigger AS '$libdir/moddatetime', 'moddatetime' LANGUAGE c;
    CREATE FUNCTION public.evt_wipe() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM public.orders; END$$;
    CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.updated_at := now(); RETURN NEW; END$$;
    CREATE TRIGGER dormant AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION wipe();
    ALTER TABLE orders DISABLE TRIGGER dormant;`);
  test = await startTestGateway(
    "pgtrigger",
    `
defaults: { reviewTimeout: 20s }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: trigger-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    commands:
      block: []
      review: [delete-without-where]
  - name: trigger-block-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    commands:
      block: [delete-without-where]
      review: []
  - name: trigger-ddl-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    commands:
      block: []
      review: [ddl, delete-without-where]
`,
    { UPSTREAM_URL: upstream.url },
  );
  port = test.gateway.postgresProxy!.address.port;
  const { broker } = test.gateway;
  dev = await broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com", displayName: "Dev" });
  lead = await broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com", displayName: "Lead" });
  const grant = async (target: string) => {
    const request = await broker.request(dev, { target, duration: "1h", reason: "INC-13 triggers" });
    const result = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
    return result.connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`);
  };
  uri = await grant("trigger-db");
  blockingUri = await grant("trigger-block-db");
  ddlUri = await grant("trigger-ddl-db");
});

afterAll(async () => {
  await dba?.end();
  await test?.close();
  await upstream?.drop();
});

afterEach(async () => {
  // Each case starts from the DBA's state: the dormant trigger disabled, no other trigger, five orders.
  await dba.query(`
    DO $$DECLARE t record; BEGIN
      FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal AND tgname <> 'dormant' LOOP
        EXECUTE format('DROP TRIGGER %I ON orders', t.tgname);
      END LOOP;
    END$$;
    ALTER TABLE orders DISABLE TRIGGER dormant;
    DROP EVENT TRIGGER IF EXISTS e;
    DELETE FROM orders WHERE id > ${ORDERS};`);
});

describe("a trigger on a function whose body would be held is held (simple protocol)", () => {
  it.each([
    ["an unqualified name", "create trigger t after insert on orders for each row execute function wipe()", "delete-without-where"],
    ["a schema-qualified name", "create trigger t after insert on orders for each row execute function public.wipe()", "delete-without-where"],
    ["EXECUTE PROCEDURE, odd case and comments", "CREATE /* x */ TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE PROCEDURE PUBLIC.WIPE ( )", "delete-without-where"],
    ["a quoted name", 'create trigger t after insert on orders for each statement execute function dba."Wipe All"()', "delete-without-where"],
    ["a Unicode-escaped name", 'create trigger t after insert on orders for each statement execute function dba.U&"Wipe\\0020All"()', "delete-without-where"],
    ["CREATE OR REPLACE TRIGGER", "create or replace trigger t after insert on orders for each row execute function wipe()", "delete-without-where"],
    ["a constraint trigger", "create constraint trigger t after insert on orders deferrable for each row execute function wipe()", "delete-without-where"],
  ])("%s", async (_name, sql, rule) => {
    const { result, held } = await deniedWhileHeld(rule, () => psql([sql]));
    expect(held.text).toBe(sql);
    expect(result.stderr).toContain(`the held statement was denied in the request thread (rule "${rule}")`);
    expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
    await insertThroughProxy(100);
    expect(await ordersOnTarget()).toBe(ORDERS + 1);
  });

  it("names the body's rule, not only DDL, where both hold the statement", async () => {
    const { result, held } = await deniedWhileHeld("delete-without-where", () => psql(["create trigger t after insert on orders for each row execute function wipe()"], ddlUri));
    expect(held.text).toBe("create trigger t after insert on orders for each row execute function wipe()");
    expect(result.stderr).toContain('(rule "delete-without-where")');
    expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
  });

  it("names the function whose body decided, where the rule blocks", async () => {
    const result = await psql(["create trigger t after insert on orders for each row execute function wipe()"], blockingUri);
    expect(result.stderr).toContain('jitgate: statement blocked by rule "delete-without-where": in the body of public.wipe(), which this statement attaches');
    expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
  });

  it("finds a function through a search_path set earlier in the session", async () => {
    const { result } = await deniedWhileHeld("delete-without-where", () =>
      psql(["set search_path = hidden, public", "create trigger t after insert on orders for each row execute function purge()"]),
    );
    expect(result.stderr).toContain('(rule "delete-without-where")');
    expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
    await insertThroughProxy(100);
    expect(await ordersOnTarget()).toBe(ORDERS + 1);
  });

  it("holds an event trigger on such a function", async () => {
    const { result } = await deniedWhileHeld("delete-without-where", () =>
      psql(["create event trigger e on ddl_command_start execute function evt_wipe()", "create table scratch (a int)", "drop table scratch"]),
    );
    expect(result.stderr).toContain('(rule "delete-without-where")');
    const { rows } = await dba.query("SELECT evtname FROM pg_event_trigger");
    expect(rows).toEqual([]);
    expect(await ordersOnTarget()).toBe(ORDERS);
  });

  it.each([
    ["ENABLE TRIGGER", "alter table orders enable trigger dormant"],
    ["ENABLE ALWAYS TRIGGER", "alter table orders enable always trigger dormant"],
    ["ENABLE REPLICA TRIGGER", "alter table public.orders enable replica trigger dormant"],
    ["ENABLE TRIGGER ALL", "alter table orders enable trigger all"],
    ["ENABLE TRIGGER USER", "alter table only orders enable trigger user"],
  ])("holds %s of a disabled trigger on such a function", async (_name, sql) => {
    const { result } = await deniedWhileHeld("delete-without-where", () => psql([sql]));
    expect(result.stderr).toContain('(rule "delete-without-where")');
    expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
    await insertThroughProxy(100);
    expect(await ordersOnTarget()).toBe(ORDERS + 1);
  });
});

describe("what jitgate cannot check against the catalog is unverifiable, held by default", () => {
  it.each([
    ["a function in C", "create trigger t before update on orders for each row execute function c_stamp('updated_at')"],
    ["a function that does not exist (the server would refuse it too)", "create trigger t after insert on orders for each row execute function no_such_function('x')"],
    ["a function in PostgreSQL's own internal language", "create trigger t before update on orders for each row execute function suppress_redundant_updates_trigger()"],
    ["a function in another session's temporary schema", "create trigger t after insert on orders for each row execute function pg_temp.wipe()"],
    ["after another statement in the same message", "select 1; create trigger t before insert on orders for each row execute function stamp()"],
    [
      "renames in the same message that swap the functions",
      "alter function public.stamp() rename to stamp_old; alter function public.wipe() rename to stamp; create trigger t after insert on orders for each row execute function stamp()",
    ],
    ["inside a DO block", "do $$begin create trigger t after insert on orders for each row execute function wipe(); end$$"],
  ])("%s", async (_name, sql) => {
    const { result, held } = await deniedWhileHeld("unverifiable", () => psql([sql]));
    expect(held.text).toMatch(/create trigger/);
    expect(sql.endsWith(held.text)).toBe(true);
    expect(result.stderr).toContain('the held statement was denied in the request thread (rule "unverifiable")');
    expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
    const { rows } = await dba.query("SELECT proname FROM pg_proc WHERE proname IN ('stamp', 'wipe', 'stamp_old') ORDER BY 1");
    expect(rows).toEqual([{ proname: "stamp" }, { proname: "wipe" }]);
    await insertThroughProxy(100);
    expect(await ordersOnTarget()).toBe(ORDERS + 1);
  });

  it("runs once approved in the thread: a C trigger function is then attached and works", async () => {
    const held = heldEvent((h) => h.rule === "unverifiable");
    const running = psql([
      "create trigger c_stamp before update on orders for each row execute function c_stamp('updated_at')",
      "update orders set note = 'touched' where id = 1",
      "select updated_at is not null from orders where id = 1",
    ]);
    await test.gateway.sessions.decide(lead, { heldId: (await held).payload.held.id, verdict: "approved" });
    const result = await running;
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("t");
    expect(await triggersOnOrders()).toEqual([{ tgname: "c_stamp", tgenabled: "O" }, { tgname: "dormant", tgenabled: "D" }]);
    expect(await ordersOnTarget()).toBe(ORDERS);
    await dba.query("DROP TRIGGER c_stamp ON orders; UPDATE orders SET updated_at = NULL, note = 'order 1' WHERE id = 1");
  });

  it("inside a transaction block, whose own changes the gateway's session cannot see", async () => {
    const { result } = await deniedWhileHeld("unverifiable", () =>
      psql([
        "begin",
        "alter function public.stamp() rename to stamp_old",
        "alter function public.wipe() rename to stamp",
        "create trigger t after insert on orders for each row execute function stamp()",
        "commit",
      ]),
    );
    expect(result.stderr).toContain('(rule "unverifiable")');
    // The refusal aborted the transaction: the renames rolled back with it.
    expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
    const { rows } = await dba.query("SELECT proname FROM pg_proc WHERE proname IN ('stamp', 'wipe', 'stamp_old') ORDER BY 1");
    expect(rows).toEqual([{ proname: "stamp" }, { proname: "wipe" }]);
  });
});

describe("the honest path", () => {
  it("creates a trigger whose function only stamps the row, and the trigger works", async () => {
    const result = await psql([
      "create trigger stamp before insert on orders for each row execute function stamp()",
      "insert into orders (id, note) values (100, 'new')",
      "select updated_at is not null from orders where id = 100",
    ]);
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("t");
    expect(await ordersOnTarget()).toBe(ORDERS + 1);
  });

  it("enables a disabled trigger whose function only stamps the row", async () => {
    await dba.query("CREATE TRIGGER stamp BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION stamp(); ALTER TABLE orders DISABLE TRIGGER stamp");
    const result = await psql(["alter table orders enable trigger stamp", "insert into orders (id, note) values (100, 'new')", "select updated_at is not null from orders where id = 100"]);
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("t");
    expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }, { tgname: "stamp", tgenabled: "O" }]);
  });
});

describe("when the catalog cannot be read", () => {
  it("holds the trigger as unverifiable, and reads the catalog again on a fresh session afterwards", async () => {
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    const catalogSessions = async () =>
      (await dba.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'jitgate: catalog'")).rows[0]!.n;
    try {
      await client.query("create trigger stamp before insert on orders for each row execute function stamp()");
      await client.query("drop trigger stamp on orders");
      expect(await catalogSessions()).toBe(1);
      // The gateway's catalog session goes away (a restart, a DBA ending it).
      await dba.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'jitgate: catalog'");
      await eventually(async () => (await catalogSessions()) === 0, 10_000, "the catalog session to end");
      const { result } = await deniedWhileHeld("unverifiable", () =>
        client.query("create trigger stamp before insert on orders for each row execute function stamp()").then(
          () => undefined,
          (error: Error) => error,
        ),
      );
      expect(result?.message).toContain('(rule "unverifiable")');
      expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
      await client.query("create trigger stamp before insert on orders for each row execute function stamp()");
      expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }, { tgname: "stamp", tgenabled: "O" }]);
    } finally {
      await client.end();
    }
    await eventually(async () => (await catalogSessions()) === 0, 10_000, "the catalog session to close with the client's");
  });
});

describe("the extended protocol", () => {
  async function proxyClient(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    return client;
  }

  it("holds a trigger on a function whose body would be held, decided when it runs", async () => {
    const client = await proxyClient();
    try {
      const { result } = await deniedWhileHeld("delete-without-where", () =>
        client.query({ name: "attach", text: "create trigger t after insert on orders for each row execute function wipe()" }).then(
          () => undefined,
          (error: Error) => error,
        ),
      );
      expect(result?.message).toContain('the held statement was denied in the request thread (rule "delete-without-where")');
      expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
      // The session goes on, and the function has not fired.
      await client.query({ name: "insert", text: "insert into orders (id, note) values ($1, 'new')", values: [100] });
      expect(await ordersOnTarget()).toBe(ORDERS + 1);
    } finally {
      await client.end();
    }
  });

  it("creates the honest trigger", async () => {
    const client = await proxyClient();
    try {
      await client.query({ name: "attach", text: "create trigger stamp before insert on orders for each row execute function stamp()" });
      await client.query({ name: "insert", text: "insert into orders (id, note) values ($1, 'new')", values: [100] });
      const { rows } = await client.query({ name: "read", text: "select updated_at is not null as stamped from orders where id = $1", values: [100] });
      expect(rows).toEqual([{ stamped: true }]);
    } finally {
      await client.end();
    }
  });

  it("holds again when it runs, for the body, a trigger approved at its Parse as DDL", async () => {
    const client = new pg.Client({ connectionString: ddlUri });
    await client.connect();
    try {
      const asDdl = heldEvent((h) => h.rule === "ddl");
      const forBody = heldEvent((h) => h.rule === "delete-without-where");
      const running = client.query({ name: "attach", text: "create trigger t after insert on orders for each row execute function wipe()" }).then(
        () => undefined,
        (error: Error) => error,
      );
      await test.gateway.sessions.decide(lead, { heldId: (await asDdl).payload.held.id, verdict: "approved" });
      await test.gateway.sessions.decide(lead, { heldId: (await forBody).payload.held.id, verdict: "denied" });
      expect((await running)?.message).toContain('the held statement was denied in the request thread (rule "delete-without-where")');
      expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
    } finally {
      await client.end();
    }
  });

  it("answers a refused Execute in the order the client expects, and the session goes on", async () => {
    const session = await rawSession();
    try {
      const before = await exchangeFrames(session, [serialize.parse({ text: "select 1" }), serialize.bind({}), serialize.execute({}), serialize.sync()]);
      expect(before.types).toBe("12DCZ");
      const { result } = await deniedWhileHeld("delete-without-where", () =>
        exchangeFrames(session, [
          serialize.parse({ name: "attach", text: "create trigger t after insert on orders for each row execute function wipe()" }),
          serialize.bind({ statement: "attach" }),
          serialize.describe({ type: "P", name: "" }),
          serialize.execute({}),
          serialize.sync(),
        ]),
      );
      // ParseComplete, BindComplete, NoData (the Describe), then the refusal's error, and ReadyForQuery.
      expect(result.types).toBe("12nEZ");
      expect(result.errors.map((e) => e.M)).toEqual([expect.stringContaining('(rule "delete-without-where")')]);
      expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
      const after = await exchangeFrames(session, [serialize.parse({ text: "select 2" }), serialize.bind({}), serialize.execute({}), serialize.sync()]);
      expect(after.types).toBe("12DCZ");
    } finally {
      session.socket.destroy();
    }
  });

  it("answers a statement refused at its Parse after others of the same batch in order too", async () => {
    const session = await rawSession();
    try {
      const { result } = await deniedWhileHeld("delete-without-where", () =>
        exchangeFrames(session, [
          serialize.parse({ text: "select 1" }),
          serialize.bind({}),
          serialize.execute({}),
          serialize.parse({ text: "delete from orders" }),
          serialize.bind({}),
          serialize.execute({}),
          serialize.sync(),
        ]),
      );
      // select 1's ParseComplete, BindComplete, DataRow and CommandComplete, then the refusal's error.
      expect(result.types).toBe("12DCEZ");
      expect(await ordersOnTarget()).toBe(ORDERS);
      const after = await exchangeFrames(session, [serialize.parse({ text: "select 2" }), serialize.bind({}), serialize.execute({}), serialize.sync()]);
      expect(after.types).toBe("12DCZ");
    } finally {
      session.socket.destroy();
    }
  });

  it("makes a trigger statement pipelined behind another one unverifiable", async () => {
    // Raw messages, because pg waits for each answer: SET then CREATE TRIGGER in one batch, one Sync.
    const session = await rawSession();
    try {
      const { result } = await deniedWhileHeld("unverifiable", () =>
        exchange(session, [
          serialize.parse({ text: "select set_config('search_path', 'hidden, public', false)" }),
          serialize.bind({}),
          serialize.execute({}),
          serialize.parse({ text: "create trigger t before insert on orders for each row execute function stamp()" }),
          serialize.bind({}),
          serialize.execute({}),
          serialize.sync(),
        ]),
      );
      expect(result.map((e) => e.M)).toEqual([expect.stringContaining('(rule "unverifiable")')]);
      expect(await triggersOnOrders()).toEqual([{ tgname: "dormant", tgenabled: "D" }]);
    } finally {
      session.socket.destroy();
    }
  });
});
