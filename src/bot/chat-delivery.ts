import { UnrecoverableError } from "bullmq";
import type { Broker } from "../broker/index.js";
import type { Database } from "../db/client.js";
import { ChatRejected, type ChatPlatform, type ChatPort, type EphemeralTarget, type MessageRef } from "./chat-port.js";
import { chatUserIdOf, loadGrantState, loadHeldState, loadRequestState, MessageRefs, type MessageRole } from "./request-state.js";
import { breakGlassState, grantCardView, heldView, reminderView, requestView, reviewCardView, reviewReminderView, type BreakGlassState, type MessageView } from "./view-model.js";

/**
 * One message to deliver through the chat outbox. Root messages and cards are rendered when the job
 * runs, from the database: jobs may run late or out of order (a 429, a retry, another replica) and
 * still show the latest state.
 */
export type ChatDelivery =
  | { kind: "root"; platform: ChatPlatform; requestId: string }
  | { kind: "refresh"; platform: ChatPlatform; requestId: string }
  | { kind: "reply"; platform: ChatPlatform; threadRequestId: string; view: MessageView; role: "reply" }
  | { kind: "card"; platform: ChatPlatform; threadRequestId: string; grantId: string }
  /** A held statement's message in its request's thread: posted, then redrawn when decided. */
  | { kind: "held"; platform: ChatPlatform; heldId: string }
  | { kind: "dm"; platform: ChatPlatform; requestId: string; user: string; view: MessageView }
  /** The reminder before a grant's expiry, in its thread; rendered when due, skipped if the grant ended. */
  | { kind: "reminder"; platform: ChatPlatform; grantId: string }
  /** The Review card of a break-glass request, in its thread: posted, then redrawn when reviewed. */
  | { kind: "review"; platform: ChatPlatform; requestId: string }
  /** The daily reminder of a break-glass review still open; skipped once it is reviewed. */
  | { kind: "review-reminder"; platform: ChatPlatform; requestId: string }
  /** A message to a channel, tied to no request (the daily digest). */
  | { kind: "post"; platform: ChatPlatform; channel: string; view: MessageView }
  | { kind: "ephemeral"; platform: ChatPlatform; to: EphemeralTarget; view: MessageView };

/** The thread root is not posted yet (its own job is queued or retrying): retry later. */
export class RootNotPosted extends Error {
  constructor(readonly requestId: string) {
    super(`the root message of ${requestId} is not posted yet`);
    this.name = "RootNotPosted";
  }
}

const sameView = (a: MessageView, b: MessageView) => JSON.stringify(a) === JSON.stringify(b);

/** Runs outbox jobs against one platform's ChatPort. */
export class ChatDeliverer {
  readonly #refs: MessageRefs;

  constructor(
    private readonly port: ChatPort,
    private readonly broker: Broker,
    private readonly db: Database,
  ) {
    this.#refs = new MessageRefs(db, port.platform);
  }

  async deliver(job: ChatDelivery): Promise<void> {
    if (job.platform !== this.port.platform) throw new UnrecoverableError(`no ${job.platform} port on this outbox`);
    try {
      await this.#deliver(job);
    } catch (error) {
      if (error instanceof ChatRejected) throw new UnrecoverableError(error.message);
      throw error;
    }
  }

  async #deliver(job: ChatDelivery): Promise<void> {
    switch (job.kind) {
      case "root":
        return this.#postRoot(job.requestId);
      case "refresh": {
        const root = await this.#root(job.requestId);
        await this.#settle(root, null, () => this.#requestView(job.requestId));
        const card = await this.#refs.find(job.requestId, "card");
        const request = await this.broker.getRequest(job.requestId);
        if (card && request.grantId) await this.#settle(card, null, () => this.#cardView(request.grantId!));
        // An extension, a revoke or the end: the reminder already in the thread shows the new state.
        if (request.grantId) await this.#redrawReminder(request.grantId);
        return;
      }
      case "reply":
        await this.#reply(job.threadRequestId, job.view, job.role);
        return;
      case "card": {
        const existing = await this.#refs.find(job.threadRequestId, "card");
        if (existing) return this.#settle(existing, null, () => this.#cardView(job.grantId));
        const view = await this.#cardView(job.grantId);
        const ref = await this.#reply(job.threadRequestId, view, "card");
        // The grant may have ended while the card was on its way.
        return this.#settle(ref, view, () => this.#cardView(job.grantId));
      }
      case "held": {
        const { requestId } = await loadHeldState(this.broker, this.db, job.heldId);
        const role: MessageRole = `held:${job.heldId}`;
        const render = async () => heldView((await loadHeldState(this.broker, this.db, job.heldId)).held, this.broker.clock.now());
        const existing = await this.#refs.find(requestId, role);
        if (existing) return this.#settle(existing, null, render);
        const view = await render();
        const ref = await this.#reply(requestId, view, role);
        // A decision may have come while the message was on its way.
        return this.#settle(ref, view, render);
      }
      case "dm": {
        const ref = await this.port.dm(job.user, job.view);
        await this.#refs.record(job.requestId, "dm", ref);
        return;
      }
      case "ephemeral":
        return this.port.ephemeral(job.to, job.view);
      case "reminder": {
        const grant = await loadGrantState(this.broker, this.db, job.grantId);
        const now = this.broker.clock.now();
        if (grant.state !== "active" || grant.expiresAt.getTime() <= now.getTime()) return; // revoked or expired meanwhile
        const { requestId } = await this.broker.getGrant(job.grantId);
        const role: MessageRole = `reminder:${job.grantId}`;
        // One reminder per grant: after an extension the next one redraws it rather than adding another.
        const existing = await this.#refs.find(requestId, role);
        if (existing) return this.port.update(existing, await this.#reminderView(job.grantId));
        // A revoke or an extension while it was on its way redraws it through the grant's refresh.
        await this.#reply(requestId, await this.#reminderView(job.grantId), role);
        return;
      }
      case "post":
        await this.port.post(job.channel, job.view);
        return;
      case "review": {
        const render = () => this.#reviewView(job.requestId);
        const existing = await this.#refs.find(job.requestId, "review");
        if (existing) return this.#settle(existing, null, render);
        const view = await render();
        const ref = await this.#reply(job.requestId, view, "review");
        // A review may have come while the card was on its way.
        return this.#settle(ref, view, render);
      }
      case "review-reminder": {
        const review = await this.#reviewState(job.requestId);
        if (!review || review.state !== "open") return; // reviewed meanwhile
        await this.#reply(job.requestId, reviewReminderView(review, this.broker.clock.now()), "reply");
        return;
      }
    }
  }

