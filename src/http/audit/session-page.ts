import type { HeldOutcome, SessionDetail, StatementRow } from "../../broker/audit-queries.js";
import { formatDuration } from "../../config/duration.js";
import { html, type Html } from "../../infra/web/html.js";
import type { StatementResult } from "../../broker/index.js";
import { actorName, chainMark, describeEvent, heldOutcomeText, requestLink, utc } from "./event-text.js";
import { resultBlock, type RevealForm } from "./results-view.js";

/** A session's recorded results for the page: by statement, and the reveal form when the viewer is an auditor. */
export interface SessionResults {
  bySeq: Map<number, StatementResult>;
  reveal: RevealForm | undefined;
}

export function castHref(sessionId: string, channel: number): string {
  return `/audit/sessions/${encodeURIComponent(sessionId)}/recordings/${channel}.cast`;
}

/** A session's page: who, where, when, the summary; then its statements (PostgreSQL) or its recordings (SSH). */
export function sessionPage(
  detail: SessionDetail,
  recordingText: Map<number, { text: string; truncated: boolean }>,
  afterSeq: number | undefined,
  /** The statement timeline cannot be shown whole now (part of it is still in the audit journal). */
  unshipped?: string,
  results?: SessionResults,
): Html {
  const { session, person } = detail;
  const held = new Map<string, HeldOutcome>(detail.held.map((h) => [h.id, h]));
  return html`<div class="audit">
<p class="back"><a href="/audit">← Audit log</a>${detail.requestId ? html` · <a href="/audit/requests/${encodeURIComponent(detail.requestId)}">Request ${detail.requestId}</a>` : ""}</p>
<h1>${session.protocol === "ssh" ? "SSH" : "PostgreSQL"} session ${session.id}</h1>
<dl class="facts">
  <dt>Person</dt><dd>${person.displayName}${person.email ? ` <${person.email}>` : ""}</dd>
  <dt>Target</dt><dd>${session.target}</dd>
  <dt>Protocol</dt><dd>${session.protocol}</dd>
  <dt>Client address</dt><dd>${session.clientAddress ?? html`<span class="none">unknown</span>`}</dd>
  <dt>Started</dt><dd>${utc(session.startedAt)}</dd>
  <dt>Ended</dt><dd>${session.endedAt ? utc(session.endedAt) : html`<span class="none">still open</span>`}</dd>
  <dt>Request</dt><dd>${requestLink(detail.requestId)}</dd>
  <dt>Grant</dt><dd>${session.grantId}</dd>
</dl>
${summary(session.summary, session.protocol)}
${session.protocol === "postgres" ? (unshipped ? html`<h2>Statements</h2><p class="none" role="status">${unshipped}</p>` : statements(detail, held, afterSeq, results)) : recordings(detail, recordingText)}
<h2>Events</h2>
${
  detail.events.length === 0
    ? html`<p class="none">No events.</p>`
    : html`<ol class="timeline">${detail.events.map(
        (event) => html`<li><span class="when">${utc(event.at)}${chainMark(event)}</span><span class="kind">${event.kind}</span> ${describeEvent(event, held)} <span class="note">— ${actorName(event)}</span></li>`,
      )}</ol>`
}
</div>`;
}

function summary(value: Record<string, unknown> | null, protocol: string): Html | string {
  if (!value) return "";
  const count = (key: string) => (typeof value[key] === "number" ? (value[key] as number) : undefined);
  const byKind = value.statementsByKind && typeof value.statementsByKind === "object" ? Object.entries(value.statementsByKind as Record<string, unknown>) : [];
  const facts: [string, Html | string][] = [];
  if (count("durationMs") !== undefined) facts.push(["Duration", formatDuration(count("durationMs")!)]);
  if (typeof value.endReason === "string") facts.push(["Ended by", value.endReason]);
  if (byKind.length > 0) facts.push([protocol === "ssh" ? "Commands" : "Statements", byKind.map(([kind, n]) => `${kind} ${String(n)}`).join(", ")]);
  for (const [key, label] of [
    ["rowsReturned", "Rows returned"],
    ["rowsAffected", "Rows affected"],
    ["valuesMasked", "Values masked"],
    ["blocked", "Blocked"],
    ["held", "Held"],
    ["approved", "Approved"],
    ["bytesIn", "Bytes in"],
    ["bytesOut", "Bytes out"],
  ] as const) {
    const n = count(key);
    // Rows and masking are PostgreSQL's; an SSH session's summary carries them as zeros.
    if (protocol === "ssh" && (key === "rowsReturned" || key === "rowsAffected" || key === "valuesMasked")) continue;
    if (n !== undefined) facts.push([label, String(n)]);
  }
  if (facts.length === 0) return "";
  return html`<h2>Summary</h2><dl class="stats">${facts.map(([label, text]) => html`<div><dt>${label}</dt><dd>${text}</dd></div>`)}</dl>`;
}

