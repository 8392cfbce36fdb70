import { and, asc, desc, eq, gt, gte, isNull, lt, or, sql } from "drizzle-orm";
import type { Database } from "../db/client.js";
import { accessRequests, auditEvents, breakGlassReviews, grants, heldStatements, people, sessions } from "../db/schema.js";

/** How each request created in the window ended (or stands, at the window's end). */
export interface RequestOutcomes {
  approved: number;
  denied: number;
  /** Expired without a decision, including those whose timeout passed but are not yet marked. */
  expired: number;
  cancelled: number;
  pending: number;
}

export interface Ranked {
  name: string;
  count: number;
}

/** DESIGN.md path 6: what happened in one window (normally the last 24 hours), from the database alone. */
export interface Digest {
  since: Date;
  until: Date;
  requests: { total: number; extensions: number; byOutcome: RequestOutcomes };
  /** Grants issued in the window; `grantedMs` sums each one's lifetime (to its end if it ended early). */
  grants: { issued: number; grantedMs: number; revoked: number };
  sessions: { total: number; postgres: number; ssh: number };
  /** By number of requests in the window, most first (ties by name), at most `top`. */
  topTargets: Ranked[];
  topRequesters: Ranked[];
  statements: { blocked: number; held: number; approved: number; denied: number; timedOut: number };
  /** Requests still waiting for a decision at the window's end, whenever they were made. */
  pending: { count: number; oldest: { id: string; target: string; requesterName: string; createdAt: Date }[] };
  longestGrant: { id: string; target: string; holderName: string; grantedMs: number } | null;
  /** Break-glass uses not reviewed at the window's end, whenever they were made, oldest first. */
  breakGlassUnreviewed: { id: string; target: string; requesterName: string; createdAt: Date }[];
}

export interface DigestWindow {
  since: Date;
  until: Date;
  /** How many targets and requesters to rank (default 5). */
  top?: number;
}

const count = sql<number>`count(*)::int`;

/**
 * Computes the digest of `[since, until)`. A pure query over the database: no chat, no clock (the
 * window is the caller's), so the daily job, `jitgate digest --now` and the tests agree exactly.
 */
