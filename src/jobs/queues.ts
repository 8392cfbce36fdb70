import { Queue, type ConnectionOptions } from "bullmq";
import { closeBullmq, reportErrors } from "../infra/redis.js";
import { ownedData, type JobOwnership, type OwnedJobData } from "../infra/job-ownership.js";
import type { Scheduler } from "../broker/scheduler.js";

export const GRANT_EXPIRY = "grant-expiry";
export const REQUEST_TIMEOUT = "request-timeout";
export const GRANT_START = "grant-start";
export const BREAK_GLASS_REVIEW = "break-glass-review";

export interface GrantExpiryData extends OwnedJobData {
  grantId: string;
}
export interface RequestTimeoutData extends OwnedJobData {
  requestId: string;
}
export interface GrantStartData extends OwnedJobData {
  requestId: string;
}
export interface ReviewReminderData extends OwnedJobData {
  reviewId: string;
}

/** Jobs are retried a few times on infrastructure errors; a domain "nothing to do" never retries. */
const RETRIES = { attempts: 8, backoff: { type: "exponential" as const, delay: 1_000 } };
// Completed jobs leave: the job id (the domain id) is then free for a later reschedule.
const CLEANUP = { removeOnComplete: true, removeOnFail: { age: 7 * 24 * 3600 } };

/**
 * The broker's `Scheduler` on BullMQ. The job id is the domain id (grant or request id), so
 * scheduling the same thing twice makes one job, and moving it is moving that job.
 */
export class BullmqScheduler implements Scheduler {
  readonly grantExpiry: Queue<GrantExpiryData>;
  readonly requestTimeout: Queue<RequestTimeoutData>;
  /** Scheduled grants (`from 22:00`): one job per approved request, at its start. */
  readonly grantStart: Queue<GrantStartData>;
  /** Open break-glass reviews: one job per review, due daily until it is reviewed. */
  readonly reviewReminder: Queue<ReviewReminderData>;
  readonly #connection: unknown;
  #closed = false;

  constructor(
    connection: ConnectionOptions,
    prefix: string,
    private readonly now: () => number = Date.now,
    onError?: (error: unknown, what: string) => void,
    private readonly ownership?: JobOwnership,
  ) {
    this.#connection = connection;
    this.grantExpiry = reportErrors(new Queue(GRANT_EXPIRY, { connection, prefix }), `${GRANT_EXPIRY} queue`, onError);
    this.requestTimeout = reportErrors(new Queue(REQUEST_TIMEOUT, { connection, prefix }), `${REQUEST_TIMEOUT} queue`, onError);
    this.grantStart = reportErrors(new Queue(GRANT_START, { connection, prefix }), `${GRANT_START} queue`, onError);
    this.reviewReminder = reportErrors(new Queue(BREAK_GLASS_REVIEW, { connection, prefix }), `${BREAK_GLASS_REVIEW} queue`, onError);
  }

  scheduleGrantStart(requestId: string, at: Date): Promise<void> {
    return this.#schedule(this.grantStart, requestId, ownedData(this.ownership, { requestId }), at);
  }

  scheduleReviewReminder(reviewId: string, at: Date): Promise<void> {
    return this.#schedule(this.reviewReminder, reviewId, ownedData(this.ownership, { reviewId }), at);
  }

  cancelReviewReminder(reviewId: string): Promise<void> {
    return this.#cancel(this.reviewReminder, reviewId);
  }

  /** Restores a missing grant-start or review-reminder job (the reconciler's use). */
  ensureGrantStart(requestId: string, at: Date): Promise<boolean> {
    return ensureJob(this.grantStart, requestId, ownedData(this.ownership, { requestId }), this.#delay(at));
  }

  ensureReviewReminder(reviewId: string, at: Date): Promise<boolean> {
    return ensureJob(this.reviewReminder, reviewId, ownedData(this.ownership, { reviewId }), this.#delay(at));
  }

  scheduleGrantExpiry(grantId: string, at: Date): Promise<void> {
    return this.#schedule(this.grantExpiry, grantId, ownedData(this.ownership, { grantId }), at);
  }

  cancelGrantExpiry(grantId: string): Promise<void> {
    return this.#cancel(this.grantExpiry, grantId);
  }

  scheduleRequestTimeout(requestId: string, at: Date): Promise<void> {
    return this.#schedule(this.requestTimeout, requestId, ownedData(this.ownership, { requestId }), at);
  }

  cancelRequestTimeout(requestId: string): Promise<void> {
    return this.#cancel(this.requestTimeout, requestId);
  }

  /** Creates the job if it is missing; leaves an existing one alone (the reconciler's use). */
  async ensure(kind: "grant" | "request", id: string, at: Date): Promise<boolean> {
    const queue: Queue = kind === "grant" ? this.grantExpiry : this.requestTimeout;
    if (await queue.getJob(id)) return false;
    const data = ownedData(this.ownership, kind === "grant" ? { grantId: id } : { requestId: id });
    await queue.add(queue.name, data, { jobId: id, delay: this.#delay(at), ...RETRIES, ...CLEANUP });
    return true;
  }

  #schedule<T>(queue: Queue<T>, id: string, data: T, at: Date): Promise<void> {
    return placeJob(queue, id, data, this.#delay(at));
  }

  #cancel(queue: Queue, id: string): Promise<void> {
    return removeJob(queue, id);
  }

  #delay(at: Date): number {
    return Math.max(0, at.getTime() - this.now());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await closeBullmq([this.grantExpiry, this.requestTimeout, this.grantStart, this.reviewReminder], this.#connection);
  }
}

/**
 * Creates the job `id` to run after `delay` ms, or moves the one already there: the job id is the
 * domain id, so scheduling twice makes one job.
 */
export async function placeJob<T>(queue: Queue<T>, id: string, data: T, delay: number): Promise<void> {
  const existing = await queue.getJob(id);
  if (existing) {
    const state = await existing.getState();
    if (state === "delayed") {
      await existing.changeDelay(delay);
      return;
    }
    // A job that is running or about to run re-reads the domain state and moves itself if not due.
    if (state === "active" || state === "waiting" || state === "prioritized") return;
    await existing.remove();
  }
  // BullMQ's Queue<T> generics resolve the job name type strictly; the name is the queue's own.
  await (queue as Queue).add(queue.name, data, { jobId: id, delay, ...RETRIES, ...CLEANUP });
}

/** Removes the job `id` unless it is running (a running job re-reads the domain state). */
export async function removeJob(queue: Queue, id: string): Promise<void> {
  const job = await queue.getJob(id);
  if (!job) return;
  const state = await job.getState();
  if (state !== "active") await job.remove();
}

/** Creates the job `id` if it is missing and leaves an existing one alone (the reconciler's use). */
export async function ensureJob<T>(queue: Queue<T>, id: string, data: T, delay: number): Promise<boolean> {
  if (await queue.getJob(id)) return false;
  await (queue as Queue).add(queue.name, data, { jobId: id, delay, ...RETRIES, ...CLEANUP });
  return true;
}
