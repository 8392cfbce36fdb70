import { notInArray } from "drizzle-orm";
import type { Config } from "../config/schema.js";
import type { Database } from "../db/client.js";
import { targets as targetsTable } from "../db/schema.js";
import type { Clock } from "./clock.js";
import { BrokerContext, type BrokerOptions } from "./context.js";
import type { ConnectionLine, ScramVerifier } from "./credentials.js";
import { BrokerError, NotARequester, UnknownTarget } from "./errors.js";
import type { TypedEvents } from "./events.js";
import { BreakGlassService, type BreakGlassReview } from "./break-glass.js";
import type { BreakGlassSnapshot } from "./events.js";
import { GrantsService } from "./grants.js";
import { InboxService, type Inbox } from "./inbox.js";
import { PeopleService, type SlackUserGroup } from "./people.js";
import { isApprover, isAuditor, type Identity, type TargetPolicy } from "./policy.js";
import { RequestsService } from "./requests.js";
import type { AutoApproved } from "./auto-approval.js";
import { StepUpService } from "./step-up.js";
import { ResultsService, type ResultsRange, type RevealOutcome, type StatementResult } from "./results.js";
import { ThreadStates } from "./thread-state.js";
import type {
  AccessRequest,
  ChatRefusal,
  DecideResult,
  Decision,
  ExpireOutcome,
  ExpiryFinder,
  ExtendResult,
  Grant,
  GrantStartOutcome,
  IdentityRef,
  LinkedIdentity,
  Person,
  StepUpChallenge,
  StepUpProof,
} from "./types.js";

export type { BrokerConfig, BrokerOptions } from "./context.js";
export type { BreakGlassReview } from "./break-glass.js";
export type { Inbox, InboxItem, InboxThreadRef } from "./inbox.js";
export { INBOX_LIMIT } from "./inbox.js";
export { nextReviewReminder, REVIEW_REMINDER_EVERY_MS } from "./break-glass.js";
export * from "./types.js";

/**
 * The domain: requests, approvals, grants, policy, credentials and their audit records, as a few
 * services over one shared context (`context.ts`). No chat, no sockets. This class composes the
 * services and keeps the one façade the chat adapters, proxies and jobs call.
 */
export class Broker {
  readonly context: BrokerContext;
  readonly people: PeopleService;
  readonly stepUp: StepUpService;
  readonly results: ResultsService;
  readonly grants: GrantsService;
  readonly requests: RequestsService;
  /** What a request's chat thread shows (read model). */
  readonly threads: ThreadStates;
  readonly breakGlassReviews: BreakGlassService;
  /** What waits for one approver (read model). */
  readonly inboxes: InboxService;

  constructor(options: BrokerOptions) {
    this.context = new BrokerContext(options);
    this.people = new PeopleService(this.context);
    this.stepUp = new StepUpService(this.context);
    this.grants = new GrantsService(this.context, this.people);
    this.requests = new RequestsService(this.context, this.people, this.stepUp, this.grants);
    this.breakGlassReviews = new BreakGlassService(this.context, this.people, this.grants, this.stepUp);
    this.threads = new ThreadStates(this.context, this.people, this.requests, this.grants);
    this.inboxes = new InboxService(this.context, this.people);
    this.results = new ResultsService(this.context, this.people, this.stepUp);
  }

  get events(): TypedEvents {
    return this.context.events;
  }

  get clock(): Clock {
    return this.context.clock;
  }

  /** For the broker's own services and the tests; code outside `broker/` calls methods instead. */
  get db(): Database {
    return this.context.db;
  }

  /** How long a held statement waits for a decision. */
  get reviewTimeoutMs(): number {
    return this.context.config.defaults.reviewTimeout;
  }

  /** The target's configuration as written (proxies need upstream, rules, masking). */
  targetConfig(name: string): Config["targets"][number] {
    const target = this.context.config.targets.find((t) => t.name === name);
    if (!target) throw new UnknownTarget(name, this.context.policies().map((p) => p.name));
    return target;
  }

