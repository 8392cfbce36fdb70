import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker, ManualClock, type Person } from "../src/broker/index.js";
import type { Storage } from "../src/db/client.js";
import { brokerConfig } from "./support/fixtures.js";
import { testPostgresStorage } from "./support/databases.js";

let storage: Storage;
let broker: Broker;
const clock = new ManualClock(new Date("2026-11-22T10:00:00Z"));
let dev: Person, lead: Person, second: Person, slackLead: Person, stranger: Person;

beforeAll(async () => {
  storage = await testPostgresStorage("policy");
  broker = new Broker({ db: storage.db, config: brokerConfig(), clock });
  await broker.syncTargets();
  dev = await broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
  lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
  second = await broker.identify({ platform: "teams", externalId: "29:second", email: "second@example.com", displayName: "Second" });
  slackLead = await broker.identify({ platform: "slack", externalId: "U0LEAD42", displayName: "Lead by id" });
  stranger = await broker.identify({ platform: "slack", externalId: "U0NOPE", email: "nope@example.com", displayName: "Stranger" });
});

afterAll(async () => {
  await storage?.close();
});

const ask = (target = "orders-db", duration = "1h", reason = "INC-1 stuck orders", who?: Person) =>
  broker.request(who ?? dev, { target, duration, reason });

describe("identities", () => {
  it("one person across platforms by email; an identity learns its email unless someone else has it", async () => {
    const teamsLead = await broker.identify({ platform: "teams", externalId: "29:lead", email: "LEAD@example.com", displayName: "Lead in Teams" });
    expect(teamsLead.id).toBe(lead.id);
    const anonymous = await broker.identify({ platform: "console", externalId: "anon-1", displayName: "Anon" });
    expect(anonymous.email).toBeNull();
    const learned = await broker.identify({ platform: "console", externalId: "anon-1", email: "anon@example.com" });
    expect(learned).toMatchObject({ id: anonymous.id, email: "anon@example.com" });
    const other = await broker.identify({ platform: "console", externalId: "anon-2" });
    const clash = await broker.identify({ platform: "console", externalId: "anon-2", email: "dev@example.com" });
    expect(clash).toMatchObject({ id: other.id, email: null });
  });
});

describe("requests", () => {
  it.each<[string, { target?: string; duration?: string; reason?: string }, string, RegExp]>([
    ["unknown target", { target: "nope-db" }, "broker_unknown_target", /targets: orders-db, payments-db, web-1/],
    ["duration over the target maximum", { duration: "5h" }, "broker_duration_too_long", /maximum of 4h/],
    ["unparseable duration", { duration: "9x" }, "broker_invalid_duration", /not a duration/],
    ["reason not matching reasonPattern", { reason: "because" }, "broker_reason_rejected", /\^\(INC\|JIRA\)/],
    ["empty reason", { reason: "  " }, "broker_reason_required", /reason is required/],
  ])("%s is refused", async (_name, input, code, message) => {
    const attempt = ask(input.target, input.duration, input.reason);
    await expect(attempt).rejects.toMatchObject({ code });
    await expect(attempt).rejects.toThrow(message);
  });

  it("creates a pending request with the target's quorum and ttl", async () => {
    const request = await ask("payments-db", "2h", "maintenance");
    expect(request).toMatchObject({ state: "pending", approvalsRequired: 2, durationMs: 7_200_000 });
    expect(request.timeoutAt.getTime() - clock.now().getTime()).toBe(3_600_000);
  });
});

describe("decisions", () => {
  it("refuses self-approval", async () => {
    const request = await ask("payments-db", "1h", "self", dev);
    await expect(broker.decide(dev, { requestId: request.id, verdict: "approve" })).rejects.toMatchObject({
      code: "broker_self_approval",
    });
  });

  it("refuses a non-approver and changes nothing", async () => {
    const request = await ask();
    await expect(broker.decide(stranger, { requestId: request.id, verdict: "approve" })).rejects.toMatchObject({
      code: "broker_not_an_approver",
      message: "you are not an approver of orders-db",
    });
    expect(await broker.decisionsOf(request.id)).toHaveLength(0);
    expect((await broker.getRequest(request.id)).state).toBe("pending");
  });

  it("accepts an approver named by chat id", async () => {
    const request = await ask("orders-db", "1h", "INC-2 by id", second);
    const result = await broker.decide(slackLead, { requestId: request.id, verdict: "approve" });
    expect(result.grant?.personId).toBe(second.id);
  });

  it("needs two distinct approvers for quorum 2; a double approve counts once", async () => {
    const request = await ask("payments-db", "1h", "quorum", stranger);
    const first = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
    expect(first).toMatchObject({ approvals: 1, required: 2 });
    expect(first.grant).toBeUndefined();
    await expect(broker.decide(lead, { requestId: request.id, verdict: "approve" })).rejects.toMatchObject({
      code: "broker_already_decided",
    });
    expect((await broker.getRequest(request.id)).state).toBe("pending");
    const done = await broker.decide(second, { requestId: request.id, verdict: "approve" });
    expect(done).toMatchObject({ approvals: 2, required: 2 });
    expect(done.grant?.state).toBe("active");
    expect(done.connection?.line).toMatch(
      /^postgres:\/\/nope%40example\.com:[A-Za-z0-9_-]{32}@db-gw\.example\.com:15432\/payments-db\?sslmode=disable$/,
    );
  });

  it("refuses deny after approve, naming who approved", async () => {
    const request = await ask("orders-db", "1h", "INC-3", stranger);
    await broker.decide(lead, { requestId: request.id, verdict: "approve" });
    await expect(broker.decide(slackLead, { requestId: request.id, verdict: "deny" })).rejects.toMatchObject({
      code: "broker_request_not_pending",
      message: `request ${request.id} is already approved by Lead`,
    });
  });

  it("denies with a reason", async () => {
    const request = await ask("web-1", "1h", "look at logs", stranger);
    const result = await broker.decide(lead, { requestId: request.id, verdict: "deny", reason: "use the dashboard" });
    expect(result.request.state).toBe("denied");
    expect(result.decision.reason).toBe("use the dashboard");
  });

  it("refuses a second request while a grant is live", async () => {
    await expect(ask("orders-db", "1h", "INC-4 again", stranger)).rejects.toMatchObject({ code: "broker_grant_already_live" });
  });
});

