import type { Broker, BrokerEventName, BrokerEvents, RequestSnapshot, TypedEvents } from "../broker/index.js";
import { outboxJobId, type EnqueueOptions } from "./chat-outbox.js";
import type { ChatDelivery } from "./chat-delivery.js";
import { createHash } from "node:crypto";
import type { ChatPlatform } from "./chat-port.js";
import { threadRequestOf } from "./request-state.js";
import {
  autoApprovalReply,
  blockedReply,
  breakGlassAlertView,
  breakGlassState,
  formatTime,
  decisionReply,
  grantExpiredReply,
  grantExtendedReply,
  grantRevokedReply,
  requestExpiredReply,
  sessionSummaryView,
  resultsRevealedReply,
  shellStartedReply,
  type MessageView,
} from "./view-model.js";

export interface RequestRendererOptions {
  broker: Broker;
  /** The cluster's events (`gateway.cluster.events`): every replica's, received by every replica. */
  events: TypedEvents;
  platform: ChatPlatform;
  enqueue: (delivery: ChatDelivery, options: EnqueueOptions) => Promise<void>;
}

/**
 * Renders domain events into the chat the request came from: the root message is refreshed and the
 * event is a reply in its thread. Every replica hears every cluster event and enqueues the same
 * jobs; the job ids come from the event (`decided|req_…|dec_…`), so BullMQ keeps one and the
 * message is posted once cluster-wide.
 */
export class RequestRenderer {
  readonly #detach: (() => void)[] = [];

  constructor(private readonly options: RequestRendererOptions) {}

