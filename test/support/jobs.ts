import { Broker, type Clock } from "../../src/broker/index.js";
import { ClusterEvents } from "../../src/bus/cluster-events.js";
import type { Config } from "../../src/config/schema.js";
import type { Storage } from "../../src/db/client.js";
import { ExpiryWorkers } from "../../src/jobs/expiry.workers.js";
import { BullmqScheduler } from "../../src/jobs/queues.js";
import { Reconciler } from "../../src/jobs/reconciler.js";
import { closeRedis, connectRedis, connectSubscriber } from "../../src/infra/redis.js";

export interface Replica {
  broker: Broker;
  scheduler: BullmqScheduler;
  workers: ExpiryWorkers;
  cluster: ClusterEvents;
  reconciler: Reconciler;
  errors: unknown[];
  close(): Promise<void>;
}

/** One gateway replica's broker, BullMQ scheduler, workers, reconciler and cluster events. */
export async function startReplica(options: {
  storage: Storage;
  config: Config;
  redisUrl: string;
  prefix: string;
  clock?: Clock;
  workers?: boolean;
}): Promise<Replica> {
  const errors: unknown[] = [];
  const onError = (error: unknown) => errors.push(error);
  const connection = connectRedis(options.redisUrl);
  const publisher = connectRedis(options.redisUrl);
  const subscriber = connectSubscriber(options.redisUrl);
  const scheduler = new BullmqScheduler(connection, options.prefix);
  const broker = new Broker({
    db: options.storage.db,
    config: options.config,
    scheduler,
    onBackgroundError: onError,
    ...(options.clock ? { clock: options.clock } : {}),
  });
  await broker.syncTargets();
  const cluster = new ClusterEvents(publisher, subscriber, options.prefix, onError);
  await cluster.start(broker.events);
  const workers = new ExpiryWorkers({ broker, connection, prefix: options.prefix, onError });
  if (options.workers !== false) await workers.waitUntilReady();
  else await workers.close();
  const reconciler = new Reconciler(broker, scheduler, onError);
  return {
    broker,
    scheduler,
    workers,
    cluster,
    reconciler,
    errors,
    async close() {
      await reconciler.stop();
      await workers.close();
      await cluster.stop();
      await scheduler.close();
      await Promise.all([closeRedis(connection), closeRedis(publisher), closeRedis(subscriber)]);
    },
  };
}

/** Resolves with the first event `name` matching `predicate`, or rejects after `timeoutMs`. */
export function nextEvent<T>(
  subscribe: (listener: (payload: T) => void) => () => void,
  predicate: (payload: T) => boolean,
  timeoutMs = 10_000,
): Promise<{ payload: T; at: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = subscribe((payload) => {
      if (!predicate(payload)) return;
      clearTimeout(timer);
      off();
      resolve({ payload, at: Date.now() });
    });
  });
}

/**
 * How late a delayed job may fire before a test calls it broken. A job that fires is late only by
 * the machine's load (milliseconds, a few seconds on a busy 2-core runner); a job that was not
 * scheduled or moved does not fire at all (the wait times out) or fires early (a lower bound that
 * never depends on speed). So the upper bound is wide on purpose.
 */
export const WIDE_LATENESS_MS = 15_000;

/** Resolves once the wall clock is past `at`: waiting for the moment itself, not a guess at it. */
export async function untilPast(at: Date): Promise<void> {
  while (Date.now() <= at.getTime()) {
    await new Promise((resolve) => setTimeout(resolve, at.getTime() - Date.now() + 1));
  }
}
