import { execFile } from "node:child_process";
import { createHmac } from "node:crypto";
import pg from "pg";
import { HTTPReceiver, SocketModeReceiver } from "@slack/bolt";
import { count, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { boltLogger, createSlackReceiver } from "../src/bot/slack/slack-app.js";
import { escapeMrkdwn, toBlockKit } from "../src/bot/render/block-kit.js";
import { requestView } from "../src/bot/view-model.js";
import { parseConfig } from "../src/config/load.js";
import { accessRequests, chatMessages, decisions } from "../src/db/schema.js";
import { closeRedis, connectRedis } from "../src/infra/redis.js";
import { startGateway, startupBanner, type Gateway } from "../src/main.js";
import { createTestDatabase, dropRedisKeys, readRedisValue, REDIS_URL, testPrefix } from "./support/databases.js";
import { buttonsOf, eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";
import { capturedLogger } from "./support/logs.js";

const SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN = "xoxb-test-token";
const CHANNEL = "C0APPROVALS";

const users = [
  { id: "U0DEV", email: "dev@example.com", realName: "Dev", tz: "Europe/Berlin" },
  { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
  { id: "U0SECOND", email: "second@example.com", realName: "Second" },
  { id: "U0OTHER", email: "other@example.com", realName: "Other" },
  // Named in the approver list by Slack id only.
  { id: "U0BYID", email: "byid@example.com", realName: "ById" },
];

const { logger, lines: logLines } = capturedLogger("info");

let fake: FakeSlack;
let gateway: Gateway;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = testPrefix("slack");
const base = () => `http://127.0.0.1:${gateway.httpAddress.port}/slack/events`;

beforeAll(async () => {
  fake = new FakeSlack(users, BOT_TOKEN);
  await fake.start();
  database = await createTestDatabase("slack");
  upstream = await createTestDatabase("slack_upstream");
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
    approvers: [lead@example.com, U0BYID]
    maxDuration: 4h
    reasonPattern: "^(INC|JIRA)-[0-9]+"
  - name: payments-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/payments
    approvers: [lead@example.com, second@example.com]
    approvals: 2
  - name: held-db
    kind: postgres
    upstream: \${HELD_UPSTREAM}
    approvers: [lead@example.com]
    commands: { block: [ddl], review: [delete-without-where] }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "localhost:15432" }
`,
    "slack test",
    { DATABASE_URL: database.url, REDIS_URL, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: fake.apiUrl, HELD_UPSTREAM: upstream.url },
  );
  gateway = await startGateway({ config, logger, httpListen: "127.0.0.1:0", postgresListen: "127.0.0.1:0" });
});

afterAll(async () => {
  await gateway?.close();
  await fake?.stop();
  await dropRedisKeys(prefix);
  await database?.drop();
  await upstream?.drop();
});

// ------------------------------------------------------------------ requests as Slack sends them

/** Slack's request signature: v0 HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret. */
function signature(body: string, timestamp: number, secret = SIGNING_SECRET): string {
  return `v0=${createHmac("sha256", secret).update(`v0:${timestamp}:${body}`).digest("hex")}`;
}

async function postSigned(body: string, options: { timestamp?: number; secret?: string; signature?: string } = {}) {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  return fetch(base(), {
    method: "POST",
    headers: {
      // Exactly what Slack sends for slash commands and interactivity.
      "content-type": "application/x-www-form-urlencoded",
      "x-slack-request-timestamp": String(timestamp),
      "x-slack-signature": options.signature ?? signature(body, timestamp, options.secret),
    },
    body,
  });
}

function commandBody(user: string, text: string): string {
  return new URLSearchParams({
    token: "verification-token-unused",
    team_id: "T0TEAM",
    team_domain: "acme",
    channel_id: "C0GENERAL",
    channel_name: "general",
    user_id: user,
    user_name: user.toLowerCase(),
    command: "/access",
    text,
    api_app_id: "A0APP",
    is_enterprise_install: "false",
    response_url: fake.responseUrl(user),
    trigger_id: `trigger-${Date.now()}`,
  }).toString();
}

/** Sends a slash command; resolves with when its ack (the HTTP answer) arrived. */
async function slash(user: string, text: string): Promise<number> {
  const response = await postSigned(commandBody(user, text));
  expect(response.status).toBe(200);
  await response.text();
  return Date.now();
}

let actionCounter = 0;
async function click(user: string, actionId: string, value: string, message: FakeMessage): Promise<void> {
  const payload = {
    type: "block_actions",
    user: { id: user, username: user.toLowerCase(), name: user.toLowerCase(), team_id: "T0TEAM" },
    api_app_id: "A0APP",
    token: "verification-token-unused",
    container: { type: "message", message_ts: message.ts, channel_id: message.channel, is_ephemeral: false },
    trigger_id: `trigger-${user}-${++actionCounter}`,
    team: { id: "T0TEAM", domain: "acme" },
    channel: { id: message.channel, name: "approvals" },
    message: { type: "message", ts: message.ts, text: message.text, blocks: message.blocks },
    response_url: fake.responseUrl(user),
    actions: [
      { type: "button", action_id: actionId, block_id: "jitgate_actions", value, text: { type: "plain_text", text: actionId }, action_ts: `${Date.now() / 1000}` },
    ],
  };
  const response = await postSigned(`payload=${encodeURIComponent(JSON.stringify(payload))}`);
  expect(response.status).toBe(200);
  await response.text();
}

async function submitView(user: string, callbackId: string, privateMetadata: string, values: Record<string, Record<string, { type: string; value: string | null }>>) {
  const payload = {
    type: "view_submission",
    team: { id: "T0TEAM", domain: "acme" },
    user: { id: user, username: user.toLowerCase(), name: user.toLowerCase(), team_id: "T0TEAM" },
    api_app_id: "A0APP",
    token: "verification-token-unused",
    trigger_id: `trigger-${user}-${++actionCounter}`,
    view: {
      id: "V0VIEW",
      team_id: "T0TEAM",
      type: "modal",
      callback_id: callbackId,
      private_metadata: privateMetadata,
      state: { values },
      hash: "h",
      blocks: [],
    },
  };
  const response = await postSigned(`payload=${encodeURIComponent(JSON.stringify(payload))}`);
  expect(response.status).toBe(200);
  await response.text();
}

// ------------------------------------------------------------------ reading the fake

const approvalRootFor = (requestId: string) =>
  eventually(() => fake.rootsIn(CHANNEL).find((m) => messageText(m).includes(requestId)), 10_000, `the approval message of ${requestId}`);

const ephemeralMatching = (user: string, pattern: RegExp) =>
  eventually(() => fake.ephemeralTexts(user).find((t) => pattern.test(t)), 10_000, `an ephemeral to ${user} matching ${pattern}`);

async function requestIdFromAnswer(user: string, target: string): Promise<string> {
  const text = await ephemeralMatching(user, new RegExp(`Request req_\\w+ sent: ${target}`));
  return /Request (req_\w+)/.exec(text)![1]!;
}

const statusOf = (message: FakeMessage) =>
  ((message.blocks.find((b) => b.type === "context") as { elements?: { text: string }[] } | undefined)?.elements?.[0]?.text ?? "");

const threadTexts = (root: FakeMessage) => fake.thread(root.channel, root.ts).map((m) => messageText(m));

// ------------------------------------------------------------------ the tests

describe("Slack: request, approve, connect, expire", () => {
  it("walks the whole path: /access request → approval message → Approve → DM → live grant → expired", async () => {
    // One 429 on the first post: the outbox waits Retry-After and delivers anyway. Slack wants the
    // ack within 3 s whatever its own API does, so the ack must not wait for the post: it arrives
    // before the post that the 429 delays by seconds. (An order, not a stopwatch.)
    fake.rateLimitNext("chat.postMessage", 3);
    // Seconds of grant: room for approval and the checks of a live grant on a loaded machine.
    const ackedAt = await slash("U0DEV", "request orders-db 8s INC-4711 stuck orders");
    const requestId = await requestIdFromAnswer("U0DEV", "orders-db");

    const root = await approvalRootFor(requestId);
    const limited = fake.callsOf("chat.postMessage").find((c) => c.status === 429);
    const posted = fake.callsOf("chat.postMessage").find((c) => c.status === 200 && c.args.channel === CHANNEL);
    expect(limited).toMatchObject({ method: "chat.postMessage", status: 429, args: { channel: CHANNEL } });
    expect(posted!.at - limited!.at).toBeGreaterThanOrEqual(2_950);
    expect(ackedAt).toBeLessThan(posted!.at);
    const text = messageText(root);
    for (const expected of ["orders-db", "Dev", "8s", "INC-4711 stuck orders", requestId, "Pending: needs 1 approval"]) {
      expect(text).toContain(expected);
    }
    expect(buttonsOf(root)).toEqual({ jitgate_approve: requestId, jitgate_deny: requestId });
    // The message ↔ request mapping is in the database.
    const ref = await eventually(
      async () => (await gateway.storage.db.select().from(chatMessages).where(eq(chatMessages.requestId, requestId)))[0],
      10_000,
      "the chat_messages row",
    );
    expect(ref).toMatchObject({ platform: "slack", channel: CHANNEL, messageId: root.ts, role: "root" });

    await click("U0LEAD", "jitgate_approve", requestId, root);
    const dm = await eventually(() => fake.rootsIn("DU0DEV").find((m) => messageText(m).includes("orders-db")), 10_000, "the DM");
    expect(fake.callsOf("conversations.open").some((c) => c.args.users === "U0DEV")).toBe(true);
    const line = /postgres:\/\/\S+/.exec(messageText(dm))![0].replace(/```$/, "");
    expect(line).toMatch(/^postgres:\/\/dev%40example\.com:[\w-]+@localhost:15432\/orders-db\?sslmode=disable$/);

    // The line is live: its secret is the grant's credential.
    const secret = /:([\w-]+)@/.exec(line.slice("postgres://".length))![1]!;
    const grant = await gateway.broker.checkCredential({ login: "dev@example.com", target: "orders-db", secret });
    expect(grant.state).toBe("active");
    // The DM is addressed to Dev: in their time zone (users.info tz), saying which it is.
    const berlin = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Berlin", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(grant.expiresAt);
    expect(messageText(dm)).toContain(`stops working at ${berlin} Europe/Berlin`);
    expect(messageText(dm)).not.toContain("UTC");

    await eventually(() => statusOf(fake.messages.get(`${CHANNEL}/${root.ts}`)!).match(/Approved by Lead, expires \d\d:\d\d UTC/), 10_000, "approved status");
    expect(buttonsOf(fake.messages.get(`${CHANNEL}/${root.ts}`)!)).toEqual({});
    const card = await eventually(() => fake.thread(CHANNEL, root.ts).find((m) => buttonsOf(m).jitgate_revoke === grant.id), 10_000, "the grant card");
    expect(buttonsOf(card)).toEqual({ jitgate_extend: grant.id, jitgate_revoke: grant.id });
    expect(threadTexts(root).some((t) => t.includes("Approved by Lead (1 of 1)"))).toBe(true);

    // The 8-second grant expires: root says so, the thread has the reply, the card loses its buttons.
    await eventually(() => statusOf(fake.messages.get(`${CHANNEL}/${root.ts}`)!).startsWith("⌛ Expired at"), 10_000, "expired status");
    await eventually(() => threadTexts(root).some((t) => t.includes("Access expired at")), 10_000, "the expiry reply");
    await eventually(() => Object.keys(buttonsOf(fake.messages.get(`${CHANNEL}/${card.ts}`)!)).length === 0, 10_000, "the card without buttons");
    await expect(gateway.broker.checkCredential({ login: "dev@example.com", target: "orders-db", secret })).rejects.toMatchObject({
      code: "broker_invalid_credential",
    });

    // The connection line is never logged, and Redis does not hold it under any key of any type.
    expect(logLines.join("")).not.toContain(secret);
    const redis = connectRedis(REDIS_URL);
    try {
      const keys = await redis.keys(`${prefix}:*`);
      expect(keys.length).toBeGreaterThan(0);
      const types = new Set<string>();
      for (const key of keys) {
        const type = await redis.type(key);
        types.add(type);
        expect(JSON.stringify(await readRedisValue(redis, key, type)), `${type} ${key}`).not.toContain(secret);
      }
      // BullMQ keeps jobs in hashes, due times in sorted sets, events in streams, counters in
      // strings: the scan read each kind, not only the hashes.
      expect([...types]).toEqual(expect.arrayContaining(["hash", "stream", "string", "zset"]));
    } finally {
      await closeRedis(redis);
    }
  });

  it("refuses a forged or a stale signature with 401 and changes nothing", async () => {
    const before = await gateway.storage.db.select({ n: count() }).from(accessRequests);
    const callsBefore = fake.calls.length;
    const body = commandBody("U0DEV", "request orders-db 1h INC-1 forged");
    const forged = await postSigned(body, { secret: "not-the-signing-secret" });
    expect(forged.status).toBe(401);
    const garbled = await postSigned(body, { signature: "v0=deadbeef" });
    expect(garbled.status).toBe(401);
    const stale = await postSigned(body, { timestamp: Math.floor(Date.now() / 1000) - 6 * 60 });
    expect(stale.status).toBe(401);
    // A signed command sent after them is answered: whatever the refused ones would have started
    // has had its turn by then.
    await slash("U0DEV", "help");
    await eventually(() => fake.calls.length > callsBefore, 10_000, "the answer to the signed command");
    const after = await gateway.storage.db.select({ n: count() }).from(accessRequests);
    expect(after[0]!.n).toBe(before[0]!.n);
    expect(fake.calls.slice(callsBefore).map((c) => [c.method, c.args.__label ?? c.args.user])).toEqual([["response_url", "U0DEV"]]);
  });

  it("refuses self-approval and non-approvers, answers 'already approved by', and revokes from the card", async () => {
    await slash("U0OTHER", "request orders-db 1h INC-7 check a row");
    const requestId = await requestIdFromAnswer("U0OTHER", "orders-db");
    const root = await approvalRootFor(requestId);

    await click("U0OTHER", "jitgate_approve", requestId, root);
    await ephemeralMatching("U0OTHER", /You cannot approve your own request/);
    await click("U0SECOND", "jitgate_approve", requestId, root);
    await ephemeralMatching("U0SECOND", /You are not an approver of orders-db/);
    expect(await gateway.storage.db.select().from(decisions).where(eq(decisions.requestId, requestId))).toEqual([]);
    expect((await gateway.broker.getRequest(requestId)).state).toBe("pending");

    // U0BYID is an approver by Slack id only.
    await click("U0BYID", "jitgate_approve", requestId, root);
    await eventually(() => fake.rootsIn("DU0OTHER").find((m) => messageText(m).includes("orders-db")), 10_000, "the DM");
    await click("U0LEAD", "jitgate_approve", requestId, root);
    await ephemeralMatching("U0LEAD", /already approved by ById/);

    const grantId = (await gateway.broker.getRequest(requestId)).grantId!;
    const card = await eventually(() => fake.thread(CHANNEL, root.ts).find((m) => buttonsOf(m).jitgate_revoke === grantId), 10_000, "the card");
    await click("U0LEAD", "jitgate_revoke", grantId, card);
    await eventually(() => statusOf(fake.messages.get(`${CHANNEL}/${root.ts}`)!).startsWith("⛔ Revoked by Lead"), 10_000, "revoked status");
    await eventually(() => threadTexts(root).some((t) => t.includes("Revoked by Lead")), 10_000, "the revoke reply");
    expect((await gateway.broker.getGrant(grantId)).state).toBe("revoked");
  });

  it("needs two approvers for a quorum of 2", async () => {
    await slash("U0DEV", "request payments-db 1h refund batch");
    const requestId = await requestIdFromAnswer("U0DEV", "payments-db");
    const root = await approvalRootFor(requestId);
    expect(messageText(root)).toContain("Pending: needs 2 approvals");

    await click("U0LEAD", "jitgate_approve", requestId, root);
    await eventually(() => statusOf(fake.messages.get(`${CHANNEL}/${root.ts}`)!).includes("Approved by Lead (1 of 2)"), 10_000, "1 of 2");
    expect(buttonsOf(fake.messages.get(`${CHANNEL}/${root.ts}`)!)).toEqual({ jitgate_approve: requestId, jitgate_deny: requestId });
    expect((await gateway.broker.getRequest(requestId)).state).toBe("pending");
    expect(fake.rootsIn("DU0DEV").some((m) => messageText(m).includes("payments-db"))).toBe(false);

    await click("U0SECOND", "jitgate_approve", requestId, root);
    await eventually(() => fake.rootsIn("DU0DEV").find((m) => messageText(m).includes("payments-db")), 10_000, "the DM");
    await eventually(
      () => statusOf(fake.messages.get(`${CHANNEL}/${root.ts}`)!).match(/Approved by Lead, Second, expires/),
      10_000,
      "approved by both",
    );
    const thread = await eventually(() => (threadTexts(root).length >= 3 ? threadTexts(root) : undefined), 10_000, "three replies");
    expect(thread.some((t) => t.includes("Approved by Lead (1 of 2)"))).toBe(true);
    expect(thread.some((t) => t.includes("Approved by Second (2 of 2)"))).toBe(true);
  });

  it("Deny opens a modal; the reason shows on the root and in the thread", async () => {
    await slash("U0OTHER", "request payments-db 30m nightly job");
    const requestId = await requestIdFromAnswer("U0OTHER", "payments-db");
    const root = await approvalRootFor(requestId);

    await click("U0LEAD", "jitgate_deny", requestId, root);
    const opened = await eventually(() => fake.callsOf("views.open").find((c) => JSON.stringify(c.args.view).includes(requestId)), 10_000, "views.open");
    const view = opened.args.view as { callback_id: string; private_metadata: string };
    expect(view.callback_id).toBe("jitgate_deny_modal");
    expect(opened.args.trigger_id).toMatch(/^trigger-U0LEAD-/);

    await submitView("U0LEAD", view.callback_id, view.private_metadata, { reason: { reason: { type: "plain_text_input", value: "not <!here> tonight" } } });
    await eventually(() => statusOf(fake.messages.get(`${CHANNEL}/${root.ts}`)!).includes("Denied by Lead: not &lt;!here&gt; tonight"), 10_000, "denied");
    expect(buttonsOf(fake.messages.get(`${CHANNEL}/${root.ts}`)!)).toEqual({});
    await eventually(() => threadTexts(root).some((t) => t.includes("Denied by Lead")), 10_000, "the deny reply");

    // A click on a decided request changes nothing and says so.
    await click("U0SECOND", "jitgate_approve", requestId, root);
    await ephemeralMatching("U0SECOND", /already denied by Lead/);
  });
});

