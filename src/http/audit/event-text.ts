import type { AuditSearchRow } from "../../broker/audit.js";
import type { HeldOutcome } from "../../broker/audit-queries.js";
import { formatDuration } from "../../config/duration.js";
import { html, type Html } from "../../infra/web/html.js";

/** Times on the audit pages are UTC, to the second, in a <time> carrying the exact instant. */
export function utc(date: Date | null | undefined): Html {
  if (!date) return html`<span class="none">—</span>`;
  return html`<time datetime="${date.toISOString()}">${date.toISOString().slice(0, 19).replace("T", " ")}</time>`;
}

export function requestLink(id: string | null | undefined): Html | string {
  return id ? html`<a href="/audit/requests/${encodeURIComponent(id)}">${id}</a>` : "";
}

export function sessionLink(id: string | null | undefined): Html | string {
  return id ? html`<a href="/audit/sessions/${encodeURIComponent(id)}">${id}</a>` : "";
}

export function actorName(row: Pick<AuditSearchRow, "actorId" | "actorName" | "actorEmail">): string {
  if (!row.actorId) return "jitgate";
  return row.actorName ? (row.actorEmail ? `${row.actorName} <${row.actorEmail}>` : row.actorName) : row.actorId;
}

const str = (value: unknown): string | undefined => (typeof value === "string" && value !== "" ? value : undefined);
const num = (value: unknown): number | undefined => (typeof value === "number" && Number.isFinite(value) ? value : undefined);
const when = (value: unknown): Html | string => {
  const text = str(value);
  const date = text ? new Date(text) : undefined;
  return date && !Number.isNaN(date.getTime()) ? utc(date) : "";
};

/** A held statement's outcome in words: "approved by Lee at …", "timed out", "waiting". */
export function heldOutcomeText(held: HeldOutcome | undefined): Html {
  if (!held) return html`<span class="none">unknown</span>`;
  const label = { held: "waiting", approved: "approved", denied: "denied", timed_out: "timed out" }[held.state];
  return html`<span class="outcome outcome-${held.state}">${label}</span>${held.decidedByName ? html` by ${held.decidedByName}` : ""}${held.decidedAt ? html` at ${utc(held.decidedAt)}` : ""}`;
}

/**
 * One event in words, from its kind and data. Kinds this page does not know yet still show their
 * data, so a new event kind is never hidden from an auditor.
 */
