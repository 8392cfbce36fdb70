import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/load.js";
import { startGateway, startupBanner, type Gateway } from "../src/main.js";
import { closeRedis, connectRedis } from "../src/infra/redis.js";
import { createTestDatabase, REDIS_URL, testPrefix } from "./support/databases.js";
import { capturedLogger } from "./support/logs.js";

const { logger, lines: logLines } = capturedLogger("info");

let database: Awaited<ReturnType<typeof createTestDatabase>>;
let gateway: Gateway;
const prefix = testPrefix("gateway");
const base = () => `http://127.0.0.1:${gateway.httpAddress.port}`;

beforeAll(async () => {
  database = await createTestDatabase("gateway");
  const config = parseConfig(
    `
database: \${DATABASE_URL}
redis: \${REDIS_URL}
redisPrefix: ${prefix}
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/orders
    approvers: [lead@example.com]
`,
    "gateway test",
    { DATABASE_URL: database.url, REDIS_URL },
  );
  gateway = await startGateway({ config, logger, httpListen: "127.0.0.1:0" });
});

afterAll(async () => {
  await gateway?.close();
  const redis = connectRedis(REDIS_URL);
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  await closeRedis(redis);
  await database?.drop();
});

describe("the gateway", () => {
  it("answers /healthz, /readyz and /metrics", async () => {
    expect(await (await fetch(`${base()}/healthz`)).json()).toEqual({ status: "ok" });
    const ready = await fetch(`${base()}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready", checks: { database: "ok", redis: "ok" } });

    const dev = await gateway.broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com" });
    const lead = await gateway.broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com" });
    const pending = await gateway.broker.request(dev, { target: "orders-db", duration: "1h", reason: "pending one" });
    const other = await gateway.broker.identify({ platform: "slack", externalId: "U3", email: "other@example.com" });
    const approved = await gateway.broker.request(other, { target: "orders-db", duration: "1h", reason: "approved one" });
    await gateway.broker.decide(lead, { requestId: approved.id, verdict: "approve" });
    expect(pending.state).toBe("pending");

    const metrics = await (await fetch(`${base()}/metrics`)).text();
    expect(metrics).toMatch(/^jitgate_requests\{state="pending"\} 1$/m);
    expect(metrics).toMatch(/^jitgate_requests\{state="approved"\} 1$/m);
    expect(metrics).toMatch(/^jitgate_live_grants 1$/m);
    expect(metrics).toMatch(/^jitgate_live_sessions 0$/m);
    expect(metrics).toMatch(/^jitgate_queue_jobs\{queue="grant-expiry",state="delayed"\} 1$/m);
    expect(metrics).toMatch(/^jitgate_queue_lag_seconds\{queue="grant-expiry"\} 0$/m);
    expect(await (await fetch(`${base()}/nope`)).json()).toEqual({ error: "not found" });
    expect((await fetch(`${base()}/healthz`, { method: "POST" })).status).toBe(405);
  });

  it("the banner says what listens where and what is not configured", () => {
    const banner = startupBanner(gateway, "gateway test");
    expect(banner).toContain(`http://127.0.0.1:${gateway.httpAddress.port}`);
    expect(banner).toContain("PostgreSQL postgres://postgres@127.0.0.1:5432/");
    expect(banner).toContain("orders-db (postgres)");
    expect(banner).toContain("no chat platform (slack: or teams:) is configured");
  });

  it("never logs the configuration's secrets", () => {
    logger.info({ config: gateway.config, connection: { line: "postgres://u:SECRET@h/db" } }, "probe");
    const text = logLines.join("");
    expect(text).toContain('"msg":"probe"');
    expect(text).not.toContain("SECRET");
  });
});

describe("with no Redis configured and none on the local port", () => {
  it("starts a private redis-server on a unix socket, reports unready when it dies, and closes twice cleanly", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "jitgate-embedded-"));
    const local = await startGateway({
      config: parseConfig(`dataDir: ${dataDir}\nredisPrefix: ${prefix}-embedded`, "embedded test", {}),
      logger,
      httpListen: "127.0.0.1:0",
      // Nothing listens on port 1: as on a machine without Redis.
      localRedisUrl: "redis://127.0.0.1:1",
    });
    try {
      expect(local.storage.kind).toBe("pglite");
      expect(local.redis.source).toBe("embedded");
      expect(local.redis.url).toBe(`unix://${join(dataDir, "redis", "redis.sock")}`);
      const url = `http://127.0.0.1:${local.httpAddress.port}/readyz`;
      expect((await fetch(url)).status).toBe(200);

      await local.redis.stop();
      const unready = await fetch(url);
      expect(unready.status).toBe(503);
      const body = (await unready.json()) as { checks: Record<string, string> };
      expect(body.checks.database).toBe("ok");
      expect(body.checks.redis).toMatch(/^unreachable/);
      // With Redis gone, shutdown still finishes, and a second close is a no-op.
      await expect(local.close()).resolves.toBeUndefined();
      await expect(local.close()).resolves.toBeUndefined();
    } finally {
      await local.close().catch(() => {});
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
