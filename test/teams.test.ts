import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTeamsAuthentication, type TeamsCloudOptions } from "../src/bot/teams/teams-app.js";
import { parseConfig } from "../src/config/load.js";
import { chatConversations, decisions } from "../src/db/schema.js";
import { startGateway, startupBanner, type Gateway } from "../src/main.js";
import { createTestDatabase, dropRedisKeys, REDIS_URL, testPrefix } from "./support/databases.js";
import { eventually } from "./support/fake-slack.js";
import {
  activityText,
  cardActions,
  cardOf,
  cardStatus,
  cardText,
  FakeBotConnector,
  FakeTokenCredentialsFactory,
  TEAMS_ISSUER,
} from "./support/fake-bot-connector.js";
import { teamsActivities } from "./support/teams-activities.js";
import { capturedLogger } from "./support/logs.js";

const APP_ID = "00000000-0000-4000-8000-00000000b0t1";
const APP_PASSWORD = "test-app-password";
const TENANT = "tenant-1111";
const TEAM = "19:team-general@thread.tacv2";
const CHANNEL = "19:approvals@thread.tacv2";
const DIGEST = "19:digest@thread.tacv2";

const members = [
  { id: "29:dev", name: "Dev", email: "dev@example.com" },
  { id: "29:lead", name: "Lead", email: "lead@example.com" },
  { id: "29:other", name: "Other", email: "other@example.com" },
];

const { logger, lines: logLines } = capturedLogger("info");

let fake: FakeBotConnector;
let gateway: Gateway;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = testPrefix("teams");
const endpoint = () => `http://127.0.0.1:${gateway.httpAddress.port}/api/messages`;

