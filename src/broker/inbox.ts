import { and, asc, eq, gt, inArray, ne, or, sql } from "drizzle-orm";
import { accessRequests, breakGlassReviews, chatMessages, grants, heldStatements, people, sessions } from "../db/schema.js";
import type { BrokerContext } from "./context.js";
import type { PeopleService } from "./people.js";
import { isApprover } from "./policy.js";
import { heldTextUrl } from "./thread-state.js";
import type { Person } from "./types.js";

/** Where an inbox item's own message is on one chat platform: a request's root, a held statement's or a review's message. */
export interface InboxThreadRef {
  channel: string;
  messageId: string;
  /** The thread's root when the message is a reply in it. */
  threadId: string | null;
}

interface InboxItemBase {
  id: string;
  target: string;
  createdAt: Date;
  /** The request whose thread holds the item (an extension's is its own root, a reply in the grant's thread). */
  threadRequestId: string;
  /** The item's message on the platform asked about, when it was posted there. */
  thread: InboxThreadRef | null;
}

export type InboxItem =
  | (InboxItemBase & {
      kind: "request";
      requestKind: "access" | "extension";
      requesterName: string;
      durationMs: number;
      reason: string;
      startsAt: Date | null;
      once: boolean;
      /** The grant an extension extends. */
      grantId: string | null;
      approvals: number;
      approvalsRequired: number;
      timeoutAt: Date;
    })
  | (InboxItemBase & {
      kind: "held";
      grantId: string;
      /** The audit page with its whole text, when the gateway serves one (`heldTextUrl`). */
      fullTextUrl: string | null;
      personName: string;
      text: string;
      rule: string;
      approvals: number;
      approvalsRequired: number;
      timeoutAt: Date;
    })
  | (InboxItemBase & {
      kind: "break-glass";
      /** The break-glass request (its Review card's buttons carry it). */
      requestId: string;
      grantId: string;
      requesterName: string;
      reason: string;
    });

export interface Inbox {
  /** The oldest first, at most the limit asked for. */
  items: InboxItem[];
  /** How many wait in all (items shown and not). */
  total: number;
}

/** How many an inbox shows unless told otherwise. */
export const INBOX_LIMIT = 20;

/**
 * An approver's inbox: what waits for this person's decision, oldest first. Access and extension
 * requests on the targets they approve that they did not ask for and have not decided yet; held
 * statements and commands of other people's sessions on those targets that they have not decided;
 * break-glass uses by others that wait for review. The same checks `decide` and `review` make,
 * read as a few queries (one per kind, one for the chat messages), never one per item.
 */
export class InboxService {
  constructor(
    private readonly ctx: BrokerContext,
    private readonly people: PeopleService,
  ) {}

