import { and, eq, isNull, sql } from "drizzle-orm";
import type { Database } from "../db/client.js";
import { grants, heldDecisions, heldStatements, people, sessions } from "../db/schema.js";
import { appendAudit, type AuditInput } from "./audit.js";
import type { Broker, Person } from "./broker.js";
import { AlreadyDecided, GrantNotFound, NoLiveGrant, NotAnApprover, RequestNotPending, SelfApproval, StepUpRefused, StepUpRequired } from "./errors.js";
import type { HeldSnapshot, SessionSnapshot, SessionSummary } from "./events.js";
import { newId } from "./ids.js";
import { storeRecordings, type ChannelCast } from "./recordings.js";
import { STEP_UP_LINK_TTL_MS, type StepUpChallenge, type StepUpProof } from "./types.js";

/** What an interactive shell's commands get: checks of the typed lines, which a shell can evade. */
export const SHELL_CHECKS = "interactive shell, lines checked best-effort";

export type SessionRow = typeof sessions.$inferSelect;
export type HeldRow = typeof heldStatements.$inferSelect;

const iso = (date: Date) => date.toISOString();
/** How early a proxy's grant timer may end a session by this process's clock and still count. */
const EARLY_TIMER_MS = 2_000;

/**
 * Proxy sessions and the statements they hold for approval: opened and closed with audit events,
 * held statements decided once (by an approver of the target who is not the session's owner) from
 * any replica. The proxies call this; it knows no sockets.
 */
export class SessionBroker {
  readonly #names = new Map<string, string>();

  constructor(private readonly broker: Broker) {}

