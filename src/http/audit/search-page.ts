import type { AuditSearchRow } from "../../broker/audit.js";
import { html, type Html } from "../../infra/web/html.js";
import { actorName, chainMark, describeEvent, requestLink, sessionLink, utc } from "./event-text.js";

/** What the search form asks for, as typed (so the form shows it back, errors included). */
export interface SearchForm {
  person: string;
  target: string;
  from: string;
  to: string;
  kind: string;
  before: string;
}

/** The form, checked: dates parsed (UTC), choices known, or the errors to show with the form. */
export type ParsedSearch =
  | { ok: true; person?: string; target?: string; kind?: string; since?: Date; until?: Date; beforeSeq?: number }
  | { ok: false; errors: string[] };

export const PAGE_SIZE = 50;
const MAX_TEXT = 200;

export function searchFormOf(params: URLSearchParams): SearchForm {
  const get = (name: string) => (params.get(name) ?? "").trim();
  return { person: get("person"), target: get("target"), from: get("from"), to: get("to"), kind: get("kind"), before: get("before") };
}

// What a datetime-local input sends: 2026-11-22T10:00 (seconds optional), no zone.
const LOCAL_DATETIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/;

function parseUtc(value: string): Date | undefined {
  const match = LOCAL_DATETIME.exec(value);
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s] = match.map(Number) as [number, number, number, number, number, number, number | undefined];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, Number.isNaN(s) || s === undefined ? 0 : s));
  // Date.UTC rolls 2026-02-31 over to March; a date that does not exist is a mistake, not a hint.
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d || date.getUTCHours() !== h || date.getUTCMinutes() !== mi) {
    return undefined;
  }
  return date;
}

export function parseSearch(form: SearchForm, choices: { targets: string[]; kinds: string[] }): ParsedSearch {
  const errors: string[] = [];
  if (form.person.length > MAX_TEXT) errors.push(`The person is at most ${MAX_TEXT} characters (a name or an email).`);
  if (form.target && !choices.targets.includes(form.target)) errors.push(`There is no target called “${form.target.slice(0, MAX_TEXT)}”.`);
  if (form.kind && !choices.kinds.includes(form.kind)) errors.push(`No event of kind “${form.kind.slice(0, MAX_TEXT)}” is in the log.`);
  const since = form.from ? parseUtc(form.from) : undefined;
  if (form.from && !since) errors.push(`“From” is not a date and time like 2026-11-22T09:30 (UTC).`);
  let until = form.to ? parseUtc(form.to) : undefined;
  if (form.to && !until) errors.push(`“To” is not a date and time like 2026-11-22T17:00 (UTC).`);
  // A minute picked as the end includes that whole minute.
  if (until && !/:\d{2}:\d{2}$/.test(form.to)) until = new Date(until.getTime() + 59_999);
  if (since && until && until.getTime() < since.getTime()) errors.push("The time window ends before it starts: “To” must be after “From”.");
  let beforeSeq: number | undefined;
  if (form.before) {
    beforeSeq = Number(form.before);
    if (!/^\d{1,15}$/.test(form.before) || !Number.isSafeInteger(beforeSeq)) errors.push("The page position (before) is not an event number.");
  }
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    ...(form.person ? { person: form.person } : {}),
    ...(form.target ? { target: form.target } : {}),
    ...(form.kind ? { kind: form.kind } : {}),
    ...(since ? { since } : {}),
    ...(until ? { until } : {}),
    ...(beforeSeq !== undefined ? { beforeSeq } : {}),
  };
}

function searchHref(form: SearchForm, before: number): string {
  const params = new URLSearchParams();
  for (const key of ["person", "target", "from", "to", "kind"] as const) if (form[key]) params.set(key, form[key]);
  params.set("before", String(before));
  return `/audit?${params.toString()}`;
}

