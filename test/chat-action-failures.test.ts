import { createHmac } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TeamsCloudOptions } from "../src/bot/teams/teams-app.js";
import { parseConfig } from "../src/config/load.js";
import { demoConfigYaml, DEMO_USERS } from "../src/demo/demo-config.js";
import { startGateway, type Gateway } from "../src/main.js";
import { createTestDatabase, dropRedisKeys, REDIS_URL, testPrefix } from "./support/databases.js";
import { activityText, cardActions, cardOf, cardStatus, cardText, FakeBotConnector, FakeTokenCredentialsFactory, TEAMS_ISSUER } from "./support/fake-bot-connector.js";
import { buttonsOf, eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";
import { capturedLogger } from "./support/logs.js";
import { freePort } from "./support/ports.js";
import { teamsActivities } from "./support/teams-activities.js";

/**
 * A click whose broker call fails because the database went away under it: the clicker is told
 * what was not done, with an error id that is in the log line of that error, on Slack, Teams and
 * the console; the request stays pending with its buttons, and the same click then works.
 *
 * The failure is real: a second connection holds the request's row lock, so the approval's
 * `SELECT … FOR UPDATE` waits in PostgreSQL, and that waiting backend is terminated
 * (pg_terminate_backend), as when the database restarts or fails over mid-transaction.
 */

const SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN = "xoxb-test-token";
const SLACK_CHANNEL = "C0APPROVALS";
const APP_ID = "00000000-0000-4000-8000-00000000b0t1";
const APP_PASSWORD = "test-app-password";
const TENANT = "tenant-1111";
const TEAM = "19:team-general@thread.tacv2";
const TEAMS_CHANNEL = "19:approvals@thread.tacv2";
const [, LEAD] = DEMO_USERS;
const EMAIL = (id: string) => `${id}@demo.jitgate.local`;

// The demo target's approver is the lead, on every platform (one person, linked by email).
const slackUsers = [
  { id: "U0DEV", email: EMAIL("dev"), realName: "Dana Developer" },
  { id: "U0LEAD", email: LEAD.email, realName: LEAD.name },
];
const teamsMembers = [
  { id: "29:ops", name: "Olly Ops", email: EMAIL("ops") },
  { id: "29:sre", name: "Sam SRE", email: EMAIL("sre") },
  { id: "29:lead", name: LEAD.name, email: LEAD.email },
];
const consoleUsers = [...DEMO_USERS, { id: "qa", name: "Quinn QA", email: EMAIL("qa") }];

const FAILED = /jitgate could not approve this request; nothing changed; try again \(error id (err_[0-9a-f]+)\)/;

const { logger, lines: logLines } = capturedLogger("warn");
let slack: FakeSlack;
let teams: FakeBotConnector;
let gateway: Gateway;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let admin: pg.Client;
const prefix = testPrefix("chat_failures");
const base = () => `http://127.0.0.1:${gateway.httpAddress.port}`;

beforeAll(async () => {
  slack = new FakeSlack(slackUsers, BOT_TOKEN);
  await slack.start();
  teams = new FakeBotConnector(teamsMembers, APP_ID, APP_PASSWORD, TENANT);
  await teams.start();
  database = await createTestDatabase("chat_failures");
  admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  const yaml = `${demoConfigYaml({
    httpListen: `127.0.0.1:${await freePort()}`,
    proxyListen: `127.0.0.1:${await freePort()}`,
    targetListen: `127.0.0.1:${await freePort()}`,
    database: database.url,
    redis: REDIS_URL,
    redisPrefix: prefix,
    users: consoleUsers,
  })}slack:
  botToken: ${BOT_TOKEN}
  signingSecret: ${SIGNING_SECRET}
  apiUrl: ${slack.apiUrl}
  approvalChannel: ${SLACK_CHANNEL}
teams:
  appId: "${APP_ID}"
  appPassword: ${APP_PASSWORD}
  tenantId: ${TENANT}
  serviceUrl: ${teams.serviceUrl}
  approvalConversation: "${TEAMS_CHANNEL}"
`;
  const teamsCloud: TeamsCloudOptions = {
    openIdMetadataUrl: teams.openIdMetadataUrl,
    tokenIssuer: TEAMS_ISSUER,
    credentialsFactory: new FakeTokenCredentialsFactory(`${teams.url}/oauth2/v2.0/token`, APP_ID, APP_PASSWORD) as unknown as TeamsCloudOptions["credentialsFactory"],
  };
  gateway = await startGateway({ config: parseConfig(yaml, "chat failures test", {}), logger, teamsCloud });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await admin?.end();
  await slack?.stop();
  await teams?.stop();
  await dropRedisKeys(prefix);
  await database?.drop();
});

// ------------------------------------------------------------------ the injected failure

/**
 * Runs `click` while the request's row is locked by another connection, and terminates the
 * gateway's backend once it waits for that lock: the approval's transaction loses its database.
 */
async function withApprovalCutOff<T>(requestId: string, click: () => Promise<T>): Promise<T> {
  const locker = new pg.Client({ connectionString: database.url });
  await locker.connect();
  try {
    await locker.query("BEGIN");
    await locker.query("SELECT id FROM access_requests WHERE id = $1 FOR UPDATE", [requestId]);
    const clicked = click();
    const waiting = await eventually(
      async () =>
        (
          await admin.query<{ pid: number }>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%access_requests%for update%' AND pid <> $1",
            [(locker as unknown as { processID: number }).processID],
          )
        ).rows[0]?.pid,
      10_000,
      "the approval waiting for the row lock",
    );
    const terminated = await admin.query<{ done: boolean }>("SELECT pg_terminate_backend($1) AS done", [waiting]);
    expect(terminated.rows[0]?.done).toBe(true);
    await locker.query("ROLLBACK");
    return await clicked;
  } finally {
    await locker.end();
  }
}

