import { randomBytes } from "node:crypto";
import { and, eq, gt, isNull } from "drizzle-orm";
import type { Executor } from "../db/client.js";
import { stepUpChallenges } from "../db/schema.js";
import { appendAudit } from "./audit.js";
import type { BrokerContext } from "./context.js";
import { StepUpRefused } from "./errors.js";
import { iso } from "./snapshots.js";
import { STEP_UP_LINK_TTL_MS, type Person, type StepUpChallenge, type StepUpProof } from "./types.js";

/** What an approval waiting for a fresh sign-in is of: a request, or a statement held in its thread. */
export interface StepUpSubject {
  requestId: string;
  heldId: string | null;
  target: string;
  grantId: string | null;
  sessionId?: string | null;
  /** A reveal of sealed results (`<session id>#<seq>`), not an approval: its link serves that reveal only. */
  reveal?: string | null;
  /** The reason given for that reveal: the sign-in completes the reveal with this reason only. */
  revealReason?: string | null;
}

/**
 * Step-up approval: an approval on a target that demands it waits for the approver to sign in again
 * (OIDC). The challenge is opened and used up inside the decision's transaction.
 */
export class StepUpService {
  constructor(private readonly ctx: BrokerContext) {}

  /** The one-time link an approver opens to sign in again: on the gateway that `oidc.redirectUrl` names. */
  link(challengeId: string): string {
    const redirectUrl = this.ctx.config.oidc?.redirectUrl;
    const origin = redirectUrl ? new URL(redirectUrl).origin : "";
    return `${origin}/oidc/approve?challenge=${encodeURIComponent(challengeId)}`;
  }

  /**
   * Opens the challenge of an approval waiting for a fresh sign-in: of the request itself, or
   * (`heldId`) of a statement or command held in the request's thread.
   */
  async open(tx: Executor, subject: StepUpSubject, approver: Person, now: Date): Promise<StepUpChallenge> {
    const [challenge] = await tx
      .insert(stepUpChallenges)
      .values({
        id: randomBytes(24).toString("base64url"),
        requestId: subject.requestId,
        heldId: subject.heldId,
        reveal: subject.reveal ?? null,
        revealReason: subject.reveal ? (subject.revealReason ?? null) : null,
        approverId: approver.id,
        createdAt: now,
        expiresAt: new Date(now.getTime() + STEP_UP_LINK_TTL_MS),
      })
      .returning();
    await appendAudit(tx, now, {
      kind: "step_up.challenged",
      actorId: approver.id,
      target: subject.target,
      requestId: subject.requestId,
      grantId: subject.grantId,
      sessionId: subject.sessionId ?? null,
      data: { expiresAt: iso(challenge!.expiresAt), ...(subject.heldId ? { heldId: subject.heldId } : {}), ...(subject.reveal ? { reveal: subject.reveal } : {}) },
    });
    return challenge!;
  }

  /**
   * Marks a challenge used, in the decision's transaction (so the link works once and only with the
   * decision): it must be this approver's, for this very approval (the request, or the held
   * statement: a link opened to approve one never approves the other), unused and unexpired, and
   * the login behind it fresh: `auth_time` no earlier than the challenge and within
   * `oidc.stepUpMaxAge`.
   */
  async complete(tx: Executor, proof: StepUpProof, subject: Pick<StepUpSubject, "requestId" | "heldId" | "reveal" | "revealReason">, approver: Person, now: Date): Promise<{ authTime: string }> {
    const [challenge] = await tx.select().from(stepUpChallenges).where(eq(stepUpChallenges.id, proof.challengeId)).for("update");
    if (
      !challenge ||
      challenge.requestId !== subject.requestId ||
      challenge.heldId !== subject.heldId ||
      (challenge.reveal ?? null) !== (subject.reveal ?? null) ||
      // A reveal's sign-in is for the reason the auditor gave when asking, not another one.
      (subject.reveal ? (challenge.revealReason ?? null) !== (subject.revealReason ?? null) : false)
    ) {
      throw new StepUpRefused(`this sign-in link is not for this ${subject.reveal ? "reveal" : subject.heldId ? "held statement" : "request"}`);
    }
    if (challenge.completedAt) throw new StepUpRefused("this sign-in link has already been used");
    if (challenge.expiresAt.getTime() <= now.getTime()) throw new StepUpRefused("this sign-in link has expired; click Approve again for a new one");
    if (challenge.approverId !== approver.id) {
      throw new StepUpRefused("the sign-in was by someone else than the approver who clicked Approve; nothing was recorded");
    }
    const maxAgeMs = this.ctx.config.oidc?.stepUpMaxAge ?? 5 * 60_000;
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
  async challenge(challengeId: string): Promise<StepUpChallenge> {
    const now = this.ctx.clock.now();
    const [challenge] = await this.ctx.db.select().from(stepUpChallenges).where(eq(stepUpChallenges.id, challengeId));
    if (!challenge) throw new StepUpRefused("this sign-in link is not known");
    if (challenge.completedAt) throw new StepUpRefused("this sign-in link has already been used");
    if (challenge.expiresAt.getTime() <= now.getTime()) {
      throw new StepUpRefused(`this sign-in link has expired; ${challenge.reveal ? "ask for the reveal again" : "click Approve again"} for a new one`);
    }
    return challenge;
  }

  /** Stores the OAuth state, nonce and PKCE verifier of the login started for a challenge. */
  async startLogin(challengeId: string, login: { state: string; nonce: string; codeVerifier: string }): Promise<void> {
    const updated = await this.ctx.db
      .update(stepUpChallenges)
      .set(login)
      .where(and(eq(stepUpChallenges.id, challengeId), isNull(stepUpChallenges.completedAt), gt(stepUpChallenges.expiresAt, this.ctx.clock.now())))
      .returning({ id: stepUpChallenges.id });
    if (updated.length === 0) throw new StepUpRefused("this sign-in link can no longer be used");
  }

  /** The challenge whose login used this OAuth `state`, if any. */
  async challengeByState(state: string): Promise<StepUpChallenge | undefined> {
    const [challenge] = await this.ctx.db.select().from(stepUpChallenges).where(eq(stepUpChallenges.state, state));
    return challenge;
  }
}
