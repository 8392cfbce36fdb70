import { randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { inflateRawSync } from "node:zlib";
import { and, asc, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker, NotAnAuditor, ResultsNotVisible, RevealRefused, type Person } from "../src/broker/index.js";
import { auditEvents, sessions, sessionSealKeys, sessionStatements, statementResults, stepUpChallenges } from "../src/db/schema.js";
import { buildEvidenceBundle, verifyEvidenceBundle } from "../src/broker/evidence-bundle.js";
import { decodeRows } from "../src/broker/results.js";
import { readTarGz, writeTarGz } from "../src/infra/tar.js";
import { createTestDatabase, REDIS_URL } from "./support/databases.js";
import { runProcess } from "./support/processes.js";
import { eventually, FakeSlack, messageText } from "./support/fake-slack.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

/**
 * Issue 16, musts 1 and 2 and the broker's reveal: what each statement returned is recorded as the
 * client received it (masked), within the target's caps, through the audit journal; the originals
 * of masked values are sealed (envelope encryption under audit.sealKey) and only an auditor reveals
 * them, one statement at a time with a reason, audited and said in the request's thread.
 */

const run = promisify(execFile);
const SLACK_CHANNEL = "C0APPROVALS";
const K1 = randomBytes(32).toString("base64");
const K2 = randomBytes(32).toString("base64");
/** Originals that must never be stored readable: each row's email. */
const email = (id: number) => `secret-${id}-${"q".repeat(6)}@private.example.org`;

const GATEWAY_YAML = `
slack: { botToken: xoxb-results, signingSecret: 0123456789abcdef0123456789abcdef, apiUrl: "\${SLACK_API_URL}", approvalChannel: ${SLACK_CHANNEL} }
oidc: { issuer: "http://127.0.0.1:9/", clientId: jitgate, redirectUrl: "http://127.0.0.1:9/oidc/callback" }
auditors: [aud@example.com]
audit:
  sealKey:
    id: k1
    key: \${SEAL_K1}
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: rec-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    mask: [{ column: email }]
  - name: small-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    mask: [{ column: email }]
    record: { rows: 5, bytes: 200 }
  - name: off-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    mask: [{ column: email }]
    record: 0
  - name: vault-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    mask: [{ column: email }]
    stepUp: true
`;

let slack: FakeSlack;
let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let test: TestGateway;
let dev: Person, lead: Person, auditor: Person, stranger: Person;
let port: number;

async function grantUri(who: Person, target: string): Promise<{ uri: string; requestId: string }> {
  const { broker } = test.gateway;
  const request = await broker.request(who, { target, duration: "1h", reason: "INC-16 look at results", origin: "slack" });
  const result = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  return { uri: result.connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`), requestId: request.id };
}

async function psql(uri: string, sql: string): Promise<string> {
  const { stdout } = await run("psql", [uri, "-X", "-A", "-t", "-c", sql], { env: { ...process.env, PGCONNECT_TIMEOUT: "5" }, timeout: 30_000, maxBuffer: 8 << 20 });
  return stdout;
}

/** The latest session (tests run one at a time), once everything journaled is in the database. */
async function sessionOf(_uri: string): Promise<string> {
  const db = test.gateway.storage.db;
  expect(await test.gateway.audit!.journaled.shipped(20_000)).toBe(true);
  const rows = await db.select({ id: sessions.id, startedAt: sessions.startedAt }).from(sessions).orderBy(asc(sessions.startedAt));
  return rows[rows.length - 1]!.id;
}

async function resultRows(sessionId: string) {
  return test.gateway.storage.db.select().from(statementResults).where(eq(statementResults.sessionId, sessionId)).orderBy(asc(statementResults.seq));
}

const rowsOf = decodeRows;

beforeAll(async () => {
  slack = new FakeSlack(
    [
      { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
      { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
      { id: "U0AUD", email: "aud@example.com", realName: "Auditor" },
    ],
    "xoxb-results",
  );
  await slack.start();
  upstream = await createTestDatabase("results_upstream");
  const seed = new pg.Client({ connectionString: upstream.url });
  await seed.connect();
  await seed.query(`
    CREATE TABLE customers (id int PRIMARY KEY, email text, note text);
    INSERT INTO customers SELECT g, 'secret-' || g || '-qqqqqq@private.example.org', 'note ' || g FROM generate_series(1, 250) g;
    CREATE TABLE wide (id int PRIMARY KEY, body text);
    INSERT INTO wide SELECT g, repeat('x', 60) FROM generate_series(1, 10) g;`);
  await seed.end();
  test = await startTestGateway("results", GATEWAY_YAML, { UPSTREAM_URL: upstream.url, SEAL_K1: K1, SLACK_API_URL: slack.apiUrl });
  port = test.gateway.postgresProxy!.address.port;
  const { broker } = test.gateway;
  dev = await broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
  lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
  auditor = await broker.identify({ platform: "slack", externalId: "U0AUD", email: "aud@example.com", displayName: "Auditor" });
  stranger = await broker.identify({ platform: "slack", externalId: "U0STR", email: "stranger@example.com", displayName: "Stranger" });
}, 60_000);

afterAll(async () => {
  await test?.close();
  await upstream?.drop();
  await slack?.stop();
});

let recSession: string;
let recRequest: string;

describe("results recorded", () => {
  it("keeps each statement's rows as the client received them, masked, up to 100 rows; says it was cut and how many there were", async () => {
    const { uri, requestId } = await grantUri(dev, "rec-db");
    recRequest = requestId;
    const out = await psql(uri, "SELECT id, email, note FROM customers ORDER BY id; SELECT id, note FROM customers WHERE id <= 3 ORDER BY id; UPDATE customers SET note = note WHERE id = 1");
    expect(out.split("\n")[0]).toBe("1|***|note 1");
    recSession = await sessionOf(uri);
    const stored = await resultRows(recSession);
    expect(stored.map((r) => [r.seq, r.rowsKept, r.rowsTotal, r.cut])).toEqual([
      [1, 100, 250, true],
      [2, 3, 3, false],
    ]);
    expect(stored[0]!.columns.map((c) => c.name)).toEqual(["id", "email", "note"]);
    const first = rowsOf(stored[0]!.data);
    expect(first).toHaveLength(100);
    // Exactly what psql printed, row for row.
    expect(first.map((r) => r.join("|"))).toEqual(out.split("\n").slice(0, 100));
    expect(rowsOf(stored[1]!.data)).toEqual([["1", "note 1"], ["2", "note 2"], ["3", "note 3"]]);
    expect(stored[0]!.sealed).not.toBeNull();
    expect(stored[1]!.sealed).toBeNull();
  });

  it("records the extended protocol's results too (Parse/Bind/Describe/Execute, as node-postgres sends them)", async () => {
    const other = await test.gateway.broker.identify({ platform: "slack", externalId: "U0EXT", email: "ext@example.com", displayName: "Ext" });
    const { uri } = await grantUri(other, "rec-db");
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    const got = await client.query({ text: "SELECT id, email FROM customers WHERE id = ANY($1) ORDER BY id", values: [[9, 10]] });
    await client.query({ text: "SELECT note FROM customers WHERE id = $1", values: [11] });
    await client.end();
    expect(got.rows).toEqual([{ id: 9, email: "***" }, { id: 10, email: "***" }]);
    const stored = await resultRows(await sessionOf(uri));
    expect(stored.map((r) => [r.seq, r.rowsKept, r.rowsTotal, r.cut, r.sealed !== null])).toEqual([
      [1, 2, 2, false, true],
      [2, 1, 1, false, false],
    ]);
    expect(rowsOf(stored[0]!.data)).toEqual([["9", "***"], ["10", "***"]]);
    expect(rowsOf(stored[1]!.data)).toEqual([["note 11"]]);
  });

  it("stops at the bytes cap before the rows cap, and at the rows cap when rows are small", async () => {
    const { uri } = await grantUri(dev, "small-db");
    await psql(uri, "SELECT id, body FROM wide ORDER BY id; SELECT id FROM wide ORDER BY id");
    const stored = await resultRows(await sessionOf(uri));
    // 61–62 bytes a row: three fit in 200 bytes, the fourth would not.
    expect(stored.map((r) => [r.seq, r.rowsKept, r.rowsTotal, r.cut])).toEqual([
      [1, 3, 10, true],
      [2, 5, 10, true],
    ]);
    expect(rowsOf(stored[1]!.data)).toEqual([["1"], ["2"], ["3"], ["4"], ["5"]]);
  });

  it("record: 0 keeps nothing, and makes no data key", async () => {
    const { uri } = await grantUri(dev, "off-db");
    expect((await psql(uri, "SELECT id, email FROM customers WHERE id = 7")).trim()).toBe("7|***");
    const id = await sessionOf(uri);
    const statements = await test.gateway.storage.db.select().from(sessionStatements).where(eq(sessionStatements.sessionId, id));
    expect(statements).toHaveLength(1);
    expect(await resultRows(id)).toEqual([]);
    expect(await test.gateway.storage.db.select().from(sessionSealKeys).where(eq(sessionSealKeys.sessionId, id))).toEqual([]);
  });
});

describe("originals sealed", () => {
  it("no original value is in the database or the journal files, plain or compressed", async () => {
    const db = test.gateway.storage.db;
    const stored = await resultRows(recSession);
    const [key] = await db.select().from(sessionSealKeys).where(eq(sessionSealKeys.sessionId, recSession));
    expect(key!.keyId).toBe("k1");
    const texts: string[] = [];
    for (const row of stored) {
      texts.push(JSON.stringify(row));
      if (row.data.startsWith("[")) texts.push(row.data); // short: the JSON itself
      else {
        const data = Buffer.from(row.data, "base64");
        texts.push(data.toString("latin1"), inflateRawSync(data).toString("utf8"));
      }
      if (row.sealed) {
        const sealed = Buffer.from(row.sealed, "base64");
        texts.push(sealed.toString("latin1"));
        // Ciphertext: it does not even inflate.
        expect(() => inflateRawSync(sealed.subarray(28))).toThrow();
      }
    }
    texts.push(JSON.stringify(key), Buffer.from(key!.wrapped, "base64").toString("latin1"));
    // The journal's own files, every record, and every base64 field in them decoded and inflated.
    const dir = test.gateway.audit!.journal.dir;
    const files = readdirSync(dir).filter((name) => name.endsWith(".journal"));
    expect(files.length).toBeGreaterThan(0);
    let resultRecords = 0;
    for (const name of files) {
      const bytes = readFileSync(join(dir, name));
      texts.push(bytes.toString("latin1"));
      for (const match of bytes.toString("latin1").matchAll(/"(data|sealed|wrapped)":"([A-Za-z0-9+/=]+)"/g)) {
        resultRecords += match[1] === "data" ? 1 : 0;
        const decoded = Buffer.from(match[2]!, "base64");
        texts.push(decoded.toString("latin1"));
        try {
          texts.push(inflateRawSync(decoded).toString("utf8"));
        } catch {
          // sealed: not compressed data
        }
      }
    }
    expect(resultRecords).toBeGreaterThan(0);
    for (const text of texts) {
      for (const id of [1, 2, 3, 50, 100, 101, 250]) expect(text).not.toContain(email(id));
      expect(text).not.toContain("private.example.org");
    }
    // What is kept is the masked form.
    expect(inflateRawSync(Buffer.from(stored[0]!.data, "base64")).toString("utf8")).toContain('["1","***","note 1"]');
  });
});

describe("reading and revealing", () => {
  it("the session's person and the approvers see masked results; anyone else does not", async () => {
    const { broker } = test.gateway;
    const own = await broker.sessionResults(dev, recSession, 1);
    expect(own[0]!.rows[0]).toEqual(["1", "***", "note 1"]);
    expect(own[0]).toMatchObject({ rowsKept: 100, rowsTotal: 250, cut: true, sealed: true });
    expect((await broker.sessionResults(lead, recSession)).map((r) => r.seq)).toEqual([1, 2]);
    expect((await broker.sessionResults(lead, recSession, 1))[0]!.rows[5]).toEqual(["6", "***", "note 6"]);
    await expect(broker.sessionResults(stranger, recSession)).rejects.toBeInstanceOf(ResultsNotVisible);
    // An unknown session id answers the same way.
    await expect(broker.sessionResults(stranger, "ses_unknown")).rejects.toBeInstanceOf(ResultsNotVisible);
  });

  it("an auditor reveals one statement's originals with a reason: an audit event and a post in the request's thread", async () => {
    const { broker } = test.gateway;
    const outcome = await broker.revealResults(auditor, { sessionId: recSession, seq: 1, reason: "AUD-9 fraud review" });
    expect(outcome.kind).toBe("revealed");
    if (outcome.kind !== "revealed") return;
    expect(outcome.keyId).toBe("k1");
    expect(outcome.result.rows).toHaveLength(100);
    expect(outcome.result.rows[0]).toEqual(["1", email(1), "note 1"]);
    expect(outcome.result.rows[99]).toEqual(["100", email(100), "note 100"]);
    expect(outcome.revealed).toHaveLength(100);
    const events = await broker.db.select().from(auditEvents).where(and(eq(auditEvents.kind, "results.revealed"), eq(auditEvents.sessionId, recSession)));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ actorId: auditor.id, target: "rec-db", requestId: recRequest, sessionId: recSession });
    expect(events[0]!.data).toMatchObject({ seq: 1, reason: "AUD-9 fraud review", values: 100, keyId: "k1" });
    expect(JSON.stringify(events[0]!.data)).not.toContain("private.example.org");
    // The request's thread in Slack says it.
    const root = await eventually(() => slack.rootsIn(SLACK_CHANNEL).find((m) => JSON.stringify(m.blocks ?? m.text).includes(recRequest)), 15_000, "the request's message");
    const post = await eventually(
      () => slack.thread(SLACK_CHANNEL, root.ts).find((m) => messageText(m).includes("viewed the unmasked results of statement 1")),
      15_000,
      "the reveal's post in the thread",
    );
    expect(messageText(post)).toContain("Auditor");
    expect(messageText(post)).toContain("AUD-9 fraud review");
    expect(messageText(post)).not.toContain("private.example.org");
  });

  it("is refused to a non-auditor (even an approver) and without a reason, and records nothing", async () => {
    const { broker } = test.gateway;
    const before = (await broker.db.select().from(auditEvents).where(eq(auditEvents.kind, "results.revealed"))).length;
    await expect(broker.revealResults(lead, { sessionId: recSession, seq: 1, reason: "curious" })).rejects.toBeInstanceOf(NotAnAuditor);
    await expect(broker.revealResults(dev, { sessionId: recSession, seq: 1, reason: "my own" })).rejects.toBeInstanceOf(NotAnAuditor);
    await expect(broker.revealResults(auditor, { sessionId: recSession, seq: 1, reason: "   " })).rejects.toBeInstanceOf(RevealRefused);
    // A statement without sealed originals has nothing to reveal.
    await expect(broker.revealResults(auditor, { sessionId: recSession, seq: 2, reason: "AUD-9" })).rejects.toThrow(/no sealed originals/);
    expect((await broker.db.select().from(auditEvents).where(eq(auditEvents.kind, "results.revealed"))).length).toBe(before);
  });

  it("on a stepUp target the reveal needs a fresh sign-in for this very reveal", async () => {
    const { broker } = test.gateway;
    // The grant on vault-db needs the approver's step-up too: the proof the sign-in flow hands the broker.
    const request = await broker.request(dev, { target: "vault-db", duration: "1h", reason: "INC-16 vault", origin: "slack" });
    const challengeId = await broker.decide(lead, { requestId: request.id, verdict: "approve" }).then(
      () => undefined,
      (error: unknown) => (error as { challengeId: string }).challengeId,
    );
    const { connection } = await broker.approveWithStepUp(lead, { challengeId: challengeId!, authTime: new Date() });
    const uri = connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`);
    await psql(uri, "SELECT id, email FROM customers WHERE id IN (4, 5) ORDER BY id");
    const vaultSession = await sessionOf(uri);

    const asked = await broker.revealResults(auditor, { sessionId: vaultSession, seq: 1, reason: "AUD-10" });
    expect(asked.kind).toBe("step-up-needed");
    if (asked.kind !== "step-up-needed") return;
    const [challenge] = await broker.db.select().from(stepUpChallenges).where(eq(stepUpChallenges.id, asked.challengeId));
    expect(challenge).toMatchObject({ approverId: auditor.id, reveal: `${vaultSession}#1`, heldId: null });
    expect(asked.link).toContain(`/oidc/approve?challenge=${asked.challengeId}`);
    // The grant approval's (used) challenge is no proof for a reveal.
    await expect(broker.revealResults(auditor, { sessionId: vaultSession, seq: 1, reason: "AUD-10", stepUp: { challengeId: challengeId!, authTime: new Date() } })).rejects.toThrow(/not for this reveal|already been used|someone else/);
    // The sign-in is for the reason given when asking: with another reason it reveals nothing (and the link stays usable).
    await expect(broker.revealResults(auditor, { sessionId: vaultSession, seq: 1, reason: "AUD-10 and more", stepUp: { challengeId: asked.challengeId, authTime: new Date() } })).rejects.toThrow(/not for this reveal/);
    expect(challenge!.revealReason).toBe("AUD-10");
    const revealed = await broker.revealResults(auditor, { sessionId: vaultSession, seq: 1, reason: "AUD-10", stepUp: { challengeId: asked.challengeId, authTime: new Date() } });
    expect(revealed.kind === "revealed" && revealed.result.rows).toEqual([
      ["4", email(4)],
      ["5", email(5)],
    ]);
    // The link is used up.
    await expect(broker.revealResults(auditor, { sessionId: vaultSession, seq: 1, reason: "AUD-10", stepUp: { challengeId: asked.challengeId, authTime: new Date() } })).rejects.toThrow(/already been used/);
    const [event] = await broker.db.select().from(auditEvents).where(and(eq(auditEvents.kind, "results.revealed"), eq(auditEvents.sessionId, vaultSession)));
    expect(event!.data).toMatchObject({ seq: 1, reason: "AUD-10" });
    expect(event!.data).toHaveProperty("stepUpAuthTime");
  });
});