  async #reviewState(requestId: string): Promise<BreakGlassState | undefined> {
    const review = await this.broker.breakGlassReviews.ofRequest(requestId);
    if (!review) return undefined;
    return breakGlassState(await this.broker.breakGlassSnapshot(review));
  }

  async #reviewView(requestId: string): Promise<MessageView> {
    const review = await this.#reviewState(requestId);
    if (!review) throw new UnrecoverableError(`request ${requestId} has no break-glass review`);
    return reviewCardView(review, this.broker.clock.now());
  }

  async #postRoot(requestId: string): Promise<void> {
    if (await this.#refs.find(requestId, "root")) return this.#deliver({ kind: "refresh", platform: this.port.platform, requestId });
    const request = await this.broker.getRequest(requestId);
    const view = await this.#requestView(requestId);
    let ref: MessageRef;
    if (request.kind === "extension" && request.grantId) {
      // An extension is asked for in the thread of the grant's own request, with its own buttons.
      const grant = await this.broker.getGrant(request.grantId);
      ref = await this.port.reply(await this.#root(grant.requestId), view);
    } else {
      ref = await this.port.post(this.port.approvalChannel, view);
    }
    await this.#refs.record(requestId, "root", ref);
    // Decisions may have come in while the message was on its way (a 429, an outage).
    await this.#settle(ref, view, () => this.#requestView(requestId));
  }

  async #reply(threadRequestId: string, view: MessageView, role: MessageRole): Promise<MessageRef> {
    const ref = await this.port.reply(await this.#root(threadRequestId), view);
    await this.#refs.record(threadRequestId, role, ref);
    return ref;
  }

  async #root(requestId: string): Promise<MessageRef> {
    const root = await this.#refs.find(requestId, "root");
    if (!root) throw new RootNotPosted(requestId);
    return root;
  }

  /**
   * Shows the current view on `ref`, and checks again after writing: two replicas refreshing the
   * same message concurrently can write in the wrong order, and the later check repairs that.
   */
  async #settle(ref: MessageRef, shown: MessageView | null, render: () => Promise<MessageView>): Promise<void> {
    for (let round = 0; round < 3; round += 1) {
      const next = await render();
      if (shown && sameView(next, shown)) return;
      await this.port.update(ref, next);
      shown = next;
    }
  }

  async #requestView(requestId: string): Promise<MessageView> {
    return requestView(await loadRequestState(this.broker, this.db, requestId), this.broker.clock.now());
  }

  /**
   * Redraws the grant's reminder, when one is in its thread. Once, not settled: the view counts down
   * ("in 9m 58s"), so two renders never match, and the next refresh redraws it anyway.
   */
  async #redrawReminder(grantId: string): Promise<void> {
    const reminder = await this.#refs.find((await this.broker.getGrant(grantId)).requestId, `reminder:${grantId}`);
    if (reminder) await this.port.update(reminder, await this.#reminderView(grantId));
  }

  /** The reminder, addressed to the holder: mentioned, and in their time zone when the platform gives one. */
  async #reminderView(grantId: string): Promise<MessageView> {
    const grant = await loadGrantState(this.broker, this.db, grantId);
    const user = await chatUserIdOf(this.db, (await this.broker.getGrant(grantId)).personId, this.port.platform);
    // A lookup that fails (rate limit, outage) shows UTC rather than holding the reminder back.
    const timeZone = user ? (await this.port.resolveUser(user).catch(() => undefined))?.timeZone : undefined;
    return reminderView(grant, user ? { user, name: grant.holderName } : undefined, this.broker.clock.now(), timeZone);
  }

  async #cardView(grantId: string): Promise<MessageView> {
    return grantCardView(await loadGrantState(this.broker, this.db, grantId), this.broker.clock.now());
  }
}
