import { and, eq, sql } from "drizzle-orm";
import type { Database } from "../db/client.js";
import { chatConversations } from "../db/schema.js";

/** A stored Bot Framework conversation reference (`TurnContext.getConversationReference`). */
export interface StoredConversation {
  conversationId: string;
  serviceUrl: string;
  tenantId: string | null;
  reference: Record<string, unknown>;
}

/**
 * Where each Teams user's 1:1 chat with the bot is (table `chat_conversations`): written when a user
 * talks to the bot in a personal chat or when the bot creates that chat, read by whichever replica
 * sends the connection line.
 */
export class ConversationStore {
  constructor(
    private readonly db: Database,
    readonly platform: "teams" = "teams",
  ) {}

  async find(externalId: string): Promise<StoredConversation | undefined> {
    const [row] = await this.db
      .select()
      .from(chatConversations)
      .where(and(eq(chatConversations.platform, this.platform), eq(chatConversations.externalId, externalId)));
    return row ? { conversationId: row.conversationId, serviceUrl: row.serviceUrl, tenantId: row.tenantId, reference: row.reference } : undefined;
  }

  async save(externalId: string, conversation: StoredConversation): Promise<void> {
    await this.db
      .insert(chatConversations)
      .values({ platform: this.platform, externalId, ...conversation })
      .onConflictDoUpdate({
        target: [chatConversations.platform, chatConversations.externalId],
        set: {
          conversationId: conversation.conversationId,
          serviceUrl: conversation.serviceUrl,
          tenantId: conversation.tenantId,
          reference: conversation.reference,
          updatedAt: sql`now()`,
        },
      });
  }
}
