import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Redis } from "ioredis";
import type { Broker } from "../broker/index.js";
import { cookieOf, localPath, type ConsoleAuth, type ConsoleViewer } from "../infra/web/console-auth.js";
import { html, page, sendHtml } from "../infra/web/html.js";
import { finishAuthorization, startAuthorization, type PendingLogin } from "./authorization.js";
import type { OidcVerifier } from "./verifier.js";

export const SESSION_COOKIE = "jitgate_session";
const SESSION_TTL_SECONDS = 12 * 3600;
const LOGIN_TTL_SECONDS = 10 * 60;

export interface OidcConsoleAuthOptions {
  broker: Broker;
  verifier: OidcVerifier;
  redis: Redis;
  /** `config.redisPrefix`: keys are `${redisPrefix}:oidc:login:<state>` and `${redisPrefix}:oidc:session:<id>`. */
  redisPrefix: string;
}


/**
 * The console's login outside demo mode: an authorization code login with PKCE at the OIDC
 * provider, then a server-side session in Redis (random id, 12 h) behind an HttpOnly, SameSite=Lax
 * cookie — Secure when `oidc.redirectUrl` is https. Any replica can read the session.
 */
export class OidcConsoleAuth implements ConsoleAuth {
  readonly kind = "oidc" as const;
  readonly #options: OidcConsoleAuthOptions;

  constructor(options: OidcConsoleAuthOptions) {
    this.#options = options;
  }

  #key(kind: "login" | "session", id: string): string {
    return `${this.#options.redisPrefix}:oidc:${kind}:${id}`;
  }

  get #secure(): boolean {
    return new URL(this.#options.verifier.config.redirectUrl).protocol === "https:";
  }

  async viewerOf(req: IncomingMessage): Promise<ConsoleViewer | undefined> {
    const id = cookieOf(req, SESSION_COOKIE);
    if (!id || !/^[A-Za-z0-9_-]{20,100}$/.test(id)) return undefined;
    const personId = await this.#options.redis.get(this.#key("session", id));
    if (!personId) return undefined;
    const person = await this.#options.broker.person(personId);
    if (!person) return undefined;
    return { person, userId: person.email ?? person.id, displayName: person.displayName };
  }

  challenge(_req: IncomingMessage, res: ServerResponse, returnTo: string): void {
    res.writeHead(302, { location: `/oidc/login?returnTo=${encodeURIComponent(localPath(returnTo))}`, "cache-control": "no-store" });
    res.end();
  }

  /** `GET /oidc/login?returnTo=…`: to the provider, with the pending login kept in Redis for 10 minutes. */
  async startLogin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const returnTo = localPath(new URL(req.url ?? "/", "http://gateway").searchParams.get("returnTo"));
    const { url, pending } = await startAuthorization(this.#options.verifier, {});
    await this.#options.redis.set(this.#key("login", pending.state), JSON.stringify({ ...pending, returnTo }), "EX", LOGIN_TTL_SECONDS);
    res.writeHead(302, { location: url.toString(), "cache-control": "no-store" });
    res.end();
  }

  /** Takes the pending console login of this `state` (once), or undefined when the state is not one. */
  async takePending(state: string): Promise<(PendingLogin & { returnTo: string }) | undefined> {
    const key = this.#key("login", state);
    const results = await this.#options.redis.multi().get(key).del(key).exec();
    const stored = results?.[0]?.[1];
    if (typeof stored !== "string") return undefined;
    return JSON.parse(stored) as PendingLogin & { returnTo: string };
  }

  /** The callback of a console login: verifies the sign-in, opens the session, and returns to the page. */
  async completeLogin(callbackUrl: URL, pending: PendingLogin & { returnTo: string }, res: ServerResponse): Promise<void> {
    const token = await finishAuthorization(this.#options.verifier, callbackUrl, pending);
    const person = await this.#options.broker.identify({ platform: "oidc", externalId: token.sub, email: token.email, displayName: token.name });
    const id = randomBytes(32).toString("base64url");
    await this.#options.redis.set(this.#key("session", id), person.id, "EX", SESSION_TTL_SECONDS);
    res.writeHead(302, {
      location: localPath(pending.returnTo),
      "set-cookie": `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${SESSION_TTL_SECONDS}${this.#secure ? "; Secure" : ""}`,
      "cache-control": "no-store",
    });
    res.end();
  }

  /** `GET /oidc/logout`: ends the session here (not at the provider) and clears the cookie. */
  async logout(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const id = cookieOf(req, SESSION_COOKIE);
    if (id) await this.#options.redis.del(this.#key("session", id));
    const body = html`<section class="notice"><h1>Signed out</h1><p>You are signed out of jitgate (not of your identity provider). <a href="/console">Sign in again</a>.</p></section>`;
    sendHtml(res, 200, page({ title: "Signed out", body }), {
      "set-cookie": `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0${this.#secure ? "; Secure" : ""}`,
    });
  }
}

/** For the console (src/bot/console): the ConsoleAuth to use outside demo mode when `oidc:` is configured. */
export function createOidcConsoleAuth(options: OidcConsoleAuthOptions): OidcConsoleAuth {
  return new OidcConsoleAuth(options);
}
