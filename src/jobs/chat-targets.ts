import type { Digest } from "../broker/digest.js";

/**
 * What a chat platform does for the jobs that produce messages on their own (the expiry reminder,
 * the daily digest). Each platform adapter registers one at start-up; a job hands its result to
 * every registered platform with a key from the job, which the platform turns into its outbox job
 * id, so a job that runs twice (a retry, a stalled job taken over) posts once.
 *
 * main.ts registers each platform: Slack's `SlackAdapter.jobTarget`, and for Teams
 * `chatJobTarget({ platform: "teams", broker, enqueue: teams.outbox.enqueue, digestChannel })` with
 * the conversation the digest goes to (none until the Teams configuration has one: reminders only).
 * `chatJobTarget` (src/bot/scheduled-messages.ts) renders through the shared view model, so the
 * Adaptive Card renderer gets the reminder and the digest as it gets every other view.
 */
export interface ChatJobTarget {
  readonly platform: string;
  /** The reminder before a grant's expiry, in the grant's thread when its request came from this platform. */
  remind(grantId: string, key: string): Promise<void>;
  /** The daily reminder of an open break-glass review, in its thread (`key`: which day). */
  remindReview?(requestId: string, key: string): Promise<void>;
  /** The digest, to the platform's digest channel, its times in `timeZone`; nothing when no channel is configured. */
  digest(digest: Digest, key: string, timeZone?: string): Promise<void>;
}

/** The registered platforms, one per platform name. */
export class ChatJobTargets {
  readonly #targets = new Map<string, ChatJobTarget>();

  register(target: ChatJobTarget): () => void {
    this.#targets.set(target.platform, target);
    return () => {
      if (this.#targets.get(target.platform) === target) this.#targets.delete(target.platform);
    };
  }

  list(): ChatJobTarget[] {
    return [...this.#targets.values()];
  }

  /** Runs `deliver` for every platform; one platform failing does not keep the others from theirs. */
  async each(deliver: (target: ChatJobTarget) => Promise<void>): Promise<void> {
    const results = await Promise.allSettled(this.list().map(deliver));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  }
}
