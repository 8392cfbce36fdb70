import { DelayedError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from "bullmq";
import { ownedProcessor, type JobOwnership } from "../infra/job-ownership.js";
import { nextReviewReminder, REVIEW_REMINDER_EVERY_MS, ReviewNotFound, type Broker } from "../broker/index.js";
import type { ChatJobTargets } from "./chat-targets.js";
import { BREAK_GLASS_REVIEW, type ReviewReminderData } from "./queues.js";

// A reminder found due this much early (BullMQ's delayed set fires a little late or early) still goes out.
const EARLY_TOLERANCE_MS = 1_000;

export interface ReviewReminderWorkerOptions {
  broker: Broker;
  targets: ChatJobTargets;
  connection: ConnectionOptions;
  prefix: string;
  ownership?: JobOwnership | undefined;
  onError?: (error: unknown, where: string) => void;
}

/**
 * The daily reminder of an open break-glass review: one job per review (job id = review id). Each
 * run re-reads the review: reviewed → done (no reminder); not a whole day since the last one → back
 * to delayed; else every platform reminds in the thread, keyed by the day (a retry posts once), and
 * the job moves itself to the next day. Reviewing drops the job; the reconciler restores a lost one.
 */
export function reviewReminderWorker(options: ReviewReminderWorkerOptions): Worker<ReviewReminderData> {
  const { broker, targets } = options;
  const worker = new Worker<ReviewReminderData>(
    BREAK_GLASS_REVIEW,
    ownedProcessor(options.ownership, BREAK_GLASS_REVIEW, async (job: Job<ReviewReminderData>, token?: string) => {
      let review;
      try {
        review = await broker.getBreakGlassReview(job.data.reviewId);
      } catch (error) {
        if (error instanceof ReviewNotFound) throw new UnrecoverableError(error.message);
        throw error;
      }
      if (review.state !== "open") return "reviewed";
      const now = broker.clock.now();
      const day = Math.floor((now.getTime() + EARLY_TOLERANCE_MS - review.createdAt.getTime()) / REVIEW_REMINDER_EVERY_MS);
      if (day >= 1) {
        await targets.each(async (target) => target.remindReview?.(review.requestId, `day-${day}`));
      }
      // The next whole day after the one just reminded of (never the same day twice).
      const next = Math.max(nextReviewReminder(review.createdAt, now).getTime(), review.createdAt.getTime() + (Math.max(day, 0) + 1) * REVIEW_REMINDER_EVERY_MS);
      await job.moveToDelayed(next, token);
      throw new DelayedError();
    }),
    { connection: options.connection, prefix: options.prefix, concurrency: 8 },
  );
  worker.on("error", (error) => options.onError?.(error, worker.name));
  worker.on("failed", (job, error) => options.onError?.(error, `${worker.name} job ${job?.id ?? "?"}`));
  return worker;
}
