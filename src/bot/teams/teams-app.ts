import type { IncomingMessage, ServerResponse } from "node:http";
import {
  CloudAdapter,
  ConfigurationBotFrameworkAuthentication,
  TeamsActivityHandler,
  TurnContext,
  type Activity,
  type AdaptiveCardInvokeResponse,
  type AdaptiveCardInvokeValue,
} from "botbuilder";
import type { ConnectionOptions } from "bullmq";
import { parseDuration } from "../../config/duration.js";
import type { Config } from "../../config/schema.js";
import type { Database } from "../../db/client.js";
import type { Broker, Person, TypedEvents } from "../../broker/index.js";
import { recentChatUserIds } from "../../broker/thread-state.js";
import type { HttpServer } from "../../infra/web/http-server.js";
import { CHAT_OUTBOX, outboxJobId } from "../chat-outbox.js";
import type { Logger } from "../../infra/logger.js";
import type { JobOwnership } from "../../infra/job-ownership.js";
import type { EphemeralTarget } from "../chat-port.js";
import { ChatActions, newErrorId, ShownError, type ActionFailure, type ChatAction } from "../actions.js";
import { connectionDelivery } from "../connection-delivery.js";
import {
  ADAPTIVE_CARD_CONTENT_TYPE,
  denyReasonCard,
  extendDurationCard,
  toAdaptiveCard,
  type AdaptiveCard,
  type CardActionData,
  type CardSubject,
} from "../render/adaptive-card.js";
import { adapterShutdown, InflightWork, PlatformDelivery, type ChatAdapter } from "../platform-delivery.js";
import { loadGrantState, loadHeldState, loadRequestState } from "../request-state.js";
import { breakGlassState, grantCardView, heldView, noticeView, requestView, reviewCardView, type ButtonView, type MessageView } from "../view-model.js";
import { ConversationStore } from "../../broker/teams-conversations.js";
import { sameTenant, TeamsChatPort } from "./teams-port.js";

export type TeamsConfig = NonNullable<Config["teams"]>;

/** The Teams outbox queue; each platform has its own, so one platform's rate limits never delay another's. */
export const TEAMS_OUTBOX = `${CHAT_OUTBOX}-teams`;
export const TEAMS_MESSAGES_PATH = "/api/messages";
/** How the command words are spelled in Teams usage lines: sent to the bot, with an @mention in a channel. */
export const TEAMS_COMMAND = "@jitgate";
// Activities are small JSON documents; anything bigger is refused before parsing.
const MAX_ACTIVITY_BYTES = 1024 * 1024;

type CredentialsFactory = NonNullable<ConstructorParameters<typeof ConfigurationBotFrameworkAuthentication>[1]>;

/**
 * Where the Bot Framework is: the public cloud unless overridden. Tests point these at a local
 * OpenID metadata server and connector; a sovereign cloud would too.
 */
export interface TeamsCloudOptions {
  /** `ToBotFromChannelOpenIdMetadataUrl`: where the keys that sign incoming activities are published. */
  openIdMetadataUrl?: string;
  /** `ToBotFromChannelTokenIssuer`: the `iss` of incoming tokens. */
  tokenIssuer?: string;
  /** How outgoing calls get their token (default: client credentials with the app password, through MSAL). */
  credentialsFactory?: CredentialsFactory;
}

/**
 * Bot Framework authentication: with `teams.appId` every incoming activity must carry a JWT signed
 * by a key of the channel's OpenID metadata, issued by the channel, for our app id, naming the
 * activity's serviceUrl (https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-authentication);
 * outgoing calls carry a token for the app. Without an app id, authentication is off (the
 * Emulator's local mode): nothing is checked, and the banner says so.
 */