describe("Slack: statements held and blocked by the PostgreSQL proxy", () => {
  it("puts a held DELETE in the request's thread with Approve / Deny; the click resumes psql; a block is noted", async () => {
    await slash("U0SECOND", "request held-db 1h clean up notes");
    const requestId = await requestIdFromAnswer("U0SECOND", "held-db");
    const root = await approvalRootFor(requestId);
    await click("U0LEAD", "jitgate_approve", requestId, root);
    const dm = await eventually(() => fake.rootsIn("DU0SECOND").find((m) => messageText(m).includes("held-db")), 10_000, "the DM");
    const line = /postgres:\/\/\S+/.exec(messageText(dm))![0].replace(/```$/, "");
    const uri = line.replace(/@[^/]+\//, `@127.0.0.1:${gateway.postgresProxy!.address.port}/`);

    const psql = new Promise<{ stdout: string; stderr: string }>((resolve) =>
      execFile("psql", [uri, "-X", "-c", "DELETE FROM notes"], { timeout: 30_000 }, (_error, stdout, stderr) => resolve({ stdout, stderr })),
    );
    const held = await eventually(
      () => fake.thread(CHANNEL, root.ts).find((m) => Object.keys(buttonsOf(m)).includes("jitgate_approve_statement")),
      15_000,
      "the held statement in the thread",
    );
    expect(messageText(held)).toContain("DELETE FROM notes");
    expect(messageText(held)).toContain("delete-without-where");
    const heldId = buttonsOf(held).jitgate_approve_statement!;
    expect(buttonsOf(held)).toEqual({ jitgate_approve_statement: heldId, jitgate_deny_statement: heldId });

    // Neither the session's owner nor a non-approver can let it through.
    await click("U0SECOND", "jitgate_approve_statement", heldId, held);
    await ephemeralMatching("U0SECOND", /cannot approve your own/i);
    await click("U0OTHER", "jitgate_approve_statement", heldId, held);
    await ephemeralMatching("U0OTHER", /not an approver of held-db/);

    await click("U0LEAD", "jitgate_approve_statement", heldId, held);
    const result = await psql;
    expect(result.stderr).toBe("");
    expect(result.stdout).toContain("DELETE 2");
    await eventually(() => statusOf(fake.messages.get(`${CHANNEL}/${held.ts}`)!).match(/Approved by Lead: it ran/), 10_000, "the held message updated");
    expect(buttonsOf(fake.messages.get(`${CHANNEL}/${held.ts}`)!)).toEqual({});

    // psql has exited: the session's summary is a reply in the same thread.
    const summary = await eventually(
      () => threadTexts(root).find((t) => t.includes("Session summary: Second on held-db")),
      10_000,
      "the session summary in the thread",
    );
    expect(summary).toContain("*Statements*\n1 (delete 1)");
    expect(summary).toContain("*Rows*\n0 returned, 2 affected");
    expect(summary).toContain("*Blocked / held / approved*\n0 / 1 / 1");
    expect(summary).toMatch(/\*Recording\*\nses_\w+/);

    const blocked = await new Promise<string>((resolve) =>
      execFile("psql", [uri, "-X", "-c", "DROP TABLE notes"], { timeout: 30_000 }, (_error, _stdout, stderr) => resolve(stderr)),
    );
    expect(blocked).toContain('statement blocked by rule "ddl"');
    await eventually(() => threadTexts(root).find((t) => t.includes("Blocked on held-db") && t.includes("DROP TABLE notes")), 10_000, "the blocked note");
  });
});

describe("Slack: the command words", () => {
  it("answers an unknown target with the targets, and a too-long duration with the maximum", async () => {
    await slash("U0DEV", "request nope-db 1h INC-1 x");
    await ephemeralMatching("U0DEV", /Unknown target "nope-db"; targets: orders-db, payments-db/);
    await slash("U0DEV", "request orders-db 9h INC-1 x");
    await ephemeralMatching("U0DEV", /9h of access to orders-db is over the maximum of 4h/);
    await slash("U0DEV", "request orders-db 1h no ticket");
    await ephemeralMatching("U0DEV", /must match \^\(INC\|JIRA\)-\[0-9\]\+/);
  });

  it("targets, whocan, help, list, extend and revoke", async () => {
    await slash("U0SECOND", "targets");
    await ephemeralMatching("U0SECOND", /orders-db: postgres, up to 4h, 1 approval[\s\S]*payments-db: postgres, up to 8h, 2 approvals/);
    await slash("U0SECOND", "whocan payments-db");
    await ephemeralMatching("U0SECOND", /payments-db needs 2 distinct approvals from:[\s\S]*Lead \(lead@example\.com\)/);
    await slash("U0SECOND", "");
    await ephemeralMatching("U0SECOND", /\/access request <target> <duration> <reason…>/);
    await slash("U0SECOND", "frobnicate");
    await ephemeralMatching("U0SECOND", /Unknown command "frobnicate"/);

    await slash("U0SECOND", "request orders-db 1h JIRA-9 reindex");
    const requestId = await requestIdFromAnswer("U0SECOND", "orders-db");
    const root = await approvalRootFor(requestId);
    await click("U0LEAD", "jitgate_approve", requestId, root);
    const grantId = await eventually(async () => (await gateway.broker.getRequest(requestId)).grantId ?? undefined, 10_000, "the grant");
    await slash("U0SECOND", "list");
    await ephemeralMatching("U0SECOND", new RegExp(`live: orders-db, grant ${grantId}, expires`));

    // An approver extends at once; the thread and the root follow.
    await slash("U0LEAD", `extend ${grantId} 30m`);
    await ephemeralMatching("U0LEAD", new RegExp(`Grant ${grantId} extended`));
    await eventually(() => threadTexts(root).some((t) => t.includes("Extended by Lead")), 10_000, "the extend reply");

    // The holder's extend becomes an extension request in the same thread, with its own buttons.
    await slash("U0SECOND", `extend ${grantId} 15m`);
    const extensionText = await ephemeralMatching("U0SECOND", /Extension request req_\w+ sent for approval/);
    const extensionId = /(req_\w+)/.exec(extensionText)![1]!;
    const extension = await eventually(
      () => fake.thread(CHANNEL, root.ts).find((m) => buttonsOf(m).jitgate_approve === extensionId),
      10_000,
      "the extension request in the thread",
    );
    await click("U0LEAD", "jitgate_approve", extensionId, extension);
    await eventually(() => statusOf(fake.messages.get(`${CHANNEL}/${extension.ts}`)!).includes("Extension approved by Lead"), 10_000, "extension approved");

    await slash("U0SECOND", `revoke ${grantId}`);
    await ephemeralMatching("U0SECOND", new RegExp(`Grant ${grantId} \\(orders-db\\) revoked`));
    await eventually(() => statusOf(fake.messages.get(`${CHANNEL}/${root.ts}`)!).startsWith("⛔ Revoked by Second"), 10_000, "revoked");
    await slash("U0SECOND", `revoke ${grantId}`);
    await ephemeralMatching("U0SECOND", new RegExp(`Grant ${grantId} is revoked`));
  });
});

describe("Slack: receivers and rendering", () => {
  it("shows the Slack outbox on /metrics", async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${gateway.httpAddress.port}/metrics`)).text();
    expect(metrics).toMatch(/^jitgate_queue_jobs\{queue="chat-outbox-slack",state="failed"\} 0$/m);
    expect(metrics).toMatch(/^jitgate_queue_lag_seconds\{queue="chat-outbox-slack"\} \d/m);
  });

  it("uses Socket Mode when an app token is set, HTTP otherwise", () => {
    const log = boltLogger(logger);
    const socket = createSlackReceiver({ botToken: BOT_TOKEN, appToken: "xapp-1-test", command: "/access", approvalChannel: CHANNEL, apiUrl: fake.apiUrl }, log);
    expect(socket).toBeInstanceOf(SocketModeReceiver);
    const http = createSlackReceiver({ botToken: BOT_TOKEN, signingSecret: SIGNING_SECRET, command: "/access", approvalChannel: CHANNEL }, log);
    expect(http).toBeInstanceOf(HTTPReceiver);
    expect(startupBanner(gateway, "slack test")).toContain("slack       HTTP mode (POST /slack/events), command /access, approvals in C0APPROVALS");
  });

  it("escapes user text in Block Kit so a reason cannot mention @channel", () => {
    expect(escapeMrkdwn("<!channel> & <@U1>")).toBe("&lt;!channel&gt; &amp; &lt;@U1&gt;");
    const message = toBlockKit(
      requestView({
        id: "req_1",
        kind: "access",
        target: "orders-db",
        requesterName: "Dev",
        durationMs: 7_200_000,
        reason: "INC-1 <!channel>",
        state: "pending",
        approvalsRequired: 1,
        approvedBy: [],
        deniedBy: null,
        grant: null,
        startsAt: null,
        once: false,
        breakGlass: null,
      }),
    );
    expect(JSON.stringify(message.blocks)).not.toContain("<!channel>");
    expect(JSON.stringify(message.blocks)).toContain("&lt;!channel&gt;");
  });
});
