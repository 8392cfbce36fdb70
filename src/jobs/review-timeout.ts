import { DelayedError, Queue, UnrecoverableError, Worker, type ConnectionOptions, type Job } from "bullmq";
import { closeBullmq, reportErrors } from "../infra/redis.js";
import { ownedData, ownedProcessor, type JobOwnership, type OwnedJobData } from "../infra/job-ownership.js";
import { RequestNotPending, type Clock, type SessionBroker, type TypedEvents } from "../broker/index.js";
import { ensureJob, placeJob, removeJob } from "./queues.js";

export const REVIEW_TIMEOUT = "review-timeout";

export interface ReviewTimeoutData extends OwnedJobData {
  heldId: string;
}

export interface ReviewTimeoutsOptions {
  sessions: SessionBroker;
  /** The broker's clock: the one held statements' `createdAt` was taken with. */
  clock: Clock;
  connection: ConnectionOptions;
  prefix: string;
  /** Set false to only schedule (a replica that runs no workers). */
  worker?: boolean;
  ownership?: JobOwnership | undefined;
  onError?: (error: unknown, where: string) => void;
}

/**
 * The `review-timeout` job of a held statement (job id = held id), at `createdAt + reviewTimeout`.
 * The proxy holding the statement arms its own timer for the same moment; this job is what ends the
 * statement — records it as timed out, so its thread message is redrawn — when that proxy's replica
 * died meanwhile. Whichever comes first wins the conditional update; the other finds it decided.
 * Scheduled from `statement.held` cluster events: every replica hears it and adds the same job id.
 */
export class ReviewTimeouts {
  readonly queue: Queue<ReviewTimeoutData>;
  readonly #worker: Worker<ReviewTimeoutData> | undefined;
  readonly #sessions: SessionBroker;
  readonly #clock: Clock;
  readonly #connection: unknown;
  readonly #ownership: JobOwnership | undefined;
  readonly #detach: (() => void)[] = [];
  #closed = false;

  constructor(options: ReviewTimeoutsOptions) {
    const { sessions, connection, prefix } = options;
    this.#sessions = sessions;
    this.#clock = options.clock;
    this.#connection = connection;
    this.#ownership = options.ownership;
    this.queue = reportErrors(new Queue(REVIEW_TIMEOUT, { connection, prefix }), `${REVIEW_TIMEOUT} queue`, options.onError);
    if (options.worker === false) return;
    this.#worker = new Worker<ReviewTimeoutData>(
      REVIEW_TIMEOUT,
      ownedProcessor(options.ownership, REVIEW_TIMEOUT, async (job: Job<ReviewTimeoutData>, token?: string) => {
        const held = await sessions.getHeld(job.data.heldId);
        if (!held) throw new UnrecoverableError(`no held statement ${job.data.heldId}`);
        if (held.state !== "held") return "decided";
        const due = this.#timeoutAt(held.createdAt);
        if (due.getTime() > this.#clock.now().getTime()) {
          await job.moveToDelayed(due.getTime(), token);
          throw new DelayedError();
        }
        try {
          await sessions.decide(null, { heldId: held.id, verdict: "timed_out" });
          return "timed_out";
        } catch (error) {
          if (error instanceof RequestNotPending) return "decided"; // the proxy's own timer, or a click, came first
          throw error;
        }
      }),
      { connection, prefix, concurrency: 8 },
    );
    this.#worker.on("error", (error) => options.onError?.(error, REVIEW_TIMEOUT));
    this.#worker.on("failed", (job, error) => options.onError?.(error, `${REVIEW_TIMEOUT} job ${job?.id ?? "?"}`));
  }

  #timeoutAt(createdAt: Date): Date {
    return new Date(createdAt.getTime() + this.#sessions.reviewTimeoutMs);
  }

  #delay(at: Date): number {
    return Math.max(0, at.getTime() - this.#clock.now().getTime());
  }

  /** Schedules on every `statement.held` and drops the job on `statement.decided`. */
  listen(events: TypedEvents, onError: (error: unknown, where: string) => void = () => {}): void {
    if (this.#detach.length > 0) return;
    this.#detach.push(
      events.on("statement.held", async ({ held }) => {
        await this.schedule(held.id, new Date(held.timeoutAt)).catch((error: unknown) => onError(error, "schedule review timeout"));
      }),
      events.on("statement.decided", async ({ held }) => {
        await removeJob(this.queue, held.id).catch((error: unknown) => onError(error, "drop review timeout"));
      }),
    );
  }

  schedule(heldId: string, at: Date): Promise<void> {
    return placeJob(this.queue, heldId, ownedData(this.#ownership, { heldId }), this.#delay(at));
  }

  /** Restores the job of every statement still held (a lost `statement.held`, Redis restarted empty). */
  async reconcile(): Promise<number> {
    let restored = 0;
    for (const held of await this.#sessions.awaitingDecision()) {
      if (await ensureJob(this.queue, held.id, ownedData(this.#ownership, { heldId: held.id }), this.#delay(this.#timeoutAt(held.createdAt)))) restored += 1;
    }
    return restored;
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all([this.queue.waitUntilReady(), this.#worker?.waitUntilReady()]);
  }

  /** Stops listening, lets a running job finish (or stops at once when Redis is gone). Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const detach of this.#detach.splice(0)) detach();
    await closeBullmq([this.#worker, this.queue], this.#connection);
  }
}
