import { TeamsInfo, TurnContext, type CloudAdapter, type ConversationParameters, type ConversationReference, type TeamsChannelAccount } from "botbuilder";
import {
  ChatRateLimited,
  ChatRejected,
  type ChatPort,
  type ChatUser,
  type EphemeralTarget,
  type MessageRef,
} from "../chat-port.js";
import { cardActivity } from "../render/adaptive-card.js";
import type { MessageView } from "../view-model.js";
import type { ConversationStore } from "../../broker/teams-conversations.js";

export const TEAMS_CHANNEL_ID = "msteams";
/** The audience of the bot's outgoing tokens in the public cloud (AuthenticationConstants.ToChannelFromBotOAuthScope). */
export const BOT_FRAMEWORK_SCOPE = "https://api.botframework.com";

/** A connector call that failed and may work later. Carries no activity: a DM's card holds a secret. */
export class TeamsCallFailed extends Error {
  constructor(
    readonly operation: string,
    readonly status: number | undefined,
    message: string,
  ) {
    super(`Teams ${operation} failed: ${message}`);
    this.name = "TeamsCallFailed";
  }
}

/**
 * Turns a connector error (a RestError with `statusCode` and the response) into the port's errors.
 * The original is not attached as `cause`: its request holds the activity, and errors reach logs.
 */
function translate(operation: string, error: unknown): Error {
  if (error instanceof ChatRejected || error instanceof ChatRateLimited) return error;
  const failed = error as { statusCode?: unknown; response?: { headers?: { get?: (name: string) => string | undefined } }; message?: unknown; code?: unknown };
  const status = typeof failed?.statusCode === "number" ? failed.statusCode : undefined;
  if (status === 429) {
    const seconds = Number(failed.response?.headers?.get?.("retry-after"));
    return new ChatRateLimited((Number.isFinite(seconds) && seconds > 0 ? seconds : 1) * 1000);
  }
  // 4xx other than a timeout: the conversation, the activity or the bot's rights are wrong; retrying cannot help.
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 401) {
    return new ChatRejected(`${operation}: HTTP ${status}`);
  }
  const message = typeof failed?.message === "string" ? failed.message.slice(0, 300) : "unknown error";
  return new TeamsCallFailed(operation, status, status !== undefined ? `HTTP ${status}: ${message}` : message);
}

/** A channel post's thread is the conversation `<channel>;messageid=<root activity id>` (how Teams addresses a reply chain). */
export function threadConversation(channel: string, rootId: string): string {
  return `${baseConversation(channel)};messageid=${rootId}`;
}

export function baseConversation(conversationId: string): string {
  const at = conversationId.indexOf(";messageid=");
  return at === -1 ? conversationId : conversationId.slice(0, at);
}

