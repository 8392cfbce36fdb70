import { and, asc, eq, gt, lte } from "drizzle-orm";
import type { Executor } from "../db/client.js";
import { accessRequests, grantCredentials, grants, people } from "../db/schema.js";
import { appendAudit } from "./audit.js";
import type { BrokerContext } from "./context.js";
import { deploymentCredentialKey } from "../db/deployment.js";
import {
  credentialLookup,
  CredentialWork,
  makeVerifier,
  mockVerifier,
  newSecret,
  postgresConnectionLine,
  SCRAM_ITERATIONS,
  scramSalt,
  sshConnectionLine,
  type ConnectionLine,
  type ScramVerifier,
} from "./credentials.js";
import {
  DurationTooLong,
  GrantAlreadyLive,
  GrantExpired,
  GrantNotActive,
  GrantNotFound,
  InvalidCredential,
  NoLiveGrant,
  NotAllowed,
  RequestNotFound,
  RequestNotPending,
} from "./errors.js";
import { newId } from "./ids.js";
import type { PeopleService } from "./people.js";
import { isApprover } from "./policy.js";
import { decidersOf, decisionsOf, parseDurationMs } from "./requests.js";
import { grantSnapshot, iso, requestSnapshot } from "./snapshots.js";
import type { AccessRequest, ExpireOutcome, ExpiryFinder, ExtendResult, Grant, GrantStartOutcome, Person, ScramVerifierRow } from "./types.js";

/**
 * Grants: issued when a request's quorum is met, extended, revoked, expired, and the credential
 * each one carries. Every change is one conditional UPDATE in a transaction with its audit event.
 */
export class GrantsService {
  constructor(
    private readonly ctx: BrokerContext,
    private readonly people: PeopleService,
  ) {}

  async get(grantId: string): Promise<Grant> {
    const [row] = await this.ctx.db.select().from(grants).where(eq(grants.id, grantId));
    if (!row) throw new GrantNotFound(grantId);
    return row;
  }

  /** The person's grant on a target that is active and not past its end (what a login checks). */
  async live(tx: Executor, personId: string, target: string, now: Date): Promise<Grant | undefined> {
    const [row] = await tx
      .select()
      .from(grants)
      .where(and(eq(grants.personId, personId), eq(grants.target, target), eq(grants.state, "active"), gt(grants.expiresAt, now)));
    return row;
  }

  /** The person's live grant on a target (a proxy login by OIDC identity); throws NoLiveGrant. */
  async liveOf(person: Person, target: string): Promise<Grant> {
    const grant = await this.liveOrExpire(person.id, target, "login");
    if (!grant) throw new NoLiveGrant(target);
    return grant;
  }

  /**
   * The person's live grant on a target for a login; a grant still marked active but past its end
   * is expired on the way (its expiry job was lost or late), so the thread says so within moments.
   */
  async liveOrExpire(personId: string, target: string, foundBy: ExpiryFinder): Promise<Grant | undefined> {
    const now = this.ctx.clock.now();
    const [row] = await this.ctx.db
      .select()
      .from(grants)
      .where(and(eq(grants.personId, personId), eq(grants.target, target), eq(grants.state, "active")));
    if (!row) return undefined;
    if (row.expiresAt.getTime() > now.getTime()) return row;
    await this.#expireFound([row], foundBy);
    return undefined;
  }

  /** The person's live grants, soonest end first, for `list`. */
  async liveGrantsOf(person: Person): Promise<Grant[]> {
    return this.ctx.db
      .select()
      .from(grants)
      .where(and(eq(grants.personId, person.id), eq(grants.state, "active"), gt(grants.expiresAt, this.ctx.clock.now())))
      .orderBy(asc(grants.expiresAt));
  }

  /** Grants still marked active, for the reconciler (including overdue ones). */
  async active(): Promise<Grant[]> {
    return this.ctx.db.select().from(grants).where(eq(grants.state, "active"));
  }

  // ---------------------------------------------------------------- issue

