import { and, asc, eq, lt } from "drizzle-orm";
import type { Executor } from "../db/client.js";
import { accessRequests, breakGlassReviews, people } from "../db/schema.js";
import { appendAudit } from "./audit.js";
import type { BrokerContext } from "./context.js";
import type { ConnectionLine } from "./credentials.js";
import {
  BreakGlassNotAllowed,
  BreakGlassSignInRequired,
  StepUpRefused,
  DurationTooLong,
  GrantAlreadyLive,
  NotAllowed,
  NotAnApprover,
  ReasonRejected,
  ReasonRequired,
  ReviewClosed,
  ReviewNotFound,
} from "./errors.js";
import type { BreakGlassSnapshot } from "./events.js";
import type { GrantsService } from "./grants.js";
import { newId } from "./ids.js";
import type { PeopleService } from "./people.js";
import { isApprover, mayBreakGlass } from "./policy.js";
import { insertRequest, parseDurationMs } from "./requests.js";
import { iso, requestSnapshot } from "./snapshots.js";
import type { StepUpService } from "./step-up.js";
import { STEP_UP_LINK_TTL_MS, type AccessRequest, type Grant, type Person, type StepUpProof } from "./types.js";

export type BreakGlassReview = typeof breakGlassReviews.$inferSelect;

/** Open reviews are reminded this often, counted from the break-glass use. */
export const REVIEW_REMINDER_EVERY_MS = 24 * 3600_000;

/** When the review reminder after `now` is due: the next whole day since the use. */
export function nextReviewReminder(createdAt: Date, now: Date): Date {
  const days = Math.floor((now.getTime() - createdAt.getTime()) / REVIEW_REMINDER_EVERY_MS) + 1;
  return new Date(createdAt.getTime() + Math.max(1, days) * REVIEW_REMINDER_EVERY_MS);
}

/**
 * Break-glass: a person the target's `breakGlass.allow` names takes the target at once, without
 * approval. The grant is issued in the same transaction as the request (recorded as approved by
 * nobody, `break_glass` set) and an open review; the chat makes it loud, and an approver of the
 * target other than the holder acknowledges the use or flags it as misuse afterwards.
 */
export class BreakGlassService {
  constructor(
    private readonly ctx: BrokerContext,
    private readonly people: PeopleService,
    private readonly grants: GrantsService,
    private readonly stepUp: StepUpService,
  ) {}

  async use(
    requester: Person,
    input: { target: string; duration: string | number; reason: string; origin?: string | undefined; once?: boolean | undefined },
  ): Promise<{ request: AccessRequest; grant: Grant; connection: ConnectionLine; review: BreakGlassReview }> {
    const policy = this.ctx.policy(input.target);
    const now = this.ctx.clock.now();
    const identity = await this.people.identity(requester);
    if (!mayBreakGlass(policy, identity)) {
      await this.ctx.db.transaction(async (tx) => {
        await appendAudit(tx, now, {
          kind: "break_glass.refused",
          actorId: requester.id,
          target: policy.name,
          data: { reason: input.reason.trim(), configured: policy.breakGlass !== undefined },
        });
      });
      throw new BreakGlassNotAllowed(policy.name, policy.breakGlass !== undefined);
    }
    const durationMs = parseDurationMs(input.duration);
    if (durationMs > policy.maxDurationMs) throw new DurationTooLong(policy.name, durationMs, policy.maxDurationMs);
    const reason = input.reason.trim();
    if (reason === "") throw new ReasonRequired();
    if (policy.reasonPattern && !policy.reasonPattern.test(reason)) throw new ReasonRejected(policy.name, policy.reasonPattern.source);
    const common = {
      target: policy.name,
      requester,
      durationMs,
      reason,
      approvalsRequired: policy.approvals,
      origin: input.origin ?? "api",
      now,
      once: input.once === true,
      breakGlass: true,
    };

    // Step-up targets: every grant there rests on a fresh sign-in, and break-glass does not skip it.
    // The request waits (unseen: nothing is posted) for the requester's own sign-in, then is issued.
    if (policy.stepUp) {
      const challenge = await this.ctx.db.transaction(async (tx) => {
        const live = await this.grants.live(tx, requester.id, policy.name, now);
        if (live) throw new GrantAlreadyLive(policy.name, live.id);
        const row = await insertRequest(tx, {
          ...common,
          timeoutAt: new Date(now.getTime() + STEP_UP_LINK_TTL_MS),
          audit: { awaitingSignIn: true },
        });
        return this.stepUp.open(tx, { requestId: row.id, heldId: null, target: row.target, grantId: null }, requester, now);
      });
      throw new BreakGlassSignInRequired(policy.name, challenge.id, this.stepUp.link(challenge.id), challenge.expiresAt, STEP_UP_LINK_TTL_MS);
    }

    const ended: Grant[] = [];
    const outcome = await this.ctx.db.transaction(async (tx) => {
      const live = await this.grants.live(tx, requester.id, policy.name, now);
      if (live) throw new GrantAlreadyLive(policy.name, live.id);
      const row = await insertRequest(tx, { ...common, timeoutAt: now, approved: true });
      return this.#issueIn(tx, row, requester, now, ended);
    });
    await this.#afterIssue(outcome, ended, now);
    return outcome;
  }

