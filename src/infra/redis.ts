import { Redis, type RedisOptions } from "ioredis";

/**
 * An ioredis connection from a `redis://`, `rediss://` or `unix:///path/to.sock` URL. BullMQ's
 * blocking connections need `maxRetriesPerRequest: null`; every connection gets it so that a Redis
 * restart stalls work instead of failing it.
 */
export function connectRedis(url: string, extra: RedisOptions = {}): Redis {
  const options: RedisOptions = { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false, ...extra };
  if (url.startsWith("unix:")) {
    const path = decodeURIComponent(new URL(url).pathname);
    return new Redis({ ...options, path });
  }
  return new Redis(url, options);
}

/**
 * A connection for SUBSCRIBE. ioredis's ready check sends INFO, which a connection already in
 * subscriber mode may not send: a reconnect under load then fails with "Connection in subscriber
 * mode" and the subscription is silently gone. Without the check, ioredis resubscribes on its own.
 */
export function connectSubscriber(url: string): Redis {
  return connectRedis(url, { enableReadyCheck: false });
}

/** Resolves once the connection answers PING, or rejects after `timeoutMs`. */
export async function pingRedis(redis: Redis, timeoutMs = 2_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis did not answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Closes a connection, politely if it can and at once if it cannot. Safe to call twice. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === "end") return;
  // QUIT would wait in the offline queue for a server that is not there.
  if (redis.status !== "ready") {
    redis.disconnect();
    return;
  }
  try {
    await redis.quit();
  } catch {
    redis.disconnect();
  }
}

type ErrorEmitter = { on(event: "error", listener: (error: Error) => void): unknown };

/**
 * Gives a BullMQ queue, worker or event stream an 'error' listener. They re-emit their Redis
 * connection's errors, and an emitter without a listener turns one into an uncaught exception: a
 * queue still checking its connection when shutdown quits Redis killed the process with
 * "Connection is closed." and exit 1.
 */
export function reportErrors<E extends ErrorEmitter>(emitter: E, what: string, onError: ((error: unknown, what: string) => void) | undefined): E {
  emitter.on("error", (error) => onError?.(error, what));
  return emitter;
}

type BullmqPart = { waitUntilReady(): Promise<unknown>; close(force?: boolean): Promise<void> };
const READY_BEFORE_CLOSE_MS = 5_000;

/**
 * Closes BullMQ queues and workers that share `connection`; safe with parts still starting, and goes
 * on when one fails (the first failure is thrown after all have closed).
 *
 * - With Redis up, each part first finishes starting: BullMQ (5.81) closing a shared connection that
 *   is still starting drops its listeners, and the start's late failure ("Connection is closed." once
 *   Redis is quit) is then emitted with none, an uncaught exception (a SIGTERM under load exited 1).
 * - With Redis gone, workers close by force: a polite close would wait for it forever, and a job
 *   cut short is retried elsewhere.
 */
export async function closeBullmq(parts: (BullmqPart | undefined)[], connection: unknown): Promise<void> {
  const status = (connection as { status?: unknown }).status;
  const down = typeof status === "string" && status !== "ready";
  const present = parts.filter((part): part is BullmqPart => part !== undefined);
  if (!down) await Promise.allSettled(present.map((part) => withDeadline(part.waitUntilReady(), READY_BEFORE_CLOSE_MS)));
  const results = await Promise.allSettled(present.map((part) => part.close(down)));
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

function withDeadline(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() => clearTimeout(timer));
}
