import { spawn, type ChildProcess } from "node:child_process";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ManualClock, type Person } from "../src/broker/index.js";
import { createTestDatabase } from "./support/databases.js";
import { eventually } from "./support/fake-slack.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

// Must 5 of issue 13: a grant's end ends the work on the target, not only the client's socket.

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let admin: pg.Client;
let test: TestGateway;
let lead: Person;
let people = 0;
const clock = new ManualClock(new Date());

beforeAll(async () => {
  upstream = await createTestDatabase("grantend_up");
  admin = new pg.Client({ connectionString: upstream.url });
  await admin.connect();
  await admin.query(`CREATE TABLE orders (id int PRIMARY KEY, status text);
    INSERT INTO orders VALUES (1, 'open'), (2, 'open'), (3, 'open');`);
  test = await startTestGateway(
    "grantend",
    `
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
`,
    { UPSTREAM_URL: upstream.url },
    { clock },
  );
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com" });
});

afterAll(async () => {
  await admin?.end();
  await test?.close();
  await upstream?.drop();
});

async function grant(duration = "1h"): Promise<{ uri: string; grantId: string }> {
  const { broker } = test.gateway;
  people += 1;
  const dev = await broker.identify({ platform: "slack", externalId: `U${people + 10}`, email: `dev${people}@example.com` });
  const request = await broker.request(dev, { target: "orders-db", duration, reason: "fix orders" });
  const result = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const port = test.gateway.postgresProxy!.address.port;
  return { uri: result.connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`), grantId: result.grant!.id };
}

function psql(uri: string, script: string, keepOpen = false): { child: ChildProcess; output: () => string; exited: Promise<void> } {
  const child = spawn("psql", [uri, "-X", "-v", "ON_ERROR_STOP=0", "-f", "-"], { stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  if (keepOpen) child.stdin!.write(script);
  else child.stdin!.end(script);
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  return { child, output: () => output, exited };
}

/** The upstream backend running (or idle after) a statement like `pattern`, once it is there. */
async function backendOf(pattern: string, state: string): Promise<number> {
  return eventually(async () => {
    const { rows } = await admin.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND state = $2 AND pid <> pg_backend_pid()",
      [pattern, state],
    );
    if (rows.length !== 1) throw new Error(`no single backend in state ${state} yet`);
    return rows[0]!.pid;
  }, 20_000);
}

const alive = async (pid: number) => (await admin.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [pid])).rowCount !== 0;

it("revoke during a long UPDATE cancels it and ends its backend: the row never changes", async () => {
  const { uri, grantId } = await grant();
  const session = psql(uri, "UPDATE orders SET status = 'shipped' WHERE id = 1 AND pg_sleep(60) IS NOT NULL;\n");
  const pid = await backendOf("UPDATE orders SET status = 'shipped'%", "active");
  await test.gateway.broker.revoke(lead, { grantId, reason: "done" });
  await session.exited;
  expect(session.output()).toContain("access grant revoked");
  expect(await alive(pid)).toBe(false);
  expect((await admin.query("SELECT status FROM orders WHERE id = 1")).rows).toEqual([{ status: "open" }]);
  // The honest form of the same work, under a live grant, still runs and commits.
  const honest = psql((await grant()).uri, "UPDATE orders SET status = 'shipped' WHERE id = 3;\n");
  await honest.exited;
  expect(honest.output()).toContain("UPDATE 1");
  expect((await admin.query("SELECT status FROM orders WHERE id = 3")).rows).toEqual([{ status: "shipped" }]);
});

it("expiry with a transaction left open rolls it back and ends its backend", async () => {
  const { uri } = await grant("1h");
  const session = psql(uri, "BEGIN;\nINSERT INTO orders VALUES (99, 'sneaked in');\nUPDATE orders SET status = 'cancelled' WHERE id = 2;\n", true);
  const pid = await backendOf("UPDATE orders SET status = 'cancelled'%", "idle in transaction");
  clock.advance(2 * 3600_000);
  await eventually(async () => !(await alive(pid)), 10_000, "the backend to be gone");
  // psql reads its input on: its next statement meets the closed session, and is not run.
  session.child.stdin!.end("COMMIT;\n");
  await session.exited;
  expect(session.output()).toContain("access grant expired");
  expect(await alive(pid)).toBe(false);
  expect((await admin.query("SELECT id, status FROM orders WHERE id IN (2, 99) ORDER BY id")).rows).toEqual([{ id: 2, status: "open" }]);
});

it("expiry during a statement whose COMMIT is already queued behind it: nothing commits", async () => {
  const { uri } = await grant("1h");
  const session = psql(
    uri,
    "BEGIN;\nUPDATE orders SET status = 'lost' WHERE id = 2 AND pg_sleep(60) IS NOT NULL;\nCOMMIT;\n",
  );
  const pid = await backendOf("UPDATE orders SET status = 'lost'%", "active");
  clock.advance(2 * 3600_000);
  await session.exited;
  expect(session.output()).toContain("access grant expired");
  expect(await alive(pid)).toBe(false);
  expect((await admin.query("SELECT status FROM orders WHERE id = 2")).rows).toEqual([{ status: "open" }]);
});

it("shutdown ends a running statement's backend before the client is told", async () => {
  const { uri } = await grant();
  const session = psql(uri, "UPDATE orders SET status = 'at shutdown' WHERE id = 1 AND pg_sleep(60) IS NOT NULL;\n");
  const pid = await backendOf("UPDATE orders SET status = 'at shutdown'%", "active");
  await test.gateway.postgresProxy!.server.close(0);
  await session.exited;
  expect(session.output()).toContain("jitgate is shutting down");
  expect(await alive(pid)).toBe(false);
  expect((await admin.query("SELECT status FROM orders WHERE id = 1")).rows).toEqual([{ status: "open" }]);
});
