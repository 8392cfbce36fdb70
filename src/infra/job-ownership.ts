import { setTimeout as sleep } from "node:timers/promises";
import { WaitingError, type Job } from "bullmq";

/** What every job of a deployment carries beside its own data. */
export interface OwnedJobData {
  deployment?: string;
}

// A job of another deployment is put back in the waiting list for its own workers to take, and the
// worker slot that took it waits this long (give or take half) before it asks for another; the job
// is never run, failed or removed here. The wait keeps a worker whose deployment has no other
// workers up from spinning on it.
export const FOREIGN_JOB_HOLD_MS = 1_000;

type Processor<T, R> = (job: Job<T>, token?: string) => Promise<R>;

/**
 * Which deployment a BullMQ job belongs to. By default each deployment has a Redis prefix of its
 * own and never sees another's jobs; when two share one (the same explicit `redisPrefix`, a replica
 * pointed at the wrong database), a worker must not expire grants it does not know or post another
 * deployment's messages with its own tokens. Jobs from before deployments had ids carry none and
 * are anyone's.
 */
export class JobOwnership {
  readonly #reported = new Set<string>();

  constructor(
    readonly deploymentId: string,
    /** Told once per queue and foreign deployment (a warning in the log). */
    private readonly report: (fields: { queue: string; job: string | undefined; deployment: string; ours: string }, message: string) => void,
  ) {}

  stamp<T extends object>(data: T): T & OwnedJobData {
    return { ...data, deployment: this.deploymentId };
  }

  /** True when `owner` (a job's or a message's) is another deployment; says so once per place and deployment. */
  isForeign(owner: string | undefined, where: string, id?: string): boolean {
    if (owner === undefined || owner === this.deploymentId) return false;
    const key = `${where}\n${owner}`;
    if (!this.#reported.has(key)) {
      this.#reported.add(key);
      this.report(
        { queue: where, job: id, deployment: owner, ours: this.deploymentId },
        "work of another deployment is on this Redis prefix; leaving it (and any more like it) to that deployment",
      );
    }
    return true;
  }

  /** The processor, run only for this deployment's jobs; another's goes back to wait for its own workers. */
  guard<T, R>(queue: string, processor: Processor<T, R>): Processor<T, R> {
    return async (job, token) => {
      if (!this.isForeign((job.data as OwnedJobData | undefined)?.deployment, queue, job.id)) return processor(job, token);
      // Back to waiting rather than delayed: a delayed job goes to whichever worker wakes first when it
      // is due, and that is the one that delayed it (it knows the time), so the owner could starve.
      // Put back first, then hold this worker's slot: on WaitingError BullMQ fetches the next job on
      // the same connection at once, which would take this one straight back before the owner's
      // worker, woken by the same put-back, can ask for it (the owner then starved for minutes).
      await job.moveToWait(token);
      await sleep(FOREIGN_JOB_HOLD_MS * (0.5 + Math.random()));
      throw new WaitingError();
    };
  }
}

/** `data` stamped with the deployment, when the caller has one (tools and tests may not). */
export function ownedData<T extends object>(ownership: JobOwnership | undefined, data: T): T {
  return ownership ? ownership.stamp(data) : data;
}

/** `processor` guarded by the deployment, when the caller has one. */
export function ownedProcessor<T, R>(ownership: JobOwnership | undefined, queue: string, processor: Processor<T, R>): Processor<T, R> {
  return ownership ? ownership.guard(queue, processor) : processor;
}
