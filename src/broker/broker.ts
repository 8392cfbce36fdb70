import { randomBytes } from "node:crypto";
import { and, asc, eq, gt, inArray, isNull, lte, notInArray, sql, type SQL } from "drizzle-orm";
import type { Config } from "../config/schema.js";
import { parseDuration } from "../config/duration.js";
import type { Database, Executor } from "../db/client.js";
import {
  accessRequests,
  chatIdentities,
  decisions,
  grantCredentials,
  grants,
  people,
  stepUpChallenges,
  targets as targetsTable,
} from "../db/schema.js";
import { appendAudit } from "./audit.js";
import { systemClock, type Clock } from "./clock.js";
import {
  makeVerifier,
  newSecret,
  postgresConnectionLine,
  sshConnectionLine,
  verifySecret,
  type ConnectionLine,
} from "./credentials.js";
import {
  AlreadyDecided,
  BrokerError,
  DurationTooLong,
  GrantAlreadyLive,
  GrantExpired,
  GrantNotActive,
  GrantNotFound,
  InvalidCredential,
  InvalidDuration,
  NoLiveGrant,
  NotAllowed,
  NotAnApprover,
  ReasonRejected,
  ReasonRequired,
  RequestNotFound,
  RequestNotPending,
  SelfApproval,
  StepUpRefused,
  StepUpRequired,
  UnknownTarget,
} from "./errors.js";
import type { DecisionSnapshot, GrantSnapshot, RequestSnapshot } from "./events.js";
import { TypedEvents } from "./events.js";
import { newId } from "./ids.js";
import { isApprover, targetPolicy, type Identity, type TargetPolicy } from "./policy.js";
import { noScheduler, type Scheduler } from "./scheduler.js";

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
  email?: string | null | undefined;
  displayName?: string | null | undefined;
}

export interface BrokerOptions {
  db: Database;
  config: Pick<Config, "targets" | "defaults" | "proxy"> & Partial<Pick<Config, "oidc">>;
  clock?: Clock;
  scheduler?: Scheduler;
  events?: TypedEvents;
  /** Reports failures that must not fail the operation (a job that could not be scheduled). */
  onBackgroundError?: (error: unknown, what: string) => void;
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
  /** Set when this decision completed the quorum of an extension request. */
  extended?: { grant: Grant; previousExpiresAt: Date };
}

export type ExtendResult =
  | { kind: "extended"; grant: Grant; previousExpiresAt: Date }
  | { kind: "requested"; request: AccessRequest };

export type ExpireOutcome = { kind: "expired"; grant: Grant } | { kind: "not-due"; expiresAt: Date } | { kind: "ended" };

const iso = (date: Date) => date.toISOString();

/**
 * The domain: requests, approvals, grants, policy, credentials and their audit records. Plain
 * methods over the database; no chat, no sockets. Every state change is one conditional UPDATE in a
 * transaction that also appends its audit event, so a double click or a second replica changes
 * nothing twice.
 */
export class Broker {
  readonly events: TypedEvents;
  readonly clock: Clock;
  readonly #db: Database;
  readonly #config: BrokerOptions["config"];
  readonly #policies: Map<string, TargetPolicy>;
  readonly #scheduler: Scheduler;
  readonly #onBackgroundError: (error: unknown, what: string) => void;