export function createTeamsAuthentication(config: TeamsConfig, cloud: TeamsCloudOptions = {}): ConfigurationBotFrameworkAuthentication {
  const singleTenant = Boolean(config.appId && config.appPassword && config.tenantId);
  const settings: Record<string, string> = {
    MicrosoftAppId: config.appId ?? "",
    MicrosoftAppPassword: config.appPassword ?? "",
    MicrosoftAppType: singleTenant ? "SingleTenant" : "MultiTenant",
    ...(singleTenant && config.tenantId ? { MicrosoftAppTenantId: config.tenantId } : {}),
  };
  if (cloud.openIdMetadataUrl || cloud.tokenIssuer) {
    // Any "parameterized" setting switches botbuilder to a fully specified cloud: give all of them.
    Object.assign(settings, {
      ToBotFromChannelOpenIdMetadataUrl: cloud.openIdMetadataUrl ?? "https://login.botframework.com/v1/.well-known/openidconfiguration",
      ToBotFromChannelTokenIssuer: cloud.tokenIssuer ?? "https://api.botframework.com",
      ToChannelFromBotLoginUrl: singleTenant ? `https://login.microsoftonline.com/${config.tenantId}` : "https://login.microsoftonline.com/botframework.com",
      ToChannelFromBotOAuthScope: "https://api.botframework.com",
      ToBotFromEmulatorOpenIdMetadataUrl: "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
      OAuthUrl: "https://api.botframework.com",
      CallerId: "urn:botframework:azure",
    });
  }
  return new ChannelAuthentication(settings, cloud.credentialsFactory);
}

/** jsonwebtoken's errors for a bad signature, a wrong audience, an expired or not yet valid token. */
const JWT_ERRORS = new Set(["JsonWebTokenError", "TokenExpiredError", "NotBeforeError"]);

/**
 * botbuilder answers a token whose signature or claims jsonwebtoken rejects with HTTP 500 (the
 * error is not its AuthenticationError). Such a request is unauthenticated: it is re-run without a
 * token, which makes botbuilder refuse it with its own AuthenticationError, so the channel gets 401.
 */
class ChannelAuthentication extends ConfigurationBotFrameworkAuthentication {
  override async authenticateRequest(...args: Parameters<ConfigurationBotFrameworkAuthentication["authenticateRequest"]>) {
    try {
      return await super.authenticateRequest(...args);
    } catch (error) {
      if (error instanceof Error && JWT_ERRORS.has(error.name)) return super.authenticateRequest(args[0], "");
      throw error;
    }
  }
}

export interface StartTeamsOptions {
  config: TeamsConfig;
  broker: Broker;
  /** The cluster's events (`gateway.cluster.events`), not the local broker's. */
  events: TypedEvents;
  db: Database;
  http: HttpServer;
  connection: ConnectionOptions;
  prefix: string;
  logger: Logger;
  /** This deployment: its outbox jobs carry it, and its worker leaves another deployment's alone. */
  ownership?: JobOwnership | undefined;
  cloud?: TeamsCloudOptions;
}

export interface TeamsAdapter extends ChatAdapter {
  readonly authenticated: boolean;
  readonly port: TeamsChatPort;
}

class IdentityUnavailable extends ShownError {
  constructor() {
    super("Could not look you up in Teams just now; please try again in a moment.");
  }
}

/** A member another tenant brought in (external access, a shared channel): jitgate knows its own tenant's people only. */
class OutsideTenant extends ShownError {
  constructor() {
    super("You are not a member of this organization's Teams tenant, so jitgate cannot tell who you are.");
  }
}

/** The person has no email in Teams: approver lists and the proxy's login name need one. */
class NoEmail extends ShownError {
  constructor() {
    super("Teams did not tell us your email address, so jitgate cannot tell who you are.");
  }
}

/** A card's own buttons, for a card that could not be read back: the same click can be tried again. */
const RETRY_BUTTONS: Record<CardSubject, (id: string) => ButtonView[]> = {
  request: (id) => [
    { action: "approve", label: "Approve", value: id, style: "primary" },
    { action: "deny", label: "Deny", value: id, style: "danger" },
  ],
  grant: (id) => [
    { action: "extend", label: "Extend", value: id },
    { action: "revoke", label: "Revoke", value: id, style: "danger" },
  ],
  held: (id) => [
    { action: "approve-statement", label: "Approve", value: id, style: "primary" },
    { action: "deny-statement", label: "Deny", value: id, style: "danger" },
  ],
  review: (id) => [
    { action: "acknowledge-break-glass", label: "Acknowledge", value: id, style: "primary" },
    { action: "flag-break-glass", label: "Flag as misuse", value: id, style: "danger" },
  ],
};

const isCardData = (value: unknown): value is CardActionData => {
  const data = value as Partial<CardActionData> | null;
  return (
    typeof data === "object" &&
    data !== null &&
    data.jitgate === 1 &&
    (data.subject === "request" || data.subject === "grant" || data.subject === "held" || data.subject === "review") &&
    typeof data.id === "string"
  );
};