describe("key rotation", () => {
  /** A broker over the same database with another audit configuration (the gateway restarted with it). */
  const brokerWith = (audit: { sealKey?: { id: string; key: string }; retiredSealKeys: { id: string; key: string }[] }) =>
    new Broker({ db: test.gateway.storage.db, config: { ...test.gateway.config, audit: { ...test.gateway.config.audit, ...audit } } });

  it("a session sealed under k1 stays readable with k2 current and k1 retired; with k1 gone, a clear error and nothing shown", async () => {
    const rotated = brokerWith({ sealKey: { id: "k2", key: K2 }, retiredSealKeys: [{ id: "k1", key: K1 }] });
    const outcome = await rotated.revealResults(auditor, { sessionId: recSession, seq: 1, reason: "AUD-11 after rotation" });
    expect(outcome.kind === "revealed" && outcome.result.rows[1]).toEqual(["2", email(2), "note 2"]);

    const before = (await test.gateway.storage.db.select().from(auditEvents).where(eq(auditEvents.kind, "results.revealed"))).length;
    const forgotten = brokerWith({ sealKey: { id: "k2", key: K2 }, retiredSealKeys: [] });
    const error = await forgotten.revealResults(auditor, { sessionId: recSession, seq: 1, reason: "AUD-12" }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/sealed under the seal key "k1", which is not configured/);
    expect(error?.message).not.toContain("private.example.org");
    // A different key under the old id does not open it either.
    const wrong = brokerWith({ sealKey: { id: "k2", key: K2 }, retiredSealKeys: [{ id: "k1", key: K2 }] });
    await expect(wrong.revealResults(auditor, { sessionId: recSession, seq: 1, reason: "AUD-12" })).rejects.toThrow(/does not open/);
    expect((await test.gateway.storage.db.select().from(auditEvents).where(eq(auditEvents.kind, "results.revealed"))).length).toBe(before);
  });
});

