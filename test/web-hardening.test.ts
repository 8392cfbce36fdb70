import { request } from "node:http";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../src/config/load.js";
import { ConsoleStore } from "../src/broker/console-messages.js";
import { accessRequests, chatMessages, people } from "../src/db/schema.js";
import { localPath } from "../src/infra/web/console-auth.js";
import { startupBanner } from "../src/main.js";
import { consoleAllows } from "../src/oidc/console-allow.js";
import { REDIS_URL } from "./support/databases.js";
import { startDemoGateway, type DemoGateway } from "./support/browser.js";
import { eventually } from "./support/fake-slack.js";
import { startTestGateway } from "./support/gateway.js";
import { startOidcGateway, startTestProvider, CLIENT_ID, type TestProvider } from "./support/oidc-provider.js";
import { freePort } from "./support/ports.js";
import { closeRedis, connectRedis } from "../src/infra/redis.js";

/**
 * Who gets into the console and the audit pages, tried as an attacker would (issue 17, musts 1, 2
 * and 6): open redirects through `returnTo`, sign-ins from outside the organisation, viewers
 * reading other targets' threads and audit pages, cookies a sibling domain could plant, and CSRF
 * tokens carried from one session into another. Every attempt is a raw HTTP request against a
 * started gateway and a real OIDC provider, and each check looks at the effect: the status, the
 * Location header, the cookies set, the rows written.
 */

