import { execFile } from "node:child_process";
import pg from "pg";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TeamsCloudOptions } from "../src/bot/teams/teams-app.js";
import { parseConfig } from "../src/config/load.js";
import { accessRequests, breakGlassReviews, chatMessages, grants, heldStatements } from "../src/db/schema.js";
import { DEMO_USERS } from "../src/demo/demo-config.js";
import { startGateway, type Gateway } from "../src/main.js";
import { startDemoGateway, type DemoGateway } from "./support/browser.js";
import { createTestDatabase, dropRedisKeys, REDIS_URL, testPrefix } from "./support/databases.js";
import { buttonsOf, eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";
import { activityText, cardOf, cardStatus, FakeBotConnector, FakeTokenCredentialsFactory, TEAMS_ISSUER } from "./support/fake-bot-connector.js";
import { capturedLogger } from "./support/logs.js";
import { slackRequests } from "./support/slack-requests.js";
import { teamsActivities } from "./support/teams-activities.js";

/**
 * The approver's inbox (`/access pending`, the console's /console/pending): what waits for one
 * person's decision, oldest first, with the very buttons of the thread messages, through the real
 * Slack (Bolt, signed requests), Teams (botbuilder, signed activities) and console (HTTP) paths.
 */

// ==================================================================== Slack

const SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN = "xoxb-inbox-token";
const CHANNEL = "C0APPROVALS";

describe("Slack: /access pending", () => {
  const users = [
    { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
    { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
    { id: "U0SECOND", email: "second@example.com", realName: "Second" },
    { id: "U0OTHER", email: "other@example.com", realName: "Other" },
    { id: "U0CAP", email: "cap@example.com", realName: "Cap" },
  ];
  const { logger } = capturedLogger("warn");
  let fake: FakeSlack;
  let gateway: Gateway;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
  const prefix = testPrefix("inbox_slack");
  const slack = slackRequests({ fake: () => fake, endpoint: () => `http://127.0.0.1:${gateway.httpAddress.port}/slack/events`, signingSecret: SIGNING_SECRET });
  const db = () => gateway.storage.db;

  beforeAll(async () => {
    fake = new FakeSlack(users, BOT_TOKEN);
    // Lead approves bg-db only as a member of the Slack user group @dba.
    fake.userGroups.set("S0DBA", { id: "S0DBA", handle: "dba", name: "Database admins", users: ["U0LEAD"] });
    await fake.start();
    database = await createTestDatabase("inbox_slack");
    upstream = await createTestDatabase("inbox_slack_upstream");
    const seed = new pg.Client({ connectionString: upstream.url });
    await seed.connect();
    await seed.query("CREATE TABLE notes (id int, body text); INSERT INTO notes VALUES (1, 'one'), (2, 'two')");
    await seed.end();
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
    # Dev approves orders-db too: their own request must still not be in their inbox.
    approvers: [lead@example.com, dev@example.com]
  - name: held-db
    kind: postgres
    upstream: \${HELD_UPSTREAM}
    approvers: [lead@example.com]
    commands: { review: [delete-without-where] }
  - name: bg-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/bg
    approvers: ["@dba"]
    breakGlass: { allow: [dev@example.com] }
  - name: team-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/team
    approvers: [lead@example.com, dev@example.com]
  - name: quorum-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/quorum
    approvers: [lead@example.com, second@example.com]
    approvals: 2
  - name: cap-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/cap
    approvers: [cap@example.com]
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "localhost:15432" }
`,
      "inbox slack test",
      { DATABASE_URL: database.url, REDIS_URL, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: fake.apiUrl, HELD_UPSTREAM: upstream.url },
    );
    gateway = await startGateway({ config, logger, httpListen: "127.0.0.1:0", postgresListen: "127.0.0.1:0" });
    await gateway.jobs.slackUserGroups!.runNow();
  }, 60_000);

  afterAll(async () => {
    await gateway?.close();
    await fake?.stop();
    await dropRedisKeys(prefix);
    await database?.drop();
    await upstream?.drop();
  });

  const ephemeralCalls = (user: string) => fake.calls.filter((c) => c.method === "response_url" && c.status === 200 && c.args.__label === user);

  /** Types `/access <text>` as `user` and returns the ephemeral answer (text and blocks) that follows. */
  async function answerTo(user: string, text: string): Promise<FakeMessage> {
    const before = ephemeralCalls(user).length;
    await slack.slash(user, text);
    const call = await eventually(() => ephemeralCalls(user)[before], 10_000, `the answer to ${user}'s ${text}`);
    return { channel: "C0GENERAL", ts: `1700000001.${before}`, threadTs: undefined, text: String(call.args.text), blocks: (call.args.blocks as Record<string, unknown>[]) ?? [], updates: 0 };
  }

  /** The inbox's items: each one's text, and its own buttons (action id → value). */
  function itemsOf(message: FakeMessage): { text: string; buttons: Record<string, string> }[] {
    const items: { text: string; buttons: Record<string, string> }[] = [];
    let current: { text: string; buttons: Record<string, string> } | undefined;
    for (const block of message.blocks as { type: string; text?: { text: string }; block_id?: string }[]) {
      if (block.type === "section" && block.block_id?.startsWith("jitgate_item_")) {
        current = { text: `${block.text!.text}\n`, buttons: {} };
        items.push(current);
      } else if (current && block.type === "section" && block.text) current.text += `${block.text.text}\n`;
      else if (current && block.type === "actions") current.buttons = buttonsOf({ blocks: [block] });
    }
    return items;
  }

  const lastEphemeral = (user: string) => messageText(ephemeralCalls(user).at(-1)?.args ?? {});

  async function requestId(user: string, text: string): Promise<string> {
    const answer = await answerTo(user, text);
    const id = /Request (req_\w+) sent/.exec(answer.text)?.[1];
    if (!id) throw new Error(`no request id in: ${answer.text}`);
    return id;
  }

  it("lists a request, an extension, a break-glass review and a held statement oldest first with their buttons; clicks there decide them", async () => {
    // 1. A pending access request (Dev → orders-db).
    const requestA = await requestId("U0DEV", "request orders-db 1h INC-1 stuck orders");

    // 2. Second holds held-db (approved in the thread), then asks for more time: an extension.
    const heldRequest = await requestId("U0SECOND", "request held-db 2h clean up notes");
    const root = await eventually(() => fake.rootsIn(CHANNEL).find((m) => messageText(m).includes(heldRequest)), 10_000, "the held-db approval message");
    await slack.click("U0LEAD", "jitgate_approve", heldRequest, root);
    const grant = await eventually(async () => (await db().select().from(grants).where(eq(grants.requestId, heldRequest)))[0], 10_000, "the held-db grant");
    const extendAnswer = await answerTo("U0SECOND", `extend ${grant.id} 30m one more table`);
    const extension = /Extension request (req_\w+) sent/.exec(extendAnswer.text)![1]!;

    // 3. Dev breaks the glass on bg-db: a review waits for an approver (Lead, through @dba).
    const breakGlass = await answerTo("U0DEV", "request bg-db 1h --break-glass INC-9 primary down");
    expect(breakGlass.text).toContain("Break-glass");
    const [review] = await db().select().from(breakGlassReviews);
    expect(review?.state).toBe("open");

    // 4. Second's psql runs a DELETE without WHERE through the real proxy: it is held.
    const dm = await eventually(() => fake.rootsIn("DU0SECOND").find((m) => messageText(m).includes("held-db")), 10_000, "the connection DM");
    const uri = /postgres:\/\/\S+/.exec(messageText(dm))![0].replace(/```$/, "").replace(/@[^/]+\//, `@127.0.0.1:${gateway.postgresProxy!.address.port}/`);
    const psql = new Promise<{ stdout: string; stderr: string }>((resolve) =>
      execFile("psql", [uri, "-X", "-c", "DELETE FROM notes"], { timeout: 30_000 }, (_error, stdout, stderr) => resolve({ stdout, stderr })),
    );
    const held = await eventually(async () => (await db().select().from(heldStatements).where(eq(heldStatements.state, "held")))[0], 15_000, "the held statement");

    // Lead's inbox: all four, oldest first, each with the buttons its thread message carries.
    const inbox = await answerTo("U0LEAD", "pending");
    expect(inbox.text).toContain("4 items wait for you, oldest first");
    const items = itemsOf(inbox);
    expect(items.map((i) => i.buttons)).toEqual([
      { jitgate_approve: requestA, jitgate_deny: requestA },
      { jitgate_approve: extension, jitgate_deny: extension },
      { jitgate_acknowledge_break_glass: review!.requestId, jitgate_flag_break_glass: review!.requestId },
      { jitgate_approve_statement: held.id, jitgate_deny_statement: held.id },
    ]);
    expect(items[0]!.text).toContain("Dev → orders-db for 1h");
    expect(items[0]!.text).toContain("INC-1 stuck orders");
    expect(items[0]!.text).toContain(`thread of request ${requestA} in <#${CHANNEL}>`);
    expect(items[1]!.text).toContain(`Second asks for 30m more on held-db (grant ${grant.id})`);
    expect(items[2]!.text).toContain("Dev took bg-db without approval — INC-9 primary down");
    expect(items[3]!.text).toContain("Second wants to run (rule delete-without-where)");
    expect(messageText(inbox)).toContain("DELETE FROM notes");
    // Each item's buttons sit in an actions block of their own.
    const blockIds = (inbox.blocks as { type: string; block_id?: string }[]).filter((b) => b.type === "actions").map((b) => b.block_id);
    expect(new Set(blockIds).size).toBe(4);

    // Someone who approves none of it gets the same refusal from the inbox's buttons as from the thread's.
    await slack.click("U0OTHER", "jitgate_approve", requestA, inbox);
    await eventually(() => lastEphemeral("U0OTHER").includes("not an approver of orders-db"), 10_000, "the refusal");
    expect((await db().select().from(accessRequests).where(eq(accessRequests.id, requestA)))[0]!.state).toBe("pending");

    // The held statement, approved from the inbox: psql gets its answer and the rows are gone upstream.
    await slack.click("U0LEAD", "jitgate_approve_statement", held.id, inbox);
    const result = await psql;
    expect(result.stderr).toBe("");
    expect(result.stdout).toContain("DELETE 2");
    const check = new pg.Client({ connectionString: upstream.url });
    await check.connect();
    expect((await check.query("SELECT count(*)::int AS n FROM notes")).rows[0].n).toBe(0);
    await check.end();

    // The request: approved, its grant issued.
    await slack.click("U0LEAD", "jitgate_approve", requestA, inbox);
    const issued = await eventually(async () => (await db().select().from(grants).where(eq(grants.requestId, requestA)))[0], 10_000, "the orders-db grant");
    expect(issued.state).toBe("active");
    // The extension: the grant now ends 30 minutes later.
    await slack.click("U0LEAD", "jitgate_approve", extension, inbox);
    await eventually(
      async () => (await db().select().from(grants).where(eq(grants.id, grant.id)))[0]!.expiresAt.getTime() === grant.expiresAt.getTime() + 30 * 60_000,
      10_000,
      "the extended grant",
    );
    // The break-glass use: acknowledged by Lead.
    await slack.click("U0LEAD", "jitgate_acknowledge_break_glass", review!.requestId, inbox);
    await eventually(async () => (await db().select().from(breakGlassReviews).where(eq(breakGlassReviews.id, review!.id)))[0]!.state === "acknowledged", 10_000, "the review");

    // Nothing left: a short, clear answer.
    const empty = await answerTo("U0LEAD", "pending");
    expect(empty.text).toContain("Nothing waits for you");
    expect(itemsOf(empty)).toEqual([]);
  });

  it("never lists the person's own request, nor anything to someone who approves none of it", async () => {
    const own = await requestId("U0DEV", "request team-db 30m INC-2 own request");
    // Dev approves team-db, but this one is theirs.
    const mine = await answerTo("U0DEV", "pending");
    expect(messageText(mine)).not.toContain(own);
    expect(mine.text).toContain("Nothing waits for you");
    const other = await answerTo("U0OTHER", "pending");
    expect(other.text).toContain("Nothing waits for you");
    expect(buttonsOf(other)).toEqual({});
    // Lead sees it.
    const lead = await answerTo("U0LEAD", "pending");
    expect(itemsOf(lead).map((i) => i.buttons.jitgate_approve)).toContain(own);
  });

  it("takes a request out of the inbox of whoever has decided it, and leaves it in the others' with the count so far", async () => {
    const id = await requestId("U0DEV", "request quorum-db 1h INC-3 needs two");
    const lead = await answerTo("U0LEAD", "pending");
    const item = itemsOf(lead).find((i) => i.buttons.jitgate_approve === id)!;
    expect(item.text).toContain("0 of 2 approvals");
    await slack.click("U0LEAD", "jitgate_approve", id, lead);
    await eventually(async () => (await gateway.broker.decisionsOf(id)).length === 1, 10_000, "Lead's approval");
    expect(itemsOf(await answerTo("U0LEAD", "pending")).map((i) => i.buttons.jitgate_approve)).not.toContain(id);
    // A second click on the old inbox message changes nothing (one decision per person).
    await slack.click("U0LEAD", "jitgate_approve", id, lead);
    await eventually(() => /already/i.test(lastEphemeral("U0LEAD")), 10_000, "the second click's answer");
    expect(await gateway.broker.decisionsOf(id)).toHaveLength(1);
    const second = itemsOf(await answerTo("U0SECOND", "pending")).find((i) => i.buttons.jitgate_approve === id)!;
    expect(second.text).toContain("1 of 2 approvals");
  });

  it("caps the list at 20, oldest first, and says how many more wait", async () => {
    const dev = await gateway.broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
    const ids: string[] = [];
    for (let n = 0; n < 23; n += 1) ids.push((await gateway.broker.request(dev, { target: "cap-db", duration: "1h", reason: `INC-${100 + n} batch`, origin: "slack" })).id);
    const inbox = await answerTo("U0CAP", "pending");
    expect(inbox.text).toContain("23 items wait for you; the oldest 20 first (3 more not shown");
    const listed = itemsOf(inbox).map((i) => i.buttons.jitgate_approve);
    expect(listed).toEqual(ids.slice(0, 20));
    expect(inbox.blocks.length).toBeLessThanOrEqual(50);
    // The broker's own count agrees, and a decision takes one off.
    await slack.click("U0CAP", "jitgate_approve", ids[0]!, inbox);
    await eventually(async () => (await db().select().from(grants).where(and(eq(grants.requestId, ids[0]!))))[0], 10_000, "the first cap-db grant");
    expect((await gateway.broker.inbox((await gateway.broker.identify({ platform: "slack", externalId: "U0CAP", email: "cap@example.com", displayName: "Cap" })))).total).toBe(22);
  });
});

// ==================================================================== Teams

describe("Teams: pending sent to the bot", () => {
  const APP_ID = "00000000-0000-4000-8000-00000000b0t1";
  const APP_PASSWORD = "test-app-password";
  const TENANT = "tenant-1111";
  const TEAM = "19:team-general@thread.tacv2";
  const TEAMS_CHANNEL = "19:approvals@thread.tacv2";
  const members = [
    { id: "29:dev", name: "Dev", email: "dev@example.com" },
    { id: "29:lead", name: "Lead", email: "lead@example.com" },
    { id: "29:other", name: "Other", email: "other@example.com" },
  ];
  const { logger } = capturedLogger("warn");
  let fake: FakeBotConnector;
  let gateway: Gateway;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  const prefix = testPrefix("inbox_teams");
  const teams = teamsActivities({
    fake: () => fake,
    endpoint: () => `http://127.0.0.1:${gateway.httpAddress.port}/api/messages`,
    members,
    appId: APP_ID,
    tenant: TENANT,
    team: TEAM,
    channel: TEAMS_CHANNEL,
  });

  beforeAll(async () => {
    fake = new FakeBotConnector(members, APP_ID, APP_PASSWORD, TENANT);
    await fake.start();
    database = await createTestDatabase("inbox_teams");
    const config = parseConfig(
      `
database: \${DATABASE_URL}
redis: \${REDIS_URL}
redisPrefix: ${prefix}
teams:
  appId: \${MICROSOFT_APP_ID}
  appPassword: \${MICROSOFT_APP_PASSWORD}
  tenantId: ${TENANT}
  serviceUrl: \${TEAMS_SERVICE_URL}
  approvalConversation: "${TEAMS_CHANNEL}"
defaults: { maxDuration: 8h, approvals: 1, requestTtl: 1h }
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/orders
    approvers: [lead@example.com]
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "localhost:15432" }
`,
      "inbox teams test",
      { DATABASE_URL: database.url, REDIS_URL, MICROSOFT_APP_ID: APP_ID, MICROSOFT_APP_PASSWORD: APP_PASSWORD, TEAMS_SERVICE_URL: fake.serviceUrl },
    );
    const teamsCloud: TeamsCloudOptions = {
      openIdMetadataUrl: fake.openIdMetadataUrl,
      tokenIssuer: TEAMS_ISSUER,
      credentialsFactory: new FakeTokenCredentialsFactory(`${fake.url}/oauth2/v2.0/token`, APP_ID, APP_PASSWORD) as unknown as TeamsCloudOptions["credentialsFactory"],
    };
    gateway = await startGateway({ config, logger, httpListen: "127.0.0.1:0", postgresListen: "127.0.0.1:0", teamsCloud });
  }, 60_000);

  afterAll(async () => {
    await gateway?.close();
    await fake?.stop();
    await dropRedisKeys(prefix);
    await database?.drop();
  });

  /** Sends `text` in the user's personal chat and returns the bot's answer that follows. */
  async function answerTo(user: string, text: string) {
    const conversation = `a:personal-${user}`;
    const before = fake.personal(conversation).length;
    await teams.send(teams.personalMessage(user, text));
    return eventually(() => fake.personal(conversation)[before], 10_000, `the answer to ${user}'s ${text}`);
  }

  /** The Action.Execute buttons inside the card's body (the inbox items' ActionSets), in order. */
  function itemActions(card: Record<string, unknown> | undefined): { verb: string; data: { subject: string; id: string } }[] {
    const found: { verb: string; data: { subject: string; id: string } }[] = [];
    const walk = (node: unknown) => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === "object") {
        const n = node as { type?: string; verb?: string; data?: { subject: string; id: string } };
        if (n.type === "Action.Execute" && n.verb && n.data) found.push({ verb: n.verb, data: n.data });
        Object.values(node).forEach(walk);
      }
    };
    walk(card?.body);
    return found;
  }

  it("answers with the inbox card, whose Approve approves; the requester and a non-approver see nothing to decide", async () => {
    const asked = await answerTo("29:dev", "request orders-db 1h INC-5 inbox from Teams");
    const requestId = /Request (req_\w+) sent/.exec(activityText(asked.activity))![1]!;

    const answer = await answerTo("29:lead", "pending");
    const card = cardOf(answer.activity);
    expect(activityText(answer.activity)).toContain("1 item waits for you");
    expect(activityText(answer.activity)).toContain(`Access request ${requestId}: Dev → orders-db for 1h — INC-5 inbox from Teams`);
    expect(itemActions(card)).toEqual([
      { verb: "approve", data: { jitgate: 1, subject: "request", id: requestId } },
      { verb: "deny", data: { jitgate: 1, subject: "request", id: requestId } },
    ]);
    // The inbox card has no refresh of its own (it would redraw as one request's card).
    expect(card?.refresh).toBeUndefined();

    for (const user of ["29:dev", "29:other"]) {
      const none = await answerTo(user, "pending");
      expect(activityText(none.activity)).toContain("Nothing waits for you");
      expect(itemActions(cardOf(none.activity))).toEqual([]);
    }

    // A click on the inbox card's Approve: the request is approved and its grant issued.
    const shown = await teams.click("29:lead", answer, "approve", { jitgate: 1, subject: "request", id: requestId });
    expect(cardStatus(shown)).toContain("Approved by Lead");
    const [grant] = await gateway.storage.db.select().from(grants).where(eq(grants.requestId, requestId));
    expect(grant?.state).toBe("active");
    const after = await answerTo("29:lead", "pending");
    expect(activityText(after.activity)).toContain("Nothing waits for you");
  });
});

// ==================================================================== the console

describe("console: /console/pending", () => {
  let demo: DemoGateway;
  const [DEV, LEAD] = DEMO_USERS;

  beforeAll(async () => {
    demo = await startDemoGateway("inbox_console");
  }, 60_000);

  afterAll(async () => {
    await demo?.close();
  });

  /** Picks a demo user in the console's login picker; returns their cookies. */
  async function login(who: string): Promise<string> {
    const picker = await fetch(`${demo.base}/console/login?returnTo=/console/pending`);
    const csrfCookie = picker.headers.getSetCookie().map((c) => c.split(";")[0]!);
    const token = /name="csrf" value="([^"]+)"/.exec(await picker.text())![1]!;
    const chosen = await fetch(`${demo.base}/console/login`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie: csrfCookie.join("; ") },
      body: new URLSearchParams({ csrf: token, returnTo: "/console/pending", user: who }).toString(),
    });
    expect(chosen.status).toBe(303);
    expect(chosen.headers.get("location")).toBe("/console/pending");
    return [...csrfCookie, ...chosen.headers.getSetCookie().map((c) => c.split(";")[0]!)].join("; ");
  }

  const get = (path: string, cookie: string) => fetch(`${demo.base}${path}`, { headers: { cookie }, redirect: "manual" });
  const post = (path: string, cookie: string, fields: Record<string, string>) =>
    fetch(`${demo.base}${path}`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie },
      body: new URLSearchParams(fields).toString(),
    });
  const textOf = (page: string) => page.replace(/<[^>]+>/g, " ").replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&gt;/g, ">").replace(/&lt;/g, "<").replace(/&amp;/g, "&").replace(/\s+/g, " ");

  it("shows the approver what waits, with working buttons (CSRF-checked); the requester sees nothing to decide", async () => {
    // Nobody logged in: sent to the picker, to come back here.
    const anonymous = await fetch(`${demo.base}/console/pending`, { redirect: "manual" });
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers.get("location")).toBe(`/console/login?returnTo=${encodeURIComponent("/console/pending")}`);

    const dev = await login(DEV.id);
    const lead = await login(LEAD.id);
    const token = async (cookie: string, path = "/console") => /name="csrf" value="([^"]+)"/.exec(await (await get(path, cookie)).text())![1]!;
    expect((await post("/console/command", dev, { csrf: await token(dev), text: "request demo 30m INC-7 trying the inbox" })).status).toBe(303);
    const [request] = await demo.gateway.storage.db.select().from(accessRequests).where(eq(accessRequests.reason, "INC-7 trying the inbox"));
    expect(request?.state).toBe("pending");

    // Once the request's message is in the console's channel, the inbox links to it.
    await eventually(async () => (await demo.gateway.storage.db.select().from(chatMessages).where(and(eq(chatMessages.requestId, request!.id), eq(chatMessages.role, "root"))))[0], 10_000, "the request's message");
    const page = await (await get("/console/pending", lead)).text();
    expect(textOf(page)).toContain(`Access request ${request!.id}: ${DEV.name} → demo for 30m — INC-7 trying the inbox`);
    // The same buttons as the thread's: action and value, in forms posting to the console's action path.
    expect(page).toContain(`<input type="hidden" name="action" value="approve"><input type="hidden" name="value" value="${request!.id}">`);
    expect(page).toMatch(/<input type="hidden" name="back" value="pending">/);
    // A link to the thread's message on the console.
    expect(page).toMatch(new RegExp(`<a href="/console#m-\\w+">thread of request ${request!.id}</a>`));

    const inboxPart = (page: string) => textOf(page.slice(page.indexOf('id="inbox"'), page.indexOf("<!-- /inbox -->")));
    const mine = inboxPart(await (await get("/console/pending", dev)).text());
    expect(mine).toContain("Nothing waits for you");
    expect(mine).not.toContain(request!.id);

    // The console chat's `pending` lists the same, with its buttons.
    expect((await post("/console/command", lead, { csrf: await token(lead), text: "/access pending" })).status).toBe(303);
    const notes = await (await get("/console", lead)).text();
    expect(textOf(notes)).toContain("1 item waits for you");
    expect(notes).toContain(`name="value" value="${request!.id}"`);

    // A forged click without the CSRF token does nothing.
    const forged = await post("/console/action", lead, { action: "approve", value: request!.id, back: "pending" });
    expect(forged.status).toBe(403);
    expect((await demo.gateway.storage.db.select().from(grants).where(eq(grants.requestId, request!.id))).length).toBe(0);
    // `back` names a place, never a URL: anything else goes back to the console.
    const elsewhere = await post("/console/action", dev, { csrf: await token(dev), action: "approve", value: request!.id, back: "https://evil.example/" });
    expect(elsewhere.status).toBe(303);
    expect(elsewhere.headers.get("location")).toBe("/console");
    expect((await demo.gateway.storage.db.select().from(accessRequests).where(eq(accessRequests.id, request!.id)))[0]!.state).toBe("pending");

    // The button of the page works: approved, the grant issued, and back to the inbox, now empty.
    const clicked = await post("/console/action", lead, { csrf: await token(lead, "/console/pending"), action: "approve", value: request!.id, back: "pending" });
    expect(clicked.status).toBe(303);
    expect(clicked.headers.get("location")).toBe("/console/pending");
    const [grant] = await demo.gateway.storage.db.select().from(grants).where(eq(grants.requestId, request!.id));
    expect(grant?.state).toBe("active");
    expect(inboxPart(await (await get("/console/pending", lead)).text())).toContain("Nothing waits for you");
  });
});
