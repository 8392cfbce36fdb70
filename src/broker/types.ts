import type { accessRequests, chatIdentities, decisions, grantCredentials, grants, people, stepUpChallenges } from "../db/schema.js";
import type { ConnectionLine } from "./credentials.js";

export type Person = typeof people.$inferSelect;
export type AccessRequest = typeof accessRequests.$inferSelect;
export type Grant = typeof grants.$inferSelect;
export type Decision = typeof decisions.$inferSelect;
export type ScramVerifierRow = typeof grantCredentials.$inferSelect;
export type StepUpChallenge = typeof stepUpChallenges.$inferSelect;
export type LinkedIdentity = typeof chatIdentities.$inferSelect;

/** How long the one-time link of a step-up approval stays usable. */
export const STEP_UP_LINK_TTL_MS = 10 * 60_000;
/** Proof that the approver signed in again: the completed challenge and the token's `auth_time`. */
export interface StepUpProof {
  challengeId: string;
  authTime: Date;
}

/** How a chat platform (or the CLI, or OIDC) names a person. */
export interface IdentityRef {
  platform: "slack" | "teams" | "console" | "oidc";
  externalId: string;
  /** An email the platform vouches for (verified by it), or none: it links identities into one person. */
  email?: string | null | undefined;
  displayName?: string | null | undefined;
}

/** Why a chat platform's activity or person was refused before being identified (audit `chat.refused`). */
export interface ChatRefusal {
  platform: IdentityRef["platform"];
  reason: "foreign_tenant" | "unvouched_member";
  /** The sender's id on the platform, as the activity names it. */
  externalId: string | null;
  /** The tenant(s) the activity or the member lookup named (absent ones left out). */
  tenants: string[];
  /** What was refused: the activity type, and a card action's verb or "message". */
  activity: string;
}

export interface DecideResult {
  request: AccessRequest;
  decision: Decision;
  approvals: number;
  required: number;
  /** Set when this decision completed the quorum of an access request. */
  grant?: Grant;
  /** The requester's ready-to-paste line, holding the grant's secret: deliver it, never log it. */
  connection?: ConnectionLine;
  /** Set when this decision approved a scheduled request: its grant is issued at this time. */
  scheduled?: Date;
  /** Set when this decision completed the quorum of an extension request. */
  extended?: { grant: Grant; previousExpiresAt: Date };
}

export type ExtendResult =
  | { kind: "extended"; grant: Grant; previousExpiresAt: Date }
  | { kind: "requested"; request: AccessRequest };

export type ExpireOutcome = { kind: "expired"; grant: Grant } | { kind: "not-due"; expiresAt: Date } | { kind: "ended" };

/**
 * What noticed that a grant's time was up: its expiry job (on time), or, when that job was lost or
 * late, the reconciler, a login, a session's end, the holder's next request, or the next issue /
 * extend / revoke on it.
 */
/** What the grant-start job found: the grant issued now, not yet due, or nothing to do. */
export type GrantStartOutcome =
  | { kind: "issued"; request: AccessRequest; grant: Grant; connection: ConnectionLine }
  | { kind: "not-due"; startsAt: Date }
  | { kind: "done"; why: "issued" | "not-approved" | "missed" };

export type ExpiryFinder = "job" | "reconciler" | "login" | "session-end" | "request" | "issue" | "extend" | "revoke";
