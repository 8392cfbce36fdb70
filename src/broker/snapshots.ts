import { eq } from "drizzle-orm";
import type { Executor } from "../db/client.js";
import { people } from "../db/schema.js";
import type { DecisionSnapshot, GrantSnapshot, RequestSnapshot } from "./events.js";
import type { AccessRequest, Decision, Grant, Person } from "./types.js";

export const iso = (date: Date) => date.toISOString();

/** The plain, serialisable shapes that broker events carry (they cross replicas through Redis). */
export async function requestSnapshot(db: Executor, request: AccessRequest): Promise<RequestSnapshot> {
  const [requester] = await db.select().from(people).where(eq(people.id, request.requesterId));
  return {
    id: request.id,
    kind: request.kind,
    target: request.target,
    requesterId: request.requesterId,
    requesterName: requester?.displayName ?? request.requesterId,
    durationMs: request.durationMs,
    reason: request.reason,
    state: request.state,
    approvalsRequired: request.approvalsRequired,
    grantId: request.grantId,
    origin: request.origin,
    createdAt: iso(request.createdAt),
    timeoutAt: iso(request.timeoutAt),
  };
}

export function grantSnapshot(grant: Grant): GrantSnapshot {
  return {
    id: grant.id,
    requestId: grant.requestId,
    personId: grant.personId,
    target: grant.target,
    state: grant.state,
    startsAt: iso(grant.startsAt),
    expiresAt: iso(grant.expiresAt),
    endedAt: grant.endedAt ? iso(grant.endedAt) : null,
  };
}

export function decisionSnapshot(decision: Decision, approver: Person): DecisionSnapshot {
  return {
    id: decision.id,
    approverId: approver.id,
    approverName: approver.displayName,
    verdict: decision.verdict,
    reason: decision.reason,
    at: iso(decision.createdAt),
  };
}