beforeAll(async () => {
  fake = new FakeBotConnector(members, APP_ID, APP_PASSWORD, TENANT);
  await fake.start();
  database = await createTestDatabase("teams");
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
  approvalConversation: "${CHANNEL}"
  digestConversation: "${DIGEST}"
defaults: { maxDuration: 8h, approvals: 1, requestTtl: 1h }
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/orders
    approvers: [lead@example.com]
    maxDuration: 4h
    reasonPattern: "^(INC|JIRA)-[0-9]+"
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "localhost:15432" }
`,
    "teams test",
    { DATABASE_URL: database.url, REDIS_URL, MICROSOFT_APP_ID: APP_ID, MICROSOFT_APP_PASSWORD: APP_PASSWORD, TEAMS_SERVICE_URL: fake.serviceUrl },
  );
  const teamsCloud: TeamsCloudOptions = {
    openIdMetadataUrl: fake.openIdMetadataUrl,
    tokenIssuer: TEAMS_ISSUER,
    credentialsFactory: new FakeTokenCredentialsFactory(`${fake.url}/oauth2/v2.0/token`, APP_ID, APP_PASSWORD) as unknown as TeamsCloudOptions["credentialsFactory"],
  };
  gateway = await startGateway({ config, logger, httpListen: "127.0.0.1:0", postgresListen: "127.0.0.1:0", teamsCloud });
});

afterAll(async () => {
  await gateway?.close();
  await fake?.stop();
  await dropRedisKeys(prefix);
  await database?.drop();
});

// ------------------------------------------------------------------ activities as Teams sends them

const { personalMessage, channelMention, post, send, click } = teamsActivities({
  fake: () => fake,
  endpoint,
  members,
  appId: APP_ID,
  tenant: TENANT,
  team: TEAM,
  channel: CHANNEL,
});

const approvalCardFor = (requestId: string) =>
  eventually(() => fake.rootsIn(CHANNEL).find((a) => activityText(a.activity).includes(requestId)), 10_000, `the approval card of ${requestId}`);

const answersIn = (conversation: string) => fake.personal(conversation).map((a) => activityText(a.activity));

async function requestIdFrom(conversation: string, target: string): Promise<string> {
  const text = await eventually(() => answersIn(conversation).find((t) => new RegExp(`Request req_\\w+ sent: ${target}`).test(t)), 10_000, "the request answer");
  return /Request (req_\w+)/.exec(text)![1]!;
}

// ------------------------------------------------------------------ the tests

describe("Teams: request, approve, connect, expire", () => {
  it("walks the whole path: request in a personal chat → card → Approve → 1:1 message → expired card", async () => {
    await send(personalMessage("29:dev", "request orders-db 2s INC-4711 stuck orders"));
    const requestId = await requestIdFrom("a:personal-29:dev", "orders-db");
    // The personal chat's reference is stored for every replica.
    const stored = await gateway.storage.db.select().from(chatConversations).where(eq(chatConversations.externalId, "29:dev"));
    expect(stored[0]?.conversationId).toBe("a:personal-29:dev");

    const root = await approvalCardFor(requestId);
    const card = cardOf(root.activity);
    expect(card?.version).toBe("1.4");
    expect(cardText(card)).toContain("INC-4711 stuck orders");
    expect(cardStatus(card)).toContain("Pending: needs 1 approval");
    expect(cardActions(card)).toEqual({ approve: { jitgate: 1, subject: "request", id: requestId }, deny: { jitgate: 1, subject: "request", id: requestId } });
    expect((card?.refresh as { action: { verb: string } }).action.verb).toBe("refresh");
    // Everyone jitgate has seen in Teams gets the card refreshed for them on sight (Universal Actions).
    expect((card?.refresh as { userIds?: string[] }).userIds).toContain("29:dev");
    // Outgoing calls carry the bot's token from the token endpoint.
    const sent = fake.calls.find((c) => c.method === "POST" && c.path.startsWith(`/v3/conversations/${CHANNEL}/activities`))!;
    expect(sent.authorization).toMatch(/^Bearer bot-token-/);

    // A non-approver's click changes nothing; they see why in their own card.
    const otherView = await click("29:other", root, "approve", { jitgate: 1, subject: "request", id: requestId });
    expect(cardText(otherView)).toMatch(/not an approver of orders-db/i);
    expect(await gateway.storage.db.select().from(decisions).where(eq(decisions.requestId, requestId))).toEqual([]);
    expect((await gateway.broker.getRequest(requestId)).state).toBe("pending");
    // The requester cannot approve their own request, and a refresh shows them no buttons.
    const selfView = await click("29:dev", root, "approve", { jitgate: 1, subject: "request", id: requestId });
    expect(cardText(selfView)).toMatch(/cannot approve your own request/i);
    const refreshed = await click("29:dev", root, "refresh", { jitgate: 1, subject: "request", id: requestId });
    expect(cardActions(refreshed)).toEqual({});

    // The approver approves: their card shows it at once, the shared card is updated in place.
    const leadView = await click("29:lead", root, "approve", { jitgate: 1, subject: "request", id: requestId });
    expect(cardStatus(leadView)).toMatch(/Approved by Lead/);
    expect(cardActions(leadView)).toEqual({});

    // The 1:1 message with the connection line, in the requester's personal chat.
    const dm = await eventually(() => fake.personal("a:personal-29:dev").find((a) => activityText(a.activity).includes("postgres://")), 10_000, "the 1:1 message");
    const line = /postgres:\/\/\S+/.exec(activityText(dm.activity))![0];
    expect(line).toContain("dev%40example.com");

    await eventually(() => cardStatus(cardOf(fake.activities.get(`${CHANNEL}/${root.id}`)!.activity)).match(/Approved by Lead, expires/), 10_000, "approved status");
    await eventually(() => fake.thread(CHANNEL, root.id).some((a) => activityText(a.activity).includes("Approved by Lead (1 of 1)")), 10_000, "the decision reply");
    const grantCard = await eventually(() => fake.thread(CHANNEL, root.id).find((a) => cardActions(cardOf(a.activity)).revoke), 10_000, "the grant card");

    // The 2-second grant expires: the card shows it, the thread has the reply, the grant card loses its buttons.
    await eventually(() => cardStatus(cardOf(fake.activities.get(`${CHANNEL}/${root.id}`)!.activity)).startsWith("⌛ Expired at"), 15_000, "expired status");
    await eventually(() => fake.thread(CHANNEL, root.id).some((a) => activityText(a.activity).includes("Access expired at")), 10_000, "the expiry reply");
    await eventually(() => Object.keys(cardActions(cardOf(fake.activities.get(`${CHANNEL}/${root.id};messageid=${root.id}/${grantCard.id}`)?.activity ?? grantCard.activity))).length === 0, 10_000, "the grant card without buttons");
    expect(fake.activities.get(`${CHANNEL}/${root.id}`)!.updates).toBeGreaterThan(0);
    expect(logLines.join("")).not.toContain(line);
  });

  it("takes the command words with an @mention in a channel, replies in that thread, and creates a 1:1 chat for the line", async () => {
    const mention = channelMention("29:other", "request orders-db 1h JIRA-9 reindex");
    await send(mention);
    const thread = mention.conversation.id;
    const text = await eventually(() => answersIn(thread).find((t) => /Request req_\w+ sent: orders-db/.test(t)), 10_000, "the answer in the thread");
    const requestId = /Request (req_\w+)/.exec(text)![1]!;
    const root = await approvalCardFor(requestId);

    // Deny asks for a reason inside the card, then denies with it.
    const form = await click("29:lead", root, "deny", { jitgate: 1, subject: "request", id: requestId });
    expect(JSON.stringify(form)).toContain('"Input.Text"');
    expect(cardActions(form)["deny-confirm"]).toEqual({ jitgate: 1, subject: "request", id: requestId });
    const denied = await click("29:lead", root, "deny-confirm", { jitgate: 1, subject: "request", id: requestId, reason: "not tonight <at>all</at>" });
    expect(cardStatus(denied)).toBe("❌ Denied by Lead: not tonight <at>all</at>");
    await eventually(() => cardStatus(cardOf(fake.activities.get(`${CHANNEL}/${root.id}`)!.activity)).startsWith("❌ Denied by Lead"), 10_000, "denied");

    // A second request, approved: Other never wrote to the bot in private, so the bot creates the 1:1 chat.
    const again = channelMention("29:other", "request orders-db 1h JIRA-10 reindex");
    await send(again);
    const text2 = await eventually(() => answersIn(again.conversation.id).find((t) => /Request req_\w+ sent/.test(t)), 10_000, "the second answer");
    const second = /Request (req_\w+)/.exec(text2)![1]!;
    await click("29:lead", await approvalCardFor(second), "approve", { jitgate: 1, subject: "request", id: second });
    await eventually(() => fake.personal("a:1on1-29:other").find((a) => activityText(a.activity).includes("postgres://")), 10_000, "the proactive 1:1 message");
    expect(fake.calls.some((c) => c.method === "POST" && c.path === "/v3/conversations" && c.status === 201)).toBe(true);
    const stored = await gateway.storage.db.select().from(chatConversations).where(eq(chatConversations.externalId, "29:other"));
    expect(stored[0]?.conversationId).toBe("a:1on1-29:other");
  });

  it("refuses activities without a valid channel token", async () => {
    const activity = personalMessage("29:dev", "targets");
    expect((await post(activity, null)).status).toBe(401);
    expect((await post(activity, fake.channelToken({}, FakeBotConnector.strangerKey()))).status).toBe(401);
    expect((await post(activity, fake.channelToken({ aud: "someone-else" }))).status).toBe(401);
    expect((await post(activity, fake.channelToken({ serviceurl: "https://elsewhere.example/" }))).status).toBe(401);
    expect((await post(activity, fake.channelToken({ exp: Math.floor(Date.now() / 1000) - 3600 }))).status).toBe(401);
    // A signed `help` sent after them is answered in the same chat: whatever the refused ones would
    // have sent comes before that. None of them ran: no answer to `targets` was sent.
    const answersBefore = answersIn("a:personal-29:dev").length;
    await send(personalMessage("29:dev", "help"));
    await eventually(() => answersIn("a:personal-29:dev").slice(answersBefore).some((t) => t.includes("Usage of")), 10_000, "the answer to help");
    expect(answersIn("a:personal-29:dev").some((t) => t.includes("Targets you may request"))).toBe(false);
  });

  it("shows the Teams outbox on /metrics and in the banner", async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${gateway.httpAddress.port}/metrics`)).text();
    expect(metrics).toMatch(/^jitgate_queue_jobs\{queue="chat-outbox-teams",state="failed"\} 0$/m);
    expect(startupBanner(gateway, "teams test")).toContain("teams       POST /api/messages, Bot Framework authentication on");
  });
});

