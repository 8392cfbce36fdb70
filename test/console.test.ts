import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { DEMO_USERS } from "../src/demo/demo-config.js";
import { startDemoGateway, type DemoGateway } from "./support/browser.js";

/**
 * The console over HTTP, as a browser without JavaScript uses it: the picker, the page, form posts
 * for commands and buttons, and the event stream; two replicas on one database and Redis prefix.
 */

const USERS = [...DEMO_USERS, { id: "ops", name: "Olly Ops", email: "ops@demo.jitgate.local" }] as const;
type Who = (typeof USERS)[number]["id"];

/** One person's browser: the cookies it holds, and the console's forms posted as they are. */
class ConsoleBrowser {
  private constructor(
    readonly base: string,
    readonly cookie: string,
  ) {}

  static async login(base: string, who: Who): Promise<ConsoleBrowser> {
    const picker = await fetch(`${base}/console/login?returnTo=/console`);
    const csrfCookie = picker.headers.getSetCookie().map((c) => c.split(";")[0]!);
    const token = /name="csrf" value="([^"]+)"/.exec(await picker.text())?.[1];
    if (!token) throw new Error("the picker has no CSRF token");
    const chosen = await fetch(`${base}/console/login`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie: csrfCookie.join("; ") },
      body: new URLSearchParams({ csrf: token, returnTo: "/console", user: who }).toString(),
    });
    expect(chosen.status).toBe(303);
    expect(chosen.headers.get("location")).toBe("/console");
    const userCookie = chosen.headers.getSetCookie();
    expect(userCookie[0]).toMatch(/^jitgate_console_user=.+; Path=\/; HttpOnly; SameSite=Strict/);
    return new ConsoleBrowser(base, [...csrfCookie, ...userCookie.map((c) => c.split(";")[0]!)].join("; "));
  }

  /** The same person's cookies on another replica (a load balancer may send them anywhere). */
  on(base: string): ConsoleBrowser {
    return new ConsoleBrowser(base, this.cookie);
  }

  async page(): Promise<string> {
    const response = await fetch(`${this.base}/console`, { headers: { cookie: this.cookie }, redirect: "manual" });
    expect(response.status).toBe(200);
    return response.text();
  }

  async token(): Promise<string> {
    const token = /name="csrf" value="([^"]+)"/.exec(await this.page())?.[1];
    if (!token) throw new Error("the console page has no CSRF token");
    return token;
  }

  /** Posts a form; `csrf: null` leaves the token out, a string sends that one instead of the page's. */
  async post(path: string, fields: Record<string, string>, csrf?: string | null): Promise<Response> {
    const token = csrf === undefined ? await this.token() : csrf;
    return fetch(`${this.base}${path}`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie: this.cookie },
      body: new URLSearchParams({ ...fields, ...(token === null ? {} : { csrf: token }) }).toString(),
    });
  }

  async command(text: string): Promise<void> {
    const response = await this.post("/console/command", { text });
    expect(response.status).toBe(303);
  }

  async click(action: string, value: string, extra: Record<string, string> = {}): Promise<void> {
    const response = await this.post("/console/action", { action, value, ...extra });
    expect(response.status).toBe(303);
  }

  /** The text of the part of the page with this id (notes, DMs or the channel), tags removed. */
  async part(id: "live-notes" | "live-dms" | "live-channel"): Promise<string> {
    const page = await this.page();
    const start = page.indexOf(`id="${id}"`);
    const end = page.indexOf(`<!-- /${id} -->`, start);
    const chunk = start < 0 ? "" : end < 0 ? page.slice(start) : page.slice(start, end);
    return chunk.replace(/<[^>]+>/g, " ").replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&").replace(/\s+/g, " ");
  }

  /**
   * Opens the live event stream; `events()` is what arrived so far. Resolves once the server's
   * first line (`: live`) is in: it listens for changes from the moment it writes that line.
   */
  async stream(): Promise<{ status: number; events: () => string[]; close: () => void }> {
    const abort = new AbortController();
    const response = await fetch(`${this.base}/console/events`, { headers: { cookie: this.cookie }, signal: abort.signal });
    const received: string[] = [];
    if (response.ok && response.body) {
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      void (async () => {
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            buffer += decoder.decode(value, { stream: true });
            let index: number;
            while ((index = buffer.indexOf("\n\n")) >= 0) {
              received.push(buffer.slice(0, index));
              buffer = buffer.slice(index + 2);
            }
          }
        } catch {
          // aborted
        }
      })();
      await eventually(async () => received.some((e) => e.split("\n").includes(": live")), Boolean, "the stream's first line");
    }
    return { status: response.status, events: () => received.filter((e) => e.includes("event: change")), close: () => abort.abort() };
  }
}