/** Teams puts `<at>jitgate</at>` (and HTML entities) in a channel message's text. */
export function commandText(context: TurnContext): string {
  const text = TurnContext.removeRecipientMention(context.activity) ?? context.activity.text ?? "";
  return text
    .replace(/<at>[^<]*<\/at>/gi, " ")
    .replace(/<[^>]+>/g, " ")
    .replace(/&nbsp;/g, " ")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&")
    .trim();
}

/**
 * The Teams adapter: botbuilder's CloudAdapter receives activities at POST /api/messages; command
 * words come as messages, clicks as Universal Action invokes answered with the clicker's card;
 * every message goes out through the Teams chat outbox; events are rendered into the request's
 * thread by a RequestRenderer for platform "teams".
 */
export async function startTeams(options: StartTeamsOptions): Promise<TeamsAdapter> {
  const { config, broker, db, http } = options;
  const logger = options.logger.child({ component: "teams" });
  const authenticated = Boolean(config.appId);
  const auth = createTeamsAuthentication(config, options.cloud);
  const adapter = new CloudAdapter(auth);
  adapter.onTurnError = async (_context, error) => {
    logger.error({ err: error }, "Teams turn failed");
  };
  const conversations = new ConversationStore(db);
  const port = new TeamsChatPort({
    adapter,
    appId: config.appId ?? "",
    serviceUrl: config.serviceUrl,
    tenantId: config.tenantId,
    approvalConversation: config.approvalConversation,
    conversations,
    // The Teams people jitgate has seen most recently: approvers and requesters are among them.
    refreshUserIds: () => recentChatUserIds(db, "teams", 60),
  });
  const delivery = new PlatformDelivery({
    ...options,
    port,
    // Without an app password (unauthenticated mode) the key is derived from configuration that is
    // not secret; that mode is for local development only.
    sealSecret: config.appPassword ?? `jitgate-teams-unauthenticated:${config.approvalConversation}`,
    logger,
  });
  const { outbox } = delivery;

  // Answers go through the outbox (rate limits, retries); one the outbox cannot take (Redis is
  // away) goes to Teams directly, so the person still hears what happened.
  const answer = async (to: EphemeralTarget, view: MessageView) => {
    try {
      await outbox.enqueue({ kind: "ephemeral", platform: "teams", to, view });
    } catch (error) {
      logger.warn({ err: error }, "the outbox could not take an answer; sending it directly");
      await port.ephemeral(to, view);
    }
  };

  const identify = async (context: TurnContext): Promise<Person> => {
    let user;
    try {
      user = await port.resolveSender(context);
    } catch (error) {
      logger.warn({ err: error, user: context.activity.from.id }, "Teams member lookup failed");
      throw new IdentityUnavailable();
    }
    if (user.outsider) {
      const activity = context.activity;
      logger.warn({ user: user.externalId, tenant: user.tenantId }, "refused a Teams member of another tenant");
      await broker
        .recordChatRefusal({ platform: "teams", reason: "unvouched_member", externalId: user.externalId, tenants: user.tenantId ? [user.tenantId] : [], activity: activityKind(activity) })
        .catch((error: unknown) => logger.error({ err: error }, "could not audit a refused Teams member"));
      throw new OutsideTenant();
    }
    if (!user.email) throw new NoEmail();
    return broker.identify({ platform: "teams", externalId: user.externalId, email: user.email, displayName: user.displayName });
  };

  /** The personal chat a person wrote in: where their connection line can go later, from any replica. */
  const rememberPersonalChat = async (context: TurnContext) => {
    const conversation = context.activity.conversation;
    if (conversation?.conversationType !== "personal") return;
    await conversations.save(context.activity.from.id, {
      conversationId: conversation.id,
      serviceUrl: context.activity.serviceUrl,
      tenantId: conversation.tenantId ?? config.tenantId ?? null,
      reference: JSON.parse(JSON.stringify(TurnContext.getConversationReference(context.activity))) as Record<string, unknown>,
    });
  };

  const deliverConnection = connectionDelivery({
    platform: "teams",
    broker,
    db,
    logger,
    send: async (user, view, grant) => {
      await outbox.enqueue({ kind: "dm", platform: "teams", requestId: grant.requestId, user, view }, { secret: true, jobId: outboxJobId("teams", "dm", grant.id) });
    },
  });
  const actions = new ChatActions({ broker, platform: "teams", logger, deliverConnection });

  /** What the card shows everyone now, read from the database. */
  const currentView = async (subject: CardSubject, id: string): Promise<MessageView> => {
    const now = broker.clock.now();
    switch (subject) {
      case "request":
        return requestView(await loadRequestState(broker, db, id), now);
      case "grant":
        return grantCardView(await loadGrantState(broker, db, id), now);
      case "held":
        return heldView((await loadHeldState(broker, db, id)).held, now);
      case "review": {
        const review = await broker.breakGlassReviews.ofRequest(id);
        if (!review) throw new Error(`request ${id} has no break-glass review`);
        return reviewCardView(breakGlassState(await broker.breakGlassSnapshot(review)), now);
      }
    }
  };

  /**
   * The card as this person should see it: buttons only for those who may press them, so a
   * requester or a bystander sees the status and who decides.
   */
  const viewFor = async (person: Person | undefined, subject: CardSubject, id: string): Promise<MessageView> => {
    const view = await currentView(subject, id);
    if (!person || !view.buttons) return view;
    if (subject === "request") {
      const request = await broker.getRequest(id);
      if (request.requesterId === person.id) return { ...view, buttons: [], lines: [...(view.lines ?? []), "Waiting for an approver; you will get a message when it is decided."] };
      if (!(await broker.isApprover(request.target, person))) {
        return { ...view, buttons: [], lines: [...(view.lines ?? []), `Only an approver of ${request.target} can decide this request.`] };
      }
    }
    if (subject === "review") {
      const request = await broker.getRequest(id);
      if (request.requesterId === person.id) return { ...view, buttons: [], lines: [...(view.lines ?? []), "Another approver of the target reviews your break-glass use."] };
      if (!(await broker.isApprover(request.target, person))) {
        return { ...view, buttons: [], lines: [...(view.lines ?? []), `Only an approver of ${request.target} can review this break-glass use.`] };
      }
    }
    return view;
  };

  const cardResponse = (card: AdaptiveCard): AdaptiveCardInvokeResponse => ({ statusCode: 200, type: ADAPTIVE_CARD_CONTENT_TYPE, value: card });
  const withNotice = (view: MessageView, notice: string): MessageView => ({ ...view, lines: [...(view.lines ?? []), notice] });

  /**
   * The clicker's card after a failure: the card as it is, with why nothing happened. When even the
   * card cannot be read (the database is away), the note with the card's own buttons, so the click
   * can be tried again from the same card.
   */
  const failedCard = async (failure: ActionFailure, subject: CardSubject, id: string): Promise<AdaptiveCardInvokeResponse> => {
    // A step-up link must open in a browser: a TextRun is never a link, so it gets a button too
    // (https://adaptivecards.io/explorer/Action.OpenUrl.html).
    const openLink = failure.stepUpLink ? { extraActions: [{ type: "Action.OpenUrl", title: "Sign in to approve", url: failure.stepUpLink }] } : {};
    let view: MessageView;
    try {
      view = withNotice(await viewFor(failure.person, subject, id), failure.message);
    } catch (error) {
      logger.warn({ err: error, errorId: failure.errorId }, "the card could not be read after a failed click");
      view = { ...noticeView(failure.message), buttons: RETRY_BUTTONS[subject](id) };
    }
    return cardResponse(toAdaptiveCard(view, openLink));
  };

  const onCardAction = async (context: TurnContext, invoke: AdaptiveCardInvokeValue): Promise<AdaptiveCardInvokeResponse> => {
    const data: unknown = invoke.action?.data;
    if (!isCardData(data)) {
      return { statusCode: 400, type: "application/vnd.microsoft.error", value: { code: "BadRequest", message: "not a jitgate card" } };
    }
    const verb = invoke.action.verb;
    let action: ChatAction | undefined;
    switch (verb) {
      case "refresh":
        break;
      case "approve":
        action = { verb: "approve", requestId: data.id };
        break;
      case "deny":
        action = { verb: "check-deny", requestId: data.id };
        break;
      case "deny-confirm": {
        const reason = typeof data.reason === "string" && data.reason.trim() !== "" ? data.reason.trim().slice(0, 500) : undefined;
        action = { verb: "deny", requestId: data.id, reason };
        break;
      }
      case "approve-statement":
      case "deny-statement":
        action = { verb, heldId: data.id };
        break;
      case "acknowledge-break-glass":
      case "flag-break-glass":
        action = { verb: "review-break-glass", reviewId: data.id, verdict: verb === "flag-break-glass" ? "flagged" : "acknowledged" };
        break;
      case "revoke":
        action = { verb: "revoke", grantId: data.id };
        break;
      case "extend":
        action = { verb: "check-extend", grantId: data.id };
        break;
      case "extend-confirm": {
        const duration = typeof data.duration === "string" ? data.duration.trim() : "";
        if (parseDuration(duration) === undefined) {
          try {
            return cardResponse(extendDurationCard(withNotice(await currentView("grant", data.id), "Not a duration like 30m, 2h, 1d"), data.id));
          } catch (error) {
            return failedCard(actions.failure(error, "extend"), data.subject, data.id);
          }
        }
        action = { verb: "extend", grantId: data.id, duration };
        break;
      }
      default:
        return { statusCode: 400, type: "application/vnd.microsoft.error", value: { code: "BadRequest", message: `unknown verb ${verb}` } };
    }
    const outcome = await actions.run(() => identify(context), action ?? { verb: "refresh" });
    // The clicker alone sees why nothing happened; the card everyone sees is unchanged.
    if (!outcome.ok) return failedCard(outcome, data.subject, data.id);
    try {
      if (action?.verb === "check-deny") return cardResponse(denyReasonCard(await currentView("request", data.id), data.id));
      if (action?.verb === "check-extend") return cardResponse(extendDurationCard(await currentView("grant", data.id), data.id));
      const view = await viewFor(outcome.person, data.subject, data.id);
      return cardResponse(toAdaptiveCard(outcome.notice ? withNotice(view, outcome.notice) : view));
    } catch (error) {
      // Only the card could not be drawn: after a check nothing changed; after an action it is done.
      if (!action || action.verb === "check-deny" || action.verb === "check-extend") {
        return failedCard(actions.failure(error, action?.verb ?? "refresh", outcome.person), data.subject, data.id);
      }
      const errorId = newErrorId();
      logger.error({ err: error, errorId, action: action.verb }, "the card could not be drawn after an action");
      const message = `Done, but this card could not be redrawn just now (error id ${errorId}); it shows the new state once it refreshes.`;
      return failedCard({ ok: false, person: outcome.person, message, errorId, error }, data.subject, data.id);
    }
  };

  const onMessage = async (context: TurnContext) => {
    // Only later, proactive messages need it: a failure here must not cost the person their answer.
    await rememberPersonalChat(context).catch((error: unknown) => logger.warn({ err: error, user: context.activity.from.id }, "could not store the personal chat"));
    const to: EphemeralTarget = { channel: context.activity.conversation.id, user: context.activity.from.id };
    // Teams sends the client's IANA time zone with each message (Activity.localTimezone): `from 22:00` is read in it.
    await answer(to, await actions.command(() => identify(context), TEAMS_COMMAND, commandText(context), async () => context.activity.localTimezone || undefined));
  };

  const refuseForeignActivity = async (context: TurnContext, tenants: string[]) => {
    const activity = context.activity;
    logger.warn({ user: activity.from?.id, tenants, type: activity.type }, "refused a Teams activity from another tenant");
    try {
      // What the activity names is kept short: the audit row is not a place to store what a sender chose.
      const named = tenants.map((tenant) => tenant.slice(0, 100));
      await broker.recordChatRefusal({ platform: "teams", reason: "foreign_tenant", externalId: activity.from?.id?.slice(0, 200) ?? null, tenants: named, activity: activityKind(activity) });
    } catch (error) {
      logger.error({ err: error }, "could not audit a refused Teams activity");
    }
  };

  class JitgateBot extends TeamsActivityHandler {
    constructor() {
      super();
      this.onMessage(async (context, next) => {
        await onMessage(context);
        await next();
      });
    }

    protected override onAdaptiveCardInvoke(context: TurnContext, invokeValue: AdaptiveCardInvokeValue): Promise<AdaptiveCardInvokeResponse> {
      return onCardAction(context, invokeValue);
    }
  }
  const bot = new JitgateBot();

  // Turns in progress: shutdown waits for them. A turn's error is the HTTP server's to answer (500).
  const inflight = new InflightWork((error) => logger.error({ err: error }, "Teams turn failed"));
  let closed = false;
  const drain = () => inflight.drain();

  await delivery.start();
  http.route("POST", TEAMS_MESSAGES_PATH, async (req, res) => {
    if (closed) {
      res.writeHead(503, { "retry-after": "5" }).end();
      return;
    }
    let failed: { error: unknown } | undefined;
    let foreign = false;
    // After botbuilder has authenticated the activity (a bad token stays 401), before the bot sees
    // it: one from another tenant, or naming none, does nothing and is answered 403 Forbidden, the
    // sender being known and refused (https://www.rfc-editor.org/rfc/rfc9110#section-15.5.4).
    const run = async (context: TurnContext) => {
      const tenants = activityTenants(context.activity);
      if (config.tenantId !== undefined && !fromTenant(tenants, config.tenantId)) {
        foreign = true;
        await refuseForeignActivity(context, tenants);
        return;
      }
      await bot.run(context);
    };
    await inflight.track(async () => {
      try {
        await receiveActivity(req, res, (request, response) => adapter.process(request, response, run), () => (foreign ? 403 : undefined));
      } catch (error) {
        failed = { error };
      }
    });
    if (failed) throw failed.error;
  });
  logger.info({ authenticated, approvalConversation: config.approvalConversation }, "Teams adapter started");

  return {
    authenticated,
    deliverConnection,
    port,
    outbox,
    ...adapterShutdown({
      receiver: async () => {
        closed = true;
        await drain();
      },
      outbox: () => delivery.close(drain),
    }),
  };
}

