import type { Broker } from "../broker/index.js";
import type { Digest } from "../broker/digest.js";
import type { ChatJobTarget } from "../jobs/chat-targets.js";
import { outboxJobId, type EnqueueOptions } from "./chat-outbox.js";
import type { ChatDelivery } from "./chat-delivery.js";
import type { ChatPlatform } from "./chat-port.js";
import { threadRequestOf } from "./request-state.js";
import { digestView } from "./view-model.js";

export interface ChatJobTargetOptions {
  platform: ChatPlatform;
  broker: Broker;
  /** The platform's chat outbox. */
  enqueue: (delivery: ChatDelivery, options: EnqueueOptions) => Promise<void>;
  /** Where the digest goes (Slack `slack.digestChannel`, a Teams conversation id); none → no digest. */
  digestChannel?: string | undefined;
}

/**
 * A platform's side of the reminder and digest jobs (see `ChatJobTarget`): both become outbox jobs
 * whose ids come from the job's key, rendered from the shared view model.
 */
export function chatJobTarget(options: ChatJobTargetOptions): ChatJobTarget {
  const { platform, broker, enqueue } = options;
  return {
    platform,
    async remind(grantId: string, key: string) {
      const grant = await broker.getGrant(grantId);
      const thread = await threadRequestOf(broker, await broker.getRequest(grant.requestId));
      if (thread.origin !== platform) return;
      await enqueue({ kind: "reminder", platform, grantId }, { jobId: outboxJobId(platform, "reminder", grantId, key) });
    },
    async remindReview(requestId: string, key: string) {
      const request = await broker.getRequest(requestId);
      if (request.origin !== platform) return;
      await enqueue({ kind: "review-reminder", platform, requestId }, { jobId: outboxJobId(platform, "review-reminder", requestId, key) });
    },
    async digest(digest: Digest, key: string, timeZone?: string) {
      if (!options.digestChannel) return;
      await enqueue(
        { kind: "post", platform, channel: options.digestChannel, view: digestView(digest, timeZone) },
        { jobId: outboxJobId(platform, "digest", key) },
      );
    },
  };
}
