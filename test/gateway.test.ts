import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TeamsCloudOptions } from "../src/bot/teams/teams-app.js";
import { parseConfig } from "../src/config/load.js";
import { startGateway, startupBanner, type Gateway } from "../src/main.js";
import { createTestDatabase, dropRedisKeys, REDIS_URL, testPrefix } from "./support/databases.js";
import { FakeBotConnector, FakeTokenCredentialsFactory, TEAMS_ISSUER } from "./support/fake-bot-connector.js";
import { eventually, FakeSlack, messageText } from "./support/fake-slack.js";
import { capturedLogger } from "./support/logs.js";

const { logger, lines: logLines } = capturedLogger("info");

let database: Awaited<ReturnType<typeof createTestDatabase>>;
let gateway: Gateway;
const prefix = testPrefix("gateway");
const base = () => `http://127.0.0.1:${gateway.httpAddress.port}`;

beforeAll(async () => {
  database = await createTestDatabase("gateway");
  const config = parseConfig(
    `
database: \${DATABASE_URL}
redis: \${REDIS_URL}
redisPrefix: ${prefix}
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/orders
    approvers: [lead@example.com]
`,
    "gateway test",
    { DATABASE_URL: database.url, REDIS_URL },
  );
  gateway = await startGateway({ config, logger, httpListen: "127.0.0.1:0" });
});

afterAll(async () => {
  await gateway?.close();
  await dropRedisKeys(prefix);
  await database?.drop();
});