  /**
   * Issues the grant of an approved access request that has none yet (for instance after a crash
   * between approval and issue). Returns the existing grant if there is one; its secret is not
   * recoverable, so `connection` is only set for a grant issued by this call.
   */
  async issue(requestId: string, by: Person): Promise<{ grant: Grant; connection?: ConnectionLine }> {
    const now = this.ctx.clock.now();
    const ended: Grant[] = [];
    const outcome = await this.ctx.db.transaction(async (tx) => {
      const [request] = await tx.select().from(accessRequests).where(eq(accessRequests.id, requestId)).for("update");
      if (!request) throw new RequestNotFound(requestId);
      if (request.kind !== "access" || request.state !== "approved") {
        throw new RequestNotPending(request.id, request.state, await decidersOf(tx, request));
      }
      if (request.grantId) {
        const [existing] = await tx.select().from(grants).where(eq(grants.id, request.grantId));
        return { grant: existing!, fresh: false as const, request };
      }
      const issued = await this.issueIn(tx, request, by, now, ended);
      return { grant: issued.grant, connection: issued.connection, fresh: true as const, request: issued.request };
    });
    this.afterOverdue(ended);
    if (outcome.fresh) await this.afterIssue(outcome.grant, outcome.request);
    return outcome.connection ? { grant: outcome.grant, connection: outcome.connection } : { grant: outcome.grant };
  }

  /**
   * Issues the grant of an approved request inside the caller's transaction (the decision's). A
   * previous grant still marked active but past its end is over: it is expired first, in the same
   * transaction (found late, with how late), and added to `ended` so the caller announces it after
   * the commit. Without this, a lost expiry job would make the insert hit the one-live-grant index.
   */
  async issueIn(
    tx: Executor,
    request: AccessRequest,
    by: Person | null,
    now: Date,
    ended: Grant[],
  ): Promise<{ grant: Grant; connection: ConnectionLine; request: AccessRequest }> {
    const requester = (await tx.select().from(people).where(eq(people.id, request.requesterId)))[0]!;
    const live = await this.live(tx, requester.id, request.target, now);
    if (live) throw new GrantAlreadyLive(request.target, live.id);
    const overdue = await tx
      .select()
      .from(grants)
      .where(and(eq(grants.personId, requester.id), eq(grants.target, request.target), eq(grants.state, "active"), lte(grants.expiresAt, now)))
      .for("update");
    for (const grant of overdue) {
      const expired = await this.#expireIn(tx, grant.id, now, "issue");
      if (expired) ended.push(expired);
    }
    // A scheduled grant keeps its window: issued late (a lost job found by the reconciler), it ends as asked.
    const expiresAt = new Date((request.startsAt ?? now).getTime() + request.durationMs);
    const [grant] = await tx
      .insert(grants)
      .values({ id: newId("grt"), requestId: request.id, personId: requester.id, target: request.target, startsAt: now, expiresAt, once: request.once })
      .returning();
    const [linked] = await tx.update(accessRequests).set({ grantId: grant!.id }).where(eq(accessRequests.id, request.id)).returning();
    const secret = newSecret();
    const login = this.people.loginOf(requester);
    const key = await this.credentialKey(tx);
    this.credentialWork.derivations += 1;
    const verifier = await makeVerifier(secret, SCRAM_ITERATIONS, scramSalt(key, login, request.target));
    const lookup = credentialLookup(key, secret);
    await tx.insert(grantCredentials).values({ grantId: grant!.id, login, target: request.target, ...verifier, lookup, createdAt: now });
    await appendAudit(tx, now, {
      kind: "grant.issued",
      actorId: by?.id ?? null,
      target: request.target,
      requestId: request.id,
      grantId: grant!.id,
      data: {
        personId: requester.id,
        startsAt: iso(now),
        expiresAt: iso(expiresAt),
        login,
        ...(request.startsAt ? { scheduled: true } : {}),
        ...(request.once ? { once: true } : {}),
        ...(request.breakGlass ? { breakGlass: true } : {}),
      },
    });
    return { grant: grant!, connection: this.connectionLine(request.target, login, secret), request: linked! };
  }

