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
import {
  GrantNotActive,
  NotAllowed,
  SessionBroker,
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
import { SLACK_ACTION_IDS } from "../render/block-kit.js";
import { adapterShutdown, InflightWork, PlatformDelivery, type ChatAdapter } from "../platform-delivery.js";
import { chatJobTarget } from "../scheduled-messages.js";
import type { ChatJobTarget } from "../../jobs/chat-targets.js";
import { chatUserIdOf } from "../request-state.js";
import { connectionView, noticeView, type MessageView } from "../view-model.js";
import { DENY_MODAL, EXTEND_MODAL, denyModal, extendModal, parseModalContext } from "./modals.js";
import { SlackChatPort, createSlackWebClient } from "./slack-port.js";

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
export function createSlackReceiver(config: SlackConfig, logger: BoltLogger): HTTPReceiver | SocketModeReceiver {
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
}

/** Could not look the clicking user up in Slack (users.info failed): no identity, no decision. */
class IdentityUnavailable extends Error {
  constructor() {
    super("Could not look you up in Slack just now; please try again in a moment.");
    this.name = "IdentityUnavailable";
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

  const answer = async (to: EphemeralTarget, view: MessageView) => {
    await outbox.enqueue({ kind: "ephemeral", platform: "slack", to, view });
  };
  const fail = async (to: EphemeralTarget, error: unknown) => {
    if (error instanceof IdentityUnavailable) return answer(to, noticeView(error.message));
    const { view, unexpected } = errorView(error);
    if (unexpected) logger.error({ err: error }, "Slack interaction failed");
    await answer(to, view);
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

  /**
   * The requester's DM with the connection line: from the decision's result, never from an event.
   * Answers a note for the approver when it could not be delivered.
   */
  const deliverConnection = async (result: DecideResult): Promise<string | undefined> => {
    const { grant, connection } = result;
    if (!grant || !connection) return undefined;
    const user = await chatUserIdOf(db, grant.personId, "slack");
    if (!user) {
      logger.warn({ grant: grant.id }, "the requester has no Slack identity; the connection line was not delivered");
      return `Approved, but the requester is not known in Slack: grant ${grant.id} has no delivered connection line.`;
    }
    // In the requester's time zone when Slack says it; a failed lookup must not hold the line back.
    const timeZone = (await port.resolveUser(user).catch(() => undefined))?.timeZone;
    const view = connectionView({ target: grant.target, grantId: grant.id, line: connection.line, expiresAt: grant.expiresAt }, broker.clock.now(), timeZone);
    await outbox.enqueue({ kind: "dm", platform: "slack", requestId: grant.requestId, user, view }, { secret: true, jobId: outboxJobId("slack", "dm", grant.id) });
    return undefined;
  };
  const sendConnection = async (result: DecideResult, approverTo: EphemeralTarget) => {
    const notice = await deliverConnection(result);
    if (notice) await answer(approverTo, noticeView(notice));
  };


  // ---------------------------------------------------------------- the slash command

  app.command(config.command, async ({ command, ack }) => {
    await ack(); // within 3 s, always; the answer follows as an ephemeral message
    await track(async () => {
      const to: EphemeralTarget = { channel: command.channel_id, user: command.user_id, responseUrl: command.response_url };
      try {
        const person = await identify(command.user_id);
        const { timeZone } = await port.resolveUser(command.user_id); // cached by identify
        const outcome = await runCommand({ broker, person, command: config.command, origin: "slack", timeZone }, command.text);
        if (outcome.failure) logger.error({ err: outcome.failure, command: command.text.split(/\s+/)[0] }, "command failed");
        await answer(to, outcome.view);
      } catch (error) {
        await fail(to, error);
      }
    });
  });

  // ---------------------------------------------------------------- buttons

  const clicker = (body: BlockAction): EphemeralTarget => ({
    channel: body.channel?.id ?? body.user.id,
    user: body.user.id,
    responseUrl: body.response_url,
  });

  app.action<BlockAction<ButtonAction>>(SLACK_ACTION_IDS.approve, async ({ ack, body, action }) => {
    await ack();
    await track(async () => {
      const to = clicker(body);
      try {
        const approver = await identify(body.user.id);
        const result = await broker.decide(approver, { requestId: action.value ?? "", verdict: "approve" });
        await sendConnection(result, to);
      } catch (error) {
        await fail(to, error);
      }
    });
  });

  app.action<BlockAction<ButtonAction>>(SLACK_ACTION_IDS.deny, async ({ ack, body, action }) => {
    await ack();
    await track(async () => {
      const to = clicker(body);
      try {
        const approver = await identify(body.user.id);
        const request = await broker.checkCanDecide(approver, action.value ?? "");
        // views.open is called at once, not through the outbox: its trigger_id expires in 3 seconds.
        await client.views.open({
          trigger_id: body.trigger_id,
          view: denyModal({ id: request.id, channel: body.channel?.id ?? null }, request.target),
        });
      } catch (error) {
        await fail(to, error);
      }
    });
  });

  // Held statements and commands (from the proxies): decided by an approver of the target, once.
  const sessions = new SessionBroker(broker);
  for (const [actionId, verdict] of [
    [SLACK_ACTION_IDS["approve-statement"], "approved"],
    [SLACK_ACTION_IDS["deny-statement"], "denied"],
  ] as const) {
    app.action<BlockAction<ButtonAction>>(actionId, async ({ ack, body, action }) => {
      await ack();
      await track(async () => {
        const to = clicker(body);
        try {
          const approver = await identify(body.user.id);
          await sessions.decide(approver, { heldId: action.value ?? "", verdict });
        } catch (error) {
          await fail(to, error);
        }
      });
    });
  }

  app.action<BlockAction<ButtonAction>>(SLACK_ACTION_IDS.revoke, async ({ ack, body, action }) => {
    await ack();
    await track(async () => {
      const to = clicker(body);
      try {
        const actor = await identify(body.user.id);
        await broker.revoke(actor, { grantId: action.value ?? "" });
      } catch (error) {
        await fail(to, error);
      }
    });
  });

  app.action<BlockAction<ButtonAction>>(SLACK_ACTION_IDS.extend, async ({ ack, body, action }) => {
    await ack();
    await track(async () => {
      const to = clicker(body);
      try {
        const actor = await identify(body.user.id);
        const grant = await broker.getGrant(action.value ?? "");
        if (grant.state !== "active" || grant.expiresAt.getTime() <= broker.clock.now().getTime()) {
          throw new GrantNotActive(grant.id, grant.state === "active" ? "expired" : grant.state);
        }
        if (actor.id !== grant.personId && !(await broker.isApprover(grant.target, actor))) {
          throw new NotAllowed(`only the holder or an approver of ${grant.target} may extend ${grant.id}`);
        }
        await client.views.open({
          trigger_id: body.trigger_id,
          view: extendModal({ id: grant.id, channel: body.channel?.id ?? null }, grant.target, "1h"),
        });
      } catch (error) {
        await fail(to, error);
      }
    });
  });

  // ---------------------------------------------------------------- modals

  app.view<ViewSubmitAction>(DENY_MODAL, async ({ ack, body, view }) => {
    await ack();
    await track(async () => {
      const context = parseModalContext(view.private_metadata);
      const to: EphemeralTarget = { channel: context?.channel ?? body.user.id, user: body.user.id };
      try {
        if (!context) throw new Error("deny modal without its request");
        const reason = view.state.values.reason?.reason?.value ?? undefined;
        const approver = await identify(body.user.id);
        await broker.decide(approver, { requestId: context.id, verdict: "deny", reason: reason ?? undefined });
      } catch (error) {
        await fail(to, error);
      }
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
      try {
        if (!context) throw new Error("extend modal without its grant");
        const actor = await identify(body.user.id);
        const result = await broker.extend(actor, { grantId: context.id, duration });
        if (result.kind === "requested") {
          await answer(to, noticeView(`Extension request ${result.request.id} sent for approval.`));
        }
      } catch (error) {
        await fail(to, error);
      }
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

  return {
    mode,
    deliverConnection,
    port,
    outbox,
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