describe("Teams: authentication modes", () => {
  const activity = { type: "message", channelId: "msteams", serviceUrl: "http://127.0.0.1:1/", conversation: { id: "a:1" }, from: { id: "29:x" }, recipient: { id: "28:bot" } };

  it("is unauthenticated (Emulator-style) only when teams.appId is not set", async () => {
    const open = createTeamsAuthentication({ serviceUrl: "http://127.0.0.1:1/", approvalConversation: CHANNEL });
    const result = await open.authenticateRequest(activity as never, "");
    expect(result.claimsIdentity.isAuthenticated).toBe(true);
    expect(result.claimsIdentity.claims).toEqual([]);

    const closed = createTeamsAuthentication({ appId: APP_ID, appPassword: APP_PASSWORD, serviceUrl: "http://127.0.0.1:1/", approvalConversation: CHANNEL });
    await expect(closed.authenticateRequest(activity as never, "")).rejects.toThrow(/Unauthorized/);
  });
});

describe("Teams: the daily digest", () => {
  it("posts the digest as an Adaptive Card to teams.digestConversation", async () => {
    const now = gateway.broker.clock.now();
    await gateway.jobs.digest.runNow({ since: new Date(now.getTime() - 3600_000), until: now });
    const posted = await eventually(() => fake.rootsIn(DIGEST)[0], 10_000, "the digest card");
    const card = cardOf(posted.activity);
    expect(card?.type).toBe("AdaptiveCard");
    expect(cardText(card)).toContain("jitgate digest");
  });
});
