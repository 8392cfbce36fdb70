import type { AddressInfo } from "node:net";
import { startSlack } from "./bot/slack/slack-app.js";
import { chatJobTarget } from "./bot/scheduled-messages.js";
import { startTeams, type TeamsCloudOptions } from "./bot/teams/teams-app.js";
import { Broker, systemClock, type Clock } from "./broker/index.js";
import { ClusterEvents } from "./bus/cluster-events.js";
import { redisPrefixOf, type Config, type DeployedConfig } from "./config/schema.js";
import { deploymentId } from "./db/deployment.js";
import { JobOwnership } from "./infra/job-ownership.js";
import { openStorage, type Storage } from "./db/client.js";
import { mountOperations } from "./http/operations.js";
import { HttpServer } from "./infra/web/http-server.js";
import { ExpiryWorkers } from "./jobs/expiry.workers.js";
import { BullmqScheduler } from "./jobs/queues.js";
import { Reconciler } from "./jobs/reconciler.js";
import { ChatJobTargets } from "./jobs/chat-targets.js";
import { DigestJobs } from "./jobs/digest.js";
import { ExpiryReminders, reminderWorker, withReminders } from "./jobs/reminders.js";
import { ReviewTimeouts } from "./jobs/review-timeout.js";
import { closeBullmq, closeRedis, connectRedis, connectSubscriber, pingRedis } from "./infra/redis.js";
import { resolveRedis, type ResolvedRedis } from "./infra/redis-resolver.js";
import type { Logger } from "./infra/logger.js";
import type { Redis } from "ioredis";
import type { Queue } from "bullmq";
import { SessionBroker } from "./broker/sessions.js";
import { StatementLog } from "./broker/statement-log.js";
import { PgProxyServer } from "./proxy/postgres/server.js";
import { loadSqlParser } from "./rules/sql-classifier.js";
import { SshKeys } from "./broker/ssh-keys.js";
import { SshProxyServer } from "./proxy/ssh/server.js";
import { OidcVerifier } from "./oidc/verifier.js";
import { createOidcConsoleAuth, type OidcConsoleAuth } from "./oidc/console-login.js";
import { mountOidcRoutes } from "./oidc/routes.js";
import { startConsole, type ConsoleAdapter } from "./bot/console/console-app.js";
import { createDemoConsoleAuth, LOGIN_PATH as DEMO_LOGIN_PATH } from "./bot/console/demo-auth.js";
import type { ConsoleAuth } from "./infra/web/console-auth.js";
import { startDemoTarget, type DemoTarget } from "./demo/demo-target.js";
import { mountAuditPages } from "./http/audit/audit-pages.js";

export interface GatewayOptions {
  config: Config;
  logger: Logger;
  clock?: Clock;
  /** Overrides `config.http.listen` (tests use 127.0.0.1:0). */
  httpListen?: string;
  reconcileIntervalMs?: number;
  /** Where to look for a local Redis when none is configured (tests point it at a closed port). */
  localRedisUrl?: string;
  /** Overrides `proxy.postgres.listen` (tests use 127.0.0.1:0). */
  postgresListen?: string;
  /** Overrides `proxy.ssh.listen` (tests use 127.0.0.1:0). */
  sshListen?: string;
  /** Where the Bot Framework is (tests point it at a local OpenID metadata server and token endpoint). */
  teamsCloud?: TeamsCloudOptions;
}

