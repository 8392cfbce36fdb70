import { createHash } from "node:crypto";
import { and, asc, desc, eq, gt, gte, ilike, inArray, lt, lte, or, sql, type SQL } from "drizzle-orm";
import type { Database, Executor } from "../db/client.js";
import { accessRequests, auditEvents, chatIdentities, grants, people, sessions } from "../db/schema.js";

export const GENESIS_HASH = "0".repeat(64);
// Serializes appends across connections and replicas so that the chain has exactly one head.
const AUDIT_CHAIN_LOCK = 7_236_002;

export interface AuditInput {
  kind: string;
  actorId?: string | null;
  target?: string | null;
  requestId?: string | null;
  grantId?: string | null;
  sessionId?: string | null;
  data?: Record<string, unknown>;
}

export type AuditRow = typeof auditEvents.$inferSelect;

/** JSON with object keys sorted at every depth: jsonb reorders keys, the hash must not care. */
export function canonicalJson(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function auditHash(row: Omit<AuditRow, "hash">): string {
  const body = canonicalJson({
    seq: row.seq,
    at: row.at.toISOString(),
    kind: row.kind,
    actorId: row.actorId,
    target: row.target,
    requestId: row.requestId,
    grantId: row.grantId,
    sessionId: row.sessionId,
    data: row.data,
  });
  return createHash("sha256").update(`${row.prevHash}\n${body}`).digest("hex");
}

/**
 * Appends one event to the chain. Call it inside the transaction that makes the change it records,
 * so that the change and its record commit together or not at all.
 */
export async function appendAudit(tx: Executor, at: Date, input: AuditInput): Promise<AuditRow> {
  await tx.execute(sql`select pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK})`);
  const [head] = await tx
    .select({ seq: auditEvents.seq, hash: auditEvents.hash })
    .from(auditEvents)
    .orderBy(desc(auditEvents.seq))
    .limit(1);
  const row: Omit<AuditRow, "hash"> = {
    seq: (head?.seq ?? 0) + 1,
    at,
    kind: input.kind,
    actorId: input.actorId ?? null,
    target: input.target ?? null,
    requestId: input.requestId ?? null,
    grantId: input.grantId ?? null,
    sessionId: input.sessionId ?? null,
    data: input.data ?? {},
    prevHash: head?.hash ?? GENESIS_HASH,
  };
  const full = { ...row, hash: auditHash(row) };
  await tx.insert(auditEvents).values(full);
  return full;
}

/** A standalone audit event (no other change to commit with it). */
export async function recordAudit(db: Database, at: Date, input: AuditInput): Promise<AuditRow> {
  return db.transaction((tx) => appendAudit(tx, at, input));
}

export type ChainVerdict =
  | { ok: true; count: number; head: string }
  | { ok: false; count: number; seq: number; problem: string };

/** Walks the chain from the first row and names the first broken link. */
export async function verifyAuditChain(db: Database, batchSize = 1000): Promise<ChainVerdict> {
  let previousHash = GENESIS_HASH;
  let expectedSeq = 1;
  let count = 0;
  for (;;) {
    const rows = await db
      .select()
      .from(auditEvents)
      .where(gte(auditEvents.seq, expectedSeq))
      .orderBy(asc(auditEvents.seq))
      .limit(batchSize);
    for (const row of rows) {
      if (row.seq !== expectedSeq) {
        return { ok: false, count, seq: expectedSeq, problem: `row ${expectedSeq} is missing (next is ${row.seq})` };
      }
      if (row.prevHash !== previousHash) {
        return { ok: false, count, seq: row.seq, problem: `prev_hash does not match the hash of row ${row.seq - 1}` };
      }
      if (auditHash(row) !== row.hash) {
        return { ok: false, count, seq: row.seq, problem: "its content does not match its hash (altered)" };
      }
      previousHash = row.hash;
      expectedSeq += 1;
      count += 1;
    }
    if (rows.length < batchSize) return { ok: true, count, head: previousHash };
  }
}

export interface AuditQuery {
  /** email, person id, or chat user id */
  user?: string | undefined;
  target?: string | undefined;
  kind?: string | undefined;
  requestId?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  limit?: number | undefined;
  afterSeq?: number | undefined;
  /** Only events before this one (paging newest first). */
  beforeSeq?: number | undefined;
  newestFirst?: boolean | undefined;
  /**
   * An email, or part of a display name: events by the people it matches, and events of their
   * requests, grants and sessions (a decision on their request, their grant expiring).
   */
  person?: string | undefined;
  /** A person id: only events by them or of their requests, grants and sessions (what they may see). */
  involving?: string | undefined;
  /**
   * What one person may see: events by them or of their requests, grants and sessions, and every
   * event on the targets they approve (the audit pages' rule).
   */
  visibleTo?: { personId: string; targets: string[] } | undefined;
}

/** Events by these people, or of their requests, grants and sessions. */
function involvingPeople(db: Executor, ids: string[]): SQL {
  return or(
    inArray(auditEvents.actorId, ids),
    inArray(auditEvents.requestId, db.select({ id: accessRequests.id }).from(accessRequests).where(inArray(accessRequests.requesterId, ids))),
    inArray(auditEvents.grantId, db.select({ id: grants.id }).from(grants).where(inArray(grants.personId, ids))),
    inArray(auditEvents.sessionId, db.select({ id: sessions.id }).from(sessions).where(inArray(sessions.personId, ids))),
  )!;
}

export interface AuditSearchRow extends AuditRow {
  actorEmail: string | null;
  actorName: string | null;
}

export async function searchAudit(db: Executor, query: AuditQuery): Promise<AuditSearchRow[]> {
  const filters: SQL[] = [];
  if (query.user) {
    const matches = await db
      .select({ id: people.id })
      .from(people)
      .leftJoin(chatIdentities, eq(chatIdentities.personId, people.id))
      .where(or(eq(people.id, query.user), eq(people.email, query.user), eq(chatIdentities.externalId, query.user)));
    const ids = [...new Set(matches.map((m) => m.id))];
    if (ids.length === 0) return [];
    filters.push(inArray(auditEvents.actorId, ids));
  }
  if (query.person) {
    const pattern = `%${query.person.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    const matches = await db
      .select({ id: people.id })
      .from(people)
      .where(or(sql`lower(${people.email}) = lower(${query.person})`, ilike(people.displayName, pattern)));
    if (matches.length === 0) return [];
    filters.push(involvingPeople(db, matches.map((m) => m.id)));
  }
  if (query.involving) filters.push(involvingPeople(db, [query.involving]));
  if (query.visibleTo) {
    const { personId, targets } = query.visibleTo;
    filters.push(targets.length > 0 ? or(involvingPeople(db, [personId]), inArray(auditEvents.target, targets))! : involvingPeople(db, [personId]));
  }
  if (query.target) filters.push(eq(auditEvents.target, query.target));
  if (query.kind) filters.push(query.kind.endsWith(".*") ? sql`${auditEvents.kind} like ${`${query.kind.slice(0, -1)}%`}` : eq(auditEvents.kind, query.kind));
  if (query.requestId) filters.push(eq(auditEvents.requestId, query.requestId));
  if (query.since) filters.push(gte(auditEvents.at, query.since));
  if (query.until) filters.push(lte(auditEvents.at, query.until));
  if (query.afterSeq !== undefined) filters.push(gt(auditEvents.seq, query.afterSeq));
  if (query.beforeSeq !== undefined) filters.push(lt(auditEvents.seq, query.beforeSeq));
  const rows = await db
    .select({ event: auditEvents, actorEmail: people.email, actorName: people.displayName })
    .from(auditEvents)
    .leftJoin(people, eq(people.id, auditEvents.actorId))
    .where(filters.length > 0 ? and(...filters) : undefined)
    .orderBy(query.newestFirst ? desc(auditEvents.seq) : asc(auditEvents.seq))
    .limit(query.limit ?? 1000);
  return rows.map((r) => ({ ...r.event, actorEmail: r.actorEmail, actorName: r.actorName }));
}