  get #db(): Database {
    return this.broker.context.db;
  }

  async #personName(personId: string): Promise<string> {
    let name = this.#names.get(personId);
    if (!name) {
      name = (await this.broker.person(personId))?.displayName ?? personId;
      this.#names.set(personId, name);
    }
    return name;
  }

  async snapshot(session: SessionRow): Promise<SessionSnapshot> {
    const [grant] = await this.#db.select({ requestId: grants.requestId }).from(grants).where(eq(grants.id, session.grantId));
    return {
      id: session.id,
      grantId: session.grantId,
      requestId: grant?.requestId ?? "",
      target: session.target,
      personId: session.personId,
      personName: await this.#personName(session.personId),
      protocol: session.protocol,
      clientAddress: session.clientAddress,
      startedAt: iso(session.startedAt),
      endedAt: session.endedAt ? iso(session.endedAt) : null,
    };
  }

  /** Opens a session under a grant that must still be live; its audit event commits with it. */
  async open(input: { grantId: string; protocol: "postgres" | "ssh"; clientAddress: string | null }): Promise<{ session: SessionRow; snapshot: SessionSnapshot }> {
    const now = this.broker.clock.now();
    const session = await this.#db.transaction(async (tx) => {
      const [grant] = await tx.select().from(grants).where(eq(grants.id, input.grantId));
      if (!grant) throw new GrantNotFound(input.grantId);
      if (grant.state !== "active" || grant.expiresAt.getTime() <= now.getTime()) throw new NoLiveGrant(grant.target);
      const [row] = await tx
        .insert(sessions)
        .values({
          id: newId("ses"),
          grantId: grant.id,
          target: grant.target,
          personId: grant.personId,
          protocol: input.protocol,
          clientAddress: input.clientAddress,
          startedAt: now,
        })
        .returning();
      await appendAudit(tx, now, {
        kind: "session.opened",
        actorId: grant.personId,
        target: grant.target,
        requestId: grant.requestId,
        grantId: grant.id,
        sessionId: row!.id,
        data: { protocol: input.protocol, clientAddress: input.clientAddress },
      });
      return row!;
    });
    const snapshot = await this.snapshot(session);
    this.broker.events.emit("session.opened", { session: snapshot });
    return { session, snapshot };
  }

  /** Stores what the SSH proxy recorded of a session's channels. */
  async storeRecordings(sessionId: string, recordings: readonly ChannelCast[]): Promise<void> {
    await storeRecordings(this.#db, sessionId, recordings, this.broker.clock.now());
  }

  /** Closes a session once; held statements still waiting end as timed out. */
  async close(sessionId: string, summary: SessionSummary, recording?: unknown): Promise<SessionRow | undefined> {
    const now = this.broker.clock.now();
    const session = await this.#db.transaction(async (tx) => {
      const [row] = await tx
        .update(sessions)
        .set({ endedAt: now, summary: summary as unknown as Record<string, unknown>, ...(recording === undefined ? {} : { recording }) })
        .where(and(eq(sessions.id, sessionId), isNull(sessions.endedAt)))
        .returning();
      if (!row) return undefined;
      await tx
        .update(heldStatements)
        .set({ state: "timed_out", decidedAt: now })
        .where(and(eq(heldStatements.sessionId, sessionId), eq(heldStatements.state, "held")));
      const [grant] = await tx.select({ requestId: grants.requestId }).from(grants).where(eq(grants.id, row.grantId));
      await appendAudit(tx, now, {
        kind: "session.closed",
        actorId: row.personId,
        target: row.target,
        requestId: grant?.requestId ?? null,
        grantId: row.grantId,
        sessionId: row.id,
        data: { ...summary },
      });
      return row;
    });
    if (session) {
      this.broker.events.emit("session.closed", { session: await this.snapshot(session), summary });
      // A `--once` grant is over with its first session.
      await this.broker.grants.endOnce(session.grantId, session.id);
      await this.#expireAfterTimer(session.grantId, summary.endReason);
    }
    return session;
  }

  /**
   * A session whose grant timer ran out is the proxy's word that the grant is over: if its expiry
   * job was lost (Redis emptied) the grant is expired here, so the thread shows it within moments
   * rather than at the reconciler's next round. The proxy's timer may fire a hair before `expiresAt`
   * by this clock; then the expiry waits for that moment.
   */
  async #expireAfterTimer(grantId: string, endReason: string): Promise<void> {
    if (endReason !== "expired") return;
    const expire = () =>
      this.broker.grants.expireIfOverdue(grantId, "session-end").catch((error: unknown) => this.broker.context.onBackgroundError(error, "expire an overdue grant"));
    const grant = await this.broker.grants.get(grantId).catch(() => undefined);
    if (!grant || grant.state !== "active") return;
    const wait = grant.expiresAt.getTime() - this.broker.clock.now().getTime();
    if (wait <= 0) await expire();
    else if (wait <= EARLY_TIMER_MS) setTimeout(() => void expire(), wait + 1).unref();
  }

  /**
   * Appends a proxy's own event to the audit chain: what a session did that is not a statement
   * (an SFTP file operation), or why one was refused (a target's host key did not match the pin).
   */
  async audit(event: AuditInput): Promise<void> {
    const now = this.broker.clock.now();
    await this.#db.transaction((tx) => appendAudit(tx, now, event));
  }

  /** Records a blocked statement in the audit chain and tells the thread. */
  async blocked(session: SessionSnapshot, text: string, rule: string): Promise<void> {
    const now = this.broker.clock.now();
    await this.#db.transaction((tx) =>
      appendAudit(tx, now, {
        kind: "statement.blocked",
        actorId: session.personId,
        target: session.target,
        requestId: session.requestId,
        grantId: session.grantId,
        sessionId: session.id,
        data: { text, rule },
      }),
    );
    this.broker.events.emit("statement.blocked", { session, text, rule, at: now.toISOString() });
  }

  /**
   * Records that an interactive shell started (its commands are checked best-effort only, see
   * SHELL_CHECKS) and tells the thread.
   */
  async shellStarted(session: SessionSnapshot, text: string): Promise<void> {
    const now = this.broker.clock.now();
    await this.#db.transaction((tx) =>
      appendAudit(tx, now, {
        kind: "ssh.shell",
        actorId: session.personId,
        target: session.target,
        requestId: session.requestId,
        grantId: session.grantId,
        sessionId: session.id,
        data: { text, checks: SHELL_CHECKS },
      }),
    );
    this.broker.events.emit("session.shell", { session, text, at: now.toISOString() });
  }

  async #heldSnapshot(row: HeldRow, session: SessionSnapshot | undefined, timeoutMs: number): Promise<HeldSnapshot> {
    const owner = session ?? (await this.snapshot((await this.#db.select().from(sessions).where(eq(sessions.id, row.sessionId)))[0]!));
    return {
      id: row.id,
      sessionId: row.sessionId,
      grantId: row.grantId,
      requestId: owner.requestId,
      target: owner.target,
      personId: owner.personId,
      personName: owner.personName,
      text: row.text,
      rule: row.rule,
      state: row.state,
      createdAt: iso(row.createdAt),
      timeoutAt: iso(new Date(row.createdAt.getTime() + timeoutMs)),
    };
  }

  get reviewTimeoutMs(): number {
    return this.broker.reviewTimeoutMs;
  }

  /** Holds a statement for approval in the request's thread. */
  async hold(session: SessionSnapshot, text: string, rule: string): Promise<HeldSnapshot> {
    const now = this.broker.clock.now();
    const row = await this.#db.transaction(async (tx) => {
      const [held] = await tx
        .insert(heldStatements)
        .values({
          id: newId("hld"),
          sessionId: session.id,
          grantId: session.grantId,
          text,
          rule,
          approvalsRequired: this.broker.policy(session.target).heldApprovals,
          createdAt: now,
        })
        .returning();
      await appendAudit(tx, now, {
        kind: "statement.held",
        actorId: session.personId,
        target: session.target,
        requestId: session.requestId,
        grantId: session.grantId,
        sessionId: session.id,
        data: { heldId: held!.id, text, rule, approvalsRequired: held!.approvalsRequired },
      });
      return held!;
    });
    const snapshot = await this.#heldSnapshot(row, session, this.reviewTimeoutMs);
    this.broker.events.emit("statement.held", { held: snapshot });
    return snapshot;
  }

  async getHeld(heldId: string): Promise<HeldRow | undefined> {
    const [row] = await this.#db.select().from(heldStatements).where(eq(heldStatements.id, heldId));
    return row;
  }

  /** Held statements still waiting for a decision, for the reconciler of review timeouts. */
  async awaitingDecision(): Promise<HeldRow[]> {
    return this.#db.select().from(heldStatements).where(eq(heldStatements.state, "held"));
  }

  /**
   * Approves or denies a held statement: an approver of the target, not the session's owner, once
   * each. One denial denies it; it is approved (and runs) once `approvalsRequired` distinct
   * approvers approved (the target's `review.approvals`). On a `stepUp` target an approval counts
   * only with a fresh sign-in, as for access: without `stepUp` proof the approver gets a
   * StepUpRequired with the link, and nothing is recorded but the challenge. Decisions on one
   * statement are serialized by a row lock, so the first final decision from any replica wins.
   * `actor` null is the review timeout.
   */
  async decide(
    actor: Person | null,
    input: { heldId: string; verdict: "approved" | "denied" | "timed_out"; stepUp?: StepUpProof | undefined },
  ): Promise<HeldSnapshot> {
    const now = this.broker.clock.now();
    const held = await this.getHeld(input.heldId);
    if (!held) throw new RequestNotPending(input.heldId, "unknown", []);
    const [session] = await this.#db.select().from(sessions).where(eq(sessions.id, held.sessionId));
    const [grant] = await this.#db.select({ requestId: grants.requestId }).from(grants).where(eq(grants.id, held.grantId));
    if (actor) {
      if (actor.id === session!.personId) throw new SelfApproval();
      if (!(await this.broker.isApprover(session!.target, actor))) throw new NotAnApprover(session!.target);
    }
    const policy = this.broker.policy(session!.target);
    type Outcome = { row: HeldRow; approvals: number } | { challenge: StepUpChallenge };
    const outcome = await this.#db.transaction(async (tx): Promise<Outcome | undefined> => {
      const [current] = await tx.select().from(heldStatements).where(eq(heldStatements.id, held.id)).for("update");
      if (!current || current.state !== "held") return undefined;
      // Past its review timeout a held statement takes no approval, even before the timer records it.
      if (actor && now.getTime() >= current.createdAt.getTime() + this.reviewTimeoutMs) throw new RequestNotPending(held.id, "expired", []);
      let approvals = 0;
      let stepUp: { authTime: string } | undefined;
      if (actor && input.verdict !== "timed_out") {
        const verdict = input.verdict === "approved" ? "approve" : "deny";
        const [previous] = await tx
          .select()
          .from(heldDecisions)
          .where(and(eq(heldDecisions.heldId, held.id), eq(heldDecisions.approverId, actor.id)));
        if (previous) throw new AlreadyDecided(held.id, previous.verdict, "held statement");
        if (verdict === "approve" && policy.stepUp) {
          const subject = { requestId: grant!.requestId, heldId: held.id, target: session!.target, grantId: held.grantId, sessionId: held.sessionId };
          if (!input.stepUp) return { challenge: await this.broker.stepUp.open(tx, subject, actor, now) };
          stepUp = await this.broker.stepUp.complete(tx, input.stepUp, subject, actor, now);
        }
        await tx.insert(heldDecisions).values({ id: newId("hdc"), heldId: held.id, approverId: actor.id, verdict, createdAt: now });
        [{ approvals } = { approvals: 0 }] = await tx
          .select({ approvals: sql<number>`count(*)::int` })
          .from(heldDecisions)
          .where(and(eq(heldDecisions.heldId, held.id), eq(heldDecisions.verdict, "approve")));
      }
      const final = input.verdict !== "approved" || approvals >= current.approvalsRequired;
      const audit = { actorId: actor?.id ?? null, target: session!.target, requestId: grant?.requestId ?? null, grantId: held.grantId, sessionId: held.sessionId };
      if (!final) {
        // One approval of several: recorded, and the statement keeps waiting for the rest.
        await appendAudit(tx, now, {
          kind: "statement.approval",
          ...audit,
          data: { heldId: held.id, approvals, required: current.approvalsRequired, ...(stepUp ? { stepUp } : {}) },
        });
        return { row: current, approvals };
      }
      const [row] = await tx
        .update(heldStatements)
        .set({ state: input.verdict, decidedBy: actor?.id ?? null, decidedAt: now })
        .where(and(eq(heldStatements.id, held.id), eq(heldStatements.state, "held")))
        .returning();
      // The row lock makes this unreachable; if it is reached, nothing is committed.
      if (!row) throw new RequestNotPending(held.id, "decided", []);
      await appendAudit(tx, now, {
        kind: `statement.${input.verdict}`,
        ...audit,
        data: { heldId: held.id, ...(actor && input.verdict === "approved" ? { approvals, required: current.approvalsRequired } : {}), ...(stepUp ? { stepUp } : {}) },
      });
      return { row, approvals };
    });
    if (!outcome) {
      const current = (await this.getHeld(held.id))!;
      const [decider] = current.decidedBy ? await this.#db.select().from(people).where(eq(people.id, current.decidedBy)) : [];
      throw new RequestNotPending(held.id, current.state.replace("_", " "), decider ? [decider.displayName] : []);
    }
    if ("challenge" in outcome) {
      const { challenge } = outcome;
      throw new StepUpRequired(session!.target, challenge.id, this.broker.stepUpLink(challenge.id), challenge.expiresAt, STEP_UP_LINK_TTL_MS, `held statement ${held.id} on ${session!.target}`);
    }
    const snapshot = await this.#heldSnapshot(outcome.row, undefined, this.reviewTimeoutMs);
    if (outcome.row.state === "held") {
      this.broker.events.emit("statement.approval", {
        held: snapshot,
        approvals: outcome.approvals,
        required: outcome.row.approvalsRequired,
        byId: actor!.id,
        byName: actor!.displayName,
      });
      return snapshot;
    }
    this.broker.events.emit("statement.decided", {
      held: snapshot,
      verdict: input.verdict,
      byId: actor?.id ?? null,
      byName: actor?.displayName ?? null,
    });
    return snapshot;
  }

  /**
   * Records the approval of a held statement behind a step-up challenge once the approver signed
   * in again (the OIDC callback): the challenge is used up in the same transaction as the approval.
   */
  async approveWithStepUp(person: Person, proof: StepUpProof): Promise<HeldSnapshot> {
    const challenge = await this.broker.stepUpChallenge(proof.challengeId);
    if (!challenge.heldId) throw new StepUpRefused("this sign-in link is not for a held statement");
    return this.decide(person, { heldId: challenge.heldId, verdict: "approved", stepUp: proof });
  }
}