  /**
   * Completes a break-glass on a `stepUp` target after the requester's fresh sign-in: `person` is who
   * the ID token names (the requester, or nothing is recorded), and the challenge is used up in the
   * transaction that issues the grant.
   */
  async completeSignIn(person: Person, proof: StepUpProof): Promise<{ request: AccessRequest; grant: Grant; connection: ConnectionLine; review: BreakGlassReview }> {
    const challenge = await this.stepUp.challenge(proof.challengeId);
    const now = this.ctx.clock.now();
    const ended: Grant[] = [];
    const outcome = await this.ctx.db.transaction(async (tx) => {
      const [request] = await tx.select().from(accessRequests).where(eq(accessRequests.id, challenge.requestId)).for("update");
      if (!request || !request.breakGlass) throw new StepUpRefused("this sign-in link is not for a break-glass request");
      if (request.state !== "pending" || request.timeoutAt.getTime() <= now.getTime()) {
        throw new StepUpRefused("this break-glass request is no longer waiting for a sign-in; break the glass again for a new link");
      }
      if (person.id !== request.requesterId) throw new StepUpRefused("the sign-in was by someone else than the person who broke the glass; nothing was issued");
      const policy = this.ctx.policy(request.target);
      // The allow list as it stands now, for the person who signed in.
      if (!mayBreakGlass(policy, await this.people.identity(person, tx))) throw new BreakGlassNotAllowed(policy.name, policy.breakGlass !== undefined);
      const stepUp = await this.stepUp.complete(tx, proof, { requestId: request.id, heldId: null }, person, now);
      const [approved] = await tx
        .update(accessRequests)
        .set({ state: "approved", decidedAt: now })
        .where(and(eq(accessRequests.id, request.id), eq(accessRequests.state, "pending")))
        .returning();
      if (!approved) throw new StepUpRefused("this break-glass request is no longer waiting for a sign-in");
      return this.#issueIn(tx, approved, person, now, ended, stepUp);
    });
    await this.#afterIssue(outcome, ended, now);
    return outcome;
  }

