import type { Redis } from "ioredis";
import { redisPrefixOf, type Config, type DeployedConfig } from "../config/schema.js";
import { openStorage, type Storage } from "../db/client.js";
import { deploymentId } from "../db/deployment.js";
import type { Cleanups } from "../infra/cleanups.js";
import { JobOwnership } from "../infra/job-ownership.js";
import type { Logger } from "../infra/logger.js";
import { closeRedis, connectRedis, connectSubscriber } from "../infra/redis.js";
import { resolveRedis, type ResolvedRedis } from "../infra/redis-resolver.js";

export type OnBackgroundError = (error: unknown, what: string) => void;

/** Storage, the deployment's identity, Redis: what every other module stands on. */
export interface Core {
  config: DeployedConfig;
  deploymentId: string;
  ownership: JobOwnership;
  storage: Storage;
  redis: ResolvedRedis;
  /** Commands and BullMQ. */
  connection: Redis;
  publisher: Redis;
  subscriber: Redis;
  /** Where errors of work nobody awaits go: logged once per Redis outage, quiet for what shutdown stops. */
  onBackgroundError: OnBackgroundError;
}

export async function startCore(
  options: { config: Config; logger: Logger; localRedisUrl?: string | undefined },
  cleanups: Cleanups,
): Promise<Core> {
  const { logger } = options;
  const storage = await openStorage({ url: options.config.database, dataDir: options.config.dataDir });
  cleanups.add("database", () => storage.close());
  await storage.migrate();
  // Deployments sharing a Redis keep apart: by prefix by default, and by the id every job carries
  // when they share an explicit prefix (see JobOwnership).
  const deployment = await deploymentId(storage.db);
  const config: DeployedConfig = { ...options.config, redisPrefix: redisPrefixOf(options.config, deployment) };
  const ownership = new JobOwnership(deployment, (fields, message) => logger.warn(fields, message));
  logger.info({ deployment, redisPrefix: config.redisPrefix }, "deployment identity");

  const redis = await resolveRedis(config.redis, config.dataDir, options.localRedisUrl ? { localUrl: options.localRedisUrl } : {});
  cleanups.add("private redis-server", () => redis.stop());
  const connection = connectRedis(redis.url);
  const publisher = connectRedis(redis.url);
  const subscriber = connectSubscriber(redis.url);
  // ioredis retries forever and reports every attempt; one line per outage is what an operator wants.
  let lastRedisWarning = 0;
  for (const client of [connection, publisher, subscriber]) {
    client.on("error", (error) => {
      if (Date.now() - lastRedisWarning < 30_000) return;
      lastRedisWarning = Date.now();
      logger.warn({ err: error }, "Redis is unreachable; retrying (jobs and cluster events wait)");
    });
  }
  cleanups.add("redis connections", async () => {
    await Promise.all([closeRedis(connection), closeRedis(publisher), closeRedis(subscriber)]);
  });

  const onBackgroundError: OnBackgroundError = (error, what) => {
    if (connection.status !== "ready" && lastRedisWarning > 0) return; // already reported as an outage
    // Shutdown quits Redis under queues and workers that may still be starting: their "Connection is closed." is expected then.
    if (cleanups.closing && error instanceof Error && /connection is closed/i.test(error.message)) {
      logger.debug({ err: error, what }, "background task stopped by shutdown");
      return;
    }
    logger.error({ err: error, what }, "background task failed");
  };
  return { config, deploymentId: deployment, ownership, storage, redis, connection, publisher, subscriber, onBackgroundError };
}