export function searchPage(input: {
  form: SearchForm;
  choices: { targets: { name: string; kind: string; active: boolean }[]; kinds: string[] };
  errors: string[];
  rows: AuditSearchRow[] | undefined;
  hasOlder: boolean;
  /** The targets the viewer approves: they see these targets' events besides their own. */
  approves: string[];
  /** The viewer is an auditor: they see every event. */
  auditor?: boolean;
  /** The request behind a grant, for events that name only the grant (a held statement's decision). */
  requestOfGrant?: Map<string, string>;
}): Html {
  const { form, choices, rows } = input;
  const option = (value: string, label: string, selected: boolean) => html`<option value="${value}"${selected ? html` selected` : ""}>${label}</option>`;
  return html`<div class="audit">
<h1>Audit log</h1>
<p class="lead">${input.auditor ? "Every request, decision, grant and session on every target (you are an auditor)." : input.approves.length > 0 ? `Every request, decision, grant and session on ${input.approves.join(", ")} (the targets you approve), and your own.` : "Your own requests and sessions (approvers of a target see everyone’s on it)."} Times are UTC.</p>
<form class="search" method="get" action="/audit" role="search" aria-label="Search the audit log">
  <div><label for="person">Person</label><input id="person" name="person" type="search" value="${form.person}" placeholder="name or email" autocomplete="off" maxlength="${MAX_TEXT}"></div>
  <div><label for="target">Target</label><select id="target" name="target">
    ${option("", "any target", form.target === "")}
    ${choices.targets.map((t) => option(t.name, `${t.name} (${t.kind}${t.active ? "" : ", removed"})`, form.target === t.name))}
  </select></div>
  <div><label for="from">From <span class="hint">UTC</span></label><input id="from" name="from" type="datetime-local" value="${form.from}"></div>
  <div><label for="to">To <span class="hint">UTC</span></label><input id="to" name="to" type="datetime-local" value="${form.to}"></div>
  <div><label for="kind">Event</label><select id="kind" name="kind">
    ${option("", "any event", form.kind === "")}
    ${choices.kinds.map((k) => option(k, k, form.kind === k))}
  </select></div>
  <div class="actions"><button type="submit">Search</button><a href="/audit">Clear</a></div>
</form>
${input.errors.length > 0 ? html`<div class="error" role="alert"><p><strong>The search could not run:</strong></p><ul>${input.errors.map((e) => html`<li>${e}</li>`)}</ul></div>` : ""}
${rows ? results(rows, input.hasOlder, form, input.requestOfGrant ?? new Map()) : ""}
</div>`;
}

function results(rows: AuditSearchRow[], hasOlder: boolean, form: SearchForm, requestOfGrant: Map<string, string>): Html {
  if (rows.length === 0) return html`<p class="notice" role="status">No events match${form.before ? " on this page" : ""}.</p>`;
  const last = rows[rows.length - 1]!;
  return html`<div class="table-wrap"><table class="events stack">
<caption>${rows.length} event${rows.length === 1 ? "" : "s"}, newest first${form.before ? ` (before event ${form.before})` : ""}</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Actor</th><th scope="col">Target</th><th scope="col">What happened</th><th scope="col">Request</th><th scope="col">Session</th></tr></thead>
<tbody>
${rows.map(
  (row) => html`<tr>
<td data-label="Time">${utc(row.at)}</td>
<td data-label="Event" class="nowrap">${row.kind}<br>${chainMark(row)}</td>
<td data-label="Actor">${row.actorEmail ? html`<span title="${row.actorEmail}">${actorName({ ...row, actorEmail: null })}</span>` : actorName(row)}</td>
<td data-label="Target">${row.target ?? ""}</td>
<td data-label="What" class="what">${describeEvent(row)}</td>
<td data-label="Request">${requestLink(row.requestId ?? requestOfGrant.get(row.grantId ?? ""))}</td>
<td data-label="Session">${sessionLink(row.sessionId)}</td>
</tr>`,
)}
</tbody></table></div>
<nav class="pager" aria-label="Pages">${form.before ? html`<a href="${newestHref(form)}">Newest events</a>` : ""}${hasOlder ? html`<a href="${searchHref(form, last.seq)}" rel="next">Older events</a>` : ""}</nav>`;
}

function newestHref(form: SearchForm): string {
  const params = new URLSearchParams();
  for (const key of ["person", "target", "from", "to", "kind"] as const) if (form[key]) params.set(key, form[key]);
  const query = params.toString();
  return query ? `/audit?${query}` : "/audit";
}
