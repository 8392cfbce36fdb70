import type { IncomingMessage, ServerResponse } from "node:http";
import {
  CloudAdapter,
  ConfigurationBotFrameworkAuthentication,
  TeamsActivityHandler,
  TurnContext,
  type AdaptiveCardInvokeResponse,
  type AdaptiveCardInvokeValue,
} from "botbuilder";
import type { ConnectionOptions } from "bullmq";
import { parseDuration } from "../../config/duration.js";
import type { Config } from "../../config/schema.js";
import type { Database } from "../../db/client.js";
import { chatIdentities } from "../../db/schema.js";
import { desc, eq } from "drizzle-orm";
import {
  GrantNotActive,
  NotAllowed,
  SessionBroker,
  StepUpRequired,
  type Broker,
  type DecideResult,
  type Person,
  type TypedEvents,
} from "../../broker/index.js";
import type { HttpServer } from "../../infra/web/http-server.js";
import { CHAT_OUTBOX, outboxJobId } from "../chat-outbox.js";
import type { Logger } from "../../infra/logger.js";
import type { JobOwnership } from "../../infra/job-ownership.js";
import type { EphemeralTarget } from "../chat-port.js";
import { errorView, runCommand } from "../commands.js";
import {
  ADAPTIVE_CARD_CONTENT_TYPE,
  denyReasonCard,
  extendDurationCard,
  toAdaptiveCard,
  type AdaptiveCard,
  type CardActionData,
  type CardSubject,
} from "../render/adaptive-card.js";
import { adapterShutdown, PlatformDelivery, type ChatAdapter } from "../platform-delivery.js";
import { chatUserIdOf, loadGrantState, loadHeldState, loadRequestState } from "../request-state.js";
import { connectionView, grantCardView, heldView, noticeView, requestView, type MessageView } from "../view-model.js";
import { ConversationStore } from "./conversation-store.js";
import { TeamsChatPort } from "./teams-port.js";

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

class IdentityUnavailable extends Error {
  constructor() {
    super("Could not look you up in Teams just now; please try again in a moment.");
    this.name = "IdentityUnavailable";
  }
}

/** The person has no email in Teams: approver lists and the proxy's login name need one. */
class NoEmail extends Error {
  constructor() {
    super("Teams did not tell us your email address, so jitgate cannot tell who you are.");
    this.name = "NoEmail";
  }
}

