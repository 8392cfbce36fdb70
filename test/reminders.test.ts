import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker, SessionBroker, type HeldSnapshot, type Person } from "../src/broker/index.js";
import { ClusterEvents } from "../src/bus/cluster-events.js";
import type { Storage } from "../src/db/client.js";
import { ChatJobTargets } from "../src/jobs/chat-targets.js";
import { DigestJobs } from "../src/jobs/digest.js";
import { BullmqScheduler } from "../src/jobs/queues.js";
import { closeRedis, connectRedis } from "../src/infra/redis.js";
import { ExpiryReminders, reminderWorker, withReminders } from "../src/jobs/reminders.js";
import { ReviewTimeouts } from "../src/jobs/review-timeout.js";
import { dropRedisKeys, REDIS_URL, testPostgresStorage, testPrefix } from "./support/databases.js";
import { eventually } from "./support/fake-slack.js";
import { brokerConfig } from "./support/fixtures.js";
import { untilPast, WIDE_LATENESS_MS } from "./support/jobs.js";

// Seconds of room between a grant's approval and its reminder, so no step of a test races the jobs
// on a loaded machine.
const REMIND_BEFORE = 5_000;
const config = brokerConfig();
config.defaults.reminderBefore = REMIND_BEFORE;
config.defaults.reviewTimeout = 1_500;
const prefix = testPrefix("reminders");

/** What the jobs handed to chat, from whichever replica ran them. */
interface Call {
  kind: "remind" | "digest";
  replica: string;
  id: string;
  key: string;
  at: number;
}
const calls: Call[] = [];
const remindersOf = (grantId: string) => calls.filter((c) => c.kind === "remind" && c.id === grantId);

let storage: Storage;
let dev: Person, lead: Person, other: Person, second: Person;

interface JobReplica {
  name: string;
  broker: Broker;
  sessions: SessionBroker;
  reminders: ExpiryReminders;
  reviews: ReviewTimeouts;
  digest: DigestJobs;
  cluster: ClusterEvents;
  close(): Promise<void>;
}

/** One replica's jobs as main.ts wires them: reminders on the scheduler, review timeouts, the digest. */
async function startJobReplica(name: string): Promise<JobReplica> {
  const connection = connectRedis(REDIS_URL);
  const publisher = connectRedis(REDIS_URL);
  const subscriber = connectRedis(REDIS_URL);
  const errors = (error: unknown) => {
    throw error;
  };
  const scheduler = new BullmqScheduler(connection, prefix);
  const reminders = new ExpiryReminders(connection, prefix, REMIND_BEFORE);
  const broker = new Broker({ db: storage.db, config, scheduler: withReminders(scheduler, reminders), onBackgroundError: errors });
  const sessions = new SessionBroker(broker);
  const cluster = new ClusterEvents(publisher, subscriber, prefix);
  await cluster.start(broker.events);
  const targets = new ChatJobTargets();
  targets.register({
    platform: "slack",
    remind: async (grantId, key) => {
      calls.push({ kind: "remind", replica: name, id: grantId, key, at: Date.now() });
    },
    digest: async (digest, key) => {
      calls.push({ kind: "digest", replica: name, id: String(digest.until.getTime()), key, at: Date.now() });
    },
  });
  const worker = reminderWorker({ broker, reminders, targets, connection, prefix });
  const reviews = new ReviewTimeouts({ sessions, clock: broker.clock, connection, prefix });
  reviews.listen(cluster.events);
  const digest = new DigestJobs({ db: storage.db, clock: broker.clock, targets, connection, prefix });
  await Promise.all([worker.waitUntilReady(), reviews.waitUntilReady(), digest.waitUntilReady()]);
  return {
    name,
    broker,
    sessions,
    reminders,
    reviews,
    digest,
    cluster,
    async close() {
      await worker.close();
      await reviews.close();
      await digest.close();
      await cluster.stop();
      await reminders.close();
      await scheduler.close();
      await Promise.all([closeRedis(connection), closeRedis(publisher), closeRedis(subscriber)]);
    },
  };
}

