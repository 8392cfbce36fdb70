import { and, asc, eq, gt, inArray, or, sql, type SQL } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import type { Executor } from "../db/client.js";
import {
  accessRequests,
  auditEvents,
  decisions,
  grants,
  heldDecisions,
  heldStatements,
  people,
  sessionRecordings,
  sessionStatements,
  sessions,
  targets,
} from "../db/schema.js";
import type { AuditSearchRow } from "./audit.js";

/**
 * What the audit pages read: a request's timeline, a session with its statements and recordings.
 * Read-only: nothing here writes, so the pages cannot change the evidence they show.
 */

export type StatementRow = typeof sessionStatements.$inferSelect;
export type RecordingInfo = Omit<typeof sessionRecordings.$inferSelect, "cast">;
export type HeldOutcome = typeof heldStatements.$inferSelect & { decidedByName: string | null };

export interface PersonRef {
  id: string;
  displayName: string;
  email: string | null;
}

export interface RequestTimeline {
  request: typeof accessRequests.$inferSelect;
  requester: PersonRef;
  grant: typeof grants.$inferSelect | undefined;
  decisions: (typeof decisions.$inferSelect & { approverName: string })[];
  /** Every event of the request, its grant and the grant's sessions, in chain order. */
  events: AuditSearchRow[];
  sessions: (typeof sessions.$inferSelect)[];
  held: HeldOutcome[];
}

export interface SessionDetail {
  session: typeof sessions.$inferSelect;
  person: PersonRef;
  requestId: string | null;
  /** A page of the statement timeline (PostgreSQL), from `afterSeq`. */
  statements: StatementRow[];
  moreStatements: boolean;
  held: HeldOutcome[];
  recordings: RecordingInfo[];
  /** The session's events in chain order: opened, file operations, blocked and held statements, closed. */
  events: AuditSearchRow[];
}

const deciders = alias(people, "deciders");

async function heldOutcomes(db: Executor, where: SQL): Promise<HeldOutcome[]> {
  const rows = await db
    .select({ held: heldStatements, decidedByName: deciders.displayName })
    .from(heldStatements)
    .leftJoin(deciders, eq(deciders.id, heldStatements.decidedBy))
    .where(where)
    .orderBy(asc(heldStatements.createdAt), asc(heldStatements.id));
  return rows.map((r) => ({ ...r.held, decidedByName: r.decidedByName }));
}

async function eventsWhere(db: Executor, where: SQL): Promise<AuditSearchRow[]> {
  const rows = await db
    .select({ event: auditEvents, actorEmail: people.email, actorName: people.displayName })
    .from(auditEvents)
    .leftJoin(people, eq(people.id, auditEvents.actorId))
    .where(where)
    .orderBy(asc(auditEvents.seq));
  return rows.map((r) => ({ ...r.event, actorEmail: r.actorEmail, actorName: r.actorName }));
}

async function personRef(db: Executor, personId: string): Promise<PersonRef> {
  const [row] = await db.select({ id: people.id, displayName: people.displayName, email: people.email }).from(people).where(eq(people.id, personId));
  return row ?? { id: personId, displayName: personId, email: null };
}

/**
 * A request and everything that happened under it. An access request's timeline follows its grant
 * (extensions, sessions, held statements, the end); an extension request's holds its own events.
 */