  /**
   * The grant-start job: issues the grant of an approved scheduled request once its start has come.
   * Idempotent: a request already issued, no longer approved, or whose whole window passed while the
   * job was lost (then cancelled, audited) is `done`; one not due yet says when it is.
   */
  async issueScheduled(requestId: string): Promise<GrantStartOutcome> {
    const now = this.ctx.clock.now();
    const ended: Grant[] = [];
    const outcome = await this.ctx.db.transaction(async (tx): Promise<GrantStartOutcome> => {
      const [request] = await tx.select().from(accessRequests).where(eq(accessRequests.id, requestId)).for("update");
      if (!request) throw new RequestNotFound(requestId);
      if (request.grantId) return { kind: "done", why: "issued" };
      if (request.kind !== "access" || request.state !== "approved" || !request.startsAt) return { kind: "done", why: "not-approved" };
      if (request.startsAt.getTime() > now.getTime()) return { kind: "not-due", startsAt: request.startsAt };
      if (request.startsAt.getTime() + request.durationMs <= now.getTime()) {
        await tx.update(accessRequests).set({ state: "cancelled" }).where(eq(accessRequests.id, request.id));
        await appendAudit(tx, now, {
          kind: "grant.start_missed",
          target: request.target,
          requestId: request.id,
          data: { startsAt: iso(request.startsAt), endsAt: iso(new Date(request.startsAt.getTime() + request.durationMs)) },
        });
        return { kind: "done", why: "missed" };
      }
      // The holder still has a live grant on the target (one live grant per person and target): this
      // one starts when that one ends, within its own window.
      const live = await this.live(tx, request.requesterId, request.target, now);
      if (live) return { kind: "not-due", startsAt: live.expiresAt };
      const issued = await this.issueIn(tx, request, null, now, ended);
      return { kind: "issued", ...issued };
    });
    this.afterOverdue(ended);
    if (outcome.kind === "issued") await this.afterIssue(outcome.grant, outcome.request);
    return outcome;
  }

  /**
   * A `--once` grant ends when its first session closes: one conditional UPDATE (active → expired,
   * its end moved to now), the credential deleted, audited; its other sessions are cut by the event.
   */
  async endOnce(grantId: string, sessionId: string): Promise<Grant | undefined> {
    const now = this.ctx.clock.now();
    const grant = await this.ctx.db.transaction(async (tx) => {
      const [row] = await tx
        .update(grants)
        .set({ state: "expired", endedAt: now, expiresAt: now })
        .where(and(eq(grants.id, grantId), eq(grants.once, true), eq(grants.state, "active")))
        .returning();
      if (!row) return undefined;
      await tx.delete(grantCredentials).where(eq(grantCredentials.grantId, grantId));
      await appendAudit(tx, now, {
        kind: "grant.ended",
        target: row.target,
        requestId: row.requestId,
        grantId: row.id,
        sessionId,
        data: { why: "once", endedAt: iso(now) },
      });
      return row;
    });
    if (grant) {
      this.afterOverdue([grant]);
      await this.ctx.background("cancel grant expiry", () => this.ctx.scheduler.cancelGrantExpiry(grant.id));
    }
    return grant;
  }

  async afterIssue(grant: Grant, request: AccessRequest): Promise<void> {
    const approvers = (await decisionsOf(this.ctx.db, request.id)).filter((d) => d.verdict === "approve").map((d) => d.approverName);
    this.ctx.events.emit("grant.issued", { grant: grantSnapshot(grant), request: await requestSnapshot(this.ctx.db, request), approvers });
    await this.ctx.background("schedule grant expiry", () => this.ctx.scheduler.scheduleGrantExpiry(grant.id, grant.expiresAt));
  }

  connectionLine(target: string, login: string, secret: string): ConnectionLine {
    const policy = this.ctx.policy(target);
    if (policy.kind === "postgres") {
      const proxy = this.ctx.config.proxy.postgres;
      return postgresConnectionLine({
        login,
        secret,
        target,
        publicAddress: proxy?.publicAddress ?? proxy?.listen ?? "localhost:15432",
        tls: proxy?.tls,
      });
    }
    const proxy = this.ctx.config.proxy.ssh;
    return sshConnectionLine({ login, secret, target, publicAddress: proxy?.publicAddress ?? proxy?.listen ?? "localhost:2222" });
  }

  // ---------------------------------------------------------------- extend

