import { and, count, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TeamsCloudOptions } from "../src/bot/teams/teams-app.js";
import { ConfigError, parseConfig } from "../src/config/load.js";
import { accessRequests, auditEvents, chatConversations, chatIdentities, decisions, people } from "../src/db/schema.js";
import { OidcVerifier } from "../src/oidc/verifier.js";
import { activityText, cardStatus, cardText, FakeBotConnector, FakeTokenCredentialsFactory, TEAMS_ISSUER, type FakeActivity } from "./support/fake-bot-connector.js";
import { eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";
import type { TestGateway } from "./support/gateway.js";
import { browse, CLIENT_ID, startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";
import { teamsActivities } from "./support/teams-activities.js";
import { slackRequests } from "./support/slack-requests.js";

// Who a chat message or click comes from, as an attacker would try to blur it: an activity of
// another tenant, a member another tenant brought in carrying our lead's email, a Teams user whose
// id reads like a Slack approver's, a Slack account with an unconfirmed email, an OIDC token whose
// email the provider has not verified.

const APP_ID = "00000000-0000-4000-8000-0000000c1d01";
const APP_PASSWORD = "chat-identity-app-password";
const TENANT = "11111111-1111-4111-8111-111111111111";
const EVIL = "66666666-6666-4666-8666-666666666666";
const TEAM = "19:team-general@thread.tacv2";
const TEAMS_CHANNEL = "19:approvals@thread.tacv2";
const SIGNING_SECRET = "chat-identity-signing-secret-0001";
const BOT_TOKEN = "xoxb-chat-identity";
const SLACK_CHANNEL = "C0APPROVALS";

const members = [
  { id: "29:dev", name: "Dev", email: "dev@example.com" },
  { id: "29:lead", name: "Lead", email: "lead@example.com" },
  // A Teams user of our tenant whose id happens to equal the Slack approver's.
  { id: "U0LEAD42", name: "Impostor", email: "impostor@example.com" },
  // Members another tenant brought in (external access, a shared channel), with our lead's email.
  { id: "29:intruder", name: "Intruder", email: "lead@example.com", tenantId: EVIL },
  { id: "29:tenantless", name: "Tenantless", email: "lead@example.com", tenantId: "" },
];

const slackUsers = [
  { id: "U0DEV2", email: "dev2@example.com", realName: "Dev Two" },
  { id: "U0LEAD42", email: "lead42@example.com", realName: "Lead FortyTwo" },
  // An account whose email Slack has not confirmed, set to our lead's address.
  { id: "U0FAKE", email: "lead@example.com", realName: "Not The Lead", emailConfirmed: false },
];

let fake: FakeBotConnector;
let slack: FakeSlack;
let provider: TestProvider;
let test: TestGateway;
const db = () => test.gateway.storage.db;
const teamsEndpoint = () => `http://127.0.0.1:${test.gateway.httpAddress.port}/api/messages`;
const slackEndpoint = () => `http://127.0.0.1:${test.gateway.httpAddress.port}/slack/events`;

beforeAll(async () => {
  fake = new FakeBotConnector(members, APP_ID, APP_PASSWORD, TENANT);
  await fake.start();
  slack = new FakeSlack(slackUsers, BOT_TOKEN);
  await slack.start();
  provider = await startTestProvider([
    { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
    // An account at our provider whose email the provider has not verified: set to the lead's.
    { sub: "sub-attacker", email: "lead@example.com", emailVerified: false, name: "Not The Lead" },
  ]);
  const teamsCloud: TeamsCloudOptions = {
    openIdMetadataUrl: fake.openIdMetadataUrl,
    tokenIssuer: TEAMS_ISSUER,
    credentialsFactory: new FakeTokenCredentialsFactory(`${fake.url}/oauth2/v2.0/token`, APP_ID, APP_PASSWORD) as unknown as TeamsCloudOptions["credentialsFactory"],
  };
  test = await startOidcGateway(
    "chat_identity",
    provider.issuer,
    `
slack:
  botToken: \${SLACK_BOT_TOKEN}
  signingSecret: \${SLACK_SIGNING_SECRET}
  apiUrl: \${SLACK_API_URL}
  approvalChannel: ${SLACK_CHANNEL}
teams:
  appId: \${MICROSOFT_APP_ID}
  appPassword: \${MICROSOFT_APP_PASSWORD}
  tenantId: \${MICROSOFT_TENANT_ID}
  serviceUrl: \${TEAMS_SERVICE_URL}
  approvalConversation: "${TEAMS_CHANNEL}"
defaults: { maxDuration: 8h, approvals: 1, requestTtl: 1h }
targets:
  - { name: orders-db, kind: postgres, upstream: "postgres://gw@127.0.0.1:5432/orders", approvers: [lead@example.com] }
  - { name: plain-db, kind: postgres, upstream: "postgres://gw@127.0.0.1:5432/plain", approvers: [U0LEAD42] }
  - { name: slack-db, kind: postgres, upstream: "postgres://gw@127.0.0.1:5432/slack", approvers: ["slack:U0LEAD42"] }
  - { name: teams-db, kind: postgres, upstream: "postgres://gw@127.0.0.1:5432/teams", approvers: ["teams:29:lead"] }
  - { name: vault-db, kind: postgres, upstream: "postgres://gw@127.0.0.1:5432/vault", approvers: [lead@example.com], stepUp: true }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "localhost:15432" }
`,
    {
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: slack.apiUrl,
      MICROSOFT_APP_ID: APP_ID,
      MICROSOFT_APP_PASSWORD: APP_PASSWORD,
      MICROSOFT_TENANT_ID: TENANT,
      TEAMS_SERVICE_URL: fake.serviceUrl,
    },
    { teamsCloud },
  );
}, 60_000);

afterAll(async () => {
  await test?.close();
  await fake?.stop();
  await slack?.stop();
  await provider?.close();
});

// ------------------------------------------------------------------ Teams, as Teams sends it

const teams = teamsActivities({ fake: () => fake, endpoint: teamsEndpoint, members, appId: APP_ID, tenant: TENANT, team: TEAM, channel: TEAMS_CHANNEL });

/** The same activity, signed the same way, but naming the given tenants (undefined: the field is left out). */
function retenanted(activity: Record<string, unknown>, tenants: { channelData: string | undefined; conversation: string | undefined }, conversationId?: string) {
  const conversation = { ...(activity.conversation as Record<string, unknown>) };
  delete conversation.tenantId;
  if (tenants.conversation !== undefined) conversation.tenantId = tenants.conversation;
  if (conversationId) conversation.id = conversationId;
  const channelData = { ...(activity.channelData as Record<string, unknown>) };
  delete channelData.tenant;
  if (tenants.channelData !== undefined) channelData.tenant = { id: tenants.channelData };
  return { ...activity, conversation, channelData };
}

const teamsAnswers = (conversation: string) => fake.personal(conversation).map((a) => activityText(a.activity));

async function teamsRequest(user: string, text: string): Promise<string> {
  const conversation = `a:personal-${user}`;
  const before = teamsAnswers(conversation).length;
  await teams.send(teams.personalMessage(user, text));
  const answer = await eventually(
    () => teamsAnswers(conversation).slice(before).find((t) => /Request req_\w+ sent/.test(t)),
    30_000,
    () => `the answer to ${user} (answers so far: ${JSON.stringify(teamsAnswers(conversation).slice(before))})`,
  );
  return /Request (req_\w+)/.exec(answer)![1]!;
}

const teamsCardFor = (requestId: string): Promise<FakeActivity> =>
  eventually(() => fake.rootsIn(TEAMS_CHANNEL).find((a) => activityText(a.activity).includes(requestId)), 10_000, `the Teams card of ${requestId}`);

const approve = (requestId: string) => ({ jitgate: 1, subject: "request", id: requestId });

// ------------------------------------------------------------------ Slack, as Slack sends it

const { slash, click } = slackRequests({ fake: () => slack, endpoint: slackEndpoint, signingSecret: SIGNING_SECRET });

async function slackRequest(user: string, text: string): Promise<string> {
  await slash(user, text);
  const answer = await eventually(() => slack.ephemeralTexts(user).find((t) => /Request req_\w+ sent/.test(t) && !seenAnswers.has(t)), 10_000, `the answer to ${user}`);
  seenAnswers.add(answer);
  return /Request (req_\w+)/.exec(answer)![1]!;
}
const seenAnswers = new Set<string>();

async function slackApprove(user: string, requestId: string): Promise<void> {
  const root: FakeMessage = await eventually(() => slack.rootsIn(SLACK_CHANNEL).find((m) => messageText(m).includes(requestId)), 10_000, `the Slack message of ${requestId}`);
  await click(user, "jitgate_approve", requestId, root);
}

// ------------------------------------------------------------------ reading what happened

const decisionsOf = (requestId: string) => db().select().from(decisions).where(eq(decisions.requestId, requestId));
const requestCount = async () => (await db().select({ n: count() }).from(accessRequests))[0]!.n;
const identityOf = async (platform: "slack" | "teams" | "oidc" | "console", externalId: string) =>
  (await db().select().from(chatIdentities).where(and(eq(chatIdentities.platform, platform), eq(chatIdentities.externalId, externalId))))[0];
const peopleWithEmail = (email: string) => db().select().from(people).where(eq(people.email, email));
const refusals = async () => (await db().select().from(auditEvents).where(eq(auditEvents.kind, "chat.refused"))).map((row) => row.data as Record<string, unknown>);

// ------------------------------------------------------------------ the tests

describe("configuration", () => {
  const problems = (yaml: string, env: NodeJS.ProcessEnv = {}) => {
    try {
      parseConfig(yaml, "test.yaml", env);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as ConfigError).problems;
    }
    return [];
  };

  it("requires teams.tenantId once teams.appId is set, naming the variable that is missing", () => {
    expect(problems(`teams: { appId: app, appPassword: pw, approvalConversation: "19:a@thread.tacv2" }\n`)).toEqual([
      "teams.tenantId: is required when teams.appId is set: jitgate takes activities and people from this Microsoft Entra tenant only (the directory id, a GUID)",
    ]);
    expect(problems(`teams: { appId: app, appPassword: pw, tenantId: "\${MICROSOFT_TENANT_ID}", approvalConversation: "19:a@thread.tacv2" }\n`)).toEqual([
      "teams.tenantId: is required when teams.appId is set: jitgate takes activities and people from this Microsoft Entra tenant only (the directory id, a GUID) (environment variable MICROSOFT_TENANT_ID is not set)",
    ]);
    // Authentication off (no app id, a development machine): no tenant to name.
    expect(problems(`teams: { approvalConversation: "19:a@thread.tacv2" }\n`)).toEqual([]);
  });

  it("reads approver entries by platform and refuses the ones that do not say which", () => {
    const target = (approvers: string) => `targets:\n  - { name: pg, kind: postgres, upstream: "postgres://h/db", approvers: ${approvers} }\n`;
    expect(problems(target(`[lead@example.com, U0LEAD42, "slack:U0LEAD42", "teams:29:1a2b-teams-user"]`))).toEqual([]);
    expect(
      problems(target(`["29:1a2b-teams-user", "discord:someone", "teams:", "slack:lead@example.com", "two words", "teams:0f8fad5b-d9cb-469f-a165-70867728950e"]`)),
    ).toEqual([
      'targets[0].approvers[0]: "29:1a2b-teams-user" looks like a Teams user id: write it as "teams:29:1a2b-teams-user" (a plain id is a Slack user id)',
      'targets[0].approvers[1]: "discord:someone" names an unknown platform "discord" (write an email, slack:<user id>, teams:<user id>, group:<OIDC group>, slack-group:<id> or @<Slack handle>)',
      'targets[0].approvers[2]: "teams:" names no teams user id after "teams:"',
      'targets[0].approvers[3]: "slack:lead@example.com": an email needs no platform prefix (write "lead@example.com")',
      'targets[0].approvers[4]: "two words" is neither an email nor a chat user id (it contains spaces)',
      'targets[0].approvers[5]: "teams:0f8fad5b-d9cb-469f-a165-70867728950e" is a Microsoft Entra object id: name the Teams user id instead ("teams:29:…", shown by /access whoami), or the email',
    ]);
  });
});

describe("Teams: a member our tenant does not vouch for", () => {
  it("carrying the lead's email, neither approves nor requests, and is linked to no one", async () => {
    const requestId = await teamsRequest("29:dev", "request orders-db 1h INC-1 first");
    const card = await teamsCardFor(requestId);

    // In our tenant's channel (a shared channel), the activity is ours; the member lookup says the
    // member belongs to another tenant, or to none. Their email must not make them the lead.
    for (const outsider of ["29:intruder", "29:tenantless"]) {
      const view = await teams.click(outsider, card, "approve", approve(requestId));
      expect(cardText(view)).toContain("You are not a member of this organization's Teams tenant");
      expect(await identityOf("teams", outsider)).toBeUndefined();
    }
    expect(await decisionsOf(requestId)).toEqual([]);
    expect((await test.gateway.broker.getRequest(requestId)).state).toBe("pending");
    // Nobody became lead@example.com: the lead has not been seen yet, and no outsider took the address.
    expect(await peopleWithEmail("lead@example.com")).toEqual([]);

    // Asking for access fares no better.
    const before = await requestCount();
    await teams.send(teams.personalMessage("29:intruder", "request orders-db 1h INC-2 let me in"));
    await eventually(() => teamsAnswers("a:personal-29:intruder").find((t) => t.includes("not a member of this organization's Teams tenant")), 10_000, "the refusal");
    expect(await requestCount()).toBe(before);
    expect(await identityOf("teams", "29:intruder")).toBeUndefined();
    expect(await refusals()).toEqual(
      expect.arrayContaining([
        { platform: "teams", reason: "unvouched_member", externalId: "29:intruder", tenants: [EVIL], activity: "invoke:approve" },
        { platform: "teams", reason: "unvouched_member", externalId: "29:tenantless", tenants: [], activity: "invoke:approve" },
      ]),
    );
    expect(test.logs.join("")).toContain("refused a Teams member of another tenant");

    // The lead of our tenant approves, and is the only identity of lead@example.com.
    const leadView = await teams.click("29:lead", card, "approve", approve(requestId));
    expect(cardStatus(leadView)).toMatch(/Approved by Lead/);
    const [lead] = await peopleWithEmail("lead@example.com");
    expect((await test.gateway.broker.identitiesOf(lead!)).map((i) => `${i.platform}/${i.externalId}`)).toEqual(["teams/29:lead"]);
  });
});

describe("Teams: activities from another tenant, or from none", () => {
  it("are answered 403 and do nothing, while the configured tenant's still work", async () => {
    // teams-db: Dev already holds a grant on orders-db from the test before.
    const requestId = await teamsRequest("29:dev", "request teams-db 1h second");
    const card = await teamsCardFor(requestId);
    const requestsBefore = await requestCount();
    const refusalsBefore = (await refusals()).length;

    const message = () => teams.personalMessage("29:dev", "request orders-db 1h INC-4 from elsewhere") as unknown as Record<string, unknown>;
    const attempts: [string, Record<string, unknown>][] = [
      ["another tenant", retenanted(message(), { channelData: EVIL, conversation: EVIL }, "a:personal-evil")],
      ["no tenant at all", retenanted(message(), { channelData: undefined, conversation: undefined }, "a:personal-none")],
      ["ours in channelData, another in the conversation", retenanted(message(), { channelData: TENANT, conversation: EVIL }, "a:personal-mixed")],
      ["another in channelData only", retenanted(message(), { channelData: EVIL, conversation: undefined }, "a:personal-evil-only")],
      // The lead's click, replayed from another tenant: correctly signed, still not ours.
      ["a click from another tenant", retenanted(teams.cardAction("29:lead", card, "approve", approve(requestId)), { channelData: EVIL, conversation: EVIL })],
    ];
    for (const [name, activity] of attempts) {
      const response = await teams.post(activity);
      expect(response.status, name).toBe(403);
      expect(await response.text(), name).toBe("");
    }

    // Nothing was done: no request, no decision, no conversation stored, no call to the connector for them.
    expect(await requestCount()).toBe(requestsBefore);
    expect(await decisionsOf(requestId)).toEqual([]);
    const stored = await db().select().from(chatConversations);
    expect(stored.map((c) => c.conversationId).filter((id) => id.includes("evil") || id.includes("none") || id.includes("mixed"))).toEqual([]);
    // A signed message of our tenant sent after them is answered: whatever they would have sent came
    // before it. (Its tenant id in capitals: a GUID is the same tenant whatever the case.)
    const answered = teamsAnswers("a:personal-29:dev").length;
    await teams.send(retenanted(teams.personalMessage("29:dev", "help"), { channelData: TENANT.toUpperCase(), conversation: TENANT }));
    await eventually(() => teamsAnswers("a:personal-29:dev").slice(answered).some((t) => t.includes("Usage of")), 10_000, "the answer to help");
    expect(fake.calls.filter((c) => /personal-(evil|none|mixed)/.test(c.path))).toEqual([]);
    expect(teamsAnswers("a:personal-29:dev").slice(answered).some((t) => /Request req_\w+ sent/.test(t))).toBe(false);

    // Each refusal is audited with the tenants the activity named, and logged.
    expect((await refusals()).slice(refusalsBefore)).toEqual([
      { platform: "teams", reason: "foreign_tenant", externalId: "29:dev", tenants: [EVIL, EVIL], activity: "message" },
      { platform: "teams", reason: "foreign_tenant", externalId: "29:dev", tenants: [], activity: "message" },
      { platform: "teams", reason: "foreign_tenant", externalId: "29:dev", tenants: [TENANT, EVIL], activity: "message" },
      { platform: "teams", reason: "foreign_tenant", externalId: "29:dev", tenants: [EVIL], activity: "message" },
      { platform: "teams", reason: "foreign_tenant", externalId: "29:lead", tenants: [EVIL, EVIL], activity: "invoke:approve" },
    ]);
    expect(test.logs.join("")).toContain("refused a Teams activity from another tenant");

    // The same click from our tenant approves.
    const view = await teams.click("29:lead", card, "approve", approve(requestId));
    expect(cardStatus(view)).toMatch(/Approved by Lead/);
    expect(await decisionsOf(requestId)).toHaveLength(1);
  });
});

describe("approver ids match on their own platform only", () => {
  it("a Teams user whose id is U0LEAD42 cannot approve what the Slack user U0LEAD42 approves", async () => {
    for (const target of ["plain-db", "slack-db"]) {
      const requestId = await teamsRequest("29:dev", `request ${target} 1h from teams`);
      const view = await teams.click("U0LEAD42", await teamsCardFor(requestId), "approve", approve(requestId));
      expect(cardText(view), target).toContain(`not an approver of ${target}`);
      expect(await decisionsOf(requestId), target).toEqual([]);
    }
    const impostor = await identityOf("teams", "U0LEAD42");
    expect(impostor).toBeDefined();

    // The Slack user U0LEAD42 approves both, named plainly and as slack:U0LEAD42.
    for (const target of ["plain-db", "slack-db"]) {
      const requestId = await slackRequest("U0DEV2", `request ${target} 1h from slack`);
      await slackApprove("U0LEAD42", requestId);
      await eventually(async () => (await test.gateway.broker.getRequest(requestId)).state === "approved", 10_000, `${target} approved`);
      const [decision] = await decisionsOf(requestId);
      expect(decision!.approverId, target).toBe((await identityOf("slack", "U0LEAD42"))!.personId);
      expect(decision!.approverId, target).not.toBe(impostor!.personId);
    }

    // teams:29:lead is the Teams user 29:lead, from Teams (asked by the look-alike, who may request).
    const teamsRequestId = await teamsRequest("U0LEAD42", "request teams-db 1h from teams");
    const view = await teams.click("29:lead", await teamsCardFor(teamsRequestId), "approve", approve(teamsRequestId));
    expect(cardStatus(view)).toMatch(/Approved by Lead/);

    // An OIDC subject or a console user whose id reads U0LEAD42 is not the Slack user either.
    for (const platform of ["oidc", "console"] as const) {
      const person = await test.gateway.broker.identify({ platform, externalId: "U0LEAD42", email: null, displayName: "Look-alike" });
      expect(await test.gateway.broker.isApprover("plain-db", person), platform).toBe(false);
      expect(await test.gateway.broker.isApprover("slack-db", person), platform).toBe(false);
    }

    // whocan names each entry's person on its own platform.
    const whocan = await test.gateway.broker.whocan("slack-db");
    expect(whocan.approvers).toEqual([{ entry: "slack:U0LEAD42", name: "Lead FortyTwo" }]);
    expect((await test.gateway.broker.whocan("teams-db")).approvers).toEqual([{ entry: "teams:29:lead", name: "Lead" }]);
  });
});

describe("Slack: an email Slack has not confirmed", () => {
  it("links to no one: the account is not the lead and cannot approve as the lead", async () => {
    const requestId = await slackRequest("U0DEV2", "request orders-db 1h INC-5 slack");
    await slackApprove("U0FAKE", requestId);
    await eventually(() => slack.ephemeralTexts("U0FAKE").find((t) => t.includes("not an approver of orders-db")), 10_000, "the refusal");
    expect(await decisionsOf(requestId)).toEqual([]);
    const fakeIdentity = await identityOf("slack", "U0FAKE");
    const [lead] = await peopleWithEmail("lead@example.com");
    expect(fakeIdentity!.personId).not.toBe(lead!.id);
    expect(fakeIdentity!.email).toBeNull();
    expect((await test.gateway.broker.person(fakeIdentity!.personId))!.email).toBeNull();
  });
});

describe("OIDC: only a verified email links", () => {
  it("a token without email_verified: true carrying the lead's email does not become the lead", async () => {
    const verifier = new OidcVerifier({ issuer: provider.issuer, clientId: CLIENT_ID, redirectUrl: "http://127.0.0.1/oidc/callback", stepUpMaxAge: 300_000 });
    const [lead] = await peopleWithEmail("lead@example.com");
    const forged: [string, Record<string, unknown>][] = [
      ["email_verified false", { sub: "sub-attacker-1", email: "lead@example.com", email_verified: false }],
      ["no email_verified", { sub: "sub-attacker-2", email: "LEAD@example.com" }],
      ['email_verified "true" (a string)', { sub: "sub-attacker-3", email: "lead@example.com", email_verified: "true" }],
    ];
    for (const [name, claims] of forged) {
      await expect(verifier.identify(test.gateway.broker, await provider.sign(claims)), name).rejects.toMatchObject({ code: "oidc_token_email_unverified" });
      expect(await identityOf("oidc", String(claims.sub)), name).toBeUndefined();
    }
    expect((await test.gateway.broker.identitiesOf(lead!)).map((i) => i.platform)).not.toContain("oidc");

    // The lead's own verified token is the lead.
    const { person } = await verifier.identify(test.gateway.broker, await provider.sign({ sub: "sub-lead", email: "lead@example.com", email_verified: true }));
    expect(person.id).toBe(lead!.id);
  });

  it("a real sign-in with an unverified copy of the lead's email cannot complete the lead's step-up approval", async () => {
    const requestId = await teamsRequest("29:dev", "request vault-db 30m rotate keys");
    const view = await teams.click("29:lead", await teamsCardFor(requestId), "approve", approve(requestId));
    const link = /(http:\/\/127\.0\.0\.1:\d+\/oidc\/approve\?challenge=[A-Za-z0-9_-]+)/.exec(cardText(view))![1]!;

    // The link followed through the provider as the account with the lead's unverified email.
    provider.nextLogin.account = "sub-attacker";
    provider.nextLogin.ageSeconds = 0;
    const refused = await browse(link);
    expect(provider.logins.at(-1)).toBe("sub-attacker");
    expect(refused.status).toBe(403);
    expect(refused.body).not.toContain("Approval recorded");
    expect(refused.body).toContain("has not verified the email lead@example.com");
    expect(await decisionsOf(requestId)).toEqual([]);
    expect((await test.gateway.broker.getRequest(requestId)).state).toBe("pending");
    expect(await identityOf("oidc", "sub-attacker")).toBeUndefined();

    // The lead's own sign-in, through the same link, approves.
    provider.nextLogin.account = "sub-lead";
    const page = await browse(link);
    expect(page.body).toContain("Approval recorded");
    expect((await test.gateway.broker.getRequest(requestId)).state).toBe("approved");
  }, 60_000);
});
