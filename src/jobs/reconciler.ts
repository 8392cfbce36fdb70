import { nextReviewReminder, type Broker } from "../broker/index.js";
import type { BullmqScheduler } from "./queues.js";
import type { ExpiryReminders } from "./reminders.js";
import type { ReviewTimeouts } from "./review-timeout.js";

export interface ReconcileReport {
  grantsExpired: number;
  expiryJobsRestored: number;
  requestsExpired: number;
  timeoutJobsRestored: number;
  /** Present when the reconciler looks after reminders / review timeouts too. */
  reminderJobsRestored?: number;
  reviewJobsRestored?: number;
  /** Grant-start jobs of approved scheduled requests, and daily reminders of open break-glass reviews. */
  grantStartJobsRestored: number;
  breakGlassReminderJobsRestored: number;
}

/** The other delayed jobs the reconciler restores when they are missing. */
export interface ReconciledJobs {
  reminders?: ExpiryReminders;
  reviews?: ReviewTimeouts;
}

/**
 * Makes Redis agree with the database, which is the truth: overdue grants and requests are ended
 * now, and live ones whose job is missing (Redis restarted empty, a crash between commit and
 * schedule) get it back. It runs at start-up and every minute on every replica; it is not itself a
 * Redis job, because it has to work precisely when Redis has lost its jobs.
 */
export class Reconciler {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<ReconcileReport> | undefined;

  constructor(
    private readonly broker: Broker,
    private readonly scheduler: BullmqScheduler,
    private readonly onError: (error: unknown) => void = () => {},
    private readonly jobs: ReconciledJobs = {},
  ) {}

  async reconcile(): Promise<ReconcileReport> {
    // One pass at a time in this process; concurrent passes on other replicas are harmless.
    this.#running ??= this.#pass().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #pass(): Promise<ReconcileReport> {
    const report: ReconcileReport = {
      grantsExpired: 0,
      expiryJobsRestored: 0,
      requestsExpired: 0,
      timeoutJobsRestored: 0,
      grantStartJobsRestored: 0,
      breakGlassReminderJobsRestored: 0,
    };
    const now = this.broker.clock.now().getTime();
    for (const grant of await this.broker.activeGrants()) {
      if (grant.expiresAt.getTime() <= now) {
        if ((await this.broker.expire(grant.id, "reconciler")).kind === "expired") report.grantsExpired += 1;
      } else {
        if (await this.scheduler.ensure("grant", grant.id, grant.expiresAt)) report.expiryJobsRestored += 1;
        if (this.jobs.reminders && (await this.jobs.reminders.ensure(grant.id, grant.expiresAt))) {
          report.reminderJobsRestored = (report.reminderJobsRestored ?? 0) + 1;
        }
      }
    }
    if (this.jobs.reminders) report.reminderJobsRestored ??= 0;
    if (this.jobs.reviews) report.reviewJobsRestored = await this.jobs.reviews.reconcile();
    for (const request of await this.broker.pendingRequests()) {
      if (request.timeoutAt.getTime() <= now) {
        if (await this.broker.expireRequest(request.id)) report.requestsExpired += 1;
      } else if (await this.scheduler.ensure("request", request.id, request.timeoutAt)) {
        report.timeoutJobsRestored += 1;
      }
    }
    // A scheduled grant whose start has passed gets its job due now: the job issues it and delivers
    // the line (the reconciler has no chat to deliver it with).
    for (const request of await this.broker.scheduledRequests()) {
      if (await this.scheduler.ensureGrantStart(request.id, request.startsAt!)) report.grantStartJobsRestored += 1;
    }
    for (const review of await this.broker.openBreakGlassReviews()) {
      if (await this.scheduler.ensureReviewReminder(review.id, nextReviewReminder(review.createdAt, new Date(now)))) {
        report.breakGlassReminderJobsRestored += 1;
      }
    }
    return report;
  }

  start(intervalMs = 60_000): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      this.reconcile().catch(this.onError);
    }, intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => {});
  }
}
