import { createHash, randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Redis } from "ioredis";
import type { Broker } from "../broker/index.js";
import { localPath, type ConsoleAuth, type ConsoleViewer } from "../infra/web/console-auth.js";
import { WebCookies } from "../infra/web/cookies.js";
import { html, page, sendHtml } from "../infra/web/html.js";
import { finishAuthorization, startAuthorization, type PendingLogin } from "./authorization.js";
import { consoleAllowNamesGroups, consoleAllows, type ConsoleAllow } from "./console-allow.js";
import { identifyVerified, type OidcVerifier } from "./verifier.js";

/** The session cookie's name: `__Host-jitgate_session` when the gateway is on https (see WebCookies). */
export const SESSION_COOKIE = "jitgate_session";
/** Ties a pending login to the browser that started it (against login CSRF, see startLogin). */
export const LOGIN_COOKIE = "jitgate_oidc_login";
const SESSION_TTL_SECONDS = 12 * 3600;
const LOGIN_TTL_SECONDS = 10 * 60;
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

export interface OidcConsoleAuthOptions {
  broker: Broker;
  verifier: OidcVerifier;
  redis: Redis;
  /** `config.redisPrefix`: keys are `${redisPrefix}:oidc:login:<state>` and `${redisPrefix}:oidc:session:<id>`. */
  redisPrefix: string;
  /** `console.allow`: who may sign in; absent → nobody (fail closed). */
  allow: ConsoleAllow | undefined;
}

/** What a console session holds in Redis. */
interface StoredSession {
  personId: string;
  /** The verified email of the sign-in, checked against `console.allow` again on every request. */
  email: string;
  /** The key the session's CSRF tokens are bound to (ConsoleViewer.csrfBinding). */
  csrf: string;
}

type PendingConsoleLogin = PendingLogin & { returnTo: string; browser: string };

const sha256 = (text: string) => createHash("sha256").update(text).digest("base64url");

/**
 * The console's login outside demo mode: an authorization code login with PKCE at the OIDC
 * provider, then a server-side session in Redis (random id, 12 h) behind an HttpOnly, SameSite=Lax
 * cookie — `__Host-` and Secure when `oidc.redirectUrl` is https. Any replica can read the session.
 * Only people `console.allow` admits get one; everyone else gets a refusal page and nothing kept.
 */
export class OidcConsoleAuth implements ConsoleAuth {
  readonly kind = "oidc" as const;
  readonly cookies: WebCookies;
  readonly #options: OidcConsoleAuthOptions;

  constructor(options: OidcConsoleAuthOptions) {
    this.#options = options;
    this.cookies = WebCookies.forPublicUrl(options.verifier.config.redirectUrl);
  }

