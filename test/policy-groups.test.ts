import { execFile } from "node:child_process";
import type { IncomingMessage } from "node:http";
import { promisify } from "node:util";
import { readFileSync } from "node:fs";
import { generateKeyPair, SignJWT } from "jose";
import { parse as parseYaml } from "yaml";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SLACK_ACTION_IDS } from "../src/bot/render/block-kit.js";
import { NotARequester, verifyAuditChain, type Clock } from "../src/broker/index.js";
import { parseApproverEntry } from "../src/config/approver-entry.js";
import { ConfigError, parseConfig } from "../src/config/load.js";
import { accessRequests, auditEvents, chatIdentities, decisions, personGroups, slackUserGroups } from "../src/db/schema.js";
import { startupBanner } from "../src/main.js";
import { groupsClaim } from "../src/oidc/verifier.js";
import { buttonsOf, eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";
import { browseUntil, startOidcGateway, startTestProvider, type TestAccount, type TestProvider } from "./support/oidc-provider.js";
import { slackRequests } from "./support/slack-requests.js";

/**
 * Groups in policy (issue 19, musts 1 and 2): Slack user groups (`slack-group:S0DBA`, `@dba`)
 * fetched by the background job from the fake Slack Web API, OIDC groups from the `groups` claim of
 * a real provider's ID tokens at each sign-in, and `requesters`. Requests and clicks arrive as Slack
 * sends them (signed, through Bolt); the console login goes through the real provider.
 */

const SIGNING_SECRET = "feedfacefeedfacefeedfacefeedface";
const BOT_TOKEN = "xoxb-groups";
const CHANNEL = "C0APPROVALS";

const slackUsers = [
  { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
  { id: "U0EVE", email: "eve@example.com", realName: "Eve" },
  { id: "U0BOB", email: "bob@example.com", realName: "Bob" },
  { id: "U0CAROL", email: "carol@example.com", realName: "Carol" },
  { id: "U0ANN", email: "ann@example.com", realName: "Ann" },
  { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
];

const accounts: TestAccount[] = [
  { sub: "sub-ann", email: "ann@example.com", name: "Ann", groups: ["dba", "staff"] },
  { sub: "sub-dev", email: "dev@example.com", name: "Dev", groups: ["staff"] },
  { sub: "sub-carol", email: "carol@example.com", name: "Carol" },
  { sub: "sub-zed", email: "zed@example.com", name: "Zed", groups: ["DBA", "dba "] },
];

// Moved forward to make the cached Slack member lists old; everything else reads it as the real time.
let offsetMs = 0;
const clock: Clock = { now: () => new Date(Date.now() + offsetMs) };

let provider: TestProvider;
let fake: FakeSlack;
let test: Awaited<ReturnType<typeof startOidcGateway>>;

beforeAll(async () => {
  provider = await startTestProvider(accounts);
  fake = new FakeSlack(slackUsers, BOT_TOKEN);
  fake.userGroups.set("S0DBA", { id: "S0DBA", handle: "dba", name: "Database admins", users: ["U0BOB"] });
  fake.userGroups.set("S0OPS", { id: "S0OPS", handle: "ops", name: "Operations", users: ["U0CAROL", "U0EVE"] });
  fake.userGroups.set("S0OLD", { id: "S0OLD", handle: "old", name: "Disabled", users: ["U0DEV"], disabled: true });
  await fake.start();
  test = await startOidcGateway(
    "policy_groups",
    provider.issuer,
    `
slack: { botToken: ${BOT_TOKEN}, signingSecret: ${SIGNING_SECRET}, apiUrl: "${fake.apiUrl}", approvalChannel: ${CHANNEL} }
console: { enabled: true, allow: { groups: ["group:dba", "@ops"] } }
proxy: { postgres: { listen: 127.0.0.1:0, allowPlaintextTokens: true } }  # ID tokens from loopback without TLS: local use
targets:
  - name: by-id
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/by_id
    approvers: [slack-group:S0DBA]
  - name: by-handle
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/by_handle
    approvers: ["@DBA"]
  - name: by-oidc
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/by_oidc
    approvers: [group:dba]
  - name: by-disabled
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/by_disabled
    approvers: [lead@example.com, "@old"]
  - name: restricted
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/restricted
    approvers: [lead@example.com]
    requesters: [ann@example.com, "@ops"]
`,
    {},
    { clock },
  );
}, 60_000);

afterAll(async () => {
  await test?.close();
  await provider?.close();
  await fake?.stop();
});

// ------------------------------------------------------------------ Slack, as Slack sends it

const slack = slackRequests({ fake: () => fake, endpoint: () => `${test.origin}/slack/events`, signingSecret: SIGNING_SECRET });
let sent = 0;
/** `/access <text>` from `user`; the answers go to the response_url labelled with a fresh label, returned. */
async function slash(user: string, text: string): Promise<string> {
  const label = `${user}-${++sent}`;
  await slack.slash(user, text, label);
  return label;
}

const answerTo = (label: string) => eventually(() => fake.ephemeralTexts(label)[0], 10_000, `the answer to ${label}`);

async function click(user: string, requestId: string, message: FakeMessage): Promise<string> {
  const label = `${user}-click-${++sent}`;
  await slack.click(user, SLACK_ACTION_IDS.approve, requestId, message, label);
  return label;
}

/** `user` asks for `target` in Slack; resolves with the request id and its approval message. */
async function requestFromSlack(user: string, target: string): Promise<{ requestId: string; root: FakeMessage }> {
  const answer = await answerTo(await slash(user, `request ${target} 30m INC-19 on call`));
  const requestId = /Request (req_\w+) sent/.exec(answer)?.[1];
  if (!requestId) throw new Error(`no request: ${answer}`);
  const root = await eventually(() => fake.rootsIn(CHANNEL).find((m) => messageText(m).includes(requestId)), 10_000, "the approval message");
  expect(buttonsOf(root)[SLACK_ACTION_IDS.approve]).toBe(requestId);
  return { requestId, root };
}

const decisionsOn = (requestId: string) => test.gateway.storage.db.select().from(decisions).where(eq(decisions.requestId, requestId));
const stateOf = async (requestId: string) => (await test.gateway.broker.getRequest(requestId)).state;
const personOf = async (platform: "slack" | "oidc", externalId: string) =>
  (await test.gateway.storage.db.select().from(chatIdentities).where(and(eq(chatIdentities.platform, platform), eq(chatIdentities.externalId, externalId))))[0]?.personId;

/** Clicks Approve as `user` and waits for the click's effect: a decision row, or the refusal answered to the clicker. */
async function approveAs(user: string, requestId: string, root: FakeMessage): Promise<"approved" | string> {
  const label = await click(user, requestId, root);
  return eventually(
    async () => {
      const refusal = fake.ephemeralTexts(label)[0];
      if (refusal && /not an approver/i.test(refusal)) return refusal;
      return (await stateOf(requestId)) === "approved" ? "approved" : undefined;
    },
    10_000,
    `${user}'s click on ${requestId}`,
  );
}

// ------------------------------------------------------------------ the console login, through the provider


/** A console sign-in as `account`: the callback's status, and the session cookie when one was set. */
async function consoleSignIn(account: string): Promise<{ status: number; body: string; cookie: string | undefined }> {
  provider.nextLogin.account = account;
  provider.nextLogin.ageSeconds = 0;
  const start = await fetch(`${test.origin}/oidc/login?returnTo=%2Fconsole`, { redirect: "manual" });
  const loginCookie = start.headers.getSetCookie().find((c) => c.startsWith("jitgate_oidc_login="))!.split(";")[0]!;
  const callback = await browseUntil(start.headers.get("location")!, `${test.origin}/oidc/callback`);
  const answer = await fetch(callback, { redirect: "manual", headers: { cookie: loginCookie } });
  const cookie = answer.headers.getSetCookie().find((c) => c.startsWith("jitgate_session=") && !c.startsWith("jitgate_session=;"))?.split(";")[0];
  return { status: answer.status, body: await answer.text(), cookie };
}

/** psql as \`jitgate connect\` runs it after \`jitgate login\`: user oidc, the ID token in PGPASSWORD. */
async function psqlWithToken(token: string, database: string): Promise<{ code: number; stderr: string }> {
  const port = test.gateway.postgresProxy!.address.port;
  try {
    const { stderr } = await promisify(execFile)("psql", [`host=127.0.0.1 port=${port} user=oidc dbname=${database} sslmode=disable`, "-X", "-c", "SELECT 1"], {
      env: { ...process.env, PGPASSWORD: token, PGCONNECT_TIMEOUT: "5" },
      timeout: 30_000,
    });
    return { code: 0, stderr };
  } catch (error) {
    const e = error as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

const viewerOf = (cookie: string) => test.gateway.oidc!.consoleAuth.viewerOf({ headers: { cookie } } as IncomingMessage);
const refreshSlackGroups = () => test.gateway.jobs.slackUserGroups!.runNow();

// ------------------------------------------------------------------ the tests

describe("Slack user groups in approvers", () => {
  it("fetches the named groups in the background (usergroups.list, usergroups.users.list), and nothing else", async () => {
    await refreshSlackGroups();
    const cached = await test.gateway.storage.db.select().from(slackUserGroups);
    // Named: S0DBA by id and by handle (@DBA, case-insensitive), S0OPS by handle. S0OLD is disabled: not fetched.
    expect(cached.map((g) => [g.id, g.handle, g.members]).sort()).toEqual([
      ["S0DBA", "dba", ["U0BOB"]],
      ["S0OPS", "ops", ["U0CAROL", "U0EVE"]],
    ]);
    expect(fake.callsOf("usergroups.list").length).toBeGreaterThan(0);
    const asked = new Set(fake.callsOf("usergroups.users.list").map((c) => c.args.usergroup));
    expect(asked).toEqual(new Set(["S0DBA", "S0OPS"]));
    // Said once in the log: @old names no enabled group, so it admits nobody.
    expect(test.logs.some((l) => l.includes("policy names Slack user groups the workspace does not have") && l.includes("@old"))).toBe(true);
  });

  it("a member of slack-group:S0DBA approves; a non-member does not; removed at Slack and refreshed, the member no longer does", async () => {
    await refreshSlackGroups();
    const first = await requestFromSlack("U0DEV", "by-id");
    expect(await approveAs("U0CAROL", first.requestId, first.root)).toMatch(/You are not an approver of by-id/);
    expect(await decisionsOn(first.requestId)).toEqual([]);
    expect(await approveAs("U0BOB", first.requestId, first.root)).toBe("approved");
    const [decision] = await decisionsOn(first.requestId);
    expect(decision).toMatchObject({ verdict: "approve", approverId: await personOf("slack", "U0BOB") });

    // The same group by its handle.
    const byHandle = await requestFromSlack("U0DEV", "by-handle");
    expect(await approveAs("U0BOB", byHandle.requestId, byHandle.root)).toBe("approved");

    // An admin takes Bob out of @dba; the next refresh takes the right away.
    fake.userGroups.get("S0DBA")!.users = [];
    await refreshSlackGroups();
    for (const target of ["by-id", "by-handle"]) {
      const after = await requestFromSlack("U0EVE", target);
      expect(await approveAs("U0BOB", after.requestId, after.root)).toMatch(new RegExp(`not an approver of ${target}`));
      expect(await decisionsOn(after.requestId)).toEqual([]);
      expect(await stateOf(after.requestId)).toBe("pending");
    }
    const changes = await test.gateway.storage.db.select().from(auditEvents).where(eq(auditEvents.kind, "slack.user_group_changed"));
    expect(changes.some((e) => e.data.id === "S0DBA" && (e.data.removed as string[]).includes("U0BOB"))).toBe(true);
    fake.userGroups.get("S0DBA")!.users = ["U0BOB"];
    await refreshSlackGroups();
  });

  it("a failed fetch, whole or half-way, changes nothing: no group is emptied or filled from a partial answer", async () => {
    const { db } = test.gateway.storage;
    await refreshSlackGroups();
    const before = await db.select().from(slackUserGroups);
    fake.userGroups.get("S0DBA")!.users = ["U0BOB", "U0DEV"];
    fake.userGroups.get("S0OPS")!.users = [];
    try {
      fake.failNext("usergroups.list", "missing_scope");
      await expect(refreshSlackGroups()).rejects.toThrow(/missing_scope/);
      // The second group's member list fails after the first one's arrived: nothing is stored either.
      fake.failNext("usergroups.users.list", "internal_error", (args) => args.usergroup === "S0OPS");
      await expect(refreshSlackGroups()).rejects.toThrow(/internal_error/);
      expect(fake.callsOf("usergroups.users.list").at(-2)?.args.usergroup).toBe("S0DBA"); // S0DBA's members had arrived
      expect(await db.select().from(slackUserGroups)).toEqual(before);
      const dev = (await test.gateway.broker.person((await personOf("slack", "U0DEV"))!))!;
      expect(await test.gateway.broker.isApprover("by-id", dev)).toBe(false);
    } finally {
      fake.userGroups.get("S0DBA")!.users = ["U0BOB"];
      fake.userGroups.get("S0OPS")!.users = ["U0CAROL", "U0EVE"];
      await refreshSlackGroups();
    }
  });

  it("a disabled group, a look-alike id on another platform and a stale member list approve nothing", async () => {
    const { broker } = test.gateway;
    await refreshSlackGroups();
    // Dev is in the disabled S0OLD at Slack: a disabled group admits nobody.
    const dev = (await broker.person((await personOf("slack", "U0DEV"))!))!;
    expect(await broker.isApprover("by-disabled", dev)).toBe(false);
    // A Teams user (or an OIDC subject) whose id reads U0BOB is not the Slack member U0BOB.
    const teamsBob = await broker.identify({ platform: "teams", externalId: "U0BOB", email: null, displayName: "Not Bob" });
    const oidcBob = await broker.identify({ platform: "oidc", externalId: "U0BOB", email: null, displayName: "Not Bob either" });
    expect(await broker.isApprover("by-id", teamsBob)).toBe(false);
    expect(await broker.isApprover("by-id", oidcBob)).toBe(false);
    const bob = (await broker.person((await personOf("slack", "U0BOB"))!))!;
    expect(await broker.isApprover("by-id", bob)).toBe(true);
    // Slack unreachable for three refresh intervals: the old copy counts for nobody (fail closed)…
    offsetMs = 3 * 5 * 60_000 + 1_000;
    try {
      expect(await broker.isApprover("by-id", bob)).toBe(false);
      // …until a refresh works again.
      await refreshSlackGroups();
      expect(await broker.isApprover("by-id", bob)).toBe(true);
    } finally {
      offsetMs = 0;
      await refreshSlackGroups();
    }
  });
});

describe("OIDC groups in approvers and console.allow", () => {
  it("a groups claim with dba makes group:dba match after the sign-in; a later sign-in without it takes it away", async () => {
    const ann = accounts.find((a) => a.sub === "sub-ann")!;
    const before = await requestFromSlack("U0DEV", "by-oidc");
    // Ann is known from Slack but has not signed in: no OIDC groups yet.
    expect(await approveAs("U0ANN", before.requestId, before.root)).toMatch(/not an approver of by-oidc/);

    const signedIn = await consoleSignIn("sub-ann");
    expect(signedIn.status).toBe(302); // console.allow admits group:dba
    expect(signedIn.cookie).toBeDefined();
    const annId = await personOf("slack", "U0ANN");
    expect(await personOf("oidc", "sub-ann")).toBe(annId); // one person, linked by the verified email
    const [stored] = await test.gateway.storage.db.select().from(personGroups).where(eq(personGroups.personId, annId!));
    expect(stored).toMatchObject({ source: "oidc", groups: ["dba", "staff"] });
    expect(await approveAs("U0ANN", before.requestId, before.root)).toBe("approved");
    expect(await viewerOf(signedIn.cookie!)).toMatchObject({ person: { id: annId } });

    // Ann leaves dba at the provider. Her next sign-in is refused by console.allow, says so, and
    // still refreshes her groups: the open session ends and group:dba approves nothing any more.
    ann.groups = ["staff"];
    try {
      const again = await consoleSignIn("sub-ann");
      expect(again.status).toBe(403);
      expect(again.cookie).toBeUndefined();
      const [refreshed] = await test.gateway.storage.db.select().from(personGroups).where(eq(personGroups.personId, annId!));
      expect(refreshed!.groups).toEqual(["staff"]);
      expect(refreshed!.refreshedAt.getTime()).toBeGreaterThan(stored!.refreshedAt.getTime());
      expect(await viewerOf(signedIn.cookie!)).toBeUndefined();
      const after = await requestFromSlack("U0EVE", "by-oidc");
      expect(await approveAs("U0ANN", after.requestId, after.root)).toMatch(/not an approver of by-oidc/);
      expect(await decisionsOn(after.requestId)).toEqual([]);
      const changes = await test.gateway.storage.db.select().from(auditEvents).where(and(eq(auditEvents.kind, "person.groups_changed"), eq(auditEvents.actorId, annId!)));
      expect(changes.map((e) => e.data)).toEqual([
        { source: "oidc", added: ["dba", "staff"], removed: [] },
        { source: "oidc", added: [], removed: ["dba"] },
      ]);
    } finally {
      ann.groups = ["dba", "staff"];
    }
  });

  it("an ID token at the proxy (the CLI's login) refreshes the groups too; a forged one changes nothing", async () => {
    const { broker } = test.gateway;
    const claims = { sub: "sub-cli", email: "cli@example.com", email_verified: true, name: "Cli" };
    // No live grant: psql is refused, but the token was verified, so its groups are the person's now.
    const withDba = await psqlWithToken(await provider.sign({ ...claims, groups: ["dba"] }), "by-oidc");
    expect(withDba.code).not.toBe(0);
    expect(withDba.stderr).toContain("no live access grant");
    const cliId = await personOf("oidc", "sub-cli");
    const cli = (await broker.person(cliId!))!;
    expect(await broker.isApprover("by-oidc", cli)).toBe(true);

    // A token signed with another key, claiming dba for the same subject: refused, nothing recorded.
    const { privateKey } = await generateKeyPair("RS256");
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ ...claims, iss: provider.issuer, aud: "jitgate", iat: now, exp: now + 600, groups: ["dba", "root"] })
      .setProtectedHeader({ alg: "RS256", kid: "test-key" })
      .sign(privateKey);
    const refused = await psqlWithToken(forged, "by-oidc");
    expect(refused.stderr).toContain("signature does not verify");
    const [stored] = await test.gateway.storage.db.select().from(personGroups).where(eq(personGroups.personId, cliId!));
    expect(stored!.groups).toEqual(["dba"]);

    // The next real token without the claim: no groups any more.
    await psqlWithToken(await provider.sign(claims), "by-oidc");
    expect(await broker.isApprover("by-oidc", cli)).toBe(false);
  });

  it("console.allow with groups admits a member of @ops (Slack) and refuses a non-member, keeping no record of them", async () => {
    await refreshSlackGroups();
    // Carol is in @ops at Slack (jitgate knows her Slack identity once she used /access), and has no OIDC groups.
    await answerTo(await slash("U0CAROL", "whoami")); // jitgate knows her Slack identity
    const carol = await consoleSignIn("sub-carol");
    expect(carol.status).toBe(302);
    expect((await viewerOf(carol.cookie!))?.person.id).toBe(await personOf("slack", "U0CAROL"));

    // Dev's token says groups [staff]: neither dba nor @ops. Refused, and no OIDC identity is kept.
    const dev = await consoleSignIn("sub-dev");
    expect(dev.status).toBe(403);
    expect(dev.body).toContain("Not admitted");
    expect(dev.body).toContain("You signed in as dev@example.com, but this jitgate console is open only to the organisation&#39;s people, and neither that address nor a group of yours is one of them.");
    expect(dev.cookie).toBeUndefined();
    expect(await personOf("oidc", "sub-dev")).toBeUndefined();
    // Group names match exactly: "DBA" and "dba " in a token are not dba.
    const zed = await consoleSignIn("sub-zed");
    expect(zed.status).toBe(403);
    expect(await personOf("oidc", "sub-zed")).toBeUndefined();

    // Carol leaves @ops at Slack: after the refresh her open session no longer admits her.
    fake.userGroups.get("S0OPS")!.users = ["U0EVE"];
    try {
      await refreshSlackGroups();
      expect(await viewerOf(carol.cookie!)).toBeUndefined();
    } finally {
      fake.userGroups.get("S0OPS")!.users = ["U0CAROL", "U0EVE"];
      await refreshSlackGroups();
    }
  });
});

describe("who may request", () => {
  it("refuses a request from someone the requesters do not name, with the reason; no request row, an audit row", async () => {
    const { db } = test.gateway.storage;
    const label = await slash("U0DEV", "request restricted 30m INC-19 let me in");
    expect(await answerTo(label)).toContain("You may not request restricted: its requesters do not include you");
    const devId = await personOf("slack", "U0DEV");
    expect(await db.select().from(accessRequests).where(and(eq(accessRequests.target, "restricted"), eq(accessRequests.requesterId, devId!)))).toEqual([]);
    const refused = await eventually(
      async () => (await db.select().from(auditEvents).where(and(eq(auditEvents.kind, "request.refused"), eq(auditEvents.actorId, devId!))))[0],
      10_000,
      "the request.refused row",
    );
    expect(refused).toMatchObject({ target: "restricted", requestId: null, data: { why: "not_a_requester", duration: "30m", reason: "INC-19 let me in", origin: "slack" } });
    expect(fake.rootsIn(CHANNEL).some((m) => messageText(m).includes("let me in"))).toBe(false);
    expect(await verifyAuditChain(db)).toMatchObject({ ok: true });

    // The broker refuses it whichever way it comes (not only through the command).
    const dev = (await test.gateway.broker.person(devId!))!;
    await expect(test.gateway.broker.request(dev, { target: "restricted", duration: "30m", reason: "INC-19 api" })).rejects.toBeInstanceOf(NotARequester);
  });

  it("takes the request from a member of a group the requesters name (@ops) and from a person they name", async () => {
    await refreshSlackGroups();
    const { requestId } = await requestFromSlack("U0CAROL", "restricted");
    expect(await stateOf(requestId)).toBe("pending");
    // Ann is named by email (her Slack email is the one Slack confirms).
    const ann = await requestFromSlack("U0ANN", "restricted");
    expect(await stateOf(ann.requestId)).toBe("pending");
  });

  it("refuses more time to a holder the requesters no longer name, with the reason; audited, no extension request", async () => {
    const { broker, storage } = test.gateway;
    await refreshSlackGroups();
    const { requestId, root } = await requestFromSlack("U0EVE", "restricted"); // Eve is in @ops
    expect(await approveAs("U0LEAD", requestId, root)).toBe("approved");
    const eve = (await broker.person((await personOf("slack", "U0EVE"))!))!;
    const [grant] = (await broker.list(eve)).grants;
    expect(grant?.target).toBe("restricted");

    fake.userGroups.get("S0OPS")!.users = ["U0CAROL"];
    try {
      await refreshSlackGroups();
      expect(await answerTo(await slash("U0EVE", `extend ${grant!.id} 30m`))).toContain("You may not request restricted");
      const extensions = await storage.db.select().from(accessRequests).where(and(eq(accessRequests.kind, "extension"), eq(accessRequests.grantId, grant!.id)));
      expect(extensions).toEqual([]);
      const refused = await storage.db.select().from(auditEvents).where(and(eq(auditEvents.kind, "request.refused"), eq(auditEvents.actorId, eve.id)));
      expect(refused.map((e) => e.data)).toEqual([{ why: "not_a_requester", extend: grant!.id, duration: "30m" }]);
    } finally {
      fake.userGroups.get("S0OPS")!.users = ["U0CAROL", "U0EVE"];
      await refreshSlackGroups();
    }
    // Back in the group, the holder's extend is an extension request again.
    expect(await answerTo(await slash("U0EVE", `extend ${grant!.id} 30m`))).toContain("Extension request");
  });

  it("targets, whocan and an unknown target's answer show only what the person may request", async () => {
    await refreshSlackGroups();
    const forDev = await answerTo(await slash("U0DEV", "targets"));
    expect(forDev).toContain("by-id:");
    expect(forDev).not.toContain("restricted");
    const forCarol = await answerTo(await slash("U0CAROL", "targets"));
    expect(forCarol).toContain("restricted:");

    expect(await answerTo(await slash("U0DEV", "whocan restricted"))).toContain("You may not request restricted");
    expect(await answerTo(await slash("U0CAROL", "whocan restricted"))).toContain("restricted needs 1 approval from:");
    // An unknown target is answered with the targets this person may request, not all of them.
    const unknown = await answerTo(await slash("U0DEV", "whocan nope"));
    expect(unknown).toContain('Unknown target "nope"');
    expect(unknown).not.toContain("restricted");
    // So is a request for one.
    const unknownRequest = await answerTo(await slash("U0DEV", "request nope 1h INC-1 look"));
    expect(unknownRequest).toContain('Unknown target "nope"');
    expect(unknownRequest).not.toContain("restricted");
    // Groups are shown as groups.
    expect(await answerTo(await slash("U0DEV", "whocan by-handle"))).toContain("members of the Slack user group @dba");
  });

  it("says in the banner which targets anyone may request", () => {
    const banner = startupBanner(test.gateway, "test");
    expect(banner).toContain("warning: anyone who reaches the bot may request by-id, by-handle, by-oidc, by-disabled (no requesters: listed)");
    expect(banner).toContain("OIDC login, open to members of group:dba, @ops");
  });
});

describe("the Slack app manifest", () => {
  it("asks for the scope of every Web API method jitgate called here, usergroups:read included", () => {
    const manifest = parseYaml(readFileSync(new URL("../slack/manifest.yaml", import.meta.url), "utf8")) as { oauth_config: { scopes: { bot: string[] } } };
    // The scopes each method needs, from its page in https://docs.slack.dev/reference/methods.
    const needs: Record<string, string> = {
      "usergroups.list": "usergroups:read",
      "usergroups.users.list": "usergroups:read",
      "users.info": "users:read",
      "chat.postMessage": "chat:write",
      "chat.update": "chat:write",
      "chat.postEphemeral": "chat:write",
      "conversations.open": "im:write",
    };
    const called = new Set(fake.calls.map((c) => c.method).filter((m) => m !== "response_url"));
    expect(called.has("usergroups.list") && called.has("usergroups.users.list")).toBe(true);
    for (const method of called) {
      expect(needs[method], `the scope of ${method}`).toBeDefined();
      expect(manifest.oauth_config.scopes.bot).toContain(needs[method]);
    }
  });
});

describe("group entries in the configuration", () => {
  it("reads group:, slack-group: and @handle, and refuses what would name nobody", () => {
    expect(parseApproverEntry("group:dba")).toEqual({ kind: "oidc-group", name: "dba" });
    expect(parseApproverEntry("group:DB Admins")).toEqual({ kind: "oidc-group", name: "DB Admins" });
    expect(parseApproverEntry("slack-group:S0DBA")).toEqual({ kind: "slack-group", id: "S0DBA" });
    expect(parseApproverEntry("@DBA")).toEqual({ kind: "slack-handle", handle: "dba" });
    expect(parseApproverEntry("group:")).toEqual({ problem: '"group:" names no group after "group:"' });
    expect(parseApproverEntry("slack-group:dba")).toMatchObject({ problem: expect.stringContaining("not a Slack user group id") });
    expect(parseApproverEntry("@")).toMatchObject({ problem: expect.stringContaining("not a Slack user group handle") });
    expect(parseApproverEntry("team:dba")).toMatchObject({ problem: expect.stringContaining("group:<OIDC group>") });
  });

  it("reads a groups claim as a list of names only", () => {
    expect(groupsClaim(["dba", "dba", " ops ", 7, null, ""])).toEqual(["dba", " ops "]);
    expect(groupsClaim("dba")).toEqual(["dba"]);
    expect(groupsClaim(undefined)).toEqual([]);
    expect(groupsClaim({ dba: true })).toEqual([]);
  });

  const base = `
database: postgres://u@h/db
targets:
  - name: t
    kind: postgres
    upstream: postgres://gw@h/t
`;
  const problems = (yaml: string) => {
    try {
      parseConfig(yaml, "test", {});
      return [];
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
  };

  it("refuses empty requesters, a Slack group without slack:, and a group in console.allow.groups that is a person", () => {
    expect(problems(`${base}    approvers: [lead@example.com]\n    requesters: []\n`)).toEqual([
      "targets[0].requesters: names nobody: list people or groups, or leave requesters out (then everyone may request)",
    ]);
    expect(problems(`${base}    approvers: ["@dba"]\n`)).toEqual([
      "targets[0].approvers: @dba is a Slack user group, and slack: is not configured (jitgate learns Slack groups from the Slack app)",
    ]);
    expect(problems(`${base}    approvers: [lead@example.com]\n    requesters: [slack-group:S0OPS]\n`)).toEqual([
      "targets[0].requesters: slack-group:S0OPS is a Slack user group, and slack: is not configured (jitgate learns Slack groups from the Slack app)",
    ]);
    // The same for auditors and break-glass lists: a Slack group there would name nobody either.
    expect(problems(`auditors: ["@audit"]\n${base}    approvers: [lead@example.com]\n    breakGlass: { allow: [slack-group:S0SRE] }\n`)).toEqual([
      "targets[0].breakGlass.allow: slack-group:S0SRE is a Slack user group, and slack: is not configured (jitgate learns Slack groups from the Slack app)",
      "auditors: @audit is a Slack user group, and slack: is not configured (jitgate learns Slack groups from the Slack app)",
    ]);
    expect(problems(`${base}    approvers: [group:dba]\n    approvals: 2\n`)).toEqual([]); // a group may hold a quorum of two
    expect(problems(`${base}    approvers: [lead@example.com, group:dba]\n    requesters: [group:dev, ann@example.com]\n`)).toEqual([]);
    const withConsole = `${base}    approvers: [lead@example.com]\noidc: { issuer: "https://id.example.com/", clientId: c, redirectUrl: "https://gw.example.com/oidc/callback" }\nconsole:\n  enabled: true\n  allow: { groups: [ann@example.com] }\n`;
    expect(problems(withConsole)).toEqual([
      'console.allow.groups[0]: "ann@example.com" is not a group (write group:<OIDC group>, slack-group:<id> or @<Slack handle>; list people under emails)',
    ]);
    expect(problems(withConsole.replace("groups: [ann@example.com]", "groups: []"))).toEqual([
      "console.allow: admits nobody: list email domains (domains: [example.com]), addresses (emails: [ann@example.com]) or groups (groups: [group:dba])",
    ]);
    expect(problems(`${base}    approvers: [lead@example.com]\nslack: { botToken: x, signingSecret: y, approvalChannel: C1, userGroupsRefresh: 10s }\n`)).toEqual([
      'slack.userGroupsRefresh: "10s" is not a duration of at least 1m (Slack rate-limits usergroups.users.list)',
    ]);
  });
});