const HTTPS_CALLBACK = "https://jitgate.test/oidc/callback";
const ACCOUNTS = [
  { sub: "sub-dev", email: "dev@example.com", name: "Dev" },
  { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
  { sub: "sub-pay", email: "pay@example.com", name: "Pay" },
  { sub: "sub-contractor", email: "contractor@partner.test", name: "Contractor" },
  { sub: "sub-outsider", email: "outsider@elsewhere.test", name: "Outsider" },
  { sub: "sub-unverified", email: "unverified@example.com", emailVerified: false, name: "Unverified" },
];
type Who = "dev" | "lead" | "pay" | "contractor" | "outsider" | "unverified";

let provider: TestProvider;
let gw: Awaited<ReturnType<typeof startOidcGateway>>;

beforeAll(async () => {
  provider = await startTestProvider(ACCOUNTS, { redirectUris: [HTTPS_CALLBACK] });
  gw = await startOidcGateway(
    "web_hardening",
    provider.issuer,
    `console: { enabled: true, allow: { domains: [example.com], emails: [contractor@partner.test] } }
targets:
  - { name: orders-db, kind: postgres, upstream: "postgres://u:p@127.0.0.1:1/orders", approvers: [lead@example.com] }
  - { name: payments-db, kind: postgres, upstream: "postgres://u:p@127.0.0.1:1/payments", approvers: [pay@example.com] }
  - { name: csrf-db, kind: postgres, upstream: "postgres://u:p@127.0.0.1:1/csrf", approvers: [lead@example.com] }
`,
  );
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await provider?.close();
});

// ---------------------------------------------------------------- raw HTTP

interface Answer {
  status: number;
  location: string | undefined;
  setCookies: string[];
  body: string;
}

/** A raw request: fetch would re-encode the path and the bytes must reach the server as written. */
function send(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers: { ...headers, ...(body !== undefined ? { "content-length": String(Buffer.byteLength(body)) } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            location: res.headers.location,
            setCookies: res.headers["set-cookie"] ?? [],
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** A browser's cookie jar for one gateway: what it was told to keep, sent back as `Cookie`. */
class Jar {
  readonly cookies = new Map<string, string>();
  absorb(setCookies: string[]): this {
    for (const line of setCookies) {
      const [pair] = line.split(";");
      const index = pair!.indexOf("=");
      const name = pair!.slice(0, index).trim();
      const value = pair!.slice(index + 1).trim();
      if (/Max-Age=0/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return this;
  }
  get header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
  with(overrides: Record<string, string>): string {
    return [...new Map([...this.cookies, ...Object.entries(overrides)])].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}

/** Follows the provider's redirects until the browser would be sent to `prefix`; returns that URL unvisited. */
async function browseUntil(start: string, prefix: string): Promise<string> {
  const jar = new Jar();
  let url = start;
  for (let step = 0; step < 20; step++) {
    if (url.startsWith(prefix)) return url;
    const response = await fetch(url, { redirect: "manual", headers: jar.header ? { cookie: jar.header } : {} });
    jar.absorb(response.headers.getSetCookie());
    const location = response.headers.get("location");
    if (!location) throw new Error(`no redirect at ${url} (${response.status})`);
    url = new URL(location, url).toString();
  }
  throw new Error("too many redirects");
}

/**
 * Signs in at the provider as `who` through `/oidc/login?<rawQuery>`, in a fresh browser; answers
 * the gateway's answer to the callback (or to /oidc/login, when that did not send it on).
 */
async function signIn(who: Who, rawQuery = "returnTo=%2Fconsole", base = gw.origin, callbackPrefix = `${gw.origin}/oidc/callback`): Promise<{ jar: Jar; answer: Answer }> {
  const jar = new Jar();
  provider.nextLogin.account = `sub-${who}`;
  const start = await send(base, "GET", `/oidc/login?${rawQuery}`);
  jar.absorb(start.setCookies);
  if (start.status !== 302) return { jar, answer: start };
  const callback = new URL(await browseUntil(start.location!, callbackPrefix));
  const answer = await send(base, "GET", `/oidc/callback${callback.search}`, { cookie: jar.header });
  jar.absorb(answer.setCookies);
  return { jar, answer };
}

/** A signed-in browser at the console: its jar (session and CSRF cookies) and the page's CSRF token. */
async function consoleOf(who: Who): Promise<{ jar: Jar; token: string; page: string }> {
  const { jar, answer } = await signIn(who);
  expect(answer.status, answer.body).toBe(302);
  const page = await send(gw.origin, "GET", "/console", { cookie: jar.header });
  expect(page.status).toBe(200);
  jar.absorb(page.setCookies);
  return { jar, token: /name="csrf" value="([^"]+)"/.exec(page.body)![1]!, page: page.body };
}

const postCommand = (cookie: string, csrf: string, text: string, base = gw.origin) =>
  send(base, "POST", "/console/command", { cookie, "content-type": "application/x-www-form-urlencoded" }, new URLSearchParams({ csrf, text }).toString());

const requestsWithReason = async (reason: string) =>
  gw.gateway.storage.db.select().from(accessRequests).where(eq(accessRequests.reason, reason));

const sessionKeys = async () => {
  const redis = connectRedis(REDIS_URL);
  try {
    return (await redis.keys(`${gw.prefix}:oidc:session:*`)).length;
  } finally {
    await closeRedis(redis);
  }
};

/** A Location a browser follows stays on `origin`: resolved against it, it is it. */
function staysOn(origin: string, location: string | undefined): boolean {
  if (location === undefined) return true;
  return new URL(location, `${origin}/oidc/callback`).origin === origin && !location.startsWith("//") && !/[\\\u0000-\u001f]/.test(location);
}

// ---------------------------------------------------------------- 1. open redirect

/** returnTo values an attacker sends, as they would appear in a query (percent-encoded once). */
const REDIRECT_ATTACKS: [raw: string, what: string][] = [
  ["/%09/evil.example", "a tab, which browsers drop"],
  ["/%0A/evil.example", "a newline"],
  ["/%0D/evil.example", "a carriage return"],
  ["%2F%2Fevil.example", "a scheme-relative //host"],
  ["/%5Cevil.example", "a backslash, which browsers read as /"],
  ["%5C%5Cevil.example", "two backslashes"],
  ["/.//evil.example", "a dot segment that normalizes to //host"],
  ["/%2e%2e//evil.example", "an encoded dot-dot segment that normalizes to //host"],
  ["https%3A%2F%2Fevil.example%2F", "an absolute URL"],
  ["javascript%3Aalert(1)", "a javascript: URL"],
  ["/%5C/evil.example", "/\\ then a host"],
  ["%09%2F%2Fevil.example", "a tab before //host"],
];

describe("returnTo: an open redirect is refused (must 1)", () => {
  it("localPath accepts only a path that parses to the gateway's own origin, normalized", () => {
    for (const attack of [
      "/\t/evil.example",
      "/\n/evil.example",
      "/\r/evil.example",
      "//evil.example",
      "/\\evil.example",
      "\\\\evil.example",
      "/\\/evil.example",
      "/.//evil.example",
      "/%2e%2e//evil.example",
      "/a/../..//evil.example",
      "https://evil.example/",
      "HTTPS://evil.example",
      "javascript:alert(1)",
      "\t//evil.example",
      " //evil.example",
      "evil.example",
      "/\u0000x",
      "/\u0085x",
      "",
    ]) {
      expect(localPath(attack, "FALLBACK"), JSON.stringify(attack)).toBe("FALLBACK");
    }
    expect(localPath(null, "FALLBACK")).toBe("FALLBACK");
    // Encoded slashes and backslashes stay encoded: a path on the gateway, never another host.
    expect(localPath("/%2F%2Fevil.example")).toBe("/%2F%2Fevil.example");
    expect(localPath("/%5Cevil.example")).toBe("/%5Cevil.example");
    expect(localPath("/%09/evil.example")).toBe("/%09/evil.example");
    // What the gateway itself sends stays as it was; what it answers is the parser's normalized form.
    expect(localPath("/audit?person=ann&target=orders-db#top")).toBe("/audit?person=ann&target=orders-db#top");
    expect(localPath("/audit/./requests/../sessions/ses_1")).toBe("/audit/sessions/ses_1");
    expect(localPath("/audit?person=ü")).toBe("/audit?person=%C3%BC");
  });

  it("the OIDC login: a control character is refused at the edge, everything else lands back on the gateway", async () => {
    for (const [raw, what] of REDIRECT_ATTACKS) {
      const { answer } = await signIn("dev", `returnTo=${raw}`);
      if (/%0[9AD]/i.test(raw)) {
        expect(answer.status, what).toBe(400); // the HTTP edge refuses control characters in a query
        expect(answer.location, what).toBeUndefined();
        continue;
      }
      expect(answer.status, what).toBe(302);
      expect(staysOn(gw.origin, answer.location), `${what}: ${answer.location}`).toBe(true);
      expect(answer.location, what).toBe("/console");
    }
    // Encoded slashes are a path on the gateway, not a host.
    const encoded = await signIn("dev", "returnTo=%2F%252F%252Fevil.example");
    expect(encoded.answer.location).toBe("/%2F%2Fevil.example");
    expect(staysOn(gw.origin, encoded.answer.location)).toBe(true);
    // The legitimate path still works.
    const legit = await signIn("dev", `returnTo=${encodeURIComponent("/audit?target=orders-db")}`);
    expect(legit.answer.location).toBe("/audit?target=orders-db");
  }, 60_000);

  describe("the demo picker", () => {
    let demo: DemoGateway;
    beforeAll(async () => {
      demo = await startDemoGateway("web_hardening_demo");
    }, 60_000);
    afterAll(async () => {
      await demo?.close();
    });

    it("renders and follows only local paths", async () => {
      for (const [raw, what] of REDIRECT_ATTACKS) {
        const picker = await send(demo.base, "GET", `/console/login?returnTo=${raw}`);
        if (/%0[9AD]/i.test(raw)) {
          expect(picker.status, what).toBe(400);
          continue;
        }
        expect(picker.status, what).toBe(200);
        expect(/name="returnTo" value="([^"]*)"/.exec(picker.body)?.[1], what).toBe("/console");
        const jar = new Jar().absorb(picker.setCookies);
        const csrf = /name="csrf" value="([^"]+)"/.exec(picker.body)![1]!;
        // The form posted with the attacker's value instead of the rendered one.
        const chosen = await send(
          demo.base,
          "POST",
          "/console/login",
          { cookie: jar.header, "content-type": "application/x-www-form-urlencoded" },
          `csrf=${encodeURIComponent(csrf)}&user=dev&returnTo=${raw}`,
        );
        if (/%0[9AD]/i.test(raw)) continue;
        expect(chosen.status, what).toBe(303);
        expect(chosen.location, what).toBe("/console");
        expect(staysOn(demo.base, chosen.location), what).toBe(true);
      }
    }, 60_000);
  });
});

// ---------------------------------------------------------------- 2. only the organisation

describe("console.allow: only the organisation signs in (must 2)", () => {
  it("matches verified emails by whole domain or listed address", () => {
    const allow = { domains: ["example.com"], emails: ["contractor@partner.test"] };
    const admits = (email: string, emailVerified = true) => consoleAllows(allow, { email, emailVerified });
    expect(admits("dev@example.com")).toBe(true);
    expect(admits("Dev@EXAMPLE.com")).toBe(true);
    expect(admits("contractor@partner.test")).toBe(true);
    expect(admits("other@partner.test")).toBe(false);
    expect(admits("dev@eu.example.com")).toBe(false);
    expect(admits("dev@evil-example.com")).toBe(false);
    expect(admits("dev@example.com.evil.test")).toBe(false);
    expect(admits("example.com@evil.test")).toBe(false);
    expect(admits("dev@example.com", false)).toBe(false);
    expect(consoleAllows(undefined, { email: "dev@example.com", emailVerified: true })).toBe(false);
  });

  it("is required with the console outside demo mode, and must admit someone", () => {
    const oidc = `oidc: { issuer: "https://login.example.com/", clientId: jitgate, redirectUrl: "https://jitgate.example.com/oidc/callback" }\n`;
    const problems = (yaml: string) => {
      try {
        parseConfig(yaml, "jitgate.yaml", {});
        return [];
      } catch (error) {
        return (error as ConfigError).problems;
      }
    };
    expect(problems(`${oidc}console: { enabled: true }`)).toEqual([
      "console.allow: is required outside demo mode: say whose sign-ins may use the console and the audit pages, like allow: { domains: [example.com] } (anyone else with an account at the provider is refused)",
    ]);
    expect(problems(`${oidc}console: { enabled: true, allow: {} }`)).toEqual([
      "console.allow: admits nobody: list email domains (domains: [example.com]), addresses (emails: [ann@example.com]) or groups (groups: [group:dba])",
    ]);
    expect(problems(`${oidc}console: { enabled: true, allow: { domains: ["@example.com", "*.example.com"] } }`)).toEqual([
      'console.allow.domains[0]: expected an email domain like example.com (no @, no wildcard) (got "@example.com")',
      'console.allow.domains[1]: expected an email domain like example.com (no @, no wildcard) (got "*.example.com")',
    ]);
    expect(problems(`${oidc}console: { enabled: true, allow: { groups: [admins] } }`)[0]).toMatch(/^console\.allow/);
    expect(problems(`${oidc}console: { enabled: true, allow: { domains: [Example.COM] } }`)).toEqual([]);
    expect(startupBanner(gw.gateway, "test")).toContain("OIDC login, open to @example.com and 1 listed address");
  });

  it("refuses a verified sign-in from outside the organisation with a 403 page, no session and no person", async () => {
    const before = await sessionKeys();
    const { answer } = await signIn("outsider");
    expect(answer.status).toBe(403);
    expect(answer.body).toContain("Not admitted");
    expect(answer.body).toContain("outsider@elsewhere.test");
    expect(answer.location).toBeUndefined();
    expect(answer.setCookies.some((c) => c.startsWith("jitgate_session="))).toBe(false);
    expect(await sessionKeys()).toBe(before);
    expect(await gw.gateway.storage.db.select().from(people).where(eq(people.email, "outsider@elsewhere.test"))).toEqual([]);

    // An unverified address of the organisation's own domain is no better.
    const unverified = await signIn("unverified");
    expect(unverified.answer.status).toBe(403);
    expect(unverified.answer.body).toContain("Sign-in failed");
    expect(unverified.answer.setCookies.some((c) => c.startsWith("jitgate_session="))).toBe(false);
    expect(await gw.gateway.storage.db.select().from(people).where(eq(people.email, "unverified@example.com"))).toEqual([]);
    expect(await sessionKeys()).toBe(before);

    // A listed address outside the domains gets in.
    const contractor = await signIn("contractor");
    expect(contractor.answer.status).toBe(302);
    expect(contractor.jar.cookies.has("jitgate_session")).toBe(true);
    expect(await sessionKeys()).toBe(before + 1);
  }, 30_000);

  it("ends a session whose email is no longer admitted, on every request", async () => {
    const { jar } = await signIn("dev");
    const id = jar.cookies.get("jitgate_session")!;
    const redis = connectRedis(REDIS_URL);
    try {
      const key = `${gw.prefix}:oidc:session:${id}`;
      const stored = JSON.parse((await redis.get(key))!) as { email: string };
      expect(stored.email).toBe("dev@example.com");
      expect((await send(gw.origin, "GET", "/console", { cookie: jar.header })).status).toBe(200);
      // As if console.allow had been narrowed on another replica since: the same session, an email it no longer admits.
      await redis.set(key, JSON.stringify({ ...stored, email: "dev@elsewhere.test" }), "KEEPTTL");
      const page = await send(gw.origin, "GET", "/console", { cookie: jar.header });
      expect(page.status).toBe(302);
      expect(page.location).toBe("/oidc/login?returnTo=%2Fconsole");
      expect((await send(gw.origin, "GET", "/audit", { cookie: jar.header })).status).toBe(302);
    } finally {
      await closeRedis(redis);
    }
  }, 30_000);

  it("completes a console login only in the browser that started it (no login CSRF)", async () => {
    // The attacker starts a login as themselves and sends the victim the callback link.
    provider.nextLogin.account = "sub-contractor";
    const start = await send(gw.origin, "GET", "/oidc/login?returnTo=%2Fconsole");
    const callback = new URL(await browseUntil(start.location!, `${gw.origin}/oidc/callback`));
    const victim = await send(gw.origin, "GET", `/oidc/callback${callback.search}`, { cookie: "jitgate_oidc_login=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" });
    expect(victim.status).toBe(400);
    expect(victim.body).toContain("started in another browser");
    expect(victim.setCookies.some((c) => c.startsWith("jitgate_session="))).toBe(false);
  }, 30_000);
});

describe("viewers see only their targets (must 2)", () => {
  let dev: Awaited<ReturnType<typeof consoleOf>>;
  let ordersId: string;
  let paymentsId: string;
  let sessionId: string;

  beforeAll(async () => {
    dev = await consoleOf("dev");
    // Dev asks for both targets from the console, through the real form posts.
    expect((await postCommand(dev.jar.header, dev.token, "request orders-db 30m visibility orders")).status).toBe(303);
    expect((await postCommand(dev.jar.header, dev.token, "request payments-db 30m visibility payments")).status).toBe(303);
    ordersId = (await requestsWithReason("visibility orders"))[0]!.id;
    paymentsId = (await requestsWithReason("visibility payments"))[0]!.id;
    // Both roots are in the console's channel before anyone looks.
    for (const id of [ordersId, paymentsId]) {
      await eventually(
        async () =>
          (await gw.gateway.storage.db.select().from(chatMessages).where(and(eq(chatMessages.requestId, id), eq(chatMessages.platform, "console"), eq(chatMessages.role, "root")))).length > 0,
        10_000,
        `the console root of ${id}`,
      );
    }
    // Lead approves the orders request; a session runs under its grant.
    const { broker } = gw.gateway;
    const lead = await broker.identify({ platform: "oidc", externalId: "sub-lead", email: "lead@example.com", displayName: "Lead" });
    const { grant } = await broker.decide(lead, { requestId: ordersId, verdict: "approve" });
    const opened = await gw.gateway.sessions.open({ grantId: grant!.id, protocol: "postgres", clientAddress: "10.9.8.7" });
    sessionId = opened.session.id;
  }, 60_000);

  it("the console's channel: the requester sees their threads, an approver only their targets', others none", async () => {
    const page = async (who: Who) => (await send(gw.origin, "GET", "/console", { cookie: (await consoleOf(who)).jar.header })).body;
    const devPage = await page("dev");
    expect(devPage).toContain(ordersId);
    expect(devPage).toContain(paymentsId);
    const leadPage = await page("lead");
    expect(leadPage).toContain(ordersId);
    expect(leadPage).not.toContain(paymentsId);
    expect(leadPage).not.toContain("visibility payments");
    const payPage = await page("pay");
    expect(payPage).toContain(paymentsId);
    expect(payPage).not.toContain(ordersId);
    expect(payPage).not.toContain("visibility orders");
    const contractorPage = await page("contractor");
    expect(contractorPage).not.toContain(ordersId);
    expect(contractorPage).not.toContain(paymentsId);

    // A root of no request (the digest counts every target): only for someone who approves every target.
    const { port } = gw.gateway.console!.adapter;
    await port.post(port.approvalChannel, { text: "digest-like root counting every target" });
    for (const who of ["dev", "lead", "pay", "contractor"] as const) expect(await page(who), who).not.toContain("digest-like root");
    const store = new ConsoleStore(gw.gateway.storage.db, () => new Date());
    const lead = await gw.gateway.broker.identify({ platform: "oidc", externalId: "sub-lead", email: "lead@example.com", displayName: "Lead" });
    const all = await store.channel(port.approvalChannel, 30, { personId: lead.id, targets: ["orders-db", "payments-db", "csrf-db"], approvesAll: true });
    expect(all.map((t) => (t.root.view as { text: string }).text)).toContain("digest-like root counting every target");
  }, 60_000);

  it("the audit pages: an approver sees the targets they approve, not every target", async () => {
    const as = async (who: Who) => {
      const cookie = (await signIn(who)).jar.header;
      return (path: string) => send(gw.origin, "GET", path, { cookie });
    };
    const lead = await as("lead");
    const leadSearch = await lead("/audit");
    expect(leadSearch.status).toBe(200);
    expect(leadSearch.body).toContain(ordersId);
    expect(leadSearch.body).not.toContain(paymentsId);
    expect(leadSearch.body).toContain("on orders-db, csrf-db (the targets you approve)");
    expect((await lead(`/audit/requests/${ordersId}`)).status).toBe(200);
    expect((await lead(`/audit/sessions/${sessionId}`)).status).toBe(200);
    const leadOther = await lead(`/audit/requests/${paymentsId}`);
    expect(leadOther.status).toBe(404);
    expect(leadOther.body).not.toContain("visibility payments");
    expect((await lead("/audit?target=payments-db")).body).toContain("No events match");

    const pay = await as("pay");
    const paySearch = await pay("/audit");
    expect(paySearch.body).toContain(paymentsId);
    expect(paySearch.body).not.toContain(ordersId);
    expect((await pay(`/audit/requests/${paymentsId}`)).status).toBe(200);
    // Another target's request and session answer exactly like ids that do not exist.
    const unknown = await pay("/audit/requests/req_doesnotexist");
    const hidden = await pay(`/audit/requests/${ordersId}`);
    expect(hidden.status).toBe(404);
    expect(hidden.body).toBe(unknown.body);
    expect((await pay(`/audit/sessions/${sessionId}`)).status).toBe(404);
    expect((await pay("/audit?target=orders-db")).body).toContain("No events match");

    const devAudit = await as("dev");
    expect((await devAudit(`/audit/requests/${ordersId}`)).status).toBe(200);
    expect((await devAudit(`/audit/requests/${paymentsId}`)).status).toBe(200);
    expect((await devAudit(`/audit/sessions/${sessionId}`)).status).toBe(200);

    const contractor = await as("contractor");
    const contractorSearch = await contractor("/audit");
    expect(contractorSearch.body).not.toContain(ordersId);
    expect(contractorSearch.body).not.toContain(paymentsId);
    expect((await contractor(`/audit/requests/${ordersId}`)).status).toBe(404);
    expect((await contractor(`/audit/sessions/${sessionId}`)).status).toBe(404);
  }, 60_000);
});

// ---------------------------------------------------------------- 6. cookies and CSRF

describe("cookies and CSRF (must 6)", () => {
  it("on plain http: plain names, HttpOnly, Path=/, no Domain, no Secure", async () => {
    const { jar, answer } = await signIn("dev");
    const session = answer.setCookies.find((c) => c.startsWith("jitgate_session="))!;
    expect(session).toMatch(/^jitgate_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=43200$/);
    const page = await send(gw.origin, "GET", "/console", { cookie: jar.header });
    const csrf = page.setCookies.find((c) => c.startsWith("jitgate_console_csrf="))!;
    expect(csrf).toMatch(/^jitgate_console_csrf=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
  }, 30_000);

  it("binds the CSRF token to the session: a token from another session is refused, and nothing runs", async () => {
    const a = await consoleOf("dev");
    const b = await consoleOf("dev"); // the same person, another browser and session
    const attacker = await consoleOf("contractor");
    const count = async () => (await requestsWithReason("csrf attempt")).length;
    const command = "request csrf-db 30m csrf attempt";

    // Session B with A's whole CSRF pair (cookie and token): refused.
    const aPair = await postCommand(b.jar.with({ jitgate_console_csrf: a.jar.cookies.get("jitgate_console_csrf")! }), a.token, command);
    expect(aPair.status).toBe(403);
    expect(aPair.body).toContain("CSRF check");
    // Session B with its own CSRF cookie and A's token: refused.
    expect((await postCommand(b.jar.header, a.token, command)).status).toBe(403);
    // The attacker planted their CSRF cookie in the victim's browser and sends their own token: refused.
    const planted = b.jar.with({ jitgate_console_csrf: attacker.jar.cookies.get("jitgate_console_csrf")! });
    expect((await postCommand(planted, attacker.token, command)).status).toBe(403);
    expect(await count()).toBe(0);

    // B's own token in B's session works.
    const own = await postCommand(b.jar.header, b.token, command);
    expect(own.status).toBe(303);
    expect(await count()).toBe(1);

    // After B signs out, B's token does nothing either: the session is gone.
    await send(gw.origin, "GET", "/oidc/logout", { cookie: b.jar.header });
    const after = await postCommand(b.jar.header, b.token, command);
    expect(after.status).toBe(302);
    expect(after.location).toBe("/oidc/login?returnTo=%2Fconsole");
    expect(await count()).toBe(1);
  }, 60_000);

  describe("a gateway browsers reach over https", () => {
    let https: Awaited<ReturnType<typeof startTestGateway>>;
    let base: string;

    beforeAll(async () => {
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      // TLS ends in front of the gateway; oidc.redirectUrl says where browsers reach it.
      https = await startTestGateway(
        "web_hardening_https",
        `oidc: { issuer: "${provider.issuer}", clientId: ${CLIENT_ID}, redirectUrl: "${HTTPS_CALLBACK}" }
console: { enabled: true, allow: { domains: [example.com] } }
targets:
  - { name: orders-db, kind: postgres, upstream: "postgres://u:p@127.0.0.1:1/orders", approvers: [lead@example.com] }
`,
        {},
        { httpListen: `127.0.0.1:${port}` },
      );
    }, 60_000);

    afterAll(async () => {
      await https?.close();
    });

    it("sets __Host- cookies, Secure, Path=/, no Domain, and ignores cookies without the prefix", async () => {
      const { jar, answer } = await signIn("dev", "returnTo=%2Fconsole", base, HTTPS_CALLBACK);
      expect(answer.status, answer.body).toBe(302);
      const session = answer.setCookies.find((c) => c.startsWith("__Host-jitgate_session="))!;
      expect(session).toMatch(/^__Host-jitgate_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=43200; Secure$/);
      expect(answer.setCookies.find((c) => c.startsWith("__Host-jitgate_oidc_login="))).toMatch(/Max-Age=0; Secure$/);
      const page = await send(base, "GET", "/console", { cookie: jar.header });
      expect(page.status).toBe(200);
      const csrf = page.setCookies.find((c) => c.startsWith("__Host-jitgate_console_csrf="))!;
      expect(csrf).toMatch(/^__Host-jitgate_console_csrf=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
      for (const line of [...answer.setCookies, ...page.setCookies]) {
        expect(line).not.toMatch(/domain=/i);
        expect(line.startsWith("__Host-")).toBe(true);
      }
      jar.absorb(page.setCookies);
      const token = /name="csrf" value="([^"]+)"/.exec(page.body)![1]!;

      // A sibling domain can set jitgate_session, never __Host-jitgate_session: the plain name is not read.
      const sessionId = jar.cookies.get("__Host-jitgate_session")!;
      const tossed = await send(base, "GET", "/console", { cookie: `jitgate_session=${sessionId}` });
      expect(tossed.status).toBe(302);
      expect(tossed.location).toBe("/oidc/login?returnTo=%2Fconsole");
      // Nor is a plain-named CSRF cookie: the form is refused and nothing runs.
      const csrfSecret = jar.cookies.get("__Host-jitgate_console_csrf")!;
      const plainCsrf = await postCommand(`__Host-jitgate_session=${sessionId}; jitgate_console_csrf=${csrfSecret}`, token, "request orders-db 30m https tossed", base);
      expect(plainCsrf.status).toBe(403);
      const rows = await https.gateway.storage.db.select().from(accessRequests).where(eq(accessRequests.reason, "https tossed"));
      expect(rows).toEqual([]);
      // The real pair works.
      expect((await postCommand(jar.header, token, "request orders-db 30m https real", base)).status).toBe(303);
      expect(await https.gateway.storage.db.select().from(accessRequests).where(eq(accessRequests.reason, "https real"))).toHaveLength(1);

      // A mangled __Host- cookie is cleared with a Set-Cookie the browser accepts (Secure).
      const mangled = await send(base, "GET", "/console", { cookie: "__Host-jitgate_session=%ZZ" });
      expect(mangled.status).toBe(400);
      expect(mangled.setCookies).toContain("__Host-jitgate_session=; Path=/; Max-Age=0; Secure");
    }, 60_000);
  });
});
