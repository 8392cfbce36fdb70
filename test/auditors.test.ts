import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker } from "../src/broker/index.js";
import { createDemoConsoleAuth } from "../src/bot/console/demo-auth.js";
import { ConfigError, parseConfig } from "../src/config/load.js";
import type { Storage } from "../src/db/client.js";
import { mountAuditPages } from "../src/http/audit/audit-pages.js";
import { HttpServer } from "../src/infra/web/http-server.js";
import { seedAuditHistory, type Seeded } from "./audit-pages-seed.js";
import { loginThroughPicker } from "./audit-pages-auth.js";
import { testPostgresStorage } from "./support/databases.js";
import { brokerConfig } from "./support/fixtures.js";

/**
 * The `auditors` role: named people see every target's requests, sessions, statements and
 * recordings in the audit pages; an approver of another target, and the people who ran sessions,
 * keep seeing only what they saw before (anything else is the same 404 as an unknown id).
 */

// ann and bob ran the seeded sessions (orders-db, web-1); lee approves every target; sam approves
// only payments-db; aud is an auditor by email.
const USERS = [
  { id: "ann", name: "Ann Example", email: "ann@example.com" },
  { id: "bob", name: "Bob Builder", email: "bob@example.com" },
  { id: "lee", name: "Lee Lead", email: "lead@example.com" },
  { id: "sam", name: "Sam Second", email: "second@example.com" },
  { id: "aud", name: "Audrey Auditor", email: "Audit@Example.com" },
] as const;
type Who = (typeof USERS)[number]["id"];

let storage: Storage;
let seeded: Seeded;
let broker: Broker;
let http: HttpServer;
let base: string;
const cookies = new Map<Who, string>();

beforeAll(async () => {
  storage = await testPostgresStorage("auditors");
  seeded = await seedAuditHistory(storage.db);
  // The gateway as configured with auditors: the same database, a configuration naming them.
  broker = new Broker({ db: storage.db, clock: seeded.clock, config: brokerConfig(`auditors: [audit@example.com, "slack:U0AUDIT"]`) });
  http = new HttpServer((error) => {
    throw error;
  });
  mountAuditPages(http, { broker, auth: createDemoConsoleAuth({ broker, users: USERS, http }), pageSize: 100 });
  const address = await http.listen("127.0.0.1:0");
  base = `http://127.0.0.1:${address.port}`;
  for (const user of USERS) cookies.set(user.id, await loginThroughPicker(base, user.id));
});

afterAll(async () => {
  await http?.close();
  await storage?.close();
});

async function get(path: string, as: Who) {
  const res = await fetch(`${base}${path}`, { headers: { cookie: cookies.get(as)! }, redirect: "manual" });
  return { status: res.status, text: await res.text() };
}

