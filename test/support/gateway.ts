import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.js";
import { startGateway, type Gateway } from "../../src/main.js";
import type { Clock } from "../../src/broker/index.js";
import type { TeamsCloudOptions } from "../../src/bot/teams/teams-app.js";
import { createTestDatabase, dropRedisKeys, REDIS_URL, testPrefix } from "./databases.js";
import { capturedLogger } from "./logs.js";

export interface TestGateway {
  gateway: Gateway;
  logs: string[];
  prefix: string;
  close(): Promise<void>;
}

/**
 * A whole gateway on a database and Redis prefix of its own, listening on ephemeral ports.
 * `yaml` is the configuration minus `database`, `redis` and `redisPrefix`.
 */
export interface TestGatewayOptions {
  /** Default 127.0.0.1:0 (an OIDC redirect URL must name the port before the gateway starts). */
  httpListen?: string;
  postgresListen?: string;
  clock?: Clock;
  /** Where the Teams adapter finds the Bot Framework (the local fake connector in tests). */
  teamsCloud?: TeamsCloudOptions;
}

export async function startTestGateway(label: string, yaml: string, env: NodeJS.ProcessEnv = {}, options: TestGatewayOptions = {}): Promise<TestGateway> {
  const database = await createTestDatabase(label);
  const prefix = testPrefix(label);
  // Its own data directory (the audit journal lives there), never the checkout's ./data.
  const dataDir = mkdtempSync(join(tmpdir(), `jitgate-${label}-`));
  const { logger, lines: logs } = capturedLogger("warn");
  const config = parseConfig(`database: \${DATABASE_URL}\nredis: \${REDIS_URL}\nredisPrefix: ${prefix}\ndataDir: ${dataDir}\n${yaml}`, `${label} test`, {
    DATABASE_URL: database.url,
    REDIS_URL,
    ...env,
  });
  let gateway: Gateway;
  try {
    gateway = await startGateway({
      config,
      logger,
      httpListen: options.httpListen ?? "127.0.0.1:0",
      postgresListen: options.postgresListen ?? "127.0.0.1:0",
      sshListen: "127.0.0.1:0",
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.teamsCloud ? { teamsCloud: options.teamsCloud } : {}),
    });
  } catch (error) {
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    gateway,
    logs,
    prefix,
    async close() {
      await gateway.close();
      await dropRedisKeys(prefix);
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