async function eventually<T>(probe: () => Promise<T>, accept: (value: T) => boolean, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T;
  do {
    last = await probe();
    if (accept(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 50));
  } while (Date.now() < deadline);
  throw new Error(`timed out waiting for ${what}; last: ${String(last).slice(0, 2000)}`);
}

describe("console over HTTP (two replicas)", () => {
  let a: DemoGateway;
  let b: DemoGateway;
  const people = {} as Record<Who, ConsoleBrowser>;

  beforeAll(async () => {
    a = await startDemoGateway("console_a", { users: USERS });
    b = await startDemoGateway("console_b", { users: USERS }, { databaseUrl: a.databaseUrl, prefix: a.prefix });
    for (const user of USERS) people[user.id] = await ConsoleBrowser.login(a.base, user.id);
  }, 60_000);

  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it("sends a visitor without a person to the picker, and refuses the event stream", async () => {
    const page = await fetch(`${a.base}/console`, { redirect: "manual" });
    expect(page.status).toBe(303);
    expect(page.headers.get("location")).toBe("/console/login?returnTo=%2Fconsole");
    const picker = await (await fetch(`${a.base}/console/login`)).text();
    for (const user of USERS) expect(picker).toContain(user.name);
    const events = await fetch(`${a.base}/console/events`);
    expect(events.status).toBe(401);
    const command = await fetch(`${a.base}/console/command`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "text=help",
    });
    expect(command.status).toBe(303);
    expect(command.headers.get("location")).toMatch(/^\/console\/login/);
  });

  it("answers a command with a note only its sender sees, and posts the request to the channel with its buttons", async () => {
    const { dev, lead } = people;
    await dev.command("request demo 30m INC-1 <script>alert(1)</script>");
    const notes = await dev.part("live-notes");
    expect(notes).toMatch(/Only visible to you.*Request req_\w+ sent: demo for 30m \(needs 1 approval\)/);
    expect(await lead.part("live-notes")).not.toContain("Request req_");

    const channel = await eventually(() => lead.part("live-channel"), (text) => text.includes("Access request: demo"), "the request in the channel");
    expect(channel).toContain("Dana Developer");
    expect(channel).toContain("INC-1 <script>alert(1)</script>");
    const html = await lead.page();
    // The reason is text, never markup; the buttons are real buttons in forms.
    expect(html).toContain("INC-1 &lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).not.toContain("<script>alert(1)");
    expect(html).toMatch(/<form id="m-msg_\w+-approve" class="act" method="post" action="\/console\/action">/);
    expect(html).toMatch(/<button type="submit" class="btn primary"[^>]*>Approve<\/button>/);
    expect(html).toMatch(/<input id="m-msg_\w+-deny-reason" name="reason"/);

    // The slash command may be typed as in Slack.
    await dev.command("/access list");
    expect(await dev.part("live-notes")).toMatch(/Your pending requests and live grants: .*pending: demo for 30m, request req_\w+/);
  });

  it("refuses a click from someone who may not decide with a note, and changes nothing", async () => {
    const { dev, ops, lead } = people;
    await dev.command("request demo 1h INC-2 refused clicks");
    const requestId = /Request (req_\w+) sent/.exec(await dev.part("live-notes"))?.[1];
    expect(requestId).toBeDefined();
    await ops.click("approve", requestId!);
    expect(await ops.part("live-notes")).toContain("You are not an approver of demo");
    await dev.click("approve", requestId!);
    expect(await dev.part("live-notes")).toContain("You cannot approve your own request");
    expect((await a.gateway.broker.getRequest(requestId!)).state).toBe("pending");

    await lead.click("deny", requestId!, { reason: "not during the freeze" });
    expect((await a.gateway.broker.getRequest(requestId!)).state).toBe("denied");
    await eventually(() => dev.part("live-channel"), (text) => text.includes("Denied by Lee Lead: not during the freeze"), "the denial in the thread");
    await ops.click("deny", requestId!);
    expect(await ops.part("live-notes")).toContain(`This request is already denied by Lee Lead.`);
  });

  it("approves from the console: the requester's DM holds the connection line, the thread shows the grant", async () => {
    const { dev, lead } = people;
    // The request of the first test is still pending.
    const requestId = /pending: demo for 30m, request (req_\w+)/.exec(await dev.part("live-notes"))?.[1];
    expect(requestId).toBeDefined();
    // Approved on the other replica: a load balancer sends clicks anywhere.
    await lead.on(b.base).click("approve", requestId!);
    const dms = await eventually(() => dev.part("live-dms"), (text) => text.includes("Access to demo approved"), "the DM with the connection line");
    expect(dms).toMatch(/postgres:\/\/dev%40demo\.jitgate\.local:[A-Za-z0-9_-]{32}@127\.0\.0\.1:\d+\/demo\?sslmode=disable/);
    expect(await lead.part("live-dms")).not.toContain("Access to demo approved");
    const channel = await eventually(() => lead.part("live-channel"), (text) => /Live, expires/.test(text), "the grant card in the thread");
    expect(channel).toContain("Approved by Lee Lead (1 of 1)");
    expect(await lead.page()).toMatch(/<input id="m-msg_\w+-extend-duration" name="duration"/);
  });

  it("refuses form posts without the CSRF token, or with another person's", async () => {
    const { dev, lead } = people;
    const missing = await dev.post("/console/command", { text: "request demo 30m csrf" }, null);
    expect(missing.status).toBe(403);
    expect(await missing.text()).toContain("CSRF");
    const leadsToken = await lead.token();
    const borrowed = await dev.post("/console/action", { action: "approve", value: "req_whatever" }, leadsToken);
    expect(borrowed.status).toBe(403);
    const forged = await dev.post("/console/command", { text: "help" }, "x".repeat(43));
    expect(forged.status).toBe(403);
    expect(await dev.part("live-notes")).not.toContain("csrf");
    const notAForm = await fetch(`${a.base}/console/command`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/json", cookie: dev.cookie },
      body: JSON.stringify({ text: "help" }),
    });
    expect(notAForm.status).toBe(415);
  });

  it("an event stream on one replica hears what another replica wrote, and only what its viewer may see", async () => {
    const { dev, lead, ops } = people;
    const devStream = await dev.on(b.base).stream();
    const leadStream = await lead.on(b.base).stream();
    try {
      expect(devStream.status).toBe(200);
      await dev.command("help"); // on replica A: an ephemeral note for dev
      await eventually(async () => devStream.events().length, (n) => n > 0, "an event on replica B");
      expect(devStream.events()[0]).toMatch(/^id: \d+\nevent: change\ndata: \{"seq":\d+\}$/);
      const noteSeq = Number(/"seq":(\d+)/.exec(devStream.events()[0]!)![1]);
      await ops.command("request demo 15m INC-3 live"); // a channel message: everyone hears it
      await eventually(async () => leadStream.events().length, (n) => n > 0, "the channel event for lead");
      // The stream is in order: had lead been told of dev's note, it would have come first.
      const leadSeqs = leadStream.events().map((e) => Number(/"seq":(\d+)/.exec(e)![1]));
      expect(leadSeqs.every((seq) => seq > noteSeq)).toBe(true);
    } finally {
      devStream.close();
      leadStream.close();
    }
  });

  it("serves the stylesheet and the script, and answers unknown assets with 404", async () => {
    const css = await fetch(`${a.base}/console/assets/console.css`);
    expect(css.status).toBe(200);
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
    expect(await css.text()).toContain(":focus-visible");
    const js = await fetch(`${a.base}/console/assets/console.js`);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(await js.text()).toContain("EventSource");
    expect((await fetch(`${a.base}/console/assets/../../package.json`)).status).toBe(404);
    expect((await fetch(`${a.base}/console/assets/nothing.js`)).status).toBe(404);
  });

  it("scrubs the connection line from the DM (and the database) when the grant ends", async () => {
    const { dev } = people;
    const dms = await dev.part("live-dms");
    const line = /postgres:\/\/[^\s<]+/.exec(dms)?.[0];
    const grantId = /grt_\w+/.exec(dms)?.[0];
    expect(line).toBeDefined();
    expect(grantId).toBeDefined();
    const secret = decodeURIComponent(new URL(line!.replace(/&amp;/g, "&")).password);
    const stored = async () => {
      const client = new pg.Client({ connectionString: a.databaseUrl });
      await client.connect();
      try {
        const { rows } = await client.query<{ n: number }>("select count(*)::int as n from console_messages where view::text like $1", [`%${secret}%`]);
        return rows[0]!.n;
      } finally {
        await client.end();
      }
    };
    expect(await stored()).toBe(1);
    await dev.command(`revoke ${grantId} done trying`);
    const after = await eventually(() => dev.part("live-dms"), (text) => text.includes("has ended"), "the scrubbed DM");
    expect(after).not.toContain(secret);
    expect(after).toContain(`Grant ${grantId} has ended; its connection line has been removed.`);
    expect(await stored()).toBe(0);
  });

  it("ends open event streams when the gateway closes", async () => {
    const c = await startDemoGateway("console_c", { users: USERS }, { databaseUrl: a.databaseUrl, prefix: a.prefix });
    const dev = people.dev.on(c.base);
    const stream = await dev.stream();
    expect(stream.status).toBe(200);
    // Without ending the stream, closing the HTTP listener would wait for it until the shutdown step's deadline and fail.
    await expect(c.close()).resolves.toBeUndefined();
    stream.close();
  });
});

