#!/usr/bin/env node
import { Command, InvalidArgumentError } from "commander";
import { parseDuration } from "./config/duration.js";
import { ConfigError, loadConfig } from "./config/load.js";
import type { Config } from "./config/schema.js";
import { openStorage, type Storage } from "./db/client.js";
import { searchAudit, verifyAuditChain, type AuditSearchRow } from "./broker/audit.js";
import { createLogger } from "./logger.js";
import { startGateway, startupBanner } from "./main.js";

/** An absolute time (`2026-11-22`, `2026-11-22T09:00Z`) or one ago from now (`24h`, `7d`). */
export function parseWhen(text: string, now = new Date()): Date {
  const ago = parseDuration(text);
  if (ago !== undefined) return new Date(now.getTime() - ago);
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) throw new InvalidArgumentError(`"${text}" is neither a time like 2026-11-22T09:00Z nor a duration like 24h`);
  return at;
}

function configOrExit(file?: string): { config: Config; source: string } {
  try {
    return loadConfig(file ?? process.env.JITGATE_CONFIG);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
}

async function withStorage<T>(config: Config, run: (storage: Storage) => Promise<T>): Promise<T> {
  const storage = await openStorage({ url: config.database, dataDir: config.dataDir });
  try {
    await storage.migrate();
    return await run(storage);
  } finally {
    await storage.close();
  }
}

function formatRow(row: AuditSearchRow): string {
  const who = row.actorEmail ?? row.actorName ?? row.actorId ?? "jitgate";
  const subject = [row.target, row.requestId, row.grantId, row.sessionId].filter(Boolean).join(" ");
  const details = Object.keys(row.data).length > 0 ? ` ${JSON.stringify(row.data)}` : "";
  return `${String(row.seq).padStart(6)}  ${row.at.toISOString()}  ${row.kind.padEnd(18)} ${who.padEnd(24)} ${subject}${details}`;
}

export function buildCli(): Command {
  const program = new Command("jitgate")
    .description("Just-in-time access to databases and hosts, approved in Slack or Microsoft Teams")
    .option("-c, --config <file>", "configuration file (default: $JITGATE_CONFIG or ./jitgate.yaml)")
    .showHelpAfterError();

  program
    .command("serve")
    .description("run the gateway: chat adapters, proxies, jobs and the HTTP endpoints")
    .action(async () => {
      const { config, source } = configOrExit(program.opts().config);
      const logger = createLogger(config.log.level);
      // Signals are handled from the first moment: a SIGTERM during start-up also shuts down cleanly.
      let starting: ReturnType<typeof startGateway> | undefined;
      let signals = 0;
      const shutdown = (signal: string) => {
        signals += 1;
        if (signals > 1) process.exit(1);
        logger.info({ signal }, "shutting down");
        (starting ?? Promise.reject(new Error("not started")))
          .then((gateway) => gateway.close())
          .then(
            () => process.exit(0),
            (error: unknown) => {
              logger.error({ err: error }, "shutdown incomplete");
              process.exit(1);
            },
          );
      };
      process.on("SIGTERM", () => shutdown("SIGTERM"));
      process.on("SIGINT", () => shutdown("SIGINT"));
      starting = startGateway({ config, logger });
      try {
        const gateway = await starting;
        process.stdout.write(`${startupBanner(gateway, source)}\n`);
      } catch (error) {
        process.stderr.write(`jitgate could not start: ${(error as Error).message}\n`);
        logger.debug({ err: error }, "start-up failed");
        process.exit(1);
      }
    });

  program
    .command("migrate")
    .description("apply the database migrations and exit")
    .action(async () => {
      const { config } = configOrExit(program.opts().config);
      await withStorage(config, async (storage) => {
        process.stdout.write(`migrations applied to ${storage.kind === "pglite" ? storage.location : storage.location}\n`);
      });
    });

  const configCommand = program.command("config").description("configuration tools");
  configCommand
    .command("check [file]")
    .description("validate a configuration file and list every mistake")
    .action((file?: string) => {
      const { config, source } = configOrExit(file ?? program.opts().config);
      process.stdout.write(`${source}: ok (${config.targets.length} target${config.targets.length === 1 ? "" : "s"})\n`);
    });

  const audit = program.command("audit").description("the audit log");
  audit
    .command("verify")
    .description("walk the hash chain and name the first broken link (exit 1 if there is one)")
    .action(async () => {
      const { config } = configOrExit(program.opts().config);
      const verdict = await withStorage(config, (storage) => verifyAuditChain(storage.db));
      if (verdict.ok) {
        process.stdout.write(`audit chain ok: ${verdict.count} events, head ${verdict.head.slice(0, 16)}\n`);
      } else {
        process.stderr.write(`audit chain broken at event ${verdict.seq}: ${verdict.problem} (${verdict.count} events before it verify)\n`);
        process.exitCode = 1;
      }
    });
  audit
    .command("search")
    .description("search audit events")
    .option("--user <who>", "email, person id or chat user id of the actor")
    .option("--target <name>", "target name")
    .option("--kind <kind>", "event kind, e.g. grant.issued or grant.*")
    .option("--request <id>", "request id")
    .option("--since <when>", "a time or a duration ago (24h)", (v) => parseWhen(v))
    .option("--until <when>", "a time or a duration ago", (v) => parseWhen(v))
    .option("--limit <n>", "at most this many events", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a positive whole number");
      return n;
    }, 1000)
    .option("--json", "one JSON object per line")
    .action(async (options: { user?: string; target?: string; kind?: string; request?: string; since?: Date; until?: Date; limit: number; json?: boolean }) => {
      const { config } = configOrExit(program.opts().config);
      const rows = await withStorage(config, (storage) =>
        searchAudit(storage.db, {
          user: options.user,
          target: options.target,
          kind: options.kind,
          requestId: options.request,
          since: options.since,
          until: options.until,
          limit: options.limit,
        }),
      );
      for (const row of rows) {
        process.stdout.write(`${options.json ? JSON.stringify({ ...row, at: row.at.toISOString() }) : formatRow(row)}\n`);
      }
      if (!options.json) process.stderr.write(`${rows.length} event${rows.length === 1 ? "" : "s"}\n`);
    });

  return program;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === (await import("node:url")).pathToFileURL(process.argv[1]).href;
if (invokedDirectly || process.argv[1]?.endsWith("/jitgate")) {
  await buildCli().parseAsync(process.argv);
}
