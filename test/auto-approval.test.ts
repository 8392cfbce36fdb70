import { and, asc, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock, verifyAuditChain } from "../src/broker/index.js";
import { requestTimeline } from "../src/broker/audit-queries.js";
import { ConfigError, parseConfig } from "../src/config/load.js";
import { accessRequests, auditEvents, decisions, grants, people, stepUpChallenges } from "../src/db/schema.js";
import { createTestDatabase } from "./support/databases.js";
import { buttonsOf, eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";
import { OnCallDoubles } from "./support/on-call-doubles.js";
import { browse, startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";
import { psql } from "./support/slack-driver.js";
import { slackRequests } from "./support/slack-requests.js";

// Issue 19, must 3: auto-approval rules. Requests arrive as Slack sends them (signed, through
// Bolt); PagerDuty and Opsgenie are local doubles answering with their API references' shapes;
// the hours are the injected clock's.

const SIGNING_SECRET = "9a742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN = "xoxb-auto-approval";
const APPROVALS = "C0APPROVALS";
const PD_TOKEN = "pd-token-u+readonly";
const OG_KEY = "og-key-1234";

/** Wednesday 2 December 2026, 10:30 in Berlin (09:30 UTC). */
const WED_1030_BERLIN = new Date("2026-12-02T09:30:00Z");
const at = (iso: string) => new Date(iso);

const clock = new ManualClock(WED_1030_BERLIN);
let fake: FakeSlack;
let doubles: OnCallDoubles;
let provider: TestProvider;
let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let test: Awaited<ReturnType<typeof startOidcGateway>>;
let slack: ReturnType<typeof slackRequests>;

beforeAll(async () => {
  fake = new FakeSlack(
    [
      { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
      { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
      { id: "U0OTHER", email: "other@example.com", realName: "Other" },
    ],
    BOT_TOKEN,
  );
  await fake.start();
  doubles = new OnCallDoubles({ pagerDutyToken: PD_TOKEN, opsgenieKey: OG_KEY });
  await doubles.start();
  doubles.pagerDutyUsers.set("PDEV001", { name: "Dev", email: "Dev@Example.com" });
  doubles.pagerDutyUsers.set("POTHER1", { name: "Other", email: "other@example.com" });
  doubles.pagerDutyUsers.set("PLEAD01", { name: "Lead", email: "lead@example.com" });
  provider = await startTestProvider([
    { sub: "sub-dev", email: "dev@example.com", name: "Dev" },
    { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
  ]);
  upstream = await createTestDatabase("autoapprove_up");
  const admin = new pg.Client({ connectionString: upstream.url });
  await admin.connect();
  await admin.query("CREATE TABLE orders (id int PRIMARY KEY, status text); INSERT INTO orders VALUES (1, 'open'), (2, 'shipped');");
  await admin.end();
  test = await startOidcGateway(
    "autoapprove",
    provider.issuer,
    `
slack: { botToken: ${BOT_TOKEN}, signingSecret: ${SIGNING_SECRET}, apiUrl: "${fake.apiUrl}", approvalChannel: ${APPROVALS} }
defaults: { maxDuration: 8h, approvals: 1, requestTtl: 1h }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: "db-gw.example.com:15432" }
onCall:
  pagerduty:
    token: \${PAGERDUTY_TOKEN}
    apiUrl: "${doubles.pagerDutyUrl}"
  opsgenie:
    apiKey: \${OPSGENIE_API_KEY}
    apiUrl: "${doubles.opsgenieUrl}"
targets:
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    autoApprove:
      - name: on-call-readonly
        who: [dev@example.com, slack:U0LEAD]
        when: { days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00", timezone: Europe/Berlin }
        maxDuration: 2h
        onCall: { provider: pagerduty, schedule: PSCHED1, levels: [1] }
  - name: ops-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    autoApprove:
      - name: opsgenie-on-call
        who: [dev@example.com]
        onCall: { provider: opsgenie, schedule: og-dba }
  - name: vault-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    stepUp: true
    autoApprove:
      - name: vault-anytime
        who: [dev@example.com]
        maxDuration: 1h
`,
    { UPSTREAM_URL: upstream.url, PAGERDUTY_TOKEN: PD_TOKEN, OPSGENIE_API_KEY: OG_KEY },
    { clock },
  );
  slack = slackRequests({ fake: () => fake, endpoint: () => `${test.origin}/slack/events`, signingSecret: SIGNING_SECRET });
}, 60_000);

afterAll(async () => {
  await test?.close();
  await provider?.close();
  await doubles?.stop();
  await fake?.stop();
  await upstream?.drop();
});

const db = () => test.gateway.storage.db;
const threadTexts = (root: FakeMessage) => fake.thread(root.channel, root.ts).map(messageText);
const current = (message: FakeMessage) => fake.messages.get(`${message.channel}/${message.ts}`)!;
const localUri = (line: string) => line.replace("db-gw.example.com:15432", `127.0.0.1:${test.gateway.postgresProxy!.address.port}`);

async function auditOf(requestId: string) {
  return db().select().from(auditEvents).where(eq(auditEvents.requestId, requestId)).orderBy(asc(auditEvents.seq));
}

/** `user` types `/access <text>`; resolves with the answer Slack shows them (the next one to their response URL). */
async function ask(user: string, text: string): Promise<string> {
  const before = fake.ephemeralTexts(user).length;
  await slack.slash(user, text);
  return eventually(() => fake.ephemeralTexts(user)[before], 10_000, `the answer to ${text}`);
}

/** Asks and resolves with the request row, made from `reason` (unique per test). */
async function requestBy(user: string, target: string, duration: string, reason: string) {
  const answer = await ask(user, `request ${target} ${duration} ${reason}`);
  const [request] = await db().select().from(accessRequests).where(eq(accessRequests.reason, reason));
  if (!request) throw new Error(`no request: ${answer}`);
  const root = await eventually(() => fake.rootsIn(APPROVALS).find((m) => messageText(m).includes(request.id)), 10_000, "the approval message");
  return { answer, request, root };
}

/** The request is left for a human: pending, no decision, its Approve button shown, and the refusal audited with `why`. */
async function expectWaitsForHuman(requestId: string, root: FakeMessage, why: RegExp) {
  expect((await test.gateway.broker.getRequest(requestId)).state).toBe("pending");
  expect(await db().select().from(decisions).where(eq(decisions.requestId, requestId))).toEqual([]);
  expect(await db().select().from(grants).where(eq(grants.requestId, requestId))).toEqual([]);
  expect(buttonsOf(current(root)).jitgate_approve).toBe(requestId);
  const refused = (await auditOf(requestId)).find((row) => row.kind === "request.auto_approval_refused");
  expect(refused, "the refusal is audited").toBeDefined();
  const reasons = (refused!.data as { refused: { rule: string; why: string }[] }).refused;
  expect(reasons.map((r) => r.why).join("\n")).toMatch(why);
  expect((await auditOf(requestId)).map((r) => r.kind)).not.toContain("request.auto_approved");
}

describe("auto-approval by an on-call rule (PagerDuty)", () => {
  it("approves on a weekday within hours for the person on call at level 1: rule decision, grant, working line, facts in the thread and the audit", async () => {
    clock.set(WED_1030_BERLIN);
    doubles.pagerDutySchedules.set("PSCHED1", [
      { userId: "PDEV001", level: 1 },
      { userId: "PLEAD01", level: 2 },
    ]);
    const pdBefore = doubles.requests.length;
    const dmsBefore = fake.rootsIn("DU0DEV").length;
    const { answer, request, root } = await requestBy("U0DEV", "orders-db", "1h", "INC-100 replica lag");
    expect(answer).toContain(`Request ${request.id} approved by rule on-call-readonly: grant grt_`);

    // The decision: a row with no approver and the rule's name; the request approved, the grant issued.
    const [decision] = await db().select().from(decisions).where(eq(decisions.requestId, request.id));
    expect(decision).toMatchObject({ approverId: null, rule: "on-call-readonly", verdict: "approve" });
    const approved = await test.gateway.broker.getRequest(request.id);
    expect(approved).toMatchObject({ state: "approved", grantId: expect.stringMatching(/^grt_/) });

    // Audited with the facts it used: the time in the zone, the duration, the on-call answer.
    const audit = await auditOf(request.id);
    expect(audit.map((r) => r.kind)).toEqual(["request.created", "request.auto_approved", "request.approved", "grant.issued"]);
    expect(audit[1]!.actorId).toBeNull();
    // The audit pages' timeline names the rule as the decider; the hash chain holds.
    expect((await requestTimeline(db(), request.id))!.decisions.map((d) => d.approverName)).toEqual(["rule on-call-readonly"]);
    expect(await verifyAuditChain(db())).toMatchObject({ ok: true });
    expect(audit[1]!.data).toMatchObject({
      rule: "on-call-readonly",
      facts: {
        rule: "on-call-readonly",
        time: { local: "Wed 10:30 Europe/Berlin", window: "Mon, Tue, Wed, Thu, Fri 09:00–18:00 Europe/Berlin" },
        durationMs: 3600_000,
        maxDurationMs: 7200_000,
        onCall: { provider: "pagerduty", schedule: "PSCHED1", email: "dev@example.com", level: 1, levels: [1] },
      },
    });

    // PagerDuty was asked as its API says: the schedule, the clock's time, the token header; the email from /users/{id}.
    const asked = doubles.requests.slice(pdBefore).filter((r) => r.provider === "pagerduty");
    expect(asked.length).toBeGreaterThanOrEqual(2);
    expect(asked.every((r) => r.authorization === `Token token=${PD_TOKEN}` && r.status === 200)).toBe(true);
    const oncalls = new URL(asked[0]!.url, "http://x");
    expect(oncalls.pathname).toBe("/pagerduty/oncalls");
    expect(oncalls.searchParams.getAll("schedule_ids[]")).toEqual(["PSCHED1"]);
    expect(oncalls.searchParams.get("since")).toBe(WED_1030_BERLIN.toISOString());
    expect(asked.some((r) => r.url === "/pagerduty/users/PDEV001")).toBe(true);

    // The thread: the rule and its facts; the root: approved by the rule, no buttons.
    await eventually(() => threadTexts(root).find((t) => t.includes("Approved by rule on-call-readonly")), 10_000, "the rule's reply");
    const reply = threadTexts(root).find((t) => t.includes("Approved by rule on-call-readonly"))!;
    expect(reply).toContain("time: Wed 10:30 Europe/Berlin, within Mon, Tue, Wed, Thu, Fri 09:00–18:00 Europe/Berlin");
    expect(reply).toContain("duration: 1h, at most 2h");
    expect(reply).toContain("on call: dev@example.com in PagerDuty schedule PSCHED1 at level 1 (rule: level 1)");
    await eventually(() => messageText(current(root)).includes("Approved by rule on-call-readonly, expires"), 10_000, "the approved status");
    expect(buttonsOf(current(root)).jitgate_approve).toBeUndefined();

    // The DM's line works with psql.
    const line = await eventually(() => {
      const dm = fake.rootsIn("DU0DEV").slice(dmsBefore).find((m) => /postgres:\/\/\S+/.test(messageText(m)));
      return dm ? /postgres:\/\/\S+/.exec(messageText(dm))![0].replace(/```$/, "") : undefined;
    }, 10_000, "the connection line DM");
    const run = await psql(localUri(line), "SELECT count(*) FROM orders;");
    expect(run).toMatchObject({ code: 0 });
    expect(run.output.trim()).toBe("2");

    // An answer is reused briefly: a second look within 60 s asks PagerDuty nothing.
    const cachedBefore = doubles.requests.length;
    clock.advance(30_000);
    const again = await requestBy("U0OTHER", "orders-db", "1h", "INC-101 not in who, same minute");
    expect(again.request.state).toBe("pending");
    clock.advance(5_000);
    await test.gateway.broker.revoke((await test.gateway.broker.person(approved.requesterId))!, { grantId: approved.grantId!, reason: "done" });
    expect(doubles.requests.length).toBe(cachedBefore);
  });

  it("refuses outside hours: Wednesday 19:00 Berlin waits for a human", async () => {
    clock.set(at("2026-12-02T18:00:00Z"));
    const { answer, request, root } = await requestBy("U0DEV", "orders-db", "1h", "INC-102 evening");
    expect(answer).toContain(`Request ${request.id} sent`);
    await expectWaitsForHuman(request.id, root, /Wed 19:00 Europe\/Berlin is outside Mon, Tue, Wed, Thu, Fri 09:00–18:00 Europe\/Berlin/);
  });

  it("refuses on a weekend: Saturday 10:30 Berlin waits for a human", async () => {
    clock.set(at("2026-12-05T09:30:00Z"));
    const { request, root } = await requestBy("U0DEV", "orders-db", "1h", "INC-103 saturday");
    await expectWaitsForHuman(request.id, root, /Sat 10:30 Europe\/Berlin is outside/);
  });

  it("refuses a duration over the rule's maxDuration", async () => {
    clock.set(at("2026-12-03T09:30:00Z"));
    const { request, root } = await requestBy("U0DEV", "orders-db", "3h", "INC-104 long");
    await expectWaitsForHuman(request.id, root, /3h is longer than the rule's 2h/);
  });

  it("refuses someone on call at level 2 when the rule takes level 1", async () => {
    clock.set(at("2026-12-03T10:00:00Z"));
    doubles.pagerDutySchedules.set("PSCHED1", [
      { userId: "PLEAD01", level: 1 },
      { userId: "PDEV001", level: 2 },
    ]);
    const { request, root } = await requestBy("U0DEV", "orders-db", "1h", "INC-105 second tier");
    await expectWaitsForHuman(request.id, root, /dev@example\.com is on call in PagerDuty schedule PSCHED1 at level 2, and the rule takes level 1 only/);
  });

  it("refuses someone not on call, and an on-call shift that has ended", async () => {
    clock.set(at("2026-12-03T10:10:00Z"));
    doubles.pagerDutySchedules.set("PSCHED1", [
      { userId: "PLEAD01", level: 1 },
      // Dev's shift ended before now: an entry the listing still holds does not count.
      { userId: "PDEV001", level: 1, start: "2026-12-02T00:00:00Z", end: "2026-12-03T10:00:00Z" },
    ]);
    const { request, root } = await requestBy("U0DEV", "orders-db", "1h", "INC-106 not on call");
    await expectWaitsForHuman(request.id, root, /dev@example\.com is not on call now in PagerDuty schedule PSCHED1/);
  });

  it("refuses someone the rule does not name, even on call at level 1", async () => {
    clock.set(at("2026-12-03T10:20:00Z"));
    doubles.pagerDutySchedules.set("PSCHED1", [{ userId: "POTHER1", level: 1 }]);
    const { request, root } = await requestBy("U0OTHER", "orders-db", "1h", "INC-107 other on call");
    await expectWaitsForHuman(request.id, root, /not one the rule names/);
  });

  it("fails closed when PagerDuty answers 500: the thread says why, and an approver's click still works", async () => {
    clock.set(at("2026-12-03T10:30:00Z"));
    doubles.pagerDutySchedules.set("PSCHED1", [{ userId: "PDEV001", level: 1 }]);
    doubles.failWith.pagerduty = 500;
    try {
      const { request, root } = await requestBy("U0DEV", "orders-db", "1h", "INC-108 pagerduty down");
      await expectWaitsForHuman(request.id, root, /PagerDuty answered HTTP 500 to \/pagerduty\/oncalls; the rule does not apply without an answer/);
      const note = await eventually(() => threadTexts(root).find((t) => t.includes("No auto-approval")), 10_000, "the thread's note");
      expect(note).toContain("rule on-call-readonly: PagerDuty answered HTTP 500");
      // A failure is not cached: once PagerDuty is back, the next request is approved by the rule…
      doubles.failWith.pagerduty = 0;
      // …but this one waits for (and gets) a human.
      await slack.click("U0LEAD", "jitgate_approve", request.id, root);
      await eventually(async () => (await test.gateway.broker.getRequest(request.id)).state === "approved", 10_000, "the approver's approval");
      const [decision] = await db().select().from(decisions).where(eq(decisions.requestId, request.id));
      expect(decision).toMatchObject({ rule: null, approverId: expect.any(String) });
      await test.gateway.broker.revoke((await test.gateway.broker.person(decision!.approverId!))!, { grantId: (await test.gateway.broker.getRequest(request.id)).grantId!, reason: "done" });
    } finally {
      doubles.failWith.pagerduty = 0;
    }
  });

  it("refuses when PagerDuty cannot be reached at all (connection refused)", async () => {
    clock.set(at("2026-12-03T10:40:00Z"));
    const { OnCallClient } = await import("../src/infra/on-call.js");
    // The gateway's client against a port nobody listens on: the answer is a problem, never an empty on-call list.
    const client = new OnCallClient({ pagerduty: { token: PD_TOKEN, apiUrl: "http://127.0.0.1:9/" } });
    const answer = await client.onCall("pagerduty", "PSCHED1", clock.now());
    expect(answer).toMatchObject({ ok: false, problem: expect.stringContaining("PagerDuty could not be reached") });
    // And a wrong token is a 401 from PagerDuty: a problem too.
    const wrong = new OnCallClient({ pagerduty: { token: "stolen-or-stale", apiUrl: doubles.pagerDutyUrl } });
    expect(await wrong.onCall("pagerduty", "PSCHED1", clock.now())).toMatchObject({ ok: false, problem: "PagerDuty answered HTTP 401 to /pagerduty/oncalls" });
  });
});

describe("what rules never approve", () => {
  it("never approves an extension of a rule-approved grant, nor a scheduled request, even for the person on call within hours", async () => {
    clock.set(at("2026-12-03T12:00:00Z")); // Thursday 13:00 Berlin
    doubles.pagerDutySchedules.set("PSCHED1", [{ userId: "PDEV001", level: 1 }]);
    const { answer, request } = await requestBy("U0DEV", "orders-db", "1h", "INC-110 extend me");
    expect(answer).toContain("approved by rule on-call-readonly");
    const grantId = (await test.gateway.broker.getRequest(request.id)).grantId!;

    // The holder's extend becomes an extension request for approvers: no rule decides it.
    const extend = await ask("U0DEV", `extend ${grantId} 30m more INC-110`);
    const extension = /Extension request (req_\w+) sent for approval/.exec(extend)?.[1];
    expect(extension, extend).toBeDefined();
    expect((await test.gateway.broker.getRequest(extension!)).state).toBe("pending");
    expect(await db().select().from(decisions).where(eq(decisions.requestId, extension!))).toEqual([]);
    expect((await auditOf(extension!)).map((r) => r.kind)).not.toContain("request.auto_approved");
    await test.gateway.broker.revoke((await test.gateway.broker.person(request.requesterId))!, { grantId, reason: "done" });

    // A scheduled request is about a later window: rules are not asked, it waits for approvers.
    const asked = doubles.requests.length;
    clock.advance(120_000);
    const later = await requestBy("U0DEV", "orders-db", "1h from 15:00", "INC-111 later today");
    expect(later.answer).toContain(`Request ${later.request.id} sent`);
    expect(later.request.startsAt).not.toBeNull();
    expect((await test.gateway.broker.getRequest(later.request.id)).state).toBe("pending");
    expect(await db().select().from(decisions).where(eq(decisions.requestId, later.request.id))).toEqual([]);
    expect(doubles.requests.length).toBe(asked);
  });
});

describe("auto-approval by an on-call rule (Opsgenie)", () => {
  it("approves the person on call (inside an escalation), with the GenieKey header; refuses when they are not; fails closed on 503", async () => {
    clock.set(at("2026-12-03T11:00:00Z"));
    doubles.opsgenieSchedules.set("og-dba", [
      { name: "lead@example.com", type: "user" },
      { name: "DBA escalation", type: "escalation", onCallParticipants: [{ name: "dev@example.com", type: "user" }] },
    ]);
    const before = doubles.requests.length;
    const { answer, request, root } = await requestBy("U0DEV", "ops-db", "1h", "INC-200 opsgenie");
    expect(answer).toContain("approved by rule opsgenie-on-call");
    const asked = doubles.requests.slice(before).filter((r) => r.provider === "opsgenie");
    expect(asked).toHaveLength(1);
    expect(asked[0]!.authorization).toBe(`GenieKey ${OG_KEY}`);
    expect(asked[0]!.url).toMatch(/^\/opsgenie\/v2\/schedules\/og-dba\/on-calls\?.*flat=false/);
    expect(new URL(asked[0]!.url, "http://x").searchParams.get("date")).toBe("2026-12-03T11:00:00+00:00");
    const [decision] = await db().select().from(decisions).where(eq(decisions.requestId, request.id));
    expect(decision).toMatchObject({ approverId: null, rule: "opsgenie-on-call" });
    const reply = await eventually(() => threadTexts(root).find((t) => t.includes("Approved by rule opsgenie-on-call")), 10_000, "the rule's reply");
    expect(reply).toContain("on call: dev@example.com in Opsgenie schedule og-dba");
    const grantId = (await test.gateway.broker.getRequest(request.id)).grantId!;
    await test.gateway.broker.revoke((await test.gateway.broker.person(request.requesterId))!, { grantId, reason: "done" });

    clock.advance(120_000);
    doubles.opsgenieSchedules.set("og-dba", [{ name: "lead@example.com", type: "user" }]);
    const off = await requestBy("U0DEV", "ops-db", "1h", "INC-201 opsgenie off call");
    await expectWaitsForHuman(off.request.id, off.root, /dev@example\.com is not on call now in Opsgenie schedule og-dba/);

    clock.advance(120_000);
    doubles.failWith.opsgenie = 503;
    try {
      const down = await requestBy("U0DEV", "ops-db", "1h", "INC-202 opsgenie down");
      await expectWaitsForHuman(down.request.id, down.root, /Opsgenie answered HTTP 503/);
      await eventually(() => threadTexts(down.root).find((t) => t.includes("rule opsgenie-on-call: Opsgenie answered HTTP 503")), 10_000, "the thread's note");
    } finally {
      doubles.failWith.opsgenie = 0;
    }
  });
});

describe("auto-approval on a stepUp target", () => {
  it("waits for the requester's own fresh sign-in; someone else's sign-in records nothing; then the rule approves and the grant is issued", async () => {
    // Sign-ins are the provider's real time: the clock comes back to it.
    clock.set(new Date());
    const answer = await ask("U0DEV", "request vault-db 30m INC-300 rotate keys");
    expect(answer).toContain("meets auto-approval rule vault-anytime, and every grant there rests on a fresh sign-in: open ");
    const link = /(http:\/\/\S+\/oidc\/approve\?challenge=[\w-]+)/.exec(answer)![1]!;
    const [request] = await db().select().from(accessRequests).where(eq(accessRequests.reason, "INC-300 rotate keys"));
    expect(request).toMatchObject({ state: "pending", grantId: null });
    expect(await db().select().from(decisions).where(eq(decisions.requestId, request!.id))).toEqual([]);
    const root = await eventually(() => fake.rootsIn(APPROVALS).find((m) => messageText(m).includes(request!.id)), 10_000, "the approval message");
    await eventually(() => threadTexts(root).find((t) => t.includes("Rule vault-anytime applies; it approves once the requester signs in again")), 10_000, "the waiting note");

    // The approver signing in with the requester's link records nothing.
    Object.assign(provider.nextLogin, { account: "sub-lead", ageSeconds: 0 });
    const wrong = await browse(link);
    expect(wrong.status).toBe(403);
    expect((await test.gateway.broker.getRequest(request!.id)).state).toBe("pending");

    Object.assign(provider.nextLogin, { account: "sub-dev", ageSeconds: 0 });
    const page = await browse(link);
    expect(page.status).toBe(200);
    expect(page.body).toContain("Access to vault-db is approved by rule vault-anytime");
    const issued = await test.gateway.broker.getRequest(request!.id);
    expect(issued).toMatchObject({ state: "approved", grantId: expect.stringMatching(/^grt_/) });
    const [decision] = await db().select().from(decisions).where(eq(decisions.requestId, request!.id));
    expect(decision).toMatchObject({ approverId: null, rule: "vault-anytime" });
    const kinds = (await auditOf(request!.id)).map((r) => r.kind);
    expect(kinds).toEqual(["request.created", "step_up.challenged", "request.auto_approval_awaiting_sign_in", "request.auto_approved", "request.approved", "grant.issued"]);
    const [approvedRow] = await db().select().from(auditEvents).where(and(eq(auditEvents.requestId, request!.id), eq(auditEvents.kind, "request.auto_approved")));
    expect(approvedRow!.data).toMatchObject({ rule: "vault-anytime", stepUp: { authTime: expect.any(String) } });
    const [challenge] = await db().select().from(stepUpChallenges).where(eq(stepUpChallenges.requestId, request!.id));
    expect(challenge!.completedAt).not.toBeNull();
    await eventually(() => threadTexts(root).find((t) => t.includes("Approved by rule vault-anytime")), 10_000, "the rule's reply");

    // The link works once.
    expect((await browse(link)).status).toBe(403);
    expect(await db().select().from(grants).where(eq(grants.requestId, request!.id))).toHaveLength(1);
    await test.gateway.broker.revoke((await test.gateway.broker.person(request!.requesterId))!, { grantId: issued.grantId!, reason: "done" });
  });

  it("a forged Approve click by the requester is refused, and the sign-in link is dead once an approver denied the request", async () => {
    clock.set(new Date());
    const answer = await ask("U0DEV", "request vault-db 30m INC-302 denied later");
    const link = /(http:\/\/\S+\/oidc\/approve\?challenge=[\w-]+)/.exec(answer)![1]!;
    const [request] = await db().select().from(accessRequests).where(eq(accessRequests.reason, "INC-302 denied later"));
    const root = await eventually(() => fake.rootsIn(APPROVALS).find((m) => messageText(m).includes(request!.id)), 10_000, "the approval message");
    // The requester clicking Approve on their own request (the rule's approval is not theirs to give).
    await slack.click("U0DEV", "jitgate_approve", request!.id, root);
    await eventually(() => fake.ephemeralTexts("U0DEV").some((t) => /approve your own/i.test(t)), 10_000, "the self-approval refusal");
    // The approver denies it; the requester's sign-in afterwards approves nothing.
    // (Deny opens a form in Slack; the broker call is what its submission makes.)
    const [lead] = await db().select().from(people).where(eq(people.email, "lead@example.com"));
    await test.gateway.broker.decide(lead!, { requestId: request!.id, verdict: "deny", reason: "not now" });
    expect((await test.gateway.broker.getRequest(request!.id)).state).toBe("denied");
    Object.assign(provider.nextLogin, { account: "sub-dev", ageSeconds: 0 });
    const page = await browse(link);
    expect(page.status).toBe(403);
    expect((await test.gateway.broker.getRequest(request!.id)).state).toBe("denied");
    expect(await db().select().from(grants).where(eq(grants.requestId, request!.id))).toEqual([]);
    expect((await db().select().from(decisions).where(eq(decisions.requestId, request!.id))).map((d) => d.rule)).toEqual([null]);
  });

  it("never approves a stepUp request over the rule's maxDuration, sign-in or not", async () => {
    clock.set(new Date());
    const { answer, request, root } = await requestBy("U0DEV", "vault-db", "2h", "INC-301 too long");
    expect(answer).toContain(`Request ${request.id} sent`);
    await expectWaitsForHuman(request.id, root, /2h is longer than the rule's 1h/);
    expect(await db().select().from(stepUpChallenges).where(eq(stepUpChallenges.requestId, request.id))).toEqual([]);
  });
});

describe("who counts as on call", () => {
  it("a person without a verified email is never on call, and the provider is not even asked; the match is on the email only", async () => {
    const { evaluateRules } = await import("../src/broker/auto-approval.js");
    const { OnCallClient } = await import("../src/infra/on-call.js");
    const client = new OnCallClient({ pagerduty: { token: PD_TOKEN, apiUrl: doubles.pagerDutyUrl } });
    doubles.pagerDutySchedules.set("PSCHED9", [{ userId: "PDEV001", level: 1 }]);
    const rules = [{ name: "r", who: ["slack:U0DEV"], onCall: { provider: "pagerduty" as const, schedule: "PSCHED9", levels: [1] } }];
    const before = doubles.requests.length;
    // Named by their Slack id, but with no email a platform vouched for (an unverified Teams or OIDC email is dropped).
    const unverified = { personId: "p1", email: null, chatIds: [{ platform: "slack", externalId: "U0DEV" }], groups: [] };
    const outcome = await evaluateRules(rules, { who: unverified, durationMs: 60_000, now: clock.now(), onCall: client });
    expect(outcome.applied).toBeUndefined();
    expect(outcome.refused).toEqual([{ rule: "r", why: "the requester has no verified email to match the on-call schedule with" }]);
    expect(doubles.requests.length).toBe(before);
    // The same Slack id with another person's email is not the on-call user.
    const other = { ...unverified, email: "other@example.com" };
    expect((await evaluateRules(rules, { who: other, durationMs: 60_000, now: clock.now(), onCall: client })).refused[0]!.why).toContain("other@example.com is not on call now");
    // The on-call user's email, in any case, is.
    const dev = { ...unverified, email: "DEV@example.com" };
    expect((await evaluateRules(rules, { who: dev, durationMs: 60_000, now: clock.now(), onCall: client })).applied?.onCall).toMatchObject({ email: "dev@example.com", level: 1 });
  });
});

describe("auto-approval configuration", () => {
  const base = (rules: string, onCall = "") => `
${onCall}
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/orders
    approvers: [lead@example.com]
    autoApprove:
${rules}
`;
  const problem = (yaml: string) => {
    try {
      parseConfig(yaml, "test", {});
      return "";
    } catch (error) {
      if (error instanceof ConfigError) return error.message;
      throw error;
    }
  };

  it("refuses rules it could never apply, with clear messages", () => {
    expect(problem(base(`      - { name: a, who: [dev@example.com], onCall: { provider: pagerduty, schedule: P1 } }`))).toContain(
      "asks PagerDuty, and onCall.pagerduty is not configured",
    );
    expect(problem(base(`      - { name: a, who: [dev@example.com], onCall: { provider: opsgenie, schedule: s, levels: [1] } }`, "onCall: { opsgenie: { apiKey: k } }"))).toContain(
      "Opsgenie schedules have no escalation levels",
    );
    expect(problem(base(`      - { name: a, who: [dev@example.com], when: { from: "18:00", to: "09:00", timezone: Europe/Berlin } }`))).toContain("to must be later than from");
    expect(problem(base(`      - { name: a, who: [dev@example.com], when: { from: "09:00", to: "18:00", timezone: Mars/Olympus } }`))).toContain("is not an IANA time zone");
    expect(problem(base(`      - { name: a, who: [dev@example.com], when: { days: [mon, funday], from: "09:00", to: "18:00", timezone: UTC } }`))).toContain("expected a day");
    expect(problem(base(`      - { name: a, who: [] }`))).toContain("names nobody");
    expect(problem(base(`      - { name: a, who: [dev@example.com] }\n      - { name: a, who: [dev@example.com] }`))).toContain('"a" is already the name of autoApprove[0]');
    expect(problem(base(`      - { name: a, who: ["@oncall"] }`))).toContain("is a Slack user group, and slack: is not configured");
    expect(problem(base(`      - { name: a, who: [dev@example.com], when: { from: "09:00", to: "24:00", timezone: UTC }, maxDuration: 2h }`))).toBe("");
  });
});
