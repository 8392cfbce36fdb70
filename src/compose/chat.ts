import type { Queue } from "bullmq";
import type { DecideResult } from "../broker/index.js";
import { startConsole, type ConsoleAdapter } from "../bot/console/console-app.js";
import { createDemoConsoleAuth, LOGIN_PATH as DEMO_LOGIN_PATH } from "../bot/console/demo-auth.js";
import { chatJobTarget } from "../bot/scheduled-messages.js";
import { startSlack, type SlackAdapter } from "../bot/slack/slack-app.js";
import { startTeams, type TeamsAdapter, type TeamsCloudOptions } from "../bot/teams/teams-app.js";
import type { Clock } from "../broker/index.js";
import { mountAuditPages } from "../http/audit/audit-pages.js";
import type { JournaledStatements } from "../broker/statement-journal.js";
import { mountOperations, NotReadyError } from "../http/operations.js";
import type { Cleanups } from "../infra/cleanups.js";
import type { Logger } from "../infra/logger.js";
import { closeBullmq, pingRedis } from "../infra/redis.js";
import type { ConsoleAuth } from "../infra/web/console-auth.js";
import { HttpServer } from "../infra/web/http-server.js";
import { ChatJobTargets } from "../jobs/chat-targets.js";
import { DigestJobs } from "../jobs/digest.js";
import { UserGroupRefreshJobs } from "../jobs/slack-user-groups.js";
import { slackGroupsNamed } from "../config/approver-entry.js";
import { reviewReminderWorker } from "../jobs/break-glass-reminders.js";
import { grantStartWorker } from "../jobs/grant-start.js";
import { reminderWorker } from "../jobs/reminders.js";
import type { OidcConsoleAuth } from "../oidc/console-login.js";
import type { Core } from "./core.js";
import type { Domain } from "./domain.js";

/** The HTTP listener (not yet listening), the chat platforms on it, and the jobs that post to them. */
export interface Chat {
  http: HttpServer;
  slack: SlackAdapter | undefined;
  teams: TeamsAdapter | undefined;
  console: { adapter: ConsoleAdapter; auth: ConsoleAuth } | undefined;
  chatTargets: ChatJobTargets;
  digest: DigestJobs;
  /** The Slack user groups refresh, when policy names Slack groups and Slack is configured. */
  userGroups: UserGroupRefreshJobs | undefined;
  /** Receivers stop first at shutdown: they are registered once the listener listens (see main.ts). */
  receivers: { name: string; run: () => Promise<void> }[];
  /**
   * A step-up approval's connection line: to the platform the request was made on, else to the
   * first platform that knows the requester. Answers a note when no platform could deliver it.
   */
  deliverConnection(result: Pick<DecideResult, "request" | "grant" | "connection">): Promise<string | undefined>;
}

