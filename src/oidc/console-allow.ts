import type { Config } from "../config/schema.js";

/** `console.allow`: who may sign in to the console and the audit pages outside demo mode. */
export type ConsoleAllow = NonNullable<Config["console"]["allow"]>;

/** What the provider vouched for at the sign-in (the verified ID token's claims). */
export interface SignInClaims {
  email: string;
  /** The token's `email_verified`; the verifier already refuses a token without it, this says it again here. */
  emailVerified: boolean;
}

/**
 * Whether this sign-in may use the console: a verified email that `console.allow` lists, or whose
 * domain it lists (the part after the last `@`, compared whole and case-insensitively:
 * `example.com` admits `ann@example.com`, not `ann@eu.example.com` nor `ann@evil-example.com`).
 * No `console.allow` admits nobody (fail closed; the schema demands it when the console is on).
 *
 * IdP groups (the policy issue) are meant to hang here as a third list checked against the
 * token's groups claim; nothing else needs to change for them.
 */
export function consoleAllows(allow: ConsoleAllow | undefined, claims: SignInClaims): boolean {
  if (!allow || !claims.emailVerified) return false;
  const email = claims.email.trim().toLowerCase();
  const at = email.lastIndexOf("@");
  if (at <= 0 || at === email.length - 1) return false;
  const domain = email.slice(at + 1);
  return allow.emails.some((e) => e.toLowerCase() === email) || allow.domains.some((d) => d.toLowerCase() === domain);
}

/** `console.allow` in a few words, for the start-up banner. */
export function describeConsoleAllow(allow: ConsoleAllow | undefined): string {
  if (!allow) return "nobody may sign in (console.allow is not set)";
  const parts = [
    ...(allow.domains.length > 0 ? [`@${allow.domains.join(", @")}`] : []),
    ...(allow.emails.length > 0 ? [`${allow.emails.length} listed address${allow.emails.length === 1 ? "" : "es"}`] : []),
  ];
  return `open to ${parts.join(" and ")}`;
}
