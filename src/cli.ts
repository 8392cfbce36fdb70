#!/usr/bin/env node
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { CronExpressionParser } from "cron-parser";
import { parseDuration } from "./config/duration.js";
import { ConfigError, loadConfig, parseConfig } from "./config/load.js";
import { DEMO_SOURCE, demoConfigYaml } from "./demo/demo-config.js";
import { redisPrefixOf, type Config } from "./config/schema.js";
import { deploymentId } from "./db/deployment.js";
import { JobOwnership } from "./infra/job-ownership.js";
import { openStorage, type Storage } from "./db/client.js";
import { recordAudit, searchAudit, verifyAuditChain, type AuditSearchRow } from "./broker/audit.js";
import { buildEvidenceBundle, sessionEvidence, verifyEvidenceBundle } from "./broker/evidence-bundle.js";
import { resultText, sessionTimelineJson, sessionTimelineText } from "./audit-show.js";
import { Broker, BrokerError, type BrokerEvent } from "./broker/index.js";
import { personByLogin } from "./broker/results.js";
import { SealError } from "./infra/seal.js";
import { ClusterEvents } from "./bus/cluster-events.js";
import { computeDigest } from "./broker/digest.js";
import { recordingsOf } from "./broker/recordings.js";
import { digestView, viewToPlainText } from "./bot/view-model.js";
import { ChatJobTargets } from "./jobs/chat-targets.js";
import { DigestJobs } from "./jobs/digest.js";
import { closeRedis, connectRedis } from "./infra/redis.js";
import { createLogger } from "./infra/logger.js";
import { playCast } from "./proxy/recording/asciicast.js";
import { startGateway, startupBanner } from "./main.js";
import { addIdentityCommands } from "./oidc/cli-commands.js";
import { buildTeamsPackage, TeamsPackageError } from "./bot/teams/teams-package.js";

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

/**
 * `audit show --reveal`: the broker's reveal (auditors only, a reason, the audit event), with the
 * thread post sent to this deployment's gateways over the cluster's events (they post it).
 */
async function revealFromCli(
  config: Config,
  storage: Storage,
  auditor: Awaited<ReturnType<typeof personByLogin>> & object,
  input: { sessionId: string; seq: number; reason: string; json: boolean },
): Promise<number> {
  const broker = new Broker({ db: storage.db, config });
  const deployment = await deploymentId(storage.db);
  // Redis only once there is an event to send (a refused reveal needs none).
  let connection: ReturnType<typeof connectRedis> | undefined;
  const sent: Promise<void>[] = [];
  broker.events.onAny((event: BrokerEvent) => {
    connection ??= connectRedis(config.redis ?? "redis://127.0.0.1:6379");
    const cluster = new ClusterEvents(connection, connection, redisPrefixOf(config, deployment), () => {}, new JobOwnership(deployment, () => {}));
    sent.push(
      cluster.publish(event).catch((error: unknown) => {
        process.stderr.write(`the thread post could not be sent to the gateways: ${(error as Error).message}\n`);
      }),
    );
  });
  try {
    const outcome = await broker.revealResults(auditor, { sessionId: input.sessionId, seq: input.seq, reason: input.reason });
    if (outcome.kind === "step-up-needed") {
      process.stderr.write(`revealing on this target needs a fresh sign-in, which this command cannot do; open ${outcome.link} in a browser (until ${outcome.expiresAt.toISOString()}): after the sign-in it shows this statement's originals there, for this reason\n`);
      return 1;
    }
    await Promise.all(sent);
    if (input.json) process.stdout.write(`${JSON.stringify({ type: "revealed", sessionId: input.sessionId, ...outcome.result, revealed: outcome.revealed, keyId: outcome.keyId })}\n`);
    else process.stdout.write(`Statement ${input.seq} of session ${input.sessionId}, revealed to ${auditor.displayName} (recorded in the audit log and the request's thread)\n${resultText(outcome.result, outcome.revealed).join("\n")}\n`);
    return 0;
  } catch (error) {
    if (error instanceof BrokerError || error instanceof SealError) {
      process.stderr.write(`${error.message}\n`);
      return 1;
    }
    throw error;
  } finally {
    if (connection) await closeRedis(connection);
  }
}

