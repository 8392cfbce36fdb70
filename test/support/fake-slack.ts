import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { parse } from "node:querystring";

/** One call jitgate made to the fake Slack: a Web API method or a `response_url`. */
export interface SlackCall {
  method: string;
  args: Record<string, unknown>;
  status: number;
  at: number;
}

export interface FakeUser {
  id: string;
  email: string;
  realName: string;
  /** users.info `tz`, as Slack gives it (https://docs.slack.dev/reference/methods/users.info). */
  tz?: string;
  /** users.info `is_email_confirmed` (default true: Slack confirms a member's email). */
  emailConfirmed?: boolean;
}

/** A user group as Slack keeps it (https://docs.slack.dev/reference/objects/usergroup-object). */
export interface FakeUserGroup {
  id: string;
  handle: string;
  name: string;
  users: string[];
  /** Disabled groups have a `date_delete`; usergroups.list leaves them out unless include_disabled. */
  disabled?: boolean;
}

export interface FakeMessage {
  channel: string;
  ts: string;
  threadTs: string | undefined;
  text: string;
  blocks: Record<string, unknown>[];
  updates: number;
}

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });

/**
 * A local stand-in for the subset of the Slack Web API jitgate calls, answering as Slack does
 * (https://docs.slack.dev/reference/methods): `ok: true` bodies with the fields jitgate reads,
 * `ok: false` with an error code, and HTTP 429 with `Retry-After` when told to. It records every
 * call and keeps the messages (as updated) so tests can read what a channel shows.
 */
export class FakeSlack {
  readonly calls: SlackCall[] = [];
  readonly messages = new Map<string, FakeMessage>();
  readonly #users = new Map<string, FakeUser>();
  /** The workspace's user groups, by id: tests add, change and remove them as an admin would. */
  readonly userGroups = new Map<string, FakeUserGroup>();
  readonly #rateLimits = new Map<string, number[]>();
  readonly #failures = new Map<string, { error: string; when: (args: Record<string, unknown>) => boolean }[]>();
  #server: Server | undefined;
  #tsCounter = 0;
  url = "";

  constructor(
    users: FakeUser[],
    private readonly token: string,
  ) {
    for (const user of users) this.#users.set(user.id, user);
  }

  get apiUrl(): string {
    return `${this.url}/api/`;
  }

  /** A `response_url` as Slack puts in a slash command or a block action. */
  responseUrl(label: string): string {
    return `${this.url}/response/${encodeURIComponent(label)}`;
  }

  /**
   * The next call to `method` (whose arguments `when` accepts, if given) is answered `ok: false`
   * with this error code (`missing_scope`, `internal_error`…).
   */
  failNext(method: string, error: string, when: (args: Record<string, unknown>) => boolean = () => true): void {
    const queue = this.#failures.get(method) ?? [];
    queue.push({ error, when });
    this.#failures.set(method, queue);
  }

  /** The next call to `method` is answered with HTTP 429 and `Retry-After: seconds`. */
  rateLimitNext(method: string, seconds: number): void {
    const queue = this.#rateLimits.get(method) ?? [];
    queue.push(seconds);
    this.#rateLimits.set(method, queue);
  }