describe("the gateway", () => {
  it("answers /healthz, /readyz and /metrics", async () => {
    expect(await (await fetch(`${base()}/healthz`)).json()).toEqual({ status: "ok" });
    const ready = await fetch(`${base()}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready", checks: { database: "ok", redis: "ok" } });

    const dev = await gateway.broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com" });
    const lead = await gateway.broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com" });
    const pending = await gateway.broker.request(dev, { target: "orders-db", duration: "1h", reason: "pending one" });
    const other = await gateway.broker.identify({ platform: "slack", externalId: "U3", email: "other@example.com" });
    const approved = await gateway.broker.request(other, { target: "orders-db", duration: "1h", reason: "approved one" });
    await gateway.broker.decide(lead, { requestId: approved.id, verdict: "approve" });
    expect(pending.state).toBe("pending");

    const metrics = await (await fetch(`${base()}/metrics`)).text();
    expect(metrics).toMatch(/^jitgate_requests\{state="pending"\} 1$/m);
    expect(metrics).toMatch(/^jitgate_requests\{state="approved"\} 1$/m);
    expect(metrics).toMatch(/^jitgate_live_grants 1$/m);
    expect(metrics).toMatch(/^jitgate_live_sessions 0$/m);
    expect(metrics).toMatch(/^jitgate_queue_jobs\{queue="grant-expiry",state="delayed"\} 1$/m);
    expect(metrics).toMatch(/^jitgate_queue_lag_seconds\{queue="grant-expiry"\} 0$/m);
    expect(await (await fetch(`${base()}/nope`)).json()).toEqual({ error: "not found" });
    expect((await fetch(`${base()}/healthz`, { method: "POST" })).status).toBe(405);
  });

  it("the banner says what listens where and what is not configured", () => {
    const banner = startupBanner(gateway, "gateway test");
    expect(banner).toContain(`http://127.0.0.1:${gateway.httpAddress.port}`);
    expect(banner).toContain("PostgreSQL postgres://postgres@127.0.0.1:5432/");
    expect(banner).toContain("orders-db (postgres)");
    expect(banner).toContain("no chat platform (slack: or teams:) is configured");
  });

});

describe("a gateway with real secrets in its configuration", () => {
  // Random, so a match in the log can only come from this configuration.
  const secret = (label: string) => `${label}-${randomBytes(12).toString("hex")}`;
  const secrets = {
    slackBotToken: secret("xoxb"),
    slackSigningSecret: secret("signing"),
    teamsAppPassword: secret("teams-password"),
    upstreamPassword: secret("upstream-password"),
    oidcClientSecret: secret("oidc-client-secret"),
    // The test servers trust 127.0.0.1 and have no Redis password: these are sent and ignored.
    databasePassword: secret("database-password"),
    redisPassword: secret("redis-password"),
    sealKey: randomBytes(32).toString("base64"),
  };
  const APP_ID = "00000000-0000-4000-8000-0000000000aa";
  const { logger: debugLogger, lines: debugLines } = capturedLogger("debug");
  const secretsPrefix = testPrefix("gateway-secrets");
  let slack: FakeSlack;
  let teams: FakeBotConnector;
  let secretsDatabase: Awaited<ReturnType<typeof createTestDatabase>>;
  let withSecrets: Gateway;

  beforeAll(async () => {
    slack = new FakeSlack(
      [
        { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
        { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
      ],
      secrets.slackBotToken,
    );
    await slack.start();
    teams = new FakeBotConnector([{ id: "29:dev", name: "Dev", email: "dev@example.com" }], APP_ID, secrets.teamsAppPassword, "tenant-gateway");
    await teams.start();
    secretsDatabase = await createTestDatabase("gateway_secrets");
    const config = parseConfig(
      `
database: \${DATABASE_URL}
redis: \${REDIS_URL}
redisPrefix: ${secretsPrefix}
slack:
  botToken: \${SLACK_BOT_TOKEN}
  signingSecret: \${SLACK_SIGNING_SECRET}
  apiUrl: \${SLACK_API_URL}
  approvalChannel: C0APPROVALS
teams:
  appId: ${APP_ID}
  appPassword: \${TEAMS_APP_PASSWORD}
  tenantId: tenant-gateway
  serviceUrl: \${TEAMS_SERVICE_URL}
  approvalConversation: "19:approvals@thread.tacv2"
oidc:
  # Nothing answers here: the failed discovery is logged, with the client's secret in the config.
  issuer: http://127.0.0.1:1/
  clientId: jitgate
  clientSecret: \${OIDC_CLIENT_SECRET}
  redirectUrl: http://127.0.0.1:1/oidc/callback
audit:
  sealKey:
    id: k1
    key: \${JITGATE_SEAL_KEY}
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "localhost:15432" }
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw:\${UPSTREAM_PASSWORD}@127.0.0.1:5432/orders
    approvers: [lead@example.com]
`,
      "secrets test",
      {
        DATABASE_URL: secretsDatabase.url.replace("postgres://postgres@", `postgres://postgres:${secrets.databasePassword}@`),
        REDIS_URL: REDIS_URL.replace("redis://", `redis://:${secrets.redisPassword}@`),
        SLACK_BOT_TOKEN: secrets.slackBotToken,
        SLACK_SIGNING_SECRET: secrets.slackSigningSecret,
        SLACK_API_URL: slack.apiUrl,
        TEAMS_APP_PASSWORD: secrets.teamsAppPassword,
        TEAMS_SERVICE_URL: teams.serviceUrl,
        OIDC_CLIENT_SECRET: secrets.oidcClientSecret,
        UPSTREAM_PASSWORD: secrets.upstreamPassword,
        JITGATE_SEAL_KEY: secrets.sealKey,
      },
    );
    const teamsCloud: TeamsCloudOptions = {
      openIdMetadataUrl: teams.openIdMetadataUrl,
      tokenIssuer: TEAMS_ISSUER,
      credentialsFactory: new FakeTokenCredentialsFactory(
        `${teams.url}/oauth2/v2.0/token`,
        APP_ID,
        secrets.teamsAppPassword,
      ) as unknown as TeamsCloudOptions["credentialsFactory"],
    };
    withSecrets = await startGateway({ config, logger: debugLogger, httpListen: "127.0.0.1:0", postgresListen: "127.0.0.1:0", teamsCloud });
  });

  afterAll(async () => {
    await withSecrets?.close();
    await slack?.stop();
    await teams?.stop();
    await dropRedisKeys(secretsPrefix);
    await secretsDatabase?.drop();
  });

  /** A form post as Slack sends it (slash command or interaction), signed with the configured secret. */
  async function postToSlackEndpoint(body: string): Promise<void> {
    const timestamp = Math.floor(Date.now() / 1000);
    const signature = `v0=${createHmac("sha256", secrets.slackSigningSecret).update(`v0:${timestamp}:${body}`).digest("hex")}`;
    const response = await fetch(`http://127.0.0.1:${withSecrets.httpAddress.port}/slack/events`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": String(timestamp), "x-slack-signature": signature },
      body,
    });
    expect(response.status).toBe(200);
    await response.text();
  }

  it("never logs them, nor a grant's connection line, even at debug level", async () => {
    // A request through Slack, approved with the button, its connection line sent by DM: the paths
    // that handle secrets.
    const team = { team_id: "T0TEAM", channel_id: "C0GENERAL" };
    await postToSlackEndpoint(
      new URLSearchParams({ ...team, command: "/access", text: "request orders-db 1h INC-1 secrets", user_id: "U0DEV", response_url: slack.responseUrl("U0DEV") }).toString(),
    );
    const answer = await eventually(() => slack.ephemeralTexts("U0DEV").find((t) => /Request req_\w+ sent/.test(t)), 10_000, "the request's answer");
    const requestId = /Request (req_\w+)/.exec(answer)![1]!;
    const root = await eventually(() => slack.rootsIn("C0APPROVALS").find((m) => messageText(m).includes(requestId)), 10_000, "the approval message");
    const click = {
      type: "block_actions",
      user: { id: "U0LEAD", username: "lead", name: "lead", team_id: "T0TEAM" },
      team: { id: "T0TEAM", domain: "acme" },
      container: { type: "message", message_ts: root.ts, channel_id: root.channel, is_ephemeral: false },
      channel: { id: root.channel, name: "approvals" },
      message: { type: "message", ts: root.ts, text: root.text, blocks: root.blocks },
      response_url: slack.responseUrl("U0LEAD"),
      trigger_id: "trigger-1",
      actions: [{ type: "button", action_id: "jitgate_approve", block_id: "jitgate_actions", value: requestId, action_ts: `${Date.now() / 1000}` }],
    };
    await postToSlackEndpoint(`payload=${encodeURIComponent(JSON.stringify(click))}`);
    const dm = await eventually(() => slack.rootsIn("DU0DEV").find((m) => messageText(m).includes("postgres://")), 10_000, "the DM with the line");
    const line = /postgres:\/\/\S+/.exec(messageText(dm))![0].replace(/```$/, "");
    const lineSecret = /:([\w-]+)@/.exec(line.slice("postgres://".length))![1]!;
    // A request Slack did not sign, which the receiver logs and refuses.
    const forged = await fetch(`http://127.0.0.1:${withSecrets.httpAddress.port}/slack/events`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": "1", "x-slack-signature": "v0=00" },
      body: "command=%2Faccess&text=help",
    });
    expect(forged.status).toBe(401);
    // A careless log call with the whole configuration and a connection line in it.
    debugLogger.info({ config: withSecrets.config, connection: { line } }, "probe");

    const text = debugLines.join("");
    // The log holds what happened: the failed OIDC discovery and the probe.
    expect(text).toContain("the OIDC provider did not answer discovery");
    expect(text).toContain('"msg":"probe"');
    const banner = startupBanner(withSecrets, "secrets test");
    expect(banner).toContain("originals of masked values sealed under key k1");
    for (const [name, value] of Object.entries(secrets)) expect(banner.includes(value), `${name} is in the banner`).toBe(false);
    for (const [name, value] of Object.entries({ ...secrets, lineSecret })) {
      expect(text.includes(value), `${name} is in the log`).toBe(false);
    }
  });
});

describe("with no Redis configured and none on the local port", () => {
  it("starts a private redis-server on a unix socket, reports unready when it dies, and closes twice cleanly", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "jitgate-embedded-"));
    const local = await startGateway({
      config: parseConfig(`dataDir: ${dataDir}\nredisPrefix: ${prefix}-embedded`, "embedded test", {}),
      logger,
      httpListen: "127.0.0.1:0",
      // Nothing listens on port 1: as on a machine without Redis.
      localRedisUrl: "redis://127.0.0.1:1",
    });
    try {
      expect(local.storage.kind).toBe("pglite");
      expect(local.redis.source).toBe("embedded");
      expect(local.redis.url).toBe(`unix://${join(dataDir, "redis", "redis.sock")}`);
      const url = `http://127.0.0.1:${local.httpAddress.port}/readyz`;
      expect((await fetch(url)).status).toBe(200);

      await local.redis.stop();
      const unready = await fetch(url);
      expect(unready.status).toBe(503);
      const body = (await unready.json()) as { checks: Record<string, string> };
      expect(body.checks.database).toBe("ok");
      expect(body.checks.redis).toMatch(/^unreachable/);
      // With Redis gone, shutdown still finishes, and a second close is a no-op.
      await expect(local.close()).resolves.toBeUndefined();
      await expect(local.close()).resolves.toBeUndefined();
    } finally {
      await local.close().catch(() => {});
      rmSync(dataDir, { recursive: true, force: true });
    }
    // PGlite's initdb and our migrations run in WASM on this thread: ~8 s of CPU on a busy 2-core
    // machine, several times that while the rest of the suite runs beside it.
  }, 120_000);
});