/** Starts the proxies that are configured; their cleanups drain them before the workers stop. */
async function startProxies(deps: {
  config: DeployedConfig;
  broker: Broker;
  cluster: ClusterEvents;
  redis: Redis;
  logger: Logger;
  onBackgroundError: (error: unknown, what: string) => void;
  options: GatewayOptions;
  oidc?: OidcVerifier | undefined;
}) {
  const { config, broker, cluster, redis, logger, onBackgroundError } = deps;
  const sessions = new SessionBroker(broker);
  const cleanups: { name: string; run: () => Promise<void> | void }[] = [];
  // What both proxies are given.
  const common = {
    broker,
    sessions,
    events: cluster.events,
    redis,
    targets: config.targets,
    requestCommand: config.slack?.command ?? "/access",
    oidc: deps.oidc,
    onError: onBackgroundError,
  };
  let postgres: Gateway["postgresProxy"];
  if (config.proxy.postgres) {
    await loadSqlParser();
    // The statement timeline is written on every statement's path: its own pool commits without
    // waiting for the WAL flush (see StatementLog), the rest of the data keeps full durability.
    const timeline = config.database
      ? await openStorage({ url: config.database, dataDir: config.dataDir, poolSize: 4, asynchronousCommit: true })
      : undefined;
    if (timeline) cleanups.push({ name: "statement timeline pool", run: () => timeline.close() });
    const statements = new StatementLog(timeline?.db ?? broker.db, (error) => onBackgroundError(error, "statement outcomes"));
    const server = new PgProxyServer({ ...common, statements, redisPrefix: config.redisPrefix, config: config.proxy.postgres });
    const address = await server.listen(deps.options.postgresListen ?? config.proxy.postgres.listen);
    cleanups.push({
      name: "postgres proxy",
      run: async () => {
        await server.close();
        await statements.flushOutcomes();
      },
    });
    postgres = { server, address };
    logger.debug({ address }, "postgres proxy listening");
  }
  let ssh: Gateway["sshProxy"];
  if (config.proxy.ssh) {
    const server = new SshProxyServer({ ...common, keys: new SshKeys(broker), config: config.proxy.ssh });
    const address = await server.listen(deps.options.sshListen ?? config.proxy.ssh.listen);
    cleanups.push({ name: "ssh proxy", run: () => server.close() });
    ssh = { server, address };
    logger.debug({ address }, "ssh proxy listening");
  }
  return { sessions, postgres, ssh, cleanups };
}

export interface Gateway {
  readonly config: DeployedConfig;
  /** This deployment's id (kept in its database): the default Redis prefix and every job carry it. */
  readonly deploymentId: string;
  readonly storage: Storage;
  readonly broker: Broker;
  /** Domain events from every replica; what chat adapters and proxies listen to. */
  readonly cluster: ClusterEvents;
  readonly scheduler: BullmqScheduler;
  readonly reconciler: Reconciler;
  /** Where reminders and the digest go: each chat platform registers itself (see jobs/chat-targets.ts). */
  readonly chatTargets: ChatJobTargets;
  readonly jobs: { reminders: ExpiryReminders; reviews: ReviewTimeouts; digest: DigestJobs };
  readonly http: HttpServer;
  readonly httpAddress: AddressInfo;
  readonly redis: ResolvedRedis;
  readonly sessions: SessionBroker;
  /** Where the PostgreSQL proxy listens, when configured. */
  readonly postgresProxy: { server: PgProxyServer; address: AddressInfo } | undefined;
  /** Where the SSH proxy listens, when configured. */
  readonly sshProxy: { server: SshProxyServer; address: AddressInfo } | undefined;
  /** OIDC identity, when `oidc:` is configured: the ID token verifier and the console's login (ConsoleAuth). */
  readonly oidc: { verifier: OidcVerifier; consoleAuth: OidcConsoleAuth } | undefined;
  /** The console chat at /console (demo mode, or `console.enabled` with an OIDC login), and who is looking there. */
  readonly console: { adapter: ConsoleAdapter; auth: ConsoleAuth } | undefined;
  /** Demo mode's PostgreSQL target (PGlite over the wire), when `demo.enabled`. */
  readonly demoTarget: DemoTarget | undefined;
  close(): Promise<void>;
}

/**
 * Runs one shutdown step with a deadline, logging a failure instead of stopping, so one stuck part
 * never keeps the others open.
 */
