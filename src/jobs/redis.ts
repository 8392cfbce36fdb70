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
