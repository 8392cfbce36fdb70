import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoGateway, type DemoGateway } from "./support/browser.js";
import { startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";

/**
 * Bad input at the HTTP edge: malformed cookies, malformed percent-encoding in paths and queries,
 * control characters in form fields and returnTo. Every route the console, the audit pages and
 * the OIDC routes serve answers 400, never 500 (the routes are read from the server itself, so a
 * route added later is covered too).
 */

let demo: DemoGateway;
let provider: TestProvider;
let oidc: Awaited<ReturnType<typeof startOidcGateway>>;

beforeAll(async () => {
  demo = await startDemoGateway("http_edge_demo");
  provider = await startTestProvider([{ sub: "sub-dev", email: "dev@example.com", name: "Dev" }]);
  oidc = await startOidcGateway(
    "http_edge_oidc",
    provider.issuer,
    `console: { enabled: true, allow: { domains: [example.com] } }
targets:
  - { name: edge-db, kind: postgres, upstream: "postgres://u:p@127.0.0.1:1/db", approvers: [lead@example.com] }
`,
  );
}, 60_000);

afterAll(async () => {
  await oidc?.close();
  await provider?.close();
  await demo?.close();
});

interface Answer {
  status: number;
  setCookies: string[];
  body: string;
}

/** A raw request: fetch would re-encode the path, and these bytes must reach the server as written. */
function send(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: { ...headers, ...(body !== undefined ? { "content-length": String(Buffer.byteLength(body)) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const setCookie = res.headers["set-cookie"] ?? [];
        resolve({ status: res.statusCode ?? 0, setCookies: setCookie, body: Buffer.concat(chunks).toString("utf8") });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** `METHOD path` of every route of the server; a prefix route gets a plausible tail. */
function routesOf(routes: string[]): { method: string; path: string }[] {
  return routes
    .map((route) => {
      const [method, path] = route.split(" ") as [string, string];
      return { method, path: path.endsWith("/") ? `${path}${path.startsWith("/audit/") ? "requests/req_1" : "x"}` : path };
    })
    .filter(({ path }) => path.startsWith("/console") || path.startsWith("/audit") || path.startsWith("/oidc"));
}

const BAD_COOKIES = ["jitgate_console_csrf=%E0%A4%A", "jitgate_session=%E0%A4%A", "jitgate_console_user=%ZZ", "jitgate_session=ok%00"];
const BAD_QUERIES = [
  "returnTo=%E0%A4%A",
  "returnTo=%2Fconsole%0D%0ASet-Cookie%3A%20x%3Dy",
  "returnTo=/audit%09",
  "q=%",
  "challenge=%C0%AF",
  "state=a%7Fb",
  "%E0%A4%A=1",
];

async function demoLogin(): Promise<{ cookie: string; csrf: string }> {
  const picker = await fetch(`${demo.base}/console/login?returnTo=/console`);
  const csrfCookie = picker.headers.getSetCookie().map((c) => c.split(";")[0]!);
  const loginToken = /name="csrf" value="([^"]+)"/.exec(await picker.text())![1]!;
  const chosen = await fetch(`${demo.base}/console/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: csrfCookie.join("; ") },
    body: new URLSearchParams({ csrf: loginToken, returnTo: "/console", user: "dev" }).toString(),
  });
  expect(chosen.status).toBe(303);
  const cookie = [...csrfCookie, ...chosen.headers.getSetCookie().map((c) => c.split(";")[0]!)].join("; ");
  const page = await fetch(`${demo.base}/console`, { headers: { cookie } });
  expect(page.status).toBe(200);
  return { cookie, csrf: /name="csrf" value="([^"]+)"/.exec(await page.text())![1]! };
}

describe("bad input at the HTTP edge", () => {
  it("reads the routes of both gateways: the console, the demo picker, the audit pages and the OIDC routes", () => {
    const all = [...routesOf(demo.gateway.http.routes()), ...routesOf(oidc.gateway.http.routes())].map((r) => `${r.method} ${r.path}`);
    for (const route of ["GET /console", "POST /console/command", "POST /console/action", "GET /console/events", "GET /console/login", "POST /console/login", "GET /audit", "GET /audit/requests/req_1", "GET /oidc/config", "GET /oidc/approve", "GET /oidc/callback", "GET /oidc/login", "GET /oidc/logout"]) {
      expect(all).toContain(route);
    }
  });

  it("answers a malformed cookie of ours with a 400 that clears it, on every route", async () => {
    for (const [base, routes] of [[demo.base, demo.gateway.http.routes()], [oidc.origin, oidc.gateway.http.routes()]] as const) {
      for (const { method, path } of routesOf(routes)) {
        for (const cookie of BAD_COOKIES) {
          const answer = await send(base, method, path, { cookie: `other=1; ${cookie}` });
          expect({ method, path, cookie, status: answer.status }).toEqual({ method, path, cookie, status: 400 });
          expect(answer.body).toMatch(/^Bad request: malformed cookie jitgate_/);
          expect(answer.setCookies).toContain(`${cookie.split("=")[0]}=; Path=/; Max-Age=0`);
        }
      }
    }
  });

  it("leaves other sites' cookies on the same host alone", async () => {
    const answer = await send(demo.base, "GET", "/console/login", { cookie: "theirs=%E0%A4%A; also=%ZZ" });
    expect(answer.status).toBe(200);
    expect(answer.body).toContain("Who are you?");
  });

  it("answers malformed percent-encoding and control characters in the path or the query with a 400, on every route", async () => {
    for (const [base, routes] of [[demo.base, demo.gateway.http.routes()], [oidc.origin, oidc.gateway.http.routes()]] as const) {
      for (const { method, path } of routesOf(routes)) {
        const bad = [`${path}%E0%A4%A`, `${path}%`, `${path}%00`, `${path}/%0A`, ...BAD_QUERIES.map((query) => `${path}?${query}`)];
        for (const target of bad) {
          const answer = await send(base, method, target);
          expect({ method, target, status: answer.status }).toEqual({ method, target, status: 400 });
          expect(answer.body).toMatch(/^Bad request: (malformed percent-encoding|control characters) in the (path|query)\.\n$/);
        }
      }
    }
  });

  it("answers a form field or returnTo with control characters or malformed percent-encoding with a 400, never running it", async () => {
    const { cookie, csrf } = await demoLogin();
    const forms: [string, string][] = [
      ["/console/command", `csrf=${csrf}&text=list%00`],
      ["/console/command", `csrf=${csrf}&text=list%E0%A4%A`],
      ["/console/command", `csrf=${csrf}&text=request%20demo-db%201h%20INC-1%0Adrop`],
      ["/console/action", `csrf=${csrf}&action=deny&value=req_1&reason=no%1B%5B31m`],
      ["/console/action", `csrf=${csrf}&action=extend&value=grt_1&duration=1h%`],
      ["/console/login", `csrf=${csrf}&user=dev&returnTo=%2Fconsole%0D%0Ax`],
      ["/console/login", `csrf=${csrf}&user=dev&returnTo=/console%7F`],
    ];
    for (const [path, body] of forms) {
      const answer = await send(demo.base, "POST", path, { cookie, "content-type": "application/x-www-form-urlencoded" }, body);
      expect({ path, body, status: answer.status }).toEqual({ path, body, status: 400 });
      expect(answer.body).toMatch(/(malformed percent-encoding|control characters) in the form/);
    }
    // Nothing ran: the console shows no note from a command.
    const page = await fetch(`${demo.base}/console`, { headers: { cookie } });
    expect(await page.text()).not.toContain("You have no pending requests");
    // And the same form, well formed, works.
    const good = await send(demo.base, "POST", "/console/command", { cookie, "content-type": "application/x-www-form-urlencoded" }, `csrf=${csrf}&text=list`);
    expect(good.status).toBe(303);
  });

  it("logged nothing as a failed handler", () => {
    expect([...demo.logs, ...oidc.logs].filter((line) => line.includes("HTTP handler failed"))).toEqual([]);
  });
});
