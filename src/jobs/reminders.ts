import { DelayedError, Queue, UnrecoverableError, Worker, type ConnectionOptions, type Job } from "bullmq";
import { closeBullmq, reportErrors } from "../infra/redis.js";
import { ownedData, ownedProcessor, type JobOwnership, type OwnedJobData } from "../infra/job-ownership.js";
import { GrantNotFound, type Broker, type Scheduler } from "../broker/index.js";
import type { ChatJobTargets } from "./chat-targets.js";
import { ensureJob, placeJob, removeJob } from "./queues.js";

export const EXPIRY_REMINDER = "expiry-reminder";

export interface ExpiryReminderData extends OwnedJobData {
  grantId: string;
}

// A reminder found due this much early (BullMQ's delayed set fires a little late or early) still goes out.
const EARLY_TOLERANCE_MS = 1_000;

/**
 * The `expiry-reminder` queue: one delayed job per grant (job id = grant id) at `expiresAt -
 * reminderBefore`. It rides on the broker's Scheduler calls (see `withReminders`), so it is moved by
 * every extension and removed by a revoke, in the same step as the grant's expiry job.
 */
export class ExpiryReminders {
  readonly queue: Queue<ExpiryReminderData>;
  readonly #connection: unknown;
  #closed = false;

  constructor(
    connection: ConnectionOptions,
    prefix: string,
    readonly reminderBeforeMs: number,
    private readonly now: () => number = Date.now,
    onError?: (error: unknown, what: string) => void,
    private readonly ownership?: JobOwnership,
  ) {
    this.#connection = connection;
    this.queue = reportErrors(new Queue(EXPIRY_REMINDER, { connection, prefix }), `${EXPIRY_REMINDER} queue`, onError);
  }

  /** When the reminder of a grant expiring at `expiresAt` is due; undefined when that is already past. */
  dueAt(expiresAt: Date): Date | undefined {
    const at = expiresAt.getTime() - this.reminderBeforeMs;
    return at > this.now() ? new Date(at) : undefined;
  }

  async schedule(grantId: string, expiresAt: Date): Promise<void> {
    const at = this.dueAt(expiresAt);
    // A grant shorter than reminderBefore (or extended with less than that left) gets no reminder.
    if (!at) return removeJob(this.queue, grantId);
    await placeJob(this.queue, grantId, ownedData(this.ownership, { grantId }), at.getTime() - this.now());
  }

  cancel(grantId: string): Promise<void> {
    return removeJob(this.queue, grantId);
  }

  /** Restores a missing reminder that is still ahead (the reconciler's use). */
  async ensure(grantId: string, expiresAt: Date): Promise<boolean> {
    const at = this.dueAt(expiresAt);
    if (!at) return false;
    return ensureJob(this.queue, grantId, ownedData(this.ownership, { grantId }), at.getTime() - this.now());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await closeBullmq([this.queue], this.#connection);
  }
}

/**
 * The broker's Scheduler with reminders riding on grant expiry: scheduling (issue, extend) places the
 * reminder, cancelling (revoke) removes it. Both are attempted when one fails; the reconciler repairs
 * what a failure left behind.
 */
export function withReminders(inner: Scheduler, reminders: ExpiryReminders): Scheduler {
  const both = async (...steps: (() => Promise<void>)[]) => {
    const results = await Promise.allSettled(steps.map((step) => step()));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  };
  return {
    scheduleGrantExpiry: (grantId, at) =>
      both(
        () => inner.scheduleGrantExpiry(grantId, at),
        () => reminders.schedule(grantId, at),
      ),
    cancelGrantExpiry: (grantId) =>
      both(
        () => inner.cancelGrantExpiry(grantId),
        () => reminders.cancel(grantId),
      ),
    scheduleRequestTimeout: (requestId, at) => inner.scheduleRequestTimeout(requestId, at),
    cancelRequestTimeout: (requestId) => inner.cancelRequestTimeout(requestId),
    scheduleGrantStart: (requestId, at) => inner.scheduleGrantStart(requestId, at),
    scheduleReviewReminder: (reviewId, at) => inner.scheduleReviewReminder(reviewId, at),
    cancelReviewReminder: (reviewId) => inner.cancelReviewReminder(reviewId),
  };
}

export interface ReminderWorkerOptions {
  broker: Broker;
  reminders: ExpiryReminders;
  targets: ChatJobTargets;
  connection: ConnectionOptions;
  prefix: string;
  ownership?: JobOwnership | undefined;
  onError?: (error: unknown, where: string) => void;
}

/**
 * Runs due reminders. The job re-reads the grant: ended → nothing; extended while the move was lost →
 * moves itself to the new time; else each platform posts it, keyed by the expiry it warns of.
 */
export function reminderWorker(options: ReminderWorkerOptions): Worker<ExpiryReminderData> {
  const { broker, reminders, targets } = options;
  const worker = new Worker<ExpiryReminderData>(
    EXPIRY_REMINDER,
    ownedProcessor(options.ownership, EXPIRY_REMINDER, async (job: Job<ExpiryReminderData>, token?: string) => {
      let grant;
      try {
        grant = await broker.getGrant(job.data.grantId);
      } catch (error) {
        if (error instanceof GrantNotFound) throw new UnrecoverableError(error.message);
        throw error;
      }
      const now = broker.clock.now().getTime();
      if (grant.state !== "active" || grant.expiresAt.getTime() <= now) return "ended";
      const due = grant.expiresAt.getTime() - reminders.reminderBeforeMs;
      if (due > now + EARLY_TOLERANCE_MS) {
        await job.moveToDelayed(due, token);
        throw new DelayedError();
      }
      await targets.each((target) => target.remind(grant.id, String(grant.expiresAt.getTime())));
      return "reminded";
    }),
    { connection: options.connection, prefix: options.prefix, concurrency: 8 },
  );
  worker.on("error", (error) => options.onError?.(error, worker.name));
  worker.on("failed", (job, error) => options.onError?.(error, `${worker.name} job ${job?.id ?? "?"}`));
  return worker;
}
