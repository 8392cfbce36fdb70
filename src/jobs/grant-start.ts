import { DelayedError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from "bullmq";
import { ownedProcessor, type JobOwnership } from "../infra/job-ownership.js";
import { RequestNotFound, type AccessRequest, type Broker, type ConnectionLine, type Grant } from "../broker/index.js";
import { GRANT_START, type GrantStartData } from "./queues.js";

/** Hands the requester the connection line of a grant issued at its start (the chat's sealed DM). */
export type DeliverStartedGrant = (issued: { request: AccessRequest; grant: Grant; connection: ConnectionLine }) => Promise<unknown>;

export interface GrantStartWorkerOptions {
  broker: Broker;
  deliver: DeliverStartedGrant;
  connection: ConnectionOptions;
  prefix: string;
  ownership?: JobOwnership | undefined;
  onError?: (error: unknown, where: string) => void;
}

/**
 * Runs the `grant-start` jobs of scheduled requests (job id = request id, due at `startsAt`). The job
 * re-reads the request: not due yet (moved, or run early) → back to delayed until its start; already
 * issued, no longer approved, or its window over → done; else the grant is issued now and its line
 * delivered. It runs in the replica that has the chat, since the line goes out from here.
 */
export function grantStartWorker(options: GrantStartWorkerOptions): Worker<GrantStartData> {
  const { broker } = options;
  const worker = new Worker<GrantStartData>(
    GRANT_START,
    ownedProcessor(options.ownership, GRANT_START, async (job: Job<GrantStartData>, token?: string) => {
      let outcome;
      try {
        outcome = await broker.issueScheduled(job.data.requestId);
      } catch (error) {
        if (error instanceof RequestNotFound) throw new UnrecoverableError(error.message);
        throw error;
      }
      if (outcome.kind === "not-due") {
        await job.moveToDelayed(outcome.startsAt.getTime(), token);
        throw new DelayedError();
      }
      if (outcome.kind === "done") return outcome.why;
      // The grant is committed; a failed delivery is reported, not retried (a retry finds it issued).
      await options.deliver(outcome).catch((error: unknown) => options.onError?.(error, `deliver the line of scheduled grant ${outcome.grant.id}`));
      return "issued";
    }),
    { connection: options.connection, prefix: options.prefix, concurrency: 8 },
  );
  worker.on("error", (error) => options.onError?.(error, worker.name));
  worker.on("failed", (job, error) => options.onError?.(error, `${worker.name} job ${job?.id ?? "?"}`));
  return worker;
}