  /** Mirrors the configured targets into the database (history keeps referring to removed ones). */
  async syncTargets(): Promise<void> {
    const now = this.clock.now();
    const policies = this.context.policies();
    await this.db.transaction(async (tx) => {
      for (const policy of policies) {
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
      const names = policies.map((p) => p.name);
      await tx
        .update(targetsTable)
        .set({ active: false, syncedAt: now })
        .where(names.length > 0 ? notInArray(targetsTable.name, names) : undefined);
    });
  }

  policy(target: string): TargetPolicy {
    return this.context.policy(target);
  }

  /** Every target configured (what the operator sees; people see `requestableBy`). */
  targets(): TargetPolicy[] {
    return this.context.policies();
  }

  /** The targets this person may request, for `targets`: those without `requesters`, and those that name them or a group of theirs. */
  requestableBy(person: Person): Promise<TargetPolicy[]> {
    return this.people.requestable(person);
  }

  // ---------------------------------------------------------------- people

  identify(ref: IdentityRef): Promise<Person> {
    return this.people.identify(ref);
  }

  recordChatRefusal(refusal: ChatRefusal): Promise<void> {
    return this.people.recordChatRefusal(refusal);
  }

  person(personId: string): Promise<Person | undefined> {
    return this.people.person(personId);
  }

  identitiesOf(person: Person): Promise<LinkedIdentity[]> {
    return this.people.identitiesOf(person);
  }

  isApprover(target: string, person: Person): Promise<boolean> {
    return this.people.isApprover(target, person);
  }

  /**
   * The names of the targets this person approves: what the console's channel and the audit pages
   * show them beyond their own requests. One read of their identities, then policy's own check.
   */
  async targetsApprovedBy(person: Person): Promise<string[]> {
    const identity = await this.people.identity(person);
    return this.targets()
      .filter((target) => isApprover(target, identity))
      .map((target) => target.name);
  }

  /**
   * Whether this person is one of the configured `auditors`: the audit pages show them every
   * target's requests, sessions, statements and recordings (approvers see only their targets').
   */
  async isAuditor(person: Person): Promise<boolean> {
    const auditors = this.context.config.auditors ?? [];
    if (auditors.length === 0) return false;
    return isAuditor(auditors, await this.people.identity(person));
  }

  /**
   * A session's recorded results, masked (issue 16): for its own person, approvers of its target
   * and auditors (ResultsNotVisible otherwise). One statement's with `seq`, a range's with `{ from, to }`.
   */
  sessionResults(viewer: Person, sessionId: string, seq?: ResultsRange): Promise<StatementResult[]> {
    return this.results.results(viewer, sessionId, seq);
  }

  /**
   * An auditor reveals the sealed originals of one statement, with a reason (NotAnAuditor,
   * RevealRefused otherwise). On a `stepUp` target without `stepUp` proof it answers
   * `step-up-needed` with a sign-in link for this reveal only; call again with the proof.
   */
  revealResults(auditor: Person, input: { sessionId: string; seq: number; reason: string; stepUp?: StepUpProof | undefined }): Promise<RevealOutcome> {
    return this.results.reveal(auditor, input);
  }

  /**
   * Finishes the reveal a fresh sign-in was for (the challenge `revealResults` opened): that
   * session's statement, with the reason the auditor gave when asking.
   */
  completeRevealSignIn(auditor: Person, proof: StepUpProof): Promise<{ sessionId: string; seq: number; reason: string; outcome: RevealOutcome }> {
    return this.results.completeSignIn(auditor, proof);
  }

  loginOf(person: Person): string {
    return this.people.loginOf(person);
  }

  /**
   * `whocan`: a dry run of policy for a target. Asked for a person, it answers only about a target
   * they may request (NotARequester otherwise, as `request` would say).
   */
  async whocan(target: string, asker?: Person): Promise<{ policy: TargetPolicy; approvers: { entry: string; name: string | null }[] }> {
    if (asker) {
      const requestable = await this.knownTarget(asker, target);
      if (!requestable.some((t) => t.name === target)) throw new NotARequester(target);
    }
    return this.people.whocan(target);
  }

  /**
   * Throws UnknownTarget when no target has this name, listing only the targets `person` may
   * request (never every target's name); returns those targets.
   */
  async knownTarget(person: Person, target: string): Promise<TargetPolicy[]> {
    const requestable = await this.people.requestable(person);
    if (!this.targets().some((t) => t.name === target)) throw new UnknownTarget(target, requestable.map((t) => t.name));
    return requestable;
  }

  /** The person's identity as policy sees it, groups included. */
  identity(person: Person): Promise<Identity> {
    return this.people.identity(person);
  }

  /** See PeopleService.identityOf: who a sign-in would be, without storing anyone. */
  identityOf(ref: IdentityRef, oidcGroups?: readonly string[]): Promise<{ person: Person | undefined; identity: Identity }> {
    return this.people.identityOf(ref, oidcGroups);
  }

  /** The `groups` claim of a verified OIDC sign-in: the person's OIDC groups from now on. */
  recordOidcGroups(person: Person, groups: readonly string[]): Promise<void> {
    return this.people.recordOidcGroups(person, groups);
  }

  /** A fresh fetch of the Slack user groups policy names (the background refresh). */
  replaceSlackUserGroups(groups: readonly SlackUserGroup[]): Promise<void> {
    return this.people.replaceSlackUserGroups(groups);
  }

  // ---------------------------------------------------------------- requests

  /** Asks for access: now, or from `startsAt` (a scheduled grant); `once` ends it with its first session. */
  request(
    requester: Person,
    input: { target: string; duration: string | number; reason: string; origin?: string; startsAt?: Date | undefined; once?: boolean | undefined },
  ): Promise<AccessRequest & { autoApproved?: AutoApproved }> {
    return this.requests.request(requester, input);
  }

  /** Break-glass: the grant at once, no approval, for people the target's `breakGlass.allow` names. */
  breakGlass(
    requester: Person,
    input: { target: string; duration: string | number; reason: string; origin?: string | undefined; once?: boolean | undefined },
  ): Promise<{ request: AccessRequest; grant: Grant; connection: ConnectionLine; review: BreakGlassReview }> {
    return this.breakGlassReviews.use(requester, input);
  }

  /** Acknowledge or flag a break-glass use (an approver of the target, not its user). */
  reviewBreakGlass(reviewer: Person, input: { reviewId: string; verdict: "acknowledged" | "flagged"; note?: string | undefined }): Promise<BreakGlassReview> {
    return this.breakGlassReviews.review(reviewer, input);
  }

  getBreakGlassReview(reviewId: string): Promise<BreakGlassReview> {
    return this.breakGlassReviews.get(reviewId);
  }

  breakGlassSnapshot(review: BreakGlassReview): Promise<BreakGlassSnapshot> {
    return this.breakGlassReviews.snapshot(review);
  }

  /** Break-glass reviews still open, oldest first. */
  openBreakGlassReviews(): Promise<BreakGlassReview[]> {
    return this.breakGlassReviews.open();
  }

  /** The grant-start job: issues an approved scheduled request's grant once its start has come. */
  issueScheduled(requestId: string): Promise<GrantStartOutcome> {
    return this.grants.issueScheduled(requestId);
  }

  /** Approved scheduled requests not issued yet (the reconciler). */
  scheduledRequests(): Promise<AccessRequest[]> {
    return this.requests.scheduled();
  }

  getRequest(requestId: string): Promise<AccessRequest> {
    return this.requests.get(requestId);
  }

  checkCanDecide(person: Person, requestId: string): Promise<AccessRequest> {
    return this.requests.checkCanDecide(person, requestId);
  }

  decisionsOf(requestId: string): Promise<(Decision & { approverName: string })[]> {
    return this.requests.decisionsOf(requestId);
  }

  decide(
    approver: Person,
    input: { requestId: string; verdict: "approve" | "deny"; reason?: string | undefined; stepUp?: StepUpProof | undefined },
  ): Promise<DecideResult> {
    return this.requests.decide(approver, input);
  }

  expireRequest(requestId: string): Promise<AccessRequest | undefined> {
    return this.requests.expire(requestId);
  }

  pendingRequests(): Promise<AccessRequest[]> {
    return this.requests.pending();
  }

  /** `list`: my pending requests and live grants. */
  async list(person: Person): Promise<{ requests: AccessRequest[]; grants: Grant[]; scheduled: AccessRequest[] }> {
    const [requests, grants, scheduled] = await Promise.all([this.requests.pendingOf(person), this.grants.liveGrantsOf(person), this.requests.scheduled(person)]);
    return { requests, grants, scheduled };
  }

  /**
   * `pending`: what waits for this person's decision, oldest first (requests, extensions, held
   * statements, break-glass reviews), each with where its message is on `platform`.
   */
  inbox(person: Person, options: { platform?: string | undefined; limit?: number | undefined } = {}): Promise<Inbox> {
    return this.inboxes.of(person, options);
  }

  // ---------------------------------------------------------------- step-up approval

  stepUpLink(challengeId: string): string {
    return this.stepUp.link(challengeId);
  }

  stepUpChallenge(challengeId: string): Promise<StepUpChallenge> {
    return this.stepUp.challenge(challengeId);
  }

  startStepUpLogin(challengeId: string, login: { state: string; nonce: string; codeVerifier: string }): Promise<void> {
    return this.stepUp.startLogin(challengeId, login);
  }

  stepUpChallengeByState(state: string): Promise<StepUpChallenge | undefined> {
    return this.stepUp.challengeByState(state);
  }

  approveWithStepUp(person: Person, proof: StepUpProof): Promise<DecideResult> {
    return this.requests.approveWithStepUp(person, proof);
  }

  /**
   * What a completed step-up sign-in is for: an approval, or a break-glass on a `stepUp` target
   * (the requester's own sign-in, after which the grant is issued).
   */
  async completeStepUp(
    person: Person,
    proof: StepUpProof,
  ): Promise<
    | { kind: "approval"; result: DecideResult }
    | { kind: "break-glass"; result: { request: AccessRequest; grant: Grant; connection: ConnectionLine; review: BreakGlassReview } }
    | { kind: "auto-approval"; result: { request: AccessRequest; grant: Grant; connection: ConnectionLine; rule: string } }
  > {
    const challenge = await this.stepUp.challenge(proof.challengeId);
    const request = await this.requests.get(challenge.requestId);
    if (request.breakGlass) return { kind: "break-glass", result: await this.breakGlassReviews.completeSignIn(person, proof) };
    // The requester's own challenge: an auto-approval rule's approval waiting for their sign-in.
    if (challenge.approverId === request.requesterId) return { kind: "auto-approval", result: await this.requests.completeRuleSignIn(person, proof) };
    return { kind: "approval", result: await this.requests.approveWithStepUp(person, proof) };
  }

  // ---------------------------------------------------------------- grants

  issueGrant(requestId: string, by: Person): Promise<{ grant: Grant; connection?: ConnectionLine }> {
    return this.grants.issue(requestId, by);
  }

  connectionLine(target: string, login: string, secret: string): ConnectionLine {
    return this.grants.connectionLine(target, login, secret);
  }

  getGrant(grantId: string): Promise<Grant> {
    return this.grants.get(grantId);
  }

  liveGrantOf(person: Person, target: string): Promise<Grant> {
    return this.grants.liveOf(person, target);
  }

  activeGrants(): Promise<Grant[]> {
    return this.grants.active();
  }

  /** Whether `actor` may extend the grant (the Extend form's check); returns the live grant. */
  checkCanExtend(actor: Person, grantId: string): Promise<Grant> {
    return this.grants.checkCanExtend(actor, grantId);
  }

  extend(actor: Person, input: { grantId: string; duration: string | number; reason?: string }): Promise<ExtendResult> {
    return this.grants.extend(actor, input);
  }

  revoke(actor: Person, input: { grantId: string; reason?: string | undefined }): Promise<Grant> {
    return this.grants.revoke(actor, input);
  }

  /** Ends a grant whose time is up; `foundBy` is what noticed (the expiry job unless said). */
  expire(grantId: string, foundBy?: ExpiryFinder): Promise<ExpireOutcome> {
    return this.grants.expire(grantId, foundBy);
  }

  /**
   * Expires the grant if it is still marked active past its end; does nothing otherwise. For a
   * proxy whose session timer ran out or that refused a login for an overdue grant, so a lost
   * expiry job does not leave the grant looking live until the reconciler's next round.
   */
  expireIfOverdue(grantId: string, foundBy: ExpiryFinder = "login"): Promise<ExpireOutcome | undefined> {
    return this.grants.expireIfOverdue(grantId, foundBy);
  }

  loginCredential(login: string, target: string): Promise<{ grant: Grant | undefined; verifier: ScramVerifier }> {
    return this.grants.loginCredential(login, target);
  }

  checkCredential(input: { login?: string | undefined; target: string; secret: string }): Promise<Grant> {
    return this.grants.checkCredential(input);
  }
}

export { BrokerError };