async function step(
  logger: Logger,
  name: string,
  run: () => Promise<void> | void,
  failures: unknown[],
  deadlineMs = 15_000,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(run),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${name} did not close within ${deadlineMs} ms`)), deadlineMs);
        timer.unref();
      }),
    ]);
  } catch (error) {
    failures.push(error);
    logger.error({ err: error, step: name }, "shutdown step failed");
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The composition root: config → storage → Redis → broker → jobs → HTTP. Each later part (chat
 * adapters, proxies) is started here too, and stopped in the reverse order by `close()`.
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { logger } = options;
  const clock = options.clock ?? systemClock;
  const cleanups: { name: string; run: () => Promise<void> | void }[] = [];
  const failStart = async (error: unknown) => {
    for (const cleanup of cleanups.reverse()) await Promise.resolve().then(cleanup.run).catch(() => {});
    throw error;
  };

  try {
    const storage = await openStorage({ url: options.config.database, dataDir: options.config.dataDir });
    cleanups.push({ name: "database", run: () => storage.close() });
    await storage.migrate();
    // Deployments sharing a Redis keep apart: by prefix by default, and by the id every job carries
    // when they share an explicit prefix (see JobOwnership).
    const deployment = await deploymentId(storage.db);
    const config: DeployedConfig = { ...options.config, redisPrefix: redisPrefixOf(options.config, deployment) };
    const ownership = new JobOwnership(deployment, (fields, message) => logger.warn(fields, message));
    logger.info({ deployment, redisPrefix: config.redisPrefix }, "deployment identity");

    const redis = await resolveRedis(
      config.redis ?? process.env.REDIS_URL,
      config.dataDir,
      options.localRedisUrl ? { localUrl: options.localRedisUrl } : {},
    );
    cleanups.push({ name: "private redis-server", run: () => redis.stop() });
    const connection = connectRedis(redis.url);
    const publisher = connectRedis(redis.url);
    const subscriber = connectSubscriber(redis.url);
    // ioredis retries forever and reports every attempt; one line per outage is what an operator wants.
    let lastRedisWarning = 0;
    for (const client of [connection, publisher, subscriber]) {
      client.on("error", (error) => {
        if (Date.now() - lastRedisWarning < 30_000) return;
        lastRedisWarning = Date.now();
        logger.warn({ err: error }, "Redis is unreachable; retrying (jobs and cluster events wait)");
      });
    }
    cleanups.push({
      name: "redis connections",
      run: async () => {
        await Promise.all([closeRedis(connection), closeRedis(publisher), closeRedis(subscriber)]);
      },
    });

    let shuttingDown = false;
    const onBackgroundError = (error: unknown, what: string) => {
      if (connection.status !== "ready" && lastRedisWarning > 0) return; // already reported as an outage
      // Shutdown quits Redis under queues and workers that may still be starting: their "Connection is closed." is expected then.
      if (shuttingDown && error instanceof Error && /connection is closed/i.test(error.message)) {
        logger.debug({ err: error, what }, "background task stopped by shutdown");
        return;
      }
      logger.error({ err: error, what }, "background task failed");
    };
    const scheduler = new BullmqScheduler(connection, config.redisPrefix, () => clock.now().getTime(), onBackgroundError, ownership);
    cleanups.push({ name: "queues", run: () => scheduler.close() });
    // Expiry reminders ride on the grant-expiry scheduling: extend moves them, revoke drops them.
    const reminders = new ExpiryReminders(connection, config.redisPrefix, config.defaults.reminderBefore, () => clock.now().getTime(), onBackgroundError, ownership);
    cleanups.push({ name: "reminder queue", run: () => reminders.close() });
    const broker = new Broker({ db: storage.db, config, clock, scheduler: withReminders(scheduler, reminders), onBackgroundError });
    await broker.syncTargets();

    const cluster = new ClusterEvents(publisher, subscriber, config.redisPrefix, onBackgroundError, ownership);
    await cluster.start(broker.events);
    cleanups.push({ name: "cluster events", run: () => cluster.stop() });

    const workers = new ExpiryWorkers({ broker, connection, prefix: config.redisPrefix, ownership, onError: onBackgroundError });
    cleanups.push({ name: "workers", run: () => workers.close() });
    const reviews = new ReviewTimeouts({ sessions: new SessionBroker(broker), clock, connection, prefix: config.redisPrefix, ownership, onError: onBackgroundError });
    reviews.listen(cluster.events, onBackgroundError);
    cleanups.push({ name: "review timeouts", run: () => reviews.close() });
    const reconciler = new Reconciler(broker, scheduler, (error) => onBackgroundError(error, "reconcile"), { reminders, reviews });
    cleanups.push({ name: "reconciler", run: () => reconciler.stop() });
    const report = await reconciler.reconcile();
    const restored = (report.reminderJobsRestored ?? 0) + (report.reviewJobsRestored ?? 0);
    if (report.grantsExpired + report.expiryJobsRestored + report.requestsExpired + report.timeoutJobsRestored + restored > 0) {
      logger.info({ report }, "reconciled grants and requests with the database");
    }
    reconciler.start(options.reconcileIntervalMs);

    const http = new HttpServer((error, path) => logger.error({ err: error, path }, "HTTP handler failed"));
    // Read at scrape time: queues started below (chat outboxes) are added to it.
    const queues: Queue[] = [scheduler.grantExpiry, scheduler.requestTimeout, reminders.queue as Queue, reviews.queue as Queue];
    mountOperations(http, {
      db: storage.db,
      checks: [
        { name: "database", check: () => storage.ping() },
        { name: "redis", check: () => pingRedis(connection) },
      ],
      queues,
      now: () => clock.now(),
    });
    // Slack's outbox closes after the HTTP listener (clicks in flight still enqueue) and before Redis;
    // its receiver is registered after "http" below, so it stops first.
    const slack = config.slack
      ? await startSlack({ config: config.slack, broker, events: cluster.events, db: storage.db, http, connection, prefix: config.redisPrefix, logger, ownership })
      : undefined;
    if (slack) {
      queues.push(slack.outbox.queue as unknown as Queue);
      cleanups.push({ name: "slack outbox", run: () => slack.closeOutbox() });
    }
    const teams = config.teams
      ? await startTeams({
          config: config.teams,
          broker,
          events: cluster.events,
          db: storage.db,
          http,
          connection,
          prefix: config.redisPrefix,
          logger,
          ownership,
          ...(options.teamsCloud ? { cloud: options.teamsCloud } : {}),
        })
      : undefined;
    if (teams) {
      queues.push(teams.outbox.queue as unknown as Queue);
      cleanups.push({ name: "teams outbox", run: () => teams.closeOutbox() });
    }
    // Jobs that post on their own start once the chat platforms are registered, and stop before their outboxes.
    const chatTargets = new ChatJobTargets();
    if (slack) chatTargets.register(slack.jobTarget);
    // Teams: reminders into its threads; its digest needs a conversation to go to (none configurable yet).
    if (teams) chatTargets.register(chatJobTarget({ platform: "teams", broker, enqueue: (job, o) => teams.outbox.enqueue(job, o), digestChannel: config.teams?.digestConversation }));
    const reminding = reminderWorker({ broker, reminders, targets: chatTargets, connection, prefix: config.redisPrefix, ownership, onError: onBackgroundError });
    cleanups.push({ name: "reminder worker", run: () => closeBullmq([reminding], connection) });
    const digest = new DigestJobs({ db: storage.db, clock, targets: chatTargets, connection, prefix: config.redisPrefix, ownership, timezone: config.digest.timezone, onError: onBackgroundError });
    cleanups.push({ name: "digest jobs", run: () => digest.close() });
    await digest.schedule(config.digest.cron, config.digest.timezone);
    queues.push(digest.queue as Queue);
    // OIDC: the provider's metadata is read now; if it does not answer, every use retries (and fails closed meanwhile).
    const oidcVerifier = config.oidc ? new OidcVerifier(config.oidc, { clock }) : undefined;
    await oidcVerifier?.discovered().catch((error: unknown) => logger.warn({ err: error }, "the OIDC provider did not answer discovery; retrying on first use"));
    // Demo mode: the target the proxy relays to runs here; it stops after the proxy has drained.
    const demoTarget = config.demo.enabled ? await startDemoTarget({ listen: config.demo.postgresListen }) : undefined;
    if (demoTarget) cleanups.push({ name: "demo target", run: () => demoTarget.close() });
    // The OIDC login (console, audit pages) keeps its state in Redis: any replica completes it.
    const oidcConsoleAuth = oidcVerifier
      ? createOidcConsoleAuth({ broker, verifier: oidcVerifier, redis: connection, redisPrefix: config.redisPrefix })
      : undefined;
    // The console: people pick themselves in demo mode, and log in with OIDC otherwise (the schema
    // refuses console.enabled without oidc: outside demo mode). Its outbox closes after the proxies
    // (session summaries are rendered while they drain), like Slack's.
    const consoleAuth: ConsoleAuth | undefined = config.demo.enabled
      ? createDemoConsoleAuth({ broker, users: config.console.users, http })
      : config.console.enabled
        ? oidcConsoleAuth
        : undefined;
    const consoleChat = consoleAuth
      ? await startConsole({ config, broker, events: cluster.events, db: storage.db, http, connection, redisUrl: redis.url, prefix: config.redisPrefix, logger, ownership, auth: consoleAuth })
      : undefined;
    if (consoleChat) {
      queues.push(consoleChat.outbox.queue as unknown as Queue);
      cleanups.push({ name: "console outbox", run: () => consoleChat.closeOutbox() });
      chatTargets.register(consoleChat.jobTarget);
    }
    // The audit pages read the database only; they sit behind the console's login.
    if (consoleAuth) {
      const switchHref = consoleAuth.kind === "demo" ? (returnTo: string) => `${DEMO_LOGIN_PATH}?returnTo=${encodeURIComponent(returnTo)}` : undefined;
      mountAuditPages(http, { broker, auth: consoleAuth, switchHref });
    }
    const proxies = await startProxies({ config, broker, cluster, redis: connection, logger, onBackgroundError, options, oidc: oidcVerifier });
    cleanups.push(...proxies.cleanups);
    const oidc = oidcVerifier && oidcConsoleAuth ? { verifier: oidcVerifier, consoleAuth: oidcConsoleAuth } : undefined;
    if (oidc) {
      const publicAddress = (configured: string | undefined, address: AddressInfo) =>
        configured ?? `${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`;
      mountOidcRoutes(http, {
        broker,
        verifier: oidc.verifier,
        consoleAuth: oidc.consoleAuth,
        targets: config.targets,
        // A step-up approval's grant: its connection line goes where the request was made, else to
        // the first platform that knows the requester.
        deliverConnection: async (result) => {
          const adapters = { slack, teams, console: consoleChat };
          const origin = adapters[result.request.origin as keyof typeof adapters];
          const order = [origin, slack, teams, consoleChat].filter((a, i, all) => a !== undefined && all.indexOf(a) === i);
          let notice: string | undefined = "No chat platform is configured: the connection line was not delivered.";
          for (const adapter of order) {
            notice = await adapter!.deliverConnection(result);
            if (notice === undefined) return undefined;
          }
          return notice;
        },
        proxies: {
          postgres: proxies.postgres && {
            address: publicAddress(config.proxy.postgres?.publicAddress, proxies.postgres.address),
            tls: config.proxy.postgres?.tls !== undefined,
          },
          ssh: proxies.ssh && { address: publicAddress(config.proxy.ssh?.publicAddress, proxies.ssh.address) },
        },
        onError: onBackgroundError,
      });
    }

    const httpAddress = await http.listen(options.httpListen ?? config.http.listen);
    // Chat receivers live on the HTTP listener: it stops first.
    cleanups.push({ name: "http", run: () => http.close() });
    if (slack) cleanups.push({ name: "slack receiver", run: () => slack.closeReceiver() });
    if (teams) cleanups.push({ name: "teams receiver", run: () => teams.closeReceiver() });
    if (consoleChat) cleanups.push({ name: "console receiver", run: () => consoleChat.closeReceiver() });

    let closing: Promise<void> | undefined;
    return {
      config,
      deploymentId: deployment,
      storage,
      broker,
      cluster,
      scheduler,
      reconciler,
      chatTargets,
      jobs: { reminders, reviews, digest },
      http,
      httpAddress,
      redis,
      sessions: proxies.sessions,
      postgresProxy: proxies.postgres,
      sshProxy: proxies.ssh,
      oidc,
      console: consoleChat && consoleAuth ? { adapter: consoleChat, auth: consoleAuth } : undefined,
      demoTarget,
      close() {
        // Order (STYLE.md 10): chat receivers → proxies (drain) → workers → Redis → database.
        closing ??= (async () => {
          shuttingDown = true;
          const failures: unknown[] = [];
          for (const cleanup of [...cleanups].reverse()) await step(logger, cleanup.name, cleanup.run, failures);
          if (failures.length > 0) throw new AggregateError(failures, `${failures.length} shutdown step(s) failed`);
        })();
        return closing;
      },
    };
  } catch (error) {
    return failStart(error);
  }
}

/** What the operator sees at start-up: what listens where, and what is not configured yet. */
export function startupBanner(gateway: Gateway, source: string): string {
  const { config } = gateway;
  const http = gateway.httpAddress;
  const host = http.family === "IPv6" ? `[${http.address}]` : http.address;
  const lines = [
    `jitgate is running (configuration: ${source})`,
    `  HTTP        http://${host}:${http.port}  (/healthz, /readyz, /metrics${config.slack && !config.slack.appToken ? ", /slack/events" : ""}${config.teams ? ", /api/messages" : ""})`,
    ...(config.slack
      ? [`  slack       ${config.slack.appToken ? "Socket Mode" : "HTTP mode (POST /slack/events)"}, command ${config.slack.command}, approvals in ${config.slack.approvalChannel}`]
      : []),
    ...(config.teams
      ? [
          `  teams       POST /api/messages, ${config.teams.appId ? "Bot Framework authentication on" : "UNAUTHENTICATED (no teams.appId: local/Emulator mode only)"}, approvals in ${config.teams.approvalConversation}`,
        ]
      : []),
    `  storage     ${gateway.storage.kind === "pglite" ? `embedded PGlite in ${gateway.storage.location}` : `PostgreSQL ${gateway.storage.location}`}`,
    `  redis       ${gateway.redis.source === "embedded" ? `private redis-server at ${gateway.redis.url}` : gateway.redis.url.replace(/\/\/[^@]*@/, "//***@")}`,
    ...(gateway.postgresProxy
      ? [`  postgres    ${gateway.postgresProxy.address.address}:${gateway.postgresProxy.address.port}  (psql "postgres://<you>:<credential>@<host>:${gateway.postgresProxy.address.port}/<target>")`]
      : []),
    ...(gateway.sshProxy
      ? [`  ssh         ${gateway.sshProxy.address.address}:${gateway.sshProxy.address.port}  (ssh -p ${gateway.sshProxy.address.port} <target>@<host>; host key ${gateway.sshProxy.server.hostKeyFingerprint})`]
      : []),
    ...(gateway.console
      ? [`  console     http://${host}:${http.port}/console  (${gateway.console.auth.kind === "demo" ? "demo: people pick themselves, no login" : "OIDC login"}; channel #${config.console.channel})`]
      : []),
    ...(gateway.demoTarget
      ? [`  demo target PGlite at ${gateway.demoTarget.address.address}:${gateway.demoTarget.address.port} (table orders), reached through target ${config.targets.find((t) => t.kind === "postgres")?.name ?? "—"}`]
      : []),
    ...(config.oidc ? [`  oidc        ${config.oidc.issuer} (client ${config.oidc.clientId}; /oidc/config, /oidc/callback)`] : []),
    `  targets     ${config.targets.length > 0 ? config.targets.map((t) => `${t.name} (${t.kind})`).join(", ") : "none configured (add targets: to jitgate.yaml)"}`,
  ];
  const missing: string[] = [];
  if (!config.slack && !config.teams && !gateway.console) missing.push("no chat platform (slack: or teams:) is configured");
  if (!config.database) missing.push("database: not set, using embedded PGlite (set DATABASE_URL for several replicas)");
  if (!config.proxy.postgres && !config.proxy.ssh) missing.push("no proxy (proxy.postgres / proxy.ssh) is configured");
  if (missing.length > 0 && !config.demo.enabled) lines.push("  not configured:", ...missing.map((m) => `    - ${m}`));
  if (config.demo.enabled && gateway.console) lines.push("", ...demoSteps(gateway, `http://${host}:${http.port}`));
  return lines.join("\n");
}

/** Demo mode's banner: exactly what to do, in order. */
function demoSteps(gateway: Gateway, base: string): string[] {
  const [dev, lead] = gateway.config.console.users;
  const target = gateway.config.targets.find((t) => t.kind === "postgres")?.name ?? "demo";
  return [
    "Demo mode: everything listens on 127.0.0.1 only (the console has no login). Try it:",
    `  1. open ${base}/console`,
    `  2. pick ${dev?.id ?? "dev"} and type in the command box:  request ${target} 30m trying jitgate`,
    `  3. switch to ${lead?.id ?? "lead"} (top right) and click Approve on the request`,
    `  4. switch back to ${dev?.id ?? "dev"}: copy the psql line from your direct messages and run  psql "postgres://…"`,
    "  5. try  SELECT * FROM orders LIMIT 5;  (emails and card numbers come back masked)",
    `     and  DELETE FROM orders;  (held: approve it as ${lead?.id ?? "lead"} in the request's thread, and psql goes on)`,
    `  6. see ${base}/audit: the session and every statement`,
    "Stop with Ctrl-C. Copy examples/jitgate.yaml to ./jitgate.yaml to leave demo mode.",
  ];
}
