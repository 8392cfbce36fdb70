import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { cookieOf } from "../../infra/web/console-auth.js";
import { BadRequestInput, checkedPairs } from "../../infra/web/request-input.js";

/**
 * Form posts of the console and its login picker: the body, and the CSRF check.
 *
 * CSRF: a double-submit token bound to the viewer. The browser holds a random secret in an
 * HttpOnly, SameSite=Strict cookie; each form carries HMAC(secret, purpose), where the purpose is
 * the viewer's id (or "login" on the picker). Another site can neither read the cookie nor compute
 * the token, and a page rendered for one person does not post as another after a switch. Nothing
 * is kept on the server, so any replica checks what any other rendered.
 * (https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html)
 */
export const CSRF_COOKIE = "jitgate_console_csrf";
export const CSRF_FIELD = "csrf";
const SECRET = /^[A-Za-z0-9_-]{43}$/;

/** `Secure` when the browser reached us over HTTPS (directly, or through a proxy that says so). */
export function isHttps(req: IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean }).encrypted === true || req.headers["x-forwarded-proto"] === "https";
}

export function cookieHeader(req: IncomingMessage, name: string, value: string, extra = ""): string {
  return `${name}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=Strict${isHttps(req) ? "; Secure" : ""}${extra}`;
}

/** The browser's CSRF secret; a new one is set on the response when it has none. Call before the headers are written. */
export function csrfSecret(req: IncomingMessage, res: ServerResponse): string {
  const existing = cookieOf(req, CSRF_COOKIE);
  if (existing && SECRET.test(existing)) return existing;
  const secret = randomBytes(32).toString("base64url");
  res.appendHeader("set-cookie", cookieHeader(req, CSRF_COOKIE, secret));
  return secret;
}

export function csrfToken(secret: string, purpose: string): string {
  return createHmac("sha256", secret).update(`jitgate console\n${purpose}`).digest("base64url");
}

/** True when the form's token matches the browser's secret for this purpose. */
export function csrfValid(req: IncomingMessage, form: URLSearchParams, purpose: string): boolean {
  const secret = cookieOf(req, CSRF_COOKIE);
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