  async of(person: Person, options: { platform?: string | undefined; limit?: number | undefined } = {}): Promise<Inbox> {
    const limit = Math.max(1, Math.min(options.limit ?? INBOX_LIMIT, 200));
    const identity = await this.people.identity(person);
    const targets = this.ctx.policies().filter((policy) => isApprover(policy, identity)).map((policy) => policy.name);
    if (targets.length === 0) return { items: [], total: 0 };
    const db = this.ctx.db;
    const now = this.ctx.clock.now();
    const heldSince = new Date(now.getTime() - this.ctx.config.defaults.reviewTimeout);
    // `count(*) over ()` is the number of rows the WHERE admits, before LIMIT: the total of each kind.
    const total = sql<number>`count(*) over ()`.mapWith(Number);

    const [requests, held, reviews] = await Promise.all([
      db
        .select({
          id: accessRequests.id,
          kind: accessRequests.kind,
          target: accessRequests.target,
          requesterName: people.displayName,
          durationMs: accessRequests.durationMs,
          reason: accessRequests.reason,
          createdAt: accessRequests.createdAt,
          timeoutAt: accessRequests.timeoutAt,
          startsAt: accessRequests.startsAt,
          once: accessRequests.once,
          grantId: accessRequests.grantId,
          approvalsRequired: accessRequests.approvalsRequired,
          approvals: sql<number>`(select count(*) from decisions d where d.request_id = ${accessRequests.id} and d.verdict = 'approve')`.mapWith(Number),
          total,
        })
        .from(accessRequests)
        .innerJoin(people, eq(people.id, accessRequests.requesterId))
        .where(
          and(
            eq(accessRequests.state, "pending"),
            // A break-glass waiting for its user's own sign-in is nobody else's to approve.
            eq(accessRequests.breakGlass, false),
            gt(accessRequests.timeoutAt, now),
            ne(accessRequests.requesterId, person.id),
            inArray(accessRequests.target, targets),
            sql`not exists (select 1 from decisions d where d.request_id = ${accessRequests.id} and d.approver_id = ${person.id})`,
          ),
        )
        .orderBy(asc(accessRequests.createdAt), asc(accessRequests.id))
        .limit(limit),
      db
        .select({
          id: heldStatements.id,
          target: sessions.target,
          personName: people.displayName,
          text: heldStatements.text,
          rule: heldStatements.rule,
          createdAt: heldStatements.createdAt,
          grantId: heldStatements.grantId,
          requestId: grants.requestId,
          approvalsRequired: heldStatements.approvalsRequired,
          approvals: sql<number>`(select count(*) from held_decisions h where h.held_id = ${heldStatements.id} and h.verdict = 'approve')`.mapWith(Number),
          total,
        })
        .from(heldStatements)
        .innerJoin(sessions, eq(sessions.id, heldStatements.sessionId))
        .innerJoin(grants, eq(grants.id, heldStatements.grantId))
        .innerJoin(people, eq(people.id, sessions.personId))
        .where(
          and(
            eq(heldStatements.state, "held"),
            // Past its review timeout it takes no approval, even before the timer records it.
            gt(heldStatements.createdAt, heldSince),
            ne(sessions.personId, person.id),
            inArray(sessions.target, targets),
            sql`not exists (select 1 from held_decisions h where h.held_id = ${heldStatements.id} and h.approver_id = ${person.id})`,
          ),
        )
        .orderBy(asc(heldStatements.createdAt), asc(heldStatements.id))
        .limit(limit),
      db
        .select({
          id: breakGlassReviews.id,
          requestId: breakGlassReviews.requestId,
          grantId: breakGlassReviews.grantId,
          target: breakGlassReviews.target,
          createdAt: breakGlassReviews.createdAt,
          requesterName: people.displayName,
          reason: accessRequests.reason,
          total,
        })
        .from(breakGlassReviews)
        .innerJoin(people, eq(people.id, breakGlassReviews.requesterId))
        .innerJoin(accessRequests, eq(accessRequests.id, breakGlassReviews.requestId))
        .where(and(eq(breakGlassReviews.state, "open"), ne(breakGlassReviews.requesterId, person.id), inArray(breakGlassReviews.target, targets)))
        .orderBy(asc(breakGlassReviews.createdAt), asc(breakGlassReviews.id))
        .limit(limit),
    ]);

    const items: InboxItem[] = [
      ...requests.map(
        (r): InboxItem => ({
          kind: "request",
          id: r.id,
          requestKind: r.kind,
          target: r.target,
          createdAt: r.createdAt,
          threadRequestId: r.id,
          thread: null,
          requesterName: r.requesterName,
          durationMs: r.durationMs,
          reason: r.reason,
          startsAt: r.startsAt,
          once: r.once,
          grantId: r.grantId,
          approvals: r.approvals,
          approvalsRequired: r.approvalsRequired,
          timeoutAt: r.timeoutAt,
        }),
      ),
      ...held.map(
        (h): InboxItem => ({
          kind: "held",
          id: h.id,
          target: h.target,
          createdAt: h.createdAt,
          threadRequestId: h.requestId,
          thread: null,
          grantId: h.grantId,
          fullTextUrl: heldTextUrl(this.ctx.config, h.id),
          personName: h.personName,
          text: h.text,
          rule: h.rule,
          approvals: h.approvals,
          approvalsRequired: h.approvalsRequired,
          timeoutAt: new Date(h.createdAt.getTime() + this.ctx.config.defaults.reviewTimeout),
        }),
      ),
      ...reviews.map(
        (b): InboxItem => ({
          kind: "break-glass",
          id: b.id,
          target: b.target,
          createdAt: b.createdAt,
          threadRequestId: b.requestId,
          thread: null,
          requestId: b.requestId,
          grantId: b.grantId,
          requesterName: b.requesterName,
          reason: b.reason,
        }),
      ),
    ]
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id))
      .slice(0, limit);
    const all = (requests[0]?.total ?? 0) + (held[0]?.total ?? 0) + (reviews[0]?.total ?? 0);

    if (options.platform && items.length > 0) await this.#attachThreads(items, options.platform);
    return { items, total: all };
  }

  /** Each item's own message on the platform (one query for all of them). */
  async #attachThreads(items: InboxItem[], platform: string): Promise<void> {
    const roleOf = (item: InboxItem) => (item.kind === "held" ? `held:${item.id}` : item.kind === "break-glass" ? "review" : "root");
    const rows = await this.ctx.db
      .select({ requestId: chatMessages.requestId, role: chatMessages.role, channel: chatMessages.channel, messageId: chatMessages.messageId, threadId: chatMessages.threadId })
      .from(chatMessages)
      .where(
        and(
          eq(chatMessages.platform, platform),
          inArray(chatMessages.requestId, [...new Set(items.map((item) => item.threadRequestId))]),
          or(eq(chatMessages.role, "root"), eq(chatMessages.role, "review"), inArray(chatMessages.role, items.filter((i) => i.kind === "held").map(roleOf).concat(["held:"]))),
        ),
      )
      .orderBy(asc(chatMessages.createdAt));
    const found = new Map<string, InboxThreadRef>();
    for (const row of rows) {
      const key = `${row.requestId}\n${row.role}`;
      if (!found.has(key)) found.set(key, { channel: row.channel, messageId: row.messageId, threadId: row.threadId });
    }
    for (const item of items) {
      // A review card or held message not posted yet: its request's root is where to look.
      item.thread = found.get(`${item.threadRequestId}\n${roleOf(item)}`) ?? found.get(`${item.threadRequestId}\nroot`) ?? null;
    }
  }
}
