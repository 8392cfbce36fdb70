import type { IncomingMessage, ServerResponse } from "node:http";
import { parseCookie } from "cookie";
import type { Person } from "../../broker/index.js";

/** Who is looking at a console or audit page. */
export interface ConsoleViewer {
  person: Person;
  /** The id the console's chat knows them by (`console` identity external id). */
  userId: string;
  displayName: string;
}

/**
 * How the console and the audit pages know who is looking. Demo mode: people pick themselves from
 * `console.users` (bot/console). Outside demo mode: an OIDC login (oidc/), kept in a server-side
 * session behind an HttpOnly cookie.
 */
export interface ConsoleAuth {
  readonly kind: "demo" | "oidc";
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

/** A path on this site to go back to after a login or a form (never another origin: `//evil`, `https://…`). */
export function localPath(value: string | null | undefined, fallback = "/console"): string {
  if (!value || !value.startsWith("/") || value.startsWith("//") || value.startsWith("/\\")) return fallback;
  return value;
}
