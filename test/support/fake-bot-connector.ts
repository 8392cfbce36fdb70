import { createSign, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local stand-in for the Bot Framework as jitgate meets it:
 * - the connector (the `serviceUrl`): the subset of https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-api-reference
 *   jitgate calls — send, update, create conversation, get member — recorded, with the messages kept as updated;
 * - the channel's OpenID metadata and signing keys, with a key made here, so activities posted to
 *   /api/messages carry a JWT that botbuilder validates exactly as it validates Teams';
 * - a token endpoint (OAuth 2 client credentials) for the bot's outgoing calls.
 */

export interface FakeMember {
  id: string;
  name: string;
  email: string;
  /** The member's tenant as the member lookup gives it (`TeamsChannelAccount.tenantId`); default: the connector's tenant. */
  tenantId?: string;
}

export interface ConnectorCall {
  method: string;
  path: string;
  body: unknown;
  status: number;
  authorization: string | undefined;
}

export interface FakeActivity {
  /** The conversation as sent to (`19:…;messageid=…` for a reply in a channel thread). */
  conversation: string;
  id: string;
  activity: Record<string, unknown>;
  updates: number;
}

export const TEAMS_ISSUER = "https://api.botframework.com";

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });

const base64url = (input: Buffer | string) => Buffer.from(input).toString("base64url");

export class FakeBotConnector {
  readonly calls: ConnectorCall[] = [];
  readonly activities = new Map<string, FakeActivity>();
  readonly #members = new Map<string, FakeMember>();
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  readonly kid = `test-key-${randomBytes(4).toString("hex")}`;
  readonly #issuedTokens = new Set<string>();
  #server: Server | undefined;
  #counter = 0;
  url = "";

  constructor(
    members: FakeMember[],
    /** The bot's app id and password: the token endpoint checks them; "" when authentication is off. */
    readonly appId: string,
    private readonly appPassword: string,
    /** The tenant its members belong to unless they say otherwise (none: members carry no tenant). */
    readonly tenantId?: string,
  ) {
    for (const member of members) this.#members.set(member.id, member);
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    this.#privateKey = privateKey;
    this.#publicKey = publicKey;
  }

  get serviceUrl(): string {
    return `${this.url}/`;
  }

  get openIdMetadataUrl(): string {
    return `${this.url}/v1/.well-known/openidconfiguration`;
  }

  async start(): Promise<void> {
    this.#server = createServer((req, res) => {
      void this.#handle(req).then(
        ({ status, body }) => {
          res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
          res.end(body === undefined ? "" : JSON.stringify(body));
        },
        (error: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(String(error));
        },
      );
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
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

  /** A channel token as the Bot Framework signs it (RS256, kid, iss, aud = app id, serviceurl). */
  channelToken(overrides: Record<string, unknown> = {}, key: KeyObject = this.#privateKey): string {
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: "RS256", typ: "JWT", kid: this.kid };
    const payload = { iss: TEAMS_ISSUER, aud: this.appId, serviceurl: this.serviceUrl, nbf: now - 10, exp: now + 600, ...overrides };
    const signing = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
    const signature = createSign("RSA-SHA256").update(signing).sign(key);
    return `${signing}.${base64url(signature)}`;
  }

  /** A key the channel never published: a token signed with it must be refused. */
  static strangerKey(): KeyObject {
    return generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  }

  async #handle(req: IncomingMessage): Promise<{ status: number; body?: unknown }> {
    const url = new URL(req.url ?? "/", this.url);
    const raw = await readBody(req);
    const body: unknown = raw && (req.headers["content-type"] ?? "").includes("json") ? JSON.parse(raw) : raw;
    const method = req.method ?? "GET";
    const authorization = req.headers.authorization;
    const answer = this.#answer(method, url, body, authorization);
    this.calls.push({ method, path: decodeURIComponent(url.pathname), body, status: answer.status, authorization });
    return answer;
  }

  #answer(method: string, url: URL, body: unknown, authorization: string | undefined): { status: number; body?: unknown } {
    const path = url.pathname;
    if (method === "GET" && path === "/v1/.well-known/openidconfiguration") {
      return { status: 200, body: { issuer: TEAMS_ISSUER, jwks_uri: `${this.url}/v1/keys`, id_token_signing_alg_values_supported: ["RS256"] } };
    }
    if (method === "GET" && path === "/v1/keys") {
      const jwk = this.#publicKey.export({ format: "jwk" });
      return { status: 200, body: { keys: [{ ...jwk, kid: this.kid, kty: "RSA", use: "sig", endorsements: ["msteams"] }] } };
    }
    if (method === "POST" && path === "/oauth2/v2.0/token") {
      const form = new URLSearchParams(String(body));
      if (form.get("client_id") !== this.appId || form.get("client_secret") !== this.appPassword) return { status: 401, body: { error: "invalid_client" } };
      const token = `bot-token-${randomBytes(8).toString("hex")}`;
      this.#issuedTokens.add(token);
      return { status: 200, body: { token_type: "Bearer", expires_in: 3600, access_token: token } };
    }
    // The connector: with authentication on, every call must carry a token from the endpoint above.
    if (this.appId && !(authorization?.startsWith("Bearer ") && this.#issuedTokens.has(authorization.slice(7)))) {
      return { status: 401, body: { error: { code: "Unauthorized", message: "no valid bot token" } } };
    }
    const parts = path.split("/").filter((p) => p !== "").map(decodeURIComponent);
    // POST /v3/conversations
    if (method === "POST" && parts.length === 2 && parts[0] === "v3" && parts[1] === "conversations") {
      const members = (body as { members?: { id: string }[] }).members ?? [];
      return { status: 201, body: { id: `a:1on1-${members[0]?.id ?? "unknown"}`, serviceUrl: this.serviceUrl } };
    }
    if (parts[0] !== "v3" || parts[1] !== "conversations" || parts.length < 4) return { status: 404, body: { error: { code: "NotFound" } } };
    const conversation = parts[2]!;
    // GET /v3/conversations/{id}/members/{userId}
    if (method === "GET" && parts[3] === "members" && parts[4]) {
      const member = this.#members.get(parts[4]);
      if (!member) return { status: 404, body: { error: { code: "MemberNotFoundInConversation", message: "member not found" } } };
      const tenantId = member.tenantId ?? this.tenantId;
      return {
        status: 200,
        body: { id: member.id, name: member.name, email: member.email, userPrincipalName: member.email, aadObjectId: `aad-${member.id}`, ...(tenantId ? { tenantId, userRole: "user" } : {}) },
      };
    }
    // POST /v3/conversations/{id}/activities[/{replyToId}]
    if (method === "POST" && parts[3] === "activities") {
      const id = `${1700000000000 + ++this.#counter}`;
      this.activities.set(`${conversation}/${id}`, { conversation, id, activity: body as Record<string, unknown>, updates: 0 });
      return { status: 201, body: { id } };
    }
    // PUT /v3/conversations/{id}/activities/{activityId}
    if (method === "PUT" && parts[3] === "activities" && parts[4]) {
      const existing = this.activities.get(`${conversation}/${parts[4]}`);
      if (!existing) return { status: 404, body: { error: { code: "ActivityNotFoundInConversation" } } };
      existing.activity = body as Record<string, unknown>;
      existing.updates += 1;
      return { status: 200, body: { id: existing.id } };
    }
    return { status: 404, body: { error: { code: "NotFound" } } };
  }

  // ---------------------------------------------------------------- reading what happened

  /** Posts in a channel conversation (not replies), oldest first. */
  rootsIn(channel: string): FakeActivity[] {
    return [...this.activities.values()].filter((a) => a.conversation === channel);
  }

  thread(channel: string, rootId: string): FakeActivity[] {
    return [...this.activities.values()].filter((a) => a.conversation === `${channel};messageid=${rootId}`);
  }

  /** Messages in a 1:1 conversation with a user (created by the bot or the user's own personal chat). */
  personal(conversation: string): FakeActivity[] {
    return [...this.activities.values()].filter((a) => a.conversation === conversation);
  }
}

