import { and, asc, desc, eq } from "drizzle-orm";
import type { Database, Executor } from "../db/client.js";
import { auditEvents, breakGlassReviews, chatIdentities, chatMessages, grants, heldDecisions, heldStatements, people, sessions } from "../db/schema.js";
import type { BrokerContext } from "./context.js";
import type { GrantsService } from "./grants.js";
import { newId } from "./ids.js";
import type { PeopleService } from "./people.js";
import type { RequestsService } from "./requests.js";

/**
 * Read models of what a request's chat thread shows: the request, its grant, a held statement.
 * Read from the database each time a message is (re)drawn, so every replica renders the same thing.
 */
export interface GrantStateRecord {
  id: string;
  target: string;
  holderName: string;
  state: string;
  expiresAt: Date;
  endedAt: Date | null;
  endedByName: string | null;
  reason: string | null;
}

export interface RequestStateRecord {
  id: string;
  kind: "access" | "extension";
  target: string;
  requesterName: string;
  durationMs: number;
  reason: string;
  state: string;
  approvalsRequired: number;
  approvedBy: string[];
  deniedBy: { name: string; reason: string | null } | null;
  /** The issued grant (access requests) or the grant to extend (extension requests). */
  grant: GrantStateRecord | null;
  /** A scheduled request's start (its grant is issued then). */
  startsAt: Date | null;
  once: boolean;
  /** Issued by break-glass, without approval: its review's state and reviewer. */
  breakGlass: { reviewId: string; state: string; reviewerName: string | null } | null;
}

export interface HeldStateRecord {
  id: string;
  target: string;
  personName: string;
  text: string;
  rule: string;
  state: string;
  decidedByName: string | null;
  timeoutAt: Date;
  /** Distinct approvals it needs to run, and who approved so far (oldest first). */
  approvalsRequired: number;
  approvedBy: string[];
  /** The audit page that shows the whole text (`/audit/held/<id>`), when the gateway serves one at a known address. */
  fullTextUrl: string | null;
}

/**
 * Where a browser reaches the gateway's audit pages, if it serves them: behind the console's OIDC
 * login, at the origin of `oidc.redirectUrl` (the address people's browsers already use for it);
 * in demo mode, on its loopback listener.
 */
export function auditPagesOrigin(config: BrokerContext["config"]): string | undefined {
  const demo = config.demo?.enabled === true;
  if (config.oidc && (config.console?.enabled === true || demo)) return new URL(config.oidc.redirectUrl).origin;
  if (demo && config.http && !/:0$/.test(config.http.listen)) return `http://${config.http.listen}`;
  return undefined;
}

/** The audit page of one held statement or command: its whole text, behind the audit pages' login. */
export function heldTextUrl(config: BrokerContext["config"], heldId: string): string | null {
  const origin = auditPagesOrigin(config);
  return origin ? `${origin}/audit/held/${encodeURIComponent(heldId)}` : null;
}

export class ThreadStates {
  constructor(
    private readonly ctx: BrokerContext,
    private readonly people: PeopleService,
    private readonly requests: RequestsService,
    private readonly grants: GrantsService,
  ) {}

