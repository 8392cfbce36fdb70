import { and, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/broker/index.js";
import { accessRequests, auditEvents, chatIdentities, grants } from "../src/db/schema.js";
import { createTestDatabase, dropRedisKeys, REDIS_URL } from "./support/databases.js";
import { buttonsOf, eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { psql, SlackDriver } from "./support/slack-driver.js";

// Issue 19, must 5: grants that start later (`from 22:00`, issued by a delayed job that survives a
// Redis loss) and grants that end with their first session (`--once`).

const SIGNING_SECRET = "6f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN = "xoxb-scheduled-token";
const APPROVALS = "C0APPROVALS";
// 19:00 in Berlin, 13:00 in New York.
const clock = new ManualClock(new Date("2026-12-02T18:00:00Z"));
let fake: FakeSlack;
let test: TestGateway;
let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let slack: SlackDriver;

beforeAll(async () => {
  fake = new FakeSlack(
    [
      { id: "U0DEV", email: "dev@example.com", realName: "Dev", tz: "Europe/Berlin" },
      { id: "U0NOTZ", email: "notz@example.com", realName: "Notz" },
      { id: "U0ONE", email: "one@example.com", realName: "One" },
      { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
    ],
    BOT_TOKEN,
  );
  await fake.start();
  upstream = await createTestDatabase("scheduled_up");
  const admin = new pg.Client({ connectionString: upstream.url });
  await admin.connect();
  await admin.query("CREATE TABLE orders (id int PRIMARY KEY, status text); INSERT INTO orders VALUES (1, 'open');");
  await admin.end();
  test = await startTestGateway(
    "scheduled",
    `
slack:
  botToken: \${SLACK_BOT_TOKEN}
  signingSecret: \${SLACK_SIGNING_SECRET}
  apiUrl: \${SLACK_API_URL}
  approvalChannel: ${APPROVALS}
defaults: { maxDuration: 8h, approvals: 1, requestTtl: 1h, timezone: America/New_York }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "db-gw.example.com:15432" }
targets:
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
`,
    { UPSTREAM_URL: upstream.url, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: fake.apiUrl },
    { clock },
  );
  slack = new SlackDriver(fake, SIGNING_SECRET, () => test.gateway.httpAddress.port);
});

afterAll(async () => {
  await test?.close();
  await fake?.stop();
  await upstream?.drop();
});

const db = () => test.gateway.storage.db;
const lastEphemeral = (user: string) => fake.ephemeralTexts(user).at(-1) ?? "";
const ephemeralCount = (user: string) => fake.ephemeralTexts(user).length;
const current = (message: FakeMessage) => fake.messages.get(`${message.channel}/${message.ts}`)!;
const statusOf = (message: FakeMessage) =>
  (current(message).blocks.find((b) => b.type === "context") as { elements?: { text: string }[] } | undefined)?.elements?.[0]?.text ?? "";
const proxyUri = (line: string) => line.replace("db-gw.example.com:15432", `127.0.0.1:${test.gateway.postgresProxy!.address.port}`);
const linesOf = (user: string) =>
  fake
    .rootsIn(`D${user}`)
    .map((m) => /postgres:\/\/\S+/.exec(messageText(m))?.[0].replace(/```$/, ""))
    .filter((line): line is string => line !== undefined);

/** What a failover to an empty Redis does to this gateway: every key under its prefix is gone. */
async function flushPrefix(): Promise<void> {
  await dropRedisKeys(test.prefix);
}

/** Sends a command and waits for its (next) ephemeral answer. */
async function command(user: string, text: string): Promise<string> {
  const before = ephemeralCount(user);
  await slack.slash(user, text);
  await eventually(() => ephemeralCount(user) > before, 10_000, `the answer to ${text}`);
  return lastEphemeral(user);
}

async function approve(reason: string): Promise<FakeMessage> {
  const root = await eventually(() => fake.rootsIn(APPROVALS).find((m) => messageText(m).includes(reason)), 10_000, `the request ${reason}`);
  await slack.click("U0LEAD", "jitgate_approve", buttonsOf(root).jitgate_approve!, root);
  return root;
}

/** A login with a made-up password: what psql gets from the proxy when there is no grant to log in with. */
const guessedUri = (login: string) => `postgresql://${encodeURIComponent(login)}:not-a-grant@127.0.0.1:${test.gateway.postgresProxy!.address.port}/orders-db`;

describe("scheduled grants", () => {
  it("are approved now and issued at the start (in the requester's time zone); the start job survives a Redis loss", async () => {
    const { gateway } = test;
    const answer = await command("U0DEV", "request orders-db 2h from 22:00 INC-1 nightly reindex");
    expect(answer).toContain("orders-db for 2h from 22:00 Europe/Berlin (needs 1 approval). You will get a direct message when the grant starts.");
    const [request] = await db().select().from(accessRequests).where(eq(accessRequests.reason, "INC-1 nightly reindex"));
    expect(request!.startsAt).toEqual(new Date("2026-12-02T21:00:00Z"));

    const root = await approve("INC-1 nightly reindex");
    await eventually(() => statusOf(root).startsWith("🗓 Scheduled: approved by Lead, access from"), 10_000, "the root shown scheduled");
    expect(statusOf(root)).toBe("🗓 Scheduled: approved by Lead, access from 21:00 UTC to 23:00 UTC");
    await eventually(() => fake.thread(root.channel, root.ts).some((m) => messageText(m).startsWith("🗓 Scheduled: the grant starts")), 10_000, "the thread note");
    expect(await command("U0DEV", "list")).toContain(`scheduled: orders-db from 22:00 Europe/Berlin for 2h, approved, request ${request!.id}`);

    // Approved, but no grant before the start: nothing to log in with, no line sent, psql refused.
    expect(await db().select().from(grants).where(eq(grants.requestId, request!.id))).toEqual([]);
    expect(linesOf("U0DEV")).toEqual([]);
    const before = await psql(guessedUri("dev@example.com"), "SELECT 1;\n");
    expect(before.code).not.toBe(0);
    expect(before.output).toContain('FATAL:  password authentication failed for user "dev@example.com"');

    // Its job, run early (Redis fires it, the clock says not yet), issues nothing and waits again.
    const queue = gateway.scheduler.grantStart;
    const job = await queue.getJob(request!.id);
    expect(await job!.getState()).toBe("delayed");
    await job!.promote();
    await eventually(async () => {
      const again = await queue.getJob(request!.id);
      return again?.processedOn !== undefined && (await again.getState()) === "delayed";
    }, 10_000, "the early run");
    expect(await db().select().from(grants).where(eq(grants.requestId, request!.id))).toEqual([]);

    // Redis loses everything; the reconciler restores the job from the database.
    await flushPrefix();
    expect(await queue.getJob(request!.id)).toBeUndefined();
    const report = await gateway.reconciler.reconcile();
    expect(report.grantStartJobsRestored).toBe(1);
    const restored = await queue.getJob(request!.id);
    expect(await restored!.getState()).toBe("delayed");

    // The start comes: the job issues the grant and the line arrives.
    clock.set(new Date("2026-12-02T21:00:01Z"));
    await restored!.promote();
    const line = await eventually(() => linesOf("U0DEV")[0], 15_000, "the connection line at the start");
    const [grant] = await db().select().from(grants).where(eq(grants.requestId, request!.id));
    expect(grant).toMatchObject({ state: "active", expiresAt: new Date("2026-12-02T23:00:00Z"), once: false });
    const issued = await db().select().from(auditEvents).where(and(eq(auditEvents.grantId, grant!.id), eq(auditEvents.kind, "grant.issued")));
    expect(issued[0]).toMatchObject({ actorId: null });
    expect(issued[0]!.data).toMatchObject({ scheduled: true });
    await eventually(() => statusOf(root).includes("expires 23:00 UTC"), 10_000, "the root shown live");

    // It works, and (not --once) keeps working after its first session.
    for (const round of [1, 2]) {
      const run = await psql(proxyUri(line), "SELECT status FROM orders WHERE id = 1;\n");
      expect({ round, code: run.code, output: run.output.trim() }).toEqual({ round, code: 0, output: "open" });
    }
    expect((await db().select().from(grants).where(eq(grants.id, grant!.id)))[0]!.state).toBe("active");
  });

  it("takes an ISO date-time in the configured default zone when Slack gives none, and refuses a start that is past or unreadable", async () => {
    // 13:00 in New York (the configured default) when this runs; Notz has no tz on Slack.
    clock.set(new Date("2026-12-02T18:00:00Z"));
    expect(await command("U0NOTZ", "request orders-db 1h from 2026-12-03T09:00 INC-5 batch")).toContain("from 2026-12-03 09:00 America/New_York");
    const [request] = await db().select().from(accessRequests).where(eq(accessRequests.reason, "INC-5 batch"));
    expect(request!.startsAt).toEqual(new Date("2026-12-03T14:00:00Z"));
    expect(await command("U0NOTZ", "request orders-db 1h from 2026-12-03T09:00Z INC-6 batch")).toContain("from 2026-12-03 04:00 America/New_York");

    const refusals: [string, RegExp][] = [
      ["request orders-db 1h from 12:00 INC-7 x", /12:00 today \(America\/New_York\) has already passed; give the day too, like from 2026-12-03T12:00/],
      ["request orders-db 1h from 2026-12-01T10:00Z INC-8 x", /has already passed/],
      ["request orders-db 1h from 25:99 INC-9 x", /"25:99" is not a start time/],
      ["request orders-db 1h from tomorrow INC-10 x", /"tomorrow" is not a start time/],
      ["request orders-db 1h from 2026-13-40T10:00 INC-11 x", /is not a valid date-time/],
      ["request orders-db 1h from", /^Usage: \/access request/],
    ];
    for (const [text, expected] of refusals) expect({ text, answer: await command("U0NOTZ", text) }).toEqual({ text, answer: expect.stringMatching(expected) });
    const [notz] = await db().select().from(chatIdentities).where(eq(chatIdentities.externalId, "U0NOTZ"));
    const rows = await db().select().from(accessRequests).where(eq(accessRequests.requesterId, notz!.personId));
    expect(rows.map((r) => r.reason).sort()).toEqual(["INC-5 batch", "INC-6 batch"]);
  });
});

describe("--once grants", () => {
  it("work for the first session and end when it closes; a second psql is refused", async () => {
    expect(await command("U0ONE", "request orders-db 1h --once INC-3 one look")).toContain("ending with your first session");
    await approve("INC-3 one look");
    const line = await eventually(() => linesOf("U0ONE")[0], 10_000, "the connection line");
    const [request] = await db().select().from(accessRequests).where(eq(accessRequests.reason, "INC-3 one look"));
    expect(request!.once).toBe(true);
    const [grant] = await db().select().from(grants).where(eq(grants.requestId, request!.id));
    expect(grant).toMatchObject({ once: true, state: "active" });

    const first = await psql(proxyUri(line), "SELECT status FROM orders WHERE id = 1;\n");
    expect({ code: first.code, output: first.output.trim() }).toEqual({ code: 0, output: "open" });
    await eventually(async () => (await db().select().from(grants).where(eq(grants.id, grant!.id)))[0]?.state === "expired", 10_000, "the grant ended");
    const [ended] = await db().select().from(auditEvents).where(and(eq(auditEvents.grantId, grant!.id), eq(auditEvents.kind, "grant.ended")));
    expect(ended!.data).toMatchObject({ why: "once" });
    expect(ended!.sessionId).toMatch(/^ses_/);

    const second = await psql(proxyUri(line), "SELECT status FROM orders WHERE id = 1;\n");
    expect(second.code).not.toBe(0);
    expect(second.output).not.toContain("open");
    expect(second.output).toContain('FATAL:  password authentication failed for user "one@example.com"');
  });
});
