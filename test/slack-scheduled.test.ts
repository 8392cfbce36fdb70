import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Person } from "../src/broker/index.js";
import { REDIS_URL } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { buttonsOf, eventually, FakeSlack, messageText, type FakeMessage } from "./support/fake-slack.js";

const BOT_TOKEN = "xoxb-test-token";
const CHANNEL = "C0APPROVALS";
const DIGEST = "C0DIGEST";

let fake: FakeSlack;
let test: TestGateway;
let dev: Person, lead: Person, ops: Person;

beforeAll(async () => {
  fake = new FakeSlack(
    [
      { id: "U0DEV", email: "dev@example.com", realName: "Dev", tz: "Europe/Berlin" },
      { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
      { id: "U0OPS", email: "ops@example.com", realName: "Ops", tz: "America/New_York" },
    ],
    BOT_TOKEN,
  );
  await fake.start();
  test = await startTestGateway(
    "slack_scheduled",
    `
slack:
  botToken: \${SLACK_BOT_TOKEN}
  signingSecret: signing-secret
  apiUrl: \${SLACK_API_URL}
  approvalChannel: ${CHANNEL}
  digestChannel: ${DIGEST}
defaults: { reminderBefore: 2s, reviewTimeout: 1s }
digest: { timezone: Asia/Kolkata }
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/orders
    approvers: [lead@example.com]
`,
    { SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: fake.apiUrl },
  );
  const { broker } = test.gateway;
  dev = await broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
  lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
  ops = await broker.identify({ platform: "slack", externalId: "U0OPS", email: "ops@example.com", displayName: "Ops" });
});

/** `09:05` in `zone`. */
const clockIn = (at: Date, zone: string) => new Intl.DateTimeFormat("en-GB", { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(at);
const reminders = (rootTs: string) => fake.thread(CHANNEL, rootTs).filter((m) => /your access to orders-db (ends|ended)/.test(messageText(current(m))));

afterAll(async () => {
  await test?.close();
  await fake?.stop();
});

const rootOf = (requestId: string) =>
  eventually(() => fake.rootsIn(CHANNEL).find((m) => messageText(m).includes(requestId)), 10_000, `the approval message of ${requestId}`);
const current = (message: FakeMessage) => fake.messages.get(`${message.channel}/${message.ts}`)!;

describe("Slack: reminders, review timeouts and the digest", () => {
  it("reminds the holder in the thread with an Extend button; ends a held statement nobody decides", async () => {
    const { broker, sessions } = test.gateway;
    const request = await broker.request(dev, { target: "orders-db", duration: "4s", reason: "INC-9", origin: "slack" });
    const root = await rootOf(request.id);
    const { grant } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });

    const reminder = await eventually(
      () => fake.thread(CHANNEL, root.ts).find((m) => messageText(m).includes("your access to orders-db ends")),
      10_000,
      "the reminder",
    );
    expect(reminder.text.startsWith("<@U0DEV> ")).toBe(true);
    expect(buttonsOf(reminder)).toEqual({ jitgate_extend: grant!.id });
    // Addressed to Dev: in their time zone (users.info tz), saying which it is.
    expect(reminder.text).toContain(`ends at ${clockIn(grant!.expiresAt, "Europe/Berlin")} Europe/Berlin (in `);

    // A held statement whose proxy is gone (held here, with nobody waiting): the review-timeout job ends it.
    const { snapshot } = await sessions.open({ grantId: grant!.id, protocol: "postgres", clientAddress: null });
    const held = await sessions.hold(snapshot, "DELETE FROM orders", "delete-without-where");
    const message = await eventually(
      () => fake.thread(CHANNEL, root.ts).find((m) => buttonsOf(m).jitgate_approve_statement === held.id),
      10_000,
      "the held statement",
    );
    await eventually(() => messageText(current(message)).includes("Expired without a decision"), 10_000, "the held message redrawn");
    expect(buttonsOf(current(message))).toEqual({});
    expect((await sessions.getHeld(held.id))?.state).toBe("timed_out");
  });

  it("redraws the reminder on an extension, and at the end, instead of adding a second one", async () => {
    const { broker } = test.gateway;
    const request = await broker.request(ops, { target: "orders-db", duration: "4s", reason: "INC-10", origin: "slack" });
    const root = await rootOf(request.id);
    const { grant } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
    const reminder = await eventually(() => reminders(root.ts)[0], 10_000, "the reminder");
    expect(reminder.text).toContain(`ends at ${clockIn(grant!.expiresAt, "America/New_York")} America/New_York`);

    const extended = await broker.extend(lead, { grantId: grant!.id, duration: "4s" });
    expect(extended.kind).toBe("extended");
    const expiresAt = (await broker.getGrant(grant!.id)).expiresAt;
    // Redrawn on the extension, reminded again 2 s before the new end, redrawn once more at the end: one message throughout.
    await eventually(() => current(reminder).updates >= 2, 15_000, "the reminder redrawn after the extension");
    await eventually(() => /ended at/.test(messageText(current(reminder))), 15_000, "the reminder redrawn at the end");
    expect(messageText(current(reminder))).toContain(`Ops, your access to orders-db ended at ${clockIn(expiresAt, "America/New_York")} America/New_York`);
    expect(buttonsOf(current(reminder))).toEqual({});
    expect(reminders(root.ts)).toHaveLength(1);
    expect(fake.thread(CHANNEL, root.ts).filter((m) => current(m).text.startsWith("<@U0OPS> "))).toHaveLength(1);
  }, 30_000);

  it("posts the digest to the digest channel, its times in digest.timezone", async () => {
    const now = test.gateway.broker.clock.now();
    await test.gateway.jobs.digest.runNow({ since: new Date(now.getTime() - 3600_000), until: now });
    const posted = await eventually(() => fake.rootsIn(DIGEST)[0], 10_000, "the digest");
    const text = messageText(posted);
    expect(text).toContain("jitgate digest");
    expect(text).toMatch(/\*Requests\*\n2: 2 approved/);
    expect(text).toContain("Top requesters:");
    expect(text).toContain("Dev (1)");
    const since = new Date(now.getTime() - 3600_000);
    expect(text).toContain(`jitgate digest ${clockIn(since, "Asia/Kolkata")} Asia/Kolkata – ${clockIn(now, "Asia/Kolkata")} Asia/Kolkata`);
    expect(text).not.toContain("UTC");
  });

  it("`jitgate digest --now` has a running gateway post it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jitgate-digest-now-"));
    try {
      const file = join(dir, "jitgate.yaml");
      writeFileSync(file, `database: \${DATABASE_URL}\nredis: ${REDIS_URL}\nredisPrefix: ${test.prefix}\ndataDir: ${join(dir, "data")}\nlog: { level: warn }\n`);
      const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "..", "src", "cli.ts"), "-c", file, "digest", "--now", "--since", "2h"], {
          env: { ...process.env, DATABASE_URL: test.gateway.config.database! },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (chunk) => (stdout += chunk));
        child.stderr.on("data", (chunk) => (stderr += chunk));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout, stderr }));
      });
      expect(run.stderr).toBe("");
      expect(run.stdout).toMatch(/^digest of .* posted \(job digest-now-\d+-\d+\)\n$/);
      expect(run.code).toBe(0);
      await eventually(() => fake.rootsIn(DIGEST).length === 2, 10_000, "the second digest");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
