import { Queue, QueueEvents, Worker, type ConnectionOptions, type Job } from "bullmq";
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
  readonly #prefix: string;
  readonly #ownership: JobOwnership | undefined;
  #closed = false;

  constructor(options: UserGroupRefreshOptions) {
    const { connection, prefix } = options;
    this.#connection = connection;
    this.#prefix = prefix;
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

  /** A refresh now, outside the schedule; resolves when a worker finished it (or rejects with its failure). */
  async runNow(timeoutMs = 30_000): Promise<void> {
    const job = (await (this.queue as Queue).add(SLACK_USER_GROUPS, ownedData(this.#ownership, {}), {
      removeOnComplete: { age: 3600 },
      removeOnFail: { age: 24 * 3600 },
    })) as Job<OwnedJobData>;
    const events = reportErrors(new QueueEvents(SLACK_USER_GROUPS, { connection: this.#connection, prefix: this.#prefix }), `${SLACK_USER_GROUPS} events`, undefined);
    try {
      await events.waitUntilReady();
      await job.waitUntilFinished(events, timeoutMs);
    } finally {
      await events.close();
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
