import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { and, asc, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker, SessionBroker, StepUpRequired, type HeldSnapshot, type Person } from "../src/broker/index.js";
import { SLACK_ACTION_IDS, toBlockKit } from "../src/bot/render/block-kit.js";
import { messageHtml } from "../src/bot/render/html.js";
import { heldView } from "../src/bot/view-model.js";
import type { TeamsCloudOptions } from "../src/bot/teams/teams-app.js";
import { auditEvents, heldDecisions, heldStatements, stepUpChallenges } from "../src/db/schema.js";
import { createTestDatabase } from "./support/databases.js";
import { cardOf, cardStatus, cardText, FakeBotConnector, FakeTokenCredentialsFactory, TEAMS_ISSUER } from "./support/fake-bot-connector.js";
import { teamsActivities } from "./support/teams-activities.js";
import { buttonsOf, eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";
import { nextEvent } from "./support/jobs.js";
import { runProcess } from "./support/processes.js";
import { SSH_CLIENT_OPTIONS, startPrivateSshd, type PrivateSshd } from "./support/sshd.js";
import { browseUntil, browse, startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";
import { slackRequests } from "./support/slack-requests.js";

/**
 * Issue 17, must 7: what an approver sees is what runs. A held statement reaches Slack and Teams
 * whole or, when it does not fit, as its start and end under a plain notice with a link to its
 * audit page (which shows it exactly, behind the audit pages' login); nothing inside it can end
 * the code block or become a mention or a link; on a `stepUp` target its approval needs a fresh
 * sign-in; `review.approvals` makes it wait for that many distinct approvers. Every outcome is
 * checked on the target itself (the row's value), not only in what the gateway says.
 */

const SIGNING_SECRET = "5f3a1c0e9b8d7f6a5e4d3c2b1a0f9e8d";
const SLACK_CHANNEL = "C0APPROVALS";
const APP_ID = "00000000-0000-4000-8000-0000000h01d5";
const APP_PASSWORD = "test-app-password";
const TENANT = "tenant-held";
const TEAMS_CHANNEL = "19:approvals@thread.tacv2";

const accounts = [
  { sub: "sub-dev", email: "dev@example.com", name: "Dev" },
  { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
  { sub: "sub-second", email: "second@example.com", name: "Second" },
  { sub: "sub-stranger", email: "stranger@example.com", name: "Stranger" },
];

let provider: TestProvider;
let slack: FakeSlack;
let teams: FakeBotConnector;
let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let target: pg.Client;
let test: Awaited<ReturnType<typeof startOidcGateway>>;
let lead: Person, second: Person;
let sshd: PrivateSshd;
let dir: string;

beforeAll(async () => {
  provider = await startTestProvider(accounts);
  slack = new FakeSlack(
    [
      { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
      { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
      { id: "U0SECOND", email: "second@example.com", realName: "Second" },
    ],
    "xoxb-held",
  );
  await slack.start();
  teams = new FakeBotConnector([{ id: "29:lead", name: "Lead", email: "lead@example.com" }], APP_ID, APP_PASSWORD, TENANT);
  await teams.start();
  upstream = await createTestDatabase("held_upstream");
  target = new pg.Client({ connectionString: upstream.url });
  await target.connect();
  await target.query("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'original')");
  const teamsCloud: TeamsCloudOptions = {
    openIdMetadataUrl: teams.openIdMetadataUrl,
    tokenIssuer: TEAMS_ISSUER,
    credentialsFactory: new FakeTokenCredentialsFactory(`${teams.url}/oauth2/v2.0/token`, APP_ID, APP_PASSWORD) as unknown as TeamsCloudOptions["credentialsFactory"],
  };
  const rules = "commands: { block: [], review: [update-without-where] }";
  dir = mkdtempSync(join(tmpdir(), "jitgate-held-"));
  chmodSync(dir, 0o777);
  sshd = await startPrivateSshd("held");
  test = await startOidcGateway(
    "held_approval",
    provider.issuer,
    `
slack: { botToken: xoxb-held, signingSecret: ${SIGNING_SECRET}, apiUrl: "${slack.apiUrl}", approvalChannel: ${SLACK_CHANNEL} }
teams:
  appId: \${MICROSOFT_APP_ID}
  appPassword: \${MICROSOFT_APP_PASSWORD}
  tenantId: ${TENANT}
  serviceUrl: \${TEAMS_SERVICE_URL}
  approvalConversation: "${TEAMS_CHANNEL}"
console: { enabled: true, allow: { domains: [example.com] } }
defaults: { reviewTimeout: 5m }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "db-gw.example.com:15432" }
  ssh: { listen: 127.0.0.1:0, publicAddress: "ssh-gw.example.com:2222", hostKeyFile: ${join(dir, "gateway", "ssh_host_ed25519_key")} }
targets:
  - name: notes-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com, second@example.com]
    ${rules}
  - name: vault-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com, second@example.com]
    stepUp: true
    ${rules}
  - name: quorum-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com, second@example.com]
    review: { approvals: 2 }
    ${rules}
  - name: web-1
    kind: ssh
    upstream: ssh://${sshd.user}@127.0.0.1:${sshd.port}
    privateKeyFile: ${sshd.gatewayKeyFile}
    hostKey: "${sshd.hostKey}"
    approvers: [lead@example.com, second@example.com]
    stepUp: true
    review: { approvals: 2 }
    commands: { block: [], review: ["^touch "] }
`,
    { UPSTREAM_URL: upstream.url, MICROSOFT_APP_ID: APP_ID, MICROSOFT_APP_PASSWORD: APP_PASSWORD, TEAMS_SERVICE_URL: teams.serviceUrl },
    { teamsCloud },
  );
  const { broker } = test.gateway;
  lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
  second = await broker.identify({ platform: "slack", externalId: "U0SECOND", email: "second@example.com", displayName: "Second" });
}, 60_000);

afterAll(async () => {
  await test?.close();
  await target?.end();
  await upstream?.drop();
  await slack?.stop();
  await teams?.stop();
  await provider?.close();
  await sshd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ------------------------------------------------------------------ helpers

const login = (account: string, ageSeconds = 0) => {
  provider.nextLogin.account = account;
  provider.nextLogin.ageSeconds = ageSeconds;
};

async function noteOnTarget(): Promise<string> {
  const { rows } = await target.query<{ body: string }>("SELECT body FROM notes WHERE id = 1");
  return rows[0]!.body;
}

let requesters = 0;
/** A grant for a new requester (one live grant per person and target), its request made on `origin`; the psql URI to the proxy. */
async function grantOn(targetName: string, origin: "slack" | "teams"): Promise<{ uri: string; requestId: string; requester: Person }> {
  const { broker } = test.gateway;
  requesters += 1;
  const requester = await broker.identify(
    origin === "slack"
      ? { platform: "slack", externalId: `U0REQ${requesters}`, email: `req${requesters}@example.com`, displayName: `Requester ${requesters}` }
      : { platform: "teams", externalId: `29:req${requesters}`, email: `req${requesters}@example.com`, displayName: `Requester ${requesters}` },
  );
  const request = await broker.request(requester, { target: targetName, duration: "1h", reason: "INC-17 held statements", origin });
  const { connection } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const line = connection!.line;
  const port = test.gateway.postgresProxy!.address.port;
  return { uri: line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`), requestId: request.id, requester };
}

/** psql running one statement through the proxy; resolves when psql exits. */
function psql(uri: string, statement: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile("psql", [uri, "-X", "-q", "-c", statement], { timeout: 60_000, maxBuffer: 1 << 20 }, (_error, stdout, stderr) => resolve({ stdout, stderr })),
  );
}

const heldEvent = () => nextEvent<{ held: HeldSnapshot }>((l) => test.gateway.cluster.events.on("statement.held", l), () => true, 20_000);

async function slackRoot(requestId: string): Promise<FakeMessage> {
  return eventually(() => slack.rootsIn(SLACK_CHANNEL).find((m) => JSON.stringify(m.blocks).includes(requestId)), 10_000, "the approval message");
}

/** The held statement's message in the request's Slack thread, as first posted (chat.postMessage's arguments). */
async function slackHeldPost(root: FakeMessage, heldId: string): Promise<{ text: string; blocks: Record<string, unknown>[] }> {
  const call = await eventually(
    () =>
      slack
        .callsOf("chat.postMessage")
        .find((c) => c.args.thread_ts === root.ts && JSON.stringify(c.args.blocks ?? []).includes(`"value":"${heldId}"`)),
    15_000,
    "the held statement in the Slack thread",
  );
  return { text: String(call.args.text ?? ""), blocks: call.args.blocks as Record<string, unknown>[] };
}

/** The stored Slack message of a held statement (as last updated). */
function slackHeldMessage(root: FakeMessage, heldId: string): FakeMessage | undefined {
  return slack.thread(SLACK_CHANNEL, root.ts).find((m) => JSON.stringify(m.blocks).includes(heldId));
}

const sectionTexts = (blocks: Record<string, unknown>[]) =>
  blocks.filter((b) => b.type === "section" && b.text).map((b) => (b.text as { text: string }).text);

const { click: slackClick } = slackRequests({ fake: () => slack, endpoint: () => `${test.origin}/slack/events`, signingSecret: SIGNING_SECRET });

async function ephemeralMatching(user: string, pattern: RegExp): Promise<string> {
  return eventually(() => slack.ephemeralTexts(user).find((t) => pattern.test(t)), 10_000, `an ephemeral answer to ${user} matching ${pattern}`);
}


/** Signs in to the console (and so the audit pages) as `account`; the cookies a browser would send. */
async function consoleCookies(account: string): Promise<string> {
  login(account);
  const start = await fetch(`${test.origin}/oidc/login?returnTo=${encodeURIComponent("/audit")}`, { redirect: "manual" });
  expect(start.status).toBe(302);
  // The login is bound to the browser that started it by a cookie.
  const loginCookie = start.headers.getSetCookie().find((c) => c.startsWith("jitgate_oidc_login="))!.split(";")[0]!;
  const callback = await browseUntil(new URL(start.headers.get("location")!, test.origin).toString(), `${test.origin}/oidc/callback`);
  const answer = await fetch(callback, { redirect: "manual", headers: { cookie: loginCookie } });
  expect(answer.status).toBe(302);
  return answer.headers
    .getSetCookie()
    .map((c) => c.split(";")[0]!)
    .join("; ");
}

// ------------------------------------------------------------------ the tests

describe("a held statement too long for one message", () => {
  // 10 KB: the start and the end are marked so either is recognisable on its own.
  const value = `start-of-value ${"0123456789abcdef".repeat(640)} end-of-value`;
  const statement = `UPDATE notes SET body = '${value}'`;

  it("reaches Slack as its start and end under a plain notice and a link to its audit page, which shows it exactly to an approver only", async () => {
    expect(statement.length).toBeGreaterThan(10_000);
    const { uri, requestId } = await grantOn("notes-db", "slack");
    const root = await slackRoot(requestId);
    const held = heldEvent();
    const run = psql(uri, statement);
    const { held: snapshot } = (await held).payload;
    expect(snapshot.text).toBe(statement);
    const posted = await slackHeldPost(root, snapshot.id);

    // Slack refuses a section text over 3000 characters: every one fits.
    for (const text of sectionTexts(posted.blocks)) expect(text.length).toBeLessThanOrEqual(3000);
    const shown = messageText(posted);
    const notice = /showing the first (\d+) and last (\d+) of (\d+) characters/.exec(shown);
    expect(notice, shown.slice(0, 500)).not.toBeNull();
    const [first, last, total] = [Number(notice![1]), Number(notice![2]), Number(notice![3])];
    expect(total).toBe(statement.length);
    expect(first + last).toBeLessThan(total);
    const link = `${test.origin}/audit/held/${snapshot.id}`;
    expect(shown).toContain(link);
    // The link is a Slack link to that page, and the code blocks are exactly the start and the end.
    expect(sectionTexts(posted.blocks).some((t) => t.includes(`<${link}|`))).toBe(true);
    const codes = sectionTexts(posted.blocks).filter((t) => t.startsWith("```"));
    expect(codes).toEqual(["```" + statement.slice(0, first) + "```", "```" + statement.slice(total - last) + "```"]);
    expect(codes[0]).toContain("UPDATE notes SET body = 'start-of-value");
    expect(codes[1]).toContain("end-of-value'");

    // Not logged in: sent to the login, and nothing of the text.
    const anonymous = await fetch(link, { redirect: "manual" });
    expect(anonymous.status).toBe(302);
    expect(anonymous.headers.get("location")).toMatch(/^\/oidc\/login\?returnTo=/);
    expect(await anonymous.text()).not.toContain("start-of-value");
    const anonymousText = await fetch(`${link}/text`, { redirect: "manual" });
    expect(anonymousText.status).toBe(302);
    expect(await anonymousText.text()).not.toContain("start-of-value");
    // Logged in, but neither an approver of notes-db nor the one who ran it: the same as an unknown id.
    const stranger = await consoleCookies("sub-stranger");
    const refused = await fetch(link, { headers: { cookie: stranger } });
    expect(refused.status).toBe(404);
    expect(await refused.text()).not.toContain("start-of-value");
    expect((await fetch(`${link}/text`, { headers: { cookie: stranger } })).status).toBe(404);
    // An approver: the whole text, exactly.
    const approver = await consoleCookies("sub-lead");
    const page = await fetch(link, { headers: { cookie: approver } });
    expect(page.status).toBe(200);
    const body = await page.text();
    const pre = /<pre class="held-text"[^>]*>([\s\S]*?)<\/pre>/.exec(body)![1]!;
    expect(pre.replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&")).toBe(statement);
    expect(body).toContain(`${statement.length} characters`);
    const raw = await fetch(`${link}/text`, { headers: { cookie: approver } });
    expect(raw.status).toBe(200);
    expect(raw.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(await raw.text()).toBe(statement);

    // Approved, it runs as it was shown: the row on the target holds the whole value.
    expect(await noteOnTarget()).toBe("original");
    await slackClick("U0LEAD", SLACK_ACTION_IDS["approve-statement"], snapshot.id, slackHeldMessage(root, snapshot.id)!);
    const result = await run;
    expect(result.stderr).toBe("");
    expect(await noteOnTarget()).toBe(value);
  }, 60_000);

  it("reaches Teams as its start and end under the same notice, with a button that opens its audit page", async () => {
    await target.query("UPDATE notes SET body = 'original' WHERE id = 1");
    const { uri, requestId } = await grantOn("notes-db", "teams");
    const root = await eventually(() => teams.rootsIn(TEAMS_CHANNEL).find((a) => JSON.stringify(a.activity).includes(requestId)), 10_000, "the Teams approval card");
    const held = heldEvent();
    const run = psql(uri, statement);
    const { held: snapshot } = (await held).payload;
    const card = await eventually(
      () =>
        teams
          .calls.filter((c) => c.method === "POST" && c.path.includes(`${TEAMS_CHANNEL};messageid=${root.id}`) && JSON.stringify(c.body).includes(snapshot.id))
          .map((c) => cardOf(c.body as Record<string, unknown>))
          .find((c) => c !== undefined),
      15_000,
      "the held statement's card in the Teams thread",
    );
    const text = cardText(card);
    const notice = /showing the first (\d+) and last (\d+) of (\d+) characters/.exec(text);
    expect(notice, text.slice(0, 500)).not.toBeNull();
    const [first, last, total] = [Number(notice![1]), Number(notice![2]), Number(notice![3])];
    expect(total).toBe(statement.length);
    const link = `${test.origin}/audit/held/${snapshot.id}`;
    expect(text).toContain(link);
    const runs = (card!.body as { inlines?: { text: string; fontType?: string }[] }[]).flatMap((b) => b.inlines ?? []);
    for (const r of runs) expect(r.text.length).toBeLessThanOrEqual(3000);
    expect(runs.filter((r) => r.fontType === "Monospace").map((r) => r.text)).toEqual([statement.slice(0, first), statement.slice(total - last)]);
    const actions = card!.actions as { type: string; title?: string; url?: string }[];
    expect(actions.filter((a) => a.type === "Action.OpenUrl")).toEqual([{ type: "Action.OpenUrl", title: "Read the full text", url: link }]);

    await test.gateway.sessions.decide(lead, { heldId: snapshot.id, verdict: "denied" });
    const result = await run;
    expect(result.stderr).toContain("denied");
    expect(await noteOnTarget()).toBe("original");
  }, 60_000);
});

describe("a held statement that tries to format the message", () => {
  const value = "x``` <!channel> <!here> <@U0LEAD> <http://evil.example|click here> *bold* ```y {{DATE(2017-02-14T06:08:00Z, SHORT)}} & done";
  const statement = `UPDATE notes SET body = '${value}'`;

  it("shows as inert text in Slack, Teams and the console: one code block, no mention, no link", async () => {
    await target.query("UPDATE notes SET body = 'original' WHERE id = 1");
    const { uri, requestId } = await grantOn("notes-db", "slack");
    const root = await slackRoot(requestId);
    const held = heldEvent();
    const run = psql(uri, statement);
    const { held: snapshot } = (await held).payload;
    const posted = await slackHeldPost(root, snapshot.id);
    const all = JSON.stringify(posted);
    // Nothing Slack would turn into a mention, a broadcast or a link.
    for (const live of ["<!channel>", "<!here>", "<@U0LEAD>", "<http://evil.example", "|click here>"]) expect(all).not.toContain(live);
    const codes = sectionTexts(posted.blocks).filter((t) => t.includes("UPDATE notes"));
    expect(codes).toHaveLength(1);
    const code = codes[0]!;
    // One block: the fences are the first and last three characters, and no ``` in between.
    expect(code.startsWith("```") && code.endsWith("```")).toBe(true);
    expect(code.slice(3, -3)).not.toContain("```");
    // What the reader sees (entities decoded, zero-width spaces invisible) is the statement.
    expect(messageText({ text: code.slice(3, -3) }).replace(/\u200B/g, "")).toBe(statement);

    // The same statement as Teams and the console would draw it.
    const view = heldView((await test.gateway.broker.threads.held(snapshot.id)).held);
    // (The view the Slack message was drawn from: the same blocks.)
    expect(toBlockKit(view).blocks).toEqual(posted.blocks);
    const { toAdaptiveCard } = await import("../src/bot/render/adaptive-card.js");
    const card = toAdaptiveCard(view);
    const monospace = (card.body as { inlines?: { text: string; fontType?: string }[] }[]).flatMap((b) => b.inlines ?? []).filter((r) => r.fontType === "Monospace");
    expect(monospace).toHaveLength(1);
    // TextRun is never Markdown; `{{` is broken so no DATE() function is evaluated.
    expect(monospace[0]!.text).not.toContain("{{");
    expect(monospace[0]!.text.replace(/\u200B/g, "")).toBe(statement);
    expect(JSON.stringify(card)).not.toContain("msteams");
    const html = messageHtml(view, { id: "m1" }).text;
    expect(html).not.toContain("<!channel>");
    expect(html).not.toContain("<http://evil.example");
    expect(html).toContain("&lt;!channel&gt;");

    await slackClick("U0LEAD", SLACK_ACTION_IDS["deny-statement"], snapshot.id, slackHeldMessage(root, snapshot.id)!);
    await run;
    expect(await noteOnTarget()).toBe("original");
  }, 60_000);
});

describe("a held statement with characters a reader cannot see", () => {
  // Reads "… WHERE owner = 'me'" in a bidi-aware viewer if the override is applied (Trojan Source).
  const value = "safe\u202Eem = renwo\u202C and\u200Bhidden\u0007bell";
  const statement = `UPDATE notes SET body = '${value}'`;

  it("shows each of them as ⟨U+…⟩ with a notice in Slack, Teams, the console and the audit page; the download has them as they are", async () => {
    await target.query("UPDATE notes SET body = 'original' WHERE id = 1");
    const { uri, requestId } = await grantOn("notes-db", "slack");
    const root = await slackRoot(requestId);
    const held = heldEvent();
    const run = psql(uri, statement);
    const first = await Promise.race([held.then((h) => h.payload), run]);
    expect(first, JSON.stringify(first)).toHaveProperty("held");
    const snapshot = (first as { held: HeldSnapshot }).held;
    expect(snapshot.text).toBe(statement);
    const posted = await slackHeldPost(root, snapshot.id);
    const shown = messageText(posted);
    expect(shown).toContain("4 invisible or direction-changing characters are shown as ⟨U+…⟩");
    const marked = "UPDATE notes SET body = 'safe⟨U+202E⟩em = renwo⟨U+202C⟩ and⟨U+200B⟩hidden⟨U+0007⟩bell'";
    expect(shown).toContain(marked);
    for (const char of ["\u202E", "\u202C", "\u0007"]) expect(JSON.stringify(posted)).not.toContain(JSON.stringify(char).slice(1, -1));
    expect(shown).not.toMatch(/[\u202E\u202C\u0007]/);

    const view = heldView((await test.gateway.broker.threads.held(snapshot.id)).held);
    const { toAdaptiveCard } = await import("../src/bot/render/adaptive-card.js");
    const cardShown = cardText(toAdaptiveCard(view));
    expect(cardShown).toContain(marked);
    expect(cardShown).not.toMatch(/[\u202E\u202C\u0007]/);
    const html = messageHtml(view, { id: "m2" }).text;
    expect(html).toContain('<mark class="hidden-char" title="an invisible or direction-changing character">⟨U+202E⟩</mark>');
    expect(html).not.toMatch(/[\u202E\u202C\u0007]/);

    const link = `${test.origin}/audit/held/${snapshot.id}`;
    const approver = await consoleCookies("sub-lead");
    const page = await (await fetch(link, { headers: { cookie: approver } })).text();
    expect(page).toContain("4 invisible or direction-changing characters are shown as ⟨U+…⟩");
    expect(page).toContain("⟨U+202E⟩</mark>");
    expect(page).not.toMatch(/[\u202E\u202C\u0007]/);
    expect(await (await fetch(`${link}/text`, { headers: { cookie: approver } })).text()).toBe(statement);

    await test.gateway.sessions.decide(lead, { heldId: snapshot.id, verdict: "approved" });
    expect((await run).stderr).toBe("");
    expect(await noteOnTarget()).toBe(value);
  }, 60_000);
});

describe("a held statement on a stepUp target", () => {
  it("is not released by an Approve click alone, nor by a stale or someone else's sign-in; a fresh sign-in by the clicker releases it", async () => {
    await target.query("UPDATE notes SET body = 'original' WHERE id = 1");
    const { broker } = test.gateway;
    // The grant itself also needs the step-up: the lead signs in once for it.
    requesters += 1;
    const requester = await broker.identify({ platform: "slack", externalId: `U0REQ${requesters}`, email: `req${requesters}@example.com`, displayName: `Requester ${requesters}` });
    const request = await broker.request(requester, { target: "vault-db", duration: "1h", reason: "INC-17 vault", origin: "slack" });
    const grantLink = await broker.decide(lead, { requestId: request.id, verdict: "approve" }).then(
      () => undefined,
      (e: unknown) => (e as StepUpRequired).link,
    );
    login("sub-lead");
    expect((await browse(grantLink!)).body).toContain("Approval recorded");
    const dm = await eventually(() => slack.rootsIn(`DU0REQ${requesters}`).find((m) => messageText(m).includes("vault-db")), 10_000, "the DM with the connection line");
    const line = /postgres:\/\/\S+/.exec(messageText(dm))![0].replace(/```$/, "");
    const uri = line.replace("db-gw.example.com:15432", `127.0.0.1:${test.gateway.postgresProxy!.address.port}`);
    const root = await slackRoot(request.id);

    const held = heldEvent();
    const run = psql(uri, "UPDATE notes SET body = 'vault changed'");
    const { held: snapshot } = (await held).payload;
    const message = await eventually(() => slackHeldMessage(root, snapshot.id), 15_000, "the held message");

    // Approve in Slack: the clicker alone gets a one-time sign-in link; the statement stays held.
    await slackClick("U0LEAD", SLACK_ACTION_IDS["approve-statement"], snapshot.id, message);
    const answer = await ephemeralMatching("U0LEAD", new RegExp(`held statement ${snapshot.id} on vault-db needs a fresh sign-in`));
    const link = /(http:\/\/\S+\/oidc\/approve\?challenge=[A-Za-z0-9_-]+)/.exec(answer)![1]!;
    const [challenge] = await broker.db.select().from(stepUpChallenges).where(eq(stepUpChallenges.heldId, snapshot.id));
    expect(link).toBe(`${test.origin}/oidc/approve?challenge=${challenge!.id}`);
    const stillHeld = async () => {
      const [row] = await broker.db.select().from(heldStatements).where(eq(heldStatements.id, snapshot.id));
      expect(row!.state).toBe("held");
      expect(await broker.db.select().from(heldDecisions).where(eq(heldDecisions.heldId, snapshot.id))).toEqual([]);
      expect(await noteOnTarget()).toBe("original");
    };
    await stillHeld();
    // The same through the broker: every approval without proof only answers with a link.
    await expect(test.gateway.sessions.decide(lead, { heldId: snapshot.id, verdict: "approved" })).rejects.toBeInstanceOf(StepUpRequired);
    await stillHeld();

    // A sign-in by another approver, and a stale sign-in by the clicker: refused, nothing recorded.
    login("sub-second");
    const other = await browse(link);
    expect(other.status).toBe(403);
    expect(other.body).toContain("someone else than the approver who clicked Approve");
    login("sub-lead", 600);
    const stale = await browse(link);
    expect(stale.status).toBe(403);
    expect(stale.body).toContain("The sign-in was not fresh");
    await stillHeld();
    // The link of a held statement cannot approve an access request, nor the other way round.
    await expect(broker.approveWithStepUp(lead, { challengeId: challenge!.id, authTime: new Date() })).rejects.toThrow(/not for this request/);

    // A fresh sign-in by the clicker: recorded with its auth_time, and the statement runs.
    login("sub-lead", 0);
    const page = await browse(link);
    expect(page.status).toBe(200);
    expect(page.body).toContain(`Your approval of held statement ${snapshot.id} (vault-db) is recorded, after a fresh sign-in as lead@example.com.`);
    const result = await run;
    expect(result.stderr).toBe("");
    expect(await noteOnTarget()).toBe("vault changed");
    const [approved] = await broker.db.select().from(auditEvents).where(and(eq(auditEvents.sessionId, snapshot.sessionId), eq(auditEvents.kind, "statement.approved")));
    expect((approved!.data as { stepUp?: { authTime: string } }).stepUp?.authTime).toMatch(/^\d{4}-/);
    await eventually(() => /Approved by Lead: it ran/.test(messageText(slackHeldMessage(root, snapshot.id)!)), 10_000, "the held message updated");
    // Used once.
    expect((await browse(link)).body).toContain("already been used");
  }, 90_000);
});

describe("a held statement on a stepUp target, approved in Teams", () => {
  const { click } = teamsActivities({
    fake: () => teams,
    endpoint: () => `${test.origin}/api/messages`,
    members: [{ id: "29:lead", name: "Lead" }],
    appId: APP_ID,
    tenant: TENANT,
    team: "19:team-general@thread.tacv2",
    channel: TEAMS_CHANNEL,
  });

  it("answers the click with a sign-in button on the clicker's card; the statement runs only after the fresh sign-in", async () => {
    await target.query("UPDATE notes SET body = 'original' WHERE id = 1");
    const { broker } = test.gateway;
    requesters += 1;
    const requester = await broker.identify({ platform: "teams", externalId: `29:req${requesters}`, email: `req${requesters}@example.com`, displayName: `Requester ${requesters}` });
    const request = await broker.request(requester, { target: "vault-db", duration: "1h", reason: "INC-17 vault from Teams", origin: "teams" });
    const grantLink = await broker.decide(lead, { requestId: request.id, verdict: "approve" }).then(
      () => undefined,
      (e: unknown) => (e as StepUpRequired).link,
    );
    login("sub-lead");
    const granted = await browse(grantLink!);
    expect(granted.body).toContain("Approval recorded");
    const grant = (await broker.activeGrants()).find((g) => g.requestId === request.id)!;
    // The connection line is in the requester's Teams DM.
    const root = await eventually(() => teams.rootsIn(TEAMS_CHANNEL).find((a) => JSON.stringify(a.activity).includes(request.id)), 10_000, "the Teams approval card");
    const dm = await eventually(
      () => [...teams.activities.values()].find((a) => !a.conversation.startsWith("19:") && JSON.stringify(a.activity).includes(grant.id)),
      10_000,
      "the DM with the connection line",
    );
    const line = /postgres:\/\/[^\s"\\]+/.exec(JSON.stringify(dm.activity))![0];
    const uri = line.replace("db-gw.example.com:15432", `127.0.0.1:${test.gateway.postgresProxy!.address.port}`);

    const held = heldEvent();
    const run = psql(uri, "UPDATE notes SET body = 'vault from teams'");
    const { held: snapshot } = (await held).payload;
    const card = await eventually(
      () => teams.thread(TEAMS_CHANNEL, root.id).find((a) => JSON.stringify(a.activity).includes(snapshot.id)),
      15_000,
      "the held card in the Teams thread",
    );
    const answer = await click("29:lead", card, "approve-statement", { jitgate: 1, subject: "held", id: snapshot.id });
    expect(cardText(answer)).toContain(`held statement ${snapshot.id} on vault-db needs a fresh sign-in`);
    const signIn = (answer.actions as { type: string; title?: string; url?: string }[]).find((a) => a.type === "Action.OpenUrl" && a.title === "Sign in to approve");
    expect(signIn?.url).toMatch(new RegExp(`^${test.origin}/oidc/approve\\?challenge=`));
    expect(cardStatus(answer)).toMatch(/Waiting for approval/);
    const [row] = await broker.db.select().from(heldStatements).where(eq(heldStatements.id, snapshot.id));
    expect(row!.state).toBe("held");
    expect(await noteOnTarget()).toBe("original");

    login("sub-lead", 0);
    expect((await browse(signIn!.url!)).body).toContain(`Your approval of held statement ${snapshot.id} (vault-db) is recorded`);
    expect((await run).stderr).toBe("");
    expect(await noteOnTarget()).toBe("vault from teams");
  }, 90_000);
});

describe("review.approvals: 2", () => {
  it("runs a held statement only when two distinct approvers approved, never the requester nor the same approver twice", async () => {
    await target.query("UPDATE notes SET body = 'original' WHERE id = 1");
    const { broker, sessions } = test.gateway;
    const { uri, requestId, requester } = await grantOn("quorum-db", "slack");
    const root = await slackRoot(requestId);
    const held = heldEvent();
    const run = psql(uri, "UPDATE notes SET body = 'by quorum'");
    const { held: snapshot } = (await held).payload;
    const message = await eventually(() => slackHeldMessage(root, snapshot.id), 15_000, "the held message");
    expect(messageText(message)).toContain("Approvals needed");

    // One approval (in Slack): recorded, the message says 1 of 2, nothing runs.
    await slackClick("U0LEAD", SLACK_ACTION_IDS["approve-statement"], snapshot.id, message);
    await eventually(() => /Approved by Lead \(1 of 2\); waiting for 1 more approval/.test(messageText(slackHeldMessage(root, snapshot.id)!)), 10_000, "the held message showing 1 of 2");
    expect(buttonsOf(slackHeldMessage(root, snapshot.id)!)).toEqual({ jitgate_approve_statement: snapshot.id, jitgate_deny_statement: snapshot.id });
    const [row] = await broker.db.select().from(heldStatements).where(eq(heldStatements.id, snapshot.id));
    expect(row).toMatchObject({ state: "held", approvalsRequired: 2 });
    expect(await noteOnTarget()).toBe("original");

    // The same approver again (from any platform: one person), and the requester: refused.
    await slackClick("U0LEAD", SLACK_ACTION_IDS["approve-statement"], snapshot.id, message);
    await ephemeralMatching("U0LEAD", new RegExp(`already approved held statement ${snapshot.id}`));
    const leadInTeams = await broker.identify({ platform: "teams", externalId: "29:lead", email: "lead@example.com", displayName: "Lead" });
    expect(leadInTeams.id).toBe(lead.id);
    await expect(sessions.decide(leadInTeams, { heldId: snapshot.id, verdict: "approved" })).rejects.toThrow(/already approved/);
    await expect(sessions.decide(requester, { heldId: snapshot.id, verdict: "approved" })).rejects.toThrow(/cannot approve your own/);
    expect(await broker.db.select().from(heldDecisions).where(eq(heldDecisions.heldId, snapshot.id))).toHaveLength(1);
    expect(await noteOnTarget()).toBe("original");

    // A second, distinct approver: it runs.
    await slackClick("U0SECOND", SLACK_ACTION_IDS["approve-statement"], snapshot.id, message);
    const result = await run;
    expect(result.stderr).toBe("");
    expect(await noteOnTarget()).toBe("by quorum");
    await eventually(() => /Approved by Lead, Second: it ran/.test(messageText(slackHeldMessage(root, snapshot.id)!)), 10_000, "the held message updated");
    const kinds = (await broker.db.select().from(auditEvents).where(eq(auditEvents.sessionId, snapshot.sessionId)).orderBy(asc(auditEvents.seq))).map((e) => e.kind);
    expect(kinds.filter((k) => k.startsWith("statement."))).toEqual(["statement.held", "statement.approval", "statement.approved"]);
  }, 60_000);

  it("takes no approval once its review timeout has passed, even before the timer records it", async () => {
    await target.query("UPDATE notes SET body = 'original' WHERE id = 1");
    const { broker, sessions } = test.gateway;
    const { uri } = await grantOn("quorum-db", "slack");
    const held = heldEvent();
    const run = psql(uri, "UPDATE notes SET body = 'too late'");
    const { held: snapshot } = (await held).payload;
    await sessions.decide(lead, { heldId: snapshot.id, verdict: "approved" });
    // Another replica whose clock reads a moment after the timeout (5m): the second approval is refused.
    const later = new Broker({ db: broker.db, config: broker.context.config, clock: { now: () => new Date(Date.parse(snapshot.createdAt) + 5 * 60_000) } });
    await expect(new SessionBroker(later).decide(second, { heldId: snapshot.id, verdict: "approved" })).rejects.toThrow(/already expired/);
    const [row] = await broker.db.select().from(heldStatements).where(eq(heldStatements.id, snapshot.id));
    expect(row!.state).toBe("held");
    expect(await noteOnTarget()).toBe("original");
    await sessions.decide(second, { heldId: snapshot.id, verdict: "denied" });
    await run;
    expect(await noteOnTarget()).toBe("original");
  }, 60_000);

  it("is denied by one denial, whatever approvals came before", async () => {
    await target.query("UPDATE notes SET body = 'original' WHERE id = 1");
    const { sessions } = test.gateway;
    const { uri } = await grantOn("quorum-db", "slack");
    const held = heldEvent();
    const run = psql(uri, "UPDATE notes SET body = 'never'");
    const { held: snapshot } = (await held).payload;
    await sessions.decide(lead, { heldId: snapshot.id, verdict: "approved" });
    await sessions.decide(second, { heldId: snapshot.id, verdict: "denied" });
    const result = await run;
    expect(result.stderr).toContain("denied");
    expect(await noteOnTarget()).toBe("original");
  }, 60_000);
});

describe("a held SSH command on a stepUp target with review.approvals: 2", () => {
  it("runs only after two distinct approvers each approved with a fresh sign-in; the file appears on the host only then", async () => {
    const { broker, sessions } = test.gateway;
    requesters += 1;
    const requester = await broker.identify({ platform: "slack", externalId: `U0REQ${requesters}`, email: `req${requesters}@example.com`, displayName: `Requester ${requesters}` });
    const request = await broker.request(requester, { target: "web-1", duration: "1h", reason: "INC-17 ssh", origin: "slack" });
    const grantLink = await broker.decide(lead, { requestId: request.id, verdict: "approve" }).then(
      () => undefined,
      (e: unknown) => (e as StepUpRequired).link,
    );
    login("sub-lead");
    expect((await browse(grantLink!)).body).toContain("Approval recorded");
    const dm = await eventually(() => slack.rootsIn(`DU0REQ${requesters}`).find((m) => messageText(m).includes("web-1")), 10_000, "the DM with the connection line");
    const secret = /\(password: ([^)]+)\)/.exec(messageText(dm))![1]!;
    const port = test.gateway.sshProxy!.address.port;

    const canary = join(dir, "approved-by-two");
    const command = `touch ${canary}`;
    const held = heldEvent();
    const run = runProcess(
      "sshpass",
      ["-e", "ssh", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-p", String(port), "web-1@127.0.0.1", command],
      { env: { SSHPASS: secret }, timeoutMs: 90_000 },
    );
    const { held: snapshot } = (await held).payload;
    expect(snapshot.text).toBe(command);

    // The first approver: a click alone records nothing; the fresh sign-in records one of two.
    const first = await sessions.decide(lead, { heldId: snapshot.id, verdict: "approved" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(first).toBeInstanceOf(StepUpRequired);
    expect(await broker.db.select().from(heldDecisions).where(eq(heldDecisions.heldId, snapshot.id))).toEqual([]);
    login("sub-lead");
    const page = await browse((first as StepUpRequired).link);
    expect(page.body).toContain("It runs once the other approvals it needs are given.");
    expect(await broker.db.select().from(heldDecisions).where(eq(heldDecisions.heldId, snapshot.id))).toHaveLength(1);
    const [waiting] = await broker.db.select().from(heldStatements).where(eq(heldStatements.id, snapshot.id));
    expect(waiting!.state).toBe("held");
    expect(existsSync(canary)).toBe(false);

    // The second approver, the same way: now it runs.
    const secondClick = await sessions.decide(second, { heldId: snapshot.id, verdict: "approved" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(secondClick).toBeInstanceOf(StepUpRequired);
    expect(existsSync(canary)).toBe(false);
    login("sub-second");
    expect((await browse((secondClick as StepUpRequired).link)).body).toContain("It has run (or runs now)");
    const result = await run;
    expect(result.code).toBe(0);
    expect(existsSync(canary)).toBe(true);
    const events = await broker.db.select().from(auditEvents).where(eq(auditEvents.sessionId, snapshot.sessionId)).orderBy(asc(auditEvents.seq));
    const decided = events.filter((e) => e.kind === "statement.approval" || e.kind === "statement.approved");
    expect(decided.map((e) => [e.kind, (e.data as { approvals: number }).approvals, typeof (e.data as { stepUp?: unknown }).stepUp])).toEqual([
      ["statement.approval", 1, "object"],
      ["statement.approved", 2, "object"],
    ]);
  }, 120_000);
});