beforeAll(async () => {
  storage = await testPostgresStorage("reminders");
  const setup = new Broker({ db: storage.db, config });
  await setup.syncTargets();
  dev = await setup.identify({ platform: "slack", externalId: "U1", email: "dev@example.com", displayName: "Dev" });
  lead = await setup.identify({ platform: "slack", externalId: "U2", email: "lead@example.com", displayName: "Lead" });
  other = await setup.identify({ platform: "slack", externalId: "U3", email: "other@example.com", displayName: "Other" });
  second = await setup.identify({ platform: "slack", externalId: "U4", email: "second@example.com", displayName: "Second" });
});

afterAll(async () => {
  await dropRedisKeys(prefix);
  await storage?.close();
});

async function grantFor(broker: Broker, person: Person, target: string, duration: string) {
  const request = await broker.request(person, { target, duration, reason: "INC-1 test" });
  const { grant } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  return grant!;
}

/** When a delayed BullMQ job is due: added at `timestamp`, `delay` ms later. */
const dueOf = (job: { timestamp: number; delay: number }) => new Date(job.timestamp + job.delay);

/**
 * A reminder due 2 s from now, and its arrival. The reminder queue runs jobs in due order, so
 * once this one has come, any reminder due before it (a duplicate, one that should not exist) has
 * come too: the positive signal that "nothing else happened" needs.
 */
async function sentinelReminder(broker: Broker, externalId: string): Promise<void> {
  const person = await broker.identify({ platform: "slack", externalId, email: `${externalId}@example.com`, displayName: externalId });
  const grant = await grantFor(broker, person, "web-1", "7s");
  await eventually(() => remindersOf(grant.id).length > 0, WIDE_LATENESS_MS, "the sentinel reminder");
}

describe("expiry reminders", () => {
  it("come reminderBefore ahead of expiry; extend moves them, revoke drops them", async () => {
    const replica = await startJobReplica("one");
    try {
      const grant = await grantFor(replica.broker, dev, "orders-db", "8s");
      const first = await replica.reminders.queue.getJob(grant.id);
      // Due reminderBefore ahead of expiry; the job is added a moment after its delay is computed,
      // so it can only be due that moment later, never earlier.
      const firstDue = dueOf(first!).getTime() - (grant.expiresAt.getTime() - REMIND_BEFORE);
      expect(firstDue).toBeGreaterThanOrEqual(0);
      expect(firstDue).toBeLessThan(WIDE_LATENESS_MS);
      const extended = await replica.broker.extend(lead, { grantId: grant.id, duration: "3s" });
      if (extended.kind !== "extended") throw new Error("expected an extension");
      const moved = await replica.reminders.queue.getJob(grant.id);
      expect((await moved!.getState())).toBe("delayed");

      const [reminder] = await eventually(
        () => (remindersOf(grant.id).length > 0 ? remindersOf(grant.id) : undefined),
        WIDE_LATENESS_MS + 10_000,
        "the reminder",
      );
      // Due at the new expiry minus reminderBefore (a second's early tolerance), never at the old one.
      const due = extended.grant.expiresAt.getTime() - REMIND_BEFORE;
      expect(reminder!.at).toBeGreaterThanOrEqual(due - 1_000);
      expect(reminder!.at - due).toBeLessThan(WIDE_LATENESS_MS);
      expect(reminder!.key).toBe(String(extended.grant.expiresAt.getTime()));

      const revoked = await grantFor(replica.broker, other, "web-1", "1h");
      expect((await replica.reminders.queue.getJob(revoked.id))?.data).toEqual({ grantId: revoked.id });
      await replica.broker.revoke(other, { grantId: revoked.id });
      expect(await replica.reminders.queue.getJob(revoked.id)).toBeUndefined();

      // A grant shorter than reminderBefore gets none: had it one, it would be due at once, before
      // the sentinel's.
      const short = await grantFor(replica.broker, second, "web-1", "1s");
      expect(await replica.reminders.queue.getJob(short.id)).toBeUndefined();
      await sentinelReminder(replica.broker, "U-sentinel-1");
      expect(remindersOf(grant.id)).toHaveLength(1);
      expect(remindersOf(short.id)).toHaveLength(0);
      expect(remindersOf(revoked.id)).toHaveLength(0);
    } finally {
      await replica.close();
    }
  });
});

