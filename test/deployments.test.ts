import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/load.js";
import { closeRedis, connectRedis } from "../src/infra/redis.js";
import { GRANT_EXPIRY } from "../src/jobs/queues.js";
import { demoConfigYaml } from "../src/demo/demo-config.js";
import { startGateway, type Gateway } from "../src/main.js";
import { createTestDatabase, REDIS_URL, testPrefix } from "./support/databases.js";
import { eventually, FakeSlack, messageText } from "./support/fake-slack.js";
import { capturedLogger } from "./support/logs.js";
import { freePort } from "./support/ports.js";

/**
 * Two deployments on one Redis: each has an id of its own, kept in its own database, and by
 * default a Redis prefix that holds it, so neither takes the other's jobs. When they are given the
 * same prefix anyway, every job says whose it is and a worker leaves another deployment's alone.
 */

const CHANNEL = "C0APPROVALS";
const users = [
  { id: "U0DEV", email: "dev@example.com", realName: "Dev" },
  { id: "U0LEAD", email: "lead@example.com", realName: "Lead" },
  { id: "U0OPS", email: "ops@example.com", realName: "Ops" },
];

interface Deployment {
  label: string;
  gateway: Gateway;
  slack: FakeSlack;
  logs: string[];
  databaseUrl: string;
  stop(): Promise<void>;
  drop(): Promise<void>;
}

const redis = connectRedis(REDIS_URL);
const running: Deployment[] = [];
/** Every prefix a deployment of this file used: their keys are removed at the end. */
const prefixes = new Set<string>();

/** A gateway on a database of its own (or `databaseUrl`, to restart one), Slack at its own fake, `redisPrefix` only when given. */
async function startDeployment(label: string, options: { redisPrefix?: string; database?: { url: string; drop(): Promise<void> }; slack?: FakeSlack; token?: string } = {}): Promise<Deployment> {
  const database = options.database ?? (await createTestDatabase(`deployments_${label}`));
  const token = options.token ?? `xoxb-${label}`;
  const slack = options.slack ?? new FakeSlack(users, token);
  if (!options.slack) await slack.start();
  const { logger, lines: logs } = capturedLogger("warn");
  const config = parseConfig(
    `database: \${DATABASE_URL}
redis: \${REDIS_URL}
${options.redisPrefix ? `redisPrefix: ${options.redisPrefix}\n` : ""}slack:
  botToken: ${token}
  signingSecret: secret-${label}-0123456789abcdef
  apiUrl: \${SLACK_API_URL}
  approvalChannel: ${CHANNEL}
defaults: { maxDuration: 8h, approvals: 1, requestTtl: 1h, reminderBefore: 1s }
targets:
  - { name: shared-db, kind: postgres, upstream: "postgres://u:p@127.0.0.1:1/db", approvers: [lead@example.com] }
`,
    `${label} deployment`,
    { DATABASE_URL: database.url, REDIS_URL, SLACK_API_URL: slack.apiUrl },
  );
  const gateway = await startGateway({ config, logger, httpListen: "127.0.0.1:0", postgresListen: "127.0.0.1:0", sshListen: "127.0.0.1:0", reconcileIntervalMs: 3_600_000 });
  prefixes.add(gateway.config.redisPrefix);
  let stopped = false;
  const deployment: Deployment = {
    label,
    gateway,
    slack,
    logs,
    databaseUrl: database.url,
    async stop() {
      if (stopped) return;
      stopped = true;
      await gateway.close();
    },
    async drop() {
      await deployment.stop();
      if (!options.slack) await slack.stop();
      await database.drop();
    },
  };
  running.push(deployment);
  return deployment;
}

/** A grant of `duration` on the deployment's own database, requested and approved from Slack. */
async function grantOn(deployment: Deployment, duration: string, requester = users[0]!) {
  const { broker } = deployment.gateway;
  const dev = await broker.identify({ platform: "slack", externalId: requester.id, email: requester.email, displayName: requester.realName });
  const lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
  const request = await broker.request(dev, { target: "shared-db", duration, reason: `INC-1 on ${deployment.label}`, origin: "slack" });
  const { grant } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  return { request, grant: grant! };
}

