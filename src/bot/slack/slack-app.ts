import {
  App,
  HTTPReceiver,
  LogLevel,
  SocketModeReceiver,
  type BlockAction,
  type ButtonAction,
  type Logger as BoltLogger,
  type ViewSubmitAction,
} from "@slack/bolt";
import type { ConnectionOptions } from "bullmq";
import { parseDuration } from "../../config/duration.js";
import type { Config } from "../../config/schema.js";
import type { Database } from "../../db/client.js";
import type { Broker, Person, TypedEvents } from "../../broker/index.js";
import type { HttpServer } from "../../infra/web/http-server.js";
import { CHAT_OUTBOX, outboxJobId } from "../chat-outbox.js";
import type { Logger } from "../../infra/logger.js";
import type { JobOwnership } from "../../infra/job-ownership.js";
import type { EphemeralTarget } from "../chat-port.js";
import { ChatActions, ShownError, type ActionDone, type ActionOutcome, type ChatAction } from "../actions.js";
import { connectionDelivery } from "../connection-delivery.js";
import { SLACK_ACTION_IDS } from "../render/block-kit.js";
import { adapterShutdown, InflightWork, PlatformDelivery, type ChatAdapter } from "../platform-delivery.js";
import { chatJobTarget } from "../scheduled-messages.js";
import type { ChatJobTarget } from "../../jobs/chat-targets.js";
import { noticeView, type MessageView } from "../view-model.js";
import { DENY_MODAL, EXTEND_MODAL, denyModal, extendModal, parseModalContext } from "./modals.js";
import { SlackChatPort, createSlackWebClient } from "./slack-port.js";
import { fetchNamedSlackGroups, type NamedSlackGroups } from "./slack-user-groups.js";

export type SlackConfig = NonNullable<Config["slack"]>;

/** The Slack outbox queue; each platform has its own, so one platform's rate limits never delay another's. */
export const SLACK_OUTBOX = `${CHAT_OUTBOX}-slack`;
export const SLACK_EVENTS_PATH = "/slack/events";

/**
 * Bolt's and the Web API client's logs, into ours. Debug is dropped: at that level the Web API
 * client writes request bodies, and a DM's body holds a connection line.
 */
export function boltLogger(logger: Logger): BoltLogger {
  let level = LogLevel.INFO;
  const text = (parts: unknown[]) =>
    parts.map((p) => (typeof p === "string" ? p : p instanceof Error ? p.message : String(p))).join(" ");
  return {
    debug: () => {},
    info: (...parts: unknown[]) => logger.info(text(parts)),
    warn: (...parts: unknown[]) => logger.warn(text(parts)),
    error: (...parts: unknown[]) => logger.error(text(parts)),
    setLevel: (next: LogLevel) => {
      level = next;
    },
    getLevel: () => level,
    setName: () => {},
  };
}

/**
 * Socket Mode when an app-level token is set; otherwise HTTP, where Bolt's HTTPReceiver verifies
 * each request's signature (v0 HMAC-SHA256 with the signing secret) and refuses requests more than
 * five minutes old (https://docs.slack.dev/authentication/verifying-requests-from-slack).
 */
export function createSlackReceiver(config: Omit<SlackConfig, "userGroupsRefresh">, logger: BoltLogger): HTTPReceiver | SocketModeReceiver {
  if (config.appToken) {
    return new SocketModeReceiver({
      appToken: config.appToken,
      logger,
      ...(config.apiUrl ? { installerOptions: { clientOptions: { slackApiUrl: config.apiUrl } } } : {}),
    });
  }
  if (!config.signingSecret) throw new Error("slack.signingSecret is required in HTTP mode");
  return new HTTPReceiver({ signingSecret: config.signingSecret, endpoints: SLACK_EVENTS_PATH, logger });
}

export interface StartSlackOptions {
  config: SlackConfig;
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
}

export interface SlackAdapter extends ChatAdapter {
  readonly mode: "http" | "socket";
  readonly port: SlackChatPort;
  /** Reminders and the digest (to `slack.digestChannel`); registered with the gateway's ChatJobTargets. */
  readonly jobTarget: ChatJobTarget;
  /**
   * Fetches the Slack user groups policy names and stores them for the broker (the
   * `slack-user-groups` job runs it); entries naming no group of the workspace are logged.
   */
  refreshUserGroups(named: NamedSlackGroups): Promise<{ groups: number; missing: string[] }>;
}

/** Could not look the clicking user up in Slack (users.info failed): no identity, no decision. */
class IdentityUnavailable extends ShownError {
  constructor() {
    super("Could not look you up in Slack just now; please try again in a moment.");
  }
}

/**
 * The Slack adapter: Bolt receives commands, clicks and modal submissions; every answer and every
 * message goes out through the Slack chat outbox; events from every replica are rendered into the
 * request's thread by the RequestRenderer.
 */
