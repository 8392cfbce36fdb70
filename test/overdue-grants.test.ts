import pg from "pg";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock, SessionBroker, type BrokerEvents, type Grant } from "../src/broker/index.js";
import { parseConfig } from "../src/config/load.js";
import { accessRequests, auditEvents, grants } from "../src/db/schema.js";
import { startGateway, type Gateway } from "../src/main.js";
import { createTestDatabase, dropRedisKeys, REDIS_URL, testPrefix } from "./support/databases.js";
import { eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";
import { nextEvent } from "./support/jobs.js";
import { capturedLogger } from "./support/logs.js";
import { slackRequests } from "./support/slack-requests.js";

// Issue 20: a grant whose expiry job was lost (Redis emptied) is over at its end all the same. The
// clock is a ManualClock: "the end passes" is one `advance`, and lateness is exact.

const SIGNING_SECRET = "0f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN = "xoxb-overdue-token";
const CHANNEL = "C0OVERDUE";
const GRANT_MS = 30_000;

const { logger } = capturedLogger("info");
const clock = new ManualClock();
const prefix = testPrefix("overdue");
let fake: FakeSlack;
let gateway: Gateway;
let database: Awaited<ReturnType<typeof createTestDatabase>>;

beforeAll(async () => {
  fake = new FakeSlack(
    [
      { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
      { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
    ],
    BOT_TOKEN,
  );
  await fake.start();
  database = await createTestDatabase("overdue");
  const config = parseConfig(
    `
database: \${DATABASE_URL}
redis: \${REDIS_URL}
redisPrefix: ${prefix}
slack:
  botToken: \${SLACK_BOT_TOKEN}
  signingSecret: \${SLACK_SIGNING_SECRET}
  apiUrl: \${SLACK_API_URL}
  approvalChannel: ${CHANNEL}
defaults: { maxDuration: 8h, approvals: 1, requestTtl: 1h }
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/orders
    approvers: [lead@example.com]
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "localhost:15432" }
`,
    "overdue test",
    { DATABASE_URL: database.url, REDIS_URL, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: fake.apiUrl },
  );
  // The reconciler would also find the overdue grant; its round is an hour away here, so whatever
  // expires the grant below is what the test names.
  gateway = await startGateway({ config, logger, clock, reconcileIntervalMs: 3_600_000, httpListen: "127.0.0.1:0", postgresListen: "127.0.0.1:0" });
});

afterAll(async () => {
  await gateway?.close();
  await fake?.stop();
  await flushPrefix();
  await database?.drop();
});

/** What a failover to an empty replica does to this gateway: every key under its prefix is gone. */
async function flushPrefix(): Promise<void> {
  await dropRedisKeys(prefix);
}

// ------------------------------------------------------------------ Slack as it calls the gateway

const { slash, click } = slackRequests({ fake: () => fake, endpoint: () => `http://127.0.0.1:${gateway.httpAddress.port}/slack/events`, signingSecret: SIGNING_SECRET });



const statusOf = (message: FakeMessage) =>
  (message.blocks.find((b) => b.type === "context") as { elements?: { text: string }[] } | undefined)?.elements?.[0]?.text ?? "";
const current = (message: FakeMessage) => fake.messages.get(`${message.channel}/${message.ts}`)!;
const threadTexts = (root: FakeMessage) => fake.thread(root.channel, root.ts).map((m) => messageText(m));
const connectionDms = () => fake.rootsIn("DU0DEV").filter((m) => /postgres:\/\/\S+/.test(messageText(m)));

/** Dev asks for orders-db, Lead approves; resolves once the DM with the connection line is there. */
async function requestAndApprove(reason: string): Promise<{ root: FakeMessage; grant: Grant; line: string }> {
  const dmsBefore = connectionDms().length;
  await slash("U0DEV", `request orders-db ${GRANT_MS / 1000}s ${reason}`);
  const root = await eventually(() => fake.rootsIn(CHANNEL).find((m) => messageText(m).includes(reason)), 10_000, `the approval message for ${reason}`);
  await click("U0LEAD", "jitgate_approve", /req_\w+/.exec(messageText(root))![0], root);
  const dm = await eventually(() => connectionDms()[dmsBefore], 10_000, `the connection DM for ${reason}`);
  const line = /postgres:\/\/\S+/.exec(messageText(dm))![0].replace(/```$/, "");
  const requestId = /req_\w+/.exec(messageText(root))![0];
  const grant = await gateway.broker.getGrant((await gateway.broker.getRequest(requestId)).grantId!);
  // Everything about this grant has been drawn before Redis loses its data.
  await eventually(() => fake.thread(CHANNEL, root.ts).some((m) => messageText(m).includes(grant.id)), 10_000, "the grant card");
  return { root, grant, line };
}

const expiredEvent = (grantId: string) =>
  nextEvent<BrokerEvents["grant.expired"]>((listener) => gateway.cluster.events.on("grant.expired", listener), ({ grant }) => grant.id === grantId);

async function expiryRecord(grantId: string) {
  const [row] = await gateway.storage.db.select().from(auditEvents).where(and(eq(auditEvents.grantId, grantId), eq(auditEvents.kind, "grant.expired")));
  return row;
}

describe("a grant whose expiry job was lost", () => {
  it("is expired by the holder's next request, which is approved at once and DMs its line; the old thread shows it expired", async () => {
    const first = await requestAndApprove("INC-1 first look");
    await flushPrefix();
    clock.advance(GRANT_MS + 1_500);
    // The row still says active: nothing ran at the end.
    expect((await gateway.broker.getGrant(first.grant.id)).state).toBe("active");
    // Every reader of live grants already agrees with the login check.
    const dev = (await gateway.broker.identify({ platform: "slack", externalId: "U0DEV" }))!;
    expect((await gateway.broker.list(dev)).grants).toEqual([]);
    const metricsBefore = await (await fetch(`http://127.0.0.1:${gateway.httpAddress.port}/metrics`)).text();
    expect(metricsBefore).toMatch(/^jitgate_live_grants 0$/m);

    const expired = expiredEvent(first.grant.id);
    const second = await requestAndApprove("INC-2 second look");
    expect(second.grant.state).toBe("active");
    expect(second.grant.id).not.toBe(first.grant.id);
    expect((await expired).payload.grant.state).toBe("expired");

    const record = await expiryRecord(first.grant.id);
    expect(record?.data).toMatchObject({ foundLate: true, foundBy: "request", lateMs: 1_500 });
    expect((await gateway.broker.getGrant(first.grant.id)).state).toBe("expired");

    // The first request's thread: the root, the expiry reply and the card without buttons.
    await eventually(() => statusOf(current(first.root)).startsWith("⌛ Expired at"), 10_000, "the first root shows expired");
    await eventually(() => threadTexts(first.root).some((t) => t.includes("Access expired at")), 10_000, "the expiry reply in the first thread");

    const metrics = await (await fetch(`http://127.0.0.1:${gateway.httpAddress.port}/metrics`)).text();
    expect(metrics).toMatch(/^jitgate_grants_found_overdue\{found_by="request"\} 1$/m);
    expect(metrics).toMatch(/^jitgate_grant_overdue_seconds_count 1$/m);
    expect(metrics).toMatch(/^jitgate_grant_overdue_seconds\{quantile="1"\} 1\.5$/m);
    expect(metrics).toMatch(/^jitgate_live_grants 1$/m);
  });

  it("is expired by a login refused for it, and the thread says so", async () => {
    const grant = (await gateway.broker.list((await gateway.broker.identify({ platform: "slack", externalId: "U0DEV" }))!)).grants[0]!;
    const root = fake.rootsIn(CHANNEL).find((m) => messageText(m).includes(grant.requestId))!;
    const dm = connectionDms().at(-1)!;
    const line = /postgres:\/\/\S+/.exec(messageText(dm))![0].replace(/```$/, "");
    await flushPrefix();
    clock.set(grant.expiresAt.getTime() + 250);

    const expired = expiredEvent(grant.id);
    const client = new pg.Client({ connectionString: line.replace("localhost:15432", `127.0.0.1:${gateway.postgresProxy!.address.port}`) });
    client.on("error", () => {});
    // Every refused login gets the one answer (no help to someone guessing); the effect is the expiry.
    await expect(client.connect()).rejects.toThrow('password authentication failed for user "dev@example.com"');
    await expired;

    expect((await expiryRecord(grant.id))?.data).toMatchObject({ foundLate: true, foundBy: "login", lateMs: 250 });
    await eventually(() => statusOf(current(root)).startsWith("⌛ Expired at"), 10_000, "the root shows expired");
    await eventually(() => threadTexts(root).some((t) => t.includes("Access expired at")), 10_000, "the expiry reply");
  });

  it("is expired when a session ends on its grant timer, and revoke or extend treat it as ended", async () => {
    const dev = (await gateway.broker.identify({ platform: "slack", externalId: "U0DEV" }))!;
    const lead = (await gateway.broker.identify({ platform: "slack", externalId: "U0LEAD" }))!;
    const sessions = new SessionBroker(gateway.broker);
    const issue = async (reason: string) => {
      const request = await gateway.broker.request(dev, { target: "orders-db", duration: GRANT_MS, reason });
      const { grant } = await gateway.broker.decide(lead, { requestId: request.id, verdict: "approve" });
      return grant!;
    };
    const summary = { durationMs: GRANT_MS, statementsByKind: {}, rowsReturned: 0, rowsAffected: 0, valuesMasked: 0, blocked: 0, held: 0, approved: 0, bytesIn: 0, bytesOut: 0, recordingId: "" };

    // The proxy's timer ended the session at the grant's end; the expiry job is gone.
    const timed = await issue("INC-3 session");
    const { session } = await sessions.open({ grantId: timed.id, protocol: "postgres", clientAddress: null });
    await flushPrefix();
    clock.set(timed.expiresAt.getTime() + 40);
    const expired = expiredEvent(timed.id);
    await sessions.close(session.id, { ...summary, endReason: "expired" });
    await expired;
    expect((await expiryRecord(timed.id))?.data).toMatchObject({ foundLate: true, foundBy: "session-end", lateMs: 40 });

    // A request that got in while its holder's grant was overdue and not yet expired (the expiry at
    // request time failed; here the row is written directly): the approval's transaction expires
    // the old grant before it inserts the new one, instead of failing on the one-live-grant index.
    const stale = await issue("INC-6 issue");
    clock.set(stale.expiresAt.getTime() + 30);
    const [pending] = await gateway.storage.db
      .insert(accessRequests)
      .values({
        id: "req_overdueissue",
        kind: "access",
        target: "orders-db",
        requesterId: dev.id,
        durationMs: GRANT_MS,
        reason: "INC-7 after the end",
        approvalsRequired: 1,
        origin: "api",
        createdAt: clock.now(),
        timeoutAt: new Date(clock.now().getTime() + 60_000),
      })
      .returning();
    const staleExpired = expiredEvent(stale.id);
    const decided = await gateway.broker.decide(lead, { requestId: pending!.id, verdict: "approve" });
    expect(decided.grant?.state).toBe("active");
    expect(decided.connection?.secret).toBeTruthy();
    await staleExpired;
    expect((await expiryRecord(stale.id))?.data).toMatchObject({ foundLate: true, foundBy: "issue", lateMs: 30 });
    clock.set(decided.grant!.expiresAt.getTime() + 1);
    expect((await gateway.broker.expire(decided.grant!.id)).kind).toBe("expired");

    // Revoking an overdue grant ends it as expired, not revoked.
    const revoked = await issue("INC-4 revoke");
    clock.set(revoked.expiresAt.getTime() + 10);
    await expect(gateway.broker.revoke(lead, { grantId: revoked.id, reason: "done" })).rejects.toMatchObject({ code: "broker_grant_not_active" });
    expect((await gateway.broker.getGrant(revoked.id)).state).toBe("expired");
    expect((await expiryRecord(revoked.id))?.data).toMatchObject({ foundLate: true, foundBy: "revoke", lateMs: 10 });

    // Extending one does not revive it.
    const extended = await issue("INC-5 extend");
    expect((await gateway.broker.checkCanExtend(dev, extended.id)).id).toBe(extended.id);
    clock.set(extended.expiresAt.getTime() + 20);
    await expect(gateway.broker.extend(lead, { grantId: extended.id, duration: "1m" })).rejects.toMatchObject({ code: "broker_grant_expired" });
    await expect(gateway.broker.checkCanExtend(dev, extended.id)).rejects.toMatchObject({ code: "broker_grant_not_active" });
    const [row] = await gateway.storage.db.select().from(grants).where(eq(grants.id, extended.id));
    expect(row).toMatchObject({ state: "expired", expiresAt: extended.expiresAt });
    expect((await expiryRecord(extended.id))?.data).toMatchObject({ foundLate: true, foundBy: "extend", lateMs: 20 });

    const metrics = await (await fetch(`http://127.0.0.1:${gateway.httpAddress.port}/metrics`)).text();
    for (const foundBy of ["request", "login", "session-end", "issue", "revoke", "extend"]) {
      expect(metrics).toMatch(new RegExp(`^jitgate_grants_found_overdue\\{found_by="${foundBy}"\\} 1$`, "m"));
    }
    // The grant expired by its own job (on time) is not counted.
    expect(metrics).toMatch(/^jitgate_grant_overdue_seconds_count 6$/m);
  });
});