describe("the command line and evidence bundles", () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const CLI = join(import.meta.dirname, "..", "src", "cli.ts");
  const jitgate = (args: string[], extra: NodeJS.ProcessEnv = {}) => runProcess(process.execPath, ["--import", "tsx", CLI, ...args], { env: { ...env, ...extra }, timeoutMs: 60_000 });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "jitgate-results-cli-"));
    const file = join(dir, "jitgate.yaml");
    // The gateway's own configuration, as an operator's machine would have it (the key from the environment).
    writeFileSync(file, `database: \${DATABASE_URL}\nredis: \${REDIS_URL}\nredisPrefix: ${test.prefix}\ndataDir: ${join(dir, "data")}\nlog: { level: warn }\n${GATEWAY_YAML}`);
    env = { JITGATE_CONFIG: file, DATABASE_URL: test.gateway.config.database!, REDIS_URL, UPSTREAM_URL: upstream.url, SEAL_K1: K1, SLACK_API_URL: slack.apiUrl };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("audit show prints each statement's result, masked", async () => {
    const shown = await jitgate(["audit", "show", recSession, "--statement", "2"]);
    expect(shown.stderr).toBe("");
    expect(shown.stdout).toContain("result: 3 rows");
    expect(shown.stdout).toContain("        id|note\n        1|note 1\n        2|note 2\n        3|note 3\n");
    const first = await jitgate(["audit", "show", recSession, "--statement", "1"]);
    expect(first.stdout).toContain("result: 100 of 250 rows kept (cut at the record caps); originals of masked values sealed");
    expect(first.stdout).toContain("        1|***|note 1\n");
    expect(first.stdout).not.toContain("private.example.org");
    const json = await jitgate(["audit", "show", recSession, "--statement", "1", "--json"]);
    const result = json.stdout.trim().split("\n").map((line) => JSON.parse(line) as { type: string; rows?: unknown[][] }).find((line) => line.type === "result");
    expect(result?.rows?.[0]).toEqual(["1", "***", "note 1"]);
  });

  it("--reveal: refused without --as, a reason, or to a non-auditor; an auditor's is audited and posted in the thread by the running gateway", async () => {
    const noReason = await jitgate(["audit", "show", recSession, "--statement", "2", "--reveal", "--as", "aud@example.com"]);
    expect(noReason.code).toBe(2);
    const notAuditor = await jitgate(["audit", "show", recSession, "--statement", "1", "--reveal", "--reason", "AUD-20", "--as", "lead@example.com"]);
    expect(notAuditor.code).toBe(1);
    expect(notAuditor.stderr).toContain("only auditors may reveal");
    expect(notAuditor.stdout).not.toContain("private.example.org");

    const revealed = await jitgate(["audit", "show", recSession, "--statement", "1", "--reveal", "--reason", "AUD-21 from the terminal", "--as", "aud@example.com"]);
    expect(revealed.stderr).toBe("");
    expect(revealed.code).toBe(0);
    expect(revealed.stdout).toContain(`        1|»${email(1)}«|note 1\n`);
    expect(revealed.stdout).toContain("100 values UNMASKED");
    const [event] = await test.gateway.storage.db
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.kind, "results.revealed"), eq(auditEvents.actorId, auditor.id)))
      .orderBy(asc(auditEvents.seq))
      .then((rows) => rows.filter((row) => (row.data as { reason?: string }).reason === "AUD-21 from the terminal"));
    expect(event).toMatchObject({ sessionId: recSession, data: { seq: 1 } });
    const root = await eventually(() => slack.rootsIn(SLACK_CHANNEL).find((m) => JSON.stringify(m.blocks ?? m.text).includes(recRequest)), 15_000, "the request's message");
    await eventually(() => slack.thread(SLACK_CHANNEL, root.ts).find((m) => messageText(m).includes("AUD-21 from the terminal")), 15_000, "the CLI reveal's post in the thread");

    // With k1 no longer in the configuration (k2 current, k1 dropped), nothing opens.
    const keyless = join(dir, "keyless.yaml");
    writeFileSync(keyless, readFileSync(env.JITGATE_CONFIG!, "utf8").replace(/    id: k1\n    key: \$\{SEAL_K1\}\n/, `    id: k2\n    key: ${K2}\n`));
    const noKey = await jitgate(["audit", "show", recSession, "--statement", "1", "--reveal", "--reason", "AUD-22", "--as", "aud@example.com"], { JITGATE_CONFIG: keyless });
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toContain('sealed under the seal key "k1", which is not configured');
    expect(noKey.stdout).not.toContain("private.example.org");
  });

  it("an export carries the results (originals as ciphertext only, no key); a changed results file fails verification", async () => {
    const db = test.gateway.storage.db;
    const { bundle, manifest } = await buildEvidenceBundle(db, { since: new Date(Date.now() - 3600_000), until: new Date(Date.now() + 60_000) }, new Date());
    expect(manifest.files["results.jsonl"]).toBeDefined();
    expect(verifyEvidenceBundle(bundle).ok).toBe(true);
    const entries = readTarGz(bundle, 1 << 30);
    const results = entries.find((e) => e.name === "results.jsonl")!.body.toString("utf8");
    const lines = results.trim().split("\n").map((line) => JSON.parse(line) as { sessionId: string; seq: number; rows: unknown[][]; sealed: string | null; sealKeyId: string | null });
    const first = lines.find((l) => l.sessionId === recSession && l.seq === 1)!;
    expect(first.rows[0]).toEqual(["1", "***", "note 1"]);
    expect(first.sealed).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(first.sealKeyId).toBe("k1");
    const [key] = await db.select().from(sessionSealKeys).where(eq(sessionSealKeys.sessionId, recSession));
    const whole = entries.map((e) => e.body.toString("latin1")).join("\n");
    expect(whole).not.toContain(key!.wrapped);
    expect(whole).not.toContain(K1);
    expect(whole).not.toContain("private.example.org");

    // One value changed in results.jsonl: the bundle no longer verifies, and says which file.
    const tampered = writeTarGz(
      entries.map((e) => (e.name === "results.jsonl" ? { ...e, body: Buffer.from(results.replace('["1","***","note 1"]', '["1","***","note one"]'), "utf8") } : e)),
      new Date(),
    );
    const verdict = verifyEvidenceBundle(tampered);
    expect(verdict.ok).toBe(false);
    expect(!verdict.ok && verdict.problems).toEqual(["results.jsonl: its SHA-256 does not match the manifest (edited)"]);

    // The same through the command: export, then verify the file.
    const out = join(dir, "bundle.tar.gz");
    const exported = await jitgate(["audit", "export", "--since", "1h", "--until", new Date(Date.now() + 60_000).toISOString(), "--out", out]);
    expect(exported.stderr).toBe("");
    const verified = await jitgate(["audit", "verify", "--bundle", out]);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/\d+ results/);
  });
});
