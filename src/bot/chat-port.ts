import type { MessageView } from "./view-model.js";

export type ChatPlatform = "slack" | "teams" | "console";

/** Where a message lives on its platform: Slack's (channel, ts), Teams' (conversation, activity id). */
export interface MessageRef {
  channel: string;
  messageId: string;
  /** The thread's root message, when this message is a reply in a thread. */
  threadId?: string | null;
}

/** Who sees an ephemeral reply, and where. `responseUrl` (Slack) reaches places the bot is not a member of. */
export interface EphemeralTarget {
  channel: string;
  user: string;
  responseUrl?: string | undefined;
}

/** A chat user as the platform knows them: enough for `broker.identify`. */
export interface ChatUser {
  externalId: string;
  email: string | null;
  displayName: string;
  /** Their IANA time zone, where the platform says (Slack users.info `tz`): times addressed to them use it. */
  timeZone?: string | undefined;
}

/**
 * One port per outside world (STYLE.md 5): what the gateway does in a chat platform, whichever it is.
 * Implementations make the call and nothing else: retries, rate limits and idempotency belong to the
 * chat outbox that calls them. A method rejects with `ChatRateLimited` when the platform says to
 * wait, `ChatRejected` when retrying cannot help, and any other error when it may.
 */
export interface ChatPort {
  readonly platform: ChatPlatform;
  /** Where approval requests are posted (Slack channel id, Teams conversation id). */
  readonly approvalChannel: string;
  post(channel: string, view: MessageView): Promise<MessageRef>;
  update(ref: MessageRef, view: MessageView): Promise<void>;
  /** A reply in the thread of `root` (or in the thread `root` itself is a reply in). */
  reply(root: MessageRef, view: MessageView): Promise<MessageRef>;
  /** A direct message to one user, by their platform id. */
  dm(user: string, view: MessageView): Promise<MessageRef>;
  ephemeral(to: EphemeralTarget, view: MessageView): Promise<void>;
  resolveUser(user: string): Promise<ChatUser>;
}

/** The platform asked us to wait (HTTP 429 with `Retry-After`). */
export class ChatRateLimited extends Error {
  readonly code = "chat_rate_limited";
  constructor(
    readonly retryAfterMs: number,
    options?: ErrorOptions,
  ) {
    super(`rate limited; retry after ${Math.ceil(retryAfterMs / 1000)} s`, options);
    this.name = "ChatRateLimited";
  }
}

/** The platform refused the call for a reason a retry cannot fix (`channel_not_found`, `invalid_blocks`). */
export class ChatRejected extends Error {
  readonly code = "chat_rejected";
  constructor(
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`the chat platform refused the call: ${reason}`, options);
    this.name = "ChatRejected";
  }
}
