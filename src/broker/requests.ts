import { and, asc, eq, gt, isNotNull, isNull, lte, sql } from "drizzle-orm";
import { parseDuration } from "../config/duration.js";
import type { Executor } from "../db/client.js";
import { accessRequests, decisions, people } from "../db/schema.js";
import { appendAudit } from "./audit.js";
import type { BrokerContext } from "./context.js";
import {
  AlreadyDecided,
  DurationTooLong,
  GrantAlreadyLive,
  InvalidDuration,
  InvalidStartTime,
  NotAllowed,
  NotAnApprover,
  ReasonRejected,
  ReasonRequired,
  RequestNotFound,
  RequestNotPending,
  SelfApproval,
  StepUpRefused,
  StepUpRequired,
  AutoApprovalSignInRequired,
} from "./errors.js";
import type { GrantsService } from "./grants.js";
import { newId } from "./ids.js";
import type { PeopleService } from "./people.js";
import { isApprover } from "./policy.js";
import { approveByRuleIn, evaluateRules, factLines, type AutoApproved, type RulesOutcome } from "./auto-approval.js";
import { decisionSnapshot, iso, requestSnapshot } from "./snapshots.js";
import type { ConnectionLine } from "./credentials.js";
import type { RequestSnapshot } from "./events.js";
import type { StepUpService } from "./step-up.js";
import { STEP_UP_LINK_TTL_MS, type AccessRequest, type DecideResult, type Decision, type Grant, type Person, type StepUpChallenge, type StepUpProof } from "./types.js";

const BREAK_GLASS_NOT_DECIDED = "a break-glass request is not approved by anyone: it is issued on its user's own fresh sign-in";

export function parseDurationMs(text: string | number): number {
  const ms = typeof text === "number" ? text : parseDuration(text);
  if (ms === undefined || ms <= 0) throw new InvalidDuration(String(text));
  return ms;
}

/** An access request about to be written: what every way of asking (plain, break-glass) records. */
export interface NewRequest {
  target: string;
  requester: Person;
  durationMs: number;
  reason: string;
  approvalsRequired: number;
  origin: string;
  now: Date;
  timeoutAt: Date;
  startsAt?: Date | null;
  once: boolean;
  breakGlass?: boolean;
  /** Issued at once (break-glass): approved as it is written, decided now. */
  approved?: boolean;
  /** More facts for the `request.created` audit event. */
  audit?: Record<string, unknown>;
}

/** Writes an access request and its `request.created` audit event, in the caller's transaction. */
export async function insertRequest(tx: Executor, input: NewRequest): Promise<AccessRequest> {
  const { now } = input;
  const [row] = await tx
    .insert(accessRequests)
    .values({
      id: newId("req"),
      kind: "access",
      target: input.target,
      requesterId: input.requester.id,
      durationMs: input.durationMs,
      reason: input.reason,
      approvalsRequired: input.approvalsRequired,
      origin: input.origin,
      createdAt: now,
      timeoutAt: input.timeoutAt,
      startsAt: input.startsAt ?? null,
      once: input.once,
      ...(input.breakGlass ? { breakGlass: true } : {}),
      ...(input.approved ? { state: "approved" as const, decidedAt: now } : {}),
    })
    .returning();
  await appendAudit(tx, now, {
    kind: "request.created",
    actorId: input.requester.id,
    target: input.target,
    requestId: row!.id,
    data: {
      durationMs: input.durationMs,
      reason: input.reason,
      approvalsRequired: input.approvalsRequired,
      origin: row!.origin,
      ...(input.startsAt ? { startsAt: iso(input.startsAt) } : {}),
      ...(input.once ? { once: true } : {}),
      ...(input.breakGlass ? { breakGlass: true } : {}),
      ...input.audit,
    },
  });
  return row!;
}

/** Who a decision names: its approver, or `rule <name>` for an auto-approval rule's. */
const deciderName = sql<string>`coalesce(${people.displayName}, 'rule ' || ${decisions.rule}, 'nobody')`;

