import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_TARGET, DEMO_USERS } from "../src/demo/demo-config.js";
import type { Storage } from "../src/db/client.js";
import { auditEvents, sessionRecordings } from "../src/db/schema.js";
import { asc } from "drizzle-orm";
import { AsciicastRecorder } from "../src/proxy/recording/asciicast.js";
import { mountAuditPages } from "../src/http/audit/audit-pages.js";
import type { AuditSearchRow } from "../src/broker/audit.js";
import { castText } from "../src/http/audit/cast-text.js";
import { describeEvent } from "../src/http/audit/event-text.js";
import { HttpServer } from "../src/infra/web/http-server.js";
import { MARKUP_STATEMENT, seedAuditHistory, type Seeded } from "./audit-pages-seed.js";
import { auditTestAuth, loginThroughPicker, type AuditTestUser } from "./audit-pages-auth.js";
import { startDemoGateway, type DemoGateway } from "./support/browser.js";
import { testPgliteStorage, testPostgresStorage } from "./support/databases.js";
import { eventually } from "./support/fake-slack.js";

// PostgreSQL in production; PGlite is what demo mode runs on.
describe.each([
  ["postgres", () => testPostgresStorage("audit_pages")],
  ["pglite", testPgliteStorage],
] as const)("audit pages on %s", (_driver, open) => {
  let storage: Storage;
  let seeded: Seeded;
  let http: HttpServer;
  let base: string;
  let auth: ReturnType<typeof auditTestAuth>;

  beforeAll(async () => {
    storage = await open();
    seeded = await seedAuditHistory(storage.db);
    http = new HttpServer((error) => {
      throw error;
    });
    auth = auditTestAuth(seeded.broker, http);
    mountAuditPages(http, { broker: seeded.broker, auth: auth.auth, pageSize: 5 });
    const address = await http.listen("127.0.0.1:0");
    base = `http://127.0.0.1:${address.port}`;
  });

  afterAll(async () => {
    await http?.close();
    await storage?.close();
  });

  /** A page as someone sees it (lee approves every target; ann and bob approve none). */
  async function get(path: string, as: AuditTestUser | null = "lee") {
    const res = await fetch(`${base}${path}`, { headers: as ? { cookie: await auth.cookieFor(base, as) } : {}, redirect: "manual" });
    return { status: res.status, type: res.headers.get("content-type") ?? "", headers: res.headers, text: await res.text() };
  }

  /** The audit event kinds in a results table, top to bottom. */
  const kindsIn = (page: string) => [...page.matchAll(/<td data-label="Event" class="nowrap">([a-z_.]+)<br><span class="chain"/g)].map((m) => m[1]);

  it("asks who is looking before showing anything", async () => {
    const page = await get("/audit?person=ann", null);
    expect(page.status).toBe(auth.challengeStatus);
    expect(page.headers.get("location") ?? "").toContain(encodeURIComponent("/audit?person=ann"));
    expect(page.text).not.toContain("orders-db");
  });

  it("lists events newest first and pages back by event number", async () => {
    const first = await get("/audit");
    expect(first.status).toBe(200);
    expect(first.type).toMatch(/^text\/html/);
    const kinds = kindsIn(first.text);
    expect(kinds).toEqual(["session.closed", "ssh.file", "session.opened", "grant.issued", "request.approved"]);
    // The event select offers exactly the kinds in the log, in order (found by a loose index scan).
    const select = /<select id="kind"[\s\S]*?<\/select>/.exec(first.text)![0];
    const offered = [...select.matchAll(/<option value="([^"]+)"/g)].map((m) => m[1]);
    const present = await storage.db.selectDistinct({ kind: auditEvents.kind }).from(auditEvents).orderBy(asc(auditEvents.kind));
    expect(offered).toEqual(present.map((p) => p.kind));
    expect(offered.length).toBeGreaterThan(5);
    const older = /href="(\/audit\?before=\d+)" rel="next"/.exec(first.text)?.[1];
    expect(older).toBeDefined();
    const second = await get(older!.replaceAll("&amp;", "&"));
    expect(kindsIn(second.text)).toEqual(["request.decided", "request.created", "grant.expired", "session.closed", "statement.blocked"]);
  });

  it("filters by person (their own events and those of their requests), by target, by kind and by time window", async () => {
    // Lee's approval of Ann's request is about Ann; nothing of Bob's SSH session is.
    const decidedForAnn = await get("/audit?person=Ann&kind=request.decided");
    expect(kindsIn(decidedForAnn.text)).toEqual(["request.decided"]);
    expect(decidedForAnn.text).toContain(seeded.pg.requestId);
    expect(decidedForAnn.text).toContain('<span title="lead@example.com">Lee Lead</span>');
    expect(kindsIn((await get("/audit?person=ann&kind=ssh.file")).text)).toEqual([]);
    const byEmail = await get("/audit?person=bob%40example.com");
    expect(kindsIn(byEmail.text)).toEqual(["session.closed", "ssh.file", "session.opened", "grant.issued", "request.approved"]);
    expect(byEmail.text).not.toContain(seeded.pg.requestId);

    const web = await get("/audit?target=web-1&kind=ssh.file");
    expect(kindsIn(web.text)).toEqual(["ssh.file"]);
    expect(web.text).toContain("/etc/nginx/nginx.conf");
    expect(web.text).toContain(`href="/audit/sessions/${seeded.ssh.sessionId}"`);

    // A held statement's decision names only the grant; the row still links to its request.
    const approved = await get("/audit?kind=statement.approved");
    expect(kindsIn(approved.text)).toEqual(["statement.approved"]);
    expect(approved.text).toContain(`href="/audit/requests/${seeded.pg.requestId}"`);

    const blocked = await get("/audit?kind=statement.blocked");
    expect(kindsIn(blocked.text)).toEqual(["statement.blocked"]);
    expect(blocked.text).toContain("DROP TABLE orders");

    // Day 1 09:00–09:05 holds the request, the decision and the session's statements, not day 2.
    const window = await get("/audit?from=2026-03-10T09:00&to=2026-03-10T09:05&kind=request.created");
    expect(kindsIn(window.text)).toEqual(["request.created"]);
    expect(window.text).toContain(seeded.pg.requestId);
    const day2 = await get("/audit?from=2026-03-11T00:00&kind=request.created");
    expect(kindsIn(day2.text)).toEqual(["request.created"]);
    expect(day2.text).toContain(seeded.ssh.requestId);

    const nobody = await get("/audit?person=nobody-here");
    expect(nobody.text).toContain("No events match");
  });

  it("answers a malformed or backwards time window with the form and a clear message", async () => {
    const malformed = await get("/audit?from=2026-02-31T10:00&person=Ann");
    expect(malformed.status).toBe(400);
    expect(malformed.text).toContain("“From” is not a date and time");
    expect(malformed.text).toContain('value="Ann"');
    expect(kindsIn(malformed.text)).toEqual([]);
    const backwards = await get("/audit?from=2026-03-11T10:00&to=2026-03-10T10:00");
    expect(backwards.status).toBe(400);
    expect(backwards.text).toContain("The time window ends before it starts");
    const unknownTarget = await get("/audit?target=%3Cb%3Enope");
    expect(unknownTarget.status).toBe(400);
    expect(unknownTarget.text).toContain("There is no target called “&lt;b&gt;nope”");
  });

  it("shows a request's timeline in the chain's order, with hashes, sessions and held statements", async () => {
    const page = await get(`/audit/requests/${seeded.pg.requestId}`);
    expect(page.status).toBe(200);
    const order = [...page.text.matchAll(/<span class="kind">([a-z_.]+)<\/span>/g)].map((m) => m[1]);
    expect(order).toEqual([
      "request.created",
      "request.decided",
      "request.approved",
      "grant.issued",
      "session.opened",
      "statement.held",
      "statement.approved",
      "statement.blocked",
      "session.closed",
      "grant.expired",
    ]);
    expect(page.text).toContain("INC-4711 stuck orders");
    expect(page.text).toContain("go ahead");
    expect(page.text).toMatch(/title="audit event \d+, sha256 [0-9a-f]{64}"/);
    expect(page.text).toContain(`href="/audit/sessions/${seeded.pg.sessionId}"`);
    expect(page.text).toMatch(/DELETE FROM orders<\/pre><\/td><td data-label="Rule">delete-without-where<\/td><td data-label="Outcome"><span class="outcome outcome-approved">approved<\/span> by Lee Lead/);
  });

  it("shows a PostgreSQL session's statements with verdicts, escaped as text", async () => {
    const page = await get(`/audit/sessions/${seeded.pg.sessionId}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain("Ann Example &lt;ann@example.com&gt;");
    expect(page.text).toContain("10.1.2.3");
    const rows = [...page.text.matchAll(/<tr>\n<td data-label="#" class="num">(\d+)<\/td>[\s\S]*?<span class="verdict verdict-(\w+)">/g)].map((m) => [m[1], m[2]]);
    expect(rows).toEqual([
      ["1", "allow"],
      ["2", "allow"],
      ["3", "review"],
      ["4", "block"],
    ]);
    expect(page.text).toContain("SELECT 2");
    expect(page.text).toContain("DELETE 4");
    expect(page.text).toContain(`${seeded.pg.heldId}: <span class="outcome outcome-approved">approved</span>`);
    // The statement is shown as text: its markup never becomes markup.
    expect(page.text).toContain("SELECT &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39; AS x");
    expect(page.text).not.toContain(MARKUP_STATEMENT);
    expect(page.text).not.toContain("<script>alert");
  });

  it("embeds the player for an SSH session and serves its recording as asciicast", async () => {
    const page = await get(`/audit/sessions/${seeded.ssh.sessionId}`);
    expect(page.status).toBe(200);
    const castPath = `/audit/sessions/${seeded.ssh.sessionId}/recordings/1.cast`;
    expect(page.text).toContain(`data-cast="${castPath}"`);
    expect(page.text).toContain('<script src="/audit/assets/asciinema-player.min.js" defer></script>');
    expect(page.text).toContain('<script src="/audit/assets/replay.js" defer></script>');
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self' 'wasm-unsafe-eval'");
    // Without JavaScript: the terminal's text (escape sequences taken out) and a download link.
    expect(page.text).toContain("deploy@web-1:~$ uptime\n 14:00:05 up 12 days");
    expect(page.text).toContain(`download="${seeded.ssh.sessionId}-1.cast"`);
    expect(page.text).toContain("SFTP write <code>/etc/nginx/nginx.conf</code>, 2048 bytes");
    // The summary shows what an SSH session has (bytes), not PostgreSQL's rows and masking.
    expect(page.text).toContain("<dt>Bytes in</dt>");
    expect(page.text).not.toContain("<dt>Rows returned</dt>");
    expect(page.text).not.toContain("<dt>Values masked</dt>");

    const cast = await get(castPath);
    expect(cast.status).toBe(200);
    expect(cast.type).toBe("application/x-asciicast; charset=utf-8");
    expect(cast.text).toBe(seeded.ssh.cast);
    expect(JSON.parse(cast.text.split("\n")[0]!)).toMatchObject({ version: 2, width: 80, height: 24 });

    expect((await get(`/audit/sessions/${seeded.ssh.sessionId}/recordings/2.cast`)).status).toBe(404);
    expect((await get(`/audit/sessions/${seeded.ssh.sessionId}/recordings/..%2F1.cast`)).status).toBe(404);
  });

  it("reads only the start of a long recording into the page; the .cast has all of it", async () => {
    const recorder = new AsciicastRecorder({ width: 80, height: 24 }, { now: () => 0 });
    for (let i = 0; i < 20_000; i++) recorder.output(Buffer.from(`line ${String(i).padStart(5, "0")} of a long build log\r\n`));
    const cast = recorder.toString();
    expect(cast.length).toBeGreaterThan(800_000);
    await storage.db.insert(sessionRecordings).values({ sessionId: seeded.ssh.sessionId, channel: 3, kind: "exec", title: "make", cast, truncated: false, createdAt: new Date() });
    const page = await get(`/audit/sessions/${seeded.ssh.sessionId}`);
    expect(page.text).toContain("line 00000 of a long build log");
    expect(page.text).not.toContain("line 19999 of a long build log");
    expect(page.text).toContain("Only the start is shown");
    expect(page.text).toContain(`data-cast="/audit/sessions/${seeded.ssh.sessionId}/recordings/3.cast"`);
    const full = await get(`/audit/sessions/${seeded.ssh.sessionId}/recordings/3.cast`);
    expect(full.text).toBe(cast);
  });

  it("serves the player, its stylesheet and the mount script", async () => {
    const player = await get("/audit/assets/asciinema-player.min.js", null);
    expect(player.status).toBe(200);
    expect(player.type).toMatch(/^text\/javascript/);
    expect(player.text).toContain("AsciinemaPlayer");
    const css = await get("/audit/assets/asciinema-player.css", null);
    expect(css.text).toContain(".ap-player");
    const replay = await get("/audit/assets/replay.js", null);
    expect(replay.text).toContain("AsciinemaPlayer.create");
    expect((await get("/audit/assets/audit.css", null)).type).toMatch(/^text\/css/);
    expect((await get("/audit/assets/package.json", null)).status).toBe(404);
    expect((await get("/audit/assets/..%2F..%2Fpackage.json", null)).status).toBe(404);
  });

  it("shows people who approve nothing only their own requests and sessions; others' ids are 404 like unknown ones", async () => {
    const own = await get(`/audit/sessions/${seeded.ssh.sessionId}`, "bob");
    expect(own.status).toBe(200);
    expect((await get(`/audit/sessions/${seeded.ssh.sessionId}/recordings/1.cast`, "bob")).status).toBe(200);
    expect((await get(`/audit/requests/${seeded.ssh.requestId}`, "bob")).status).toBe(200);

    const others = await get(`/audit/sessions/${seeded.pg.sessionId}`, "bob");
    const unknown = await get("/audit/sessions/ses_doesnotexist", "bob");
    expect(others.status).toBe(404);
    expect(unknown.status).toBe(404);
    expect(others.text).toBe(unknown.text);
    expect(others.text).not.toContain("orders-db");
    expect((await get(`/audit/requests/${seeded.pg.requestId}`, "bob")).status).toBe(404);
    expect((await get(`/audit/sessions/${seeded.pg.sessionId}/recordings/1.cast`, "bob")).status).toBe(404);
    expect((await get(`/audit/sessions/${seeded.ssh.sessionId}`, "ann")).status).toBe(404);

    // Bob's search holds only Bob's things, whatever he asks for.
    const search = await get("/audit?person=Ann", "bob");
    expect(kindsIn(search.text)).toEqual([]);
    const all = await get("/audit", "bob");
    expect(all.text).toContain("Your own requests and sessions");
    expect(all.text).not.toContain(seeded.pg.requestId);
    expect(kindsIn(all.text)).toContain("ssh.file");
  });

  it("answers unknown pages and malformed ids with the 404 page", async () => {
    for (const path of ["/audit/requests/req_nope", "/audit/requests/%3Cx%3E", "/audit/elsewhere/x", `/audit/requests/${seeded.pg.requestId}/more`]) {
      const page = await get(path);
      expect(page.status, path).toBe(404);
      expect(page.text, path).toContain("<h1>Not found</h1>");
    }
  });
});

describe("audit pages in a demo gateway, over a session through the real PostgreSQL proxy", () => {
  let demo: DemoGateway;

  beforeAll(async () => {
    demo = await startDemoGateway("audit_gateway");
  }, 60_000);

  afterAll(async () => {
    await demo?.close();
  });

  it("are mounted behind the console's login and show what psql did", async () => {
    const { broker } = demo.gateway;
    const [devUser, leadUser] = DEMO_USERS;
    const dev = await broker.identify({ platform: "console", externalId: devUser.id, email: devUser.email, displayName: devUser.name });
    const lead = await broker.identify({ platform: "console", externalId: leadUser.id, email: leadUser.email, displayName: leadUser.name });
    const request = await broker.request(dev, { target: DEMO_TARGET, duration: "15m", reason: "audit pages" });
    const { connection } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
    const client = new pg.Client({ connectionString: connection!.line });
    await client.connect();
    expect((await client.query("SELECT id FROM orders ORDER BY id LIMIT 2")).rowCount).toBe(2);
    await client.query("SELECT '<script>x</script>' AS markup");
    await expect(client.query("DROP DATABASE postgres")).rejects.toThrow(/blocked/);
    await client.end();

    const anonymous = await fetch(`${demo.base}/audit`, { redirect: "manual" });
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers.get("location")).toBe("/console/login?returnTo=%2Faudit");

    const cookie = await loginThroughPicker(demo.base, leadUser.id);
    const search = await (await fetch(`${demo.base}/audit?kind=session.opened`, { headers: { cookie } })).text();
    const sessionId = /href="\/audit\/sessions\/(ses_\w+)"/.exec(search)?.[1];
    expect(sessionId).toMatch(/^ses_\w+$/);
    expect(search).toContain('<link rel="stylesheet" href="/console/assets/console.css">');
    // Demo mode: "switch" in the header goes to the picker and comes back to this very search.
    expect(search).toContain('<a href="/console/login?returnTo=%2Faudit%3Fkind%3Dsession.opened">switch</a>');
    expect((await fetch(`${demo.base}/console/assets/console.css`)).status).toBe(200);

    // The session closes when the proxy has seen the client go; the page says so once it has.
    const page = await eventually(async () => {
      const text = await (await fetch(`${demo.base}/audit/sessions/${sessionId}`, { headers: { cookie } })).text();
      return text.includes("session.closed") ? text : undefined;
    }, 15_000, "the session page with session.closed");
    expect(page).toContain("Dana Developer");
    expect(page).toContain("session.closed");
    expect(page).toContain("SELECT id FROM orders ORDER BY id LIMIT 2");
    expect(page).toContain("SELECT &#39;&lt;script&gt;x&lt;/script&gt;&#39; AS markup");
    const verdicts = [...page.matchAll(/<span class="verdict verdict-(\w+)">/g)].map((m) => m[1]);
    expect(verdicts).toEqual(["allow", "allow", "block"]);
    expect(page).toContain("drop-database");

    // Dana approves nothing, and still sees her own session.
    const devCookie = await loginThroughPicker(demo.base, devUser.id);
    expect((await fetch(`${demo.base}/audit/sessions/${sessionId}`, { headers: { cookie: devCookie } })).status).toBe(200);
  });
});

describe("events in words", () => {
  const row = (kind: string, data: Record<string, unknown>): AuditSearchRow => ({
    seq: 7,
    at: new Date("2026-03-10T09:00:00Z"),
    kind,
    actorId: "per_1",
    target: "orders-db",
    requestId: "req_1",
    grantId: null,
    sessionId: null,
    data,
    prevHash: "0".repeat(64),
    hash: "a".repeat(64),
    actorEmail: "lead@example.com",
    actorName: "Lee Lead",
  });

  it("notes the fresh sign-in behind a step-up approval", () => {
    const text = describeEvent(row("request.decided", { verdict: "approve", reason: null, approvals: 1, required: 1, stepUp: { authTime: "2026-03-10T08:59:30.000Z" } })).text;
    expect(text).toBe('Approved (1 of 1) <span class="note">after a fresh sign-in at <time datetime="2026-03-10T08:59:30.000Z">2026-03-10 08:59:30</time></span>');
    expect(describeEvent(row("step_up.challenged", { expiresAt: "2026-03-10T09:10:00.000Z" })).text).toContain("after a fresh sign-in (link valid until");
  });

  it("shows the data of a kind it does not know, escaped", () => {
    expect(describeEvent(row("future.kind", { note: "<b>" })).text).toBe('<code class="data">{&quot;note&quot;:&quot;&lt;b&gt;&quot;}</code>');
  });
});

describe("the text of a recording", () => {
  it("keeps what was printed and drops escape sequences and control characters", () => {
    const cast = [
      JSON.stringify({ version: 2, width: 80, height: 24 }),
      JSON.stringify([0.1, "o", "\x1b]0;title\x07\x1b[1;32mgreen\x1b[0m text\r\n"]),
      JSON.stringify([0.2, "i", "typed"]),
      JSON.stringify([0.3, "o", "bell\x07 done\r\n"]),
      '[0.4, "o", "cut sho',
    ].join("\n");
    expect(castText(cast)).toEqual({ text: "green text\nbell done\n", truncated: false });
    expect(castText(cast, 5)).toEqual({ text: "green", truncated: true });
  });
});
