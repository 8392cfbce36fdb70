import type { IncomingMessage, ServerResponse } from "node:http";
import { searchAudit } from "../../broker/audit.js";
import { auditChoices, heldDetail, recordingHeads, requestScope, requestsOfGrants, requestTimeline, sessionDetail, sessionScope, sessionRecording } from "../../broker/audit-queries.js";
import type { Broker } from "../../broker/broker.js";
import { BrokerError, NotAnAuditor, ResultsNotVisible, RevealRefused } from "../../broker/index.js";
import { SealError } from "../../infra/seal.js";
import { csrfSecret, csrfToken, csrfValid, CSRF_FIELD, FormError, readForm, viewerPurpose } from "../../infra/web/forms.js";
import type { ConsoleAuth, ConsoleViewer } from "../../infra/web/console-auth.js";
import { html, page, sendHtml, type Html } from "../../infra/web/html.js";
import type { HttpServer } from "../../infra/web/http-server.js";
import { auditAsset } from "./assets.js";
import { castText } from "./cast-text.js";
import { heldPage } from "./held-page.js";
import { requestPage } from "./request-page.js";
import { PAGE_SIZE, parseSearch, searchFormOf, searchPage } from "./search-page.js";
import { REASON_FIELD, revealedPage } from "./results-view.js";
import { sessionPage, type SessionResults } from "./session-page.js";

export interface AuditPagesOptions {
  broker: Broker;
  /** Who is looking (demo picker or OIDC login); every page but the static assets needs a viewer. */
  auth: ConsoleAuth;
  /** Events per page of search results (default 50). */
  pageSize?: number;
  /** Where to become someone else and come back to `returnTo` (demo mode's picker); none with a real login. */
  switchHref?: ((returnTo: string) => string) | undefined;
  /**
   * Resolves true once every statement recorded so far is in the database (the audit journal has
   * shipped it), false when that did not happen within `timeoutMs`. Absent: statements are written
   * straight to the database.
   */
  statementsShipped?: ((timeoutMs: number) => Promise<boolean>) | undefined;
}

/** How long a session page waits for the audit journal to be shipped before saying it cannot show the timeline whole. */
const SHIPPED_WAIT_MS = 3_000;
const UNSHIPPED_NOTE =
  "The statement timeline cannot be shown now: some of its statements are still in this gateway's audit journal, which the database has not taken yet (see /readyz). Nothing is lost; reload in a moment.";

const STATEMENTS_PER_PAGE = 500;
/** How much of a recording's cast the page reads for its text fallback. */
const RECORDING_TEXT_CHARS = 512 * 1024;
// Ids are minted by newId (`req_…`, `ses_…`); anything else cannot name a row.
const ID = /^[A-Za-z0-9_-]{1,64}$/;
// The session page runs asciinema-player, which compiles its terminal emulator from WebAssembly.
const SESSION_PAGE_CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/**
 * The audit pages: search the log, a request's timeline, a session's statements or terminal replay.
 * Server-rendered HTML with GET forms (linkable searches); JavaScript only mounts the player.
 * Everyone sees their own requests and sessions, an approver also everything on the targets they
 * approve (not on the others), and an auditor everything; any other id answers 404 exactly like an
 * unknown one.
 */
export function mountAuditPages(http: HttpServer, options: AuditPagesOptions): void {
  const pages = new AuditPages(options);
  http.route("GET", "/audit", (req, res) => pages.handle(req, res));
  http.routePrefix("GET", "/audit/", (req, res) => pages.handle(req, res));
  // An auditor's reveal of one statement's sealed originals: POST /audit/sessions/<id>/results/<seq>/reveal.
  http.routePrefix("POST", "/audit/sessions/", (req, res) => pages.reveal(req, res));
}

class AuditPages {
  constructor(private readonly options: AuditPagesOptions) {}

  get #db() {
    return this.options.broker.db;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://gateway");
    const parts = url.pathname.split("/").filter((p) => p !== "").slice(1);
    if (parts[0] === "assets") return this.#asset(res, parts);

