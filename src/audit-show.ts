import { canonicalJson, type AuditSearchRow } from "./broker/audit.js";
import type { SessionEvidence } from "./broker/evidence-bundle.js";
import type { StatementResult } from "./broker/results.js";
import { formatDuration } from "./config/duration.js";
import { showHidden } from "./infra/visible-text.js";

/** Hidden characters as markers, and a carriage return (which would overwrite the line) as `\r`. */
const visibleText = (text: string) => showHidden(text).replace(/\r/g, "\\r");

/**
 * `jitgate audit show`: a session's timeline as text for a terminal, or as JSON lines. Every value
 * a person typed or a target returned goes through visibleText first, so a statement cannot move the
 * cursor or recolour the auditor's terminal.
 */

const iso = (date: Date | null | undefined) => (date ? date.toISOString() : "—");

function who(row: Pick<AuditSearchRow, "actorId" | "actorName" | "actorEmail">): string {
  if (!row.actorId) return "jitgate";
  return row.actorName ? (row.actorEmail ? `${row.actorName} <${row.actorEmail}>` : row.actorName) : row.actorId;
}

function indent(text: string, by = "      "): string {
  return visibleText(text)
    .split("\n")
    .map((line) => `${by}${line}`)
    .join("\n");
}

/**
 * A statement's recorded result as lines: what the client received (masked), `|`-separated as psql
 * prints it, with how many rows were kept of how many. `revealed` marks the values shown unmasked.
 */
export function resultText(result: StatementResult, revealed?: readonly { row: number; column: number }[]): string[] {
  const marked = new Set((revealed ?? []).map((r) => `${r.row}:${r.column}`));
  const out = [
    `      result: ${result.rowsKept === result.rowsTotal && !result.cut ? `${result.rowsTotal} row${result.rowsTotal === 1 ? "" : "s"}` : `${result.rowsKept} of ${result.rowsTotal} rows kept (cut at the record caps)`}${result.sealed && !revealed ? "; originals of masked values sealed" : ""}${revealed ? `; ${marked.size} value${marked.size === 1 ? "" : "s"} UNMASKED (marked »…«)` : ""}`,
    indent(result.columns.map((c) => c.name).join("|"), "        "),
  ];
  result.rows.forEach((row, r) => {
    const cells = row.map((value, c) => {
      const text = value === null ? "" : value;
      return marked.has(`${r}:${c}`) ? `»${text}«` : text;
    });
    out.push(indent(cells.join("|"), "        "));
  });
  return out;
}