async function grantState(deployment: Deployment, grantId: string): Promise<string> {
  return (await deployment.gateway.broker.getGrant(grantId)).state;
}

/** Everything the deployment's Slack was sent: root messages and thread replies, as text. */
function postedTexts(slack: FakeSlack): string[] {
  return [...slack.messages.values()].map((message) => messageText(message));
}

const foreignJobLines = (logs: string[]) => logs.filter((line) => line.includes("work of another deployment"));

afterAll(async () => {
  for (const deployment of running.reverse()) await deployment.drop().catch(() => {});
  for (const prefix of prefixes) {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
  }
  await closeRedis(redis);
});

describe("two deployments on one Redis, default configuration", () => {
  let a: Deployment;
  let b: Deployment;

  beforeAll(async () => {
    a = await startDeployment("a");
    b = await startDeployment("b");
  }, 60_000);

  it("gives each deployment an id kept in its own database, and a Redis prefix of its own", async () => {
    expect(a.gateway.deploymentId).toMatch(/^[0-9a-f]{16}$/);
    expect(b.gateway.deploymentId).not.toBe(a.gateway.deploymentId);
    expect(a.gateway.config.redisPrefix).toBe(`jitgate:${a.gateway.deploymentId}`);
    expect(b.gateway.config.redisPrefix).toBe(`jitgate:${b.gateway.deploymentId}`);
  });

  it("expires each grant by its own job, and posts each message from its own deployment", async () => {
    const onA = await grantOn(a, "2s");
    const onB = await grantOn(b, "2s");
    // Each expiry job sits under its own deployment's prefix and says whose it is.
    for (const [deployment, { grant }] of [[a, onA], [b, onB]] as const) {
      const job = await deployment.gateway.scheduler.grantExpiry.getJob(grant.id);
      expect(job?.data).toEqual({ grantId: grant.id, deployment: deployment.gateway.deploymentId });
      expect(await redis.exists(`${deployment.gateway.config.redisPrefix}:${GRANT_EXPIRY}:${grant.id}`)).toBe(1);
    }
    for (const [deployment, { grant }] of [[a, onA], [b, onB]] as const) {
      await eventually(async () => (await grantState(deployment, grant.id)) === "expired", 20_000, `${deployment.label}'s grant to expire`);
    }
    // Each Slack holds its own request's thread, expiry included, and nothing of the other's.
    for (const [deployment, own, other] of [[a, onA, onB], [b, onB, onA]] as const) {
      const texts = await eventually(() => {
        const all = postedTexts(deployment.slack);
        return all.some((text) => text.includes(own.request.id) && /expired/i.test(text)) && all;
      }, 20_000, `${deployment.label}'s thread to say the grant expired`);
      expect(texts.some((text) => text.includes(other.request.id) || text.includes(other.grant.id))).toBe(false);
      expect(deployment.slack.calls.every((call) => call.status === 200)).toBe(true);
    }
    for (const deployment of [a, b]) {
      expect(deployment.logs.filter((line) => /no grant|background task failed/.test(line))).toEqual([]);
      expect(foreignJobLines(deployment.logs)).toEqual([]);
    }
  }, 60_000);

  it("keeps the id across restarts: a replica on the same database joins the same deployment", async () => {
    const again = await startDeployment("a-replica", { database: { url: a.databaseUrl, drop: async () => {} } });
    expect(again.gateway.deploymentId).toBe(a.gateway.deploymentId);
    expect(again.gateway.config.redisPrefix).toBe(a.gateway.config.redisPrefix);
    await again.drop();
  }, 30_000);
});