  async start(): Promise<void> {
    this.#server = createServer((req, res) => {
      void this.#handle(req).then(
        ({ status, body, headers }) => {
          res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
          res.end(JSON.stringify(body));
        },
        (error: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(String(error));
        },
      );
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, "127.0.0.1", resolve));
    const address = this.#server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${address.port}`;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  async #handle(req: IncomingMessage): Promise<{ status: number; body: unknown; headers?: Record<string, string> }> {
    const path = new URL(req.url ?? "/", this.url).pathname;
    const raw = await readBody(req);
    const contentType = req.headers["content-type"] ?? "";
    const args: Record<string, unknown> = contentType.startsWith("application/json")
      ? (JSON.parse(raw || "{}") as Record<string, unknown>)
      : { ...parse(raw) };
    // The Web API client sends Block Kit and other objects as JSON strings inside the form.
    for (const key of ["blocks", "view", "attachments"]) {
      if (typeof args[key] === "string") args[key] = JSON.parse(args[key] as string);
    }
    const method = path.startsWith("/response/") ? "response_url" : path.replace(/^\/api\//, "");
    if (method === "response_url") args.__label = decodeURIComponent(path.slice("/response/".length));
    const record = (status: number) => this.calls.push({ method, args, status, at: Date.now() });

    const limited = this.#rateLimits.get(method)?.shift();
    if (limited !== undefined) {
      record(429);
      return { status: 429, body: { ok: false, error: "ratelimited" }, headers: { "retry-after": String(limited) } };
    }
    if (method === "response_url") {
      record(200);
      return { status: 200, body: { ok: true } };
    }
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      record(200);
      return { status: 200, body: { ok: false, error: "invalid_auth" } };
    }
    record(200);
    const queued = this.#failures.get(method) ?? [];
    const index = queued.findIndex((f) => f.when(args));
    const failure = index === -1 ? undefined : queued.splice(index, 1)[0]!.error;
    // As Slack answers a token without the scope a method needs (https://docs.slack.dev/reference/methods/usergroups.list#errors).
    if (failure === "missing_scope") return { status: 200, body: { ok: false, error: failure, needed: "usergroups:read", provided: "commands,chat:write" } };
    if (failure !== undefined) return { status: 200, body: { ok: false, error: failure } };
    return { status: 200, body: this.#answer(method, args) };
  }

  #answer(method: string, args: Record<string, unknown>): Record<string, unknown> {
    switch (method) {
      case "auth.test":
        return { ok: true, user_id: "U0BOT", bot_id: "B0BOT", team_id: "T0TEAM" };
      case "users.info": {
        const user = this.#users.get(String(args.user));
        if (!user) return { ok: false, error: "user_not_found" };
        return {
          ok: true,
          user: { id: user.id, name: user.id.toLowerCase(), real_name: user.realName, is_email_confirmed: user.emailConfirmed ?? true, ...(user.tz ? { tz: user.tz } : {}), profile: { email: user.email, real_name: user.realName, display_name: "" } },
        };
      }
      // https://docs.slack.dev/reference/methods/usergroups.list: every group of the team, without
      // the disabled ones unless include_disabled; `users` only with include_users.
      case "usergroups.list": {
        const includeDisabled = args.include_disabled === true || args.include_disabled === "true";
        const includeUsers = args.include_users === true || args.include_users === "true";
        const usergroups = [...this.userGroups.values()]
          .filter((g) => includeDisabled || !g.disabled)
          .map((g) => ({
            id: g.id,
            team_id: "T0TEAM",
            is_usergroup: true,
            name: g.name,
            description: "",
            handle: g.handle,
            is_external: false,
            date_create: 1446598059,
            date_update: 1446670362,
            date_delete: g.disabled ? 1446670400 : 0,
            auto_type: null,
            created_by: "U0ADMIN",
            updated_by: "U0ADMIN",
            deleted_by: null,
            prefs: { channels: [], groups: [] },
            user_count: String(g.users.length),
            ...(includeUsers ? { users: [...g.users] } : {}),
          }));
        return { ok: true, usergroups };
      }
      // https://docs.slack.dev/reference/methods/usergroups.users.list: the members' user ids.
      case "usergroups.users.list": {
        const group = this.userGroups.get(String(args.usergroup));
        if (!group) return { ok: false, error: "no_such_subteam" };
        const includeDisabled = args.include_disabled === true || args.include_disabled === "true";
        if (group.disabled && !includeDisabled) return { ok: false, error: "no_such_subteam" };
        return { ok: true, users: [...group.users] };
      }
      case "conversations.open":
        return { ok: true, channel: { id: `D${String(args.users)}` } };
      case "chat.postMessage": {
        const channel = String(args.channel);
        const ts = `1700000000.${String(++this.#tsCounter).padStart(6, "0")}`;
        this.messages.set(`${channel}/${ts}`, {
          channel,
          ts,
          threadTs: typeof args.thread_ts === "string" ? args.thread_ts : undefined,
          text: String(args.text ?? ""),
          blocks: (args.blocks as Record<string, unknown>[] | undefined) ?? [],
          updates: 0,
        });
        return { ok: true, channel, ts, message: { ts, text: args.text } };
      }
      case "chat.update": {
        const message = this.messages.get(`${String(args.channel)}/${String(args.ts)}`);
        if (!message) return { ok: false, error: "message_not_found" };
        message.text = String(args.text ?? "");
        message.blocks = (args.blocks as Record<string, unknown>[] | undefined) ?? [];
        message.updates += 1;
        return { ok: true, channel: message.channel, ts: message.ts };
      }
      case "chat.postEphemeral":
        return { ok: true, message_ts: `1700000000.${String(++this.#tsCounter).padStart(6, "0")}` };
      case "views.open":
        return { ok: true, view: { id: `V${++this.#tsCounter}` } };
      default:
        return { ok: false, error: "unknown_method" };
    }
  }

  // ---------------------------------------------------------------- reading what happened

  callsOf(method: string): SlackCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** Top-level messages in a channel, oldest first. */
  rootsIn(channel: string): FakeMessage[] {
    return [...this.messages.values()].filter((m) => m.channel === channel && m.threadTs === undefined);
  }

  thread(channel: string, ts: string): FakeMessage[] {
    return [...this.messages.values()].filter((m) => m.channel === channel && m.threadTs === ts);
  }

  /** Ephemeral answers to a user, whichever way they were sent (response_url or chat.postEphemeral). */
  ephemeralTexts(responseLabelOrUser: string): string[] {
    return this.calls
      .filter(
        (c) =>
          c.status === 200 &&
          ((c.method === "chat.postEphemeral" && c.args.user === responseLabelOrUser) ||
            (c.method === "response_url" && c.args.response_type === "ephemeral" && this.#labelOf(c) === responseLabelOrUser)),
      )
      .map((c) => messageText(c.args));
  }

  #labelOf(call: SlackCall): string | undefined {
    return (call.args.__label as string | undefined) ?? undefined;
  }
}

/** Everything a message says, as a reader sees it (mrkdwn entities decoded): its text and its blocks' text. */
export function messageText(message: { text?: unknown; blocks?: unknown }): string {
  const parts: string[] = [String(message.text ?? "")];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === "object") {
      for (const [key, value] of Object.entries(node)) {
        if (key === "text" && typeof value === "string") parts.push(value);
        else walk(value);
      }
    }
  };
  walk(message.blocks);
  return parts.join("\n").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/** The buttons (action id → value) of a message. */
export function buttonsOf(message: { blocks?: unknown }): Record<string, string> {
  const buttons: Record<string, string> = {};
  for (const block of (message.blocks as { type?: string; elements?: { action_id?: string; value?: string }[] }[] | undefined) ?? []) {
    if (block.type !== "actions") continue;
    for (const element of block.elements ?? []) if (element.action_id) buttons[element.action_id] = element.value ?? "";
  }
  return buttons;
}

/**
 * Polls until `check` returns a value (not undefined, null or false), or fails after `timeoutMs`
 * saying `what` it waited for (a function: what was seen by then).
 */
export async function eventually<T>(
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 10_000,
  what: string | (() => string) = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}${lastError ? `: ${String(lastError)}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
