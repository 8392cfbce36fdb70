import { webApi, type Logger as BoltLogger } from "@slack/bolt";
import {
  ChatRateLimited,
  ChatRejected,
  type ChatPort,
  type ChatUser,
  type EphemeralTarget,
  type MessageRef,
} from "../chat-port.js";
import { toBlockKit } from "../render/block-kit.js";
import type { MessageView } from "../view-model.js";

type WebClient = InstanceType<typeof webApi.WebClient>;

// Platform errors that say "not now" rather than "never" (https://docs.slack.dev/reference/methods/chat.postMessage#errors).
const TRANSIENT_ERRORS = new Set(["ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"]);

/** A Slack call that failed and may work later. Carries no request data: a DM's text holds a secret. */
export class SlackCallFailed extends Error {
  constructor(
    readonly method: string,
    readonly slackCode: string,
    message: string,
  ) {
    super(`Slack ${method} failed: ${message}`);
    this.name = "SlackCallFailed";
  }
}

/**
 * Turns a @slack/web-api error into the port's errors. The original is not attached as `cause`:
 * its request body may hold the connection line, and errors end up in logs.
 */
function translate(method: string, error: unknown): Error {
  const coded = error as { code?: unknown; retryAfter?: unknown; data?: { error?: unknown }; message?: unknown };
  if (coded?.code === webApi.ErrorCode.RateLimitedError && typeof coded.retryAfter === "number") {
    return new ChatRateLimited(coded.retryAfter * 1000);
  }
  if (coded?.code === webApi.ErrorCode.PlatformError) {
    const reason = String(coded.data?.error ?? "unknown_error");
    if (!TRANSIENT_ERRORS.has(reason)) return new ChatRejected(`${method}: ${reason}`);
    return new SlackCallFailed(method, reason, reason);
  }
  const message = typeof coded?.message === "string" ? coded.message.slice(0, 300) : "unknown error";
  return new SlackCallFailed(method, typeof coded?.code === "string" ? coded.code : "error", message);
}

export interface SlackChatPortOptions {
  client: WebClient;
  approvalChannel: string;
  /** How long a users.info answer is trusted (identity changes are rare; lookups are rate-limited). */
  userCacheMs?: number;
  now?: () => number;
}

/** The ChatPort on the Slack Web API: chat.postMessage / update / postEphemeral, conversations.open, users.info. */
export class SlackChatPort implements ChatPort {
  readonly platform = "slack" as const;
  readonly approvalChannel: string;
  readonly #client: WebClient;
  readonly #userCacheMs: number;
  readonly #now: () => number;
  readonly #users = new Map<string, { user: ChatUser; at: number }>();
  readonly #dmChannels = new Map<string, string>();

  constructor(options: SlackChatPortOptions) {
    this.#client = options.client;
    this.approvalChannel = options.approvalChannel;
    this.#userCacheMs = options.userCacheMs ?? 5 * 60_000;
    this.#now = options.now ?? Date.now;
  }

  get client(): WebClient {
    return this.#client;
  }

  async #call<T>(method: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw translate(method, error);
    }
  }

  async post(channel: string, view: MessageView): Promise<MessageRef> {
    const result = await this.#call("chat.postMessage", () =>
      this.#client.chat.postMessage({ channel, ...toBlockKit(view), unfurl_links: false, unfurl_media: false }),
    );
    return { channel: result.channel ?? channel, messageId: result.ts! };
  }

  async update(ref: MessageRef, view: MessageView): Promise<void> {
    await this.#call("chat.update", () => this.#client.chat.update({ channel: ref.channel, ts: ref.messageId, ...toBlockKit(view) }));
  }

  async reply(root: MessageRef, view: MessageView): Promise<MessageRef> {
    const thread = root.threadId ?? root.messageId;
    const result = await this.#call("chat.postMessage", () =>
      this.#client.chat.postMessage({ channel: root.channel, thread_ts: thread, ...toBlockKit(view), unfurl_links: false, unfurl_media: false }),
    );
    return { channel: result.channel ?? root.channel, messageId: result.ts!, threadId: thread };
  }

  async dm(user: string, view: MessageView): Promise<MessageRef> {
    let channel = this.#dmChannels.get(user);
    if (!channel) {
      // https://docs.slack.dev/reference/methods/conversations.open (needs im:write)
      const opened = await this.#call("conversations.open", () => this.#client.conversations.open({ users: user }));
      channel = opened.channel?.id;
      if (!channel) throw new ChatRejected("conversations.open returned no channel");
      this.#dmChannels.set(user, channel);
    }
    return this.post(channel, view);
  }

  async ephemeral(to: EphemeralTarget, view: MessageView): Promise<void> {
    if (to.responseUrl) return this.#respond(to.responseUrl, view);
    await this.#call("chat.postEphemeral", () => this.#client.chat.postEphemeral({ channel: to.channel, user: to.user, ...toBlockKit(view) }));
  }

  /**
   * Answers through a slash command's or an action's `response_url`, which reaches channels the bot
   * is not a member of (https://docs.slack.dev/interactivity/handling-user-interaction#message_responses).
   */
  async #respond(url: string, view: MessageView): Promise<void> {
    let response: Response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json; charset=utf-8" },
        body: JSON.stringify({ response_type: "ephemeral", replace_original: false, ...toBlockKit(view) }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (error) {
      throw new SlackCallFailed("response_url", "request_error", (error as Error).message);
    }
    const body = await response.text().catch(() => "");
    if (response.status === 429) {
      const seconds = Number(response.headers.get("retry-after"));
      throw new ChatRateLimited((Number.isFinite(seconds) && seconds > 0 ? seconds : 1) * 1000);
    }
    if (response.status >= 500) throw new SlackCallFailed("response_url", `http_${response.status}`, `HTTP ${response.status}`);
    // Expired (30 minutes, 5 uses) or otherwise refused: retrying cannot help.
    if (response.status !== 200) throw new ChatRejected(`response_url: HTTP ${response.status} ${body.slice(0, 100)}`);
  }

  async resolveUser(user: string): Promise<ChatUser> {
    const cached = this.#users.get(user);
    if (cached && this.#now() - cached.at < this.#userCacheMs) return cached.user;
    // https://docs.slack.dev/reference/methods/users.info (email needs users:read.email)
    const result = await this.#call("users.info", () => this.#client.users.info({ user }));
    const profile = result.user?.profile;
    // Slack confirms a member's email before it shows it; an account whose email Slack says is not
    // confirmed (`is_email_confirmed: false`) has none that can link it to anyone.
    const confirmed = result.user?.is_email_confirmed !== false;
    const resolved: ChatUser = {
      externalId: user,
      email: confirmed ? (profile?.email ?? null) : null,
      displayName: profile?.real_name || profile?.display_name || result.user?.real_name || result.user?.name || user,
      timeZone: result.user?.tz,
    };
    this.#users.set(user, { user: resolved, at: this.#now() });
    return resolved;
  }
}

/**
 * The Web API client the port uses: 429s are rejected (the outbox waits `Retry-After`, not the
 * client), no retries inside the client, and nothing of a request body in the logs.
 */
export function createSlackWebClient(options: { token: string; apiUrl?: string | undefined; logger: BoltLogger }): WebClient {
  return new webApi.WebClient(options.token, {
    ...(options.apiUrl ? { slackApiUrl: options.apiUrl } : {}),
    rejectRateLimitedCalls: true,
    retryConfig: { retries: 0 },
    timeout: 10_000,
    attachOriginalToWebAPIRequestError: false,
    logger: options.logger,
  });
}
