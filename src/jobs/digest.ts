import { Queue, QueueEvents, Worker, type ConnectionOptions, type Job } from "bullmq";
import { closeBullmq, reportErrors } from "../infra/redis.js";
import { ownedData, ownedProcessor, type JobOwnership, type OwnedJobData } from "../infra/job-ownership.js";
import type { Clock } from "../broker/clock.js";
import { computeDigest, type Digest } from "../broker/digest.js";
import type { Database } from "../db/client.js";
import type { ChatJobTargets } from "./chat-targets.js";

export const DAILY_DIGEST = "daily-digest";
const DAY_MS = 24 * 3600_000;

/** A scheduled run carries nothing (its window ends when it runs); `digest --now` says its window. */
export interface DigestJobData extends OwnedJobData {
  since?: string;
  until?: string;
}

export interface DigestJobsOptions {
  db: Database;
  clock: Clock;
  targets: ChatJobTargets;
  connection: ConnectionOptions;
  prefix: string;
  /** Set false to only schedule and enqueue (the CLI, a replica that runs no workers). */
  worker?: boolean;
  ownership?: JobOwnership | undefined;
  /** `digest.timezone`: the zone the cron runs in, and the digest's times are shown in. */
  timezone?: string | undefined;
  onError?: (error: unknown, where: string) => void;
}

/**
 * The `daily-digest` queue. A BullMQ job scheduler (https://docs.bullmq.io/guide/job-schedulers)
 * makes one job per cron tick in the configured time zone; every replica upserts the same scheduler
 * id, so there is one schedule however many run, and BullMQ hands each tick's job to one worker.
 * The job computes the digest of the 24 hours before it runs and hands it to every registered chat
 * platform, keyed by its job id, so a retried tick posts once.
 */
export class DigestJobs {
  readonly queue: Queue<DigestJobData>;
  readonly #worker: Worker<DigestJobData> | undefined;
  readonly #connection: unknown;
  readonly #ownership: JobOwnership | undefined;
  #closed = false;

  constructor(options: DigestJobsOptions) {
    const { connection, prefix } = options;
    this.#connection = connection;
    this.#ownership = options.ownership;
    this.queue = reportErrors(new Queue(DAILY_DIGEST, { connection, prefix }), `${DAILY_DIGEST} queue`, options.onError);
    if (options.worker === false) return;
    this.#worker = new Worker<DigestJobData>(
      DAILY_DIGEST,
      ownedProcessor(options.ownership, DAILY_DIGEST, async (job: Job<DigestJobData>) => {
        const until = job.data.until ? new Date(job.data.until) : options.clock.now();
        const since = job.data.since ? new Date(job.data.since) : new Date(until.getTime() - DAY_MS);
        const digest = await computeDigest(options.db, { since, until });
        await options.targets.each((target) => target.digest(digest, job.id ?? `${DAILY_DIGEST}-${until.getTime()}`, options.timezone));
        return { platforms: options.targets.list().map((t) => t.platform) };
      }),
      { connection, prefix, concurrency: 1 },
    );
    this.#worker.on("error", (error) => options.onError?.(error, DAILY_DIGEST));
    this.#worker.on("failed", (job, error) => options.onError?.(error, `${DAILY_DIGEST} job ${job?.id ?? "?"}`));
  }

  /** Creates or updates the schedule (idempotent: the scheduler id is the queue's name). */
  async schedule(cron: string, timezone: string): Promise<void> {
    await this.queue.upsertJobScheduler(
      DAILY_DIGEST,
      { pattern: cron, tz: timezone },
      { name: DAILY_DIGEST, data: ownedData(this.#ownership, {}), opts: { attempts: 5, backoff: { type: "exponential", delay: 5_000 }, removeOnComplete: { count: 30 }, removeOnFail: { age: 7 * 24 * 3600 } } },
    );
  }

  /**
   * A digest now, over `[since, until)` (`jitgate digest --now`): a job like a scheduled one, run by
   * whichever replica's worker takes it. The id comes from the window, so asking twice posts once.
   */
  async runNow(window: { since: Date; until: Date }): Promise<Job<DigestJobData>> {
    return (this.queue as Queue).add(
      DAILY_DIGEST,
      ownedData(this.#ownership, { since: window.since.toISOString(), until: window.until.toISOString() }),
      { jobId: `digest-now-${window.since.getTime()}-${window.until.getTime()}`, attempts: 5, backoff: { type: "exponential", delay: 5_000 }, removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } },
    ) as Promise<Job<DigestJobData>>;
  }

  /** Waits for `job` to finish, up to `timeoutMs`; false when no worker finished it in time. */
  async waitFor(job: Job<DigestJobData>, connection: ConnectionOptions, prefix: string, timeoutMs: number): Promise<boolean> {
    // Errors surface through waitUntilReady / waitUntilFinished below; the listener keeps them from killing the process.
    const events = reportErrors(new QueueEvents(DAILY_DIGEST, { connection, prefix }), `${DAILY_DIGEST} events`, undefined);
    try {
      await events.waitUntilReady();
      await job.waitUntilFinished(events, timeoutMs);
      return true;
    } catch (error) {
      if (error instanceof Error && /timed out/i.test(error.message)) return false;
      throw error;
    } finally {
      await events.close();
    }
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all([this.queue.waitUntilReady(), this.#worker?.waitUntilReady()]);
  }

  /** Lets a running digest finish (or stops at once when Redis is gone). Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await closeBullmq([this.#worker, this.queue], this.#connection);
  }
}

export type { Digest };
