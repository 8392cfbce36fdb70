import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mkdir } from "node:fs/promises";
import { chromium, type Browser } from "playwright-core";
import { parseConfig } from "../../src/config/load.js";
import { demoConfigYaml, type DemoOverrides } from "../../src/demo/demo-config.js";
import { startGateway, type Gateway } from "../../src/main.js";
import { createTestDatabase, dropRedisKeys, REDIS_URL, testPrefix } from "./databases.js";
import { capturedLogger } from "./logs.js";
import { freePort } from "./ports.js";

/** Where screenshots go (git-ignored). */
export const ARTIFACTS = "test/artifacts";

/** Debian's chromium. */
export const CHROMIUM = "/usr/bin/chromium";

/**
 * Debian's chromium, driven by playwright-core, with a fresh profile and nothing phoning home.
 * A failed start says so first ("Chromium could not start (path): …"), not in playwright's words alone.
 */
export async function launchChromium(executablePath = CHROMIUM): Promise<Browser> {
  await mkdir(ARTIFACTS, { recursive: true });
  try {
    return await chromium.launch({
      executablePath,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new Error(`Chromium could not start (${executablePath}): ${reason}`, { cause: error });
  }
}

/**
 * Starts a server (a gateway) and Chromium side by side. When either fails, the one that started
 * is closed before the failure is thrown: a test file whose browser cannot start leaves no gateway
 * (ports, Redis connections, workers) behind, and its failure names the browser.
 */
export async function startWithChromium<T extends { close(): Promise<void> }>(
  start: () => Promise<T>,
  executablePath = CHROMIUM,
): Promise<{ server: T; browser: Browser }> {
  const [server, browser] = await Promise.allSettled([start(), launchChromium(executablePath)]);
  if (server.status === "fulfilled" && browser.status === "fulfilled") return { server: server.value, browser: browser.value };
  if (server.status === "fulfilled") await server.value.close();
  if (browser.status === "fulfilled") await browser.value.close();
  throw server.status === "rejected" ? server.reason : (browser as PromiseRejectedResult).reason;
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
  // Its own data directory (the audit journal lives there), never the checkout's ./data.
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), `jitgate-${label}-`));
  const removeDataDir = () => {
    if (overrides.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
  };
  const { logger, lines: logs } = capturedLogger("warn");
  const yaml = demoConfigYaml({
    dataDir,
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
    removeDataDir();
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
      removeDataDir();
      if (replicaOf) return;
      await dropRedisKeys(prefix);
      await database!.drop();
    },
  };
}