    const viewer = await this.options.auth.viewerOf(req);
    if (!viewer) return this.options.auth.challenge(req, res, `${url.pathname}${url.search}`);
    const approves = await this.options.broker.targetsApprovedBy(viewer.person);
    // An auditor (configuration's `auditors`) reviews everything; an approver, the targets they approve.
    const auditor = await this.options.broker.isAuditor(viewer.person);
    const mayView = (scope: { ownerId: string; target: string } | undefined) =>
      scope !== undefined && (auditor || scope.ownerId === viewer.person.id || approves.includes(scope.target));

    if (parts.length === 0) return this.#search(res, viewer, url.searchParams, approves, auditor);
    const [section, id, sub, file, ...rest] = parts;
    if (!id || !ID.test(id) || rest.length > 0) return this.#notFound(res, viewer);
    if (section === "requests" && !sub) {
      if (!mayView(await requestScope(this.#db, id))) return this.#notFound(res, viewer);
      const timeline = await requestTimeline(this.#db, id);
      if (!timeline) return this.#notFound(res, viewer);
      return this.#send(res, viewer, `Request ${id}`, requestPage(timeline));
    }
    if (section === "held") return this.#held(res, viewer, id, sub, file, mayView);
    if (section === "sessions" && !mayView(await sessionScope(this.#db, id))) return this.#notFound(res, viewer);
    if (section === "sessions" && !sub) return this.#session(req, res, viewer, auditor, id, url.searchParams);
    if (section === "sessions" && sub === "recordings" && file) {
      const match = /^([1-9][0-9]{0,5})\.cast$/.exec(file);
      const recording = match ? await sessionRecording(this.#db, id, Number(match[1])) : undefined;
      if (!recording) return this.#notFound(res, viewer);
      const body = Buffer.from(recording.cast);
      res.writeHead(200, {
        "content-type": "application/x-asciicast; charset=utf-8",
        "content-length": body.length,
        "content-disposition": `inline; filename="${id}-${recording.channel}.cast"`,
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      });
      res.end(body);
      return;
    }
    return this.#notFound(res, viewer);
  }

  async #search(res: ServerResponse, viewer: ConsoleViewer, params: URLSearchParams, approves: string[], auditor: boolean): Promise<void> {
    const form = searchFormOf(params);
    const pageSize = this.options.pageSize ?? PAGE_SIZE;
    const choices = await auditChoices(this.#db);
    const parsed = parseSearch(form, { targets: choices.targets.map((t) => t.name), kinds: choices.kinds });
    if (!parsed.ok) {
      const body = searchPage({ form, choices, errors: parsed.errors, rows: undefined, hasOlder: false, approves, auditor });
      return this.#send(res, viewer, "Audit log", body, 400);
    }
    const rows = await searchAudit(this.#db, {
      person: parsed.person,
      target: parsed.target,
      kind: parsed.kind,
      since: parsed.since,
      until: parsed.until,
      beforeSeq: parsed.beforeSeq,
      visibleTo: auditor ? undefined : { personId: viewer.person.id, targets: approves },
      newestFirst: true,
      limit: pageSize + 1,
    });
    const page = rows.slice(0, pageSize);
    const requestOfGrant = await requestsOfGrants(this.#db, page.filter((r) => !r.requestId && r.grantId).map((r) => r.grantId!));
    const body = searchPage({ form, choices, errors: [], rows: page, hasOlder: rows.length > pageSize, approves, auditor, requestOfGrant });
    return this.#send(res, viewer, "Audit log", body);
  }

  async #session(req: IncomingMessage, res: ServerResponse, viewer: ConsoleViewer, auditor: boolean, id: string, params: URLSearchParams): Promise<void> {
    const after = params.get("after");
    const afterSeq = after !== null && /^\d{1,9}$/.test(after) ? Number(after) : undefined;
    // Read through the journal: every statement recorded before this request is shipped first, or the page says it cannot show them all.
    const shipped = this.options.statementsShipped ? await this.options.statementsShipped(SHIPPED_WAIT_MS) : true;
    const detail = await sessionDetail(this.#db, id, { limit: STATEMENTS_PER_PAGE, ...(afterSeq !== undefined ? { afterSeq } : {}) });
    if (!detail) return this.#notFound(res, viewer);
    const texts = new Map<number, { text: string; truncated: boolean }>();
    for (const [channel, { head, complete }] of await recordingHeads(this.#db, id, RECORDING_TEXT_CHARS)) {
      const { text, truncated } = castText(head, RECORDING_TEXT_CHARS);
      texts.set(channel, { text, truncated: truncated || !complete });
    }
    const head = detail.recordings.length > 0
      ? html`<link rel="stylesheet" href="/audit/assets/asciinema-player.css">
<script src="/audit/assets/asciinema-player.min.js" defer></script>
<script src="/audit/assets/replay.js" defer></script>`
      : undefined;
    // Only the results of the statements on this page (a page holds up to 500, each result up to its caps).
    const seqs = detail.statements.map((s) => s.seq);
    const range = seqs.length > 0 && detail.session.protocol === "postgres" && shipped ? { from: Math.min(...seqs), to: Math.max(...seqs) } : undefined;
    const results = range ? await this.#results(req, res, viewer, auditor, id, range) : undefined;
    return this.#send(res, viewer, `Session ${id}`, sessionPage(detail, texts, afterSeq, shipped ? undefined : UNSHIPPED_NOTE, results), 200, head, { "content-security-policy": SESSION_PAGE_CSP });
  }

  /**
   * The session's recorded results (masked) as the broker gives them to this viewer, and for an
   * auditor the CSRF token of the reveal forms. None when the broker says the viewer may not see them.
   */
  async #results(req: IncomingMessage, res: ServerResponse, viewer: ConsoleViewer, auditor: boolean, id: string, range: { from: number; to: number }): Promise<SessionResults | undefined> {
    let results;
    try {
      results = await this.options.broker.sessionResults(viewer.person, id, range);
    } catch (error) {
      if (error instanceof ResultsNotVisible) return undefined;
      throw error;
    }
    const bySeq = new Map(results.map((r) => [r.seq, r]));
    const reveal = auditor && results.some((r) => r.sealed) ? { hidden: { [CSRF_FIELD]: csrfToken(csrfSecret(req, res, this.options.auth.cookies), viewerPurpose(viewer)) } } : undefined;
    return { bySeq, reveal };
  }

  /**
   * An auditor's reveal of one statement (`POST /audit/sessions/<id>/results/<seq>/reveal`, a form
   * with the CSRF token and a reason): the statement's rows with the originals, never cached; on a
   * `stepUp` target a redirect to the fresh sign-in, whose callback finishes this reveal. Anyone
   * who is not an auditor gets the same 404 as for an unknown session, and nothing is recorded.
   */
  async reveal(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://gateway");
    const match = /^\/audit\/sessions\/([A-Za-z0-9_-]{1,64})\/results\/([1-9][0-9]{0,8})\/reveal$/.exec(url.pathname);
    const viewer = await this.options.auth.viewerOf(req);
    if (!viewer) return this.options.auth.challenge(req, res, match ? `/audit/sessions/${match[1]!}` : "/audit");
    if (!match) return this.#notFound(res, viewer);
    const sessionId = match[1]!;
    const seq = Number(match[2]);
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (error) {
      if (!(error instanceof FormError)) throw error;
      return this.#refused(res, viewer, error.status, "Bad request", error.message, sessionId);
    }
    if (!csrfValid(req, form, viewerPurpose(viewer), this.options.auth.cookies)) {
      return this.#refused(res, viewer, 403, "Refused", "This form has expired or did not come from the audit pages (CSRF check). Nothing was revealed.", sessionId);
    }
    // Checked before anything else the broker does: to a non-auditor this session is one they cannot see.
    if (!(await this.options.broker.isAuditor(viewer.person))) return this.#notFound(res, viewer);
    const reason = (form.get(REASON_FIELD) ?? "").trim();
    if (reason === "") return this.#refused(res, viewer, 400, "A reason is needed", "Say why you reveal these originals (a ticket or case and the purpose). Nothing was revealed.", sessionId);
    try {
      const outcome = await this.options.broker.revealResults(viewer.person, { sessionId, seq, reason });
      if (outcome.kind === "step-up-needed") {
        res.writeHead(303, { location: outcome.link, "cache-control": "no-store", "content-length": 0 });
        res.end();
        return;
      }
      const body = revealedPage({ sessionId, seq, reason, result: outcome.result, revealed: outcome.revealed, keyId: outcome.keyId, by: viewer.displayName });
      return this.#send(res, viewer, `Revealed: statement ${seq} of ${sessionId}`, body, 200, undefined, { "cache-control": "no-store", "referrer-policy": "no-referrer" });
    } catch (error) {
      if (error instanceof NotAnAuditor) return this.#notFound(res, viewer);
      if (error instanceof RevealRefused) return this.#refused(res, viewer, 400, "Not revealed", capitalize(error.message) + ".", sessionId);
      if (error instanceof SealError) return this.#refused(res, viewer, 503, "Not revealed", `${capitalize(error.message)}. Nothing was revealed or recorded.`, sessionId);
      if (error instanceof BrokerError) return this.#refused(res, viewer, 403, "Not revealed", capitalize(error.message) + ".", sessionId);
      throw error;
    }
  }

  #refused(res: ServerResponse, viewer: ConsoleViewer, status: number, title: string, message: string, sessionId: string): void {
    const body = html`<div class="audit"><p class="back"><a href="/audit/sessions/${encodeURIComponent(sessionId)}">← Session ${sessionId}</a></p><h1>${title}</h1><p role="alert">${message}</p></div>`;
    this.#send(res, viewer, title, body, status, undefined, { "cache-control": "no-store" });
  }

  /**
   * A held statement or command, whole (`/audit/held/<id>`, and `/text` for its exact characters):
   * the page a chat message links to when it cannot show all of it. For the approvers of its target,
   * the person who ran it and the auditors; anyone else gets the same 404 as for an unknown id.
   */
  async #held(res: ServerResponse, viewer: ConsoleViewer, id: string, sub: string | undefined, file: string | undefined, mayView: (scope: { ownerId: string; target: string }) => boolean): Promise<void> {
    if (file !== undefined || (sub !== undefined && sub !== "text")) return this.#notFound(res, viewer);
    const detail = await heldDetail(this.#db, id);
    if (!detail) return this.#notFound(res, viewer);
    // The same rule as every audit page: the person who ran it, an approver of its target, an auditor.
    if (!mayView({ ownerId: detail.personId, target: detail.target })) return this.#notFound(res, viewer);
    if (sub === "text") {
      const body = Buffer.from(detail.held.text, "utf8");
      res.writeHead(200, {
        "content-type": "text/plain; charset=utf-8",
        "content-length": body.length,
        "content-disposition": `inline; filename="${id}.txt"`,
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      });
      res.end(body);
      return;
    }
    return this.#send(res, viewer, `Held ${id}`, heldPage(detail), 200, undefined, { "cache-control": "no-store" });
  }

  #send(res: ServerResponse, viewer: ConsoleViewer, title: string, body: Html, status = 200, extraHead?: Html, headers: Record<string, string> = {}): void {
    const returnTo = res.req.url ?? "/audit";
    const switchHref = this.options.switchHref?.(returnTo.startsWith("/audit") ? returnTo : "/audit");
    const head = html`<link rel="stylesheet" href="/audit/assets/audit.css">${extraHead ?? ""}`;
    sendHtml(res, status, page({ title, body, viewer: { name: viewer.displayName, ...(switchHref ? { switchHref } : {}) }, section: "audit", head }), headers);
  }

  #notFound(res: ServerResponse, viewer: ConsoleViewer): void {
    const body = html`<div class="audit"><p class="back"><a href="/audit">← Audit log</a></p><h1>Not found</h1><p>There is no such request, session or recording that you may see.</p></div>`;
    this.#send(res, viewer, "Not found", body, 404);
  }

  async #asset(res: ServerResponse, parts: string[]): Promise<void> {
    const asset = parts.length === 2 && parts[1] ? await auditAsset(parts[1]) : undefined;
    if (!asset) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end("not found");
      return;
    }
    res.writeHead(200, {
      "content-type": asset.type,
      "content-length": asset.body.length,
      "cache-control": "public, max-age=3600",
      "x-content-type-options": "nosniff",
    });
    res.end(asset.body);
  }
}

const capitalize = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);