export async function startChat(
  core: Core,
  domain: Domain,
  options: {
    clock: Clock;
    logger: Logger;
    teamsCloud?: TeamsCloudOptions | undefined;
    oidcConsoleAuth: OidcConsoleAuth | undefined;
    /** The audit journal: /readyz says when it is full, and the audit pages wait for it to be shipped. */
    audit?: JournaledStatements | undefined;
  },
  cleanups: Cleanups,
): Promise<Chat> {
  const { config, storage, connection, ownership, onBackgroundError } = core;
  const { broker, cluster, scheduler, reminders, reviews } = domain;
  const { clock, logger } = options;
  const prefix = config.redisPrefix;
  const common = { broker, events: cluster.events, db: storage.db, connection, prefix, logger, ownership };

  const http = new HttpServer((error, path) => logger.error({ err: error, path }, "HTTP handler failed"));
  // Read at scrape time: queues started below (chat outboxes, digest) are added to it.
  const queues: Queue[] = [
    scheduler.grantExpiry,
    scheduler.requestTimeout,
    scheduler.grantStart as Queue,
    scheduler.reviewReminder as Queue,
    reminders.queue as Queue,
    reviews.queue as Queue,
  ];
  mountOperations(http, {
    db: storage.db,
    checks: [
      { name: "database", check: () => storage.ping() },
      { name: "redis", check: () => pingRedis(connection) },
      ...(options.audit ? [{ name: "audit journal", check: auditJournalCheck(options.audit) }] : []),
    ],
    queues,
    auditJournal: options.audit,
    now: () => clock.now(),
  });
  // Outboxes close after the HTTP listener (clicks in flight still enqueue) and the proxies
  // (session summaries are rendered while they drain), and before Redis.
  const slack = config.slack ? await startSlack({ ...common, config: config.slack, http }) : undefined;
  if (slack) {
    queues.push(slack.outbox.queue as unknown as Queue);
    cleanups.add("slack outbox", () => slack.closeOutbox());
  }
  const teams = config.teams
    ? await startTeams({ ...common, config: config.teams, http, ...(options.teamsCloud ? { cloud: options.teamsCloud } : {}) })
    : undefined;
  if (teams) {
    queues.push(teams.outbox.queue as unknown as Queue);
    cleanups.add("teams outbox", () => teams.closeOutbox());
  }
  // Jobs that post on their own start once the chat platforms are registered, and stop before their outboxes.
  const chatTargets = new ChatJobTargets();
  if (slack) chatTargets.register(slack.jobTarget);
  // Teams: reminders into its threads; its digest needs a conversation to go to (none configurable yet).
  if (teams) {
    chatTargets.register(
      chatJobTarget({ platform: "teams", broker, enqueue: (job, o) => teams.outbox.enqueue(job, o), digestChannel: config.teams?.digestConversation }),
    );
  }
  // Slack user groups named in policy: fetched now and every slack.userGroupsRefresh (nothing is
  // asked of Slack, nor of its usergroups:read scope, when policy names none).
  const namedSlackGroups = slackGroupsNamed([
    ...config.targets.flatMap((t) => [...t.approvers, ...(t.requesters ?? []), ...(t.breakGlass?.allow ?? []), ...(t.autoApprove ?? []).flatMap((rule) => rule.who)]),
    ...(config.console.allow?.groups ?? []),
    ...config.auditors,
  ]);
  let userGroups: UserGroupRefreshJobs | undefined;
  if (slack && config.slack && namedSlackGroups.ids.size + namedSlackGroups.handles.size > 0) {
    userGroups = new UserGroupRefreshJobs({ refresh: () => slack.refreshUserGroups(namedSlackGroups), connection, prefix, ownership, onError: onBackgroundError });
    cleanups.add("slack user groups", () => userGroups!.close());
    await userGroups.schedule(config.slack.userGroupsRefresh);
    queues.push(userGroups.queue as Queue);
  }
  const reminding = reminderWorker({ broker, reminders, targets: chatTargets, connection, prefix, ownership, onError: onBackgroundError });
  cleanups.add("reminder worker", () => closeBullmq([reminding], connection));
  const reviewReminding = reviewReminderWorker({ broker, targets: chatTargets, connection, prefix, ownership, onError: onBackgroundError });
  cleanups.add("break-glass review reminder worker", () => closeBullmq([reviewReminding], connection));
  const digest = new DigestJobs({ db: storage.db, clock, targets: chatTargets, connection, prefix, ownership, timezone: config.digest.timezone, onError: onBackgroundError });
  cleanups.add("digest jobs", () => digest.close());
  await digest.schedule(config.digest.cron, config.digest.timezone);
  queues.push(digest.queue as Queue);

  // The console: people pick themselves in demo mode, and log in with OIDC otherwise (the schema
  // refuses console.enabled without oidc: outside demo mode).
  const consoleAuth: ConsoleAuth | undefined = config.demo.enabled
    ? createDemoConsoleAuth({ broker, users: config.console.users, http })
    : config.console.enabled
      ? options.oidcConsoleAuth
      : undefined;
  const consoleChat = consoleAuth ? await startConsole({ ...common, config, http, redisUrl: core.redis.url, auth: consoleAuth }) : undefined;
  if (consoleChat) {
    queues.push(consoleChat.outbox.queue as unknown as Queue);
    cleanups.add("console outbox", () => consoleChat.closeOutbox());
    chatTargets.register(consoleChat.jobTarget);
  }
  // The audit pages read the database only; they sit behind the console's login.
  if (consoleAuth) {
    const switchHref = consoleAuth.kind === "demo" ? (returnTo: string) => `${DEMO_LOGIN_PATH}?returnTo=${encodeURIComponent(returnTo)}` : undefined;
    const audit = options.audit;
    mountAuditPages(http, { broker, auth: consoleAuth, switchHref, ...(audit ? { statementsShipped: (ms: number) => audit.shipped(ms) } : {}) });
  }

  const adapters = { slack, teams, console: consoleChat };
  const deliverConnection = async (result: Pick<DecideResult, "request" | "grant" | "connection">): Promise<string | undefined> => {
    const origin = adapters[result.request.origin as keyof typeof adapters];
    const order = [origin, slack, teams, consoleChat].filter((a, i, all) => a !== undefined && all.indexOf(a) === i);
    let notice: string | undefined = "No chat platform is configured: the connection line was not delivered.";
    for (const adapter of order) {
      notice = await adapter!.deliverConnection(result);
      if (notice === undefined) return undefined;
    }
    return notice;
  };
  // Scheduled grants are issued where their line can be delivered: the replica with the chat.
  const starting = grantStartWorker({ broker, deliver: deliverConnection, connection, prefix, ownership, onError: onBackgroundError });
  cleanups.add("grant start worker", () => closeBullmq([starting], connection));
  return {
    http,
    slack,
    teams,
    console: consoleChat && consoleAuth ? { adapter: consoleChat, auth: consoleAuth } : undefined,
    chatTargets,
    digest,
    userGroups,
    receivers: [
      ...(slack ? [{ name: "slack receiver", run: () => slack.closeReceiver() }] : []),
      ...(teams ? [{ name: "teams receiver", run: () => teams.closeReceiver() }] : []),
      ...(consoleChat ? [{ name: "console receiver", run: () => consoleChat.closeReceiver() }] : []),
    ],
    deliverConnection,
  };
}

/** Not ready while the journal refuses statements (full), with the reason. */
function auditJournalCheck(audit: JournaledStatements): () => Promise<void> {
  return async () => {
    const problem = audit.problem();
    if (problem) throw new NotReadyError(problem);
  };
}