  #key(kind: "login" | "session", id: string): string {
    return `${this.#options.redisPrefix}:oidc:${kind}:${id}`;
  }

  async viewerOf(req: IncomingMessage): Promise<ConsoleViewer | undefined> {
    const id = this.cookies.read(req, SESSION_COOKIE);
    if (!id || !TOKEN.test(id)) return undefined;
    const stored = await this.#options.redis.get(this.#key("session", id));
    if (!stored) return undefined;
    let session: StoredSession;
    try {
      session = JSON.parse(stored) as StoredSession;
    } catch {
      return undefined;
    }
    if (typeof session.csrf !== "string") return undefined;
    const person = await this.#options.broker.person(session.personId);
    if (!person) return undefined;
    // A session opened before console.allow was narrowed, or before the person left the group that
    // admitted them (a later sign-in without it, a Slack refresh), on any replica, ends here.
    const identity = consoleAllowNamesGroups(this.#options.allow) ? await this.#options.broker.identity(person) : undefined;
    if (!consoleAllows(this.#options.allow, { email: session.email, emailVerified: true, identity })) return undefined;
    return { person, userId: person.email ?? person.id, displayName: person.displayName, csrfBinding: session.csrf };
  }

  challenge(_req: IncomingMessage, res: ServerResponse, returnTo: string): void {
    res.writeHead(302, { location: `/oidc/login?returnTo=${encodeURIComponent(localPath(returnTo))}`, "cache-control": "no-store" });
    res.end();
  }

  /**
   * `GET /oidc/login?returnTo=…`: to the provider, with the pending login kept in Redis for 10
   * minutes. The browser gets a random cookie whose hash the pending login keeps: the callback
   * completes only in the browser that started the login, so nobody can sign a victim in as
   * themselves by sending them a callback link of their own (login CSRF).
   */
  async startLogin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const returnTo = localPath(new URL(req.url ?? "/", "http://gateway").searchParams.get("returnTo"));
    const { url, pending } = await startAuthorization(this.#options.verifier, {});
    const browser = randomBytes(32).toString("base64url");
    const stored: PendingConsoleLogin = { ...pending, returnTo, browser: sha256(browser) };
    await this.#options.redis.set(this.#key("login", pending.state), JSON.stringify(stored), "EX", LOGIN_TTL_SECONDS);
    res.writeHead(302, {
      location: url.toString(),
      "cache-control": "no-store",
      // Lax: the provider sends the browser back with a top-level GET, which carries Lax cookies.
      "set-cookie": this.cookies.header(LOGIN_COOKIE, browser, { sameSite: "Lax", maxAge: LOGIN_TTL_SECONDS }),
    });
    res.end();
  }

  /** Takes the pending console login of this `state` (once), or undefined when the state is not one. */
  async takePending(state: string): Promise<PendingConsoleLogin | undefined> {
    const key = this.#key("login", state);
    const results = await this.#options.redis.multi().get(key).del(key).exec();
    const stored = results?.[0]?.[1];
    if (typeof stored !== "string") return undefined;
    return JSON.parse(stored) as PendingConsoleLogin;
  }

  /**
   * The callback of a console login: checks that this browser started it, verifies the sign-in,
   * checks `console.allow`, opens the session, and returns to the page. A refused sign-in gets a
   * 403 page, no session and no person record.
   */
  async completeLogin(req: IncomingMessage, callbackUrl: URL, pending: PendingConsoleLogin, res: ServerResponse): Promise<void> {
    const clearLogin = this.cookies.clear(LOGIN_COOKIE, { sameSite: "Lax" });
    const browser = this.cookies.read(req, LOGIN_COOKIE);
    if (!browser || !TOKEN.test(browser) || sha256(browser) !== pending.browser) {
      return refusal(res, 400, "Sign-in failed", ["This sign-in was started in another browser (or its cookie is gone). Start again from the page you came from."], clearLogin);
    }
    const token = await finishAuthorization(this.#options.verifier, callbackUrl, pending);
    const ref = { platform: "oidc" as const, externalId: token.sub, email: token.email, displayName: token.name };
    // Who this would be, with this sign-in's groups, before anyone is stored: a refusal keeps no person record.
    const { person: known, identity } = await this.#options.broker.identityOf(ref, token.groups);
    if (!consoleAllows(this.#options.allow, { email: token.email, emailVerified: true, identity })) {
      // A person jitgate already knows still had a verified sign-in: their groups are what it says
      // now (a group they left stops counting for approvals too).
      if (known) await this.#options.broker.recordOidcGroups(known, token.groups);
      return refusal(
        res,
        403,
        "Not admitted",
        [
          `You signed in as ${token.email}, but this jitgate console is open only to the organisation's people, and ${consoleAllowNamesGroups(this.#options.allow) ? "neither that address nor a group of yours is" : "that address is not"} one of them.`,
          this.#options.allow ? "Ask the gateway's administrators to add you to console.allow if you should have access." : "Its administrators have not said who may sign in (console.allow), so nobody can.",
        ],
        clearLogin,
      );
    }
    const person = await identifyVerified(this.#options.broker, token);
    const id = randomBytes(32).toString("base64url");
    const session: StoredSession = { personId: person.id, email: token.email, csrf: randomBytes(32).toString("base64url") };
    await this.#options.redis.set(this.#key("session", id), JSON.stringify(session), "EX", SESSION_TTL_SECONDS);
    res.appendHeader("set-cookie", clearLogin);
    res.appendHeader("set-cookie", this.cookies.header(SESSION_COOKIE, id, { sameSite: "Lax", maxAge: SESSION_TTL_SECONDS }));
    res.writeHead(302, { location: localPath(pending.returnTo), "cache-control": "no-store" });
    res.end();
  }

  /** `GET /oidc/logout`: ends the session here (not at the provider) and clears the cookie. */
  async logout(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const id = this.cookies.read(req, SESSION_COOKIE);
    if (id && TOKEN.test(id)) await this.#options.redis.del(this.#key("session", id));
    const body = html`<section class="notice"><h1>Signed out</h1><p>You are signed out of jitgate (not of your identity provider). <a href="/console">Sign in again</a>.</p></section>`;
    sendHtml(res, 200, page({ title: "Signed out", body }), { "set-cookie": this.cookies.clear(SESSION_COOKIE, { sameSite: "Lax" }) });
  }
}

function refusal(res: ServerResponse, status: number, title: string, lines: string[], setCookie: string): void {
  const body = html`<section class="notice"><h1>${title}</h1>${lines.map((line) => html`<p>${line}</p>`)}</section>`;
  sendHtml(res, status, page({ title, body }), { "set-cookie": setCookie });
}

/** For the console (src/bot/console): the ConsoleAuth to use outside demo mode when `oidc:` is configured. */
export function createOidcConsoleAuth(options: OidcConsoleAuthOptions): OidcConsoleAuth {
  return new OidcConsoleAuth(options);
}