export function describeEvent(row: AuditSearchRow, held: Map<string, HeldOutcome> = new Map()): Html {
  const d = row.data;
  const reason = str(d.reason);
  switch (row.kind) {
    case "request.created":
      return d.kind === "extension"
        ? html`Asked to extend grant ${row.grantId ?? ""} by ${formatDuration(num(d.durationMs) ?? 0)}${reason ? html`: “${reason}”` : ""}`
        : html`${d.breakGlass === true ? html`<strong>Break-glass</strong>: ` : ""}Asked for ${formatDuration(num(d.durationMs) ?? 0)} on ${row.target ?? ""}${str(d.startsAt) ? html` from ${when(d.startsAt)}` : ""}${d.once === true ? " (one session)" : ""}${reason ? html`: “${reason}”` : ""}${num(d.approvalsRequired) ? html` (${d.approvalsRequired as number} approval${d.approvalsRequired === 1 ? "" : "s"} needed)` : ""}`;
    case "request.decided":
      return html`${d.verdict === "deny" ? "Denied" : "Approved"}${num(d.approvals) !== undefined ? html` (${d.approvals as number} of ${(d.required as number) ?? "?"})` : ""}${reason ? html`: “${reason}”` : ""}${stepUpNote(d.stepUp)}`;
    case "step_up.challenged":
      return str(d.reveal)
        ? html`Reveal of statement ${str(d.reveal)!.split("#")[1] ?? "?"} asked; it happens after a fresh sign-in (link valid until ${when(d.expiresAt)})`
        : html`Approve clicked; the approval counts after a fresh sign-in (link valid until ${when(d.expiresAt)})`;
    case "results.revealed":
      return html`<strong>Originals revealed</strong> of statement ${num(d.seq) ?? "?"} (${num(d.values) ?? "?"} masked value${num(d.values) === 1 ? "" : "s"}${str(d.keyId) ? html`, seal key <code>${d.keyId as string}</code>` : ""})${reason ? html`: “${reason}”` : ""}${str(d.stepUpAuthTime) ? html` <span class="note">after a fresh sign-in at ${when(d.stepUpAuthTime)}</span>` : ""}`;
    case "request.approved":
      return html`Request approved`;
    case "request.denied":
      return html`Request denied${reason ? html`: “${reason}”` : ""}`;
    case "request.expired":
      return html`Request expired without a decision`;
    case "grant.issued":
      return html`Grant ${row.grantId ?? ""} issued${str(d.login) ? html` to ${d.login as string}` : ""}, until ${when(d.expiresAt)}`;
    case "grant.extended":
      return html`Grant extended by ${formatDuration(num(d.durationMs) ?? 0)}, now until ${when(d.expiresAt)}`;
    case "grant.revoked":
      return html`Grant revoked${reason ? html`: “${reason}”` : ""}`;
    case "grant.expired":
      return html`Grant expired (it ran until ${when(d.expiresAt)})`;
    case "grant.ended":
      return html`Grant ended with its first session (--once)${row.sessionId ? html`: ${sessionLink(row.sessionId)}` : ""}`;
    case "grant.scheduled":
      return html`Approved for later: the grant starts at ${when(d.startsAt)} and ends at ${when(d.expiresAt)}`;
    case "grant.start_missed":
      return html`Scheduled grant not issued: its whole window (${when(d.startsAt)} – ${when(d.endsAt)}) passed while its start job was lost`;
    case "break_glass.used":
      return html`<strong>Break-glass</strong>: grant ${row.grantId ?? ""} issued without approval, until ${when(d.expiresAt)}${reason ? html`: “${reason}”` : ""}${stepUpNote(d.stepUp)}`;
    case "break_glass.refused":
      return html`Break-glass refused on ${row.target ?? ""} (${d.configured === false ? "the target has no break-glass" : "not on its allow list"})${reason ? html`: “${reason}”` : ""}`;
    case "break_glass.reviewed":
      return html`Break-glass use ${d.verdict === "flagged" ? html`<strong>flagged as misuse</strong>` : "acknowledged"}${str(d.note) ? html`: “${d.note as string}”` : ""}`;
    case "session.opened":
      return html`${str(d.protocol) === "ssh" ? "SSH" : "PostgreSQL"} session ${sessionLink(row.sessionId)} opened${str(d.clientAddress) ? html` from ${d.clientAddress as string}` : ""}`;
    case "session.closed":
      return html`Session ${sessionLink(row.sessionId)} closed${str(d.endReason) ? html` (${d.endReason as string})` : ""}${num(d.durationMs) !== undefined ? html` after ${formatDuration(d.durationMs as number)}` : ""}`;
    case "statement.held": {
      const outcome = str(d.heldId) ? held.get(d.heldId as string) : undefined;
      return html`Held for approval (${str(d.rule) ?? "rule"}): <code class="statement">${str(d.text) ?? ""}</code>${outcome ? html` — ${heldOutcomeText(outcome)}` : ""}`;
    }
    case "statement.approval":
      return html`Held statement ${str(d.heldId) ?? ""}: one approval (${num(d.approvals) ?? "?"} of ${num(d.required) ?? "?"}); it waits for more${stepUpNote(d.stepUp)}`;
    case "statement.approved":
    case "statement.denied":
    case "statement.timed_out":
      return html`Held statement ${str(d.heldId) ?? ""} ${row.kind === "statement.timed_out" ? "timed out" : row.kind.slice("statement.".length)}${num(d.required) !== undefined && (d.required as number) > 1 ? ` (${num(d.approvals) ?? "?"} of ${d.required as number})` : ""}${stepUpNote(d.stepUp)}`;
    case "statement.blocked":
      return html`Blocked (${str(d.rule) ?? "rule"}): <code class="statement">${str(d.text) ?? ""}</code>`;
    case "ssh.file":
      return html`SFTP ${str(d.op) ?? "operation"} <code>${str(d.path) ?? ""}</code>${str(d.to) ? html` → <code>${d.to as string}</code>` : ""}${num(d.bytes) !== undefined ? html`, ${d.bytes as number} bytes` : ""}${d.ok === false ? html` <span class="outcome outcome-denied">failed</span>` : ""}`;
    default:
      return Object.keys(d).length === 0 ? html`` : html`<code class="data">${JSON.stringify(d)}</code>`;
  }
}

/** The step-up login behind an approval, if the decision recorded one (targets with `stepUp: true`). */
function stepUpNote(stepUp: unknown): Html | string {
  if (stepUp === undefined || stepUp === null || stepUp === false) return "";
  if (typeof stepUp === "object") {
    const authTime = (stepUp as Record<string, unknown>).authTime;
    return html` <span class="note">after a fresh sign-in${authTime ? html` at ${when(authTime)}` : ""}</span>`;
  }
  return html` <span class="note">after a fresh sign-in</span>`;
}

/** The chain position and hash of an event, small: enough to find it with `jitgate audit verify`. */
export function chainMark(row: Pick<AuditSearchRow, "seq" | "hash">): Html {
  return html`<span class="chain" title="audit event ${row.seq}, sha256 ${row.hash}">#${row.seq} <code>${row.hash.slice(0, 12)}</code></span>`;
}
