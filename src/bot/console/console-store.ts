import { and, asc, desc, eq, inArray, isNull, sql } from "drizzle-orm";
import { newId } from "../../broker/ids.js";
import type { Database } from "../../db/client.js";
import { consoleMessages } from "../../db/schema.js";
import type { MessageView } from "../view-model.js";

export type ConsoleMessageKind = "channel" | "dm" | "ephemeral";

/** One message of the console's chat (a row of `console_messages`). */
export interface ConsoleMessage {
  id: string;
  seq: number;
  kind: ConsoleMessageKind;
  channel: string;
  /** The thread's root message, when this is a reply. */
  threadId: string | null;
  /** Who sees a `dm` or an `ephemeral` message. */
  userId: string | null;
  view: MessageView;
  createdAt: Date;
  updatedAt: Date;
}

/** A root message of the channel with the replies in its thread, oldest reply first. */
export interface ConsoleThread {
  root: ConsoleMessage;
  replies: ConsoleMessage[];
}

type Row = typeof consoleMessages.$inferSelect;

const toMessage = (row: Row): ConsoleMessage => ({ ...row, view: row.view as unknown as MessageView });

/** The console's messages in the database, where every replica reads and writes them. */
export class ConsoleStore {
  constructor(
    private readonly db: Database,
    private readonly now: () => Date,
  ) {}

  async insert(message: { kind: ConsoleMessageKind; channel: string; threadId?: string | null; userId?: string | null; view: MessageView }): Promise<ConsoleMessage> {
    const at = this.now();
    const [row] = await this.db
      .insert(consoleMessages)
      .values({
        id: newId("msg"),
        kind: message.kind,
        channel: message.channel,
        threadId: message.threadId ?? null,
        userId: message.userId ?? null,
        view: message.view as unknown as Record<string, unknown>,
        createdAt: at,
        updatedAt: at,
      })
      .returning();
    return toMessage(row!);
  }

  /** Replaces a message's view; undefined when there is no such message. */
  async update(id: string, view: MessageView): Promise<ConsoleMessage | undefined> {
    const [row] = await this.db
      .update(consoleMessages)
      .set({ view: view as unknown as Record<string, unknown>, updatedAt: this.now() })
      .where(eq(consoleMessages.id, id))
      .returning();
    return row ? toMessage(row) : undefined;
  }

  async find(id: string): Promise<ConsoleMessage | undefined> {
    const [row] = await this.db.select().from(consoleMessages).where(eq(consoleMessages.id, id));
    return row ? toMessage(row) : undefined;
  }

  /** The channel's latest root messages (newest first), each with its whole thread. */
  async channel(channel: string, limit = 30): Promise<ConsoleThread[]> {
    const roots = await this.db
      .select()
      .from(consoleMessages)
      .where(and(eq(consoleMessages.kind, "channel"), eq(consoleMessages.channel, channel), isNull(consoleMessages.threadId)))
      .orderBy(desc(consoleMessages.seq))
      .limit(limit);
    if (roots.length === 0) return [];
    const replies = await this.db
      .select()
      .from(consoleMessages)
      .where(and(eq(consoleMessages.kind, "channel"), inArray(consoleMessages.threadId, roots.map((r) => r.id))))
      .orderBy(asc(consoleMessages.seq));
    return roots.map((root) => ({
      root: toMessage(root),
      replies: replies.filter((r) => r.threadId === root.id).map(toMessage),
    }));
  }

  /** A thread by any of its messages' ids. */
  async thread(messageId: string): Promise<ConsoleThread | undefined> {
    const message = await this.find(messageId);
    if (!message) return undefined;
    const root = message.threadId ? await this.find(message.threadId) : message;
    if (!root) return undefined;
    const replies = await this.db.select().from(consoleMessages).where(eq(consoleMessages.threadId, root.id)).orderBy(asc(consoleMessages.seq));
    return { root, replies: replies.map(toMessage) };
  }

  /** Messages of one kind addressed to one user, newest first. */
  async addressedTo(userId: string, kind: "dm" | "ephemeral", limit: number): Promise<ConsoleMessage[]> {
    const rows = await this.db
      .select()
      .from(consoleMessages)
      .where(and(eq(consoleMessages.kind, kind), eq(consoleMessages.userId, userId)))
      .orderBy(desc(consoleMessages.seq))
      .limit(limit);
    return rows.map(toMessage);
  }

  /** The highest `seq` so far (0 when there are no messages). */
  async lastSeq(): Promise<number> {
    const [row] = await this.db.select({ seq: sql<number | null>`max(${consoleMessages.seq})` }).from(consoleMessages);
    return Number(row?.seq ?? 0);
  }
}