describe("jobs across replicas and restarts", () => {
  it("two worker sets on one Redis: each reminder, review timeout and digest tick runs once", async () => {
    const [a, b] = await Promise.all([startJobReplica("a"), startJobReplica("b")]);
    try {
      // Both replicas upsert the same per-second digest schedule: one job per tick.
      await Promise.all([a.digest.schedule("* * * * * *", "UTC"), b.digest.schedule("* * * * * *", "UTC")]);
      const grants = await Promise.all([
        grantFor(a.broker, dev, "web-1", "8s"),
        grantFor(b.broker, other, "orders-db", "8s"),
        grantFor(a.broker, second, "orders-db", "8s"),
      ]);
      const [grant] = grants;
      const { snapshot } = await a.sessions.open({ grantId: grant!.id, protocol: "postgres", clientAddress: null });
      const decided: string[] = [];
      const offs = [a, b].map((r) => r.cluster.events.on("statement.decided", ({ held }) => void decided.push(held.id)));
      // No proxy holds these: only the review-timeout job can end them.
      const held: HeldSnapshot[] = [];
      for (const text of ["DELETE FROM t", "TRUNCATE t", "UPDATE t SET x = 1"]) held.push(await b.sessions.hold(snapshot, text, "review"));

      await eventually(() => grants.every((g) => remindersOf(g.id).length > 0), WIDE_LATENESS_MS, "every reminder");
      await eventually(async () => {
        for (const h of held) if ((await a.sessions.getHeld(h.id))?.state !== "timed_out") return false;
        return true;
      }, WIDE_LATENESS_MS, "every held statement timed out");
      // Later events in the same queues stand for "by now a duplicate would have run": a later
      // reminder, a later review timeout heard by both replicas, and digest ticks after the first two.
      const late = await b.sessions.hold(snapshot, "DROP TABLE t", "review");
      await sentinelReminder(b.broker, "U-sentinel-2");
      held.push(late);
      await eventually(() => decided.filter((id) => id === late.id).length >= 2, WIDE_LATENESS_MS, "the later review timeout on both replicas");
      await eventually(() => calls.filter((c) => c.kind === "digest").length >= 4, WIDE_LATENESS_MS, "four digest ticks");
      for (const off of offs) off();
      await a.digest.queue.removeJobScheduler("daily-digest");

      for (const g of grants) expect(remindersOf(g.id)).toHaveLength(1);
      // Each replica hears each decision once, over the cluster bus: one decision per held statement.
      for (const h of held) expect(decided.filter((id) => id === h.id)).toHaveLength(2);
      const digests = calls.filter((c) => c.kind === "digest");
      expect(digests.length).toBeGreaterThanOrEqual(2);
      expect(new Set(digests.map((d) => d.key)).size).toBe(digests.length);
      expect(new Set(digests.map((d) => d.id)).size).toBe(digests.length);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("a restart between scheduling and firing loses no job", async () => {
    const first = await startJobReplica("before-restart");
    const newcomer = await first.broker.identify({ platform: "slack", externalId: "U5", email: "new@example.com", displayName: "New" });
    // The reminder is due 5 s after approval (room to close before it) and the grant ends 5 s later
    // (room for the restart).
    const grant = await grantFor(first.broker, newcomer, "web-1", "10s");
    const { snapshot } = await first.sessions.open({ grantId: grant.id, protocol: "postgres", clientAddress: null });
    const held = await first.sessions.hold(snapshot, "DELETE FROM t", "review");
    const reviewJob = await eventually(() => first.reviews.queue.getJob(held.id), 5_000, "the review-timeout job");
    const reminderJob = await first.reminders.queue.getJob(grant.id);
    await first.close();
    // Nothing runs while no replica is up; both jobs come due meanwhile.
    await untilPast(dueOf(reviewJob));
    await untilPast(dueOf(reminderJob!));
    expect(remindersOf(grant.id)).toHaveLength(0);
    expect((await first.sessions.getHeld(held.id))?.state).toBe("held");

    const second_ = await startJobReplica("after-restart");
    try {
      await eventually(() => remindersOf(grant.id).length > 0, 10_000, "the reminder after the restart");
      await eventually(async () => (await second_.sessions.getHeld(held.id))?.state === "timed_out", 10_000, "the review timeout after the restart");
      expect(remindersOf(grant.id)[0]!.replica).toBe("after-restart");
    } finally {
      await second_.close();
    }
  });
});