/** An Adaptive Card's plain text, as a reader sees it. */
export function cardOf(activity: Record<string, unknown>): Record<string, unknown> | undefined {
  const attachments = activity.attachments as { contentType?: string; content?: Record<string, unknown> }[] | undefined;
  return attachments?.find((a) => a.contentType === "application/vnd.microsoft.card.adaptive")?.content;
}

export function cardText(card: Record<string, unknown> | undefined): string {
  const parts: string[] = [];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === "object") {
      for (const [key, value] of Object.entries(node)) {
        if (key === "text" && typeof value === "string") parts.push(value);
        else if (key !== "actions" && key !== "refresh") walk(value);
      }
    }
  };
  walk(card?.body);
  return parts.join("\n");
}

export function activityText(activity: Record<string, unknown>): string {
  return `${String(activity.summary ?? activity.text ?? "")}\n${cardText(cardOf(activity))}`;
}

/** The card's Action.Execute buttons: verb → data. */
export function cardActions(card: Record<string, unknown> | undefined): Record<string, { id: string; subject: string }> {
  const actions: Record<string, { id: string; subject: string }> = {};
  for (const action of (card?.actions as { type?: string; verb?: string; data?: { id: string; subject: string } }[] | undefined) ?? []) {
    if (action.type === "Action.Execute" && action.verb && action.data) actions[action.verb] = action.data;
  }
  return actions;
}

/** The status line of a jitgate card. */
export function cardStatus(card: Record<string, unknown> | undefined): string {
  const status = (card?.body as { id?: string; inlines?: { text: string }[] }[] | undefined)?.find((b) => b.id === "status");
  return status?.inlines?.map((i) => i.text).join("") ?? "";
}

/**
 * Outgoing calls' tokens, from the fake's token endpoint (OAuth 2 client credentials), in place of
 * MSAL: MSAL insists on an https authority with instance discovery, which a local server cannot be.
 * Shaped as botframework-connector's ServiceClientCredentialsFactory.
 */
export class FakeTokenCredentialsFactory {
  constructor(
    private readonly tokenUrl: string,
    private readonly appId: string,
    private readonly appPassword: string,
  ) {}

  async isValidAppId(appId: string): Promise<boolean> {
    return appId === this.appId;
  }

  async isAuthenticationDisabled(): Promise<boolean> {
    return !this.appId;
  }

  async createCredentials(appId: string, audience: string | undefined) {
    const { tokenUrl, appPassword } = this;
    let cached: { token: string; until: number } | undefined;
    return {
      async signRequest<T extends { headers: { set(name: string, value: string): void } }>(request: T): Promise<T> {
        if (!appId) return request;
        if (!cached || cached.until < Date.now()) {
          const response = await fetch(tokenUrl, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({ grant_type: "client_credentials", client_id: appId, client_secret: appPassword, scope: `${audience ?? ""}/.default` }),
          });
          if (!response.ok) throw new Error(`token endpoint: HTTP ${response.status}`);
          const body = (await response.json()) as { access_token: string; expires_in: number };
          cached = { token: body.access_token, until: Date.now() + (body.expires_in - 60) * 1000 };
        }
        request.headers.set("authorization", `Bearer ${cached.token}`);
        return request;
      },
    };
  }
}
