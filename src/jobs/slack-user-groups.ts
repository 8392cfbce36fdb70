import { setTimeout as delay } from "node:timers/promises";
import { Job, Queue, Worker, type ConnectionOptions } from "bullmq";
import { closeBullmq, reportErrors } from "../infra/redis.js";
import { ownedData, ownedProcessor, type JobOwnership, type OwnedJobData } from "../infra/job-ownership.js";

export const SLACK_USER_GROUPS = "slack-user-groups";

export interface UserGroupRefreshOptions {
  /** Fetches the named Slack user groups and stores them (the Slack adapter's `refreshUserGroups`). */
  refresh: () => Promise<{ groups: number; missing: string[] }>;
  connection: ConnectionOptions;
  prefix: string;
  /** Set false to only schedule and enqueue (a replica that runs no workers). */
  worker?: boolean;
  ownership?: JobOwnership | undefined;
  onError?: (error: unknown, where: string) => void;
}

/**
 * The `slack-user-groups` queue: a BullMQ job scheduler (https://docs.bullmq.io/guide/job-schedulers)
 * makes one refresh every `slack.userGroupsRefresh`; every replica upserts the same scheduler id,
 * so there is one schedule however many run, and each run goes to one worker. A failed refresh
 * (Slack down, a 429, the scope missing) is retried with backoff and leaves the cached groups as
 * they were; the broker stops believing a copy three intervals old.
 */
export class UserGroupRefreshJobs {
  readonly queue: Queue<OwnedJobData>;
  readonly #worker: Worker<OwnedJobData> | undefined;
  readonly #connection: ConnectionOptions;
  readonly #ownership: JobOwnership | undefined;
  #closed = false;

  constructor(options: UserGroupRefreshOptions) {
    const { connection, prefix } = options;
    this.#connection = connection;
    this.#ownership = options.ownership;
    this.queue = reportErrors(new Queue(SLACK_USER_GROUPS, { connection, prefix }), `${SLACK_USER_GROUPS} queue`, options.onError);
    if (options.worker === false) return;
    this.#worker = new Worker<OwnedJobData>(
      SLACK_USER_GROUPS,
      ownedProcessor(options.ownership, SLACK_USER_GROUPS, async () => options.refresh()),
      { connection, prefix, concurrency: 1 },
    );
    this.#worker.on("error", (error) => options.onError?.(error, SLACK_USER_GROUPS));
    this.#worker.on("failed", (job, error) => options.onError?.(error, `${SLACK_USER_GROUPS} job ${job?.id ?? "?"}`));
  }

  /** Creates or updates the schedule (idempotent: the scheduler id is the queue's name); BullMQ runs the first one now. */
  async schedule(everyMs: number): Promise<void> {
    await this.queue.upsertJobScheduler(
      SLACK_USER_GROUPS,
      { every: everyMs },
      { name: SLACK_USER_GROUPS, data: ownedData(this.#ownership, {}), opts: { attempts: 3, backoff: { type: "exponential", delay: 5_000 }, removeOnComplete: { count: 10 }, removeOnFail: { age: 24 * 3600 } } },
    );
  }

  /**
   * A refresh now, outside the schedule (an operator's "refresh now", the tests); resolves when a
   * worker finished it, or rejects with its failure. Polls the job's state rather than waiting for
   * a QueueEvents notice, which can go by before its stream is read.
   */
  async runNow(timeoutMs = 20_000): Promise<void> {
    const job = (await (this.queue as Queue).add(SLACK_USER_GROUPS, ownedData(this.#ownership, {}), {
      removeOnComplete: { age: 3600 },
      removeOnFail: { age: 24 * 3600 },
    })) as Job<OwnedJobData>;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = await job.getState();
      if (state === "completed") return;
      if (state === "failed") {
        const failed = await Job.fromId(this.queue, job.id!);
        throw new Error(failed?.failedReason || "the Slack user groups refresh failed");
      }
      if (Date.now() > deadline) throw new Error(`the Slack user groups refresh ${job.id} did not finish within ${timeoutMs} ms (state ${state})`);
      await delay(50);
    }
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all([this.queue.waitUntilReady(), this.#worker?.waitUntilReady()]);
  }

  /** Lets a running refresh finish (or stops at once when Redis is gone). Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await closeBullmq([this.#worker, this.queue], this.#connection);
  }
}
