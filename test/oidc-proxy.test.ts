import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { and, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Person } from "../src/broker/index.js";
import { runCommand } from "../src/bot/commands.js";
import { viewToPlainText } from "../src/bot/view-model.js";
import { sessions } from "../src/db/schema.js";
import { createTestDatabase } from "./support/databases.js";
import { startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";

const run = promisify(execFile);

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let provider: TestProvider;
let foreign: TestProvider;
let test: Awaited<ReturnType<typeof startOidcGateway>>;
let dev: Person, lead: Person;
let port: number;

const accounts = [
  { sub: "sub-dev", email: "dev@example.com", name: "Dev Eloper" },
  { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
  { sub: "sub-other", email: "other@example.com", name: "Other" },
];

/** psql as a person would run it: user oidc, the ID token in PGPASSWORD, never in the URI. */
async function psqlWithToken(token: string, sql: string, database = "orders-db") {
  try {
    const { stdout, stderr } = await run(
      "psql",
      [`host=127.0.0.1 port=${port} user=oidc dbname=${database} sslmode=disable`, "-X", "-A", "-t", "-c", sql],
      { env: { ...process.env, PGPASSWORD: token, PGCONNECT_TIMEOUT: "5" }, timeout: 30_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function grant(who: Person, target = "orders-db") {
  const { broker } = test.gateway;
  const request = await broker.request(who, { target, duration: "1h", reason: "INC-7 look at orders" });
  return (await broker.decide(lead, { requestId: request.id, verdict: "approve" })).grant!;
}

beforeAll(async () => {
  upstream = await createTestDatabase("oidc_proxy_upstream");
  const seed = new pg.Client({ connectionString: upstream.url });
  await seed.connect();
  await seed.query(`CREATE TABLE orders (id int PRIMARY KEY, email text); INSERT INTO orders VALUES (1, 'ann@example.com'), (2, 'bob@example.com');`);
  await seed.end();
  provider = await startTestProvider([...accounts, { sub: "sub-unverified", email: "unverified@example.com", emailVerified: false, name: "Unverified" }]);
  foreign = await startTestProvider(accounts);
  test = await startOidcGateway(
    "oidc_proxy",
    provider.issuer,
    `
proxy:
  postgres: { listen: 127.0.0.1:0 }
targets:
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    mask: [{ column: email }]
`,
    { UPSTREAM_URL: upstream.url },
  );
  port = test.gateway.postgresProxy!.address.port;
  dev = await test.gateway.broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
}, 60_000);

afterAll(async () => {
  await test?.close();
  await provider?.close();
  await foreign?.close();
  await upstream?.drop();
});

describe("PostgreSQL proxy with an ID token", () => {
  it("admits psql as user oidc with a fresh ID token of a person holding a live grant, masked and recorded as usual", async () => {
    const issued = await grant(dev);
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, name: "Dev Eloper" });
    const result = await psqlWithToken(token, "SELECT id, email FROM orders ORDER BY id");
    expect(result.stderr).toBe("");
    expect(result.stdout.trim().split("\n")).toEqual(["1|***", "2|***"]);
    const recorded = await test.gateway.broker.db.select().from(sessions).where(and(eq(sessions.grantId, issued.id), eq(sessions.personId, dev.id)));
    expect(recorded).toHaveLength(1);
    expect(recorded[0]!.protocol).toBe("postgres");
  });

  it("links the OIDC subject to the Slack person with the same verified email; whoami shows both", async () => {
    const identities = await test.gateway.broker.identitiesOf(dev);
    expect(identities.map((i) => `${i.platform}:${i.externalId}`)).toEqual(["oidc:sub-dev", "slack:U0DEV"]);
    const { view } = await runCommand({ broker: test.gateway.broker, person: dev, command: "/access", origin: "slack" }, "whoami");
    const text = viewToPlainText(view);
    expect(text).toContain("You are Dev <dev@example.com>");
    expect(text).toContain("Slack: U0DEV");
    expect(text).toContain("OIDC: sub-dev (dev@example.com)");
  });

  it("refuses a token for another audience", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, aud: "another-app" });
    const result = await psqlWithToken(token, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("the ID token is not for this gateway (audience must be jitgate)");
  });

  it("refuses a token from another issuer, and one claiming our issuer but signed by another provider", async () => {
    const other = await foreign.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true });
    const result = await psqlWithToken(other, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`the ID token was not issued by ${provider.issuer}`);
    const forged = await foreign.sign({ iss: provider.issuer, sub: "sub-dev", email: "dev@example.com", email_verified: true });
    const second = await psqlWithToken(forged, "SELECT 1");
    expect(second.code).not.toBe(0);
    expect(second.stderr).toContain("the ID token's signature does not verify with the provider's keys");
  });

  it("refuses an expired token", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true }, { issuedAgoSeconds: 3600, expiresInSeconds: 600 });
    const result = await psqlWithToken(token, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("the ID token has expired; get a fresh one with: jitgate login");
  });

  it("refuses the token of a person without a live grant on the target, naming how to request one", async () => {
    const token = await provider.sign({ sub: "sub-other", email: "other@example.com", email_verified: true });
    const result = await psqlWithToken(token, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('no live access grant for "other@example.com" on orders-db');
    expect(result.stderr).toContain("request one with: /access request orders-db <duration> <reason>");
  });

  it("refuses a token whose email the provider has not verified, and garbage", async () => {
    const token = await provider.sign({ sub: "sub-unverified", email: "unverified@example.com", email_verified: false });
    const result = await psqlWithToken(token, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("the provider has not verified the email unverified@example.com");
    const garbage = await psqlWithToken("not-a-token", "SELECT 1");
    expect(garbage.stderr).toContain("the ID token is not a well-formed signed JWT");
  });

  it("answers the refusal with SQLSTATE 28000 (node-postgres sees the code)", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, aud: "another-app" });
    const client = new pg.Client({ host: "127.0.0.1", port, user: "oidc", database: "orders-db", password: token });
    await expect(client.connect()).rejects.toMatchObject({ code: "28000" });
  });
});
