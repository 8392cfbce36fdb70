import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { closeRedis, connectRedis, pingRedis } from "./redis.js";

export interface ResolvedRedis {
  url: string;
  /** How it was found, for the start-up banner. */
  source: "configured" | "local" | "embedded";
  /** Stops the private redis-server child, if one was started. Safe to call twice. */
  stop(): Promise<void>;
}

const LOCAL_REDIS = "redis://127.0.0.1:6379";

async function answers(url: string, timeoutMs: number): Promise<boolean> {
  const redis = connectRedis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on("error", () => {});
  try {
    await redis.connect();
    await pingRedis(redis, timeoutMs);
    return true;
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const candidate = join(dir, command);
    if (dir && existsSync(candidate)) return candidate;
  }
  for (const dir of ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"]) {
    if (existsSync(join(dir, command))) return join(dir, command);
  }
  return undefined;
}

export class RedisUnavailable extends Error {
  readonly code = "redis_unavailable";
}

/**
 * Where Redis is: the configured URL (which must answer); else a Redis on 127.0.0.1:6379; else a
 * private `redis-server` child on a unix socket under the data directory, with its data kept there;
 * else a one-line error naming what to install.
 */
export async function resolveRedis(
  configured: string | undefined,
  dataDir: string,
  options: { localUrl?: string } = {},
): Promise<ResolvedRedis> {
  const localUrl = options.localUrl ?? LOCAL_REDIS;
  const none = async () => {};
  if (configured) {
    if (!(await answers(configured, 3_000))) {
      throw new RedisUnavailable(`Redis at ${configured.replace(/\/\/[^@]*@/, "//***@")} does not answer`);
    }
    return { url: configured, source: "configured", stop: none };
  }
  if (await answers(localUrl, 500)) return { url: localUrl, source: "local", stop: none };

  const binary = onPath("redis-server");
  if (!binary) {
    throw new RedisUnavailable(
      "jitgate needs Redis: set REDIS_URL, run one on 127.0.0.1:6379, or install redis-server (apt-get install redis-server)",
    );
  }
  const dir = resolve(dataDir, "redis");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const socket = join(dir, "redis.sock");
  rmSync(socket, { force: true });
  const child: ChildProcess = spawn(
    binary,
    ["--port", "0", "--unixsocket", socket, "--unixsocketperm", "700", "--dir", dir, "--appendonly", "yes", "--save", ""],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  const url = `unix://${socket}`;
  for (let attempt = 0; attempt < 100 && !exited; attempt++) {
    if (existsSync(socket) && (await answers(url, 500))) {
      let stopping: Promise<void> | undefined;
      return {
        url,
        source: "embedded",
        stop: () =>
          (stopping ??= (async () => {
            if (exited) return;
            const redis = connectRedis(url, { maxRetriesPerRequest: 0 });
            redis.on("error", () => {});
            // SHUTDOWN flushes the append-only file; the child then exits by itself.
            await redis.call("SHUTDOWN").catch(() => {});
            await closeRedis(redis);
            for (let i = 0; i < 50 && !exited; i++) await sleep(100);
            if (!exited) child.kill("SIGKILL");
          })()),
      };
    }
    await sleep(100);
  }
  child.kill("SIGKILL");
  throw new RedisUnavailable(`the private redis-server (${binary}) did not start`);
}