export function buildCli(): Command {
  const program = new Command("jitgate")
    .description("Just-in-time access to databases and hosts, approved in Slack or Microsoft Teams")
    .option("-c, --config <file>", "configuration file (default: $JITGATE_CONFIG or ./jitgate.yaml)")
    .showHelpAfterError();

  program
    .command("serve")
    .description("run the gateway: chat adapters, proxies, jobs and the HTTP endpoints")
    .option("--demo", "demo mode even when a configuration file exists (console, demo target, 127.0.0.1 only)")
    .action(async (serveOptions: { demo?: boolean }) => {
      const { config, source } = serveOptions.demo
        ? { config: parseConfig(demoConfigYaml(), DEMO_SOURCE), source: DEMO_SOURCE }
        : configOrExit(program.opts().config);
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
    .description("walk the hash chain and name the first broken link (exit 1 if there is one); with --bundle, check an evidence bundle on its own")
    .option("--bundle <file>", "an evidence bundle from `jitgate audit export` (needs no configuration or database)")
    .action(async (options: { bundle?: string }) => {
      if (options.bundle !== undefined) {
        let archive: Buffer;
        try {
          archive = readFileSync(options.bundle);
        } catch (error) {
          process.stderr.write(`cannot read ${options.bundle}: ${(error as Error).message}\n`);
          process.exitCode = 1;
          return;
        }
        const verdict = verifyEvidenceBundle(archive);
        if (verdict.ok) {
          const { chain, counts, range } = verdict.manifest;
          process.stdout.write(
            `bundle ok: ${range.since} – ${range.until}${range.target ? ` on ${range.target}` : ""}; events ${chain.firstSeq ?? "none"}–${chain.lastSeq ?? "none"} (${counts.events} with content${counts.omittedEvents ? `, ${counts.omittedEvents} of other targets as links only` : ""}), ${counts.sessions} sessions, ${counts.statements} statements, ${counts.results ?? 0} results, ${counts.recordings} recordings\n` +
              `last event's hash ${chain.lastHash ?? "none"}; chain head at export ${chain.head ? `${chain.head.seq} ${chain.head.hash}` : "none"}\n` +
              `(to prove it is this gateway's, compare these hashes with \`jitgate audit verify\` and \`jitgate audit search --kind audit.exported --json\` on its database)\n`,
          );
        } else {
          process.stderr.write(`bundle NOT verified:\n${verdict.problems.map((p) => `  ${p}`).join("\n")}\n`);
          process.exitCode = 1;
        }
        return;
      }
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

  audit
    .command("show <session-id>")
    .description("a session's timeline: who, target, grant, request, each statement (PostgreSQL) or recorded channel and file operation (SSH), its events")
    .option("--statement <n>", "only this statement", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a statement number (1, 2, …)");
      return n;
    })
    .option("--reveal", "the sealed original values of the statement's results (needs --statement, --reason and --as; an auditor only; audited and said in the request's thread)")
    .option("--reason <why>", "why the originals are revealed (recorded with the reveal)")
    .option("--as <who>", "the auditor revealing: their email or person id")
    .option("--json", "one JSON object per line")
    .action(async (sessionId: string, options: { statement?: number; reveal?: boolean; reason?: string; as?: string; json?: boolean }) => {
      if (options.reveal && (options.statement === undefined || !options.reason?.trim() || !options.as?.trim())) {
        process.stderr.write("--reveal shows one statement's originals at a time, by an auditor, with a stated reason: add --statement <n> --reason <why> --as <your email>\n");
        process.exitCode = 2;
        return;
      }
      const { config } = configOrExit(program.opts().config);
      await withStorage(config, async (storage) => {
        const evidence = await sessionEvidence(storage.db, sessionId);
        if (!evidence) {
          process.stderr.write(`no session ${sessionId}\n`);
          process.exitCode = 1;
          return;
        }
        if (options.statement !== undefined && !evidence.statements.some((s) => s.seq === options.statement)) {
          process.stderr.write(`session ${sessionId} has no statement ${options.statement}\n`);
          process.exitCode = 1;
          return;
        }
        if (!options.reveal) {
          process.stdout.write(options.json ? sessionTimelineJson(evidence, options.statement) : sessionTimelineText(evidence, options.statement));
          return;
        }
        const auditor = await personByLogin(storage.db, options.as!);
        if (!auditor) {
          process.stderr.write(`nobody known as ${options.as}\n`);
          process.exitCode = 1;
          return;
        }
        process.exitCode = await revealFromCli(config, storage, auditor, { sessionId, seq: options.statement!, reason: options.reason!, json: options.json === true });
      });
    });
  audit
    .command("export")
    .description("write an evidence bundle (.tar.gz): events, requests, sessions, statements, recordings and a manifest that `audit verify --bundle` checks")
    .requiredOption("--since <when>", "start of the range: a time or a duration ago (7d)", (v) => parseWhen(v))
    .requiredOption("--until <when>", "end of the range: a time or a duration ago", (v) => parseWhen(v))
    .option("--target <name>", "only this target (other targets' events stay in as links of the chain, without content)")
    .requiredOption("--out <file>", "where to write the bundle (an existing file is not overwritten)")
    .action(async (options: { since: Date; until: Date; target?: string; out: string }) => {
      if (options.since > options.until) {
        process.stderr.write(`--since (${options.since.toISOString()}) is after --until (${options.until.toISOString()})\n`);
        process.exitCode = 2;
        return;
      }
      const { config } = configOrExit(program.opts().config);
      await withStorage(config, async (storage) => {
        const now = new Date();
        const { bundle, manifest } = await buildEvidenceBundle(storage.db, { since: options.since, until: options.until, target: options.target }, now);
        try {
          writeFileSync(options.out, bundle, { flag: "wx" });
        } catch (error) {
          process.stderr.write(`cannot write ${options.out}: ${(error as Error).message}\n`);
          process.exitCode = 1;
          return;
        }
        // The export is evidence too: who exported what is in the chain, with the manifest's digest.
        try {
          await recordAudit(storage.db, now, {
            kind: "audit.exported",
            target: options.target ?? null,
            data: {
              since: manifest.range.since,
              until: manifest.range.until,
              manifestDigest: manifest.manifestDigest,
              firstSeq: manifest.chain.firstSeq,
              lastSeq: manifest.chain.lastSeq,
              osUser: process.env.USER ?? null,
            },
          });
        } catch (error) {
          rmSync(options.out, { force: true });
          throw error;
        }
        const { counts, chain } = manifest;
        process.stdout.write(
          `wrote ${options.out}: events ${chain.firstSeq ?? "none"}–${chain.lastSeq ?? "none"}, ${counts.requests} requests, ${counts.sessions} sessions, ${counts.statements} statements, ${counts.results ?? 0} results, ${counts.recordings} recordings; manifest ${manifest.manifestDigest}\n`,
        );
      });
    });

  program
    .command("replay <session-id>")
    .description("write an SSH session's recording as an asciicast v2 file, or play it in this terminal")
    .option("--out <file>", "write the .cast file instead of playing it (asciinema play reads it)")
    .option("--speed <n>", "playback speed (2 = twice as fast)", (v) => {
      const n = Number(v);
      if (!(n > 0)) throw new InvalidArgumentError("expected a positive number");
      return n;
    }, 1)
    .option("--channel <n>", "which recorded channel of the session (default: the first)", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a positive whole number");
      return n;
    })
    .action(async (sessionId: string, options: { out?: string; speed: number; channel?: number }) => {
      const { config } = configOrExit(program.opts().config);
      const recordings = await withStorage(config, (storage) =>
        recordingsOf(storage.db, sessionId),
      );
      const recording = options.channel === undefined ? recordings[0] : recordings.find((r) => r.channel === options.channel);
      if (!recording) {
        process.stderr.write(
          recordings.length === 0
            ? `no recording for session ${sessionId}\n`
            : `session ${sessionId} has no channel ${options.channel}; recorded: ${recordings.map((r) => `${r.channel} (${r.kind}${r.title ? ` ${r.title}` : ""})`).join(", ")}\n`,
        );
        process.exitCode = 1;
        return;
      }
      if (recordings.length > 1 && options.channel === undefined) {
        process.stderr.write(`session ${sessionId} has ${recordings.length} recorded channels; this is channel ${recording.channel} (choose with --channel)\n`);
      }
      if (options.out) {
        writeFileSync(options.out, recording.cast);
        process.stderr.write(`wrote ${options.out} (${recording.kind}${recording.title ? ` ${recording.title}` : ""}${recording.truncated ? ", truncated at the size limit" : ""})\n`);
        return;
      }
      await playCast(recording.cast, (data) => process.stdout.write(data), { speed: options.speed });
    });

  program
    .command("digest")
    .description("the daily digest: --now posts it at once through a running gateway (--dry-run prints it instead)")
    .option("--now", "make the digest now instead of showing the schedule")
    .option("--since <when>", "start of the window: a time or a duration ago", (v) => parseWhen(v))
    .option("--until <when>", "end of the window (default: now)", (v) => parseWhen(v))
    .option("--dry-run", "print the digest here; post nothing")
    .option("--wait <seconds>", "how long to wait for a gateway to post it", (v) => Number(v), 30)
    .action(async (options: { now?: boolean; since?: Date; until?: Date; dryRun?: boolean; wait: number }) => {
      const { config } = configOrExit(program.opts().config);
      if (!options.now) {
        const next = CronExpressionParser.parse(config.digest.cron, { tz: config.digest.timezone }).next().toDate();
        process.stdout.write(`daily digest: "${config.digest.cron}" (${config.digest.timezone}), next at ${next.toISOString()}; run with --now to make one now\n`);
        return;
      }
      const until = options.until ?? new Date();
      const since = options.since ?? new Date(until.getTime() - 24 * 3600_000);
      if (options.dryRun) {
        const digest = await withStorage(config, (storage) => computeDigest(storage.db, { since, until }));
        process.stdout.write(`${viewToPlainText(digestView(digest, config.digest.timezone))}\n`);
        return;
      }
      // The digest is posted by a gateway's worker, through the same job and chat outboxes as the daily one.
      const connection = connectRedis(config.redis ?? "redis://127.0.0.1:6379");
      const jobs = await withStorage(config, async (storage) => {
        // The job goes where this deployment's gateways take it: its prefix, carrying its id.
        const deployment = await deploymentId(storage.db);
        const prefix = redisPrefixOf(config, deployment);
        const ownership = new JobOwnership(deployment, () => {});
        const queue = new DigestJobs({ db: storage.db, clock: { now: () => new Date() }, targets: new ChatJobTargets(), connection, prefix, ownership, worker: false });
        try {
          const job = await queue.runNow({ since, until });
          const done = await queue.waitFor(job, connection, prefix, options.wait * 1000);
          process.stdout.write(
            done
              ? `digest of ${since.toISOString()} – ${until.toISOString()} posted (job ${job.id})\n`
              : `digest queued as job ${job.id}; no gateway posted it within ${options.wait} s (a running jitgate serve will)\n`,
          );
        } finally {
          await queue.close();
        }
      }).finally(() => closeRedis(connection));
      return jobs;
    });

  const teams = program.command("teams").description("Microsoft Teams");
  teams
    .command("package")
    .description("write the Teams app package (manifest with this installation's ids and host, and the icons) to upload in the Teams admin centre")
    .requiredOption("--app-id <guid>", "the bot's Microsoft App ID (teams.appId)")
    .requiredOption("--host <name>", "the host name Teams reaches the gateway at, e.g. jitgate.example.com")
    .option("--app-version <x.y.z>", "the app's version (raise it for each new upload of the same app)")
    .option("-o, --out <file>", "where to write the zip", "jitgate-teams.zip")
    .action((options: { appId: string; host: string; appVersion?: string; out: string }) => {
      try {
        const { zip, manifest } = buildTeamsPackage({ appId: options.appId, host: options.host, version: options.appVersion });
        writeFileSync(options.out, zip);
        process.stdout.write(`wrote ${options.out}: Teams app ${String(manifest.id)} version ${String(manifest.version)} for https://${options.host}/ (manifest.json, ${Object.values(manifest.icons as object).join(", ")})\n`);
      } catch (error) {
        if (!(error instanceof TeamsPackageError)) throw error;
        process.stderr.write(`${error.message}\n`);
        process.exitCode = 1;
      }
    });

  addIdentityCommands(program);

  return program;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === (await import("node:url")).pathToFileURL(process.argv[1]).href;
if (invokedDirectly || process.argv[1]?.endsWith("/jitgate")) {
  await buildCli().parseAsync(process.argv);
}
