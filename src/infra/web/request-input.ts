import type { IncomingMessage } from "node:http";
import { parseCookie } from "cookie";

/**
 * What the HTTP edge refuses before any handler runs: a request line that is not a URL, malformed
 * percent-encoding (RFC 3986 §2.1) in the path or the query, control characters once decoded, and
 * a cookie of ours that is not what we set. A browser or a scanner sends these; the answer is a
 * 400 that says which, never a URIError turned into a 500 deep inside a page.
 */
export class BadRequestInput extends Error {
  constructor(
    message: string,
    /** Our cookies to clear on the 400, so that a browser holding a mangled one recovers on reload. */
    readonly clearCookies: readonly string[] = [],
  ) {
    super(message);
    this.name = "BadRequestInput";
  }
}

/**
 * The cookies this gateway sets all start with this (after `__Host-` on an https gateway, see
 * cookies.ts); other cookies on the host are none of ours.
 */
export const OUR_COOKIE_PREFIX = "jitgate_";
const isOurs = (name: string) => name.startsWith(OUR_COOKIE_PREFIX) || name.startsWith(`__Host-${OUR_COOKIE_PREFIX}`);

// C0 controls and DEL. None belongs in a path, a query, a single-line form field or a cookie of ours.
const CONTROL = /[\u0000-\u001f\u007f]/;

/** decodeURIComponent that answers undefined where it would throw (a stray `%`, a cut or invalid UTF-8 sequence). */
function decodeStrict(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/**
 * `application/x-www-form-urlencoded` pairs (a query string or a form body), checked as the URL
 * standard's parser would read them but without its silent U+FFFD for malformed escapes.
 * `what` names the place in the error ("query", "form").
 */
export function checkedPairs(encoded: string, what: string): URLSearchParams {
  for (const pair of encoded.split("&")) {
    if (pair === "") continue;
    const decoded = decodeStrict(pair.replace(/\+/g, " "));
    if (decoded === undefined) throw new BadRequestInput(`malformed percent-encoding in the ${what}`);
    if (CONTROL.test(decoded)) throw new BadRequestInput(`control characters in the ${what}`);
  }
  return new URLSearchParams(encoded);
}

/** The path and query of a request, once checked; throws BadRequestInput. */
export function checkedUrl(req: IncomingMessage): URL {
  const raw = req.url ?? "/";
  // Origin-form only ("/path?query"); an absolute or authority form is no request for this server's pages.
  if (!raw.startsWith("/")) throw new BadRequestInput("the request target is not a path");
  let url: URL;
  try {
    url = new URL(raw, "http://gateway");
  } catch {
    throw new BadRequestInput("the request target is not a URL");
  }
  const path = decodeStrict(url.pathname);
  if (path === undefined) throw new BadRequestInput("malformed percent-encoding in the path");
  if (CONTROL.test(path)) throw new BadRequestInput("control characters in the path");
  checkedPairs(url.search.slice(1), "query");
  return url;
}

/** Our cookies of a request, decoded; throws BadRequestInput (naming the cookies to clear) when one is malformed. */
export function ourCookies(req: IncomingMessage): Map<string, string> {
  const header = req.headers.cookie;
  const cookies = new Map<string, string>();
  if (!header) return cookies;
  const malformed: string[] = [];
  // `cookie` keeps a value it cannot decode as it was; keeping the raw text lets us tell that case apart.
  const parsed = parseCookie(header, { decode: (value) => value });
  for (const [name, value] of Object.entries(parsed)) {
    if (!isOurs(name) || value === undefined) continue;
    const decoded = decodeStrict(value);
    if (decoded === undefined || CONTROL.test(decoded)) malformed.push(name);
    else cookies.set(name, decoded);
  }
  if (malformed.length > 0) throw new BadRequestInput(`malformed cookie ${malformed.join(", ")}`, malformed);
  return cookies;
}

/** Checks everything the edge refuses (see BadRequestInput); the HTTP server calls it for every request. */
export function checkRequestInput(req: IncomingMessage): URL {
  const url = checkedUrl(req);
  ourCookies(req);
  return url;
}
