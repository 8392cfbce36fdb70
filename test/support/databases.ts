import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import pg from "pg";
import { openStorage, type Storage } from "../../src/db/client.js";
import { closeRedis, connectRedis } from "../../src/infra/redis.js";

/** The PostgreSQL server tests run against (CI starts it; trust auth, user postgres). */
export const ADMIN_URL = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export function urlFor(database: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

/** A fresh, empty database of its own for one test file; `drop()` removes it. */
export async function createTestDatabase(label: string): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `jitgate_test_${label.replace(/[^a-z0-9]/gi, "_").toLowerCase()}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: urlFor(name),
    async drop() {
      const client = new pg.Client({ connectionString: ADMIN_URL });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

/** Storage over a fresh migrated PostgreSQL database; `close()` also drops the database. */
export async function testPostgresStorage(label: string): Promise<Storage & { url: string }> {
  const database = await createTestDatabase(label);
  const storage = await openStorage({ url: database.url, dataDir: "unused" });
  await storage.migrate();
  return {
    ...storage,
    db: storage.db,
    kind: storage.kind,
    location: storage.location,
    url: database.url,
    ping: () => storage.ping(),
    migrate: () => storage.migrate(),
    async close() {
      await storage.close();
      await database.drop();
    },
  };
}

export async function testPgliteStorage(): Promise<Storage> {
  const storage = await openStorage({ dataDir: "unused", inMemory: true });
  await storage.migrate();
  return storage;
}

/** A Redis key prefix of its own for one test file. */
export function testPrefix(label: string): string {
  return `jitgate-test:${label}:${randomBytes(4).toString("hex")}`;
}

/**
 * Everything Redis holds under `key`, whatever its type, for scans that must not miss a secret:
 * strings, hashes, lists, sets, sorted sets (with scores) and streams (every entry).
 */
export async function readRedisValue(redis: Redis, key: string, type?: string): Promise<unknown> {
  switch (type ?? (await redis.type(key))) {
    case "string":
      return redis.get(key);
    case "hash":
      return redis.hgetall(key);
    case "list":
      return redis.lrange(key, 0, -1);
    case "set":
      return redis.smembers(key);
    case "zset":
      return redis.zrange(key, 0, -1, "WITHSCORES");
    case "stream":
      return redis.xrange(key, "-", "+");
    case "none":
      return null;
    default:
      throw new Error(`Redis key ${key} has a type this scan cannot read: ${type}`);
  }
}

/**
 * Deletes every Redis key under `prefix`: a test's clean-up, or what a failover to an empty Redis
 * does to one deployment (its jobs, caches and sessions gone), without touching other files' keys.
 */
export async function dropRedisKeys(prefix: string, url = REDIS_URL): Promise<void> {
  const redis = connectRedis(url);
  try {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
  } finally {
    await closeRedis(redis);
  }
}
