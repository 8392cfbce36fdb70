import type { AddressInfo } from "node:net";
import type { ConsoleAdapter } from "./bot/console/console-app.js";
import type { TeamsCloudOptions } from "./bot/teams/teams-app.js";
import { systemClock, type Broker, type Clock } from "./broker/index.js";
import type { SessionBroker } from "./broker/sessions.js";
import type { ClusterEvents } from "./bus/cluster-events.js";
import { startAuditJournal, type AuditJournal } from "./compose/audit-journal.js";
import { startChat } from "./compose/chat.js";
import { startCore } from "./compose/core.js";
import { startDomain } from "./compose/domain.js";
import { startProxies } from "./compose/proxies.js";
import type { Config, DeployedConfig } from "./config/schema.js";
import type { Storage } from "./db/client.js";
import { startDemoTarget, type DemoTarget } from "./demo/demo-target.js";
import { Cleanups } from "./infra/cleanups.js";
import type { Logger } from "./infra/logger.js";
import type { ResolvedRedis } from "./infra/redis-resolver.js";
import type { ConsoleAuth } from "./infra/web/console-auth.js";
import type { HttpServer } from "./infra/web/http-server.js";
import type { ChatJobTargets } from "./jobs/chat-targets.js";
import type { DigestJobs } from "./jobs/digest.js";
import type { UserGroupRefreshJobs } from "./jobs/slack-user-groups.js";
import type { BullmqScheduler } from "./jobs/queues.js";
import type { Reconciler } from "./jobs/reconciler.js";
import type { ExpiryReminders } from "./jobs/reminders.js";
import type { ReviewTimeouts } from "./jobs/review-timeout.js";
import { createOidcConsoleAuth, type OidcConsoleAuth } from "./oidc/console-login.js";
import { describeConsoleAllow } from "./oidc/console-allow.js";
import { mountOidcRoutes } from "./oidc/routes.js";
import { OidcVerifier } from "./oidc/verifier.js";
import type { PgProxyServer } from "./proxy/postgres/server.js";
import type { SshProxyServer } from "./proxy/ssh/server.js";

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
  readonly jobs: { reminders: ExpiryReminders; reviews: ReviewTimeouts; digest: DigestJobs; slackUserGroups: UserGroupRefreshJobs | undefined };
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
  /** The local audit journal, when the PostgreSQL proxy is configured. */
  readonly audit: AuditJournal | undefined;
  /** Demo mode's PostgreSQL target (PGlite over the wire), when `demo.enabled`. */
  readonly demoTarget: DemoTarget | undefined;
  /** Shuts down in the reverse order of start-up; memoised, and every step runs even when one fails. */
  close(): Promise<void>;
}