describe("console outside demo mode", () => {
  it("requires an OIDC login: the page sends the browser to /oidc/login, and there is no picker", async () => {
    const { startTestGateway } = await import("./support/gateway.js");
    const { startupBanner } = await import("../src/main.js");
    // The provider does not answer: the gateway starts anyway (discovery is retried on first use) and fails closed.
    const gateway = await startTestGateway(
      "console_oidc",
      `console: { enabled: true, allow: { domains: [example.com] } }
oidc: { issuer: "http://127.0.0.1:9/", clientId: jitgate, redirectUrl: "http://127.0.0.1:3000/oidc/callback" }
`,
    );
    try {
      const base = `http://127.0.0.1:${gateway.gateway.httpAddress.port}`;
      expect(gateway.gateway.console?.auth.kind).toBe("oidc");
      const page = await fetch(`${base}/console`, { redirect: "manual" });
      expect(page.status).toBe(302);
      expect(page.headers.get("location")).toBe("/oidc/login?returnTo=%2Fconsole");
      const picker = await fetch(`${base}/console/login`, { redirect: "manual" });
      expect(picker.status).toBe(404); // nobody picks who they are outside demo mode
      const events = await fetch(`${base}/console/events`);
      expect(events.status).toBe(401);
      expect(startupBanner(gateway.gateway, "test")).toContain("/console  (OIDC login, open to @example.com; channel #access-requests)");
    } finally {
      await gateway.close();
    }
  });
});