export async function computeDigest(db: Database, window: DigestWindow): Promise<Digest> {
  const { since, until } = window;
  const top = window.top ?? 5;
  const createdIn = and(gte(accessRequests.createdAt, since), lt(accessRequests.createdAt, until));
  // A grant's lifetime: to its end when it ended before expiresAt (revoked), else to expiresAt.
  const lifetimeMs = sql<number>`(extract(epoch from (least(coalesce(${grants.endedAt}, ${grants.expiresAt}), ${grants.expiresAt}) - ${grants.startsAt})) * 1000)::bigint`;
  const grantedIn = and(gte(grants.startsAt, since), lt(grants.startsAt, until));

  const [outcomeRows, grantTotals, longest, sessionRows, targetRows, requesterRows, blockedRows, heldRows, pendingCount, pendingOldest] =
    await Promise.all([
      db
        .select({
          state: accessRequests.state,
          kind: accessRequests.kind,
          // Pending past its timeout at the window's end is expired: the reconciler marks it within a minute.
          overdue: sql<boolean>`${accessRequests.state} = 'pending' and ${accessRequests.timeoutAt} <= ${until}`,
          count,
        })
        .from(accessRequests)
        .where(createdIn)
        .groupBy(accessRequests.state, accessRequests.kind, sql`3`),
      db
        .select({
          issued: count,
          grantedMs: sql<string | null>`sum(${lifetimeMs})`,
          revoked: sql<number>`count(*) filter (where ${grants.state} = 'revoked')::int`,
        })
        .from(grants)
        .where(grantedIn),
      db
        .select({ id: grants.id, target: grants.target, holderName: people.displayName, grantedMs: lifetimeMs })
        .from(grants)
        .innerJoin(people, eq(people.id, grants.personId))
        .where(grantedIn)
        .orderBy(desc(lifetimeMs), asc(grants.startsAt))
        .limit(1),
      db
        .select({ protocol: sessions.protocol, count })
        .from(sessions)
        .where(and(gte(sessions.startedAt, since), lt(sessions.startedAt, until)))
        .groupBy(sessions.protocol),
      db
        .select({ name: accessRequests.target, count })
        .from(accessRequests)
        .where(createdIn)
        .groupBy(accessRequests.target)
        .orderBy(desc(count), asc(accessRequests.target))
        .limit(top),
      db
        .select({ name: people.displayName, count })
        .from(accessRequests)
        .innerJoin(people, eq(people.id, accessRequests.requesterId))
        .where(createdIn)
        .groupBy(people.id, people.displayName)
        .orderBy(desc(count), asc(people.displayName))
        .limit(top),
      db
        .select({ count })
        .from(auditEvents)
        .where(and(eq(auditEvents.kind, "statement.blocked"), gte(auditEvents.at, since), lt(auditEvents.at, until))),
      db
        .select({ state: heldStatements.state, count })
        .from(heldStatements)
        .where(and(gte(heldStatements.createdAt, since), lt(heldStatements.createdAt, until)))
        .groupBy(heldStatements.state),
      db
        .select({ count })
        .from(accessRequests)
        .where(and(eq(accessRequests.state, "pending"), lt(accessRequests.createdAt, until), gt(accessRequests.timeoutAt, until))),
      db
        .select({ id: accessRequests.id, target: accessRequests.target, requesterName: people.displayName, createdAt: accessRequests.createdAt })
        .from(accessRequests)
        .innerJoin(people, eq(people.id, accessRequests.requesterId))
        .where(and(eq(accessRequests.state, "pending"), lt(accessRequests.createdAt, until), gt(accessRequests.timeoutAt, until)))
        .orderBy(asc(accessRequests.createdAt))
        .limit(top),
    ]);

  // Not reviewed at the window's end: still open, or reviewed only after it.
  const breakGlassUnreviewed = await db
    .select({ id: breakGlassReviews.id, target: breakGlassReviews.target, requesterName: people.displayName, createdAt: breakGlassReviews.createdAt })
    .from(breakGlassReviews)
    .innerJoin(people, eq(people.id, breakGlassReviews.requesterId))
    .where(
      and(
        lt(breakGlassReviews.createdAt, until),
        or(eq(breakGlassReviews.state, "open"), isNull(breakGlassReviews.reviewedAt), gte(breakGlassReviews.reviewedAt, until)),
      ),
    )
    .orderBy(asc(breakGlassReviews.createdAt));

  const byOutcome: RequestOutcomes = { approved: 0, denied: 0, expired: 0, cancelled: 0, pending: 0 };
  let total = 0;
  let extensions = 0;
  for (const row of outcomeRows) {
    const n = Number(row.count);
    total += n;
    if (row.kind === "extension") extensions += n;
    byOutcome[row.overdue ? "expired" : row.state] += n;
  }
  const held = Object.fromEntries(heldRows.map((r) => [r.state, Number(r.count)]));
  const sessionCounts = Object.fromEntries(sessionRows.map((r) => [r.protocol, Number(r.count)]));
  const totals = grantTotals[0];
  const [first] = longest;
  return {
    since,
    until,
    requests: { total, extensions, byOutcome },
    grants: { issued: Number(totals?.issued ?? 0), grantedMs: Number(totals?.grantedMs ?? 0), revoked: Number(totals?.revoked ?? 0) },
    sessions: {
      total: (sessionCounts.postgres ?? 0) + (sessionCounts.ssh ?? 0),
      postgres: sessionCounts.postgres ?? 0,
      ssh: sessionCounts.ssh ?? 0,
    },
    topTargets: targetRows.map((r) => ({ name: r.name, count: Number(r.count) })),
    topRequesters: requesterRows.map((r) => ({ name: r.name, count: Number(r.count) })),
    statements: {
      blocked: Number(blockedRows[0]?.count ?? 0),
      held: Object.values(held).reduce((a, b) => a + b, 0),
      approved: held.approved ?? 0,
      denied: held.denied ?? 0,
      timedOut: held.timed_out ?? 0,
    },
    pending: { count: Number(pendingCount[0]?.count ?? 0), oldest: pendingOldest },
    longestGrant: first ? { id: first.id, target: first.target, holderName: first.holderName, grantedMs: Number(first.grantedMs) } : null,
    breakGlassUnreviewed,
  };
}
