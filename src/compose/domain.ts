import { Broker, type Clock } from "../broker/index.js";
import { SessionBroker } from "../broker/sessions.js";
import { ClusterEvents } from "../bus/cluster-events.js";
import type { Cleanups } from "../infra/cleanups.js";
import type { Logger } from "../infra/logger.js";
import { OnCallClient } from "../infra/on-call.js";
import { ExpiryWorkers } from "../jobs/expiry.workers.js";
import { BullmqScheduler } from "../jobs/queues.js";
import { Reconciler } from "../jobs/reconciler.js";
import { ExpiryReminders, withReminders } from "../jobs/reminders.js";
import { ReviewTimeouts } from "../jobs/review-timeout.js";
import type { Core } from "./core.js";

/** The broker, its events on every replica, and the jobs that keep it on time. */
export interface Domain {
  broker: Broker;
  cluster: ClusterEvents;
  scheduler: BullmqScheduler;
  reminders: ExpiryReminders;
  reviews: ReviewTimeouts;
  reconciler: Reconciler;
}

export async function startDomain(
  core: Core,
  options: { clock: Clock; logger: Logger; reconcileIntervalMs?: number | undefined },
  cleanups: Cleanups,
): Promise<Domain> {
  const { config, connection, ownership, onBackgroundError } = core;
  const { clock, logger } = options;
  const prefix = config.redisPrefix;
  const now = () => clock.now().getTime();
  const scheduler = new BullmqScheduler(connection, prefix, now, onBackgroundError, ownership);
  cleanups.add("queues", () => scheduler.close());
  // Expiry reminders ride on the grant-expiry scheduling: extend moves them, revoke drops them.
  const reminders = new ExpiryReminders(connection, prefix, config.defaults.reminderBefore, now, onBackgroundError, ownership);
  cleanups.add("reminder queue", () => reminders.close());
  // Auto-approval rules ask PagerDuty / Opsgenie through this client (the broker does no HTTP).
  const onCall = config.onCall?.pagerduty || config.onCall?.opsgenie ? new OnCallClient(config.onCall) : undefined;
  const broker = new Broker({ db: core.storage.db, config, clock, scheduler: withReminders(scheduler, reminders), onBackgroundError, onCall });
  await broker.syncTargets();

  const cluster = new ClusterEvents(core.publisher, core.subscriber, prefix, onBackgroundError, ownership);
  await cluster.start(broker.events);
  cleanups.add("cluster events", () => cluster.stop());

  const workers = new ExpiryWorkers({ broker, connection, prefix, ownership, onError: onBackgroundError });
  cleanups.add("workers", () => workers.close());
  const reviews = new ReviewTimeouts({ sessions: new SessionBroker(broker), clock, connection, prefix, ownership, onError: onBackgroundError });
  reviews.listen(cluster.events, onBackgroundError);
  cleanups.add("review timeouts", () => reviews.close());
  const reconciler = new Reconciler(broker, scheduler, (error) => onBackgroundError(error, "reconcile"), { reminders, reviews });
  cleanups.add("reconciler", () => reconciler.stop());
  const report = await reconciler.reconcile();
  const restored =
    (report.reminderJobsRestored ?? 0) + (report.reviewJobsRestored ?? 0) + report.grantStartJobsRestored + report.breakGlassReminderJobsRestored;
  if (report.grantsExpired + report.expiryJobsRestored + report.requestsExpired + report.timeoutJobsRestored + restored > 0) {
    logger.info({ report }, "reconciled grants and requests with the database");
  }
  reconciler.start(options.reconcileIntervalMs);
  return { broker, cluster, scheduler, reminders, reviews, reconciler };
}
