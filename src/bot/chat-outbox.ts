import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { DelayedError, Queue, UnrecoverableError, Worker, type ConnectionOptions, type Job } from "bullmq";
import { closeBullmq, reportErrors } from "../infra/redis.js";
import { ownedData, ownedProcessor, type JobOwnership, type OwnedJobData } from "../infra/job-ownership.js";

export const CHAT_OUTBOX = "chat-outbox";

/** What is stored in Redis: the payload, or (for a payload holding a secret) its sealed form. */
type Stored<T> = ({ payload: T } | { sealed: string }) & OwnedJobData;

/**
 * An error that says when to try again: the chat platform's HTTP 429 `Retry-After`. Such a job is
 * moved to the delayed set for exactly that long, without spending one of its attempts.
 */
interface RetryAfter {
  retryAfterMs: number;
}
const isRetryAfter = (error: unknown): error is RetryAfter =>
  typeof error === "object" && error !== null && typeof (error as RetryAfter).retryAfterMs === "number";

// A chat outage delays messages and loses none: retries back off to one every 5 minutes and go on
// for about 8 hours; what still fails stays in the failed set for a week (and can be retried).
const ATTEMPTS = 100;
const MAX_BACKOFF_MS = 5 * 60_000;
export function outboxBackoff(attemptsMade: number): number {
  return Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.max(0, attemptsMade - 1));
}

export interface EnqueueOptions {
  /**
   * Derived from what is being delivered (an event, a decision), so the same delivery enqueued by
   * every replica runs once. Kept for a day after completion so a late duplicate is still dropped.
   */
  jobId?: string;
  /** The payload holds a secret: it is sealed before it reaches Redis and removed when delivered. */
  secret?: boolean;
}

/**
 * AES-256-GCM over the payloads that hold a secret (the DM with a connection line), with a key every
 * replica derives from the same configuration secret: Redis (and its persistence files) never holds
 * the plain text.
 */
export class OutboxSeal {
  readonly #key: Buffer;
  constructor(secretMaterial: string) {
    this.#key = Buffer.from(hkdfSync("sha256", secretMaterial, "jitgate", "chat-outbox seal v1", 32));
  }

  seal(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64");
  }

  unseal(sealed: string): string {
    const raw = Buffer.from(sealed, "base64");
    const decipher = createDecipheriv("aes-256-gcm", this.#key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8");
  }
}

export interface ChatOutboxOptions<T> {
  connection: ConnectionOptions;
  prefix: string;
  seal: OutboxSeal;
  /** Delivers one payload; see `RetryAfter` for rate limits, and BullMQ's UnrecoverableError for "never". */
  deliver: (payload: T, job: Job) => Promise<void>;
  onError?: (error: unknown, where: string) => void;
  concurrency?: number;
  /** Set false to only enqueue (a replica that runs no outbox worker). */
  worker?: boolean;
  /** This deployment: its jobs carry it, and the worker leaves another deployment's jobs alone. */
  ownership?: JobOwnership | undefined;
}

/**
 * The chat outbox: every message the gateway sends to a chat platform is a BullMQ job, retried with
 * backoff and delayed by `Retry-After` on HTTP 429. Platform-neutral: the platform adapter supplies
 * `deliver`.
 */
export class ChatOutbox<T> {
  readonly queue: Queue<Stored<T>>;
  readonly #worker: Worker<Stored<T>> | undefined;
  readonly #seal: OutboxSeal;
  readonly #connection: unknown;
  readonly #ownership: JobOwnership | undefined;
  #closed = false;

  constructor(name: string, options: ChatOutboxOptions<T>) {
    this.#ownership = options.ownership;
    const { connection, prefix } = options;
    this.#seal = options.seal;
    this.#connection = connection;
    this.queue = reportErrors(new Queue<Stored<T>>(name, { connection, prefix }), `${name} queue`, options.onError);
    if (options.worker === false) return;
    this.#worker = new Worker<Stored<T>>(
      name,
      ownedProcessor(options.ownership, name, async (job: Job<Stored<T>>, token?: string) => {
        let payload: T;
        try {
          payload = "sealed" in job.data ? (JSON.parse(this.#seal.unseal(job.data.sealed)) as T) : job.data.payload;
        } catch {
          // Sealed under another key (the token was rotated): no retry can open it.
          throw new UnrecoverableError("the sealed payload cannot be opened");
        }
        try {
          await options.deliver(payload, job);
        } catch (error) {
          if (!isRetryAfter(error)) throw error;
          await job.moveToDelayed(Date.now() + Math.max(0, error.retryAfterMs), token);
          throw new DelayedError();
        }
      }),
      {
        connection,
        prefix,
        concurrency: options.concurrency ?? 4,
        settings: { backoffStrategy: (attemptsMade: number) => outboxBackoff(attemptsMade) },
      },
    );
    this.#worker.on("error", (error) => options.onError?.(error, `${name} worker`));
    this.#worker.on("failed", (job, error) => {
      if (job && job.attemptsMade < (job.opts.attempts ?? 1)) return; // will be retried
      options.onError?.(error, `${name} job ${job?.id ?? "?"} gave up`);
    });
  }

  async enqueue(payload: T, options: EnqueueOptions = {}): Promise<void> {
    const data: Stored<T> = ownedData(this.#ownership, options.secret ? { sealed: this.#seal.seal(JSON.stringify(payload)) } : { payload });
    // BullMQ's Queue<T> generics resolve the job name type strictly; the name is the queue's own.
    await (this.queue as Queue).add(this.queue.name, data, {
      ...(options.jobId ? { jobId: options.jobId } : {}),
      attempts: ATTEMPTS,
      backoff: { type: "chat" },
      removeOnComplete: options.secret ? true : { age: 24 * 3600 },
      removeOnFail: { age: 7 * 24 * 3600 },
    });
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all([this.queue.waitUntilReady(), this.#worker?.waitUntilReady()]);
  }

  /** Lets running deliveries finish (or stops at once when Redis is gone). Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await closeBullmq([this.#worker, this.queue], this.#connection);
  }
}

/** A BullMQ job id from parts: custom ids may not contain `:` (and must not look like integers). */
export function outboxJobId(...parts: (string | number)[]): string {
  return parts.map((p) => String(p).replace(/:/g, "_")).join("|");
}