export function sessionTimelineText(evidence: SessionEvidence, only?: number): string {
  const { session, person, grant, request } = evidence;
  const out: string[] = [];
  out.push(`${session.protocol === "ssh" ? "SSH" : "PostgreSQL"} session ${session.id} on ${session.target}`);
  out.push(`  person    ${visibleText(person.displayName)}${person.email ? ` <${person.email}>` : ""} (${person.id})`);
  out.push(`  client    ${session.clientAddress ?? "unknown"}`);
  out.push(`  started   ${iso(session.startedAt)}`);
  out.push(`  ended     ${session.endedAt ? iso(session.endedAt) : "still open"}`);
  if (request) out.push(`  request   ${request.id}: ${formatDuration(request.durationMs)} asked ${iso(request.createdAt)}, “${visibleText(request.reason)}” (${request.state})`);
  if (grant) out.push(`  grant     ${grant.id}: ${iso(grant.startsAt)} – ${iso(grant.expiresAt)} (${grant.state}${grant.endedAt ? ` at ${iso(grant.endedAt)}` : ""})`);
  const summary = session.summary;
  if (summary) {
    const parts = Object.entries(summary)
      .filter(([key]) => key !== "recordingId")
      .map(([key, value]) => `${key} ${typeof value === "object" && value !== null ? Object.entries(value).map(([k, v]) => `${k}=${String(v)}`).join(",") : String(value)}`);
    out.push(`  summary   ${parts.join("; ")}`);
  }
  const held = new Map(evidence.held.map((h) => [h.id, h]));
  const results = new Map(evidence.results.map((r) => [r.seq, r]));
  if (session.protocol === "postgres" || evidence.statements.length > 0) {
    const statements = only === undefined ? evidence.statements : evidence.statements.filter((s) => s.seq === only);
    out.push("", only === undefined ? `Statements (${statements.length})` : `Statement ${only}`);
    if (statements.length === 0) out.push(only === undefined ? "  none recorded" : `  session ${session.id} has no statement ${only}`);
    for (const row of statements) {
      const outcome = [
        `${row.verdict}${row.rule ? ` (${row.rule})` : ""}`,
        row.kind,
        row.durationMs !== null ? `${row.durationMs} ms` : undefined,
        row.rows !== null ? `${row.rows} row${row.rows === 1 ? "" : "s"}` : undefined,
        row.commandTag ?? undefined,
      ].filter(Boolean);
      out.push(`  #${row.seq}  ${iso(row.startedAt)}  ${outcome.join("  ")}`);
      out.push(indent(row.text));
      if (row.parameters && row.parameters.length > 0) out.push(indent(`parameters: ${row.parameters.map((p, i) => `$${i + 1}=${p === null ? "NULL" : p}`).join(", ")}`));
      if (row.heldId) {
        const h = held.get(row.heldId);
        out.push(`      held ${row.heldId}: ${h ? `${h.state}${h.decidedByName ? ` by ${visibleText(h.decidedByName)}` : ""}${h.decidedAt ? ` at ${iso(h.decidedAt)}` : ""}` : "unknown"}`);
      }
      if (row.error) out.push(indent(`error: ${row.error}`));
      const result = results.get(row.seq);
      if (result) out.push(...resultText(result));
    }
  }
  if (only === undefined) {
    if (evidence.recordings.length > 0 || session.protocol === "ssh") {
      out.push("", `Recordings (${evidence.recordings.length})`);
      if (evidence.recordings.length === 0) out.push("  none");
      for (const r of evidence.recordings) {
        out.push(`  channel ${r.channel}  ${r.kind}${r.title ? ` ${visibleText(r.title)}` : ""}  ${iso(r.createdAt)}${r.truncated ? "  cut short at the size limit" : ""}  (jitgate replay ${session.id} --channel ${r.channel})`);
      }
    }
    out.push("", `Events (${evidence.events.length})`);
    for (const event of evidence.events) {
      const data = Object.keys(event.data).length > 0 ? `  ${visibleText(canonicalJson(event.data))}` : "";
      out.push(`  #${event.seq}  ${iso(event.at)}  ${event.kind}  ${visibleText(who(event))}${data}`);
    }
  }
  return `${out.join("\n")}\n`;
}

/** The same as JSON lines: `session` first, then each `statement`, `held`, `recording` and `event`. */
export function sessionTimelineJson(evidence: SessionEvidence, only?: number): string {
  const { statements, held, recordings, events, results, moreStatements: _more, ...facts } = evidence;
  const chosen = only === undefined ? statements : statements.filter((s) => s.seq === only);
  const heldIds = new Set(chosen.map((s) => s.heldId).filter(Boolean));
  const lines: unknown[] = [
    { type: "session", ...facts },
    ...chosen.map((s) => ({ type: "statement", ...s })),
    ...results.filter((r) => only === undefined || r.seq === only).map((r) => ({ type: "result", ...r })),
    ...held.filter((h) => only === undefined || heldIds.has(h.id)).map((h) => ({ type: "held", ...h })),
    ...(only === undefined ? recordings.map((r) => ({ type: "recording", ...r })) : []),
    ...(only === undefined ? events.map((e) => ({ type: "event", ...e })) : []),
  ];
  return lines.map((line) => `${JSON.stringify(line)}\n`).join("");
}
