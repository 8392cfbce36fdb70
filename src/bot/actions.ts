import { randomBytes } from "node:crypto";
import {
  SessionBroker,
  StepUpRequired,
  type AccessRequest,
  type Broker,
  type DecideResult,
  type Grant,
  type Person,
} from "../broker/index.js";
import type { Logger } from "../infra/logger.js";
import type { ChatPlatform } from "./chat-port.js";
import { errorView, runCommand } from "./commands.js";
import { noticeView, type MessageView } from "./view-model.js";

/**
 * What a person can do with a button or a form on any chat platform. `check-deny` and
 * `check-extend` come before a form (Slack's modal, Teams' card input): they say whether the form
 * may be shown at all.
 */
export type ChatAction =
  | { verb: "approve"; requestId: string }
  | { verb: "deny"; requestId: string; reason?: string | undefined }
  | { verb: "check-deny"; requestId: string }
  | { verb: "approve-statement" | "deny-statement"; heldId: string }
  | { verb: "revoke"; grantId: string }
  | { verb: "review-break-glass"; reviewId: string; verdict: "acknowledged" | "flagged" }
  | { verb: "extend"; grantId: string; duration: string }
  | { verb: "check-extend"; grantId: string }
  /** Nothing but who is looking (Teams redraws a card for each viewer). */
  | { verb: "refresh" };

export type ChatActionVerb = ChatAction["verb"];

/** What went right: a note for the clicker alone, and what a form needs. */
export interface ActionDone {
  ok: true;
  person: Person;
  notice?: string;
  /** check-deny: the request the reason form is about. */
  request?: AccessRequest;
  /** check-extend: the grant the duration form is about. */
  grant?: Grant;
}

/** Why nothing happened, written for the clicker; `errorId` (unexpected errors only) is also in the log line. */
export interface ActionFailure {
  ok: false;
  /** Undefined when the clicker could not even be identified. */
  person?: Person;
  message: string;
  errorId?: string;
  /** A step-up approval's one-time sign-in link (a platform that cannot link text gives it a button). */
  stepUpLink?: string;
  error: unknown;
}

export type ActionOutcome = ActionDone | ActionFailure;

/**
 * An error an adapter raises with a message written for the person (Slack's users.info failed,
 * Teams gave no email): shown as it is, not logged as a failure of ours.
 */
export class ShownError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Sends the requester the connection line of an approval; answers a note for the approver when it could not. */
export type DeliverConnection = (result: Pick<DecideResult, "request" | "grant" | "connection">) => Promise<string | undefined>;

export interface ChatActionsOptions {
  broker: Broker;
  platform: ChatPlatform;
  logger: Logger;
  deliverConnection: DeliverConnection;
}

/** What an unexpected failure says was not done, per verb: "jitgate could not <this>; nothing changed; try again". */
const ATTEMPTED: Record<ChatActionVerb, string> = {
  approve: "approve this request",
  deny: "deny this request",
  "check-deny": "deny this request",
  "approve-statement": "approve this statement",
  "deny-statement": "deny this statement",
  revoke: "revoke this grant",
  "review-break-glass": "review this break-glass use",
  extend: "extend this grant",
  "check-extend": "extend this grant",
  refresh: "show this card",
};

/** A short id that ties what a person was told to the log line of the same error. */
export function newErrorId(): string {
  return `err_${randomBytes(5).toString("hex")}`;
}

/**
 * The one place chat buttons and command words become broker calls, for Slack, Teams and the
 * console: adapters parse a click into a ChatAction and render the outcome; they never call the
 * broker for a decision themselves. Every outcome answers the clicker: a refusal with the broker's
 * own wording, an unexpected failure with what was not done and an error id that is in the log.
 * The broker's writes are transactions, so a failure leaves the request, grant or statement as it
 * was, still pending and its buttons still there.
 */
export class ChatActions {
  readonly #broker: Broker;
  readonly #sessions: SessionBroker;
  readonly #platform: ChatPlatform;
  readonly #logger: Logger;
  readonly #deliverConnection: DeliverConnection;

  constructor(options: ChatActionsOptions) {
    this.#broker = options.broker;
    this.#sessions = new SessionBroker(options.broker);
    this.#platform = options.platform;
    this.#logger = options.logger;
    this.#deliverConnection = options.deliverConnection;
  }