/** The log line of the error behind `errorId`: the same id, the action, and the database's error. */
function loggedFailure(errorId: string): Record<string, unknown> {
  const line = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.errorId === errorId);
  expect(line).toBeDefined();
  expect(line).toMatchObject({ level: 50, msg: "chat action failed", action: "approve" });
  expect(JSON.stringify(line!.err)).toMatch(/terminat/i);
  return line!;
}

const requestState = async (requestId: string) => (await gateway.broker.getRequest(requestId)).state;

// ------------------------------------------------------------------ Slack

function signed(body: string): RequestInit {
  const timestamp = Math.floor(Date.now() / 1000);
  const signature = `v0=${createHmac("sha256", SIGNING_SECRET).update(`v0:${timestamp}:${body}`).digest("hex")}`;
  return {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": String(timestamp), "x-slack-signature": signature },
    body,
  };
}

async function slash(user: string, text: string): Promise<void> {
  const body = new URLSearchParams({
    team_id: "T0TEAM",
    channel_id: "C0GENERAL",
    user_id: user,
    user_name: user.toLowerCase(),
    command: "/access",
    text,
    api_app_id: "A0APP",
    response_url: slack.responseUrl(user),
    trigger_id: `trigger-${Date.now()}`,
  }).toString();
  const response = await fetch(`${base()}/slack/events`, signed(body));
  expect(response.status).toBe(200);
  await response.text();
}

let slackClicks = 0;
async function slackClick(user: string, actionId: string, value: string, message: FakeMessage): Promise<void> {
  const payload = {
    type: "block_actions",
    user: { id: user, username: user.toLowerCase(), name: user.toLowerCase(), team_id: "T0TEAM" },
    api_app_id: "A0APP",
    container: { type: "message", message_ts: message.ts, channel_id: message.channel, is_ephemeral: false },
    trigger_id: `trigger-${user}-${++slackClicks}`,
    team: { id: "T0TEAM", domain: "acme" },
    channel: { id: message.channel, name: "approvals" },
    message: { type: "message", ts: message.ts, text: message.text, blocks: message.blocks },
    response_url: slack.responseUrl(user),
    actions: [{ type: "button", action_id: actionId, block_id: "jitgate_actions", value, text: { type: "plain_text", text: actionId }, action_ts: `${Date.now() / 1000}` }],
  };
  const response = await fetch(`${base()}/slack/events`, signed(`payload=${encodeURIComponent(JSON.stringify(payload))}`));
  expect(response.status).toBe(200);
  await response.text();
}

