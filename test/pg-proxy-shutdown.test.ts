import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { WIDE_LATENESS_MS } from "./support/jobs.js";

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let test: TestGateway;

beforeAll(async () => {
  upstream = await createTestDatabase("shutdown_up");
  test = await startTestGateway(
    "shutdown",
    `
proxy:
  postgres: { listen: 127.0.0.1:0 }
targets:
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
`,
    { UPSTREAM_URL: upstream.url },
  );
});

afterAll(async () => {
  await test?.close();
  await upstream?.drop();
});

it("shutdown stops accepting, then ends live sessions with 57P01 and closes", async () => {
  const { broker } = test.gateway;
  const dev = await broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com" });
  const lead = await broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com" });
  const request = await broker.request(dev, { target: "orders-db", duration: "1h", reason: "look" });
  const { connection } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const port = test.gateway.postgresProxy!.address.port;
  const uri = connection!.line.replace(/@[^/]+\//, `@127.0.0.1:${port}/`);
  const client = new pg.Client({ connectionString: uri });
  const errors: { code?: string; message: string }[] = [];
  client.on("error", (error) => errors.push(error as never));
  await client.connect();
  expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);

  const server = test.gateway.postgresProxy!.server;
  const started = Date.now();
  await server.close(200);
  // Wide: close must not wait for the idle client to leave on its own (it never would).
  expect(Date.now() - started).toBeLessThan(WIDE_LATENESS_MS);
  expect(server.connections).toBe(0);
  // The 57P01 first; pg then reports the closed socket too.
  expect(errors[0]).toMatchObject({ code: "57P01", message: "jitgate is shutting down" });
  // Nothing listens any more: the connection is refused, not left waiting or answered.
  const late = new pg.Client({ connectionString: uri, connectionTimeoutMillis: 10_000 });
  await expect(late.connect()).rejects.toMatchObject({ code: "ECONNREFUSED" });
});