function verdict(row: StatementRow, held: Map<string, HeldOutcome>): Html {
  return html`<span class="verdict verdict-${row.verdict}">${row.verdict}</span>${row.rule ? html`<br><span class="note">${row.rule}</span>` : ""}${
    row.heldId ? html`<br>${row.heldId}: ${heldOutcomeText(held.get(row.heldId))}` : ""
  }`;
}

function statements(detail: SessionDetail, held: Map<string, HeldOutcome>, afterSeq: number | undefined, results: SessionResults | undefined): Html {
  const rows = detail.statements;
  const base = `/audit/sessions/${encodeURIComponent(detail.session.id)}`;
  if (rows.length === 0) return html`<h2>Statements</h2><p class="none">${afterSeq === undefined ? "No statement was recorded." : "No more statements."}</p>`;
  return html`<h2>Statements</h2>
<div class="table-wrap"><table class="statements stack">
<caption>Statement timeline${afterSeq === undefined ? "" : ` after statement ${afterSeq}`} (times UTC, durations in ms)</caption>
<thead><tr><th scope="col">#</th><th scope="col">Time</th><th scope="col">Protocol</th><th scope="col">Kind</th><th scope="col">Statement</th><th scope="col">Verdict</th><th scope="col">Duration</th><th scope="col">Rows</th><th scope="col">Result</th></tr></thead>
<tbody>
${rows.map(
  (row) => html`<tr>
<td data-label="#" class="num">${row.seq}</td>
<td data-label="Time">${utc(row.startedAt)}</td>
<td data-label="Protocol">${row.protocol}</td>
<td data-label="Kind">${row.kind}</td>
<td data-label="Statement" class="statement-cell"><pre class="statement">${row.text}</pre>${row.parameters && row.parameters.length > 0 ? html`<span class="note">parameters: ${row.parameters.map((p) => (p === null ? "NULL" : p)).join(", ")}</span>` : ""}</td>
<td data-label="Verdict">${verdict(row, held)}</td>
<td data-label="Duration" class="num">${row.durationMs ?? ""}</td>
<td data-label="Rows" class="num">${row.rows ?? ""}</td>
<td data-label="Result"><span class="nowrap">${row.commandTag ?? ""}</span>${row.error ? html`<span class="outcome outcome-denied">${row.error}</span>` : ""}</td>
</tr>${resultRow(detail.session.id, row.seq, results)}`,
)}
</tbody></table></div>
<nav class="pager" aria-label="Statement pages">${afterSeq !== undefined ? html`<a href="${base}">First statements</a>` : ""}${detail.moreStatements ? html`<a href="${base}?after=${rows[rows.length - 1]!.seq}" rel="next">Later statements</a>` : ""}</nav>`;
}

/** The row under a statement with its recorded result, when one was kept. */
function resultRow(sessionId: string, seq: number, results: SessionResults | undefined): Html | string {
  const result = results?.bySeq.get(seq);
  if (!result) return "";
  return html`<tr class="result-row"><td colspan="9">${resultBlock(sessionId, result, results?.reveal)}</td></tr>`;
}

function recordings(detail: SessionDetail, recordingText: Map<number, { text: string; truncated: boolean }>): Html {
  if (detail.recordings.length === 0) return html`<h2>Recordings</h2><p class="none">No terminal was recorded in this session.</p>`;
  return html`<h2>Recordings</h2>
${detail.recordings.map((recording) => {
  const href = castHref(detail.session.id, recording.channel);
  const text = recordingText.get(recording.channel);
  const textId = `text-${recording.channel}`;
  return html`<section class="recording" aria-labelledby="rec-${recording.channel}">
<h3 id="rec-${recording.channel}">Channel ${recording.channel}: ${recording.kind}${recording.title ? html` <code>${recording.title}</code>` : ""}</h3>
<p>Recorded ${utc(recording.createdAt)}${recording.truncated ? html` · <span class="outcome outcome-denied">cut short at the size limit</span>` : ""} · <a href="${href}" download="${detail.session.id}-${recording.channel}.cast">Download .cast</a> <span class="hint">(asciicast v2: <code>asciinema play</code> or <code>jitgate replay</code>)</span></p>
<div class="player" data-cast="${href}" data-text="${textId}"></div>
<details class="text-output" id="${textId}" open><summary>Text output</summary><pre>${text?.text ?? ""}</pre>${text?.truncated ? html`<p class="note">Only the start is shown; download the .cast for all of it.</p>` : ""}</details>
</section>`;
})}`;
}
