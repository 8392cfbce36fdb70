import type { Broker } from "../src/broker/index.js";
import { createDemoConsoleAuth } from "../src/bot/console/demo-auth.js";
import type { HttpServer } from "../src/infra/web/http-server.js";

/** The console users of the audit page tests: the same people (by email) the seed made requests as. */
export const AUDIT_TEST_USERS = [
  { id: "ann", name: "Ann Example", email: "ann@example.com" },
  { id: "bob", name: "Bob Builder", email: "bob@example.com" },
  { id: "lee", name: "Lee Lead", email: "lead@example.com" },
] as const;

export type AuditTestUser = (typeof AUDIT_TEST_USERS)[number]["id"];

/**
 * The demo console's real auth (a person picker behind a CSRF-checked form, the choice kept in a
 * cookie), mounted on `http`; `cookieFor` logs in through the picker as a browser would.
 */
export function auditTestAuth(broker: Broker, http: HttpServer) {
  const auth = createDemoConsoleAuth({ broker, users: AUDIT_TEST_USERS, http });
  const cookies = new Map<AuditTestUser, Promise<string>>();
  return {
    auth,
    /** What the auth answers a request without a viewer with (a redirect to the picker). */
    challengeStatus: 303,
    cookieFor(base: string, who: AuditTestUser): Promise<string> {
      let cookie = cookies.get(who);
      if (!cookie) {
        cookie = loginThroughPicker(base, who);
        cookies.set(who, cookie);
      }
      return cookie;
    },
  };
}

/** Picks `who` on the demo console's login page as a browser would (CSRF cookie and token); returns the Cookie header. */
export async function loginThroughPicker(base: string, who: string): Promise<string> {
  const picker = await fetch(`${base}/console/login?returnTo=/audit`);
  const csrfCookie = picker.headers.getSetCookie().map((c) => c.split(";")[0]!);
  const form = await picker.text();
  const token = /name="csrf" value="([^"]+)"/.exec(form)?.[1];
  if (!token) throw new Error("the login picker has no CSRF token");
  const chosen = await fetch(`${base}/console/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: csrfCookie.join("; ") },
    body: new URLSearchParams({ csrf: token, returnTo: "/audit", user: who }).toString(),
  });
  if (chosen.status !== 303) throw new Error(`login as ${who} answered ${chosen.status}: ${await chosen.text()}`);
  return [...csrfCookie, ...chosen.headers.getSetCookie().map((c) => c.split(";")[0]!)].join("; ");
}