  /** A held statement as its thread message shows it, and the request whose thread holds it. */
  async held(heldId: string): Promise<{ held: HeldStateRecord; requestId: string }> {
    const db = this.ctx.db;
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
        timeoutAt: new Date(row.held.createdAt.getTime() + this.ctx.config.defaults.reviewTimeout),
        approvalsRequired: row.held.approvalsRequired,
        approvedBy: (
          await db
            .select({ name: people.displayName })
            .from(heldDecisions)
            .innerJoin(people, eq(people.id, heldDecisions.approverId))
            .where(and(eq(heldDecisions.heldId, heldId), eq(heldDecisions.verdict, "approve")))
            .orderBy(asc(heldDecisions.createdAt))
        ).map((r) => r.name),
        fullTextUrl: heldTextUrl(this.ctx.config, heldId),
      },
    };
  }

  async grant(grantId: string): Promise<GrantStateRecord> {
    const grant = await this.grants.get(grantId);
    const holder = await this.people.person(grant.personId);
    const endedBy = grant.endedBy ? await this.people.person(grant.endedBy) : undefined;
    let reason: string | null = null;
    if (grant.state === "revoked") {
      // The revoke reason lives only in its audit record.
      const [row] = await this.ctx.db
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

  async request(requestId: string): Promise<RequestStateRecord> {
    const request = await this.requests.get(requestId);
    const [requester, decisions] = await Promise.all([this.people.person(request.requesterId), this.requests.decisionsOf(request.id)]);
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
      grant: request.grantId ? await this.grant(request.grantId) : null,
      startsAt: request.startsAt,
      once: request.once,
      breakGlass: request.breakGlass ? await this.#review(request.id) : null,
    };
  }

  async #review(requestId: string): Promise<{ reviewId: string; state: string; reviewerName: string | null } | null> {
    const [row] = await this.ctx.db
      .select({ id: breakGlassReviews.id, state: breakGlassReviews.state, reviewerId: breakGlassReviews.reviewerId })
      .from(breakGlassReviews)
      .where(eq(breakGlassReviews.requestId, requestId));
    if (!row) return null;
    const reviewer = row.reviewerId ? await this.people.person(row.reviewerId) : undefined;
    return { reviewId: row.id, state: row.state, reviewerName: reviewer?.displayName ?? null };
  }
}

/** A person's user id on a chat platform (the most recently seen, if several). */
export async function chatUserIdOf(db: Executor, personId: string, platform: string): Promise<string | undefined> {
  const [row] = await db
    .select({ externalId: chatIdentities.externalId })
    .from(chatIdentities)
    .where(and(eq(chatIdentities.personId, personId), eq(chatIdentities.platform, platform as "slack")))
    .orderBy(desc(chatIdentities.updatedAt))
    .limit(1);
  return row?.externalId;
}

/** The platform's most recently seen user ids (Teams refreshes the conversation references of these). */
export async function recentChatUserIds(db: Executor, platform: string, limit: number): Promise<string[]> {
  const rows = await db
    .select({ id: chatIdentities.externalId })
    .from(chatIdentities)
    .where(eq(chatIdentities.platform, platform as "slack"))
    .orderBy(desc(chatIdentities.updatedAt))
    .limit(limit);
  return rows.map((row) => row.id);
}

/** A chat user jitgate has seen before, with the email and name it knows (the console's user lookup). */
export async function knownChatUser(
  db: Executor,
  platform: string,
  externalId: string,
): Promise<{ email: string | null; displayName: string } | undefined> {
  const [known] = await db
    .select({ email: chatIdentities.email, identityName: chatIdentities.displayName, personName: people.displayName, personEmail: people.email })
    .from(chatIdentities)
    .innerJoin(people, eq(people.id, chatIdentities.personId))
    .where(and(eq(chatIdentities.platform, platform as "slack"), eq(chatIdentities.externalId, externalId)));
  return known ? { email: known.email ?? known.personEmail ?? null, displayName: known.identityName ?? known.personName ?? externalId } : undefined;
}

/** `held:<id>` is the message of one held statement, updated when it is decided. */
export type MessageRole = "root" | "reply" | "dm" | "card" | "review" | `held:${string}` | `reminder:${string}`;

/** Where a posted chat message is: the platform's channel, message id and thread. */
export interface PostedMessage {
  channel: string;
  messageId: string;
  threadId?: string | null | undefined;
}

/**
 * Where a request's messages are (table `chat_messages`): the root that is kept up to date, the
 * grant's card, replies and DMs. In the database, so updates work after a restart and on any replica.
 */
export class MessageRefs {
  constructor(
    private readonly db: Database,
    readonly platform: string,
  ) {}

  async find(requestId: string, role: MessageRole): Promise<PostedMessage | undefined> {
    const [row] = await this.db
      .select()
      .from(chatMessages)
      .where(and(eq(chatMessages.platform, this.platform), eq(chatMessages.requestId, requestId), eq(chatMessages.role, role)))
      .orderBy(chatMessages.createdAt)
      .limit(1);
    return row ? { channel: row.channel, messageId: row.messageId, threadId: row.threadId } : undefined;
  }

  async record(requestId: string, role: MessageRole, ref: PostedMessage): Promise<void> {
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
