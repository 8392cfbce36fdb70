import type { IncomingMessage, ServerResponse } from "node:http";
import { parseCookie } from "cookie";
import type { Person } from "../../broker/index.js";
import type { WebCookies } from "./cookies.js";

/** Who is looking at a console or audit page. */
export interface ConsoleViewer {
  person: Person;
  /** The id the console's chat knows them by (`console` identity external id). */
  userId: string;
  displayName: string;
  /**
   * What the viewer's CSRF tokens are bound to: a secret of their login session (OIDC: a random key
   * kept with the session in Redis; demo: the person picked). A token minted for one session is
   * refused in another, even in a browser whose CSRF cookie an attacker has planted.
   */
  csrfBinding: string;
}

/**
 * How the console and the audit pages know who is looking. Demo mode: people pick themselves from
 * `console.users` (bot/console). Outside demo mode: an OIDC login (oidc/), kept in a server-side
 * session behind an HttpOnly cookie.
 */
export interface ConsoleAuth {
  readonly kind: "demo" | "oidc";
  /** How the gateway's cookies are named and attributed (`__Host-`, `Secure` on https). */
  readonly cookies: WebCookies;
  /** The viewer behind this request, or undefined when nobody is logged in (or the session ended). */
  viewerOf(req: IncomingMessage): Promise<ConsoleViewer | undefined>;
  /** Answers a request that has no viewer: a redirect to the picker or the login, with `returnTo`. */
  challenge(req: IncomingMessage, res: ServerResponse, returnTo: string): void;
}

/**
 * Reads one cookie from a request, decoded; undefined when it is absent or malformed (the HTTP
 * server has already answered 400 to a malformed cookie of ours, see request-input.ts).
 */
export function cookieOf(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  return parseCookie(header, { decode: decodeOrUndefined })[name];
}

function decodeOrUndefined(value: string): string | undefined {
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

// Only to resolve against: the origin check compares with it, whatever the gateway's real name is.
const SELF = new URL("http://gateway.invalid/");
// C0 and C1 controls, DEL, and backslash (which a browser reads as "/" in http(s) URLs).
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\\]/;

/**
 * A path on this site to go back to after a login or a form, or `fallback`. Accepted only when it
 * is an absolute path that the URL parser (https://url.spec.whatwg.org/#concept-basic-url-parser,
 * what the browser will run on the Location header) resolves to the gateway's own origin, with no
 * control character or backslash anywhere (browsers drop a tab or a newline: `/\t/evil.example` is
 * `//evil.example` to them). The answer is the parser's normalized path, query and fragment, never
 * the text as given; a normalized path that starts with `//` (`/.//evil.example`) is refused too,
 * since a browser would read it as another host.
 */
export function localPath(value: string | null | undefined, fallback = "/console"): string {
  if (!value || !value.startsWith("/") || UNSAFE.test(value)) return fallback;
  let url: URL;
  try {
    url = new URL(value, SELF);
  } catch {
    return fallback;
  }
  if (url.origin !== SELF.origin) return fallback;
  const path = `${url.pathname}${url.search}${url.hash}`;
  if (!path.startsWith("/") || path.startsWith("//")) return fallback;
  return path;
}