/** Tenant ids are GUIDs: the same tenant whatever the letters' case. */
export function sameTenant(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** A Teams member as jitgate takes them: `outsider` when their tenant is not the configured one. */
export interface TeamsChatUser extends ChatUser {
  outsider: boolean;
  /** The member's tenant, as the lookup says (`TeamsChannelAccount.tenantId`). */
  tenantId: string | null;
}

/**
 * The person behind a Teams member. Only `email` identifies a person (a userPrincipalName is not
 * always an address: guests have `…#EXT#@…`), and only the email of a member of the configured
 * tenant: Microsoft Entra ID vouches for its own directory, not for a member another tenant brings
 * in (external access, shared channels), whose profile says whatever that tenant lets it say. An
 * outsider's email is dropped, so it can never link them to one of our people. Without a configured
 * tenant (authentication off, a development machine) the email is taken as it comes.
 */
export function chatUserOf(member: Pick<TeamsChannelAccount, "id" | "name" | "email" | "tenantId">, tenantId: string | undefined): TeamsChatUser {
  const memberTenant = typeof member.tenantId === "string" && member.tenantId !== "" ? member.tenantId : null;
  const outsider = tenantId !== undefined && (memberTenant === null || !sameTenant(memberTenant, tenantId));
  return { externalId: member.id, email: outsider ? null : (member.email ?? null), displayName: member.name || member.id, outsider, tenantId: memberTenant };
}

export interface TeamsChatPortOptions {
  adapter: CloudAdapter;
  /** The bot's app id; "" when Bot Framework authentication is off. */
  appId: string;
  /** Where the connector is (`teams.serviceUrl`): every outgoing call goes there. */
  serviceUrl: string;
  tenantId?: string | undefined;
  approvalConversation: string;
  conversations: ConversationStore;
  /** The audience of outgoing tokens. */
  audience?: string;
  userCacheMs?: number;
  now?: () => number;
  /**
   * Teams user ids whose clients refresh a card with buttons on sight (Universal Actions: each
   * viewer gets the card as it is for them). Teams takes at most 60; others refresh by hand.
   */
  refreshUserIds?: () => Promise<string[]>;
}

/**
 * The ChatPort on the Bot Framework connector, through botbuilder's CloudAdapter: every call is a
 * proactive turn (`continueConversationAsync`) on a conversation reference, so it works on any
 * replica, outside of the turn that caused it.
 */
export class TeamsChatPort implements ChatPort {
  readonly platform = "teams" as const;
  readonly approvalChannel: string;
  readonly #options: TeamsChatPortOptions;
  readonly #userCacheMs: number;
  readonly #now: () => number;
  readonly #users = new Map<string, { user: TeamsChatUser; at: number }>();

  constructor(options: TeamsChatPortOptions) {
    this.#options = options;
    this.approvalChannel = options.approvalConversation;
    this.#userCacheMs = options.userCacheMs ?? 5 * 60_000;
    this.#now = options.now ?? Date.now;
  }

  get appId(): string {
    return this.#options.appId;
  }

  /** A reference to a conversation the bot is in, pointed at the configured connector. */
  reference(conversationId: string, extra: Partial<ConversationReference> = {}): Partial<ConversationReference> {
    const { tenantId } = this.#options;
    return {
      channelId: TEAMS_CHANNEL_ID,
      serviceUrl: this.#options.serviceUrl,
      bot: { id: this.#options.appId || "jitgate", name: "jitgate" },
      ...extra,
      conversation: {
        id: conversationId,
        isGroup: false,
        conversationType: "",
        name: "",
        ...(extra.conversation ?? {}),
        ...(tenantId ? { tenantId } : {}),
      },
    };
  }

  async #in<T>(operation: string, reference: Partial<ConversationReference>, run: (context: TurnContext) => Promise<T>): Promise<T> {
    let result: { value: T } | undefined;
    try {
      await this.#options.adapter.continueConversationAsync(this.#options.appId, reference, this.#options.audience ?? BOT_FRAMEWORK_SCOPE, async (context) => {
        result = { value: await run(context) };
      });
    } catch (error) {
      throw translate(operation, error);
    }
    if (!result) throw new TeamsCallFailed(operation, undefined, "the turn did not run");
    return result.value;
  }

  async #send(conversationId: string, view: MessageView, reference?: Partial<ConversationReference>): Promise<string> {
    return this.#in("send", reference ?? this.reference(conversationId), async (context) => {
      const response = await context.sendActivity(cardActivity(view, await this.#cardOptions(view)));
      if (!response?.id) throw new ChatRejected("the connector returned no activity id");
      return response.id;
    });
  }

  async #cardOptions(view: MessageView): Promise<{ refreshUserIds?: string[] }> {
    if (!view.buttons?.length || !this.#options.refreshUserIds) return {};
    return { refreshUserIds: await this.#options.refreshUserIds() };
  }

  async post(channel: string, view: MessageView): Promise<MessageRef> {
    // Sending to a channel's conversation starts a new post (thread) in it.
    const messageId = await this.#send(channel, view);
    return { channel: baseConversation(channel), messageId };
  }

  async update(ref: MessageRef, view: MessageView): Promise<void> {
    const conversation = ref.threadId ? threadConversation(ref.channel, ref.threadId) : ref.channel;
    await this.#in("update", this.reference(conversation), async (context) => {
      await context.updateActivity({ ...cardActivity(view, await this.#cardOptions(view)), id: ref.messageId });
    });
  }

  async reply(root: MessageRef, view: MessageView): Promise<MessageRef> {
    const thread = root.threadId ?? root.messageId;
    const messageId = await this.#send(threadConversation(root.channel, thread), view);
    return { channel: baseConversation(root.channel), messageId, threadId: thread };
  }

  /**
   * A proactive 1:1 message: in the stored personal conversation, or in one created now
   * (https://learn.microsoft.com/microsoftteams/platform/bots/how-to/conversations/send-proactive-messages),
   * whose reference is then stored for every replica.
   */
  async dm(user: string, view: MessageView): Promise<MessageRef> {
    const conversation = await this.#personalConversation(user);
    const messageId = await this.#send(conversation, view, this.reference(conversation, { user: { id: user, name: "" } }));
    return { channel: conversation, messageId };
  }

  async #personalConversation(user: string): Promise<string> {
    const stored = await this.#options.conversations.find(user);
    if (stored) return stored.conversationId;
    const { adapter, appId, serviceUrl, tenantId } = this.#options;
    const parameters: ConversationParameters = {
      isGroup: false,
      bot: { id: appId || "jitgate", name: "jitgate" },
      members: [{ id: user, name: "" }],
      ...(tenantId ? { tenantId, channelData: { tenant: { id: tenantId } } } : {}),
    } as ConversationParameters;
    let created: Partial<ConversationReference> | undefined;
    try {
      await adapter.createConversationAsync(appId, TEAMS_CHANNEL_ID, serviceUrl, this.#options.audience ?? BOT_FRAMEWORK_SCOPE, parameters, async (context) => {
        created = TurnContext.getConversationReference(context.activity);
      });
    } catch (error) {
      throw translate("createConversation", error);
    }
    const id = created?.conversation?.id;
    if (!created || !id) throw new TeamsCallFailed("createConversation", undefined, "no conversation id");
    await this.#options.conversations.save(user, {
      conversationId: id,
      serviceUrl,
      tenantId: tenantId ?? null,
      reference: JSON.parse(JSON.stringify(created)) as Record<string, unknown>,
    });
    return id;
  }

  /**
   * Teams has no ephemeral messages: the answer goes to the conversation the person wrote in (a
   * personal chat, or the channel thread where they mentioned the bot), or to their 1:1 chat when
   * no conversation is given. Clicks are answered in the card, for the clicker alone (see teams-app).
   */
  async ephemeral(to: EphemeralTarget, view: MessageView): Promise<void> {
    if (!to.channel || to.channel === to.user) {
      await this.dm(to.user, view);
      return;
    }
    await this.#send(to.channel, view);
  }

  /** The member's profile (TeamsInfo.getMember), looked up in their 1:1 chat or the approval conversation. */
  async resolveUser(user: string): Promise<ChatUser> {
    const { externalId, email, displayName } = await this.#member(user);
    return { externalId, email, displayName };
  }

  async #member(user: string): Promise<TeamsChatUser> {
    const cached = this.#cached(user);
    if (cached) return cached;
    const stored = await this.#options.conversations.find(user);
    const member = await this.#in("getMember", this.reference(stored?.conversationId ?? this.approvalChannel), (context) =>
      TeamsInfo.getMember(context, user),
    );
    return this.#remember(user, chatUserOf(member, this.#options.tenantId));
  }

  /** The sender of an incoming activity, looked up in that turn's team or conversation. */
  async resolveSender(context: TurnContext): Promise<TeamsChatUser> {
    const user = context.activity.from.id;
    const cached = this.#cached(user);
    if (cached) return cached;
    let member: TeamsChannelAccount;
    try {
      member = await TeamsInfo.getMember(context, user);
    } catch (error) {
      throw translate("getMember", error);
    }
    return this.#remember(user, chatUserOf(member, this.#options.tenantId));
  }

  #cached(user: string): TeamsChatUser | undefined {
    const cached = this.#users.get(user);
    return cached && this.#now() - cached.at < this.#userCacheMs ? cached.user : undefined;
  }

  #remember(user: string, resolved: TeamsChatUser): TeamsChatUser {
    this.#users.set(user, { user: resolved, at: this.#now() });
    return resolved;
  }
}