// ------------------------------------------------------------------ Teams

const { personalMessage, send: sendToTeams, click: teamsClick } = teamsActivities({
  fake: () => teams,
  endpoint: () => `${base()}/api/messages`,
  members: teamsMembers,
  appId: APP_ID,
  tenant: TENANT,
  team: TEAM,
  channel: TEAMS_CHANNEL,
});

// ------------------------------------------------------------------ the console

/** One person's console in a browser without JavaScript: cookies, the CSRF token, form posts. */
async function consoleLogin(who: string) {
  const picker = await fetch(`${base()}/console/login?returnTo=/console`);
  const csrfCookie = picker.headers.getSetCookie().map((c) => c.split(";")[0]!);
  const pickerToken = /name="csrf" value="([^"]+)"/.exec(await picker.text())![1]!;
  const chosen = await fetch(`${base()}/console/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: csrfCookie.join("; ") },
    body: new URLSearchParams({ csrf: pickerToken, returnTo: "/console", user: who }).toString(),
  });
  expect(chosen.status).toBe(303);
  const cookie = [...csrfCookie, ...chosen.headers.getSetCookie().map((c) => c.split(";")[0]!)].join("; ");
  const page = async () => (await fetch(`${base()}/console`, { headers: { cookie } })).text();
  const post = async (path: string, fields: Record<string, string>) => {
    const csrf = /name="csrf" value="([^"]+)"/.exec(await page())![1]!;
    const response = await fetch(`${base()}${path}`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie },
      body: new URLSearchParams({ ...fields, csrf }).toString(),
    });
    expect(response.status).toBe(303);
  };
  /** The text of one part of the page (its notes, DMs or the channel), tags removed. */
  const part = async (id: "live-notes" | "live-dms" | "live-channel") => {
    const html = await page();
    const start = html.indexOf(`id="${id}"`);
    const end = html.indexOf(`<!-- /${id} -->`, start);
    return html
      .slice(start, end < 0 ? undefined : end)
      .replace(/<[^>]+>/g, " ")
      .replace(/&#39;/g, "'")
      .replace(/&quot;/g, '"')
      .replace(/&amp;/g, "&")
      .replace(/\s+/g, " ");
  };
  return { page, part, command: (text: string) => post("/console/command", { text }), click: (action: string, value: string) => post("/console/action", { action, value }) };
}

// ------------------------------------------------------------------ the tests

describe("a click whose broker call fails says so, and the request stays actionable", () => {
  it("on Slack: an ephemeral with the error id, the approval message keeps its buttons, and the next click approves", async () => {
    await slash("U0DEV", "request demo 1h INC-1 slack");
    const answer = await eventually(() => slack.ephemeralTexts("U0DEV").find((t) => /Request req_\w+ sent: demo/.test(t)), 10_000, "the request's answer");
    const requestId = /Request (req_\w+)/.exec(answer)![1]!;
    const root = await eventually(() => slack.rootsIn(SLACK_CHANNEL).find((m) => messageText(m).includes(requestId)), 10_000, "the approval message");

    await withApprovalCutOff(requestId, () => slackClick("U0LEAD", "jitgate_approve", requestId, root));
    const told = await eventually(() => slack.ephemeralTexts("U0LEAD").find((t) => FAILED.test(t)), 10_000, "the failure's ephemeral");
    loggedFailure(FAILED.exec(told)![1]!);
    expect(await requestState(requestId)).toBe("pending");
    expect(buttonsOf(slack.messages.get(`${SLACK_CHANNEL}/${root.ts}`)!)).toEqual({ jitgate_approve: requestId, jitgate_deny: requestId });

    await slackClick("U0LEAD", "jitgate_approve", requestId, root);
    await eventually(() => slack.rootsIn("DU0DEV").find((m) => messageText(m).includes("postgres://")), 10_000, "the DM with the connection line");
    expect(await requestState(requestId)).toBe("approved");
  });

  it("on Teams: the clicker's card says so with the error id and keeps Approve and Deny; the next click approves", async () => {
    await sendToTeams(personalMessage("29:ops", "request demo 1h INC-2 teams"));
    const answer = await eventually(
      () => teams.personal("a:personal-29:ops").map((a) => activityText(a.activity)).find((t) => /Request req_\w+ sent: demo/.test(t)),
      10_000,
      "the request's answer",
    );
    const requestId = /Request (req_\w+)/.exec(answer)![1]!;
    const card = await eventually(() => teams.rootsIn(TEAMS_CHANNEL).find((a) => activityText(a.activity).includes(requestId)), 10_000, "the approval card");
    const data = { jitgate: 1, subject: "request", id: requestId };

    const failed = await withApprovalCutOff(requestId, () => teamsClick("29:lead", card, "approve", data));
    const told = FAILED.exec(cardText(failed));
    expect(told).not.toBeNull();
    loggedFailure(told![1]!);
    expect(cardStatus(failed)).toMatch(/Pending/);
    expect(cardActions(failed)).toEqual({ approve: data, deny: data });
    expect(await requestState(requestId)).toBe("pending");

    const approved = await teamsClick("29:lead", card, "approve", data);
    expect(cardStatus(approved)).toMatch(/Approved by/);
    await eventually(() => teams.personal("a:personal-29:ops").find((a) => activityText(a.activity).includes("postgres://")), 10_000, "the 1:1 message with the line");
    await eventually(() => cardStatus(cardOf(teams.activities.get(`${TEAMS_CHANNEL}/${card.id}`)!.activity)).match(/Approved by/), 10_000, "the shared card approved");
  });

  it("on Teams, when not even the card can be read: the note with the card's own buttons, to click again", async () => {
    await sendToTeams(personalMessage("29:sre", "request demo 1h INC-4 teams, table away"));
    const answer = await eventually(
      () => teams.personal("a:personal-29:sre").map((a) => activityText(a.activity)).find((t) => /Request req_\w+ sent: demo/.test(t)),
      10_000,
      "the request's answer",
    );
    const requestId = /Request (req_\w+)/.exec(answer)![1]!;
    const card = await eventually(() => teams.rootsIn(TEAMS_CHANNEL).find((a) => activityText(a.activity).includes(requestId)), 10_000, "the approval card");
    const data = { jitgate: 1, subject: "request", id: requestId };

    // The requests' table is away: the approval fails, and so does reading the card back.
    await admin.query("ALTER TABLE access_requests RENAME TO access_requests_away");
    let failed: Record<string, unknown>;
    try {
      failed = await teamsClick("29:lead", card, "approve", data);
    } finally {
      await admin.query("ALTER TABLE access_requests_away RENAME TO access_requests");
    }
    const told = FAILED.exec(cardText(failed));
    expect(told).not.toBeNull();
    const line = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.errorId === told![1]);
    expect(line).toMatchObject({ level: 50, msg: "chat action failed", action: "approve" });
    // The card shown is the stand-in: the card itself could not be read either.
    expect(logLines.some((l) => l.includes("the card could not be read after a failed click") && l.includes(told![1]!))).toBe(true);
    expect(cardActions(failed)).toEqual({ approve: data, deny: data });
    expect(await requestState(requestId)).toBe("pending");

    const approved = await teamsClick("29:lead", card, "approve", data);
    expect(cardStatus(approved)).toMatch(/Approved by/);
  });

  it("on the console: a note with the error id, the request still pending with its buttons, and the next click approves", async () => {
    const qa = await consoleLogin("qa");
    const lead = await consoleLogin(LEAD.id);
    await qa.command("request demo 1h INC-3 console");
    const requestId = /Request (req_\w+) sent/.exec(await qa.part("live-notes"))![1]!;
    await eventually(async () => (await lead.page()).includes(`name="value" value="${requestId}"`) || undefined, 10_000, "the request's buttons in the channel");

    await withApprovalCutOff(requestId, () => lead.click("approve", requestId));
    const told = FAILED.exec(await lead.part("live-notes"));
    expect(told).not.toBeNull();
    loggedFailure(told![1]!);
    expect(await requestState(requestId)).toBe("pending");
    expect(await lead.page()).toContain(`name="value" value="${requestId}"`);

    await lead.click("approve", requestId);
    await eventually(async () => (await qa.part("live-dms")).includes("postgres://") || undefined, 10_000, "the DM with the connection line");
    expect(await requestState(requestId)).toBe("approved");
  });
});
