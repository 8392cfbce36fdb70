import type { Config } from "../../config/schema.js";
import type { Database } from "../../db/client.js";
import { knownChatUser } from "../../broker/thread-state.js";
import { ChatRejected, type ChatPort, type ChatUser, type EphemeralTarget, type MessageRef } from "../chat-port.js";
import type { MessageView } from "../view-model.js";
import type {
  ConsoleMessage as StoredConsoleMessage,
  ConsoleMessageKind,
  ConsoleStore as StoredConsoleStore,
  ConsoleThread as StoredConsoleThread,
} from "../../broker/console-messages.js";

export type ConsoleUser = Config["console"]["users"][number];
/** The console's messages as the bot reads them: the stored view is a MessageView. */
export type ConsoleMessage = StoredConsoleMessage<MessageView>;
export type ConsoleThread = StoredConsoleThread<MessageView>;
export type ConsoleStore = StoredConsoleStore<MessageView>;

/** What a browser needs to hear that something changed: small, and no message content. */
export interface ConsoleChange {
  seq: number;
  kind: ConsoleMessageKind;
  /** Who sees it, for `dm` and `ephemeral`; null for the channel (everyone). */
  userId: string | null;
}

export interface ConsolePortOptions {
  store: ConsoleStore;
  db: Database;
  /** The console's approval channel (`console.channel`). */
  channel: string;
  /** The people of `console.users` (demo mode); others are known once they have logged in. */
  users: readonly ConsoleUser[];
  /** Tells every replica's browsers (Redis pub/sub); a failure here loses a live update, not the message. */
  publish: (change: ConsoleChange) => void;
}

/** The DM "channel" of one console user. */
export const dmChannelOf = (user: string) => `@${user}`;

/**
 * The console's chat (STYLE.md 5: a third ChatPort): messages are rows of `console_messages`, and
 * each write is announced on Redis so that a browser connected to any replica redraws. The console
 * user id is `console.users[].id` in demo mode, and the person's email with an OIDC login.
 */
export class ConsolePort implements ChatPort {
  readonly platform = "console" as const;
  readonly approvalChannel: string;

  constructor(private readonly options: ConsolePortOptions) {
    this.approvalChannel = options.channel;
  }

  async post(channel: string, view: MessageView): Promise<MessageRef> {
    const message = await this.#write({ kind: "channel", channel, view });
    return { channel, messageId: message.id, threadId: null };
  }

  async update(ref: MessageRef, view: MessageView): Promise<void> {
    const message = await this.options.store.update(ref.messageId, view);
    if (!message) throw new ChatRejected("message_not_found");
    this.#announce(message);
  }

  async reply(root: MessageRef, view: MessageView): Promise<MessageRef> {
    const threadId = root.threadId ?? root.messageId;
    const parent = await this.options.store.find(threadId);
    if (!parent) throw new ChatRejected("thread_not_found");
    const message = await this.#write({ kind: "channel", channel: parent.channel, threadId, view });
    return { channel: parent.channel, messageId: message.id, threadId };
  }

  async dm(user: string, view: MessageView): Promise<MessageRef> {
    await this.resolveUser(user); // a DM to nobody would never be read
    const channel = dmChannelOf(user);
    const message = await this.#write({ kind: "dm", channel, userId: user, view });
    return { channel, messageId: message.id, threadId: null };
  }

  async ephemeral(to: EphemeralTarget, view: MessageView): Promise<void> {
    await this.#write({ kind: "ephemeral", channel: to.channel, userId: to.user, view });
  }

  async resolveUser(user: string): Promise<ChatUser> {
    const configured = this.options.users.find((u) => u.id === user);
    if (configured) return { externalId: configured.id, email: configured.email, displayName: configured.name };
    const known = await knownChatUser(this.options.db, "console", user);
    if (!known) throw new ChatRejected("user_not_found");
    return { externalId: user, ...known };
  }

  async #write(message: Parameters<ConsoleStore["insert"]>[0]): Promise<ConsoleMessage> {
    const written = await this.options.store.insert(message);
    this.#announce(written);
    return written;
  }

  #announce(message: ConsoleMessage): void {
    this.options.publish({ seq: message.seq, kind: message.kind, userId: message.userId });
  }
}