export async function requestTimeline(db: Executor, requestId: string): Promise<RequestTimeline | undefined> {
  const [request] = await db.select().from(accessRequests).where(eq(accessRequests.id, requestId));
  if (!request) return undefined;
  const [grant] = request.grantId ? await db.select().from(grants).where(eq(grants.id, request.grantId)) : [];
  const decided = await db
    // A rule's approval has no approver: it is named `rule <name>`.
    .select({ decision: decisions, approverName: sql<string>`coalesce(${people.displayName}, 'rule ' || ${decisions.rule}, 'nobody')` })
    .from(decisions)
    .leftJoin(people, eq(people.id, decisions.approverId))
    .where(eq(decisions.requestId, request.id))
    .orderBy(asc(decisions.createdAt));
  const followsGrant = request.kind === "access" && grant !== undefined;
  const grantSessions = followsGrant ? await db.select().from(sessions).where(eq(sessions.grantId, grant.id)).orderBy(asc(sessions.startedAt)) : [];
  const sessionIds = grantSessions.map((s) => s.id);
  const events = await eventsWhere(
    db,
    followsGrant
      ? or(
          eq(auditEvents.requestId, request.id),
          eq(auditEvents.grantId, grant.id),
          ...(sessionIds.length > 0 ? [inArray(auditEvents.sessionId, sessionIds)] : []),
        )!
      : eq(auditEvents.requestId, request.id),
  );
  return {
    request,
    requester: await personRef(db, request.requesterId),
    grant,
    decisions: decided.map((d) => ({ ...d.decision, approverName: d.approverName })),
    events,
    sessions: grantSessions,
    held: followsGrant ? await heldOutcomes(db, eq(heldStatements.grantId, grant.id)) : [],
  };
}

/** Who asked for a request and for which target, for the access check before anything else is read. */
export async function requestScope(db: Executor, requestId: string): Promise<{ ownerId: string; target: string } | undefined> {
  const [row] = await db.select({ ownerId: accessRequests.requesterId, target: accessRequests.target }).from(accessRequests).where(eq(accessRequests.id, requestId));
  return row;
}

/** Whose session it is and on which target, for the access check before anything else is read. */
export async function sessionScope(db: Executor, sessionId: string): Promise<{ ownerId: string; target: string } | undefined> {
  const [row] = await db.select({ ownerId: sessions.personId, target: sessions.target }).from(sessions).where(eq(sessions.id, sessionId));
  return row;
}

export async function sessionDetail(
  db: Executor,
  sessionId: string,
  page: { afterSeq?: number; limit: number } = { limit: 500 },
): Promise<SessionDetail | undefined> {
  const [session] = await db.select().from(sessions).where(eq(sessions.id, sessionId));
  if (!session) return undefined;
  const [grant] = await db.select({ requestId: grants.requestId }).from(grants).where(eq(grants.id, session.grantId));
  const statements = await db
    .select()
    .from(sessionStatements)
    .where(and(eq(sessionStatements.sessionId, session.id), page.afterSeq === undefined ? undefined : gt(sessionStatements.seq, page.afterSeq)))
    .orderBy(asc(sessionStatements.seq))
    .limit(page.limit + 1);
  const recordings = await db
    .select({
      sessionId: sessionRecordings.sessionId,
      channel: sessionRecordings.channel,
      kind: sessionRecordings.kind,
      title: sessionRecordings.title,
      format: sessionRecordings.format,
      truncated: sessionRecordings.truncated,
      createdAt: sessionRecordings.createdAt,
    })
    .from(sessionRecordings)
    .where(eq(sessionRecordings.sessionId, session.id))
    .orderBy(asc(sessionRecordings.channel));
  return {
    session,
    person: await personRef(db, session.personId),
    requestId: grant?.requestId ?? null,
    statements: statements.slice(0, page.limit),
    moreStatements: statements.length > page.limit,
    held: await heldOutcomes(db, eq(heldStatements.sessionId, session.id)),
    recordings,
    events: await eventsWhere(db, eq(auditEvents.sessionId, session.id)),
  };
}

/** The requests behind grants, for events that name only the grant (a held statement's decision). */
export async function requestsOfGrants(db: Executor, grantIds: string[]): Promise<Map<string, string>> {
  if (grantIds.length === 0) return new Map();
  const rows = await db.select({ id: grants.id, requestId: grants.requestId }).from(grants).where(inArray(grants.id, [...new Set(grantIds)]));
  return new Map(rows.map((r) => [r.id, r.requestId]));
}