describe("demo mode", () => {
  it("has a Redis prefix of its own, still holding its deployment's id", async () => {
    const database = await createTestDatabase("deployments_demo");
    const { logger } = capturedLogger("warn");
    const yaml = demoConfigYaml({
      httpListen: `127.0.0.1:${await freePort()}`,
      proxyListen: `127.0.0.1:${await freePort()}`,
      targetListen: `127.0.0.1:${await freePort()}`,
      database: database.url,
      redis: REDIS_URL,
    });
    const gateway = await startGateway({ config: parseConfig(yaml, "demo", {}), logger });
    try {
      prefixes.add(gateway.config.redisPrefix);
      expect(gateway.config.redisPrefix).toBe(`jitgate-demo:${gateway.deploymentId}`);
      expect(await redis.exists(`jitgate-demo:${gateway.deploymentId}:${GRANT_EXPIRY}:meta`)).toBe(1);
    } finally {
      await gateway.close();
      await database.drop();
    }
  }, 60_000);
});

describe("two deployments given the same redisPrefix", () => {
  const shared = testPrefix("deployments_shared");
  let a: Deployment;
  let b: Deployment;

  beforeAll(async () => {
    a = await startDeployment("shared_a", { redisPrefix: shared });
    b = await startDeployment("shared_b", { redisPrefix: shared });
  }, 60_000);

  it("leaves a job of another deployment to that deployment's workers, says so once, and its owner runs it", async () => {
    expect(a.gateway.config.redisPrefix).toBe(shared);
    expect(b.gateway.config.redisPrefix).toBe(shared);
    // A's grant expires while A is down: only B's workers are there to take its job.
    const { request, grant } = await grantOn(a, "2s");
    const { grant: second } = await grantOn(a, "3s", users[2]);
    await a.stop();
    const expiryLines = () => foreignJobLines(b.logs).filter((line) => line.includes(`"queue":"${GRANT_EXPIRY}"`));
    await eventually(() => expiryLines().length > 0, 20_000, "B to notice A's job");
    const line = JSON.parse(expiryLines()[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 40, queue: GRANT_EXPIRY, deployment: a.gateway.deploymentId, ours: b.gateway.deploymentId });
    // Left alone: still there, waiting, no attempt spent, not failed.
    const job = await b.gateway.scheduler.grantExpiry.getJob(grant.id);
    expect(await job?.getState()).toMatch(/^(active|waiting)$/);
    expect(job?.attemptsMade).toBe(0);
    await eventually(async () => {
      const other = await b.gateway.scheduler.grantExpiry.getJob(second.id);
      return other !== undefined && other.attemptsStarted > 0 && other.attemptsMade === 0;
    }, 20_000, "B to leave A's second job alone too");
    // Once per queue and deployment, however many jobs (A's chat messages may have reached B's outbox worker too).
    const queues = foreignJobLines(b.logs).map((l) => (JSON.parse(l) as { queue: string }).queue);
    expect(new Set(queues).size).toBe(queues.length);
    expect(b.slack.calls.some((call) => JSON.stringify(call.args).includes(request.id))).toBe(false);

    // A comes back (same database, same deployment) and its own worker takes both jobs.
    const back = await startDeployment("shared_a_back", { redisPrefix: shared, database: { url: a.databaseUrl, drop: async () => {} }, slack: a.slack, token: "xoxb-shared_a" });
    expect(back.gateway.deploymentId).toBe(a.gateway.deploymentId);
    // B's workers put a job back before they ask for another, so A's worker, woken by the put-back,
    // takes it within a second or two (when B asked at once, A starved for minutes).
    for (const id of [grant.id, second.id]) {
      await eventually(async () => (await back.gateway.scheduler.grantExpiry.getJob(id)) === undefined, 60_000, `A's job for ${id} to be done`);
      expect(await grantState(back, id)).toBe("expired");
    }
    // A's messages were posted by A, to A's Slack, with A's token.
    await eventually(() => postedTexts(a.slack).some((text) => text.includes(request.id)), 20_000, "A's request in A's Slack");
    expect(b.slack.calls.some((call) => JSON.stringify(call.args).includes(request.id))).toBe(false);
    expect(b.logs.filter((l) => /no grant|background task failed/.test(l))).toEqual([]);
    await back.stop();
  }, 180_000);
});