  /** Identifies the clicker (`identify` may fail with a ShownError) and runs the action; never throws. */
  async run(identify: () => Promise<Person>, action: ChatAction): Promise<ActionOutcome> {
    let person: Person | undefined;
    try {
      person = await identify();
      return { ok: true, person, ...(await this.#perform(person, action)) };
    } catch (error) {
      return this.failure(error, action.verb, person);
    }
  }

  /** A command's words (`request …`, `list`, …) as one answer; never throws. */
  async command(identify: () => Promise<Person>, command: string, text: string, timeZoneOf?: () => Promise<string | undefined>): Promise<MessageView> {
    const word = text.trim().split(/\s+/)[0] ?? "";
    let person: Person;
    try {
      person = await identify();
    } catch (error) {
      return noticeView(this.failure(error, { command: word }).message);
    }
    // Answers in the person's time zone when the platform gives one; a failed lookup answers in UTC.
    const timeZone = await timeZoneOf?.().catch(() => undefined);
    const deliverConnection: DeliverConnection = async (result) => {
      try {
        return await this.#deliverConnection(result);
      } catch (error) {
        const errorId = newErrorId();
        this.#logger.error({ err: error, errorId, platform: this.#platform, grant: result.grant?.id }, "the connection line could not be sent");
        return `The connection line of grant ${result.grant?.id ?? "?"} could not be sent (error id ${errorId}).`;
      }
    };
    const outcome = await runCommand({ broker: this.#broker, person, command, origin: this.#platform, deliverConnection, ...(timeZone ? { timeZone } : {}) }, text);
    if (outcome.failure === undefined) return outcome.view;
    return noticeView(this.failure(outcome.failure, { command: word }, person).message);
  }

  /**
   * What to tell the person about an error: a ShownError's or a domain error's own words, or, for
   * anything unexpected, what was not done and an error id that is logged with the error.
   */
  failure(error: unknown, what: ChatActionVerb | { command: string }, person?: Person): ActionFailure {
    const shown = { ok: false as const, error, ...(person ? { person } : {}) };
    if (error instanceof ShownError) return { ...shown, message: error.message };
    const { view, unexpected } = errorView(error);
    if (!unexpected) return { ...shown, message: view.text, ...(error instanceof StepUpRequired ? { stepUpLink: error.link } : {}) };
    const errorId = newErrorId();
    const attempted = typeof what === "string" ? ATTEMPTED[what] : `run "${what.command || "help"}"`;
    const context = typeof what === "string" ? { action: what } : { command: what.command };
    this.#logger.error({ err: error, errorId, platform: this.#platform, ...context }, "chat action failed");
    return { ...shown, errorId, message: `jitgate could not ${attempted}; nothing changed; try again (error id ${errorId}).` };
  }

  async #perform(person: Person, action: ChatAction): Promise<Omit<ActionDone, "ok" | "person">> {
    const broker = this.#broker;
    switch (action.verb) {
      case "approve": {
        const result = await broker.decide(person, { requestId: action.requestId, verdict: "approve" });
        const notice = await this.#sendConnection(result);
        return notice ? { notice } : {};
      }
      case "deny":
        await broker.decide(person, { requestId: action.requestId, verdict: "deny", reason: action.reason });
        return {};
      case "check-deny":
        return { request: await broker.checkCanDecide(person, action.requestId) };
      case "approve-statement":
      case "deny-statement":
        await this.#sessions.decide(person, { heldId: action.heldId, verdict: action.verb === "approve-statement" ? "approved" : "denied" });
        return {};
      case "revoke":
        await broker.revoke(person, { grantId: action.grantId });
        return {};
      case "extend": {
        const result = await broker.extend(person, { grantId: action.grantId, duration: action.duration });
        return result.kind === "requested" ? { notice: `Extension request ${result.request.id} sent for approval.` } : {};
      }
      case "check-extend":
        return { grant: await broker.checkCanExtend(person, action.grantId) };
      case "review-break-glass":
        await broker.reviewBreakGlass(person, { reviewId: action.reviewId, verdict: action.verdict });
        return {};
      case "refresh":
        return {};
    }
  }

  /**
   * The approval is committed by now: a failure to hand over the connection line must not be
   * reported as "nothing changed".
   */
  async #sendConnection(result: DecideResult): Promise<string | undefined> {
    try {
      return await this.#deliverConnection(result);
    } catch (error) {
      const errorId = newErrorId();
      this.#logger.error({ err: error, errorId, platform: this.#platform, grant: result.grant?.id }, "the connection line could not be sent");
      return `Approved, but the connection line of grant ${result.grant?.id ?? "?"} could not be sent to the requester (error id ${errorId}).`;
    }
  }
}