const isCardData = (value: unknown): value is CardActionData => {
  const data = value as Partial<CardActionData> | null;
  return (
    typeof data === "object" &&
    data !== null &&
    data.jitgate === 1 &&
    (data.subject === "request" || data.subject === "grant" || data.subject === "held") &&
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
    refreshUserIds: async () =>
      (
        await db
          .select({ id: chatIdentities.externalId })
          .from(chatIdentities)
          .where(eq(chatIdentities.platform, "teams"))
          .orderBy(desc(chatIdentities.updatedAt))
          .limit(60)
      ).map((row) => row.id),
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
  const sessions = new SessionBroker(broker);

  const answer = async (to: EphemeralTarget, view: MessageView) => {
    await outbox.enqueue({ kind: "ephemeral", platform: "teams", to, view });
  };

  const identify = async (context: TurnContext): Promise<Person> => {
    let user;
    try {
      user = await port.resolveSender(context);
    } catch (error) {
      logger.warn({ err: error, user: context.activity.from.id }, "Teams member lookup failed");
      throw new IdentityUnavailable();
    }
    if (!user.email) throw new NoEmail();
    return broker.identify({ platform: "teams", externalId: user.externalId, email: user.email, displayName: user.displayName });
  };

  const fromOurTenant = (context: TurnContext) => {
    if (!config.tenantId) return true;
    const tenant = (context.activity.channelData as { tenant?: { id?: unknown } } | undefined)?.tenant?.id ?? context.activity.conversation?.tenantId;
    return tenant === config.tenantId;
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

  /** The requester's 1:1 message with the connection line: from the decision's result, never from an event. */
  const deliverConnection = async (result: DecideResult): Promise<string | undefined> => {
    const { grant, connection } = result;
    if (!grant || !connection) return undefined;
    const user = await chatUserIdOf(db, grant.personId, "teams");
    if (!user) {
      logger.warn({ grant: grant.id }, "the requester has no Teams identity; the connection line was not delivered");
      return `Approved, but the requester is not known in Teams: grant ${grant.id} has no delivered connection line.`;
    }
    const view = connectionView({ target: grant.target, grantId: grant.id, line: connection.line, expiresAt: grant.expiresAt }, broker.clock.now());
    await outbox.enqueue({ kind: "dm", platform: "teams", requestId: grant.requestId, user, view }, { secret: true, jobId: outboxJobId("teams", "dm", grant.id) });
    return undefined;
  };

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
    return view;
  };

  const cardResponse = (card: AdaptiveCard): AdaptiveCardInvokeResponse => ({ statusCode: 200, type: ADAPTIVE_CARD_CONTENT_TYPE, value: card });
  const withNotice = (view: MessageView, notice: string): MessageView => ({ ...view, lines: [...(view.lines ?? []), notice] });

  const onCardAction = async (context: TurnContext, invoke: AdaptiveCardInvokeValue): Promise<AdaptiveCardInvokeResponse> => {
    const data: unknown = invoke.action?.data;
    if (!fromOurTenant(context) || !isCardData(data)) {
      return { statusCode: 400, type: "application/vnd.microsoft.error", value: { code: "BadRequest", message: "not a jitgate card" } };
    }
    const verb = invoke.action.verb;
    let person: Person | undefined;
    try {
      person = await identify(context);
      let notice: string | undefined;
      switch (verb) {
        case "refresh":
          break;
        case "approve":
          notice = await deliverConnection(await broker.decide(person, { requestId: data.id, verdict: "approve" }));
          break;
        case "deny": {
          await broker.checkCanDecide(person, data.id);
          return cardResponse(denyReasonCard(await currentView("request", data.id), data.id));
        }
        case "deny-confirm": {
          const reason = typeof data.reason === "string" && data.reason.trim() !== "" ? data.reason.trim().slice(0, 500) : undefined;
          await broker.decide(person, { requestId: data.id, verdict: "deny", ...(reason ? { reason } : {}) });
          break;
        }
        case "approve-statement":
        case "deny-statement":
          await sessions.decide(person, { heldId: data.id, verdict: verb === "approve-statement" ? "approved" : "denied" });
          break;
        case "revoke":
          await broker.revoke(person, { grantId: data.id });
          break;
        case "extend": {
          const grant = await broker.getGrant(data.id);
          if (grant.state !== "active" || grant.expiresAt.getTime() <= broker.clock.now().getTime()) {
            throw new GrantNotActive(grant.id, grant.state === "active" ? "expired" : grant.state);
          }
          if (person.id !== grant.personId && !(await broker.isApprover(grant.target, person))) {
            throw new NotAllowed(`only the holder or an approver of ${grant.target} may extend ${grant.id}`);
          }
          return cardResponse(extendDurationCard(await currentView("grant", data.id), data.id));
        }
        case "extend-confirm": {
          const duration = typeof data.duration === "string" ? data.duration.trim() : "";
          if (parseDuration(duration) === undefined) {
            return cardResponse(extendDurationCard(withNotice(await currentView("grant", data.id), "Not a duration like 30m, 2h, 1d"), data.id));
          }
          const result = await broker.extend(person, { grantId: data.id, duration });
          if (result.kind === "requested") notice = `Extension request ${result.request.id} sent for approval.`;
          break;
        }
        default:
          return { statusCode: 400, type: "application/vnd.microsoft.error", value: { code: "BadRequest", message: `unknown verb ${verb}` } };
      }
      const view = await viewFor(person, data.subject, data.id);
      return cardResponse(toAdaptiveCard(notice ? withNotice(view, notice) : view));
    } catch (error) {
      // The clicker alone sees why nothing happened; the card everyone sees is unchanged.
      const message =
        error instanceof IdentityUnavailable || error instanceof NoEmail
          ? error.message
          : (() => {
              const { view, unexpected } = errorView(error);
              if (unexpected) logger.error({ err: error, verb }, "Teams card action failed");
              return view.text;
            })();
      // A step-up link must open in a browser: a TextRun is never a link, so it gets a button too
      // (https://adaptivecards.io/explorer/Action.OpenUrl.html).
      const openLink = error instanceof StepUpRequired ? { extraActions: [{ type: "Action.OpenUrl", title: "Sign in to approve", url: error.link }] } : {};
      let view: MessageView;
      try {
        view = await viewFor(person, data.subject, data.id);
      } catch {
        view = noticeView(message);
        return cardResponse(toAdaptiveCard(view, openLink));
      }
      return cardResponse(toAdaptiveCard(withNotice(view, message), openLink));
    }
  };

  const onMessage = async (context: TurnContext) => {
    if (!fromOurTenant(context)) {
      logger.warn({ tenant: context.activity.conversation?.tenantId }, "ignored a Teams message from another tenant");
      return;
    }
    await rememberPersonalChat(context);
    const to: EphemeralTarget = { channel: context.activity.conversation.id, user: context.activity.from.id };
    const text = commandText(context);
    try {
      const person = await identify(context);
      const outcome = await runCommand({ broker, person, command: TEAMS_COMMAND, origin: "teams" }, text);
      if (outcome.failure) logger.error({ err: outcome.failure, command: text.split(/\s+/)[0] }, "command failed");
      await answer(to, outcome.view);
    } catch (error) {
      if (error instanceof IdentityUnavailable || error instanceof NoEmail) return answer(to, noticeView(error.message));
      const { view, unexpected } = errorView(error);
      if (unexpected) logger.error({ err: error }, "Teams command failed");
      await answer(to, view);
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

  // Turns in progress: shutdown waits for them.
  const inflight = new Set<Promise<void>>();
  let closed = false;
  const drain = async () => {
    while (inflight.size > 0) await Promise.allSettled([...inflight]);
  };

  await delivery.start();
  http.route("POST", TEAMS_MESSAGES_PATH, async (req, res) => {
    if (closed) {
      res.writeHead(503, { "retry-after": "5" }).end();
      return;
    }
    const running = receiveActivity(req, res, (request, response) => adapter.process(request, response, (context) => bot.run(context)));
    inflight.add(running);
    try {
      await running;
    } finally {
      inflight.delete(running);
    }
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
      status = code;
    },
    header(name: string, value: unknown) {
      res.setHeader(name, String(value));
    },
    send(payload: unknown) {
      if (res.headersSent) return;
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