  constructor(options: BrokerOptions) {
    this.#db = options.db;
    this.#config = options.config;
    this.clock = options.clock ?? systemClock;
    this.#scheduler = options.scheduler ?? noScheduler;
    this.#onBackgroundError = options.onBackgroundError ?? (() => {});
    this.events = options.events ?? new TypedEvents((error, name) => this.#onBackgroundError(error, `listener of ${name}`));
    this.#policies = new Map(options.config.targets.map((t) => [t.name, targetPolicy(t, options.config.defaults)]));
  }

  get db(): Database {
    return this.#db;
  }

  /** How long a held statement waits for a decision. */
  get reviewTimeoutMs(): number {
    return this.#config.defaults.reviewTimeout;
  }

  /** The target's configuration as written (proxies need upstream, rules, masking). */
  targetConfig(name: string): Config["targets"][number] {
    const target = this.#config.targets.find((t) => t.name === name);
    if (!target) throw new UnknownTarget(name, [...this.#policies.keys()]);
    return target;
  }

  /**
   * The live grant and credential verifier behind a proxy login, for a SCRAM exchange. Throws
   * NoLiveGrant when there is none.
   */
  async liveCredential(login: string, target: string): Promise<{ grant: Grant; verifier: ScramVerifierRow }> {
    const now = this.clock.now();
    const rows = await this.#db
      .select({ grant: grants, credential: grantCredentials })
      .from(grantCredentials)
      .innerJoin(grants, eq(grants.id, grantCredentials.grantId))
      .where(and(eq(grantCredentials.login, login), eq(grantCredentials.target, target), eq(grants.state, "active"), gt(grants.expiresAt, now)));
    const [row] = rows;
    if (!row) throw new NoLiveGrant(target);
    return { grant: row.grant, verifier: row.credential };
  }

  /** Mirrors the configured targets into the database (history keeps referring to removed ones). */
  async syncTargets(): Promise<void> {
    const now = this.clock.now();
    await this.#db.transaction(async (tx) => {
      for (const policy of this.#policies.values()) {
        const row = {
          name: policy.name,
          kind: policy.kind,
          approvers: policy.approvers,
          approvals: policy.approvals,
          maxDurationMs: policy.maxDurationMs,
          active: true,
          syncedAt: now,
        };
        await tx.insert(targetsTable).values(row).onConflictDoUpdate({ target: targetsTable.name, set: row });
      }
      const names = [...this.#policies.keys()];
      await tx
        .update(targetsTable)
        .set({ active: false, syncedAt: now })
        .where(names.length > 0 ? notInArray(targetsTable.name, names) : undefined);
    });
  }

  policy(target: string): TargetPolicy {
    const policy = this.#policies.get(target);
    if (!policy) throw new UnknownTarget(target, [...this.#policies.keys()]);
    return policy;
  }

  /** Every target, for `targets`. */
  targets(): TargetPolicy[] {
    return [...this.#policies.values()];
  }

  // ---------------------------------------------------------------- people

  /**
   * Finds or creates the person behind a chat identity. Identities with the same email are one
   * person, whichever platform they come from.
   */
  async identify(ref: IdentityRef): Promise<Person> {
    const email = ref.email?.trim().toLowerCase() || null;
    const displayName = ref.displayName?.trim() || email || ref.externalId;
    const now = this.clock.now();
    return this.#db.transaction(async (tx) => {
      const [known] = await tx
        .select({ person: people })
        .from(chatIdentities)
        .innerJoin(people, eq(people.id, chatIdentities.personId))
        .where(and(eq(chatIdentities.platform, ref.platform), eq(chatIdentities.externalId, ref.externalId)));
      if (known) {
        await tx
          .update(chatIdentities)
          .set({ email, displayName, updatedAt: now })
          .where(and(eq(chatIdentities.platform, ref.platform), eq(chatIdentities.externalId, ref.externalId)));
        if (email && !known.person.email) {
          // Learn the email, unless it already belongs to someone else: identities are never
          // merged implicitly (a failed UPDATE would also abort the transaction).
          const [owner] = await tx.select({ id: people.id }).from(people).where(eq(people.email, email));
          if (owner) return known.person;
          const [updated] = await tx.update(people).set({ email }).where(eq(people.id, known.person.id)).returning();
          return updated ?? known.person;
        }
        return known.person;
      }
      let person: Person | undefined;
      if (email) [person] = await tx.select().from(people).where(eq(people.email, email));
      if (!person) {
        [person] = await tx
          .insert(people)
          .values({ id: newId("usr"), email, displayName, createdAt: now })
          .onConflictDoNothing()
          .returning();
        if (!person && email) [person] = await tx.select().from(people).where(eq(people.email, email));
      }
      if (!person) throw new Error("could not create or find the person");
      await tx
        .insert(chatIdentities)
        .values({ platform: ref.platform, externalId: ref.externalId, personId: person.id, email, displayName, updatedAt: now })
        .onConflictDoNothing();
      return person;
    });
  }

  async person(personId: string): Promise<Person | undefined> {
    const [row] = await this.#db.select().from(people).where(eq(people.id, personId));
    return row;
  }

  async #identity(tx: Executor, person: Person): Promise<Identity> {
    const ids = await tx
      .select({ externalId: chatIdentities.externalId })
      .from(chatIdentities)
      .where(eq(chatIdentities.personId, person.id));
    return { personId: person.id, email: person.email, chatIds: ids.map((i) => i.externalId) };
  }

  /** Every identity linked to the person (chat platforms, the console, OIDC subjects), for `whoami`. */
  async identitiesOf(person: Person): Promise<LinkedIdentity[]> {
    return this.#db
      .select()
      .from(chatIdentities)
      .where(eq(chatIdentities.personId, person.id))
      .orderBy(asc(chatIdentities.platform), asc(chatIdentities.externalId));
  }

  /** The person's live grant on a target (a proxy login by OIDC identity); throws NoLiveGrant. */
  async liveGrantOf(person: Person, target: string): Promise<Grant> {
    const grant = await this.#liveGrant(this.#db, person.id, target, this.clock.now());
    if (!grant) throw new NoLiveGrant(target);
    return grant;
  }

  async isApprover(target: string, person: Person): Promise<boolean> {
    return isApprover(this.policy(target), await this.#identity(this.#db, person));
  }

  // ---------------------------------------------------------------- requests

  #duration(text: string | number): number {
    const ms = typeof text === "number" ? text : parseDuration(text);
    if (ms === undefined || ms <= 0) throw new InvalidDuration(String(text));
    return ms;
  }

  async request(
    requester: Person,
    input: { target: string; duration: string | number; reason: string; origin?: string },
  ): Promise<AccessRequest> {
    const policy = this.policy(input.target);
    const durationMs = this.#duration(input.duration);
    if (durationMs > policy.maxDurationMs) throw new DurationTooLong(policy.name, durationMs, policy.maxDurationMs);
    const reason = input.reason.trim();
    if (reason === "") throw new ReasonRequired();
    if (policy.reasonPattern && !policy.reasonPattern.test(reason)) {
      throw new ReasonRejected(policy.name, policy.reasonPattern.source);
    }
    const now = this.clock.now();
    const request = await this.#db.transaction(async (tx) => {
      const live = await this.#liveGrant(tx, requester.id, policy.name, now);
      if (live) throw new GrantAlreadyLive(policy.name, live.id);
      const [row] = await tx
        .insert(accessRequests)
        .values({
          id: newId("req"),
          kind: "access",
          target: policy.name,
          requesterId: requester.id,
          durationMs,
          reason,
          approvalsRequired: policy.approvals,
          origin: input.origin ?? "api",
          createdAt: now,
          timeoutAt: new Date(now.getTime() + policy.requestTtlMs),
        })
        .returning();
      await appendAudit(tx, now, {
        kind: "request.created",
        actorId: requester.id,
        target: policy.name,
        requestId: row!.id,
        data: { durationMs, reason, approvalsRequired: policy.approvals, origin: row!.origin },
      });
      return row!;
    });
    this.events.emit("request.created", { request: await this.#requestSnapshot(request) });
    await this.#background("schedule request timeout", () =>
      this.#scheduler.scheduleRequestTimeout(request.id, request.timeoutAt),
    );
    return request;
  }

  async getRequest(requestId: string): Promise<AccessRequest> {
    const [row] = await this.#db.select().from(accessRequests).where(eq(accessRequests.id, requestId));
    if (!row) throw new RequestNotFound(requestId);
    return row;
  }

  /**
   * The checks `decide` makes, without deciding: a chat adapter asks before it shows a Deny form
   * (modal, card) to someone who could not submit it. Returns the pending request.
   */
  async checkCanDecide(person: Person, requestId: string): Promise<AccessRequest> {
    const request = await this.getRequest(requestId);
    if (request.state !== "pending" || request.timeoutAt.getTime() <= this.clock.now().getTime()) {
      const state = request.state === "pending" ? "expired" : request.state;
      throw new RequestNotPending(request.id, state, state === "expired" ? [] : await this.#decidersOf(this.#db, request));
    }
    if (request.requesterId === person.id) throw new SelfApproval();
    if (!(await this.isApprover(request.target, person))) throw new NotAnApprover(request.target);
    return request;
  }

  /**
   * Whether this person may extend this grant (before asking them for a duration): the grant is
   * live and they hold it or approve its target. `extend` checks again when it runs.
   */
  async checkCanExtend(person: Person, grantId: string): Promise<Grant> {
    const grant = await this.getGrant(grantId);
    if (grant.state !== "active" || grant.expiresAt.getTime() <= this.clock.now().getTime()) {
      throw new GrantNotActive(grant.id, grant.state === "active" ? "expired" : grant.state);
    }
    if (person.id !== grant.personId && !(await this.isApprover(grant.target, person))) {
      throw new NotAllowed(`only the holder or an approver of ${grant.target} may extend ${grant.id}`);
    }
    return grant;
  }

  async decisionsOf(requestId: string): Promise<(Decision & { approverName: string })[]> {
    const rows = await this.#db
      .select({ decision: decisions, approverName: people.displayName })
      .from(decisions)
      .innerJoin(people, eq(people.id, decisions.approverId))
      .where(eq(decisions.requestId, requestId))
      .orderBy(asc(decisions.createdAt));
    return rows.map((r) => ({ ...r.decision, approverName: r.approverName }));
  }

  /**
   * Approve or deny. Checks who decides (an approver, not the requester, once), counts distinct
   * approvals towards the quorum, and issues the grant (or applies the extension) when it is met.
   * Decisions on one request are serialized by a row lock, so concurrent clicks on any number of
   * replicas issue at most one grant.
   */
  async decide(
    approver: Person,
    input: { requestId: string; verdict: "approve" | "deny"; reason?: string | undefined; stepUp?: StepUpProof | undefined },
  ): Promise<DecideResult> {
    const now = this.clock.now();
    const outcome = await this.#db.transaction(async (tx): Promise<DecideResult | { challenge: StepUpChallenge; target: string }> => {
      const [request] = await tx.select().from(accessRequests).where(eq(accessRequests.id, input.requestId)).for("update");
      if (!request) throw new RequestNotFound(input.requestId);
      if (request.state !== "pending") {
        throw new RequestNotPending(request.id, request.state, await this.#decidersOf(tx, request));
      }
      if (request.timeoutAt.getTime() <= now.getTime()) throw new RequestNotPending(request.id, "expired", []);
      const policy = this.policy(request.target);
      if (request.requesterId === approver.id) throw new SelfApproval();
      if (!isApprover(policy, await this.#identity(tx, approver))) throw new NotAnApprover(policy.name);
      const [previous] = await tx
        .select()
        .from(decisions)
        .where(and(eq(decisions.requestId, request.id), eq(decisions.approverId, approver.id)));
      if (previous) throw new AlreadyDecided(request.id, previous.verdict);
      // Step-up: the approval waits for a fresh OIDC login (everything above is checked first).
      let stepUp: { authTime: string } | undefined;
      if (input.verdict === "approve" && policy.stepUp) {
        if (!input.stepUp) return { challenge: await this.#openStepUp(tx, request, approver, now), target: request.target };
        stepUp = await this.#completeStepUp(tx, input.stepUp, request, approver, now);
      }

      const reason = input.reason?.trim() || null;
      const [decision] = await tx
        .insert(decisions)
        .values({ id: newId("dec"), requestId: request.id, approverId: approver.id, verdict: input.verdict, reason, createdAt: now })
        .returning();
      const [{ approvals } = { approvals: 0 }] = await tx
        .select({ approvals: sql<number>`count(*)::int` })
        .from(decisions)
        .where(and(eq(decisions.requestId, request.id), eq(decisions.verdict, "approve")));
      await appendAudit(tx, now, {
        kind: "request.decided",
        actorId: approver.id,
        target: request.target,
        requestId: request.id,
        grantId: request.grantId,
        data: { verdict: input.verdict, reason, approvals, required: request.approvalsRequired, ...(stepUp ? { stepUp } : {}) },
      });

      let finalState: "denied" | "approved" | undefined;
      if (input.verdict === "deny") finalState = "denied";
      else if (approvals >= request.approvalsRequired) finalState = "approved";
      let current = request;
      if (finalState) {
        const [updated] = await tx
          .update(accessRequests)
          .set({ state: finalState, decidedAt: now })
          .where(and(eq(accessRequests.id, request.id), eq(accessRequests.state, "pending")))
          .returning();
        // The row lock makes this unreachable; if it is reached, nothing is committed.
        if (!updated) throw new RequestNotPending(request.id, "decided", []);
        current = updated;
        await appendAudit(tx, now, {
          kind: finalState === "denied" ? "request.denied" : "request.approved",
          actorId: approver.id,
          target: request.target,
          requestId: request.id,
          grantId: request.grantId,
          data: { reason },
        });
      }
      const result: DecideResult = { request: current, decision: decision!, approvals, required: request.approvalsRequired };
      if (finalState === "approved" && current.kind === "access") {
        const issued = await this.#issueGrant(tx, current, approver, now);
        result.grant = issued.grant;
        result.connection = issued.connection;
        result.request = issued.request;
      }
      if (finalState === "approved" && current.kind === "extension") {
        result.extended = await this.#applyExtension(tx, current, approver, now);
      }
      return result;
    });
    if ("challenge" in outcome) {
      const { challenge, target } = outcome;
      throw new StepUpRequired(target, challenge.id, this.stepUpLink(challenge.id), challenge.expiresAt, STEP_UP_LINK_TTL_MS);
    }

    const requestSnapshot = await this.#requestSnapshot(outcome.request);
    const decisionSnapshot = this.#decisionSnapshot(outcome.decision, approver);
    this.events.emit("request.decided", {
      request: requestSnapshot,
      decision: decisionSnapshot,
      approvals: outcome.approvals,
      required: outcome.required,
    });
    if (outcome.request.state === "denied") {
      this.events.emit("request.denied", { request: requestSnapshot, decision: decisionSnapshot });
    }
    if (outcome.request.state !== "pending") {
      await this.#background("cancel request timeout", () => this.#scheduler.cancelRequestTimeout(outcome.request.id));
    }
    if (outcome.grant) await this.#afterIssue(outcome.grant, outcome.request);
    if (outcome.extended) await this.#afterExtend(outcome.extended.grant, outcome.extended.previousExpiresAt, approver);
    return outcome;
  }

  // ---------------------------------------------------------------- step-up approval

  /** The one-time link an approver opens to sign in again: on the gateway that `oidc.redirectUrl` names. */
  stepUpLink(challengeId: string): string {
    const redirectUrl = this.#config.oidc?.redirectUrl;
    const origin = redirectUrl ? new URL(redirectUrl).origin : "";
    return `${origin}/oidc/approve?challenge=${encodeURIComponent(challengeId)}`;
  }

  async #openStepUp(tx: Executor, request: AccessRequest, approver: Person, now: Date): Promise<StepUpChallenge> {
    const [challenge] = await tx
      .insert(stepUpChallenges)
      .values({
        id: randomBytes(24).toString("base64url"),
        requestId: request.id,
        approverId: approver.id,
        createdAt: now,
        expiresAt: new Date(now.getTime() + STEP_UP_LINK_TTL_MS),
      })
      .returning();
    await appendAudit(tx, now, {
      kind: "step_up.challenged",
      actorId: approver.id,
      target: request.target,
      requestId: request.id,
      grantId: request.grantId,
      data: { expiresAt: iso(challenge!.expiresAt) },
    });
    return challenge!;
  }

  /**
   * Marks a challenge used, in the decision's transaction (so the link works once and only with the
   * decision): it must be this approver's, on this request, unused and unexpired, and the login
   * behind it fresh: `auth_time` no earlier than the challenge and within `oidc.stepUpMaxAge`.
   */
  async #completeStepUp(tx: Executor, proof: StepUpProof, request: AccessRequest, approver: Person, now: Date): Promise<{ authTime: string }> {
    const [challenge] = await tx.select().from(stepUpChallenges).where(eq(stepUpChallenges.id, proof.challengeId)).for("update");
    if (!challenge || challenge.requestId !== request.id) throw new StepUpRefused("this sign-in link is not for this request");
    if (challenge.completedAt) throw new StepUpRefused("this sign-in link has already been used");
    if (challenge.expiresAt.getTime() <= now.getTime()) throw new StepUpRefused("this sign-in link has expired; click Approve again for a new one");
    if (challenge.approverId !== approver.id) {
      throw new StepUpRefused("the sign-in was by someone else than the approver who clicked Approve; nothing was recorded");
    }
    const maxAgeMs = this.#config.oidc?.stepUpMaxAge ?? 5 * 60_000;
    // auth_time has whole seconds: a login in the same second as the click counts as after it.
    const authMs = proof.authTime.getTime();
    if (authMs < Math.floor(challenge.createdAt.getTime() / 1000) * 1000 || now.getTime() - authMs > maxAgeMs) {
      throw new StepUpRefused("the sign-in was not fresh (the provider reused an earlier login); click Approve again and sign in anew");
    }
    const [done] = await tx
      .update(stepUpChallenges)
      .set({ completedAt: now, authTime: proof.authTime })
      .where(and(eq(stepUpChallenges.id, challenge.id), isNull(stepUpChallenges.completedAt)))
      .returning();
    if (!done) throw new StepUpRefused("this sign-in link has already been used");
    return { authTime: iso(proof.authTime) };
  }

  /** The challenge behind a step-up link, for the HTTP layer (throws StepUpRefused when it cannot be used). */
  async stepUpChallenge(challengeId: string): Promise<StepUpChallenge> {
    const now = this.clock.now();
    const [challenge] = await this.#db.select().from(stepUpChallenges).where(eq(stepUpChallenges.id, challengeId));
    if (!challenge) throw new StepUpRefused("this sign-in link is not known");
    if (challenge.completedAt) throw new StepUpRefused("this sign-in link has already been used");
    if (challenge.expiresAt.getTime() <= now.getTime()) throw new StepUpRefused("this sign-in link has expired; click Approve again for a new one");
    return challenge;
  }

  /** Stores the OAuth state, nonce and PKCE verifier of the login started for a challenge. */
  async startStepUpLogin(challengeId: string, login: { state: string; nonce: string; codeVerifier: string }): Promise<void> {
    const updated = await this.#db
      .update(stepUpChallenges)
      .set(login)
      .where(and(eq(stepUpChallenges.id, challengeId), isNull(stepUpChallenges.completedAt), gt(stepUpChallenges.expiresAt, this.clock.now())))
      .returning({ id: stepUpChallenges.id });
    if (updated.length === 0) throw new StepUpRefused("this sign-in link can no longer be used");
  }

  /** The challenge whose login used this OAuth `state`, if any. */
  async stepUpChallengeByState(state: string): Promise<StepUpChallenge | undefined> {
    const [challenge] = await this.#db.select().from(stepUpChallenges).where(eq(stepUpChallenges.state, state));
    return challenge;
  }

  /**
   * Records the approval behind a step-up challenge once the approver signed in again: `person` is
   * who the fresh ID token names, `authTime` its `auth_time`. The challenge is used up in the same
   * transaction as the decision.
   */
  async approveWithStepUp(person: Person, proof: StepUpProof): Promise<DecideResult> {
    const challenge = await this.stepUpChallenge(proof.challengeId);
    return this.decide(person, { requestId: challenge.requestId, verdict: "approve", stepUp: proof });
  }

  /**
   * Issues the grant of an approved access request that has none yet (for instance after a crash
   * between approval and issue). Returns the existing grant if there is one; its secret is not
   * recoverable, so `connection` is only set for a grant issued by this call.
   */
  async issueGrant(requestId: string, by: Person): Promise<{ grant: Grant; connection?: ConnectionLine }> {
    const now = this.clock.now();
    const outcome = await this.#db.transaction(async (tx) => {
      const [request] = await tx.select().from(accessRequests).where(eq(accessRequests.id, requestId)).for("update");
      if (!request) throw new RequestNotFound(requestId);
      if (request.kind !== "access" || request.state !== "approved") {
        throw new RequestNotPending(request.id, request.state, await this.#decidersOf(tx, request));
      }
      if (request.grantId) {
        const [existing] = await tx.select().from(grants).where(eq(grants.id, request.grantId));
        return { grant: existing!, fresh: false as const, request };
      }
      const issued = await this.#issueGrant(tx, request, by, now);
      return { grant: issued.grant, connection: issued.connection, fresh: true as const, request: issued.request };
    });
    if (outcome.fresh) await this.#afterIssue(outcome.grant, outcome.request);
    return outcome.connection ? { grant: outcome.grant, connection: outcome.connection } : { grant: outcome.grant };
  }

  async #issueGrant(
    tx: Executor,
    request: AccessRequest,
    by: Person,
    now: Date,
  ): Promise<{ grant: Grant; connection: ConnectionLine; request: AccessRequest }> {
    const requester = (await tx.select().from(people).where(eq(people.id, request.requesterId)))[0]!;
    const live = await this.#liveGrant(tx, requester.id, request.target, now);
    if (live) throw new GrantAlreadyLive(request.target, live.id);
    const expiresAt = new Date(now.getTime() + request.durationMs);
    const [grant] = await tx
      .insert(grants)
      .values({
        id: newId("grt"),
        requestId: request.id,
        personId: requester.id,
        target: request.target,
        startsAt: now,
        expiresAt,
      })
      .returning();
    const [linked] = await tx
      .update(accessRequests)
      .set({ grantId: grant!.id })
      .where(eq(accessRequests.id, request.id))
      .returning();
    const secret = newSecret();
    const login = this.loginOf(requester);
    const verifier = await makeVerifier(secret);
    await tx.insert(grantCredentials).values({ grantId: grant!.id, login, target: request.target, ...verifier, createdAt: now });
    await appendAudit(tx, now, {
      kind: "grant.issued",
      actorId: by.id,
      target: request.target,
      requestId: request.id,
      grantId: grant!.id,
      data: { personId: requester.id, startsAt: iso(now), expiresAt: iso(expiresAt), login },
    });
    return { grant: grant!, connection: this.connectionLine(request.target, login, secret), request: linked! };
  }

