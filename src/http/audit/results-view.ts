import type { StatementResult } from "../../broker/index.js";
import { html, type Html } from "../../infra/web/html.js";
import { sessionLink } from "./event-text.js";

/** Where an auditor's "Reveal originals" form posts for one statement. */
export function revealHref(sessionId: string, seq: number): string {
  return `/audit/sessions/${encodeURIComponent(sessionId)}/results/${seq}/reveal`;
}

/** The field of the reveal form that carries the stated reason. */
export const REASON_FIELD = "reason";

/** The reveal form's hidden fields (its CSRF token), present only for an auditor. */
export interface RevealForm {
  hidden: Record<string, string>;
}

function keptText(result: StatementResult): string {
  if (result.cut || result.rowsKept !== result.rowsTotal) return `cut: ${result.rowsKept} of ${result.rowsTotal} rows kept (the target's record caps)`;
  return `${result.rowsTotal} row${result.rowsTotal === 1 ? "" : "s"}`;
}

/**
 * A statement's recorded rows as a table: the values as the client received them (masked), or with
 * `revealed` the originals in the cells it names, each marked.
 */
function rowsTable(result: StatementResult, caption: string, revealed?: readonly { row: number; column: number }[]): Html {
  const marked = new Set((revealed ?? []).map((r) => `${r.row}:${r.column}`));
  if (result.columns.length === 0) return html`<p class="none">No columns.</p>`;
  return html`<div class="table-wrap"><table class="result-rows">
<caption>${caption}</caption>
<thead><tr>${result.columns.map((c) => html`<th scope="col">${c.name}${c.format === 1 ? html` <span class="note">(binary, base64)</span>` : ""}</th>`)}</tr></thead>
<tbody>${result.rows.map(
    (row, r) =>
      html`<tr>${row.map((value, c) => {
        const shown = value === null ? html`<span class="none">NULL</span>` : html`${value}`;
        return marked.has(`${r}:${c}`) ? html`<td><mark class="revealed" title="original, revealed">${shown}</mark></td>` : html`<td>${shown}</td>`;
      })}</tr>`,
  )}</tbody>
</table></div>`;
}

/**
 * A statement's recorded result on the session page, masked, with the auditor's "Reveal originals"
 * form when its originals are sealed (a required reason; the reveal is audited and said in the
 * request's thread).
 */
export function resultBlock(sessionId: string, result: StatementResult, reveal: RevealForm | undefined): Html {
  const id = `result-${result.seq}`;
  return html`<details class="result" id="${id}"><summary>Result of statement ${result.seq}: ${keptText(result)}${result.sealed ? " · originals of masked values sealed" : ""}</summary>
${rowsTable(result, `Rows of statement ${result.seq} as the client received them (masked)`)}
${
  reveal && result.sealed
    ? html`<form class="reveal" method="post" action="${revealHref(sessionId, result.seq)}">
${Object.entries(reveal.hidden).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`)}
<label for="${id}-reason">Reason for revealing the originals of statement ${result.seq}</label>
<input id="${id}-reason" name="${REASON_FIELD}" type="text" required maxlength="500" autocomplete="off" placeholder="ticket or case, and why">
<button type="submit">Reveal originals</button>
<p class="hint">The reveal is recorded in the audit log (who, which statement, why) and posted in the request's thread.</p>
</form>`
    : ""
}
</details>`;
}

/** The page an auditor's reveal answers with: that statement's rows with the originals, marked as revealed. */
export function revealedPage(input: {
  sessionId: string;
  seq: number;
  reason: string;
  result: StatementResult;
  revealed: readonly { row: number; column: number }[];
  keyId: string;
  by: string;
  /** Said when the reveal followed a fresh sign-in (a stepUp target). */
  signedInAs?: string | undefined;
}): Html {
  const { result } = input;
  return html`<div class="audit">
<p class="back"><a href="/audit">← Audit log</a> · Session ${sessionLink(input.sessionId)}</p>
<h1>Revealed: statement ${input.seq} of session ${input.sessionId}</h1>
<p class="outcome outcome-denied" role="status">Originals revealed to ${input.by}${input.signedInAs ? ` after a fresh sign-in as ${input.signedInAs}` : ""}. This reveal is recorded in the audit log and posted in the request's thread. Do not copy these values anywhere they are not needed.</p>
<dl class="facts">
  <dt>Reason</dt><dd>${input.reason}</dd>
  <dt>Values revealed</dt><dd>${input.revealed.length} (marked)</dd>
  <dt>Rows</dt><dd>${keptText(result)}</dd>
  <dt>Seal key</dt><dd><code>${input.keyId}</code></dd>
</dl>
${rowsTable(result, `Rows of statement ${input.seq} with the originals of masked values (revealed)`, input.revealed)}
</div>`;
}