/** Every decision on a request with its approver's name (`rule …` for a rule's), oldest first. */
export async function decisionsOf(db: Executor, requestId: string): Promise<(Decision & { approverName: string })[]> {
  const rows = await db
    .select({ decision: decisions, approverName: deciderName })
    .from(decisions)
    .leftJoin(people, eq(people.id, decisions.approverId))
    .where(eq(decisions.requestId, requestId))
    .orderBy(asc(decisions.createdAt));
  return rows.map((r) => ({ ...r.decision, approverName: r.approverName }));
}

/** Who decided a request that is no longer pending (for "already approved by …"). */
export async function decidersOf(tx: Executor, request: AccessRequest): Promise<string[]> {
  const verdict = request.state === "denied" ? "deny" : "approve";
  const rows = await tx
    .select({ name: deciderName })
    .from(decisions)
    .leftJoin(people, eq(people.id, decisions.approverId))
    .where(and(eq(decisions.requestId, request.id), eq(decisions.verdict, verdict)))
    .orderBy(asc(decisions.createdAt));
  return rows.map((r) => r.name);
}

/** Access requests and their decisions: asked, approved or denied by a quorum, timed out. */
export class RequestsService {
  constructor(
    private readonly ctx: BrokerContext,
    private readonly people: PeopleService,
    private readonly stepUp: StepUpService,
    private readonly grants: GrantsService,
  ) {}

  async request(
    requester: Person,
    input: { target: string; duration: string | number; reason: string; origin?: string; startsAt?: Date | undefined; once?: boolean | undefined },
  ): Promise<AccessRequest & { autoApproved?: AutoApproved }> {
    const policy = this.ctx.policy(input.target);
    await this.people.checkRequester(requester, policy.name, { duration: String(input.duration), reason: input.reason, origin: input.origin ?? "api" });
    const durationMs = parseDurationMs(input.duration);
    if (durationMs > policy.maxDurationMs) throw new DurationTooLong(policy.name, durationMs, policy.maxDurationMs);
    const reason = input.reason.trim();
    if (reason === "") throw new ReasonRequired();
    if (policy.reasonPattern && !policy.reasonPattern.test(reason)) {
      throw new ReasonRejected(policy.name, policy.reasonPattern.source);
    }
    const now = this.ctx.clock.now();
    const startsAt = input.startsAt;
    if (startsAt && startsAt.getTime() <= now.getTime()) {
      throw new InvalidStartTime(`the start time ${startsAt.toISOString()} has already passed; give a time ahead (from 22:00, or an ISO date-time like 2026-12-03T22:00)`);
    }
    // Auto-approval rules, after every requester check: asked now (an on-call provider over HTTP,
    // outside any transaction). A scheduled request is not for now: rules never approve one.
    const rules: RulesOutcome | undefined =
      policy.autoApprove.length > 0 && !startsAt
        ? await evaluateRules(policy.autoApprove, { who: await this.people.identity(requester), durationMs, now, onCall: this.ctx.onCall })
        : undefined;
    const ended: Grant[] = [];
    let auto: { grant: Grant; connection: ConnectionLine; request: AccessRequest } | undefined;
    let challenge: StepUpChallenge | undefined;
    // A scheduled request waits for approval until its window ends at the latest.
    const timeoutMs = Math.min(now.getTime() + policy.requestTtlMs, startsAt ? startsAt.getTime() + durationMs : Infinity);
    const request = await this.ctx.db.transaction(async (tx) => {
      // A grant live now says nothing about a later window; its issue checks again then.
      const live = startsAt ? undefined : await this.grants.live(tx, requester.id, policy.name, now);
      if (live) throw new GrantAlreadyLive(policy.name, live.id);
      const row = await insertRequest(tx, {
        target: policy.name,
        requester,
        durationMs,
        reason,
        approvalsRequired: policy.approvals,
        origin: input.origin ?? "api",
        now,
        timeoutAt: new Date(timeoutMs),
        startsAt: startsAt ?? null,
        once: input.once === true,
      });
      if (rules?.applied && !policy.stepUp) {
        auto = await approveByRuleIn(tx, this.grants, row!, rules.applied, now, ended);
        return auto.request;
      }
      if (rules?.applied) {
        // A stepUp target: the rule's approval waits for the requester's own fresh sign-in.
        challenge = await this.stepUp.open(tx, { requestId: row!.id, heldId: null, target: row!.target, grantId: null }, requester, now);
        await appendAudit(tx, now, {
          kind: "request.auto_approval_awaiting_sign_in",
          actorId: requester.id,
          target: policy.name,
          requestId: row!.id,
          data: { rule: rules.applied.rule, facts: { ...rules.applied }, refused: rules.refused },
        });
      } else if (rules) {
        await appendAudit(tx, now, { kind: "request.auto_approval_refused", actorId: requester.id, target: policy.name, requestId: row!.id, data: { refused: rules.refused } });
      }
      return row!;
    });
    const snapshot = await requestSnapshot(this.ctx.db, request);
    this.ctx.events.emit("request.created", { request: snapshot });
    if (rules) this.#announceRules(snapshot, rules, auto !== undefined ? "approved" : challenge ? "awaiting-sign-in" : "not-applied");
    if (auto) {
      this.grants.afterOverdue(ended);
      await this.grants.afterIssue(auto.grant, auto.request);
      return { ...auto.request, autoApproved: { rule: rules!.applied!.rule, facts: factLines(rules!.applied!), grant: auto.grant, connection: auto.connection } };
    }
    // Asking again right after a grant's end is when a lost expiry job shows: the old thread is
    // told now, not when the approval comes.
    await this.ctx.background("expire an overdue grant", async () => {
      await this.grants.liveOrExpire(requester.id, policy.name, "request");
    });
    await this.ctx.background("schedule request timeout", () => this.ctx.scheduler.scheduleRequestTimeout(request.id, request.timeoutAt));
    if (challenge) {
      throw new AutoApprovalSignInRequired(request.id, rules!.applied!.rule, policy.name, challenge.id, this.stepUp.link(challenge.id), challenge.expiresAt, STEP_UP_LINK_TTL_MS);
    }
    return request;
  }