  async #issueIn(tx: Executor, request: AccessRequest, requester: Person, now: Date, ended: Grant[], stepUp?: { authTime: string }) {
    const issued = await this.grants.issueIn(tx, request, requester, now, ended);
    const [review] = await tx
      .insert(breakGlassReviews)
      .values({ id: newId("bgr"), requestId: request.id, grantId: issued.grant.id, target: request.target, requesterId: requester.id, createdAt: now })
      .returning();
    await appendAudit(tx, now, {
      kind: "break_glass.used",
      actorId: requester.id,
      target: request.target,
      requestId: request.id,
      grantId: issued.grant.id,
      data: {
        reviewId: review!.id,
        reason: request.reason,
        durationMs: request.durationMs,
        expiresAt: iso(issued.grant.expiresAt),
        alertChannel: this.ctx.policy(request.target).breakGlass?.alertChannel ?? null,
        ...(stepUp ? { stepUp } : {}),
      },
    });
    return { ...issued, review: review! };
  }

  async #afterIssue(outcome: { request: AccessRequest; grant: Grant; review: BreakGlassReview }, ended: Grant[], now: Date): Promise<void> {
    this.grants.afterOverdue(ended);
    this.ctx.events.emit("request.created", { request: await requestSnapshot(this.ctx.db, outcome.request) });
    this.ctx.events.emit("break_glass.used", { review: await this.snapshot(outcome.review) });
    await this.grants.afterIssue(outcome.grant, outcome.request);
    await this.ctx.background("schedule break-glass review reminder", () =>
      this.ctx.scheduler.scheduleReviewReminder(outcome.review.id, nextReviewReminder(outcome.review.createdAt, now)),
    );
  }

  async get(reviewId: string): Promise<BreakGlassReview> {
    const [row] = await this.ctx.db.select().from(breakGlassReviews).where(eq(breakGlassReviews.id, reviewId));
    if (!row) throw new ReviewNotFound(reviewId);
    return row;
  }

  /** The review of a break-glass request, if it is one. */
  async ofRequest(requestId: string): Promise<BreakGlassReview | undefined> {
    const [row] = await this.ctx.db.select().from(breakGlassReviews).where(eq(breakGlassReviews.requestId, requestId));
    return row;
  }

  /**
   * Acknowledge or flag a break-glass use: an approver of the target, never the person who used it,
   * once (a conditional UPDATE on the open review).
   */
  async review(reviewer: Person, input: { reviewId: string; verdict: "acknowledged" | "flagged"; note?: string | undefined }): Promise<BreakGlassReview> {
    const now = this.ctx.clock.now();
    const reviewed = await this.ctx.db.transaction(async (tx) => {
      // Named by its own id, or by its request's (one review per request: Teams' card data carries that).
      const [review] = await tx
        .select()
        .from(breakGlassReviews)
        .where(input.reviewId.startsWith("req_") ? eq(breakGlassReviews.requestId, input.reviewId) : eq(breakGlassReviews.id, input.reviewId))
        .for("update");
      if (!review) throw new ReviewNotFound(input.reviewId);
      if (review.state !== "open") throw new ReviewClosed(review.id, review.state, await this.#name(tx, review.reviewerId));
      if (review.requesterId === reviewer.id) throw new NotAllowed("you cannot review your own break-glass use; another approver of the target does");
      const policy = this.ctx.policy(review.target);
      if (!isApprover(policy, await this.people.identity(reviewer, tx))) throw new NotAnApprover(policy.name);
      const note = input.note?.trim() || null;
      const [updated] = await tx
        .update(breakGlassReviews)
        .set({ state: input.verdict, reviewedAt: now, reviewerId: reviewer.id, note })
        .where(and(eq(breakGlassReviews.id, review.id), eq(breakGlassReviews.state, "open")))
        .returning();
      if (!updated) throw new ReviewClosed(review.id, "reviewed", null);
      await appendAudit(tx, now, {
        kind: "break_glass.reviewed",
        actorId: reviewer.id,
        target: review.target,
        requestId: review.requestId,
        grantId: review.grantId,
        data: { reviewId: review.id, verdict: input.verdict, note },
      });
      return updated;
    });
    this.ctx.events.emit("break_glass.reviewed", { review: await this.snapshot(reviewed) });
    await this.ctx.background("drop break-glass review reminder", () => this.ctx.scheduler.cancelReviewReminder(reviewed.id));
    return reviewed;
  }

  /** Reviews still open, oldest first (the reconciler, the digest). */
  async open(before?: Date): Promise<BreakGlassReview[]> {
    return this.ctx.db
      .select()
      .from(breakGlassReviews)
      .where(and(eq(breakGlassReviews.state, "open"), before ? lt(breakGlassReviews.createdAt, before) : undefined))
      .orderBy(asc(breakGlassReviews.createdAt));
  }

  async snapshot(review: BreakGlassReview): Promise<BreakGlassSnapshot> {
    const [request] = await this.ctx.db.select().from(accessRequests).where(eq(accessRequests.id, review.requestId));
    let alertChannel: string | null = null;
    try {
      alertChannel = this.ctx.policy(review.target).breakGlass?.alertChannel ?? null;
    } catch {
      alertChannel = null; // a target removed from the configuration since
    }
    return {
      id: review.id,
      requestId: review.requestId,
      grantId: review.grantId,
      target: review.target,
      requesterId: review.requesterId,
      requesterName: (await this.#name(this.ctx.db, review.requesterId)) ?? review.requesterId,
      reason: request?.reason ?? "",
      state: review.state,
      createdAt: iso(review.createdAt),
      reviewedAt: review.reviewedAt ? iso(review.reviewedAt) : null,
      reviewerName: await this.#name(this.ctx.db, review.reviewerId),
      alertChannel,
    };
  }

  async #name(db: Executor, personId: string | null): Promise<string | null> {
    if (!personId) return null;
    const [row] = await db.select({ name: people.displayName }).from(people).where(eq(people.id, personId));
    return row?.name ?? personId;
  }
}
