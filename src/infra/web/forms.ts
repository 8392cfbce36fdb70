import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ConsoleViewer } from "./console-auth.js";
import type { WebCookies } from "./cookies.js";
import { BadRequestInput, checkedPairs } from "./request-input.js";

/**
 * Form posts of the console, its login picker and the audit pages: the body, and the CSRF check.
 *
 * CSRF: a double-submit token bound to the viewer's session. The browser holds a random secret in
 * an HttpOnly, SameSite=Strict cookie (`__Host-` on https, so no sibling domain can plant one);
 * each form carries HMAC(secret, purpose), where the purpose is the viewer's id and their
 * session's CSRF binding (a secret kept with the OIDC session on the server; see
 * ConsoleViewer.csrfBinding), or "login" on the demo picker. Another site can neither read the
 * cookie nor compute the token; a token rendered in one session is refused in another (after a
 * logout, a switch, or in someone else's browser), even by a browser whose CSRF cookie an
 * attacker chose, since the binding is a secret of the session. Any replica checks what any other
 * rendered. (https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html)
 */
export const CSRF_COOKIE = "jitgate_console_csrf";
export const CSRF_FIELD = "csrf";
const SECRET = /^[A-Za-z0-9_-]{43}$/;

/** The purpose a viewer's form tokens are minted for: who, in which session. */
export const viewerPurpose = (viewer: ConsoleViewer) => `viewer\n${viewer.userId}\n${viewer.csrfBinding}`;

/** The browser's CSRF secret; a new one is set on the response when it has none. Call before the headers are written. */
export function csrfSecret(req: IncomingMessage, res: ServerResponse, cookies: WebCookies): string {
  const existing = cookies.read(req, CSRF_COOKIE);
  if (existing && SECRET.test(existing)) return existing;
  const secret = randomBytes(32).toString("base64url");
  res.appendHeader("set-cookie", cookies.header(CSRF_COOKIE, secret, { sameSite: "Strict" }));
  return secret;
}

export function csrfToken(secret: string, purpose: string): string {
  return createHmac("sha256", secret).update(`jitgate console\n${purpose}`).digest("base64url");
}

/** True when the form's token matches the browser's secret for this purpose. */
export function csrfValid(req: IncomingMessage, form: URLSearchParams, purpose: string, cookies: WebCookies): boolean {
  const secret = cookies.read(req, CSRF_COOKIE);
  const sent = form.get(CSRF_FIELD);
  if (!secret || !SECRET.test(secret) || !sent) return false;
  const expected = Buffer.from(csrfToken(secret, purpose));
  const actual = Buffer.from(sent);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

export class FormError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "FormError";
  }
}

// The longest form is a command line or a deny reason: a few hundred bytes.
export const MAX_FORM_BYTES = 16 * 1024;

/** Reads an `application/x-www-form-urlencoded` body, refusing other types and anything over `limit`. */
export async function readForm(req: IncomingMessage, limit = MAX_FORM_BYTES): Promise<URLSearchParams> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded") throw new FormError(415, "expected a form (application/x-www-form-urlencoded)");
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) throw new FormError(413, "form too large");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new FormError(413, "form too large");
    chunks.push(chunk);
  }
  // Every field is a single line (a command, a reason, a duration, hidden ids and returnTo).
  try {
    return checkedPairs(Buffer.concat(chunks).toString("utf8"), "form");
  } catch (error) {
    if (error instanceof BadRequestInput) throw new FormError(400, error.message);
    throw error;
  }
}


export function redirect(res: ServerResponse, location: string): void {
  res.writeHead(303, { location, "cache-control": "no-store", "content-length": 0 });
  res.end();
}
