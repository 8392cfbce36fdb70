import type { IncomingMessage, ServerResponse } from "node:http";
import type { Broker, Person } from "../../broker/index.js";
import { localPath, type ConsoleAuth, type ConsoleViewer } from "../../infra/web/console-auth.js";
import { WebCookies } from "../../infra/web/cookies.js";
import { html, page, sendHtml } from "../../infra/web/html.js";
import type { HttpServer } from "../../infra/web/http-server.js";
import type { ConsoleUser } from "./console-port.js";
import { csrfSecret, csrfToken, csrfValid, CSRF_FIELD, FormError, readForm, redirect } from "./forms.js";

export const CONSOLE_USER_COOKIE = "jitgate_console_user";
export const LOGIN_PATH = "/console/login";
const LOGIN_PURPOSE = "login";

export interface DemoConsoleAuthOptions {
  broker: Broker;
  users: readonly ConsoleUser[];
  http: HttpServer;
}

/**
 * Demo mode's "login": a picker of `console.users`, each a button; the choice is a cookie. There is
 * no password, which is why demo mode listens on 127.0.0.1 only. The person behind a console user
 * is `broker.identify` of their console identity, so the email links them to the approver lists.
 */
export function createDemoConsoleAuth(options: DemoConsoleAuthOptions): ConsoleAuth {
  const { broker, users, http } = options;
  // Demo mode listens on loopback over plain http (the schema insists): plain cookie names.
  const cookies = new WebCookies(false);
  const people = new Map<string, Promise<Person>>();
  const personOf = (user: ConsoleUser) => {
    let person = people.get(user.id);
    if (!person) {
      person = broker.identify({ platform: "console", externalId: user.id, email: user.email, displayName: user.name });
      person.catch(() => people.delete(user.id)); // a database hiccup must not stick
      people.set(user.id, person);
    }
    return person;
  };

  http.route("GET", LOGIN_PATH, (req, res) => {
    const url = new URL(req.url ?? "/", "http://gateway");
    const returnTo = localPath(url.searchParams.get("returnTo"), "/console");
    const token = csrfToken(csrfSecret(req, res, cookies), LOGIN_PURPOSE);
    const current = cookies.read(req, CONSOLE_USER_COOKIE);
    const body = html`<section class="picker" aria-labelledby="picker-title">
<h1 id="picker-title">Who are you?</h1>
<p>This is demo mode: pick a person to act as. There is no password, so the gateway listens on this machine only.</p>
<ul class="people">
${users.map(
  (user) => html`<li><form method="post" action="${LOGIN_PATH}"><input type="hidden" name="${CSRF_FIELD}" value="${token}"><input type="hidden" name="returnTo" value="${returnTo}"><input type="hidden" name="user" value="${user.id}"><button type="submit" class="btn person${user.id === current ? " current" : ""}"><strong>${user.name}</strong> <span>${user.id} · ${user.email}</span></button></form></li>`,
)}
</ul>
${users.length === 0 ? html`<p class="empty">No people are configured: add them under <code>console.users</code>.</p>` : ""}
</section>`;
    sendHtml(res, 200, page({ title: "Pick a person", body, section: "console" }));
  });

  http.route("POST", LOGIN_PATH, async (req, res) => {
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (error) {
      if (error instanceof FormError) return sendHtml(res, error.status, page({ title: "Bad request", body: html`<p>${error.message}</p>` }));
      throw error;
    }
    if (!csrfValid(req, form, LOGIN_PURPOSE, cookies)) {
      return sendHtml(res, 403, page({ title: "Refused", body: html`<p>The form has expired or did not come from this page. <a href="${LOGIN_PATH}">Pick again</a>.</p>` }));
    }
    const user = users.find((u) => u.id === form.get("user"));
    if (!user) return sendHtml(res, 400, page({ title: "Unknown person", body: html`<p>No such person. <a href="${LOGIN_PATH}">Pick again</a>.</p>` }));
    await personOf(user);
    res.appendHeader("set-cookie", cookies.header(CONSOLE_USER_COOKIE, user.id, { sameSite: "Strict" }));
    redirect(res, localPath(form.get("returnTo"), "/console"));
  });

  return {
    kind: "demo",
    cookies,
    async viewerOf(req: IncomingMessage): Promise<ConsoleViewer | undefined> {
      const id = cookies.read(req, CONSOLE_USER_COOKIE);
      const user = id ? users.find((u) => u.id === id) : undefined;
      if (!user) return undefined;
      // No session behind a pick (anyone on this machine may pick anyone): tokens are bound to the person picked.
      return { person: await personOf(user), userId: user.id, displayName: user.name, csrfBinding: `demo:${user.id}` };
    },
    challenge(_req: IncomingMessage, res: ServerResponse, returnTo: string): void {
      redirect(res, `${LOGIN_PATH}?returnTo=${encodeURIComponent(localPath(returnTo, "/console"))}`);
    },
  };
}