describe("auditors in the audit pages", () => {
  it("an auditor opens another target's session, statements, request, held statement and recording that an approver of a different target gets 404 for", async () => {
    const pgSession = `/audit/sessions/${seeded.pg.sessionId}`;
    const sshSession = `/audit/sessions/${seeded.ssh.sessionId}`;
    const cast = `${sshSession}/recordings/1.cast`;
    const paths = [pgSession, sshSession, cast, `/audit/requests/${seeded.pg.requestId}`, `/audit/requests/${seeded.ssh.requestId}`, `/audit/held/${seeded.pg.heldId}`, `/audit/held/${seeded.pg.heldId}/text`];

    for (const path of paths) {
      const auditor = await get(path, "aud");
      expect(auditor.status, path).toBe(200);
      const other = await get(path, "sam");
      expect(other.status, path).toBe(404);
      expect(other.text).not.toContain(seeded.pg.sessionId);
      expect(other.text).not.toContain("DELETE FROM orders");
    }
    const statements = await get(pgSession, "aud");
    expect(statements.text).toContain("SELECT id, state FROM orders WHERE state = &#39;stuck&#39;");
    expect(statements.text).toContain("DELETE 4");
    const recording = await fetch(`${base}${cast}`, { headers: { cookie: cookies.get("aud")! } });
    expect(await recording.text()).toBe(seeded.ssh.cast);
    // An unknown session is the same 404 for an auditor too.
    expect((await get("/audit/sessions/ses_doesnotexist", "aud")).status).toBe(404);
  });

  it("an auditor's search finds every target's events; an approver of a different target's finds none of them", async () => {
    const auditor = await get("/audit?target=orders-db", "aud");
    expect(auditor.status).toBe(200);
    expect(auditor.text).toContain("you are an auditor");
    expect(auditor.text).toContain(seeded.pg.sessionId);
    expect(auditor.text).toContain(seeded.pg.requestId);
    const everything = await get("/audit", "aud");
    expect(everything.text).toContain(seeded.ssh.sessionId);
    expect(everything.text).toContain(seeded.pg.sessionId);

    const sam = await get("/audit?target=orders-db", "sam");
    expect(sam.status).toBe(200);
    expect(sam.text).not.toContain(seeded.pg.sessionId);
    expect(sam.text).not.toContain(seeded.pg.requestId);
    const samAll = await get("/audit", "sam");
    expect(samAll.text).not.toContain(seeded.ssh.sessionId);
    expect(samAll.text).not.toContain(seeded.pg.sessionId);
    expect(samAll.text).toContain("the targets you approve");
  });

  it("approvers and session owners who are not auditors keep today's view", async () => {
    // lee approves every target: sees both, as before, without being called an auditor.
    const lee = await get("/audit", "lee");
    expect(lee.text).toContain(seeded.pg.sessionId);
    expect(lee.text).not.toContain("you are an auditor");
    // ann ran the orders-db session and approves nothing: her own, not bob's web-1 session.
    expect((await get(`/audit/sessions/${seeded.pg.sessionId}`, "ann")).status).toBe(200);
    expect((await get(`/audit/sessions/${seeded.ssh.sessionId}`, "ann")).status).toBe(404);
    const annSearch = await get("/audit", "ann");
    expect(annSearch.text).not.toContain(seeded.ssh.sessionId);
  });

  it("auditor entries match as approver entries do: emails case-insensitively, a chat id on its own platform only", async () => {
    const bySlack = await broker.identify({ platform: "slack", externalId: "U0AUDIT", email: null, displayName: "Slack auditor" });
    expect(await broker.isAuditor(bySlack)).toBe(true);
    // The same id from another platform (an OIDC subject, a console user) is somebody else.
    const byOidc = await broker.identify({ platform: "oidc", externalId: "U0AUDIT", email: null, displayName: "Not the Slack user" });
    expect(await broker.isAuditor(byOidc)).toBe(false);
    const aud = await broker.identify({ platform: "console", externalId: "aud", email: "audit@example.com", displayName: "Audrey Auditor" });
    expect(await broker.isAuditor(aud)).toBe(true);
    // Without `auditors` in the configuration nobody is one.
    const plain = new Broker({ db: storage.db, config: brokerConfig() });
    expect(await plain.isAuditor(aud)).toBe(false);
  });
});

describe("auditors in the configuration", () => {
  it("defaults to nobody and refuses an entry an approver list would refuse, naming it", () => {
    expect(brokerConfig().auditors).toEqual([]);
    expect(brokerConfig("auditors: [audit@example.com, U0AUDIT]").auditors).toEqual(["audit@example.com", "U0AUDIT"]);
    let error: unknown;
    try {
      brokerConfig('auditors: ["29:1AbCdEf", "two words"]');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as ConfigError).message;
    expect(message).toContain('auditors[0]: "29:1AbCdEf" looks like a Teams user id: write it as "teams:29:1AbCdEf"');
    expect(message).toContain('auditors[1]: "two words" is neither an email nor a chat user id (it contains spaces)');
    expect(() => parseConfig("auditors: audit@example.com\n", "test", {})).toThrow(/auditors/);
  });
});
