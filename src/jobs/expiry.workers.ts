import { DelayedError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from "bullmq";
import { closeBullmq } from "../infra/redis.js";
import { ownedProcessor, type JobOwnership } from "../infra/job-ownership.js";
import { GrantNotFound, RequestNotFound, type Broker } from "../broker/index.js";
import { GRANT_EXPIRY, REQUEST_TIMEOUT, type GrantExpiryData, type RequestTimeoutData } from "./queues.js";

export interface ExpiryWorkersOptions {
  broker: Broker;
  connection: ConnectionOptions;
  prefix: string;
  ownership?: JobOwnership | undefined;
  onError?: (error: unknown, where: string) => void;
}

/**
 * The workers behind grant expiry and request timeouts. Each job re-reads the domain state: a grant
 * extended meanwhile moves its own job to the new `expiresAt`; one already ended is done. Workers on
 * every replica share the queues, and BullMQ hands each job to one of them.
 */
export class ExpiryWorkers {
  readonly #workers: Worker[];
  readonly #connection: unknown;
  #closed = false;

  constructor(options: ExpiryWorkersOptions) {
    this.#connection = options.connection;
    const { broker, connection, prefix } = options;
    const expiry = new Worker<GrantExpiryData>(
      GRANT_EXPIRY,
      ownedProcessor(options.ownership, GRANT_EXPIRY, async (job: Job<GrantExpiryData>, token?: string) => {
        let outcome;
        try {
          outcome = await broker.expire(job.data.grantId);
        } catch (error) {
          if (error instanceof GrantNotFound) throw new UnrecoverableError(error.message);
          throw error;
        }
        if (outcome.kind === "not-due") {
          await job.moveToDelayed(outcome.expiresAt.getTime(), token);
          throw new DelayedError();
        }
        return outcome.kind;
      }),
      { connection, prefix, concurrency: 16 },
    );
    const timeout = new Worker<RequestTimeoutData>(
      REQUEST_TIMEOUT,
      ownedProcessor(options.ownership, REQUEST_TIMEOUT, async (job: Job<RequestTimeoutData>, token?: string) => {
        let request;
        try {
          if (await broker.expireRequest(job.data.requestId)) return "expired";
          request = await broker.getRequest(job.data.requestId);
        } catch (error) {
          if (error instanceof RequestNotFound) throw new UnrecoverableError(error.message);
          throw error;
        }
        if (request.state === "pending") {
          await job.moveToDelayed(request.timeoutAt.getTime(), token);
          throw new DelayedError();
        }
        return "decided";
      }),
      { connection, prefix, concurrency: 16 },
    );
    this.#workers = [expiry, timeout];
    for (const worker of this.#workers) {
      worker.on("error", (error) => options.onError?.(error, worker.name));
      worker.on("failed", (job, error) => options.onError?.(error, `${worker.name} job ${job?.id ?? "?"}`));
    }
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.waitUntilReady()));
  }

  /**
   * Lets running jobs finish, or closes by force when Redis is unreachable (a polite close would wait
   * for it forever; a job cut short is retried elsewhere). Safe to call twice; goes on when one
   * worker fails to close.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await closeBullmq(this.#workers, this.#connection);
  }
}
