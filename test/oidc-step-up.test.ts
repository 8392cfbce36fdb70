import type { IncomingMessage } from "node:http";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NotAnApprover, SelfApproval, StepUpRequired, type Person } from "../src/broker/index.js";
import { auditEvents, stepUpChallenges } from "../src/db/schema.js";
import { SLACK_ACTION_IDS } from "../src/bot/render/block-kit.js";
import { buttonsOf, eventually, FakeSlack, messageText } from "./support/fake-slack.js";
import { browseUntil, browse, startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";
import { slackRequests } from "./support/slack-requests.js";

const SIGNING_SECRET = "0123456789abcdef0123456789abcdef";
let fake: FakeSlack;

let provider: TestProvider;
let test: Awaited<ReturnType<typeof startOidcGateway>>;
let dev: Person, lead: Person, other: Person;

const accounts = [
  { sub: "sub-dev", email: "dev@example.com", name: "Dev" },
  { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
  { sub: "sub-other", email: "other@example.com", name: "Other" },
];

beforeAll(async () => {
  provider = await startTestProvider(accounts);
  fake = new FakeSlack(
    [
      { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
      { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
    ],
    "xoxb-test",
  );
  await fake.start();
  test = await startOidcGateway(
    "oidc_step_up",
    provider.issuer,
    `
slack: { botToken: xoxb-test, signingSecret: ${SIGNING_SECRET}, apiUrl: "${fake.apiUrl}", approvalChannel: C0APPROVALS }
console: { enabled: true, allow: { domains: [example.com] } }
targets:
  - name: vault-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/vault
    approvers: [lead@example.com, other@example.com]
    stepUp: true
  - name: plain-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/plain
    approvers: [lead@example.com]
`,
  );
  const { broker } = test.gateway;
  dev = await broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
  lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
  other = await broker.identify({ platform: "teams", externalId: "29:other", email: "other@example.com", displayName: "Other" });
}, 60_000);

afterAll(async () => {
  await test?.close();
  await provider?.close();
  await fake?.stop();
});

const { click: slackClick } = slackRequests({ fake: () => fake, endpoint: () => `${test.origin}/slack/events`, signingSecret: SIGNING_SECRET });

/** A pending request on the step-up target and the link an Approve click by `approver` answers with. */
let requesters = 0;
/** A new requester each time: one live grant per person and target. */
async function newRequester(): Promise<Person> {
  requesters += 1;
  return test.gateway.broker.identify({ platform: "slack", externalId: `U0REQ${requesters}`, email: `req${requesters}@example.com`, displayName: `Requester ${requesters}` });
}

async function clickApprove(approver: Person = lead): Promise<{ requestId: string; link: string; error: StepUpRequired }> {
  const { broker } = test.gateway;
  const request = await broker.request(await newRequester(), { target: "vault-db", duration: "30m", reason: "INC-9 rotate keys" });
  const error = await broker.decide(approver, { requestId: request.id, verdict: "approve" }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StepUpRequired);
  return { requestId: request.id, link: (error as StepUpRequired).link, error: error as StepUpRequired };
}

const login = (account?: string, ageSeconds?: number) => {
  provider.nextLogin.account = account;
  provider.nextLogin.ageSeconds = ageSeconds;
};

describe("step-up approval", () => {
  it("answers Approve with a one-time link to a fresh sign-in and records nothing yet", async () => {
    const { requestId, link, error } = await clickApprove();
    expect(link).toMatch(new RegExp(`^${test.origin}/oidc/approve\\?challenge=[A-Za-z0-9_-]{32}$`));
    expect(error.message).toContain("approving access to vault-db needs a fresh sign-in: open " + link);
    const { broker } = test.gateway;
    expect(await broker.decisionsOf(requestId)).toEqual([]);
    expect((await broker.getRequest(requestId)).state).toBe("pending");
    const issued = await broker.db.select().from(auditEvents).where(and(eq(auditEvents.requestId, requestId), eq(auditEvents.kind, "step_up.challenged")));
    expect(issued).toHaveLength(1);
    // The link sends the browser to the provider for a new authentication of the approver.
    const response = await fetch(link, { redirect: "manual" });
    expect(response.status).toBe(302);
    const authorize = new URL(response.headers.get("location")!);
    expect(authorize.origin).toBe(provider.issuer);
    expect(Object.fromEntries(authorize.searchParams)).toMatchObject({
      max_age: "0",
      prompt: "login",
      login_hint: "lead@example.com",
      code_challenge_method: "S256",
      client_id: "jitgate",
      redirect_uri: `${test.origin}/oidc/callback`,
    });
  });

  it("records the approval once the approver signs in again, issues the grant, and the link works once", async () => {
    const { requestId, link } = await clickApprove();
    login(undefined, undefined);
    const before = provider.logins.length;
    // auth_time has whole seconds.
    const signInStarted = Math.floor(Date.now() / 1000) * 1000;
    const page = await browse(link);
    expect(provider.logins.slice(before)).toEqual(["sub-lead"]);
    expect(page.status).toBe(200);
    expect(page.body).toContain("Approval recorded");
    expect(page.body).toContain(`Your approval of request ${requestId} (vault-db) is recorded, after a fresh sign-in as lead@example.com.`);
    const { broker } = test.gateway;
    const request = await broker.getRequest(requestId);
    expect(request.state).toBe("approved");
    expect(request.grantId).toMatch(/^grt_/);
    const [decided] = await broker.db.select().from(auditEvents).where(and(eq(auditEvents.requestId, requestId), eq(auditEvents.kind, "request.decided")));
    const stepUp = (decided!.data as { stepUp?: { authTime: string } }).stepUp;
    // The step-up recorded is this sign-in: not before it started, not after the decision.
    const authTime = Date.parse(stepUp?.authTime ?? "");
    expect(authTime).toBeGreaterThanOrEqual(signInStarted);
    expect(authTime).toBeLessThanOrEqual(decided!.at.getTime());
    const [challenge] = await broker.db.select().from(stepUpChallenges).where(eq(stepUpChallenges.requestId, requestId));
    expect(challenge!.completedAt).not.toBeNull();

    const again = await browse(link);
    expect(again.status).toBe(403);
    expect(again.body).toContain("This sign-in link has already been used");
    expect(await broker.decisionsOf(requestId)).toHaveLength(1);
  });

  it("refuses a sign-in with a stale auth_time (older than stepUpMaxAge, or older than the click) and records nothing", async () => {
    const { requestId, link } = await clickApprove();
    const { broker } = test.gateway;
    for (const ageSeconds of [600, 90]) {
      login("sub-lead", ageSeconds);
      const page = await browse(link);
      expect(page.status).toBe(403);
      expect(page.body).toContain("The sign-in was not fresh");
      expect(await broker.decisionsOf(requestId)).toEqual([]);
      expect((await broker.getRequest(requestId)).state).toBe("pending");
    }
    // The link is still good for a fresh sign-in.
    login("sub-lead", 0);
    const page = await browse(link);
    expect(page.body).toContain("Approval recorded");
    expect((await broker.getRequest(requestId)).state).toBe("approved");
  });

  it("refuses a sign-in by another person than the approver who clicked, even another approver", async () => {
    const { requestId, link } = await clickApprove(lead);
    login("sub-other", 0);
    const page = await browse(link);
    expect(page.status).toBe(403);
    expect(page.body).toContain("The sign-in was by someone else than the approver who clicked Approve; nothing was recorded");
    const { broker } = test.gateway;
    expect(await broker.decisionsOf(requestId)).toEqual([]);
    const [challenge] = await broker.db.select().from(stepUpChallenges).where(eq(stepUpChallenges.requestId, requestId));
    expect(challenge!.completedAt).toBeNull();
  });

  it("checks who clicks before opening a challenge; deny and targets without stepUp need no sign-in", async () => {
    const { broker } = test.gateway;
    const requester = await newRequester();
    const request = await broker.request(requester, { target: "vault-db", duration: "30m", reason: "INC-10" });
    await expect(broker.decide(requester, { requestId: request.id, verdict: "approve" })).rejects.toBeInstanceOf(SelfApproval);
    const stranger = await broker.identify({ platform: "slack", externalId: "U0X", email: "x@example.com", displayName: "X" });
    await expect(broker.decide(stranger, { requestId: request.id, verdict: "approve" })).rejects.toBeInstanceOf(NotAnApprover);
    expect(await broker.db.select().from(stepUpChallenges).where(eq(stepUpChallenges.requestId, request.id))).toEqual([]);
    const denied = await broker.decide(other, { requestId: request.id, verdict: "deny", reason: "not now" });
    expect(denied.request.state).toBe("denied");

    // An approver's direct extension would be an approval without a fresh sign-in.
    const { link } = await clickApprove();
    login("sub-lead", 0);
    await browse(link);
    const [granted] = (await broker.activeGrants()).filter((g) => g.target === "vault-db");
    await expect(broker.extend(lead, { grantId: granted!.id, duration: "10m" })).rejects.toThrow(
      `every approval on vault-db needs a fresh sign-in: the holder asks with extend ${granted!.id} <duration>, and approvers approve that request`,
    );

    const plain = await broker.request(dev, { target: "plain-db", duration: "30m", reason: "INC-11" });
    const approved = await broker.decide(lead, { requestId: plain.id, verdict: "approve" });
    // Where step-up is off, a plain click still approves and issues the grant.
    expect(approved.grant).toMatchObject({ target: "plain-db", personId: dev.id, state: "active", requestId: plain.id });
  });

  it("answers an unknown link and an unknown state with a page that says so", async () => {
    const unknown = await fetch(`${test.origin}/oidc/approve?challenge=nope`);
    expect(unknown.status).toBe(403);
    expect(await unknown.text()).toContain("This sign-in link is not known");
    const callback = await fetch(`${test.origin}/oidc/callback?state=forged&code=x`);
    expect(callback.status).toBe(400);
    expect(await callback.text()).toContain("This sign-in is unknown or has expired");
  });
});

describe("console login with OIDC (outside demo mode)", () => {
  const asRequest = (cookie?: string) => ({ headers: cookie ? { cookie } : {} }) as IncomingMessage;

  it("signs in at the provider, keeps a server-side session behind an HttpOnly cookie, and logs out", async () => {
    const auth = test.gateway.oidc!.consoleAuth;
    expect(auth.kind).toBe("oidc");
    expect(await auth.viewerOf(asRequest())).toBeUndefined();
    login("sub-other", 0);
    // Not following the last redirect by hand: the page behind /console is the console's business.
    const start = await fetch(`${test.origin}/oidc/login?returnTo=${encodeURIComponent("/audit?target=vault-db")}`, { redirect: "manual" });
    expect(start.status).toBe(302);
    const authorize = new URL(start.headers.get("location")!);
    expect(authorize.searchParams.get("redirect_uri")).toBe(`${test.origin}/oidc/callback`);
    expect(authorize.searchParams.get("prompt")).toBeNull();
    // The login is bound to this browser by a cookie; the callback completes only with it.
    const loginCookie = start.headers.getSetCookie().find((c) => c.startsWith("jitgate_oidc_login="))!.split(";")[0]!;
    const callback = await browseUntil(authorize.toString(), `${test.origin}/oidc/callback`);
    const answer = await fetch(callback, { redirect: "manual", headers: { cookie: loginCookie } });
    expect(answer.status).toBe(302);
    expect(answer.headers.get("location")).toBe("/audit?target=vault-db");
    const setCookie = answer.headers.getSetCookie().find((c) => c.startsWith("jitgate_session="))!;
    expect(setCookie).toMatch(/^jitgate_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=43200$/);
    const cookie = setCookie.split(";")[0]!;
    const viewer = await auth.viewerOf(asRequest(cookie));
    expect(viewer?.person.id).toBe(other.id);
    expect(viewer?.displayName).toBe("Other");
    // The state is used up: the same callback again does nothing.
    const replay = await fetch(callback, { redirect: "manual", headers: { cookie: loginCookie } });
    expect(replay.status).toBe(400);

    const out = await fetch(`${test.origin}/oidc/logout`, { redirect: "manual", headers: { cookie } });
    expect(out.status).toBe(200);
    expect(await out.text()).toContain("You are signed out of jitgate");
    expect(out.headers.get("set-cookie")).toContain("jitgate_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    expect(await auth.viewerOf(asRequest(cookie))).toBeUndefined();
  });

  it("challenges a visitor with a redirect to /oidc/login, and never returns to another site", async () => {
    const auth = test.gateway.oidc!.consoleAuth;
    const headers: Record<string, string> = {};
    let status = 0;
    const res = { writeHead: (code: number, h: Record<string, string>) => ((status = code), Object.assign(headers, h)), end: () => {} };
    auth.challenge(asRequest(), res as never, "//evil.example.com/x");
    expect(status).toBe(302);
    expect(headers.location).toBe("/oidc/login?returnTo=%2Fconsole");
  });
});

describe("the console outside demo mode", () => {
  it("signs the visitor in at the provider, then runs their commands as the person of their verified email", async () => {
    const first = await fetch(`${test.origin}/console`, { redirect: "manual" });
    expect(first.status).toBe(302);
    expect(first.headers.get("location")).toBe("/oidc/login?returnTo=%2Fconsole");
    expect((await fetch(`${test.origin}/console/login`, { redirect: "manual" })).status).toBe(404); // no picker
    login("sub-dev", 0);
    const start = await fetch(`${test.origin}${first.headers.get("location")}`, { redirect: "manual" });
    const loginCookie = start.headers.getSetCookie().find((c) => c.startsWith("jitgate_oidc_login="))!.split(";")[0]!;
    const callback = await browseUntil(start.headers.get("location")!, `${test.origin}/oidc/callback`);
    const signedIn = await fetch(callback, { redirect: "manual", headers: { cookie: loginCookie } });
    expect(signedIn.headers.get("location")).toBe("/console");
    let cookie = signedIn.headers.getSetCookie().find((c) => c.startsWith("jitgate_session="))!.split(";")[0]!;
    const page = await fetch(`${test.origin}/console`, { redirect: "manual", headers: { cookie } });
    expect(page.status).toBe(200);
    const csrfCookie = page.headers.getSetCookie().find((c) => c.startsWith("jitgate_console_csrf="))!.split(";")[0]!;
    cookie = `${cookie}; ${csrfCookie}`;
    const body = await page.text();
    expect(body).toContain('<span class="viewer">Dev');
    const csrf = /name="csrf" value="([^"]+)"/.exec(body)![1]!;
    const posted = await fetch(`${test.origin}/console/command`, {
      method: "POST",
      redirect: "manual",
      headers: { cookie, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ csrf, text: "whoami" }).toString(),
    });
    expect(posted.status).toBe(303);
    const after = await (await fetch(`${test.origin}/console`, { headers: { cookie } })).text();
    // One person: the Slack identity, the OIDC subject and the console identity, linked by the verified email.
    expect(after).toContain("You are Dev &lt;dev@example.com&gt;; linked identities:");
    expect(after).toContain("Slack: U0DEV (dev@example.com)");
    expect(after).toContain("OIDC: sub-dev (dev@example.com)");
    expect(after).toContain("console: dev@example.com (dev@example.com)");
  });
});


describe("step-up approval from Slack", () => {
  it("answers the Approve click with the link, to the clicker only, and records the approval after the sign-in", async () => {
    const { broker } = test.gateway;
    const request = await broker.request(dev, { target: "vault-db", duration: "30m", reason: "INC-12 from Slack", origin: "slack" });
    const root = await eventually(() => fake.rootsIn("C0APPROVALS").find((m) => JSON.stringify(m.blocks).includes(request.id)), 10_000, "the approval message");
    expect(buttonsOf(root)[SLACK_ACTION_IDS.approve]).toBe(request.id);
    await slackClick("U0LEAD", SLACK_ACTION_IDS.approve, request.id, root);
    const answer = await eventually(() => fake.ephemeralTexts("U0LEAD").find((t) => t.includes("/oidc/approve?challenge=")), 10_000, "the ephemeral link");
    expect(answer).toContain("Approving access to vault-db needs a fresh sign-in");
    const link = /(http:\/\/\S+\/oidc\/approve\?challenge=[A-Za-z0-9_-]+)/.exec(answer)![1]!;
    expect(await broker.decisionsOf(request.id)).toEqual([]);
    expect(fake.ephemeralTexts("U0DEV").some((t) => t.includes("challenge="))).toBe(false);

    login(undefined, 0);
    const page = await browse(link);
    expect(page.body).toContain("Approval recorded");
    expect(page.body).toContain("The requester has the connection line in a direct message.");
    expect((await broker.getRequest(request.id)).state).toBe("approved");
    // The grant was issued by the callback, not by a click: the requester still gets the line in Slack.
    const dm = await eventually(() => fake.rootsIn("DU0DEV").find((m) => messageText(m).includes("vault-db")), 10_000, "the DM with the connection line");
    expect(messageText(dm)).toMatch(/postgres:\/\/dev%40example\.com:[A-Za-z0-9_-]{32}@[^/]+\/vault-db/);
  }, 30_000);
});