/**
 * The composition root: core (storage, deployment, Redis) → domain (broker, cluster events, jobs)
 * → identity and demo target → chat (HTTP, Slack, Teams, console, digest) → proxies → routes →
 * listen. Each module registers its cleanups as it starts; `close()` runs them in reverse
 * (chat receivers → proxies (drain) → outboxes and workers → Redis → database).
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { logger } = options;
  const clock = options.clock ?? systemClock;
  const cleanups = new Cleanups(logger);
  try {
    const core = await startCore({ config: options.config, logger, localRedisUrl: options.localRedisUrl }, cleanups);
    const { config } = core;
    const domain = await startDomain(core, { clock, logger, reconcileIntervalMs: options.reconcileIntervalMs }, cleanups);
    const { broker } = domain;
    if (config.proxy.postgres && !config.audit.sealKey) {
      logger.warn("no audit.sealKey: recorded results keep masked values only; the originals of masked values are not kept (set audit.sealKey to seal them)");
    }

    // OIDC: the provider's metadata is read now; if it does not answer, every use retries (and fails closed meanwhile).
    const verifier = config.oidc ? new OidcVerifier(config.oidc, { clock }) : undefined;
    await verifier?.discovered().catch((error: unknown) => logger.warn({ err: error }, "the OIDC provider did not answer discovery; retrying on first use"));
    // The OIDC login (console, audit pages) keeps its state in Redis: any replica completes it.
    // Only `console.allow` admits anyone, and only where the OIDC login is the console's (not in demo mode).
    const consoleAllow = config.console.enabled && !config.demo.enabled ? config.console.allow : undefined;
    const oidcConsoleAuth = verifier
      ? createOidcConsoleAuth({ broker, verifier, redis: core.connection, redisPrefix: config.redisPrefix, allow: consoleAllow })
      : undefined;
    // Demo mode: the target the proxy relays to runs here; it stops after the proxy has drained.
    const demoTarget = config.demo.enabled ? await startDemoTarget({ listen: config.demo.postgresListen }) : undefined;
    if (demoTarget) cleanups.add("demo target", () => demoTarget.close());

    // The audit journal ships what a crash left behind before the gateway listens; it closes after the proxies drain.
    const audit = await startAuditJournal(core, { logger }, cleanups);
    const chat = await startChat(core, domain, { clock, logger, teamsCloud: options.teamsCloud, oidcConsoleAuth, audit: audit?.journaled }, cleanups);
    const proxies = await startProxies(
      core,
      domain,
      { logger, oidc: verifier, statements: audit?.statements, postgresListen: options.postgresListen, sshListen: options.sshListen },
      cleanups,
    );
    const oidc = verifier && oidcConsoleAuth ? { verifier, consoleAuth: oidcConsoleAuth } : undefined;
    if (oidc) {
      const publicAddress = (configured: string | undefined, address: AddressInfo) =>
        configured ?? `${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`;
      mountOidcRoutes(chat.http, {
        broker,
        verifier: oidc.verifier,
        consoleAuth: oidc.consoleAuth,
        targets: config.targets,
        deliverConnection: (result) => chat.deliverConnection(result),
        proxies: {
          postgres: proxies.postgres && {
            address: publicAddress(config.proxy.postgres?.publicAddress, proxies.postgres.address),
            tls: config.proxy.postgres?.tls !== undefined,
            ca: config.proxy.postgres?.tls?.ca,
          },
          ssh: proxies.ssh && { address: publicAddress(config.proxy.ssh?.publicAddress, proxies.ssh.address) },
        },
        onError: core.onBackgroundError,
      });
    }

    const httpAddress = await chat.http.listen(options.httpListen ?? config.http.listen);
    // Chat receivers live on the HTTP listener: it stops first.
    cleanups.add("http", () => chat.http.close());
    for (const receiver of chat.receivers) cleanups.add(receiver.name, receiver.run);

    return {
      config,
      deploymentId: core.deploymentId,
      storage: core.storage,
      broker,
      cluster: domain.cluster,
      scheduler: domain.scheduler,
      reconciler: domain.reconciler,
      chatTargets: chat.chatTargets,
      jobs: { reminders: domain.reminders, reviews: domain.reviews, digest: chat.digest, slackUserGroups: chat.userGroups },
      http: chat.http,
      httpAddress,
      redis: core.redis,
      sessions: proxies.sessions,
      postgresProxy: proxies.postgres,
      sshProxy: proxies.ssh,
      oidc,
      console: chat.console,
      audit,
      demoTarget,
      close: () => cleanups.close(),
    };
  } catch (error) {
    return cleanups.abort(error);
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
      ? [`  console     http://${host}:${http.port}/console  (${gateway.console.auth.kind === "demo" ? "demo: people pick themselves, no login" : `OIDC login, ${describeConsoleAllow(config.console.allow)}`}; channel #${config.console.channel})`]
      : []),
    ...(gateway.demoTarget
      ? [`  demo target PGlite at ${gateway.demoTarget.address.address}:${gateway.demoTarget.address.port} (table orders), reached through target ${config.targets.find((t) => t.kind === "postgres")?.name ?? "—"}`]
      : []),
    ...(config.oidc ? [`  oidc        ${config.oidc.issuer} (client ${config.oidc.clientId}; /oidc/config, /oidc/callback)`] : []),
    ...(config.proxy.postgres
      ? [
          `  results     ${config.audit.sealKey ? `recorded per target's record caps; originals of masked values sealed under key ${config.audit.sealKey.id}${config.audit.retiredSealKeys.length > 0 ? ` (retired: ${config.audit.retiredSealKeys.map((k) => k.id).join(", ")})` : ""}` : "recorded per target's record caps (masked); no audit.sealKey, so the originals of masked values are NOT kept"}`,
        ]
      : []),
    `  targets     ${config.targets.length > 0 ? config.targets.map((t) => `${t.name} (${t.kind})`).join(", ") : "none configured (add targets: to jitgate.yaml)"}`,
  ];
  const missing: string[] = [];
  if (!config.slack && !config.teams && !gateway.console) missing.push("no chat platform (slack: or teams:) is configured");
  if (!config.database) missing.push("database: not set, using embedded PGlite (set DATABASE_URL for several replicas)");
  if (!config.proxy.postgres && !config.proxy.ssh) missing.push("no proxy (proxy.postgres / proxy.ssh) is configured");
  if (missing.length > 0 && !config.demo.enabled) lines.push("  not configured:", ...missing.map((m) => `    - ${m}`));
  // Absent requesters keep the old behaviour (anyone may request): said out loud, once per start.
  const open = config.targets.filter((t) => t.requesters === undefined).map((t) => t.name);
  if (open.length > 0 && !config.demo.enabled) {
    lines.push(`  warning: anyone who reaches the bot may request ${open.join(", ")} (no requesters: listed); name people or groups under targets[].requesters to narrow it`);
  }
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