/**
 * The tenants an activity names: Teams puts the tenant in `channelData.tenant.id` and in
 * `conversation.tenantId` (https://learn.microsoft.com/microsoftteams/platform/bots/how-to/conversations/conversation-basics).
 */
export function activityTenants(activity: Pick<Activity, "channelData" | "conversation">): string[] {
  const channelData = activity.channelData as { tenant?: { id?: unknown } } | null | undefined;
  const named = [channelData?.tenant?.id, activity.conversation?.tenantId];
  return named.filter((tenant): tenant is string => typeof tenant === "string" && tenant !== "");
}

/**
 * From our tenant: at least one tenant named, and every one named is ours (no mixed claims).
 * Tenant ids are GUIDs, which are the same whatever their letters' case.
 */
export function fromTenant(tenants: string[], tenantId: string): boolean {
  return tenants.length > 0 && tenants.every((tenant) => sameTenant(tenant, tenantId));
}

/** What was refused, for the audit: the activity type, and a card action's verb. */
function activityKind(activity: Activity): string {
  const verb = (activity.value as { action?: { verb?: unknown } } | undefined)?.action?.verb;
  return activity.type === "invoke" && typeof verb === "string" ? `invoke:${verb.slice(0, 40)}` : String(activity.type ?? "unknown").slice(0, 40);
}