/**
 * The start of each recorded channel's cast, for the page's text fallback: a recording may be up to
 * 32 MiB, and the page never needs more than its beginning (the player fetches the whole .cast).
 */
export async function recordingHeads(db: Executor, sessionId: string, chars: number): Promise<Map<number, { head: string; complete: boolean }>> {
  const rows = await db
    .select({
      channel: sessionRecordings.channel,
      head: sql<string>`left(${sessionRecordings.cast}, ${chars})`,
      length: sql<number>`length(${sessionRecordings.cast})::int`,
    })
    .from(sessionRecordings)
    .where(eq(sessionRecordings.sessionId, sessionId));
  return new Map(rows.map((r) => [r.channel, { head: r.head, complete: r.length <= chars }]));
}

/** One recorded channel's asciicast v2 text. */
export async function sessionRecording(db: Executor, sessionId: string, channel: number) {
  const [row] = await db
    .select()
    .from(sessionRecordings)
    .where(and(eq(sessionRecordings.sessionId, sessionId), eq(sessionRecordings.channel, channel)));
  return row;
}

/** The search form's choices: every target ever synced (history names removed ones too), every event kind in the log. */
export async function auditChoices(db: Executor): Promise<{ targets: { name: string; kind: string; active: boolean }[]; kinds: string[] }> {
  const targetRows = await db.select({ name: targets.name, kind: targets.kind, active: targets.active }).from(targets).orderBy(asc(targets.name));
  // A loose index scan over audit_events_kind_idx: one index probe per distinct kind, however long
  // the log is (SELECT DISTINCT would read every row).
  const result = await db.execute(sql`
    with recursive kinds(kind) as (
      (select ${auditEvents.kind} from ${auditEvents} order by ${auditEvents.kind} limit 1)
      union all
      select (select ${auditEvents.kind} from ${auditEvents} where ${auditEvents.kind} > kinds.kind order by ${auditEvents.kind} limit 1)
      from kinds where kinds.kind is not null
    )
    select kind from kinds where kind is not null`);
  // node-postgres and PGlite both answer { rows }.
  const rows = (result as unknown as { rows: { kind: string | null }[] }).rows;
  return { targets: targetRows, kinds: rows.map((k) => k.kind!) };
}

/** A held statement or command whole, with whose session it was and where, for its audit page. */
export interface HeldDetail {
  held: typeof heldStatements.$inferSelect;
  target: string;
  personId: string;
  person: PersonRef;
  requestId: string | null;
  decidedByName: string | null;
  approvedBy: string[];
}

export async function heldDetail(db: Executor, heldId: string): Promise<HeldDetail | undefined> {
  const [row] = await db
    .select({ held: heldStatements, target: sessions.target, personId: sessions.personId, requestId: grants.requestId })
    .from(heldStatements)
    .innerJoin(sessions, eq(sessions.id, heldStatements.sessionId))
    .leftJoin(grants, eq(grants.id, heldStatements.grantId))
    .where(eq(heldStatements.id, heldId));
  if (!row) return undefined;
  const [person] = await db.select({ id: people.id, displayName: people.displayName, email: people.email }).from(people).where(eq(people.id, row.personId));
  const [decider] = row.held.decidedBy ? await db.select({ name: people.displayName }).from(people).where(eq(people.id, row.held.decidedBy)) : [];
  const approvals = await db
    .select({ name: people.displayName })
    .from(heldDecisions)
    .innerJoin(people, eq(people.id, heldDecisions.approverId))
    .where(and(eq(heldDecisions.heldId, heldId), eq(heldDecisions.verdict, "approve")))
    .orderBy(asc(heldDecisions.createdAt));
  return {
    held: row.held,
    target: row.target,
    personId: row.personId,
    person: person ?? { id: row.personId, displayName: row.personId, email: null },
    requestId: row.requestId,
    decidedByName: decider?.name ?? null,
    approvedBy: approvals.map((a) => a.name),
  };
}
