import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { parseDuration } from "../../config/duration.js";
import type { Config } from "../../config/schema.js";
import type { Database } from "../../db/client.js";
import { INBOX_LIMIT, type Broker, type TypedEvents } from "../../broker/index.js";
import type { ConsoleAuth, ConsoleViewer } from "../../infra/web/console-auth.js";
import { html, page, sendHtml } from "../../infra/web/html.js";
import type { HttpServer } from "../../infra/web/http-server.js";
import type { ChatJobTarget } from "../../jobs/chat-targets.js";
import { closeRedis, connectSubscriber } from "../../infra/redis.js";
import type { Logger } from "../../infra/logger.js";
import type { JobOwnership } from "../../infra/job-ownership.js";
import type { EphemeralTarget } from "../chat-port.js";
import { ChatActions, newErrorId, type ChatAction } from "../actions.js";
import { connectionDelivery } from "../connection-delivery.js";
import { adapterShutdown, InflightWork, PlatformDelivery, type ChatAdapter } from "../platform-delivery.js";
import { MessageRefs } from "../request-state.js";
import { chatJobTarget } from "../scheduled-messages.js";
import { inboxView, knownTimeZone, noticeView, type ActionKind, type MessageView } from "../view-model.js";
import { ConsoleLive } from "./console-live.js";
import { ACTION_PATH, ASSETS_PREFIX, COMMAND_PATH, CONSOLE_PATH, consolePage, EVENTS_PATH, PENDING_PATH, pendingPage } from "./console-page.js";
import { ConsolePort } from "./console-port.js";
import { ConsoleStore } from "../../broker/console-messages.js";
import { LOGIN_PATH } from "./demo-auth.js";
import { csrfSecret, csrfToken, csrfValid, CSRF_FIELD, FormError, readForm, redirect, viewerPurpose } from "./forms.js";

/** How the command words are spelled in usage lines; the console's box also takes them with this in front. */
export const CONSOLE_COMMAND = "/access";
// Server-sent events: a comment now and then keeps proxies from closing a quiet stream.
const HEARTBEAT_MS = 20_000;
const DMS_SHOWN = 20;
const NOTES_SHOWN = 5;
const THREADS_SHOWN = 30;

/**
 * The console's stylesheet and script, read from src/bot/console/assets/: this file sits three
 * levels below the package root both as src/bot/console/console-app.ts and as
 * dist/bot/console/console-app.js, so one path serves both.
 */
const ASSETS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../../src/bot/console/assets");
const ASSET_TYPES: Record<string, string> = {
  "console.css": "text/css; charset=utf-8",
  "console.js": "text/javascript; charset=utf-8",
};

export interface StartConsoleOptions {
  config: Config;
  broker: Broker;
  /** The cluster's events (`gateway.cluster.events`), not the local broker's. */
  events: TypedEvents;
  db: Database;
  http: HttpServer;
  /** The gateway's Redis connection: BullMQ (the outbox) and the live updates' PUBLISH. */
  connection: Redis;
  /** For the console's own SUBSCRIBE connection. */
  redisUrl: string;
  prefix: string;
  logger: Logger;
  /** This deployment: its outbox jobs carry it, and its worker leaves another deployment's alone. */
  ownership?: JobOwnership | undefined;
  /** Who is looking: the demo picker, or an OIDC login. */
  auth: ConsoleAuth;
}

/** Its receiver also ends the live streams; its outbox step also closes the live updates' subscription. */
export interface ConsoleAdapter extends ChatAdapter {
  readonly port: ConsolePort;
  /** Reminders and the digest (to the console's channel); registered with the gateway's ChatJobTargets. */
  readonly jobTarget: ChatJobTarget;
}

/** A button's form field that says it was clicked in the inbox page (`pending`), to go back there. */
const BACK_FIELD = "back";

const ACTIONS = new Set<ActionKind>(["approve", "deny", "extend", "revoke", "approve-statement", "deny-statement", "acknowledge-break-glass", "flag-break-glass"]);

/**
 * The console chat adapter: the gateway's own chat at /console, for demo mode and for teams without
 * Slack or Teams. Outgoing messages go through the console outbox into `console_messages`, like the
 * other platforms' outboxes into their APIs, and every replica's browsers hear of them over Redis.
 * Commands and clicks are form posts handled like Slack's: the same broker calls, the same answers.
 */
