import { parseGroupOnlyEntry } from "../config/approver-entry.js";
import type { Config } from "../config/schema.js";
import { entryNames, type Identity } from "../broker/policy.js";

/** `console.allow`: who may sign in to the console and the audit pages outside demo mode. */
export type ConsoleAllow = NonNullable<Config["console"]["allow"]>;
/** `console.allow` as the check reads it (`groups` may be left out: no group admits anyone). */
export type ConsoleAllowRules = Omit<ConsoleAllow, "groups"> & { groups?: readonly string[] | undefined };

/** What the provider vouched for at the sign-in (the verified ID token's claims). */
export interface SignInClaims {
  email: string;
  /** The token's `email_verified`; the verifier already refuses a token without it, this says it again here. */
  emailVerified: boolean;
  /**
   * The person's identity with their groups as they stand (PeopleService.identityOf, with the
   * sign-in's own `groups` claim as their OIDC groups); without it no group admits them.
   */
  identity?: Identity | undefined;
}

/**
 * Whether this sign-in may use the console: a verified email that `console.allow` lists, or whose
 * domain it lists (the part after the last `@`, compared whole and case-insensitively:
 * `example.com` admits `ann@example.com`, not `ann@eu.example.com` nor `ann@evil-example.com`), or a
 * member of a group it lists (`group:dba` from the OIDC `groups` claim, `slack-group:S0DBA` / `@dba`
 * when the person's Slack identity is in that user group).
 * No `console.allow` admits nobody (fail closed; the schema demands it when the console is on).
 */
export function consoleAllows(allow: ConsoleAllowRules | undefined, claims: SignInClaims): boolean {
  if (!allow || !claims.emailVerified) return false;
  const email = claims.email.trim().toLowerCase();
  const at = email.lastIndexOf("@");
  if (at <= 0 || at === email.length - 1) return false;
  const domain = email.slice(at + 1);
  if (allow.emails.some((e) => e.toLowerCase() === email) || allow.domains.some((d) => d.toLowerCase() === domain)) return true;
  const identity = claims.identity;
  if (!identity) return false;
  return (allow.groups ?? []).some((text) => {
    const entry = parseGroupOnlyEntry(text);
    return !("problem" in entry) && entryNames(entry, identity);
  });
}

/** Whether admission can depend on groups (then the session is checked against the person's groups as they change). */
export const consoleAllowNamesGroups = (allow: ConsoleAllowRules | undefined) => (allow?.groups?.length ?? 0) > 0;

/** `console.allow` in a few words, for the start-up banner. */
export function describeConsoleAllow(allow: ConsoleAllowRules | undefined): string {
  if (!allow) return "nobody may sign in (console.allow is not set)";
  const groups = allow.groups ?? [];
  const parts = [
    ...(allow.domains.length > 0 ? [`@${allow.domains.join(", @")}`] : []),
    ...(allow.emails.length > 0 ? [`${allow.emails.length} listed address${allow.emails.length === 1 ? "" : "es"}`] : []),
    ...(groups.length > 0 ? [`members of ${groups.join(", ")}`] : []),
  ];
  return `open to ${parts.join(" and ")}`;
}