  /** Posts in the thread what the rules decided: the rule and its facts, or why a provider kept a rule from applying. */
  #announceRules(request: RequestSnapshot, rules: RulesOutcome, outcome: "approved" | "awaiting-sign-in" | "not-applied"): void {
    const notes = rules.refused.filter((r) => r.provider).map((r) => `rule ${r.rule}: ${r.why}`);
    // Nothing to say when no rule applied and no provider failed: the request simply waits.
    if (outcome === "not-applied" && notes.length === 0) return;
    this.ctx.events.emit("request.auto_approval", {
      request,
      outcome,
      rule: rules.applied?.rule ?? null,
      facts: rules.applied ? factLines(rules.applied) : [],
      notes,
    });
  }

  /**
   * Completes an auto-approval on a `stepUp` target once the requester signed in again: the rules
   * are asked again now (they must still hold), and the decision, the challenge's use and the grant
   * are one transaction.
   */
  async completeRuleSignIn(person: Person, proof: StepUpProof): Promise<{ request: AccessRequest; grant: Grant; connection: ConnectionLine; rule: string }> {
    const challenge = await this.stepUp.challenge(proof.challengeId);
    const pending = await this.get(challenge.requestId);
    if (person.id !== pending.requesterId) throw new StepUpRefused("the sign-in was by someone else than the requester; nothing was approved");
    const policy = this.ctx.policy(pending.target);
    const now = this.ctx.clock.now();
    const rules = await evaluateRules(policy.autoApprove, { who: await this.people.identity(person), durationMs: pending.durationMs, now, onCall: this.ctx.onCall });
    if (!rules.applied) {
      const why = rules.refused.map((r) => `rule ${r.rule}: ${r.why}`).join("; ");
      await this.ctx.db.transaction((tx) =>
        appendAudit(tx, now, { kind: "request.auto_approval_refused", actorId: person.id, target: pending.target, requestId: pending.id, data: { refused: rules.refused, afterSignIn: true } }),
      );
      throw new StepUpRefused(`no auto-approval rule holds any more (${why}); the request waits for an approver`);
    }
    const ended: Grant[] = [];
    const issued = await this.ctx.db.transaction(async (tx) => {
      const [request] = await tx.select().from(accessRequests).where(eq(accessRequests.id, pending.id)).for("update");
      if (!request || request.state !== "pending" || request.timeoutAt.getTime() <= now.getTime()) {
        throw new StepUpRefused("this request is no longer waiting (an approver decided it, or it expired); nothing was recorded");
      }
      const stepUp = await this.stepUp.complete(tx, proof, { requestId: request.id, heldId: null }, person, now);
      return approveByRuleIn(tx, this.grants, request, rules.applied!, now, ended, { ...stepUp, personId: person.id });
    });
    const snapshot = await requestSnapshot(this.ctx.db, issued.request);
    this.#announceRules(snapshot, rules, "approved");
    this.grants.afterOverdue(ended);
    await this.ctx.background("cancel request timeout", () => this.ctx.scheduler.cancelRequestTimeout(issued.request.id));
    await this.grants.afterIssue(issued.grant, issued.request);
    return { request: issued.request, grant: issued.grant, connection: issued.connection, rule: rules.applied.rule };
  }

  async get(requestId: string): Promise<AccessRequest> {
    const [row] = await this.ctx.db.select().from(accessRequests).where(eq(accessRequests.id, requestId));
    if (!row) throw new RequestNotFound(requestId);
    return row;
  }

  /**
   * The checks `decide` makes, without deciding: a chat adapter asks before it shows a Deny form
   * (modal, card) to someone who could not submit it. Returns the pending request.
   */
  async checkCanDecide(person: Person, requestId: string): Promise<AccessRequest> {
    const request = await this.get(requestId);
    if (request.state !== "pending" || request.timeoutAt.getTime() <= this.ctx.clock.now().getTime()) {
      const state = request.state === "pending" ? "expired" : request.state;
      throw new RequestNotPending(request.id, state, state === "expired" ? [] : await decidersOf(this.ctx.db, request));
    }
    if (request.breakGlass) throw new NotAllowed(BREAK_GLASS_NOT_DECIDED);
    if (request.requesterId === person.id) throw new SelfApproval();
    if (!(await this.people.isApprover(request.target, person))) throw new NotAnApprover(request.target);
    return request;
  }

  async decisionsOf(requestId: string): Promise<(Decision & { approverName: string })[]> {
    return decisionsOf(this.ctx.db, requestId);
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
    const now = this.ctx.clock.now();
    // Grants found overdue (and expired) while issuing the next one, announced after the commit.
    const ended: Grant[] = [];
    const outcome = await this.ctx.db.transaction(async (tx): Promise<DecideResult | { challenge: StepUpChallenge; target: string }> => {
      const [request] = await tx.select().from(accessRequests).where(eq(accessRequests.id, input.requestId)).for("update");
      if (!request) throw new RequestNotFound(input.requestId);
      if (request.state !== "pending") {
        throw new RequestNotPending(request.id, request.state, await decidersOf(tx, request));
      }
      if (request.timeoutAt.getTime() <= now.getTime()) throw new RequestNotPending(request.id, "expired", []);
      const policy = this.ctx.policy(request.target);
      // A break-glass waiting for its user's sign-in is nobody else's to approve (a forged click).
      if (request.breakGlass) throw new NotAllowed(BREAK_GLASS_NOT_DECIDED);
      if (request.requesterId === approver.id) throw new SelfApproval();
      if (!isApprover(policy, await this.people.identity(approver, tx))) throw new NotAnApprover(policy.name);
      const [previous] = await tx
        .select()
        .from(decisions)
        .where(and(eq(decisions.requestId, request.id), eq(decisions.approverId, approver.id)));
      if (previous) throw new AlreadyDecided(request.id, previous.verdict);
      // Step-up: the approval waits for a fresh OIDC login (everything above is checked first).
      let stepUp: { authTime: string } | undefined;
      if (input.verdict === "approve" && policy.stepUp) {
        const subject = { requestId: request.id, heldId: null, target: request.target, grantId: request.grantId };
        if (!input.stepUp) return { challenge: await this.stepUp.open(tx, subject, approver, now), target: request.target };
        stepUp = await this.stepUp.complete(tx, input.stepUp, subject, approver, now);
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
      if (finalState === "approved" && current.kind === "access" && current.startsAt && current.startsAt.getTime() > now.getTime()) {
        // Approved now, issued at its start by the grant-start job.
        await appendAudit(tx, now, {
          kind: "grant.scheduled",
          actorId: approver.id,
          target: request.target,
          requestId: request.id,
          data: { startsAt: iso(current.startsAt), expiresAt: iso(new Date(current.startsAt.getTime() + current.durationMs)) },
        });
        result.scheduled = current.startsAt;
      } else if (finalState === "approved" && current.kind === "access") {
        const issued = await this.grants.issueIn(tx, current, approver, now, ended);
        result.grant = issued.grant;
        result.connection = issued.connection;
        result.request = issued.request;
      }
      if (finalState === "approved" && current.kind === "extension") {
        result.extended = await this.grants.applyExtension(tx, current, approver, now);
      }
      return result;
    });
    if ("challenge" in outcome) {
      const { challenge, target } = outcome;
      throw new StepUpRequired(target, challenge.id, this.stepUp.link(challenge.id), challenge.expiresAt, STEP_UP_LINK_TTL_MS);
    }

    this.grants.afterOverdue(ended);
    const snapshot = await requestSnapshot(this.ctx.db, outcome.request);
    const decided = decisionSnapshot(outcome.decision, approver);
    this.ctx.events.emit("request.decided", { request: snapshot, decision: decided, approvals: outcome.approvals, required: outcome.required });
    if (outcome.request.state === "denied") this.ctx.events.emit("request.denied", { request: snapshot, decision: decided });
    if (outcome.request.state !== "pending") {
      await this.ctx.background("cancel request timeout", () => this.ctx.scheduler.cancelRequestTimeout(outcome.request.id));
    }
    if (outcome.grant) await this.grants.afterIssue(outcome.grant, outcome.request);
    if (outcome.scheduled) {
      const startsAt = outcome.scheduled;
      this.ctx.events.emit("request.scheduled", { request: snapshot, startsAt: iso(startsAt) });
      await this.ctx.background("schedule grant start", () => this.ctx.scheduler.scheduleGrantStart(outcome.request.id, startsAt));
    }
    if (outcome.extended) await this.grants.afterExtend(outcome.extended.grant, outcome.extended.previousExpiresAt, approver);
    return outcome;
  }

  /**
   * Records the approval behind a step-up challenge once the approver signed in again: `person` is
   * who the fresh ID token names, `authTime` its `auth_time`. The challenge is used up in the same
   * transaction as the decision.
   */
  async approveWithStepUp(person: Person, proof: StepUpProof): Promise<DecideResult> {
    const challenge = await this.stepUp.challenge(proof.challengeId);
    // The link of a held statement's approval never approves the request in whose thread it is.
    if (challenge.heldId) throw new StepUpRefused("this sign-in link is not for this request");
    return this.decide(person, { requestId: challenge.requestId, verdict: "approve", stepUp: proof });
  }

  /** Ends a pending request that got no decision within `requestTtl`. */
  async expire(requestId: string): Promise<AccessRequest | undefined> {
    const now = this.ctx.clock.now();
    const request = await this.ctx.db.transaction(async (tx) => {
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
    // A break-glass that waited for a sign-in in vain was never posted: nothing to redraw.
    if (request && !request.breakGlass) this.ctx.events.emit("request.expired", { request: await requestSnapshot(this.ctx.db, request) });
    return request;
  }

  async pending(): Promise<AccessRequest[]> {
    return this.ctx.db.select().from(accessRequests).where(eq(accessRequests.state, "pending"));
  }

  /** Approved scheduled requests whose grant is not issued yet (the person's, or everyone's). */
  async scheduled(person?: Person): Promise<AccessRequest[]> {
    return this.ctx.db
      .select()
      .from(accessRequests)
      .where(
        and(
          eq(accessRequests.state, "approved"),
          eq(accessRequests.kind, "access"),
          isNull(accessRequests.grantId),
          isNotNull(accessRequests.startsAt),
          person ? eq(accessRequests.requesterId, person.id) : undefined,
        ),
      )
      .orderBy(asc(accessRequests.startsAt));
  }

  /** The person's requests still waiting for a decision, for `list`. */
  async pendingOf(person: Person): Promise<AccessRequest[]> {
    return this.ctx.db
      .select()
      .from(accessRequests)
      .where(and(eq(accessRequests.requesterId, person.id), eq(accessRequests.state, "pending"), gt(accessRequests.timeoutAt, this.ctx.clock.now())))
      .orderBy(asc(accessRequests.createdAt));
  }
}