export async function startConsole(options: StartConsoleOptions): Promise<ConsoleAdapter> {
  const { config, broker, db, http, auth } = options;
  const logger = options.logger.child({ component: "console" });
  const channel = config.console.channel;
  const store = new ConsoleStore<MessageView>(db, () => broker.clock.now());
  const subscriber = connectSubscriber(options.redisUrl);
  const live = new ConsoleLive(options.connection, subscriber, options.prefix, (error) => logger.warn({ err: error }, "console live update failed"));
  const port = new ConsolePort({ store, db, channel, users: config.console.users, publish: (change) => live.publish(change) });
  const delivery = new PlatformDelivery({
    ...options,
    port,
    // Nothing secret goes through the console's outbox: the DM with the connection line is written
    // straight to the database by the replica that handled the approval (see deliverConnection), so
    // no key has to be shared between replicas for it.
    sealSecret: randomBytes(32).toString("hex"),
    logger,
  });
  const { outbox } = delivery;
  const refs = new MessageRefs(db, "console");
  const assets = new Map(
    Object.entries(ASSET_TYPES).map(([name, type]) => [name, { type, body: readFileSync(resolve(ASSETS_DIR, name)) }]),
  );

  const inflight = new InflightWork((error) => logger.error({ err: error }, "console handler failed"));
  const streams = new Set<ServerResponse>();
  let closed = false;

  const answer = (to: EphemeralTarget, view: MessageView) => port.ephemeral(to, view);
  const answerTo = (viewer: ConsoleViewer): EphemeralTarget => ({ channel, user: viewer.userId });

  /**
   * The viewer as a console chat user: an OIDC login identifies the person on platform "oidc", and
   * the DM with the connection line is addressed by their console identity, so it is linked (by
   * email, to the same person) the first time they are seen here. The demo picker has done it.
   */
  const linked = new Set<string>();
  const withConsoleIdentity = async (viewer: ConsoleViewer): Promise<ConsoleViewer> => {
    if (auth.kind === "demo" || linked.has(viewer.userId)) return viewer;
    const person = await broker.identify({ platform: "console", externalId: viewer.userId, email: viewer.person.email, displayName: viewer.displayName });
    linked.add(viewer.userId);
    return { ...viewer, person };
  };

  // The DM goes straight into the database, not through the outbox (see sealSecret above).
  const deliverConnection = connectionDelivery({
    platform: "console",
    broker,
    db,
    logger,
    send: async (user, view, grant) => {
      await refs.record(grant.requestId, "dm", await port.dm(user, view));
    },
  });
  const actions = new ChatActions({ broker, platform: "console", logger, deliverConnection });

  /** The viewer of a form post with a valid CSRF token, or undefined once the response is answered. */
  const formOf = async (req: IncomingMessage, res: ServerResponse): Promise<{ viewer: ConsoleViewer; form: URLSearchParams } | undefined> => {
    if (closed) {
      res.writeHead(503, { "retry-after": "5" }).end();
      return undefined;
    }
    const seen = await auth.viewerOf(req);
    if (!seen) {
      auth.challenge(req, res, CONSOLE_PATH);
      return undefined;
    }
    const viewer = await withConsoleIdentity(seen);
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (error) {
      if (!(error instanceof FormError)) throw error;
      sendHtml(res, error.status, page({ title: "Bad request", body: html`<p>${error.message}</p>` }));
      return undefined;
    }
    if (!csrfValid(req, form, viewerPurpose(viewer), auth.cookies)) {
      sendHtml(
        res,
        403,
        page({
          title: "Refused",
          body: html`<p>This form has expired or did not come from the console (CSRF check). <a href="${CONSOLE_PATH}">Back to the console</a>.</p>`,
        }),
      );
      return undefined;
    }
    return { viewer, form };
  };

  // ---------------------------------------------------------------- the page

  http.route("GET", CONSOLE_PATH, async (req, res) => {
    const seen = await auth.viewerOf(req);
    if (!seen) return auth.challenge(req, res, CONSOLE_PATH);
    const viewer = await withConsoleIdentity(seen);
    const token = csrfToken(csrfSecret(req, res, auth.cookies), viewerPurpose(viewer));
    // Not the whole channel: the viewer's own requests and those of the targets they approve.
    const approves = await broker.targetsApprovedBy(viewer.person);
    const [threads, dms, notes] = await Promise.all([
      store.channel(channel, THREADS_SHOWN, {
        personId: viewer.person.id,
        targets: approves,
        approvesAll: approves.length > 0 && approves.length === broker.targets().length,
      }),
      store.addressedTo(viewer.userId, "dm", DMS_SHOWN),
      store.addressedTo(viewer.userId, "ephemeral", NOTES_SHOWN),
    ]);
    sendHtml(
      res,
      200,
      consolePage({
        viewer,
        channel,
        threads,
        dms,
        notes,
        hidden: { [CSRF_FIELD]: token },
        switchHref: auth.kind === "demo" ? `${LOGIN_PATH}?returnTo=${encodeURIComponent(CONSOLE_PATH)}` : undefined,
      }),
    );
  });

  // ---------------------------------------------------------------- the approver's inbox

  // The same inbox as `/access pending`; its buttons post to ACTION_PATH and come back here.
  http.route("GET", PENDING_PATH, async (req, res) => {
    const seen = await auth.viewerOf(req);
    if (!seen) return auth.challenge(req, res, PENDING_PATH);
    const viewer = await withConsoleIdentity(seen);
    const token = csrfToken(csrfSecret(req, res, auth.cookies), viewerPurpose(viewer));
    const [inbox, notes] = await Promise.all([broker.inbox(viewer.person, { platform: "console", limit: INBOX_LIMIT }), store.addressedTo(viewer.userId, "ephemeral", 1)]);
    sendHtml(
      res,
      200,
      pendingPage({
        viewer,
        inbox: inboxView(inbox, broker.clock.now(), knownTimeZone(config.defaults.timezone)),
        notes,
        hidden: { [CSRF_FIELD]: token, [BACK_FIELD]: "pending" },
        switchHref: auth.kind === "demo" ? `${LOGIN_PATH}?returnTo=${encodeURIComponent(PENDING_PATH)}` : undefined,
      }),
    );
  });

  // ---------------------------------------------------------------- the command box

  /**
   * A page instead of a note, for when the note cannot be written (the database is away): the
   * person still reads what happened, and the error id that is in the log.
   */
  const notDone = (res: ServerResponse, lines: string[], errorId: string) => {
    if (res.headersSent) return void res.end();
    sendHtml(
      res,
      503,
      page({
        title: "Not done",
        body: html`${lines.map((line) => html`<p>${line}</p>`)}<p>(Error id ${errorId}.) <a href="${CONSOLE_PATH}">Back to the console</a>.</p>`,
      }),
    );
  };

  /** The viewer of a form post, or undefined once the response is answered (also when they could not be read). */
  const postedForm = async (req: IncomingMessage, res: ServerResponse, attempted: string) => {
    try {
      return await formOf(req, res);
    } catch (error) {
      const errorId = newErrorId();
      logger.error({ err: error, errorId }, "console form post failed");
      notDone(res, [`jitgate could not ${attempted}; nothing changed; try again.`], errorId);
      return undefined;
    }
  };

  /** Answers a form post with a note in the viewer's notes and sends the browser back to the page (or to the inbox it came from). */
  const reply = async (res: ServerResponse, viewer: ConsoleViewer, work: () => Promise<MessageView | undefined>, back: string = CONSOLE_PATH) => {
    let unsent: { view: MessageView; errorId: string } | undefined;
    await inflight.track(async () => {
      const view = await work();
      if (!view) return;
      try {
        await answer(answerTo(viewer), view);
      } catch (error) {
        const errorId = newErrorId();
        logger.error({ err: error, errorId }, "a console note could not be written");
        unsent = { view, errorId };
      }
    });
    if (unsent) return notDone(res, [unsent.view.text, ...(unsent.view.lines ?? [])], unsent.errorId);
    redirect(res, back);
  };

  http.route("POST", COMMAND_PATH, async (req, res) => {
    const posted = await postedForm(req, res, "run this command");
    if (!posted) return;
    const { viewer, form } = posted;
    // The box takes the words alone, or with the slash command in front as people type it in Slack.
    const text = (form.get("text") ?? "").trim().replace(new RegExp(`^${CONSOLE_COMMAND}(\\s|$)`), "");
    await reply(res, viewer, () => actions.command(async () => viewer.person, CONSOLE_COMMAND, text));
  });

  // ---------------------------------------------------------------- buttons

  /** A button's form as an action; a bad duration is answered here, before the broker. */
  const actionOf = (action: ActionKind, value: string, form: URLSearchParams): ChatAction | string => {
    switch (action) {
      case "approve":
        return { verb: "approve", requestId: value };
      case "deny":
        return { verb: "deny", requestId: value, reason: form.get("reason")?.trim() || undefined };
      case "extend": {
        const duration = form.get("duration")?.trim() ?? "";
        if (parseDuration(duration) === undefined) return `"${duration}" is not a duration like 30m, 2h, 1d.`;
        return { verb: "extend", grantId: value, duration };
      }
      case "revoke":
        return { verb: "revoke", grantId: value };
      case "approve-statement":
      case "deny-statement":
        return { verb: action, heldId: value };
      case "acknowledge-break-glass":
      case "flag-break-glass":
        return { verb: "review-break-glass", reviewId: value, verdict: action === "flag-break-glass" ? "flagged" : "acknowledged" };
    }
  };

  http.route("POST", ACTION_PATH, async (req, res) => {
    const posted = await postedForm(req, res, "do this");
    if (!posted) return;
    const { viewer, form } = posted;
    const action = form.get("action") as ActionKind | null;
    const value = form.get("value") ?? "";
    if (!action || !ACTIONS.has(action) || value === "") {
      sendHtml(res, 400, page({ title: "Bad request", body: html`<p>Unknown button. <a href="${CONSOLE_PATH}">Back to the console</a>.</p>` }));
      return;
    }
    await reply(res, viewer, async () => {
      const chatAction = actionOf(action, value, form);
      if (typeof chatAction === "string") return noticeView(chatAction);
      const outcome = await actions.run(async () => viewer.person, chatAction);
      const note = outcome.ok ? outcome.notice : outcome.message;
      return note ? noticeView(note) : undefined;
      // Only one place to come back to besides the console: never a path the form names.
    }, form.get(BACK_FIELD) === "pending" ? PENDING_PATH : CONSOLE_PATH);
  });

  // ---------------------------------------------------------------- live updates

  // https://html.spec.whatwg.org/multipage/server-sent-events.html: `id` lets a reconnecting browser say where it was.
  http.route("GET", EVENTS_PATH, async (req, res) => {
    if (closed) {
      res.writeHead(503, { "retry-after": "5" }).end();
      return;
    }
    const viewer = await auth.viewerOf(req);
    if (!viewer) {
      res.writeHead(401, { "content-type": "text/plain; charset=utf-8" }).end("not logged in\n");
      return;
    }
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
      // Not kept alive once the stream ends: shutdown ends streams and must not wait for idle sockets.
      connection: "close",
      "x-content-type-options": "nosniff",
    });
    res.write("retry: 3000\n: live\n\n");
    const send = (seq: number) => res.write(`id: ${seq}\nevent: change\ndata: ${JSON.stringify({ seq })}\n\n`);
    const stop = live.listen((change) => {
      if (change.kind === "channel" || change.userId === viewer.userId) send(change.seq);
    });
    const heartbeat = setInterval(() => res.write(": ping\n\n"), HEARTBEAT_MS);
    heartbeat.unref();
    streams.add(res);
    const end = () => {
      stop();
      clearInterval(heartbeat);
      streams.delete(res);
    };
    res.on("close", end);
    // A browser that reconnects after missing something redraws at once.
    const lastSeen = Number(req.headers["last-event-id"]);
    if (Number.isSafeInteger(lastSeen)) {
      const latest = await store.lastSeq();
      if (latest > lastSeen) send(latest);
    }
  });

  http.routePrefix("GET", ASSETS_PREFIX, (req, res) => {
    const name = new URL(req.url ?? "/", "http://gateway").pathname.slice(ASSETS_PREFIX.length);
    const asset = assets.get(name);
    if (!asset) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    res.writeHead(200, {
      "content-type": asset.type,
      "content-length": asset.body.length,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
    });
    res.end(asset.body);
  });

  // ---------------------------------------------------------------- start

  /**
   * The console keeps its DMs in jitgate's own database, so the connection line (which holds the
   * grant's secret) is scrubbed from the DM as soon as the grant ends: after that the secret is
   * useless (its verifier is deleted) and no longer stored anywhere. Every replica does it; the
   * update is idempotent.
   */
  const scrubConnection = async (grant: { id: string; requestId: string }) => {
    const ref = await refs.find(grant.requestId, "dm");
    const message = ref ? await store.find(ref.messageId) : undefined;
    if (!ref || !message || message.view.code === undefined) return;
    const { code: _secret, ...rest } = message.view;
    await port.update(ref, { ...rest, lines: [`Grant ${grant.id} has ended; its connection line has been removed.`] });
  };
  const detachScrub = [
    options.events.on("grant.expired", ({ grant }) => scrubConnection(grant)),
    options.events.on("grant.revoked", ({ grant }) => scrubConnection(grant)),
  ];

  await live.start();
  await delivery.start();
  logger.info({ channel, auth: auth.kind }, "console started");

  return {
    port,
    outbox,
    deliverConnection,
    jobTarget: chatJobTarget({
      platform: "console",
      broker,
      enqueue: (job, enqueueOptions) => outbox.enqueue(job, enqueueOptions),
      digestChannel: channel,
    }),
    ...adapterShutdown({
      receiver: async () => {
        closed = true;
        // The HTTP server waits for open responses: an event stream would keep it open for ever.
        for (const stream of streams) stream.end();
        streams.clear();
        await inflight.drain();
      },
      outbox: async () => {
        for (const detach of detachScrub) detach();
        try {
          await delivery.close(() => inflight.drain());
        } finally {
          await live.stop();
          await closeRedis(subscriber);
        }
      },
    }),
  };
}
