import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TeamsCloudOptions } from "../src/bot/teams/teams-app.js";
import { auditEvents, decisions, stepUpChallenges } from "../src/db/schema.js";
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
import { browse, startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";

const APP_ID = "00000000-0000-4000-8000-00000000b0t7";
const APP_PASSWORD = "test-app-password";
const TENANT = "tenant-7777";
const TEAM = "19:team-general@thread.tacv2";
const CHANNEL = "19:approvals@thread.tacv2";

// The same people in Teams and at the OIDC provider: linked by their verified email.
const members = [
  { id: "29:dev", name: "Dev", email: "dev@example.com" },
  { id: "29:lead", name: "Lead", email: "lead@example.com" },
];
const accounts = [
  { sub: "sub-dev", email: "dev@example.com", name: "Dev" },
  { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
];

let fake: FakeBotConnector;
let provider: TestProvider;
let test: Awaited<ReturnType<typeof startOidcGateway>>;

beforeAll(async () => {
  provider = await startTestProvider(accounts);
  fake = new FakeBotConnector(members, APP_ID, APP_PASSWORD, TENANT);
  await fake.start();
  const teamsCloud: TeamsCloudOptions = {
    openIdMetadataUrl: fake.openIdMetadataUrl,
    tokenIssuer: TEAMS_ISSUER,
    credentialsFactory: new FakeTokenCredentialsFactory(`${fake.url}/oauth2/v2.0/token`, APP_ID, APP_PASSWORD) as unknown as TeamsCloudOptions["credentialsFactory"],
  };
  test = await startOidcGateway(
    "oidc_step_up_teams",
    provider.issuer,
    `
teams:
  appId: \${MICROSOFT_APP_ID}
  appPassword: \${MICROSOFT_APP_PASSWORD}
  tenantId: ${TENANT}
  serviceUrl: \${TEAMS_SERVICE_URL}
  approvalConversation: "${CHANNEL}"
targets:
  - name: vault-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/vault
    approvers: [lead@example.com]
    stepUp: true
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "localhost:15432" }
`,
    { MICROSOFT_APP_ID: APP_ID, MICROSOFT_APP_PASSWORD: APP_PASSWORD, TEAMS_SERVICE_URL: fake.serviceUrl },
    { teamsCloud },
  );
}, 60_000);

afterAll(async () => {
  await test?.close();
  await fake?.stop();
  await provider?.close();
});

// ------------------------------------------------------------------ activities as Teams sends them (see teams.test.ts)

const { personalMessage, post, click } = teamsActivities({
  fake: () => fake,
  endpoint: () => `${test.origin}/api/messages`,
  members,
  appId: APP_ID,
  tenant: TENANT,
  team: TEAM,
  channel: CHANNEL,
});

const LINK = /(http:\/\/127\.0\.0\.1:\d+\/oidc\/approve\?challenge=[A-Za-z0-9_-]+)/;

// ------------------------------------------------------------------ the test

describe("step-up approval from Teams", () => {
  it("answers the Approve click with the link in the clicker's card, and records the approval after the sign-in", async () => {
    const { broker, storage } = test.gateway;
    // The request, made in the requester's personal chat with the bot.
    const asked = await post(personalMessage("29:dev", "request vault-db 30m INC-77 rotate keys"));
    expect(asked.status).toBe(200);
    await asked.text();
    const answer = await eventually(
      () => fake.personal("a:personal-29:dev").map((a) => activityText(a.activity)).find((t) => /Request req_\w+ sent: vault-db/.test(t)),
      10_000,
      "the request answer",
    );
    const requestId = /Request (req_\w+)/.exec(answer)![1]!;
    expect((await broker.getRequest(requestId)).origin).toBe("teams");
    const root = await eventually(() => fake.rootsIn(CHANNEL).find((a) => activityText(a.activity).includes(requestId)), 10_000, "the approval card");
    expect(cardActions(cardOf(root.activity)).approve).toEqual({ jitgate: 1, subject: "request", id: requestId });

    // Approve: the clicker's own card carries the one-time link; nothing is decided yet.
    const view = await click("29:lead", root, "approve", { jitgate: 1, subject: "request", id: requestId });
    const text = cardText(view);
    expect(text).toContain("Approving access to vault-db needs a fresh sign-in");
    const link = LINK.exec(text)?.[1];
    // The link names the one challenge the gateway stored for this request and approver.
    const challenges = await storage.db.select().from(stepUpChallenges).where(eq(stepUpChallenges.requestId, requestId));
    expect(challenges).toHaveLength(1);
    const [challenge] = challenges;
    expect(challenge!.id).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(link).toBe(`${test.origin}/oidc/approve?challenge=${challenge!.id}`);
    // Text in a card is not a link in Teams: the clicker also gets a button that opens it.
    const actions = view.actions as { type: string; title?: string; url?: string }[];
    expect(actions.filter((a) => a.type === "Action.OpenUrl")).toEqual([{ type: "Action.OpenUrl", title: "Sign in to approve", url: link }]);
    expect(cardStatus(view)).toMatch(/Pending/);
    expect(await storage.db.select().from(decisions).where(eq(decisions.requestId, requestId))).toEqual([]);
    expect((await broker.getRequest(requestId)).state).toBe("pending");
    expect(challenge!.completedAt).toBeNull();
    expect(cardStatus(cardOf(fake.activities.get(`${CHANNEL}/${root.id}`)!.activity))).toMatch(/Pending/);

    // The approver follows the link through a fresh sign-in at the provider.
    provider.nextLogin.account = "sub-lead";
    provider.nextLogin.ageSeconds = 0;
    const before = provider.logins.length;
    // auth_time has whole seconds.
    const signInStarted = Math.floor(Date.now() / 1000) * 1000;
    const page = await browse(link!);
    expect(provider.logins.slice(before)).toEqual(["sub-lead"]);
    expect(page.status).toBe(200);
    expect(page.body).toContain("Approval recorded");
    expect(page.body).toContain("The requester has the connection line in a direct message.");

    const request = await broker.getRequest(requestId);
    expect(request.state).toBe("approved");
    expect(request.grantId).toMatch(/^grt_/);
    const recorded = await storage.db.select().from(decisions).where(eq(decisions.requestId, requestId));
    expect(recorded.map((d) => d.verdict)).toEqual(["approve"]);
    const [decided] = await storage.db.select().from(auditEvents).where(and(eq(auditEvents.requestId, requestId), eq(auditEvents.kind, "request.decided")));
    // The step-up recorded is this sign-in: not before it started, not after the decision.
    const authTime = Date.parse((decided!.data as { stepUp?: { authTime: string } }).stepUp?.authTime ?? "");
    expect(authTime).toBeGreaterThanOrEqual(signInStarted);
    expect(authTime).toBeLessThanOrEqual(decided!.at.getTime());

    // The grant was issued by the callback, not by a click: the requester still gets the line in their Teams 1:1 chat.
    const dm = await eventually(() => fake.personal("a:personal-29:dev").find((a) => activityText(a.activity).includes("postgres://")), 10_000, "the 1:1 message");
    expect(activityText(dm.activity)).toMatch(/postgres:\/\/dev%40example\.com:[A-Za-z0-9_-]{32}@localhost:15432\/vault-db/);
    // And the shared card shows the approval.
    await eventually(() => /Approved by Lead/.test(cardStatus(cardOf(fake.activities.get(`${CHANNEL}/${root.id}`)!.activity))), 10_000, "the approved card");

    // The link went to the clicker alone: nothing jitgate posted through the connector carries it,
    // checked once the later posts of the same flow (the approved card, the 1:1 line) are there.
    expect([...fake.activities.values()].some((a) => JSON.stringify(a.activity).includes("challenge="))).toBe(false);
  }, 60_000);
});
