import { and, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { browse, startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";
import { ManualClock } from "../src/broker/index.js";
import { ConfigError, parseConfig } from "../src/config/load.js";
import { accessRequests, auditEvents, breakGlassReviews, chatIdentities, grants, stepUpChallenges } from "../src/db/schema.js";
import { createTestDatabase } from "./support/databases.js";
import { buttonsOf, eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { psql, SlackDriver } from "./support/slack-driver.js";

// Issue 19, must 4: break-glass. The grant comes at once, loudly, and a Review card stays open in
// the thread (reminded daily, listed in the digest) until an approver other than the user reviews it.

const SIGNING_SECRET = "5f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN = "xoxb-break-glass-token";
const APPROVALS = "C0APPROVALS";
const SECURITY = "C0SECURITY";
const DIGEST = "C0DIGEST";
const DAY = 24 * 3600_000;

const clock = new ManualClock(new Date());
let fake: FakeSlack;
let test: TestGateway;
let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let slack: SlackDriver;

beforeAll(async () => {
  fake = new FakeSlack(
    [
      { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
      { id: "U0ONCALL", email: "oncall@example.com", realName: "Oncall" },
      { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
      { id: "U0BOSS", email: "boss@example.com", realName: "Boss" },
      { id: "U0OTHER", email: "other@example.com", realName: "Other" },
    ],
    BOT_TOKEN,
  );
  await fake.start();
  upstream = await createTestDatabase("breakglass_up");
  const admin = new pg.Client({ connectionString: upstream.url });
  await admin.connect();
  await admin.query("CREATE TABLE orders (id int PRIMARY KEY, status text); INSERT INTO orders VALUES (1, 'open');");
  await admin.end();
  test = await startTestGateway(
    "breakglass",
    `
slack:
  botToken: \${SLACK_BOT_TOKEN}
  signingSecret: \${SLACK_SIGNING_SECRET}
  apiUrl: \${SLACK_API_URL}
  approvalChannel: ${APPROVALS}
  digestChannel: ${DIGEST}
defaults: { maxDuration: 8h, approvals: 1, requestTtl: 1h }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "db-gw.example.com:15432" }
targets:
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com, boss@example.com, slack:U0ONCALL]
    reasonPattern: "^INC-[0-9]+"
    breakGlass: { allow: [dev@example.com, slack:U0ONCALL], alertChannel: ${SECURITY} }
  - name: payments-db
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
const threadOf = (root: FakeMessage) => fake.thread(root.channel, root.ts);
const current = (message: FakeMessage) => fake.messages.get(`${message.channel}/${message.ts}`)!;
const localUri = (line: string) => line.replace("db-gw.example.com:15432", `127.0.0.1:${test.gateway.postgresProxy!.address.port}`);

async function personBySlackId(user: string) {
  const [identity] = await db().select().from(chatIdentities).where(and(eq(chatIdentities.platform, "slack"), eq(chatIdentities.externalId, user)));
  return { id: identity!.personId };
}

async function auditKinds(requestId: string): Promise<string[]> {
  const rows = await db().select({ kind: auditEvents.kind }).from(auditEvents).where(eq(auditEvents.requestId, requestId)).orderBy(auditEvents.seq);
  return rows.map((r) => r.kind);
}

/** `user` breaks the glass on orders-db; resolves with the root, the review card, the DM's line and the rows. */
async function breakGlass(user: string, reason: string) {
  const dm = `D${user}`;
  const dmsBefore = fake.rootsIn(dm).length;
  await slack.slash(user, `request orders-db 1h --break-glass ${reason}`);
  const root = await eventually(() => fake.rootsIn(APPROVALS).find((m) => messageText(m).includes(reason)), 10_000, `the loud message for ${reason}`);
  const card = await eventually(() => threadOf(root).find((m) => buttonsOf(m).jitgate_acknowledge_break_glass), 10_000, "the Review card");
  const line = await eventually(() => {
    const message = fake.rootsIn(dm).slice(dmsBefore).find((m) => /postgres:\/\/\S+/.test(messageText(m)));
    return message ? /postgres:\/\/\S+/.exec(messageText(message))![0].replace(/```$/, "") : undefined;
  }, 10_000, "the connection line DM");
  const [request] = await db().select().from(accessRequests).where(eq(accessRequests.reason, reason));
  const [review] = await db().select().from(breakGlassReviews).where(eq(breakGlassReviews.requestId, request!.id));
  return { root, card, line, request: request!, review: review! };
}

describe("break-glass", () => {
  it("issues the grant at once, without approval, and says so loudly in the approval channel and the alert channel", async () => {
    const { root, card, line, request, review } = await breakGlass("U0DEV", "INC-7 primary down");
    // Loud: the approval channel's message notifies the channel, and so does the security channel's.
    expect(root.text).toMatch(/^<!here> /);
    expect(messageText(root)).toContain("BREAK-GLASS: Dev took orders-db for 1h without approval");
    expect(buttonsOf(root)).toEqual({}); // nothing to approve
    const alert = await eventually(() => fake.rootsIn(SECURITY).find((m) => messageText(m).includes(review.id)), 10_000, "the alert");
    expect(alert.text).toMatch(/^<!here> /);
    expect(messageText(alert)).toContain("INC-7 primary down");
    expect(buttonsOf(card)).toEqual({ jitgate_acknowledge_break_glass: request.id, jitgate_flag_break_glass: request.id });
    expect(lastEphemeral("U0DEV")).toContain("Break-glass: grant grt_");

    // The rows: approved by nobody, a live grant, an open review, everything audited.
    expect(request).toMatchObject({ state: "approved", breakGlass: true });
    const [grant] = await db().select().from(grants).where(eq(grants.requestId, request.id));
    expect(grant).toMatchObject({ state: "active", id: request.grantId });
    expect(review).toMatchObject({ state: "open", grantId: grant!.id, reviewerId: null });
    expect(await auditKinds(request.id)).toEqual(["request.created", "grant.issued", "break_glass.used"]);

    // The line works at the proxy, now.
    const run = await psql(localUri(line), "SELECT status FROM orders WHERE id = 1;\n");
    expect(run).toMatchObject({ code: 0 });
    expect(run.output.trim()).toBe("open");
  });

  it("refuses someone the target does not allow, and a target without break-glass; nothing is issued, the refusal is audited", async () => {
    const alertsBefore = fake.rootsIn(SECURITY).length;
    await slack.slash("U0OTHER", "request orders-db 1h --break-glass INC-8 let me in");
    await eventually(() => lastEphemeral("U0OTHER").includes("not on its breakGlass.allow list"), 10_000, "the refusal");
    expect(lastEphemeral("U0OTHER")).toContain("You may not break the glass on orders-db: you are not on its breakGlass.allow list; ask for access normally");
    await slack.slash("U0DEV", "request payments-db 1h --break-glass INC-9 also down");
    await eventually(() => lastEphemeral("U0DEV").includes("There is no break-glass access on payments-db"), 10_000, "the refusal");
    // Break-glass does not skip the target's other rules either: the reason pattern.
    await slack.slash("U0ONCALL", "request orders-db 1h --break-glass no ticket");
    await eventually(() => lastEphemeral("U0ONCALL").includes("must match ^INC-[0-9]+"), 10_000, "the refusal");
    // Nor does it start later.
    await slack.slash("U0ONCALL", "request orders-db 1h from 23:59 --break-glass INC-10 later");
    await eventually(() => lastEphemeral("U0ONCALL").includes("cannot start later"), 10_000, "the refusal");

    const other = await personBySlackId("U0OTHER");
    expect(await db().select().from(accessRequests).where(eq(accessRequests.requesterId, other.id))).toEqual([]);
    expect(await db().select().from(grants).where(eq(grants.personId, other.id))).toEqual([]);
    const refused = await db().select().from(auditEvents).where(eq(auditEvents.kind, "break_glass.refused"));
    expect(refused.map((r) => [r.target, r.actorId])).toEqual(
      expect.arrayContaining([
        ["orders-db", other.id],
        ["payments-db", expect.stringMatching(/^usr_/)],
      ]),
    );
    expect(fake.rootsIn(SECURITY)).toHaveLength(alertsBefore);
  });

  it("the Review card's buttons work for an approver of the target only, never for the person who broke the glass", async () => {
    const { root, card, review } = await breakGlass("U0ONCALL", "INC-11 disk full");
    const requestId = buttonsOf(card).jitgate_acknowledge_break_glass!;

    // Oncall is an approver of orders-db, but this is their own use.
    await slack.click("U0ONCALL", "jitgate_acknowledge_break_glass", requestId, card);
    await eventually(() => lastEphemeral("U0ONCALL").includes("cannot review your own break-glass use"), 10_000, "the refusal");
    // Other is no approver; a forged click with the value of another action is refused the same way.
    await slack.click("U0OTHER", "jitgate_flag_break_glass", requestId, card);
    await eventually(() => /not an approver/i.test(lastEphemeral("U0OTHER")), 10_000, "the refusal");
    const [still] = await db().select().from(breakGlassReviews).where(eq(breakGlassReviews.id, review.id));
    expect(still).toMatchObject({ state: "open", reviewerId: null });
    expect(buttonsOf(current(card))).toHaveProperty("jitgate_flag_break_glass");

    await slack.click("U0LEAD", "jitgate_flag_break_glass", requestId, card);
    await eventually(async () => (await db().select().from(breakGlassReviews).where(eq(breakGlassReviews.id, review.id)))[0]?.state === "flagged", 10_000, "the flag");
    const lead = await personBySlackId("U0LEAD");
    const [flagged] = await db().select().from(breakGlassReviews).where(eq(breakGlassReviews.id, review.id));
    expect(flagged).toMatchObject({ state: "flagged", reviewerId: lead.id });
    await eventually(() => messageText(current(card)).includes("Flagged as misuse by Lead"), 10_000, "the card redrawn");
    expect(buttonsOf(current(card))).toEqual({});
    await eventually(() => messageText(current(root)).includes("flagged as misuse by Lead"), 10_000, "the root redrawn");

    // Once reviewed, it stays so: a second approver's click changes nothing.
    await slack.click("U0BOSS", "jitgate_acknowledge_break_glass", requestId, card);
    await eventually(() => lastEphemeral("U0BOSS").includes("already flagged by Lead"), 10_000, "the answer");
    const reviewed = await db()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.kind, "break_glass.reviewed"), eq(auditEvents.requestId, requestId)));
    expect(reviewed).toHaveLength(1);
    expect(reviewed[0]!.data).toMatchObject({ verdict: "flagged", reviewId: review.id });
  });

  it("is reminded daily and listed in the digest until reviewed; then the reminders stop and the digest no longer lists it", async () => {
    const { gateway } = test;
    clock.advance(2 * 3600_000); // Dev's grant of the first test is over
    const start = clock.now();
    const { root, card, review, request } = await breakGlass("U0DEV", "INC-12 queue stuck");
    const queue = gateway.scheduler.reviewReminder;
    const reminders = () => threadOf(root).filter((m) => messageText(m).includes("is still not reviewed"));
    const job = await queue.getJob(review.id);
    expect(await job!.getState()).toBe("delayed");
    expect(job!.timestamp + job!.delay - (review.createdAt.getTime() + DAY)).toBeLessThan(5_000);

    /** Runs the review's reminder job now (Redis time does not follow the test's clock) and waits for its run. */
    const runReminderJob = async () => {
      const before = (await queue.getJob(review.id))?.processedOn ?? 0;
      await (await queue.getJob(review.id))!.promote();
      await eventually(async () => {
        const again = await queue.getJob(review.id);
        return !again || ((again.processedOn ?? 0) > before && (await again.getState()) === "delayed");
      }, 10_000, "the reminder job's run");
    };

    // Early (less than a day): the job runs and reminds nobody.
    await runReminderJob();
    expect(reminders()).toHaveLength(0);
    clock.advance(DAY + 1_000);
    await runReminderJob();
    await eventually(() => reminders().length === 1, 10_000, "the first daily reminder");
    expect(messageText(reminders()[0]!)).toContain("after 1 day");

    // A lost job (Redis emptied) comes back with the reconciler.
    await (await queue.getJob(review.id))!.remove();
    expect((await gateway.reconciler.reconcile()).breakGlassReminderJobsRestored).toBeGreaterThanOrEqual(1);
    expect(await (await queue.getJob(review.id))!.getState()).toBe("delayed");

    clock.advance(DAY);
    await runReminderJob();
    await eventually(() => reminders().length === 2, 10_000, "the second daily reminder");
    expect(messageText(reminders()[1]!)).toContain("after 2 days");

    // The digest of the day lists it while it is open.
    const until = clock.now();
    const digestJob = await gateway.jobs.digest.runNow({ since: start, until });
    const listed = await eventually(() => fake.rootsIn(DIGEST).find((m) => messageText(m).includes(review.id)), 10_000, `digest ${digestJob.id}`);
    expect(messageText(listed)).toContain("Break-glass not reviewed");

    await slack.click("U0LEAD", "jitgate_acknowledge_break_glass", request.id, card);
    await eventually(() => messageText(current(card)).includes("Acknowledged by Lead"), 10_000, "the card redrawn");
    await eventually(async () => (await queue.getJob(review.id)) === undefined, 10_000, "the reminder job dropped");

    // Even a reminder job that survived (re-added here) finds it reviewed and reminds nobody.
    await gateway.scheduler.scheduleReviewReminder(review.id, clock.now());
    clock.advance(DAY);
    await eventually(async () => (await queue.getJob(review.id)) === undefined, 10_000, "the stale job done");
    expect(reminders()).toHaveLength(2);

    // A digest over a window ending after the review does not list it; one ending before still does.
    const after = await gateway.jobs.digest.runNow({ since: start, until: clock.now() });
    const digest = await eventually(
      () => fake.rootsIn(DIGEST).find((m) => messageText(m).includes("jitgate digest") && m !== listed && !messageText(m).includes("INC-12")),
      10_000,
      `digest ${after.id}`,
    );
    expect(messageText(digest)).not.toContain(review.id);
  });
});

describe("break-glass on a stepUp target", () => {
  // Every grant on a stepUp target rests on a fresh sign-in; break-glass skips the approval, not that.
  const SECRET = "7f742231b10e8888abcd99yyyzzz85a5";
  let provider: TestProvider;
  let oidc: Awaited<ReturnType<typeof startOidcGateway>>;
  let fakeSlack: FakeSlack;
  let driver: SlackDriver;

  beforeAll(async () => {
    provider = await startTestProvider([
      { sub: "sub-dev", email: "dev@example.com", name: "Dev" },
      { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
    ]);
    fakeSlack = new FakeSlack(
      [
        { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
        { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
      ],
      "xoxb-stepup",
    );
    await fakeSlack.start();
    oidc = await startOidcGateway(
      "breakglass_stepup",
      provider.issuer,
      `
slack: { botToken: xoxb-stepup, signingSecret: ${SECRET}, apiUrl: "${fakeSlack.apiUrl}", approvalChannel: ${APPROVALS} }
targets:
  - name: vault-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/vault
    approvers: [lead@example.com]
    stepUp: true
    breakGlass: { allow: [dev@example.com, lead@example.com] }
`,
    );
    driver = new SlackDriver(fakeSlack, SECRET, () => oidc.gateway.httpAddress.port);
  }, 60_000);

  afterAll(async () => {
    await oidc?.close();
    await provider?.close();
    await fakeSlack?.stop();
  });

  it("issues nothing until the requester signs in again; nobody else's sign-in or approval counts", async () => {
    const { broker } = oidc.gateway;
    const before = fakeSlack.ephemeralTexts("U0DEV").length;
    await driver.slash("U0DEV", "request vault-db 1h --break-glass INC-20 vault sealed");
    const answer = await eventually(() => fakeSlack.ephemeralTexts("U0DEV")[before], 10_000, "the answer");
    expect(answer).toContain("Break-glass on vault-db needs a fresh sign-in, like every grant there: open ");
    const link = /(http:\/\/\S+\/oidc\/approve\?challenge=\S+)/.exec(answer)![1]!;
    const [request] = await broker.db.select().from(accessRequests).where(eq(accessRequests.reason, "INC-20 vault sealed"));
    expect(request).toMatchObject({ state: "pending", breakGlass: true, grantId: null });
    // Nothing is announced before the grant exists.
    expect(fakeSlack.rootsIn(APPROVALS)).toEqual([]);

    // An approver cannot approve it in the requester's stead (a forged Approve click).
    const forged: FakeMessage = { channel: APPROVALS, ts: "1700000000.000100", threadTs: undefined, text: "", blocks: [], updates: 0 };
    await driver.click("U0LEAD", "jitgate_approve", request!.id, forged);
    await eventually(() => (fakeSlack.ephemeralTexts("U0LEAD").at(-1) ?? "").includes("is not approved by anyone"), 10_000, "the refusal");
    // Someone else's sign-in with the link records nothing.
    Object.assign(provider.nextLogin, { account: "sub-lead", ageSeconds: 0 });
    const wrong = await browse(link);
    expect(wrong.status).toBe(403);
    expect(wrong.body).toContain("The sign-in was by someone else than the person who broke the glass; nothing was issued");
    expect((await broker.getRequest(request!.id)).grantId).toBeNull();

    Object.assign(provider.nextLogin, { account: "sub-dev", ageSeconds: 0 });
    const page = await browse(link);
    expect(page.status).toBe(200);
    expect(page.body).toContain("Break-glass access to vault-db is granted");
    const issued = await broker.getRequest(request!.id);
    expect(issued).toMatchObject({ state: "approved", grantId: expect.stringMatching(/^grt_/) });
    const [used] = await broker.db.select().from(auditEvents).where(and(eq(auditEvents.requestId, request!.id), eq(auditEvents.kind, "break_glass.used")));
    expect(used!.data).toMatchObject({ stepUp: { authTime: expect.any(String) } });
    const [challenge] = await broker.db.select().from(stepUpChallenges).where(eq(stepUpChallenges.requestId, request!.id));
    expect(challenge!.completedAt).not.toBeNull();
    const root = await eventually(() => fakeSlack.rootsIn(APPROVALS).find((m) => messageText(m).includes("INC-20")), 10_000, "the loud message");
    expect(root.text).toMatch(/^<!here> .*BREAK-GLASS/);
    await eventually(() => fakeSlack.thread(root.channel, root.ts).find((m) => buttonsOf(m).jitgate_acknowledge_break_glass), 10_000, "the Review card");

    // The link works once.
    const again = await browse(link);
    expect(again.status).toBe(403);
    expect(await broker.db.select().from(grants).where(eq(grants.requestId, request!.id))).toHaveLength(1);
  });
});

describe("break-glass and scheduling configuration", () => {
  const target = (breakGlass: string) => `
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/orders
    approvers: [lead@example.com]
    ${breakGlass}
`;
  const problems = (text: string): string[] => {
    try {
      parseConfig(text, "jitgate.yaml", {});
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
    throw new Error("accepted");
  };

  it("accepts allow lists named as approvers are, and an alert channel", () => {
    const config = parseConfig(target("breakGlass: { allow: [oncall@example.com, slack:U0SRE01, U0SRE02], alertChannel: C0SECURITY }"), "jitgate.yaml", {});
    expect(config.targets[0]!.breakGlass).toEqual({ allow: ["oncall@example.com", "slack:U0SRE01", "U0SRE02"], alertChannel: "C0SECURITY" });
    expect(parseConfig(target(""), "jitgate.yaml", {}).targets[0]!.breakGlass).toBeUndefined();
    expect(parseConfig("defaults: { timezone: Europe/Berlin }\n", "jitgate.yaml", {}).defaults.timezone).toBe("Europe/Berlin");
  });

  it("refuses an empty allow list, an entry approvers would refuse, a bad alert channel, unknown keys and an unknown time zone", () => {
    expect(problems(target("breakGlass: { allow: [] }"))).toEqual([
      "targets[0].breakGlass.allow: names nobody: list who may break the glass (emails or chat ids, as approvers are named)",
    ]);
    expect(problems(target('breakGlass: { allow: ["29:1abc"] }'))[0]).toMatch(/^targets\[0\]\.breakGlass\.allow\[0\]: .*teams:29:1abc/);
    expect(problems(target("breakGlass: { allow: [a@example.com], alertChannel: security }"))).toEqual([
      'targets[0].breakGlass.alertChannel: expected a Slack channel id like C0SECURITY (got "security")',
    ]);
    expect(problems(target("breakGlass: { allow: [a@example.com], channel: C0X }"))[0]).toMatch(/^targets\[0\]\.breakGlass\.channel: unknown/);
    expect(problems("defaults: { timezone: Mars/Olympus }\n")).toEqual(['defaults.timezone: is not an IANA time zone like UTC or Europe/Berlin (got "Mars/Olympus")']);
  });
});