  start(): void {
    if (this.#detach.length > 0) return;
    const { events } = this.options;
    const on = <K extends BrokerEventName>(name: K, handle: (payload: BrokerEvents[K]) => Promise<void>) =>
      this.#detach.push(events.on(name, handle));

    on("request.created", async ({ request }) => {
      if (!(await this.#ours(request))) return;
      await this.#enqueue({ kind: "root", platform: this.options.platform, requestId: request.id }, "root", request.id);
    });
    on("request.decided", async ({ request, decision, approvals, required }) => {
      const thread = await this.#ours(request);
      if (!thread) return;
      const view = decisionReply({ approverName: decision.approverName, verdict: decision.verdict, reason: decision.reason, approvals, required });
      await this.#reply(thread, view, "decided", request.id, decision.id);
      await this.#refresh(request.id, "decided", decision.id);
    });
    on("request.expired", async ({ request }) => {
      const thread = await this.#ours(request);
      if (!thread) return;
      await this.#reply(thread, requestExpiredReply(), "expired", request.id);
      await this.#refresh(request.id, "expired");
    });
    on("grant.issued", async ({ grant, request }) => {
      if (!(await this.#ours(request))) return;
      await this.#enqueue(
        { kind: "card", platform: this.options.platform, threadRequestId: request.id, grantId: grant.id },
        "card",
        grant.id,
      );
      await this.#refresh(request.id, "issued", grant.id);
    });
    on("grant.extended", async ({ grant, byName }) => {
      const thread = await this.#grantThread(grant.requestId);
      if (!thread) return;
      const expiresAt = new Date(grant.expiresAt);
      const view = grantExtendedReply({ byName, expiresAt }, this.options.broker.clock.now());
      await this.#reply(thread, view, "extended", grant.id, expiresAt.getTime());
      await this.#refresh(thread, "extended", grant.id, expiresAt.getTime());
    });
    on("grant.revoked", async ({ grant, byName, reason }) => {
      const thread = await this.#grantThread(grant.requestId);
      if (!thread) return;
      await this.#reply(thread, grantRevokedReply({ byName, reason }), "revoked", grant.id);
      await this.#refresh(thread, "revoked", grant.id);
    });
    on("grant.expired", async ({ grant }) => {
      const thread = await this.#grantThread(grant.requestId);
      if (!thread) return;
      const view = grantExpiredReply({ expiresAt: new Date(grant.expiresAt) }, this.options.broker.clock.now());
      await this.#reply(thread, view, "grant-expired", grant.id);
      await this.#refresh(thread, "grant-expired", grant.id);
    });
    on("request.scheduled", async ({ request, startsAt }) => {
      const thread = await this.#ours(request);
      if (!thread) return;
      const now = this.options.broker.clock.now();
      const end = new Date(new Date(startsAt).getTime() + request.durationMs);
      const view: MessageView = { text: `🗓 Scheduled: the grant starts at ${formatTime(new Date(startsAt), now)} and ends at ${formatTime(end, now)}` };
      await this.#reply(thread, view, "scheduled", request.id);
      await this.#refresh(request.id, "scheduled");
    });
    on("request.auto_approval", async ({ request, outcome, rule, facts, notes }) => {
      const thread = await this.#ours(request);
      if (!thread) return;
      await this.#reply(thread, autoApprovalReply({ outcome, rule, facts, notes }), "auto-approval", request.id, outcome);
      await this.#refresh(request.id, "auto-approval", outcome);
    });
    this.#breakGlassEvents(on);
    this.#proxyEvents(on);
  }

  /**
   * Break-glass: the root (posted on `request.created`) is the loud message in the approval channel;
   * the thread gets the Review card, redrawn when reviewed. Slack also posts to the target's
   * `breakGlass.alertChannel`, whichever platform the request came from.
   */
  #breakGlassEvents(on: <K extends BrokerEventName>(name: K, handle: (payload: BrokerEvents[K]) => Promise<void>) => void): void {
    on("break_glass.used", async ({ review }) => {
      if (this.options.platform === "slack" && review.alertChannel) {
        const view = breakGlassAlertView(breakGlassState(review), this.options.broker.clock.now());
        await this.#enqueue({ kind: "post", platform: "slack", channel: review.alertChannel, view }, "break-glass-alert", review.id);
      }
      if (!(await this.#grantThread(review.requestId))) return;
      await this.#enqueue({ kind: "review", platform: this.options.platform, requestId: review.requestId }, "review", review.id);
    });
    on("break_glass.reviewed", async ({ review }) => {
      if (!(await this.#grantThread(review.requestId))) return;
      await this.#enqueue({ kind: "review", platform: this.options.platform, requestId: review.requestId }, "review", review.id, review.state);
      const verdict = review.state === "flagged" ? "🚩 Flagged as misuse" : "✅ Acknowledged";
      await this.#reply(review.requestId, { text: `${verdict} by ${review.reviewerName ?? "an approver"}` }, "reviewed", review.id);
      await this.#refresh(review.requestId, "reviewed", review.id);
    });
  }

  /** Statements and commands the proxies hold or block go to the request's thread too. */
  #proxyEvents(on: <K extends BrokerEventName>(name: K, handle: (payload: BrokerEvents[K]) => Promise<void>) => void): void {
    on("statement.held", async ({ held }) => {
      if (!(await this.#grantThread(held.requestId))) return;
      await this.#enqueue({ kind: "held", platform: this.options.platform, heldId: held.id }, "held", held.id);
    });
    on("statement.decided", async ({ held, verdict }) => {
      if (!(await this.#grantThread(held.requestId))) return;
      await this.#enqueue({ kind: "held", platform: this.options.platform, heldId: held.id }, "held", held.id, verdict);
    });
    // One approval of several: the held message shows who approved so far.
    on("statement.approval", async ({ held, byId }) => {
      if (!(await this.#grantThread(held.requestId))) return;
      await this.#enqueue({ kind: "held", platform: this.options.platform, heldId: held.id }, "held", held.id, "approval", byId);
    });
    on("session.closed", async ({ session, summary }) => {
      const thread = await this.#grantThread(session.requestId);
      if (!thread) return;
      const view = sessionSummaryView({ ...summary, sessionId: session.id, personName: session.personName, target: session.target, protocol: session.protocol });
      // The session-summary job: one per session cluster-wide, its id from the session id.
      await this.#reply(thread, view, "summary", session.id);
    });
    on("session.shell", async ({ session, text, at }) => {
      const thread = await this.#grantThread(session.requestId);
      if (!thread) return;
      await this.#reply(thread, shellStartedReply({ personName: session.personName, target: session.target, text }), "shell", session.id, hashKey(`${at}\n${text}`));
    });
    on("results.revealed", async ({ session, seq, byName, reason, at }) => {
      const thread = await this.#grantThread(session.requestId);
      if (!thread) return;
      await this.#reply(thread, resultsRevealedReply({ byName, seq, sessionId: session.id, reason }), "revealed", session.id, hashKey(`${at}\n${seq}\n${byName}`));
    });
    on("statement.blocked", async ({ session, text, rule, at }) => {
      const thread = await this.#grantThread(session.requestId);
      if (!thread) return;
      const view = blockedReply({ personName: session.personName, target: session.target, text, rule });
      // One note per blocked statement, whichever replicas hear the event: the key is the event's own.
      await this.#reply(thread, view, "blocked", session.id, hashKey(`${at}\n${rule}\n${text}`));
    });
  }

  stop(): void {
    for (const detach of this.#detach.splice(0)) detach();
  }

  /** The id of the request whose thread this event belongs in, if that request came from our platform. */
  async #ours(request: RequestSnapshot): Promise<string | undefined> {
    if (request.kind === "access") return request.origin === this.options.platform ? request.id : undefined;
    const thread = await threadRequestOf(this.options.broker, request);
    return thread.origin === this.options.platform ? thread.id : undefined;
  }

  async #grantThread(requestId: string): Promise<string | undefined> {
    const request = await this.options.broker.getRequest(requestId);
    return request.origin === this.options.platform ? request.id : undefined;
  }

  #reply(threadRequestId: string, view: MessageView, ...key: (string | number)[]): Promise<void> {
    return this.#enqueue({ kind: "reply", platform: this.options.platform, threadRequestId, view, role: "reply" }, "reply", ...key);
  }

  #refresh(requestId: string, ...key: (string | number)[]): Promise<void> {
    return this.#enqueue({ kind: "refresh", platform: this.options.platform, requestId }, "refresh", requestId, ...key);
  }

  #enqueue(delivery: ChatDelivery, ...key: (string | number)[]): Promise<void> {
    return this.options.enqueue(delivery, { jobId: outboxJobId(this.options.platform, ...key) });
  }
}

const hashKey = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 16);
