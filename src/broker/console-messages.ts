import { and, asc, desc, eq, inArray, isNull, notInArray, or, sql, type SQL } from "drizzle-orm";
import { newId } from "./ids.js";
import type { Database } from "../db/client.js";
import { accessRequests, chatMessages, consoleMessages } from "../db/schema.js";

export type ConsoleMessageKind = "channel" | "dm" | "ephemeral";

/**
 * One message of the console's chat (a row of `console_messages`). `V` is the rendered view, which
 * the broker stores without knowing its shape (the bot's V).
 */
export interface ConsoleMessage<V = unknown> {
  id: string;
  seq: number;
  kind: ConsoleMessageKind;
  channel: string;
  /** The thread's root message, when this is a reply. */
  threadId: string | null;
  /** Who sees a `dm` or an `ephemeral` message. */
  userId: string | null;
  view: V;
  createdAt: Date;
  updatedAt: Date;
}

/**
 * Whose view of the channel: the threads of their own requests and of requests for the targets
 * they approve. A root of no request (the daily digest, which counts every target) only for people
 * who approve every target; that also covers a request's root in the instant between its post
 * and the record that links it to its request.
 */
export interface ConsoleVisibility {
  personId: string;
  /** The targets they approve (Broker.targetsApprovedBy). */
  targets: string[];
  /** They approve every configured target. */
  approvesAll: boolean;
}

/** A root message of the channel with the replies in its thread, oldest reply first. */
export interface ConsoleThread<V = unknown> {
  root: ConsoleMessage<V>;
  replies: ConsoleMessage<V>[];
}

type Row = typeof consoleMessages.$inferSelect;

const toMessage = <V>(row: Row): ConsoleMessage<V> => ({ ...row, view: row.view as V });

/** The console's messages in the database, where every replica reads and writes them. */
export class ConsoleStore<V = unknown> {
  constructor(
    private readonly db: Database,
    private readonly now: () => Date,
  ) {}

  async insert(message: { kind: ConsoleMessageKind; channel: string; threadId?: string | null; userId?: string | null; view: V }): Promise<ConsoleMessage<V>> {
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
    return toMessage<V>(row!);
  }

  /** Replaces a message's view; undefined when there is no such message. */
  async update(id: string, view: V): Promise<ConsoleMessage<V> | undefined> {
    const [row] = await this.db
      .update(consoleMessages)
      .set({ view: view as unknown as Record<string, unknown>, updatedAt: this.now() })
      .where(eq(consoleMessages.id, id))
      .returning();
    return row ? toMessage<V>(row) : undefined;
  }

  async find(id: string): Promise<ConsoleMessage<V> | undefined> {
    const [row] = await this.db.select().from(consoleMessages).where(eq(consoleMessages.id, id));
    return row ? toMessage<V>(row) : undefined;
  }

  /**
   * The channel's latest root messages (newest first), each with its whole thread; with `visibleTo`,
   * only the threads that person may see (see ConsoleVisibility).
   */
  async channel(channel: string, limit = 30, visibleTo?: ConsoleVisibility): Promise<ConsoleThread<V>[]> {
    const roots = await this.db
      .select()
      .from(consoleMessages)
      .where(
        and(
          eq(consoleMessages.kind, "channel"),
          eq(consoleMessages.channel, channel),
          isNull(consoleMessages.threadId),
          visibleTo ? this.#visible(visibleTo) : undefined,
        ),
      )
      .orderBy(desc(consoleMessages.seq))
      .limit(limit);
    if (roots.length === 0) return [];
    const replies = await this.db
      .select()
      .from(consoleMessages)
      .where(and(eq(consoleMessages.kind, "channel"), inArray(consoleMessages.threadId, roots.map((r) => r.id))))
      .orderBy(asc(consoleMessages.seq));
    return roots.map((root) => ({
      root: toMessage<V>(root),
      replies: replies.filter((r) => r.threadId === root.id).map((r) => toMessage<V>(r)),
    }));
  }

  #visible(who: ConsoleVisibility): SQL {
    // A request's root message is recorded in chat_messages (role "root"); its request names the target and the requester.
    const requestRoots = this.db
      .select({ id: chatMessages.messageId })
      .from(chatMessages)
      .innerJoin(accessRequests, eq(accessRequests.id, chatMessages.requestId))
      .where(
        and(
          eq(chatMessages.platform, "console"),
          eq(chatMessages.role, "root"),
          or(eq(accessRequests.requesterId, who.personId), ...(who.targets.length > 0 ? [inArray(accessRequests.target, who.targets)] : [])),
        ),
      );
    const anyRequestMessage = this.db.select({ id: chatMessages.messageId }).from(chatMessages).where(eq(chatMessages.platform, "console"));
    return or(
      inArray(consoleMessages.id, requestRoots),
      ...(who.approvesAll ? [notInArray(consoleMessages.id, anyRequestMessage)] : []),
    )!;
  }

  /** A thread by any of its messages' ids. */
  async thread(messageId: string): Promise<ConsoleThread<V> | undefined> {
    const message = await this.find(messageId);
    if (!message) return undefined;
    const root = message.threadId ? await this.find(message.threadId) : message;
    if (!root) return undefined;
    const replies = await this.db.select().from(consoleMessages).where(eq(consoleMessages.threadId, root.id)).orderBy(asc(consoleMessages.seq));
    return { root, replies: replies.map((r) => toMessage<V>(r)) };
  }

  /** Messages of one kind addressed to one user, newest first. */
  async addressedTo(userId: string, kind: "dm" | "ephemeral", limit: number): Promise<ConsoleMessage<V>[]> {
    const rows = await this.db
      .select()
      .from(consoleMessages)
      .where(and(eq(consoleMessages.kind, kind), eq(consoleMessages.userId, userId)))
      .orderBy(desc(consoleMessages.seq))
      .limit(limit);
    return rows.map((r) => toMessage<V>(r));
  }

  /** The highest `seq` so far (0 when there are no messages). */
  async lastSeq(): Promise<number> {
    const [row] = await this.db.select({ seq: sql<number | null>`max(${consoleMessages.seq})` }).from(consoleMessages);
    return Number(row?.seq ?? 0);
  }
}
