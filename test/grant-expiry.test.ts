import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GrantSnapshot, Person } from "../src/broker/index.js";
import type { Storage } from "../src/db/client.js";
import { dropRedisKeys, REDIS_URL, testPostgresStorage, testPrefix } from "./support/databases.js";
import { brokerConfig } from "./support/fixtures.js";
import { nextEvent, startReplica, untilPast, WIDE_LATENESS_MS, type Replica } from "./support/jobs.js";

const config = brokerConfig();
config.defaults.requestTtl = 2_000;

let storage: Storage;
let replica: Replica;
let dev: Person, lead: Person, other: Person;
const prefix = testPrefix("expiry");

beforeAll(async () => {
  storage = await testPostgresStorage("expiry");
  replica = await startReplica({ storage, config, redisUrl: REDIS_URL, prefix });
  const { broker } = replica;
  dev = await broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com", displayName: "Dev" });
  lead = await broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com", displayName: "Lead" });
  other = await broker.identify({ platform: "slack", externalId: "U3", email: "other@example.com", displayName: "Other" });
});

afterAll(async () => {
  await replica?.close();
  await dropRedisKeys(prefix);
  await storage?.close();
});

async function grantFor(person: Person, target: string, duration: string) {
  const request = await replica.broker.request(person, { target, duration, reason: "INC-1 test" });
  const { grant } = await replica.broker.decide(lead, { requestId: request.id, verdict: "approve" });
  return grant!;
}

const expiredEvent = (grantId: string, timeoutMs = WIDE_LATENESS_MS + 5_000) =>
  nextEvent<{ grant: GrantSnapshot }>((l) => replica.cluster.events.on("grant.expired", l), (p) => p.grant.id === grantId, timeoutMs);

describe("grant expiry", () => {
  it("a 2-second grant is expired by its job, never before expiresAt, and every replica hears it", async () => {
    const grant = await grantFor(dev, "orders-db", "2s");
    const { payload, at } = await expiredEvent(grant.id);
    const lateness = at - grant.expiresAt.getTime();
    expect(lateness).toBeGreaterThanOrEqual(0);
    expect(lateness).toBeLessThan(WIDE_LATENESS_MS);
    expect(payload.grant.state).toBe("expired");
    expect((await replica.broker.getGrant(grant.id)).state).toBe("expired");
  });

  it("extend moves the job; revoke removes it", async () => {
    // Long enough that the extension lands before the first due time even on a loaded machine.
    const grant = await grantFor(dev, "web-1", "5s");
    const extended = await replica.broker.extend(lead, { grantId: grant.id, duration: "2s" });
    expect(extended.kind).toBe("extended");
    const { at } = await expiredEvent(grant.id);
    expect(at - grant.expiresAt.getTime()).toBeGreaterThanOrEqual(2_000);
    expect(at - (grant.expiresAt.getTime() + 2_000)).toBeLessThan(WIDE_LATENESS_MS);

    const revoked = await grantFor(other, "web-1", "1h");
    expect((await replica.scheduler.grantExpiry.getJob(revoked.id))?.data).toEqual({ grantId: revoked.id });
    await replica.broker.revoke(other, { grantId: revoked.id });
    expect(await replica.scheduler.grantExpiry.getJob(revoked.id)).toBeUndefined();
  });

  it("a pending request times out after requestTtl", async () => {
    const request = await replica.broker.request(other, { target: "orders-db", duration: "1h", reason: "INC-2 no answer" });
    const { payload } = await nextEvent<{ request: { id: string; state: string } }>(
      (l) => replica.cluster.events.on("request.expired", l),
      (p) => p.request.id === request.id,
    );
    expect(payload.request.state).toBe("expired");
  });

  it("after Redis loses every key of the deployment the reconciliation restores expiry, and expires what is overdue", async () => {
    // Seconds apart, so the live one is still live when the restarted replica reconciles.
    const live = await grantFor(other, "orders-db", "8s");
    const overdue = await grantFor(dev, "web-1", "1s");
    // Redis loses everything of this deployment (a failover to an empty replica; FLUSHDB would also
    // take the keys of the test files running beside this one): the jobs of both grants are gone.
    await replica.workers.close();
    await dropRedisKeys(prefix);
    expect(await replica.scheduler.grantExpiry.getJob(live.id)).toBeUndefined();
    await untilPast(overdue.expiresAt);

    const restarted = await startReplica({ storage, config, redisUrl: REDIS_URL, prefix });
    try {
      const liveExpired = nextEvent<{ grant: GrantSnapshot }>(
        (l) => restarted.cluster.events.on("grant.expired", l),
        (p) => p.grant.id === live.id,
        WIDE_LATENESS_MS + 5_000,
      );
      const report = await restarted.reconciler.reconcile();
      expect(report.grantsExpired).toBe(1);
      expect(report.expiryJobsRestored).toBe(1);
      expect((await restarted.broker.getGrant(overdue.id)).state).toBe("expired");
      expect((await restarted.scheduler.grantExpiry.getJob(live.id))?.data).toEqual({ grantId: live.id });
      const { at } = await liveExpired;
      expect(at - live.expiresAt.getTime()).toBeGreaterThanOrEqual(0);
      expect(at - live.expiresAt.getTime()).toBeLessThan(WIDE_LATENESS_MS);
      // A second pass finds nothing to do.
      expect(await restarted.reconciler.reconcile()).toEqual({
        grantsExpired: 0,
        expiryJobsRestored: 0,
        requestsExpired: 0,
        timeoutJobsRestored: 0,
        grantStartJobsRestored: 0,
        breakGlassReminderJobsRestored: 0,
      });
    } finally {
      await restarted.close();
    }
  });
});
