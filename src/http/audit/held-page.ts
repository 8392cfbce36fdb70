import { createHash } from "node:crypto";
import type { HeldDetail } from "../../broker/audit-queries.js";
import { countHidden, hiddenMarker, hiddenNotice, splitHidden } from "../../infra/visible-text.js";
import { html, type Html } from "../../infra/web/html.js";
import { requestLink, sessionLink, utc } from "./event-text.js";

export function heldTextHref(heldId: string): string {
  return `/audit/held/${encodeURIComponent(heldId)}/text`;
}

const STATE_LABEL: Record<string, string> = { held: "waiting for approval", approved: "approved: it ran", denied: "denied: it did not run", timed_out: "timed out: it did not run" };

/**
 * A held statement or command whole: the page a chat message links to when it could show only the
 * start and the end. The text is exactly what was held (HTML-escaped, never cut), with its length
 * and SHA-256 so it can be compared, and a plain-text download of the same characters.
 */
export function heldPage(detail: HeldDetail): Html {
  const { held } = detail;
  const characters = Array.from(held.text).length;
  const hidden = countHidden(held.text);
  const sha256 = createHash("sha256").update(held.text, "utf8").digest("hex");
  const approvals =
    held.approvalsRequired > 1 || detail.approvedBy.length > 0
      ? html`<dt>Approvals</dt><dd>${detail.approvedBy.length} of ${held.approvalsRequired}${detail.approvedBy.length > 0 ? `: ${detail.approvedBy.join(", ")}` : ""}</dd>`
      : "";
  return html`<div class="audit">
<p class="back"><a href="/audit">← Audit log</a> · Session ${sessionLink(held.sessionId)}${detail.requestId ? html` · Request ${requestLink(detail.requestId)}` : ""}</p>
<h1>Held on ${detail.target}: ${held.id}</h1>
<dl class="facts">
  <dt>Person</dt><dd>${detail.person.displayName}${detail.person.email ? ` <${detail.person.email}>` : ""}</dd>
  <dt>Target</dt><dd>${detail.target}</dd>
  <dt>Rule</dt><dd>${held.rule}</dd>
  <dt>Held</dt><dd>${utc(held.createdAt)}</dd>
  <dt>State</dt><dd><span class="outcome outcome-${held.state}">${STATE_LABEL[held.state] ?? held.state}</span>${detail.decidedByName ? ` by ${detail.decidedByName}` : ""}${held.decidedAt ? html` at ${utc(held.decidedAt)}` : ""}</dd>
  ${approvals}
  <dt>Length</dt><dd>${characters} characters (${Buffer.byteLength(held.text, "utf8")} bytes UTF-8)</dd>
  <dt>SHA-256</dt><dd><code>${sha256}</code></dd>
</dl>
<h2>The whole text, exactly as it would run</h2>
${hidden > 0 ? html`<p class="note">${hiddenNotice(hidden)} The plain-text download has the characters themselves.</p>` : ""}
<pre class="held-text" id="held-text" tabindex="0">${splitHidden(held.text).map((part) => (part.hidden ? html`<mark class="hidden-char" title="an invisible or direction-changing character">${hiddenMarker(part.text)}</mark>` : html`${part.text}`))}</pre>
<p><a href="${heldTextHref(held.id)}">Download as plain text</a></p>
</div>`;
}
