import { spawn } from "node:child_process";
import { createServer, connect, type Server } from "node:net";
import pg from "pg";
import { serialize } from "pg-protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Person } from "../src/broker/index.js";
import { sessionStatements } from "../src/db/schema.js";
import { BackendReader, BackendType, decodeDataRow } from "../src/proxy/postgres/backend-codec.js";
import { openUpstream } from "../src/proxy/postgres/upstream.js";
import { createTestDatabase } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

// Issue 13, musts 3, 4 and 7: a grant holder who tries to read masked columns another way. Only
// column rules are configured (no detectors), so nothing but tracing the data protects them.
// Every byte the client receives, and every stored statement row, is searched for the values.

const NEEDLES = ["qx7secret", "terces7xq", "QX7SECRET", "7777 3131", "7777313", "5151 9191", "71777373"];

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let test: TestGateway;
let lead: Person;
let people = 0;
let tap: Server;
let tapPort: number;
/** Every byte the proxy sent to clients through the tap. */
const received: Buffer[] = [];

beforeAll(async () => {
  upstream = await createTestDatabase("maskadv_up");
  const seed = new pg.Client({ connectionString: upstream.url });
  await seed.connect();
  await seed.query(`
    CREATE TABLE orders (id int PRIMARY KEY, email text, card_number text, status text CHECK (status <> 'bad'));
    INSERT INTO orders VALUES
      (1, 'ann.qx7secret@corp.test', '7777 3131 5151 9191', 'open'),
      (2, 'bob.qx7secret@corp.test', '7777 3131 5151 9192', 'paid');
    CREATE VIEW contacts AS SELECT id, email AS contact FROM orders;
    CREATE VIEW statuses AS SELECT id, upper(status) AS shout FROM orders;
    CREATE FUNCTION leak() RETURNS text LANGUAGE sql AS 'SELECT string_agg(email, '','') FROM orders';
    CREATE FUNCTION peek(int, int) RETURNS text LANGUAGE sql AS 'SELECT string_agg(email, '','') FROM orders';
    CREATE OPERATOR #@# (LEFTARG = int, RIGHTARG = int, FUNCTION = peek);`);
  await seed.end();
  test = await startTestGateway(
    "maskadv",
    `
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    mask: [{ column: email }, { column: card_number }]
`,
    { UPSTREAM_URL: upstream.url },
  );
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com" });
  // A tap between the clients and the proxy that keeps everything the proxy sends.
  const proxyPort = test.gateway.postgresProxy!.address.port;
  tap = createServer((client) => {
    const server = connect(proxyPort, "127.0.0.1");
    client.pipe(server);
    server.on("data", (chunk: Buffer) => {
      received.push(Buffer.from(chunk));
      client.write(chunk);
    });
    server.on("end", () => client.end());
    server.on("error", () => client.destroy());
    client.on("error", () => server.destroy());
  });
  await new Promise<void>((resolve) => tap.listen(0, "127.0.0.1", resolve));
  tapPort = (tap.address() as { port: number }).port;
});

afterAll(async () => {
  if (tap) await new Promise((resolve) => tap.close(resolve));
  await test?.close();
  await upstream?.drop();
});

