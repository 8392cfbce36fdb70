import { randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { and, asc, eq } from "drizzle-orm";
import pg from "pg";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Person } from "../src/broker/index.js";
import { auditEvents, sessions, stepUpChallenges } from "../src/db/schema.js";
import { ARTIFACTS, startWithChromium } from "./support/browser.js";
import { createTestDatabase } from "./support/databases.js";
import { eventually, FakeSlack, messageText } from "./support/fake-slack.js";
import { startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";

/**
 * Issue 16 through the browser: the audit pages show each statement's recorded result (masked) to
 * whoever may see the session; an auditor reveals one statement's sealed originals with a reason
 * (audited, posted in the request's thread), after a fresh OIDC sign-in on a stepUp target; an
 * approver who is not an auditor sees masked rows only and a forged reveal is refused.
 */

const run = promisify(execFile);
const SLACK_CHANNEL = "C0APPROVALS";
const SEAL_KEY = randomBytes(32).toString("base64");
const email = (id: number) => `secret-${id}-qqqqqq@private.example.org`;

const accounts = [
  { sub: "sub-dev", email: "dev@example.com", name: "Dev" },
  { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
  { sub: "sub-aud", email: "aud@example.com", name: "Auditor" },
];

let provider: TestProvider;
let slack: FakeSlack;
let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let test: Awaited<ReturnType<typeof startOidcGateway>>;
let browser: Browser;
let dev: Person, lead: Person, auditor: Person;
let port: number;
const problems: string[] = [];

/** A grant for `who` on `target`, approved by the lead (through the step-up proof on a stepUp target), and its connection URI. */
async function grantUri(who: Person, target: string): Promise<{ uri: string; requestId: string }> {
  const { broker } = test.gateway;
  const request = await broker.request(who, { target, duration: "1h", reason: "INC-16 results in the browser", origin: "slack" });
  const decided = await broker.decide(lead, { requestId: request.id, verdict: "approve" }).then(
    (result) => ({ result, challengeId: undefined }),
    (error: unknown) => ({ result: undefined, challengeId: (error as { challengeId?: string }).challengeId }),
  );
  const connection = decided.result ? decided.result.connection : (await broker.approveWithStepUp(lead, { challengeId: decided.challengeId!, authTime: new Date() })).connection;
  return { uri: connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`), requestId: request.id };
}

async function psql(uri: string, sql: string): Promise<string> {
  const { stdout } = await run("psql", [uri, "-X", "-A", "-t", "-c", sql], { env: { ...process.env, PGCONNECT_TIMEOUT: "5" }, timeout: 30_000 });
  return stdout;
}

/** The latest session, once everything journaled is in the database. */
async function latestSession(): Promise<string> {
  expect(await test.gateway.audit!.journaled.shipped(20_000)).toBe(true);
  const rows = await test.gateway.storage.db.select({ id: sessions.id }).from(sessions).orderBy(asc(sessions.startedAt));
  return rows[rows.length - 1]!.id;
}

/** Page code as strings: tsc here has no DOM types. */
const ROW_TEXTS = "[...document.querySelectorAll('table.result-rows tbody tr')].map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent))";
const OVERFLOW_X = "document.documentElement.scrollWidth - document.documentElement.clientWidth";
const VALUE_MISSING = "document.querySelector('#result-1 input[name=reason]').validity.valueMissing";

const revealEvents = () => test.gateway.storage.db.select().from(auditEvents).where(eq(auditEvents.kind, "results.revealed"));

/** A browser context signed in (OIDC, through the test provider) as `account`, on `path`. */
async function signedIn(account: string, path: string): Promise<Page> {
  const context: BrowserContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  provider.nextLogin.account = account;
  await page.goto(`${test.origin}${path}`);
  await page.waitForURL(`${test.origin}${path}`);
  return page;
}

beforeAll(async () => {
  provider = await startTestProvider(accounts);
  slack = new FakeSlack(
    [
      { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
      { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
      { id: "U0AUD", email: "aud@example.com", realName: "Auditor" },
    ],
    "xoxb-results-browser",
  );
  await slack.start();
  upstream = await createTestDatabase("results_browser_upstream");
  const seed = new pg.Client({ connectionString: upstream.url });
  await seed.connect();
  await seed.query(`
    CREATE TABLE customers (id int PRIMARY KEY, email text, note text);
    INSERT INTO customers SELECT g, 'secret-' || g || '-qqqqqq@private.example.org', 'note <b>' || g || '</b>' FROM generate_series(1, 12) g;`);
  await seed.end();
  ({ server: test, browser } = await startWithChromium(() =>
    startOidcGateway(
      "results_browser",
      provider.issuer,
      `
slack: { botToken: xoxb-results-browser, signingSecret: 0123456789abcdef0123456789abcdef, apiUrl: "${slack.apiUrl}", approvalChannel: ${SLACK_CHANNEL} }
console: { enabled: true, allow: { domains: [example.com] } }
auditors: [aud@example.com]
audit:
  sealKey: { id: k1, key: "${SEAL_KEY}" }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: rec-db
    kind: postgres
    upstream: ${upstream.url}
    approvers: [lead@example.com]
    mask: [{ column: email }]
    record: { rows: 5, bytes: 4096 }
  - name: vault-db
    kind: postgres
    upstream: ${upstream.url}
    approvers: [lead@example.com]
    mask: [{ column: email }]
    stepUp: true
`,
    ),
  ));
  port = test.gateway.postgresProxy!.address.port;
  const { broker } = test.gateway;
  dev = await broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
  lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
  auditor = await broker.identify({ platform: "slack", externalId: "U0AUD", email: "aud@example.com", displayName: "Auditor" });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await test?.close();
  await upstream?.drop();
  await slack?.stop();
  await provider?.close();
});

let recSession: string;
let recRequest: string;

describe("recorded results and reveal in the audit pages", () => {
  it("an auditor sees the masked result, reveals statement 1 with a reason and sees the originals; audited and posted in the thread", async () => {
    const { uri, requestId } = await grantUri(dev, "rec-db");
    recRequest = requestId;
    const out = await psql(uri, "SELECT id, email, note FROM customers ORDER BY id; SELECT id, note FROM customers WHERE id = 1");
    expect(out.split("\n")[0]).toBe("1|***|note <b>1</b>");
    recSession = await latestSession();

    const page = await signedIn("sub-aud", `/audit/sessions/${recSession}`);
    const first = page.locator("#result-1");
    await first.locator("summary").click();
    expect(await first.locator("summary").textContent()).toContain("cut: 5 of 12 rows kept");
    const cells = first.locator("table.result-rows tbody tr").first().locator("td");
    expect(await cells.allTextContents()).toEqual(["1", "***", "note <b>1</b>"]);
    // Escaped: the note's markup is text, not an element.
    expect(await first.locator("table.result-rows b").count()).toBe(0);
    expect(await page.content()).not.toContain("private.example.org");
    // Statement 2 has no masked values: its result, and no reveal form.
    expect(await page.locator("#result-2 form.reveal").count()).toBe(0);
    await page.screenshot({ path: `${ARTIFACTS}/results-auditor-masked.png`, fullPage: true });
    // At phone width the statement is a card and its result a table in it: nothing runs off the side.
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate<number>(OVERFLOW_X)).toBeLessThanOrEqual(0);
    await page.screenshot({ path: `${ARTIFACTS}/results-auditor-masked-phone.png`, fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });

    await first.getByLabel(/Reason for revealing/).fill("AUD-31 fraud review");
    const [response] = await Promise.all([page.waitForResponse((r) => r.url().endsWith(`/results/1/reveal`)), first.getByRole("button", { name: "Reveal originals" }).click()]);
    expect(response.status()).toBe(200);
    expect(response.headers()["cache-control"]).toBe("no-store");
    await page.getByRole("heading", { name: `Revealed: statement 1 of session ${recSession}` }).waitFor();
    const revealedRows = await page.evaluate<string[][]>(ROW_TEXTS);
    expect(revealedRows).toEqual([1, 2, 3, 4, 5].map((id) => [String(id), email(id), `note <b>${id}</b>`]));
    expect(await page.locator("table.result-rows mark.revealed").count()).toBe(5);
    expect(await page.locator(".facts").textContent()).toContain("AUD-31 fraud review");
    await page.screenshot({ path: `${ARTIFACTS}/results-auditor-revealed.png`, fullPage: true });
    // The session's events now say it: who, which statement, why.
    await page.goto(`${test.origin}/audit/sessions/${recSession}`);
    const said = await page.locator("ol.timeline li", { hasText: "results.revealed" }).textContent();
    expect(said).toContain("Originals revealed of statement 1");
    expect(said).toContain("AUD-31 fraud review");
    expect(said).toContain("Auditor");
    await page.context().close();

    const events = await revealEvents();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ actorId: expect.any(String), target: "rec-db", requestId: recRequest, sessionId: recSession });
    expect(events[0]!.data).toMatchObject({ seq: 1, reason: "AUD-31 fraud review", values: 5, keyId: "k1" });
    const root = await eventually(() => slack.rootsIn(SLACK_CHANNEL).find((m) => JSON.stringify(m.blocks ?? m.text).includes(recRequest)), 15_000, "the request's message");
    const post = await eventually(
      () => slack.thread(SLACK_CHANNEL, root.ts).find((m) => messageText(m).includes("viewed the unmasked results of statement 1")),
      15_000,
      "the reveal's post in the thread",
    );
    expect(messageText(post)).toContain("AUD-31 fraud review");
    expect(messageText(post)).not.toContain("private.example.org");
  });

  it("an empty reason is refused and records nothing", async () => {
    const page = await signedIn("sub-aud", `/audit/sessions/${recSession}`);
    const before = (await revealEvents()).length;
    const csrf = await page.locator("#result-1 form.reveal input[name=csrf]").getAttribute("value");
    // The browser will not submit the required field empty; a post of spaces is what gets past it.
    const response = await page.context().request.post(`${test.origin}/audit/sessions/${recSession}/results/1/reveal`, { form: { csrf: csrf!, reason: "   " }, maxRedirects: 0 });
    expect(response.status()).toBe(400);
    const body = await response.text();
    expect(body).toContain("A reason is needed");
    expect(body).not.toContain("private.example.org");
    // And the form in the page does not submit without one.
    await page.locator("#result-1 summary").click();
    await page.locator("#result-1").getByRole("button", { name: "Reveal originals" }).click();
    expect(await page.evaluate<boolean>(VALUE_MISSING)).toBe(true);
    expect(new URL(page.url()).pathname).toBe(`/audit/sessions/${recSession}`);
    expect((await revealEvents()).length).toBe(before);
    await page.context().close();
  });

  it("an approver who is not an auditor sees the masked result and no reveal form; a forged reveal with their cookie and CSRF token is refused and writes nothing", async () => {
    const page = await signedIn("sub-lead", `/audit/sessions/${recSession}`);
    await page.locator("#result-1 summary").click();
    expect(await page.locator("#result-1 table.result-rows tbody tr").first().locator("td").allTextContents()).toEqual(["1", "***", "note <b>1</b>"]);
    expect(await page.locator("form.reveal").count()).toBe(0);
    expect(await page.content()).not.toContain("private.example.org");
    // A valid CSRF token of theirs, from the console's forms.
    await page.goto(`${test.origin}/console`);
    const csrf = await page.locator("input[name=csrf]").first().getAttribute("value");
    expect(csrf).toBeTruthy();
    const before = (await revealEvents()).length;
    const threadBefore = slack.rootsIn(SLACK_CHANNEL).flatMap((root) => slack.thread(SLACK_CHANNEL, root.ts)).length;
    const forged = await page.context().request.post(`${test.origin}/audit/sessions/${recSession}/results/1/reveal`, { form: { csrf: csrf!, reason: "just curious" }, maxRedirects: 0 });
    expect(forged.status()).toBe(404);
    expect(await forged.text()).not.toContain("private.example.org");
    // Without the token the same post is refused by the CSRF check.
    const noToken = await page.context().request.post(`${test.origin}/audit/sessions/${recSession}/results/1/reveal`, { form: { reason: "just curious" }, maxRedirects: 0 });
    expect(noToken.status()).toBe(403);
    expect((await revealEvents()).length).toBe(before);
    const challenged = await test.gateway.storage.db.select().from(auditEvents).where(and(eq(auditEvents.kind, "step_up.challenged"), eq(auditEvents.actorId, lead.id)));
    expect(challenged.every((event) => !(event.data as { reveal?: string }).reveal)).toBe(true);
    expect(slack.rootsIn(SLACK_CHANNEL).flatMap((root) => slack.thread(SLACK_CHANNEL, root.ts)).length).toBe(threadBefore);
    await page.context().close();
  });

  it("on a stepUp target the reveal goes through a fresh sign-in and then shows the originals of the statement asked for, with its reason", async () => {
    const { uri } = await grantUri(dev, "vault-db");
    await psql(uri, "SELECT id, email FROM customers WHERE id IN (7, 8) ORDER BY id");
    const vaultSession = await latestSession();
    const page = await signedIn("sub-aud", `/audit/sessions/${vaultSession}`);
    const logins = provider.logins.length;
    await page.locator("#result-1 summary").click();
    await page.locator("#result-1").getByLabel(/Reason for revealing/).fill("AUD-32 vault access review");
    provider.nextLogin.account = "sub-aud";
    await page.locator("#result-1").getByRole("button", { name: "Reveal originals" }).click();
    // To the provider and back to the gateway's callback, which finishes this reveal.
    await page.getByRole("heading", { name: `Revealed: statement 1 of session ${vaultSession}` }).waitFor({ timeout: 20_000 });
    expect(new URL(page.url()).pathname).toBe("/oidc/callback");
    expect(provider.logins.length).toBe(logins + 1);
    const revealedRows = await page.evaluate<string[][]>(ROW_TEXTS);
    expect(revealedRows).toEqual([
      ["7", email(7)],
      ["8", email(8)],
    ]);
    expect(await page.locator("[role=status]").textContent()).toContain("after a fresh sign-in as aud@example.com");
    expect(await page.locator(".facts").textContent()).toContain("AUD-32 vault access review");
    await page.screenshot({ path: `${ARTIFACTS}/results-auditor-step-up-revealed.png`, fullPage: true });
    await page.context().close();

    const [event] = await test.gateway.storage.db.select().from(auditEvents).where(and(eq(auditEvents.kind, "results.revealed"), eq(auditEvents.sessionId, vaultSession)));
    expect(event).toMatchObject({ actorId: auditor.id, target: "vault-db" });
    expect(event!.data).toMatchObject({ seq: 1, reason: "AUD-32 vault access review", values: 2 });
    expect(event!.data).toHaveProperty("stepUpAuthTime");
    const [challenge] = await test.gateway.storage.db.select().from(stepUpChallenges).where(eq(stepUpChallenges.reveal, `${vaultSession}#1`));
    expect(challenge).toMatchObject({ approverId: auditor.id, revealReason: "AUD-32 vault access review" });
    expect(challenge!.completedAt).not.toBeNull();
    expect(problems).toEqual([]);
  });
});