  async #activeGrant(tx: Executor, grantId: string, now: Date): Promise<Grant> {
    const [grant] = await tx.select().from(grants).where(eq(grants.id, grantId));
    if (!grant) throw new GrantNotFound(grantId);
    if (grant.state !== "active") throw new GrantNotActive(grant.id, grant.state);
    if (grant.expiresAt.getTime() <= now.getTime()) throw new GrantExpired(grant.id);
    return grant;
  }

  /**
   * The checks `extend` makes before any duration is chosen, without extending: a chat adapter asks
   * before it shows the Extend form to someone who could not submit it. Returns the live grant; an
   * overdue one is expired on the way and refused as ended.
   */
  async checkCanExtend(actor: Person, grantId: string): Promise<Grant> {
    const now = this.ctx.clock.now();
    const grant = await this.get(grantId);
    if (grant.state !== "active") throw new GrantNotActive(grant.id, grant.state);
    if (grant.expiresAt.getTime() <= now.getTime()) {
      await this.expireIfOverdue(grant.id, "extend");
      throw new GrantNotActive(grant.id, "expired");
    }
    if (actor.id !== grant.personId && !(await this.people.isApprover(grant.target, actor))) {
      throw new NotAllowed(`only the holder or an approver of ${grant.target} may extend ${grant.id}`);
    }
    return grant;
  }

  /**
   * More time on a live grant. An approver of the target (other than the holder) extends it at once;
   * the holder's ask becomes an extension request that goes through approval like any other. The
   * grant's whole lifetime stays within the target's `maxDuration`.
   */
  async extend(actor: Person, input: { grantId: string; duration: string | number; reason?: string }): Promise<ExtendResult> {
    const durationMs = parseDurationMs(input.duration);
    const now = this.ctx.clock.now();
    const grant = await this.#activeGrant(this.ctx.db, input.grantId, now).catch(async (error: unknown) => {
      if (error instanceof GrantExpired) await this.expireIfOverdue(input.grantId, "extend");
      throw error;
    });
    const policy = this.ctx.policy(grant.target);
    const lifetime = grant.expiresAt.getTime() + durationMs - grant.startsAt.getTime();
    if (lifetime > policy.maxDurationMs) {
      throw new DurationTooLong(policy.name, lifetime, policy.maxDurationMs, "access in total");
    }
    const actorIsApprover = isApprover(policy, await this.people.identity(actor));
    // A direct extension is an approval without the fresh sign-in that step-up demands.
    if (actorIsApprover && actor.id !== grant.personId && policy.stepUp) {
      throw new NotAllowed(`every approval on ${policy.name} needs a fresh sign-in: the holder asks with extend ${grant.id} <duration>, and approvers approve that request`);
    }
    if (actorIsApprover && actor.id !== grant.personId) {
      const extended = await this.ctx.db.transaction(async (tx) => {
        const [current] = await tx.select().from(grants).where(eq(grants.id, grant.id)).for("update");
        return this.#extendGrant(tx, current!, durationMs, actor, now, null);
      });
      await this.afterExtend(extended.grant, extended.previousExpiresAt, actor);
      return { kind: "extended", ...extended };
    }
    if (actor.id !== grant.personId) throw new NotAllowed(`only the holder or an approver of ${policy.name} may extend ${grant.id}`);
    // More time is a request too: a holder the requesters no longer name (removed from the group) asks for none.
    await this.people.checkRequester(actor, policy.name, { extend: grant.id, duration: String(input.duration) });
    const reason = input.reason?.trim() || `extend ${grant.id}`;
    const request = await this.ctx.db.transaction(async (tx) => {
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
    this.ctx.events.emit("request.created", { request: await requestSnapshot(this.ctx.db, request) });
    await this.ctx.background("schedule request timeout", () => this.ctx.scheduler.scheduleRequestTimeout(request.id, request.timeoutAt));
    return { kind: "requested", request };
  }

  /** Applies an approved extension request inside the decision's transaction. */
  async applyExtension(tx: Executor, request: AccessRequest, by: Person, now: Date): Promise<{ grant: Grant; previousExpiresAt: Date }> {
    const [grant] = await tx.select().from(grants).where(eq(grants.id, request.grantId!)).for("update");
    if (!grant) throw new GrantNotFound(request.grantId!);
    if (grant.state !== "active" || grant.expiresAt.getTime() <= now.getTime()) throw new GrantNotActive(grant.id, grant.state);
    const policy = this.ctx.policy(grant.target);
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

  async afterExtend(grant: Grant, previousExpiresAt: Date, by: Person): Promise<void> {
    this.ctx.events.emit("grant.extended", {
      grant: grantSnapshot(grant),
      previousExpiresAt: iso(previousExpiresAt),
      byId: by.id,
      byName: by.displayName,
    });
    await this.ctx.background("move grant expiry", () => this.ctx.scheduler.scheduleGrantExpiry(grant.id, grant.expiresAt));
  }

  // ---------------------------------------------------------------- end

  /** Ends a grant now: its holder or an approver of its target. */
  async revoke(actor: Person, input: { grantId: string; reason?: string | undefined }): Promise<Grant> {
    const now = this.ctx.clock.now();
    const existing = await this.get(input.grantId);
    if (actor.id !== existing.personId && !(await this.people.isApprover(existing.target, actor))) {
      throw new NotAllowed(`only the holder or an approver of ${existing.target} may revoke ${existing.id}`);
    }
    const reason = input.reason?.trim() || null;
    const grant = await this.ctx.db.transaction(async (tx) => {
      // A grant past its end is over whatever its row says: it ends as expired, not revoked.
      const [row] = await tx
        .update(grants)
        .set({ state: "revoked", endedAt: now, endedBy: actor.id })
        .where(and(eq(grants.id, existing.id), eq(grants.state, "active"), gt(grants.expiresAt, now)))
        .returning();
      if (!row) return undefined;
      // The credential dies with the grant: nothing is left that could be checked against.
      await tx.delete(grantCredentials).where(eq(grantCredentials.grantId, row.id));
      await appendAudit(tx, now, {
        kind: "grant.revoked",
        actorId: actor.id,
        target: row.target,
        requestId: row.requestId,
        grantId: row.id,
        data: { reason, expiresAt: iso(row.expiresAt) },
      });
      return row;
    });
    if (!grant) {
      await this.expireIfOverdue(existing.id, "revoke");
      throw new GrantNotActive(existing.id, (await this.get(existing.id)).state);
    }
    this.ctx.events.emit("grant.revoked", { grant: grantSnapshot(grant), byId: actor.id, byName: actor.displayName, reason });
    await this.ctx.background("cancel grant expiry", () => this.ctx.scheduler.cancelGrantExpiry(grant.id));
    return grant;
  }

  /**
   * Ends a grant whose time is up (called by the expiry job and the reconciler). Does nothing to a
   * grant that was extended meanwhile (`not-due`) or has already ended. `foundBy` says what noticed:
   * anything but the grant's own job means the job was lost or late, and the audit record says so.
   */
  async expire(grantId: string, foundBy: ExpiryFinder = "job"): Promise<ExpireOutcome> {
    const now = this.ctx.clock.now();
    const grant = await this.ctx.db.transaction((tx) => this.#expireIn(tx, grantId, now, foundBy));
    if (grant) {
      this.afterOverdue([grant]);
      return { kind: "expired", grant };
    }
    const [current] = await this.ctx.db.select().from(grants).where(eq(grants.id, grantId));
    if (!current) throw new GrantNotFound(grantId);
    if (current.state === "active") return { kind: "not-due", expiresAt: current.expiresAt };
    return { kind: "ended" };
  }

  /**
   * Expires the grant if it is still marked active past its end, and does nothing otherwise: what a
   * login refused for an overdue grant, or a session whose timer ran out, calls so the grant is
   * shown expired within moments even when its expiry job is gone (Redis lost its data).
   */
  async expireIfOverdue(grantId: string, foundBy: ExpiryFinder): Promise<ExpireOutcome | undefined> {
    const [grant] = await this.ctx.db.select().from(grants).where(eq(grants.id, grantId));
    if (!grant || grant.state !== "active" || grant.expiresAt.getTime() > this.ctx.clock.now().getTime()) return undefined;
    return this.expire(grantId, foundBy);
  }

  /** Announces grants expired in a transaction that has committed (the chat redraws their threads). */
  afterOverdue(ended: readonly Grant[]): void {
    for (const grant of ended) this.ctx.events.emit("grant.expired", { grant: grantSnapshot(grant) });
  }

  /** Expires overdue grants a login came across; its refusal does not wait on a failure of this. */
  async #expireFound(found: readonly Grant[], foundBy: ExpiryFinder): Promise<void> {
    for (const grant of found) {
      await this.ctx.background("expire an overdue grant", async () => {
        await this.expireIfOverdue(grant.id, foundBy);
      });
    }
  }

  /** The conditional UPDATE of every expiry: only an active grant past its end, once. */
  async #expireIn(tx: Executor, grantId: string, now: Date, foundBy: ExpiryFinder): Promise<Grant | undefined> {
    const [grant] = await tx
      .update(grants)
      .set({ state: "expired", endedAt: now, endedBy: null })
      .where(and(eq(grants.id, grantId), eq(grants.state, "active"), lte(grants.expiresAt, now)))
      .returning();
    if (!grant) return undefined;
    await tx.delete(grantCredentials).where(eq(grantCredentials.grantId, grantId));
    // How long the grant looked live in its row after its end: the job's own lag, or how long a
    // lost job went unnoticed (what /metrics reports for the grants found late).
    const lateMs = now.getTime() - grant.expiresAt.getTime();
    await appendAudit(tx, now, {
      kind: "grant.expired",
      target: grant.target,
      requestId: grant.requestId,
      grantId: grant.id,
      data: { expiresAt: iso(grant.expiresAt), lateMs, ...(foundBy === "job" ? {} : { foundLate: true, foundBy }) },
    });
    return grant;
  }

  // ---------------------------------------------------------------- credentials

  /** What proxy logins have cost on this broker (tests compare refusal paths with it). */
  readonly credentialWork = new CredentialWork();
  #credentialKey: Promise<Buffer> | undefined;

  /**
   * The deployment's credential key, read (or made) once. Inside a transaction (`tx`) it is read
   * there (PGlite has one connection: another query would wait for the transaction) and not kept,
   * since a key made in a transaction that rolls back never existed.
   */
  async credentialKey(tx?: Executor): Promise<Buffer> {
    if (tx && !this.#credentialKey) return deploymentCredentialKey(tx);
    this.#credentialKey ??= deploymentCredentialKey(this.ctx.db).catch((error: unknown) => {
      this.#credentialKey = undefined;
      throw error;
    });
    return this.#credentialKey;
  }

  /**
   * The SCRAM verifier to run a PostgreSQL login against, and the live grant behind it if there is
   * one. A login without a live credential on the target (unknown person, no grant, unknown target)
   * gets a mock verifier with the salt a real one would have: the exchange runs the same way and
   * fails at the proof, like a wrong password. Every call costs one keyed hash and one query.
   */
  async loginCredential(login: string, target: string): Promise<{ grant: Grant | undefined; verifier: ScramVerifier }> {
    const key = await this.credentialKey();
    const now = this.ctx.clock.now();
    this.credentialWork.keyedHashes += 1;
    const mock = mockVerifier(key, login, target);
    this.credentialWork.lookups += 1;
    const rows = await this.ctx.db
      .select({ grant: grants, credential: grantCredentials })
      .from(grantCredentials)
      .innerJoin(grants, eq(grants.id, grantCredentials.grantId))
      .where(and(eq(grantCredentials.login, login), eq(grantCredentials.target, target), eq(grants.state, "active")));
    const row = rows.find((r) => r.grant.expiresAt.getTime() > now.getTime());
    if (!row) {
      await this.#expireFound(rows.map((r) => r.grant), "login");
      return { grant: undefined, verifier: mock };
    }
    const { salt, iterations, storedKey, serverKey } = row.credential;
    return { grant: row.grant, verifier: { salt, iterations, storedKey, serverKey } };
  }

  /**
   * Checks a grant credential as presented at a proxy (the SSH password): found by its keyed hash,
   * it must belong to a live grant on that target (and to `login`, when one is given). Every
   * failure is the one InvalidCredential, after the same work: one keyed hash and one query.
   */
  async checkCredential(input: { login?: string | undefined; target: string; secret: string }): Promise<Grant> {
    const key = await this.credentialKey();
    const now = this.ctx.clock.now();
    this.credentialWork.keyedHashes += 1;
    const lookup = credentialLookup(key, input.secret);
    this.credentialWork.lookups += 1;
    const [row] = await this.ctx.db
      .select({ grant: grants, credential: grantCredentials })
      .from(grantCredentials)
      .innerJoin(grants, eq(grants.id, grantCredentials.grantId))
      .where(eq(grantCredentials.lookup, lookup));
    // The index holds a hash, not the secret: equal hashes of 192 random bits are the secret itself.
    if (!row || row.credential.target !== input.target || (input.login !== undefined && row.credential.login !== input.login)) {
      throw new InvalidCredential();
    }
    if (row.grant.state !== "active") throw new InvalidCredential();
    if (row.grant.expiresAt.getTime() <= now.getTime()) {
      await this.#expireFound([row.grant], "login");
      throw new InvalidCredential();
    }
    return row.grant;
  }
}
