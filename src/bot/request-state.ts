import { and, desc, eq } from "drizzle-orm";
import type { AccessRequest, Broker } from "../broker/index.js";
import { newId } from "../broker/ids.js";
import type { Database } from "../db/client.js";
import { auditEvents, chatIdentities, chatMessages, grants, heldStatements, people, sessions } from "../db/schema.js";
import type { ChatPlatform, MessageRef } from "./chat-port.js";
import type { GrantState, HeldState, RequestState } from "./view-model.js";

/** A held statement as its thread message shows it, read when the message is (re)drawn. */
export async function loadHeldState(broker: Broker, db: Database, heldId: string): Promise<{ held: HeldState; requestId: string }> {
  const [row] = await db
    .select({ held: heldStatements, target: sessions.target, personId: sessions.personId, requestId: grants.requestId })
    .from(heldStatements)
    .innerJoin(sessions, eq(sessions.id, heldStatements.sessionId))
    .innerJoin(grants, eq(grants.id, heldStatements.grantId))
    .where(eq(heldStatements.id, heldId));
  if (!row) throw new Error(`no held statement ${heldId}`);
  const names = async (id: string | null) =>
    id ? ((await db.select({ name: people.displayName }).from(people).where(eq(people.id, id)))[0]?.name ?? id) : null;
  return {
    requestId: row.requestId,
    held: {
      id: row.held.id,
      target: row.target,
      personName: (await names(row.personId)) ?? row.personId,
      text: row.held.text,
      rule: row.held.rule,
      state: row.held.state,
      decidedByName: await names(row.held.decidedBy),
      timeoutAt: new Date(row.held.createdAt.getTime() + broker.reviewTimeoutMs),
    },
  };
}

/** Reads what a request's messages show from the database, so any replica renders the same thing. */
export async function loadGrantState(broker: Broker, db: Database, grantId: string): Promise<GrantState> {
  const grant = await broker.getGrant(grantId);
  const holder = await broker.person(grant.personId);
  const endedBy = grant.endedBy ? await broker.person(grant.endedBy) : undefined;
  let reason: string | null = null;
  if (grant.state === "revoked") {
    // The revoke reason lives only in its audit record.
    const [row] = await db
      .select({ data: auditEvents.data })
      .from(auditEvents)
      .where(and(eq(auditEvents.grantId, grant.id), eq(auditEvents.kind, "grant.revoked")))
      .orderBy(desc(auditEvents.seq))
      .limit(1);
    reason = typeof row?.data.reason === "string" ? row.data.reason : null;
  }
  return {
    id: grant.id,
    target: grant.target,
    holderName: holder?.displayName ?? grant.personId,
    state: grant.state,
    expiresAt: grant.expiresAt,
    endedAt: grant.endedAt,
    endedByName: endedBy?.displayName ?? null,
    reason,
  };
}

export async function loadRequestState(broker: Broker, db: Database, requestId: string): Promise<RequestState> {
  const request = await broker.getRequest(requestId);
  const [requester, decisions] = await Promise.all([broker.person(request.requesterId), broker.decisionsOf(request.id)]);
  const denial = decisions.find((d) => d.verdict === "deny");
  return {
    id: request.id,
    kind: request.kind,
    target: request.target,
    requesterName: requester?.displayName ?? request.requesterId,
    durationMs: request.durationMs,
    reason: request.reason,
    state: request.state,
    approvalsRequired: request.approvalsRequired,
    approvedBy: decisions.filter((d) => d.verdict === "approve").map((d) => d.approverName),
    deniedBy: denial ? { name: denial.approverName, reason: denial.reason } : null,
    grant: request.grantId ? await loadGrantState(broker, db, request.grantId) : null,
  };
}

/**
 * The access request whose thread holds everything about `request`: itself, or for an extension
 * request the request of the grant it extends.
 */
export async function threadRequestOf(
  broker: Broker,
  request: Pick<AccessRequest, "id" | "kind" | "grantId" | "origin">,
): Promise<{ id: string; origin: string }> {
  if (request.kind !== "extension" || !request.grantId) return { id: request.id, origin: request.origin };
  const grant = await broker.getGrant(request.grantId);
  const parent = await broker.getRequest(grant.requestId);
  return { id: parent.id, origin: parent.origin };
}

/** A person's user id on a chat platform (the most recently seen, if several). */
export async function chatUserIdOf(db: Database, personId: string, platform: ChatPlatform): Promise<string | undefined> {
  const [row] = await db
    .select({ externalId: chatIdentities.externalId })
    .from(chatIdentities)
    .where(and(eq(chatIdentities.personId, personId), eq(chatIdentities.platform, platform)))
    .orderBy(desc(chatIdentities.updatedAt))
    .limit(1);
  return row?.externalId;
}

/** `held:<id>` is the message of one held statement, updated when it is decided. */
export type MessageRole = "root" | "reply" | "dm" | "card" | `held:${string}` | `reminder:${string}`;

/**
 * Where a request's messages are (table `chat_messages`): the root that is kept up to date, the
 * grant's card, replies and DMs. In the database, so updates work after a restart and on any replica.
 */
export class MessageRefs {
  constructor(
    private readonly db: Database,
    readonly platform: ChatPlatform,
  ) {}

  async find(requestId: string, role: MessageRole): Promise<MessageRef | undefined> {
    const [row] = await this.db
      .select()
      .from(chatMessages)
      .where(and(eq(chatMessages.platform, this.platform), eq(chatMessages.requestId, requestId), eq(chatMessages.role, role)))
      .orderBy(chatMessages.createdAt)
      .limit(1);
    return row ? { channel: row.channel, messageId: row.messageId, threadId: row.threadId } : undefined;
  }

  async record(requestId: string, role: MessageRole, ref: MessageRef): Promise<void> {
    await this.db
      .insert(chatMessages)
      .values({
        id: newId("msg"),
        requestId,
        platform: this.platform,
        channel: ref.channel,
        messageId: ref.messageId,
        threadId: ref.threadId ?? null,
        role,
      })
      .onConflictDoNothing();
  }
}