  /** The user name a person's credentials carry at the proxies. */
  loginOf(person: Person): string {
    return person.email ?? person.id;
  }

  connectionLine(target: string, login: string, secret: string): ConnectionLine {
    const policy = this.policy(target);
    if (policy.kind === "postgres") {
      const proxy = this.#config.proxy.postgres;
      return postgresConnectionLine({
        login,
        secret,
        target,
        publicAddress: proxy?.publicAddress ?? proxy?.listen ?? "localhost:15432",
        tls: proxy?.tls !== undefined,
      });
    }
    const proxy = this.#config.proxy.ssh;
    return sshConnectionLine({ login, secret, target, publicAddress: proxy?.publicAddress ?? proxy?.listen ?? "localhost:2222" });
  }

  async #afterIssue(grant: Grant, request: AccessRequest): Promise<void> {
    const approvers = (await this.decisionsOf(request.id)).filter((d) => d.verdict === "approve").map((d) => d.approverName);
    this.events.emit("grant.issued", {
      grant: this.#grantSnapshot(grant),
      request: await this.#requestSnapshot(request),
      approvers,
    });
    await this.#background("schedule grant expiry", () => this.#scheduler.scheduleGrantExpiry(grant.id, grant.expiresAt));
  }

  // ---------------------------------------------------------------- grants

  async getGrant(grantId: string): Promise<Grant> {
    const [row] = await this.#db.select().from(grants).where(eq(grants.id, grantId));
    if (!row) throw new GrantNotFound(grantId);
    return row;
  }

  async #liveGrant(tx: Executor, personId: string, target: string, now: Date): Promise<Grant | undefined> {
    const [row] = await tx
      .select()
      .from(grants)
      .where(and(eq(grants.personId, personId), eq(grants.target, target), eq(grants.state, "active"), gt(grants.expiresAt, now)));
    return row;
  }

  async #activeGrant(tx: Executor, grantId: string, now: Date): Promise<Grant> {
    const [grant] = await tx.select().from(grants).where(eq(grants.id, grantId));
    if (!grant) throw new GrantNotFound(grantId);
    if (grant.state !== "active") throw new GrantNotActive(grant.id, grant.state);
    if (grant.expiresAt.getTime() <= now.getTime()) throw new GrantExpired(grant.id);
    return grant;
  }

  /**
   * More time on a live grant. An approver of the target (other than the holder) extends it at once;
   * the holder's ask becomes an extension request that goes through approval like any other. The
   * grant's whole lifetime stays within the target's `maxDuration`.
   */
  async extend(actor: Person, input: { grantId: string; duration: string | number; reason?: string }): Promise<ExtendResult> {
    const durationMs = this.#duration(input.duration);
    const now = this.clock.now();
    const grant = await this.#activeGrant(this.#db, input.grantId, now);
    const policy = this.policy(grant.target);
    const lifetime = grant.expiresAt.getTime() + durationMs - grant.startsAt.getTime();
    if (lifetime > policy.maxDurationMs) {
      throw new DurationTooLong(policy.name, lifetime, policy.maxDurationMs, "access in total");
    }
    const actorIsApprover = isApprover(policy, await this.#identity(this.#db, actor));
    // A direct extension is an approval without the fresh sign-in that step-up demands.
    if (actorIsApprover && actor.id !== grant.personId && policy.stepUp) {
      throw new NotAllowed(`every approval on ${policy.name} needs a fresh sign-in: the holder asks with extend ${grant.id} <duration>, and approvers approve that request`);
    }
    if (actorIsApprover && actor.id !== grant.personId) {
      const extended = await this.#db.transaction(async (tx) => {
        const [current] = await tx.select().from(grants).where(eq(grants.id, grant.id)).for("update");
        return this.#extendGrant(tx, current!, durationMs, actor, now, null);
      });
      await this.#afterExtend(extended.grant, extended.previousExpiresAt, actor);
      return { kind: "extended", ...extended };
    }
    if (actor.id !== grant.personId) throw new NotAllowed(`only the holder or an approver of ${policy.name} may extend ${grant.id}`);
    const reason = input.reason?.trim() || `extend ${grant.id}`;
    const request = await this.#db.transaction(async (tx) => {
      const [row] = await tx
        .insert(accessRequests)
        .values({
          id: newId("req"),
          kind: "extension",
          target: grant.target,
          requesterId: actor.id,
          durationMs,
          reason,
          approvalsRequired: policy.approvals,
          grantId: grant.id,
          createdAt: now,
          timeoutAt: new Date(Math.min(now.getTime() + policy.requestTtlMs, grant.expiresAt.getTime())),
        })
        .returning();
      await appendAudit(tx, now, {
        kind: "request.created",
        actorId: actor.id,
        target: grant.target,
        requestId: row!.id,
        grantId: grant.id,
        data: { kind: "extension", durationMs, reason },
      });
      return row!;
    });
    this.events.emit("request.created", { request: await this.#requestSnapshot(request) });
    await this.#background("schedule request timeout", () =>
      this.#scheduler.scheduleRequestTimeout(request.id, request.timeoutAt),
    );
    return { kind: "requested", request };
  }

  async #applyExtension(tx: Executor, request: AccessRequest, by: Person, now: Date) {
    const [grant] = await tx.select().from(grants).where(eq(grants.id, request.grantId!)).for("update");
    if (!grant) throw new GrantNotFound(request.grantId!);
    if (grant.state !== "active" || grant.expiresAt.getTime() <= now.getTime()) throw new GrantNotActive(grant.id, grant.state);
    const policy = this.policy(grant.target);
    const lifetime = grant.expiresAt.getTime() + request.durationMs - grant.startsAt.getTime();
    if (lifetime > policy.maxDurationMs) throw new DurationTooLong(policy.name, lifetime, policy.maxDurationMs, "access in total");
    return this.#extendGrant(tx, grant, request.durationMs, by, now, request.id);
  }

  async #extendGrant(tx: Executor, grant: Grant, durationMs: number, by: Person, now: Date, requestId: string | null) {
    if (grant.state !== "active" || grant.expiresAt.getTime() <= now.getTime()) throw new GrantNotActive(grant.id, grant.state);
    const expiresAt = new Date(grant.expiresAt.getTime() + durationMs);
    const [updated] = await tx
      .update(grants)
      .set({ expiresAt })
      .where(and(eq(grants.id, grant.id), eq(grants.state, "active"), eq(grants.expiresAt, grant.expiresAt)))
      .returning();
    if (!updated) throw new GrantNotActive(grant.id, "changed meanwhile");
    await appendAudit(tx, now, {
      kind: "grant.extended",
      actorId: by.id,
      target: grant.target,
      requestId: requestId ?? grant.requestId,
      grantId: grant.id,
      data: { previousExpiresAt: iso(grant.expiresAt), expiresAt: iso(expiresAt), durationMs },
    });
    return { grant: updated, previousExpiresAt: grant.expiresAt };
  }

  async #afterExtend(grant: Grant, previousExpiresAt: Date, by: Person): Promise<void> {
    this.events.emit("grant.extended", {
      grant: this.#grantSnapshot(grant),
      previousExpiresAt: iso(previousExpiresAt),
      byId: by.id,
      byName: by.displayName,
    });
    await this.#background("move grant expiry", () => this.#scheduler.scheduleGrantExpiry(grant.id, grant.expiresAt));
  }

  /** Ends a grant now: its holder or an approver of its target. */
  async revoke(actor: Person, input: { grantId: string; reason?: string | undefined }): Promise<Grant> {
    const now = this.clock.now();
    const [existing] = await this.#db.select().from(grants).where(eq(grants.id, input.grantId));
    if (!existing) throw new GrantNotFound(input.grantId);
    if (actor.id !== existing.personId && !(await this.isApprover(existing.target, actor))) {
      throw new NotAllowed(`only the holder or an approver of ${existing.target} may revoke ${existing.id}`);
    }
    const reason = input.reason?.trim() || null;
    const grant = await this.#endGrant(existing.id, "revoked", actor.id, now, { reason }, eq(grants.state, "active"));
    if (!grant) throw new GrantNotActive(existing.id, (await this.getGrant(existing.id)).state);
    this.events.emit("grant.revoked", { grant: this.#grantSnapshot(grant), byId: actor.id, byName: actor.displayName, reason });
    await this.#background("cancel grant expiry", () => this.#scheduler.cancelGrantExpiry(grant.id));
    return grant;
  }

  /**
   * Ends a grant whose time is up (called by the expiry job and the reconciler). Does nothing to a
   * grant that was extended meanwhile (`not-due`) or has already ended.
   */
  async expire(grantId: string): Promise<ExpireOutcome> {
    const now = this.clock.now();
    const grant = await this.#endGrant(grantId, "expired", null, now, {}, and(eq(grants.state, "active"), lte(grants.expiresAt, now))!);
    if (grant) {
      this.events.emit("grant.expired", { grant: this.#grantSnapshot(grant) });
      return { kind: "expired", grant };
    }
    const [current] = await this.#db.select().from(grants).where(eq(grants.id, grantId));
    if (!current) throw new GrantNotFound(grantId);
    if (current.state === "active") return { kind: "not-due", expiresAt: current.expiresAt };
    return { kind: "ended" };
  }

  async #endGrant(
    grantId: string,
    state: "expired" | "revoked",
    actorId: string | null,
    now: Date,
    data: Record<string, unknown>,
    condition: SQL,
  ): Promise<Grant | undefined> {
    return this.#db.transaction(async (tx) => {
      const [grant] = await tx
        .update(grants)
        .set({ state, endedAt: now, endedBy: actorId })
        .where(and(eq(grants.id, grantId), condition))
        .returning();
      if (!grant) return undefined;
      // The credential dies with the grant: nothing is left that could be checked against.
      await tx.delete(grantCredentials).where(eq(grantCredentials.grantId, grantId));
      await appendAudit(tx, now, {
        kind: `grant.${state}`,
        actorId,
        target: grant.target,
        requestId: grant.requestId,
        grantId: grant.id,
        data: { ...data, expiresAt: iso(grant.expiresAt) },
      });
      return grant;
    });
  }

  /** Ends a pending request that got no decision within `requestTtl`. */
  async expireRequest(requestId: string): Promise<AccessRequest | undefined> {
    const now = this.clock.now();
    const request = await this.#db.transaction(async (tx) => {
      const [row] = await tx
        .update(accessRequests)
        .set({ state: "expired", decidedAt: now })
        .where(and(eq(accessRequests.id, requestId), eq(accessRequests.state, "pending"), lte(accessRequests.timeoutAt, now)))
        .returning();
      if (!row) return undefined;
      await appendAudit(tx, now, {
        kind: "request.expired",
        target: row.target,
        requestId: row.id,
        grantId: row.grantId,
        data: { timeoutAt: iso(row.timeoutAt) },
      });
      return row;
    });
    if (request) this.events.emit("request.expired", { request: await this.#requestSnapshot(request) });
    return request;
  }

  // ---------------------------------------------------------------- queries

  /** `list`: my pending requests and live grants. */
  async list(person: Person): Promise<{ requests: AccessRequest[]; grants: Grant[] }> {
    const now = this.clock.now();
    const [requests, live] = await Promise.all([
      this.#db
        .select()
        .from(accessRequests)
        .where(and(eq(accessRequests.requesterId, person.id), eq(accessRequests.state, "pending"), gt(accessRequests.timeoutAt, now)))
        .orderBy(asc(accessRequests.createdAt)),
      this.#db
        .select()
        .from(grants)
        .where(and(eq(grants.personId, person.id), eq(grants.state, "active"), gt(grants.expiresAt, now)))
        .orderBy(asc(grants.expiresAt)),
    ]);
    return { requests, grants: live };
  }

  /** `whocan`: a dry run of policy for a target. */
  async whocan(target: string): Promise<{ policy: TargetPolicy; approvers: { entry: string; name: string | null }[] }> {
    const policy = this.policy(target);
    const emails = policy.approvers.filter((a) => a.includes("@")).map((a) => a.toLowerCase());
    const ids = policy.approvers.filter((a) => !a.includes("@"));
    const known = new Map<string, string>();
    if (emails.length > 0) {
      for (const p of await this.#db.select().from(people).where(inArray(people.email, emails))) known.set(p.email!, p.displayName);
    }
    if (ids.length > 0) {
      const rows = await this.#db
        .select({ externalId: chatIdentities.externalId, name: people.displayName })
        .from(chatIdentities)
        .innerJoin(people, eq(people.id, chatIdentities.personId))
        .where(inArray(chatIdentities.externalId, ids));
      for (const r of rows) known.set(r.externalId, r.name);
    }
    return {
      policy,
      approvers: policy.approvers.map((entry) => ({ entry, name: known.get(entry.toLowerCase()) ?? known.get(entry) ?? null })),
    };
  }

  /** Grants still marked active, for the reconciler (including overdue ones). */
  async activeGrants(): Promise<Grant[]> {
    return this.#db.select().from(grants).where(eq(grants.state, "active"));
  }

  async pendingRequests(): Promise<AccessRequest[]> {
    return this.#db.select().from(accessRequests).where(eq(accessRequests.state, "pending"));
  }

  /**
   * Checks a grant credential as presented at a proxy: the login's live grant on that target and a
   * secret matching its verifier. Any failure is one of two errors, so the answer reveals no more
   * than "no grant" or "wrong credential".
   */
  async checkCredential(input: { login?: string | undefined; target: string; secret: string }): Promise<Grant> {
    const now = this.clock.now();
    // Without a login (the SSH proxy, where the user name is the target), every live credential on
    // the target is tried: there is at most one live grant per person and target.
    const rows = await this.#db
      .select({ grant: grants, credential: grantCredentials })
      .from(grantCredentials)
      .innerJoin(grants, eq(grants.id, grantCredentials.grantId))
      .where(
        and(
          input.login === undefined ? undefined : eq(grantCredentials.login, input.login),
          eq(grantCredentials.target, input.target),
          eq(grants.state, "active"),
        ),
      );
    const live = rows.filter((r) => r.grant.expiresAt.getTime() > now.getTime());
    if (live.length === 0) throw new NoLiveGrant(input.target);
    for (const { grant, credential } of live) {
      if (await verifySecret(input.secret, credential)) return grant;
    }
    throw new InvalidCredential();
  }

  // ---------------------------------------------------------------- helpers

  async #decidersOf(tx: Executor, request: AccessRequest): Promise<string[]> {
    const verdict = request.state === "denied" ? "deny" : "approve";
    const rows = await tx
      .select({ name: people.displayName })
      .from(decisions)
      .innerJoin(people, eq(people.id, decisions.approverId))
      .where(and(eq(decisions.requestId, request.id), eq(decisions.verdict, verdict)))
      .orderBy(asc(decisions.createdAt));
    return rows.map((r) => r.name);
  }

  async #requestSnapshot(request: AccessRequest): Promise<RequestSnapshot> {
    const requester = await this.person(request.requesterId);
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

  #grantSnapshot(grant: Grant): GrantSnapshot {
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

  #decisionSnapshot(decision: Decision, approver: Person): DecisionSnapshot {
    return {
      id: decision.id,
      approverId: approver.id,
      approverName: approver.displayName,
      verdict: decision.verdict,
      reason: decision.reason,
      at: iso(decision.createdAt),
    };
  }

  async #background(what: string, run: () => Promise<void>): Promise<void> {
    try {
      await run();
    } catch (error) {
      this.#onBackgroundError(error, what);
    }
  }
}

export { BrokerError };