async function grant(): Promise<{ uri: string; user: string; password: string }> {
  const { broker } = test.gateway;
  people += 1;
  const dev = await broker.identify({ platform: "slack", externalId: `U${people + 10}`, email: `dev${people}@example.com` });
  const request = await broker.request(dev, { target: "orders-db", duration: "1h", reason: "look" });
  const result = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const uri = result.connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${tapPort}`);
  const parsed = new URL(uri);
  return { uri, user: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) };
}

/** Runs a psql script through the tap; resolves with everything psql printed. */
function psql(uri: string, script: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn("psql", [uri, "-X", "-v", "ON_ERROR_STOP=0", "-f", "-"], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.stdin.end(script);
    child.on("close", () => resolve(output));
  });
}

const leaked = (text: string) => NEEDLES.filter((needle) => text.includes(needle));

function expectNoLeakInWire(): void {
  const all = Buffer.concat(received).toString("latin1");
  expect(leaked(all)).toEqual([]);
}

describe("masked values leave by no other way", () => {
  it("aliases, expressions, aggregates, whole rows, JSON, views, functions and RETURNING are masked; honest reads are not", async () => {
    const { uri } = await grant();
    const attacks = [
      "SELECT email AS e FROM orders;",
      "SELECT replace(email, '@', ' at ') FROM orders;",
      "SELECT reverse(email), upper(email) FROM orders;",
      "SELECT substr(card_number, 1, 8), replace(card_number, ' ', '') FROM orders;",
      "SELECT string_agg(email, ','), array_agg(card_number) FROM orders;",
      "SELECT row_to_json(o) FROM orders o;",
      "SELECT o FROM orders o;",
      "SELECT to_jsonb(o.*) FROM orders o;",
      "SELECT (o).email FROM orders o;",
      "SELECT o::text FROM orders o;",
      "SELECT c FROM (SELECT * FROM orders) s(a, b, c);",
      "SELECT upper(c) FROM (SELECT * FROM orders) s(a, b, c);",
      "WITH x(a, b, c) AS (SELECT * FROM orders) SELECT c || '' FROM x;",
      "SELECT contact FROM contacts;",
      "SELECT upper(contact) FROM contacts;",
      "SELECT leak();",
      "SELECT 1 #@# 2;",
      "SELECT id OPERATOR(public.#@#) 2 FROM orders;",
      "SELECT query_to_xml('select email from orders', true, false, '');",
      "SELECT table_to_xml('orders', true, false, '');",
      "SELECT format('%s', email) FROM orders;",
      "SELECT * FROM orders;",
      "UPDATE orders SET status = status WHERE id = 1 RETURNING email, card_number || '';",
      "UPDATE orders SET status = status WHERE id = 1 RETURNING *;",
      "SELECT 'x' AS a UNION ALL SELECT email FROM orders;",
      "BEGIN; DECLARE c CURSOR FOR SELECT email AS e, id FROM orders; FETCH ALL FROM c; COMMIT;",
      "BEGIN; DECLARE d CURSOR FOR SELECT upper(email) FROM orders; FETCH 1 FROM d; CLOSE d; COMMIT;",
      "PREPARE p AS SELECT upper(email), email AS e FROM orders; EXECUTE p;",
      "SELECT 1 AS one \\; SELECT lower(email) FROM orders \\; SELECT 2 AS two;",
      "SELECT s.x, s.x || '' FROM (SELECT id, email FROM orders) AS s(i, x) JOIN orders ON orders.id = s.i;",
      "SELECT j FROM (orders o JOIN orders p USING (id)) AS j;",
    ];
    const output = await psql(uri, attacks.join("\n") + "\n");
    expect(leaked(output)).toEqual([]);
    expect(output).toContain("***");
    expectNoLeakInWire();
    // The honest forms of the same work still run, unmasked.
    const honest = await psql(
      uri,
      "SELECT id, status FROM orders ORDER BY id;\nSELECT count(*) AS n FROM orders;\nSELECT upper(status) FROM orders ORDER BY id;\nSELECT shout FROM statuses ORDER BY id;\nSELECT id FROM contacts ORDER BY id;\n",
    );
    expect(honest).toMatch(/1 \| open\s+2 \| paid/);
    expect(honest).toMatch(/n\s*\n-+\n\s*2/);
    expect(honest).toContain("OPEN");
    expect(honest).toContain("PAID");
  });

  it("COPY out of masked columns is refused in any form; COPY of other columns runs", async () => {
    const { uri } = await grant();
    const output = await psql(
      uri,
      [
        "COPY (WITH x AS (SELECT * FROM orders) SELECT * FROM x) TO STDOUT;",
        "COPY (WITH stdin AS (SELECT * FROM orders) SELECT * FROM stdin) TO STDOUT;",
        "COPY orders TO STDOUT;",
        "COPY orders (id, email) TO STDOUT WITH (FORMAT csv);",
        "COPY (SELECT upper(contact) FROM contacts) TO STDOUT;",
        "COPY (SELECT id FROM orders) TO STDOUT WITH (FORMAT binary);",
        "COPY orders (id, status) TO STDOUT WITH (FORMAT csv);",
        "COPY (SELECT id, upper(status) FROM orders ORDER BY id) TO STDOUT;",
      ].join("\n") + "\n",
    );
    expect(leaked(output)).toEqual([]);
    expect(output.match(/copy-of-masked-columns/g)?.length).toBe(5);
    expect(output).toContain("copy-binary-on-masked-target");
    expect(output).toContain("1,open");
    expect(output).toContain("2\tPAID");
    expectNoLeakInWire();
  });

  it("writing masked values elsewhere, to be read back under another name, is refused; honest writes run", async () => {
    const { uri } = await grant();
    const output = await psql(
      uri,
      [
        "CREATE TABLE copy1 AS SELECT email AS x FROM orders;",
        "CREATE TABLE copy2 AS SELECT * FROM orders;",
        "SELECT upper(card_number) AS y INTO copy3 FROM orders;",
        "CREATE TABLE sink (id int, v text);",
        "INSERT INTO sink SELECT id, email FROM orders;",
        "INSERT INTO sink SELECT id, o::text FROM orders o;",
        "INSERT INTO sink (v) SELECT contact FROM contacts;",
        "UPDATE orders SET status = email WHERE id = 2;",
        "UPDATE sink SET v = o.card_number FROM orders o WHERE o.id = sink.id;",
        "SELECT v FROM sink;",
        "SELECT status FROM orders;",
      ].join("\n") + "\n",
    );
    expect(leaked(output)).toEqual([]);
    expect(output.match(/copy-of-masked-columns/g)?.length).toBe(8);
    expectNoLeakInWire();
    const honest = await psql(
      uri,
      "INSERT INTO sink SELECT id, status FROM orders;\nUPDATE orders SET status = 'shipped' WHERE id = 2 AND email LIKE '%corp.test';\nCREATE TABLE copy4 AS SELECT id, status FROM orders;\nSELECT count(*) FROM sink;\n",
    );
    expect(honest).toContain("INSERT 0 2");
    expect(honest).toContain("UPDATE 1");
    expect(honest).toContain("SELECT 2");
    expect(honest).not.toContain("ERROR");
  });

  it("errors, notices, notifications and reported parameters do not carry masked values", async () => {
    const { uri } = await grant();
    const output = await psql(
      uri,
      [
        "SELECT string_agg(email, ',')::int FROM orders;",
        "SELECT (SELECT email FROM orders WHERE id = 1)::int;",
        "SELECT leak()::int;",
        "DO $$BEGIN RAISE NOTICE '%', (SELECT string_agg(email, ',') FROM orders); END$$;",
        "DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '42P01', MESSAGE = (SELECT string_agg(email, ',') FROM orders); END$$;",
        "UPDATE orders SET status = 'bad' WHERE id = 1;",
        "LISTEN ch;",
        "SELECT pg_notify('ch', (SELECT string_agg(email, ',') FROM orders));",
        "SELECT 1;",
        "SELECT set_config('application_name', (SELECT email FROM orders WHERE id = 1), false);",
        "SHOW application_name;",
        "SELECT current_setting('application_name');",
      ].join("\n") + "\n",
    );
    expect(leaked(output)).toEqual([]);
    expect(output).toContain("withheld");
    expect(output).toContain("SQLSTATE 22P02");
    expect(output).toContain("SQLSTATE 23514");
    expect(output).toContain('Asynchronous notification "ch" with payload "***"');
    expectNoLeakInWire();
    // Honest errors keep their words.
    const honest = await psql(uri, "SELECT nosuchcolumn FROM orders;\nSELECT * FROM nosuchtable;\n");
    expect(honest).toContain('column "nosuchcolumn" does not exist');
    expect(honest).toContain('relation "nosuchtable" does not exist');
  });

  it("extended protocol: Execute without Describe, in text and binary formats, is masked", async () => {
    const { user, password } = await grant();
    const session = await openUpstream({ host: "127.0.0.1", port: tapPort, user, password, database: "orders-db", sslmode: "disable" }, {});
    const reader = new BackendReader();
    const rows: (Buffer | null)[][] = [];
    let readies = 0;
    const done = new Promise<void>((resolve) => {
      session.socket.on("data", (chunk: Buffer) =>
        reader.push(chunk, (type, frame) => {
          if (type === BackendType.DataRow) rows.push(decodeDataRow(frame).map((v) => (v ? Buffer.from(v) : null)));
          if (type === BackendType.ReadyForQuery && ++readies === 2) resolve();
        }),
      );
    });
    session.socket.write(
      Buffer.concat([
        serialize.parse({ name: "s1", text: "SELECT id, email AS e, replace(card_number, ' ', '') AS c FROM orders ORDER BY id" }),
        serialize.bind({ statement: "s1", portal: "", valueMapper: undefined, binary: true }),
        serialize.execute({ portal: "" }),
        serialize.sync(),
        serialize.bind({ statement: "s1", portal: "p2" }),
        serialize.execute({ portal: "p2", rows: 1 }),
        serialize.execute({ portal: "p2", rows: 1 }),
        serialize.sync(),
      ]),
    );
    await done;
    session.socket.end(serialize.end());
    expect(rows.length).toBe(4);
    // Binary: the int4 id passes, the masked text values are replaced.
    expect(rows[0]![0]!.readInt32BE(0)).toBe(1);
    expect(rows[1]![0]!.readInt32BE(0)).toBe(2);
    // Text, a portal run one row at a time.
    expect(rows[2]![0]!.toString()).toBe("1");
    expect(rows[3]![0]!.toString()).toBe("2");
    for (const row of rows) for (const value of row.slice(1)) expect(value === null || value.toString() === "***").toBe(true);
    expectNoLeakInWire();
  });

  it("extended protocol: a Describe of another portal, or of the statement, right before an Execute does not stand in for the Execute's own", async () => {
    // The relay reuses the client's Describe of the very portal it executes next; an attacker
    // describes a harmless portal (or the prepared statement) and executes one that reads emails.
    const { user, password } = await grant();
    const session = await openUpstream({ host: "127.0.0.1", port: tapPort, user, password, database: "orders-db", sslmode: "disable" }, {});
    const reader = new BackendReader();
    const rows: string[] = [];
    let readies = 0;
    const done = new Promise<void>((resolve) => {
      session.socket.on("data", (chunk: Buffer) =>
        reader.push(chunk, (type, frame) => {
          if (type === BackendType.DataRow) rows.push(decodeDataRow(frame).map((v) => (v === null ? "NULL" : v.toString())).join("|"));
          if (type === BackendType.ReadyForQuery && ++readies === 3) resolve();
        }),
      );
    });
    session.socket.write(
      Buffer.concat([
        serialize.parse({ name: "safe", text: "SELECT id FROM orders ORDER BY id" }),
        serialize.parse({ name: "leak", text: "SELECT email FROM orders ORDER BY id" }),
        serialize.bind({ statement: "safe", portal: "p_safe" }),
        serialize.bind({ statement: "leak", portal: "p_leak" }),
        // Another portal's Describe, right before the Execute.
        serialize.describe({ type: "P", name: "p_safe" }),
        serialize.execute({ portal: "p_leak" }),
        serialize.sync(),
        // The prepared statement's Describe (same shape as the portal's), right before the Execute.
        serialize.bind({ statement: "leak", portal: "" }),
        serialize.describe({ type: "S", name: "leak" }),
        serialize.execute({ portal: "" }),
        serialize.sync(),
        // The portal's own Describe, then a Flush between it and the Execute.
        serialize.bind({ statement: "leak", portal: "" }),
        serialize.describe({ type: "P", name: "" }),
        serialize.flush(),
        serialize.execute({ portal: "" }),
        serialize.sync(),
      ]),
    );
    await done;
    session.socket.end(serialize.end());
    expect(rows.length).toBe(6);
    expect(rows.every((row) => row === "***")).toBe(true);
    expectNoLeakInWire();
  });

  it("nothing stored in the statement log carries the values", async () => {
    const rows = await test.gateway.storage.db.select().from(sessionStatements);
    expect(rows.length).toBeGreaterThan(20);
    expect(leaked(JSON.stringify(rows))).toEqual([]);
  });
});