/** What CloudAdapter.process reads of a request (botbuilder's `Request`) and calls on a response (`Response`). */
interface ProcessRequest {
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
  method: string;
}
interface ProcessResponse {
  socket: unknown;
  status(code: number): void;
  header(name: string, value: unknown): void;
  send(payload: unknown): void;
  end(): void;
}

/**
 * CloudAdapter.process expects an Express-like request with a parsed body and response: the body
 * is read here (capped) and the response is a thin shim over Node's.
 */
async function receiveActivity(
  req: IncomingMessage,
  res: ServerResponse,
  process: (request: ProcessRequest, response: ProcessResponse) => Promise<void>,
  /** A status that replaces botbuilder's, decided by the turn (a refused tenant's 403). */
  statusOverride: () => number | undefined = () => undefined,
): Promise<void> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_ACTIVITY_BYTES) {
      res.writeHead(413).end();
      req.destroy();
      return;
    }
    chunks.push(chunk);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    res.writeHead(400, { "content-type": "text/plain" }).end("the body is not JSON");
    return;
  }
  let status = 200;
  const response: ProcessResponse = {
    socket: req.socket,
    status(code: number) {
      status = statusOverride() ?? code;
    },
    header(name: string, value: unknown) {
      res.setHeader(name, String(value));
    },
    send(payload: unknown) {
      if (res.headersSent || statusOverride() !== undefined) return;
      if (typeof payload === "string") {
        res.writeHead(status, { "content-type": "text/plain; charset=utf-8" }).write(payload);
      } else {
        res.writeHead(status, { "content-type": "application/json; charset=utf-8" }).write(JSON.stringify(payload));
      }
    },
    end() {
      if (!res.headersSent) res.writeHead(status);
      res.end();
    },
  };
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    res.writeHead(400, { "content-type": "text/plain" }).end("the body is not an activity");
    return;
  }
  await process({ body: body as Record<string, unknown>, headers: req.headers, method: req.method ?? "POST" }, response);
}