describe("grants", () => {
  it("extend beyond maxDuration is refused; within it an approver extends at once", async () => {
    const request = await ask("orders-db", "2h", "INC-5", dev);
    const { grant } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
    await expect(broker.extend(lead, { grantId: grant!.id, duration: "3h" })).rejects.toMatchObject({
      code: "broker_duration_too_long",
    });
    const extended = await broker.extend(lead, { grantId: grant!.id, duration: "1h" });
    expect(extended.kind).toBe("extended");
    if (extended.kind === "extended") expect(extended.grant.expiresAt.getTime() - grant!.expiresAt.getTime()).toBe(3_600_000);
  });

  it("the holder's extend goes through approval", async () => {
    const { grants } = await broker.list(dev);
    const grant = grants.find((g) => g.target === "orders-db")!;
    const asked = await broker.extend(dev, { grantId: grant.id, duration: "30m" });
    expect(asked.kind).toBe("requested");
    if (asked.kind !== "requested") return;
    expect(asked.request).toMatchObject({ kind: "extension", grantId: grant.id, state: "pending" });
    const result = await broker.decide(lead, { requestId: asked.request.id, verdict: "approve" });
    expect(result.extended?.grant.expiresAt.getTime()).toBe(grant.expiresAt.getTime() + 1_800_000);
  });

  it("a credential works only for its grant, and dies with it", async () => {
    const request = await ask("orders-db", "1h", "INC-6", lead);
    const approved = await broker.decide(slackLead.id === lead.id ? second : slackLead, { requestId: request.id, verdict: "approve" });
    const secret = approved.connection!.secret;
    const login = approved.connection!.login;
    await expect(broker.checkCredential({ login, target: "orders-db", secret })).resolves.toMatchObject({ id: approved.grant!.id });
    await expect(broker.checkCredential({ login, target: "orders-db", secret: "wrong" })).rejects.toMatchObject({
      code: "broker_invalid_credential",
    });
    // Every failure is the same one error: nothing tells a wrong target from a wrong secret.
    await expect(broker.checkCredential({ login, target: "payments-db", secret })).rejects.toMatchObject({
      code: "broker_invalid_credential",
    });
    await expect(broker.checkCredential({ login: "dev@example.com", target: "orders-db", secret })).rejects.toMatchObject({
      code: "broker_invalid_credential",
    });
    await broker.revoke(lead, { grantId: approved.grant!.id, reason: "done" });
    await expect(broker.checkCredential({ login, target: "orders-db", secret })).rejects.toMatchObject({
      code: "broker_invalid_credential",
    });
  });

  it("a stranger may not revoke; expire before expiresAt does nothing, after it ends the grant", async () => {
    const request = await ask("web-1", "1h", "deploy", second);
    const { grant } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
    await expect(broker.revoke(stranger, { grantId: grant!.id })).rejects.toMatchObject({ code: "broker_not_allowed" });
    expect(await broker.expire(grant!.id)).toMatchObject({ kind: "not-due" });
    clock.advance(3_600_000);
    expect(await broker.expire(grant!.id)).toMatchObject({ kind: "expired" });
    expect(await broker.expire(grant!.id)).toEqual({ kind: "ended" });
    await expect(broker.extend(lead, { grantId: grant!.id, duration: "1h" })).rejects.toMatchObject({ code: "broker_grant_not_active" });
  });

  it("a request with no decision within requestTtl expires", async () => {
    const request = await ask("web-1", "1h", "later", stranger);
    expect(await broker.expireRequest(request.id)).toBeUndefined();
    clock.advance(3_600_000);
    expect((await broker.expireRequest(request.id))?.state).toBe("expired");
    await expect(broker.decide(lead, { requestId: request.id, verdict: "approve" })).rejects.toMatchObject({
      code: "broker_request_not_pending",
    });
  });

  it("whocan lists approvers with their known names and the quorum", async () => {
    const answer = await broker.whocan("payments-db");
    expect(answer.policy.approvals).toBe(2);
    expect(answer.approvers).toEqual([
      { entry: "lead@example.com", name: "Lead" },
      { entry: "second@example.com", name: "Second" },
      { entry: "dev@example.com", name: "Dev" },
    ]);
  });
});
