import type { IncomingMessage } from "node:http";
import { cookieOf } from "./console-auth.js";

/**
 * The `__Host-` prefix (RFC 6265bis §4.1.3.2): the browser keeps such a cookie only when it is
 * `Secure`, has `Path=/` and no `Domain`, so no sibling or parent domain (`evil.example.com` next
 * to `jitgate.example.com`) can set or shadow it ("cookie tossing"). Browsers honour it only over
 * https, so a gateway reached over plain http (demo mode on loopback, tests) keeps plain names.
 */
export const HOST_PREFIX = "__Host-";

export interface CookieOptions {
  sameSite: "Strict" | "Lax";
  /** Seconds; absent → a session cookie. */
  maxAge?: number;
}

/**
 * The gateway's cookies, named and attributed the same way on every page. Whether the gateway is on
 * https is a matter of configuration, not of the request: browsers reach it at its public URL
 * (`oidc.redirectUrl`'s origin, see `WebCookies.forPublicUrl`), possibly through a proxy that
 * ends TLS, and a cookie's name must not change with a header a proxy may or may not set.
 */
export class WebCookies {
  constructor(readonly secure: boolean) {}

  /** https public URL → `__Host-` names and `Secure`; http or none (demo mode) → plain names. */
  static forPublicUrl(publicUrl: string | undefined): WebCookies {
    return new WebCookies(publicUrl !== undefined && new URL(publicUrl).protocol === "https:");
  }

  /** The name a cookie of ours goes by here: `jitgate_session` or `__Host-jitgate_session`. */
  name(base: string): string {
    return this.secure ? `${HOST_PREFIX}${base}` : base;
  }

  read(req: IncomingMessage, base: string): string | undefined {
    return cookieOf(req, this.name(base));
  }

  /** A `Set-Cookie` value: HttpOnly, Path=/, never a Domain; Secure on https. */
  header(base: string, value: string, options: CookieOptions): string {
    const maxAge = options.maxAge === undefined ? "" : `; Max-Age=${options.maxAge}`;
    return `${this.name(base)}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=${options.sameSite}${maxAge}${this.secure ? "; Secure" : ""}`;
  }

  clear(base: string, options: Omit<CookieOptions, "maxAge">): string {
    return this.header(base, "", { ...options, maxAge: 0 });
  }
}

/** Clears a cookie by its full name; a `__Host-` cookie is only replaced by one that is `Secure` too. */
export function clearCookieHeader(name: string): string {
  return `${name}=; Path=/; Max-Age=0${name.startsWith(HOST_PREFIX) ? "; Secure" : ""}`;
}
