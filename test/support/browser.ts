import { mkdir } from "node:fs/promises";
import { chromium, type Browser } from "playwright-core";
import { parseConfig } from "../../src/config/load.js";
import { demoConfigYaml, type DemoOverrides } from "../../src/demo/demo-config.js";
import { closeRedis, connectRedis } from "../../src/infra/redis.js";
import { startGateway, type Gateway } from "../../src/main.js";
import { createTestDatabase, REDIS_URL, testPrefix } from "./databases.js";
import { capturedLogger } from "./logs.js";
import { freePort } from "./ports.js";

/** Where screenshots go (git-ignored). */
export const ARTIFACTS = "test/artifacts";

/** Debian's chromium, driven by playwright-core, with a fresh profile and nothing phoning home. */
export async function launchChromium(): Promise<Browser> {
  await mkdir(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

export interface DemoGateway {
  gateway: Gateway;
  /** http://127.0.0.1:<port> */
  base: string;
  logs: string[];
  prefix: string;
  databaseUrl: string;
  close(): Promise<void>;
}

/**
 * A gateway in demo mode as `npm start` runs it (the demo configuration, a demo target, the
 * console), on free ports, with its own PostgreSQL database and Redis prefix instead of PGlite.
 * `database` makes it a second replica of another demo gateway.
 */
export async function startDemoGateway(
  label: string,
  overrides: Omit<DemoOverrides, "database" | "redis" | "redisPrefix"> = {},
  replicaOf?: { databaseUrl: string; prefix: string },
): Promise<DemoGateway> {
  const database = replicaOf ? undefined : await createTestDatabase(label);
  const databaseUrl = replicaOf?.databaseUrl ?? database!.url;
  const prefix = replicaOf?.prefix ?? testPrefix(label);
  const { logger, lines: logs } = capturedLogger("warn");
  const yaml = demoConfigYaml({
    httpListen: `127.0.0.1:${await freePort()}`,
    proxyListen: `127.0.0.1:${await freePort()}`,
    targetListen: `127.0.0.1:${await freePort()}`,
    ...overrides,
    database: databaseUrl,
    redis: REDIS_URL,
    redisPrefix: prefix,
  });
  let gateway: Gateway;
  try {
    gateway = await startGateway({ config: parseConfig(yaml, `${label} demo`, {}), logger });
  } catch (error) {
    await database?.drop();
    throw error;
  }
  return {
    gateway,
    base: `http://127.0.0.1:${gateway.httpAddress.port}`,
    logs,
    prefix,
    databaseUrl,
    async close() {
      await gateway.close();
      if (replicaOf) return;
      const redis = connectRedis(REDIS_URL);
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      await closeRedis(redis);
      await database!.drop();
    },
  };
}
