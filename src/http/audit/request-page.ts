import type { HeldOutcome, RequestTimeline } from "../../broker/audit-queries.js";
import { formatDuration } from "../../config/duration.js";
import { html, type Html } from "../../infra/web/html.js";
import { actorName, chainMark, describeEvent, heldOutcomeText, sessionLink, utc } from "./event-text.js";

/** A request's page: what was asked, then everything that happened under it, in the chain's order. */
export function requestPage(timeline: RequestTimeline): Html {
  const { request, requester, grant } = timeline;
  const held = new Map<string, HeldOutcome>(timeline.held.map((h) => [h.id, h]));
  return html`<div class="audit">
<p class="back"><a href="/audit">← Audit log</a></p>
<h1>${request.kind === "extension" ? "Extension request" : "Request"} ${request.id}</h1>
<dl class="facts">
  <dt>Target</dt><dd>${request.target}</dd>
  <dt>Requester</dt><dd>${requester.displayName}${requester.email ? ` <${requester.email}>` : ""}</dd>
  <dt>Duration</dt><dd>${formatDuration(request.durationMs)}</dd>
  <dt>Reason</dt><dd>${request.reason}</dd>
  <dt>State</dt><dd>${request.state}</dd>
  <dt>Asked</dt><dd>${utc(request.createdAt)}</dd>
  <dt>Approvals needed</dt><dd>${request.approvalsRequired}</dd>
  ${
    grant
      ? html`<dt>Grant</dt><dd>${grant.id}: ${grant.state}, ${utc(grant.startsAt)} to ${utc(grant.endedAt ?? grant.expiresAt)}${grant.endedAt ? "" : " (expires)"}</dd>`
      : ""
  }
</dl>
${
  timeline.decisions.length > 0
    ? html`<h2>Decisions</h2>
<ul>${timeline.decisions.map(
        (d) => html`<li><span class="verdict verdict-${d.verdict === "approve" ? "allow" : "block"}">${d.verdict === "approve" ? "Approved" : "Denied"}</span> by ${d.approverName} at ${utc(d.createdAt)}${d.reason ? html`: “${d.reason}”` : ""}</li>`,
      )}</ul>`
    : ""
}
<h2>Timeline</h2>
<ol class="timeline">
${timeline.events.map(
  (event) => html`<li><span class="when">${utc(event.at)}${chainMark(event)}</span><span class="kind">${event.kind}</span> ${describeEvent(event, held)} <span class="note">— ${actorName(event)}</span></li>`,
)}
</ol>
<h2>Sessions</h2>
${
  timeline.sessions.length === 0
    ? html`<p class="none">No session was opened under this ${grant ? "grant" : "request"}.</p>`
    : html`<div class="table-wrap"><table class="stack">
<thead><tr><th scope="col">Session</th><th scope="col">Protocol</th><th scope="col">From</th><th scope="col">Started</th><th scope="col">Ended</th></tr></thead>
<tbody>${timeline.sessions.map(
        (s) => html`<tr><td data-label="Session">${sessionLink(s.id)}</td><td data-label="Protocol">${s.protocol}</td><td data-label="From">${s.clientAddress ?? ""}</td><td data-label="Started">${utc(s.startedAt)}</td><td data-label="Ended">${utc(s.endedAt)}</td></tr>`,
      )}</tbody></table></div>`
}
<h2>Held statements</h2>
${
  timeline.held.length === 0
    ? html`<p class="none">No statement was held for approval.</p>`
    : html`<div class="table-wrap"><table class="stack">
<thead><tr><th scope="col">Held</th><th scope="col">Session</th><th scope="col">Statement</th><th scope="col">Rule</th><th scope="col">Outcome</th></tr></thead>
<tbody>${timeline.held.map(
        (h) => html`<tr><td data-label="Held">${utc(h.createdAt)}</td><td data-label="Session">${sessionLink(h.sessionId)}</td><td data-label="Statement" class="statement-cell"><pre class="statement">${h.text}</pre></td><td data-label="Rule">${h.rule}</td><td data-label="Outcome">${heldOutcomeText(h)}</td></tr>`,
      )}</tbody></table></div>`
}
</div>`;
}