export async function startSlack(options: StartSlackOptions): Promise<SlackAdapter> {
  const { config, broker, db, http } = options;
  const logger = options.logger.child({ component: "slack" });
  const log = boltLogger(logger);
  const client = createSlackWebClient({ token: config.botToken, apiUrl: config.apiUrl, logger: log });
  const port = new SlackChatPort({ client, approvalChannel: config.approvalChannel });
  const delivery = new PlatformDelivery({ ...options, port, sealSecret: config.botToken, logger });
  const { outbox } = delivery;

  const receiver = createSlackReceiver(config, log);
  const app = new App({
    receiver,
    // No auth.test at start-up or per event: a Slack outage must not stop clicks from being decided.
    authorize: async () => ({ botToken: config.botToken }),
    logger: log,
    ...(config.apiUrl ? { clientOptions: { slackApiUrl: config.apiUrl } } : {}),
    ignoreSelf: false,
  });
  app.error(async (error) => {
    logger.error({ err: error }, "Slack listener failed");
  });

  // Work that runs after an ack: tracked so shutdown waits for it.
  const inflight = new InflightWork((error) => logger.error({ err: error }, "Slack handler failed"));
  const track = (work: () => Promise<void>) => inflight.track(work);
  const drain = () => inflight.drain();
  let closed = false;

  // Answers go through the outbox (rate limits, retries); one the outbox cannot take (Redis is
  // away) goes to Slack directly, so the person still hears what happened.
  const answer = async (to: EphemeralTarget, view: MessageView) => {
    try {
      await outbox.enqueue({ kind: "ephemeral", platform: "slack", to, view });
    } catch (error) {
      logger.warn({ err: error }, "the outbox could not take an answer; sending it directly");
      await port.ephemeral(to, view);
    }
  };
  const identify = async (userId: string): Promise<Person> => {
    let user;
    try {
      user = await port.resolveUser(userId);
    } catch (error) {
      logger.warn({ err: error, user: userId }, "users.info failed");
      throw new IdentityUnavailable();
    }
    return broker.identify({ platform: "slack", externalId: user.externalId, email: user.email, displayName: user.displayName });
  };

  const deliverConnection = connectionDelivery({
    platform: "slack",
    broker,
    db,
    logger,
    // In the requester's time zone when Slack says it; a failed lookup must not hold the line back.
    timeZoneOf: async (user) => (await port.resolveUser(user).catch(() => undefined))?.timeZone,
    send: async (user, view, grant) => {
      await outbox.enqueue({ kind: "dm", platform: "slack", requestId: grant.requestId, user, view }, { secret: true, jobId: outboxJobId("slack", "dm", grant.id) });
    },
  });
  const actions = new ChatActions({ broker, platform: "slack", logger, deliverConnection });

  /** The clicker's ephemeral answer: why nothing happened, or a note about what did. */
  const tell = async (to: EphemeralTarget, outcome: ActionOutcome) => {
    const text = outcome.ok ? outcome.notice : outcome.message;
    if (text) await answer(to, noticeView(text));
  };

  // ---------------------------------------------------------------- the slash command

  app.command(config.command, async ({ command, ack }) => {
    await ack(); // within 3 s, always; the answer follows as an ephemeral message
    await track(async () => {
      const to: EphemeralTarget = { channel: command.channel_id, user: command.user_id, responseUrl: command.response_url };
      await answer(
        to,
        await actions.command(() => identify(command.user_id), config.command, command.text, async () => (await port.resolveUser(command.user_id)).timeZone),
      );
    });
  });

  // ---------------------------------------------------------------- buttons

  const clicker = (body: BlockAction): EphemeralTarget => ({
    channel: body.channel?.id ?? body.user.id,
    user: body.user.id,
    responseUrl: body.response_url,
  });

  /**
   * A button: acked at once, then run through the action layer; `then` follows a success (a modal
   * to open) and its own failure is answered like the action's.
   */
  const onButton = (
    actionId: string,
    toAction: (value: string) => ChatAction,
    then?: (done: ActionDone, body: BlockAction<ButtonAction>) => Promise<void>,
  ) => {
    app.action<BlockAction<ButtonAction>>(actionId, async ({ ack, body, action }) => {
      await ack();
      await track(async () => {
        const to = clicker(body);
        const chatAction = toAction(action.value ?? "");
        const outcome = await actions.run(() => identify(body.user.id), chatAction);
        if (!outcome.ok || !then) return tell(to, outcome);
        try {
          await then(outcome, body);
        } catch (error) {
          await tell(to, actions.failure(error, chatAction.verb, outcome.person));
        }
      });
    });
  };

  onButton(SLACK_ACTION_IDS.approve, (requestId) => ({ verb: "approve", requestId }));
  // views.open is called at once, not through the outbox: its trigger_id expires in 3 seconds.
  onButton(
    SLACK_ACTION_IDS.deny,
    (requestId) => ({ verb: "check-deny", requestId }),
    async ({ request }, body) => {
      await client.views.open({ trigger_id: body.trigger_id, view: denyModal({ id: request!.id, channel: body.channel?.id ?? null }, request!.target) });
    },
  );
  onButton(SLACK_ACTION_IDS["approve-statement"], (heldId) => ({ verb: "approve-statement", heldId }));
  onButton(SLACK_ACTION_IDS["deny-statement"], (heldId) => ({ verb: "deny-statement", heldId }));
  onButton(SLACK_ACTION_IDS.revoke, (grantId) => ({ verb: "revoke", grantId }));
  onButton(SLACK_ACTION_IDS["acknowledge-break-glass"], (reviewId) => ({ verb: "review-break-glass", reviewId, verdict: "acknowledged" }));
  onButton(SLACK_ACTION_IDS["flag-break-glass"], (reviewId) => ({ verb: "review-break-glass", reviewId, verdict: "flagged" }));
  onButton(
    SLACK_ACTION_IDS.extend,
    (grantId) => ({ verb: "check-extend", grantId }),
    async ({ grant }, body) => {
      await client.views.open({ trigger_id: body.trigger_id, view: extendModal({ id: grant!.id, channel: body.channel?.id ?? null }, grant!.target, "1h") });
    },
  );

  // ---------------------------------------------------------------- modals

  app.view<ViewSubmitAction>(DENY_MODAL, async ({ ack, body, view }) => {
    await ack();
    await track(async () => {
      const context = parseModalContext(view.private_metadata);
      const to: EphemeralTarget = { channel: context?.channel ?? body.user.id, user: body.user.id };
      if (!context) return answer(to, noticeView("This form has lost its request; click Deny again."));
      const reason = view.state.values.reason?.reason?.value ?? undefined;
      await tell(to, await actions.run(() => identify(body.user.id), { verb: "deny", requestId: context.id, reason: reason ?? undefined }));
    });
  });

  app.view<ViewSubmitAction>(EXTEND_MODAL, async ({ ack, body, view }) => {
    const duration = view.state.values.duration?.duration?.value?.trim() ?? "";
    if (parseDuration(duration) === undefined) {
      await ack({ response_action: "errors", errors: { duration: "Not a duration like 30m, 2h, 1d" } });
      return;
    }
    await ack();
    await track(async () => {
      const context = parseModalContext(view.private_metadata);
      const to: EphemeralTarget = { channel: context?.channel ?? body.user.id, user: body.user.id };
      if (!context) return answer(to, noticeView("This form has lost its grant; click Extend again."));
      await tell(to, await actions.run(() => identify(body.user.id), { verb: "extend", grantId: context.id, duration }));
    });
  });

  // ---------------------------------------------------------------- start

  await delivery.start();
  let mode: "http" | "socket";
  if (receiver instanceof HTTPReceiver) {
    mode = "http";
    http.route("POST", SLACK_EVENTS_PATH, (req, res) => {
      if (closed) {
        res.writeHead(503, { "retry-after": "5" }).end();
        return;
      }
      receiver.requestListener(req, res);
    });
  } else {
    mode = "socket";
    // Socket Mode reconnects by itself; a Slack outage at start-up must not stop the gateway.
    app.start().catch((error: unknown) => logger.error({ err: error }, "Socket Mode could not connect; retrying"));
  }
  logger.info({ mode, command: config.command }, "Slack adapter started");

  let reportedMissing = "";
  return {
    mode,
    deliverConnection,
    port,
    outbox,
    async refreshUserGroups(named) {
      const { groups, missing } = await fetchNamedSlackGroups(client, named);
      await broker.replaceSlackUserGroups(groups);
      // Said once per change, not at every refresh.
      if (missing.join() !== reportedMissing) {
        reportedMissing = missing.join();
        if (missing.length > 0) logger.warn({ missing }, "policy names Slack user groups the workspace does not have (or that are disabled): they admit nobody");
      }
      return { groups: groups.length, missing };
    },
    jobTarget: chatJobTarget({
      platform: "slack",
      broker,
      enqueue: (job, enqueueOptions) => outbox.enqueue(job, enqueueOptions),
      digestChannel: config.digestChannel,
    }),
    ...adapterShutdown({
      receiver: async () => {
        closed = true;
        if (mode === "socket") await app.stop().catch((error: unknown) => logger.warn({ err: error }, "Socket Mode did not stop cleanly"));
        await drain();
      },
      outbox: () => delivery.close(drain),
    }),
  };
}
