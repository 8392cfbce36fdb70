import { formatDuration } from "../config/duration.js";
import { SHELL_CHECKS, type SessionSummary } from "../broker/index.js";
import type { Inbox, InboxItem } from "../broker/index.js";
import type { GrantStateRecord, HeldStateRecord, RequestStateRecord } from "../broker/thread-state.js";

/**
 * Platform-neutral views of what the gateway shows in chat. Every string is plain text: renderers
 * (Block Kit, Adaptive Cards) escape it, so a reason like `<!channel>` stays text.
 */

export type Tone = "pending" | "good" | "bad" | "neutral";

/** What a button does; renderers turn it into the platform's action id. */
export type ActionKind =
  | "approve"
  | "deny"
  | "extend"
  | "revoke"
  | "approve-statement"
  | "deny-statement"
  | "acknowledge-break-glass"
  | "flag-break-glass";

export interface ButtonView {
  action: ActionKind;
  label: string;
  /** The request or grant id the action is about. */
  value: string;
  style?: "primary" | "danger";
}

export interface MessageView {
  /** A one-line summary: the notification text, and the whole message where rich text is not shown. */
  text: string;
  title?: string;
  status?: { text: string; tone: Tone };
  fields?: { label: string; value: string }[];
  lines?: string[];
  /** Preformatted text, ready to copy (the connection line), or a statement exactly as it would run. */
  code?: string;
  /**
   * Where the whole of `code` can be read when a platform cannot show all of it in one message:
   * renderers that cut `code` say so and link here (render/excerpt.ts).
   */
  fullText?: FullTextSource;
  buttons?: ButtonView[];
  /**
   * The person this message addresses, by their id on the platform it goes to: renderers put the
   * platform's mention (Slack `<@U…>`, Teams `<at>name</at>` with its mention entity) before the text.
   */
  mention?: { user: string; name: string };
  /** A loud message (break-glass): renderers notify the whole channel (Slack `<!here>`). */
  alert?: boolean;
  /**
   * Entries listed under the message, each with its own buttons (the approver's inbox): renderers
   * show them compactly, after the lines, in order.
   */
  items?: MessageView[];
  /** Where the thread of this entry is (an inbox item): renderers point or link to it. */
  thread?: ThreadPointer;
}

/** An inbox item's message in chat: the request whose thread it is, and its message where known. */
export interface ThreadPointer {
  requestId: string;
  channel?: string;
  messageId?: string;
}

/** Where the whole of a view's `code` can be read. */
export interface FullTextSource {
  /** A page of the gateway (a held statement's audit page), when there is one. */
  url: string | null;
  /** What names it in the audit log when there is no page to link (`held hld_…`). */
  reference: string;
}

/**
 * A request, its grant and a held statement as the thread shows them: the broker's read models
 * (broker/thread-state.ts), read from the database at render time.
 */
export type RequestState = RequestStateRecord;
export type GrantState = GrantStateRecord;
export type HeldState = HeldStateRecord;

const plural = (count: number, word: string) => `${count} ${word}${count === 1 ? "" : "s"}`;

/** `zone` when the runtime knows it as an IANA time zone, else UTC (a chat platform may send anything). */
export function knownTimeZone(zone: string | null | undefined): string {
  if (!zone) return "UTC";
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return zone;
  } catch {
    return "UTC";
  }
}

/**
 * `14:32 UTC`, or `15:32 Europe/Berlin` in another zone (named, so nobody has to guess), with the
 * date in front when it is not the same day as `now` in that zone.
 */
export function formatTime(at: Date, now: Date = new Date(), timeZone = "UTC"): string {
  const zone = knownTimeZone(timeZone);
  // en-CA writes dates as 2026-11-22; en-GB with h23 writes 09:05.
  const day = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" });
  const time = `${new Intl.DateTimeFormat("en-GB", { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(at)} ${zone}`;
  return day.format(at) === day.format(now) ? time : `${day.format(at)} ${time}`;
}

/** The status line of a request's root message: the one place that says where it stands. */
export function requestStatus(request: RequestState, now: Date = new Date()): { text: string; tone: Tone } {
  const grant = request.grant;
  if (request.breakGlass) {
    const review =
      request.breakGlass.state === "open"
        ? "review pending"
        : `${request.breakGlass.state === "flagged" ? "🚩 flagged as misuse" : "acknowledged"}${request.breakGlass.reviewerName ? ` by ${request.breakGlass.reviewerName}` : ""}`;
    if (!grant) return { text: `🚨 Break-glass, no approval; ${review}`, tone: "bad" };
    const live = grantStatus(grant, now, "🚨 Break-glass, no approval, ");
    return { text: `${live.text}; ${review}`, tone: "bad" };
  }
  if (request.state === "approved" && request.kind === "access" && !grant && request.startsAt) {
    const by = request.approvedBy.length > 0 ? ` by ${request.approvedBy.join(", ")}` : "";
    const end = new Date(request.startsAt.getTime() + request.durationMs);
    return { text: `🗓 Scheduled: approved${by}, access from ${formatTime(request.startsAt, now)} to ${formatTime(end, now)}`, tone: "good" };
  }
  switch (request.state) {
    case "pending":
      if (request.approvedBy.length === 0) {
        return { text: `⏳ Pending: needs ${plural(request.approvalsRequired, "approval")}`, tone: "pending" };
      }
      return {
        text: `⏳ Approved by ${request.approvedBy.join(", ")} (${request.approvedBy.length} of ${request.approvalsRequired})`,
        tone: "pending",
      };
    case "denied": {
      const by = request.deniedBy;
      return { text: `❌ Denied${by ? ` by ${by.name}` : ""}${by?.reason ? `: ${by.reason}` : ""}`, tone: "bad" };
    }
    case "expired":
      return { text: "⌛ Expired: no decision in time", tone: "neutral" };
    case "cancelled":
      return { text: "Cancelled", tone: "neutral" };
    case "approved": {
      const by = request.approvedBy.length > 0 ? ` by ${request.approvedBy.join(", ")}` : "";
      if (request.kind === "extension") {
        const until = grant && grant.state === "active" ? `; access now expires ${formatTime(grant.expiresAt, now)}` : "";
        return { text: `✅ Extension approved${by}${until}`, tone: "good" };
      }
      if (!grant) return { text: `✅ Approved${by}`, tone: "good" };
      return grantStatus(grant, now, `✅ Approved${by}, `);
    }
    default:
      return { text: request.state, tone: "neutral" };
  }
}

function grantStatus(grant: GrantState, now: Date, activePrefix: string): { text: string; tone: Tone } {
  if (grant.state === "revoked") {
    return {
      text: `⛔ Revoked${grant.endedByName ? ` by ${grant.endedByName}` : ""}${grant.reason ? `: ${grant.reason}` : ""}`,
      tone: "bad",
    };
  }
  if (grant.state === "expired" || grant.expiresAt.getTime() <= now.getTime()) {
    return { text: `⌛ Expired at ${formatTime(grant.expiresAt, now)}`, tone: "neutral" };
  }
  return { text: `${activePrefix}expires ${formatTime(grant.expiresAt, now)}`, tone: "good" };
}

/** The approval message: what is asked, by whom, where it stands, and the buttons while it is open. */
export function requestView(request: RequestState, now: Date = new Date()): MessageView {
  const status = requestStatus(request, now);
  const extension = request.kind === "extension";
  const what = extension ? `${formatDuration(request.durationMs)} more` : formatDuration(request.durationMs);
  const loud = request.breakGlass !== null;
  const view: MessageView = {
    ...(loud ? { alert: true } : {}),
    text: loud
      ? `🚨 BREAK-GLASS: ${request.requesterName} took ${request.target} for ${what} without approval — ${status.text}`
      : `${extension ? "Extension" : "Access"} request from ${request.requesterName}: ${request.target} for ${what} — ${status.text}`,
    title: loud ? `🚨 Break-glass access: ${request.target}` : `${extension ? "Extension request" : "Access request"}: ${request.target}`,
    status,
    fields: [
      { label: "Target", value: request.target },
      { label: "Requester", value: request.requesterName },
      { label: extension ? "More time" : "Duration", value: formatDuration(request.durationMs) },
      ...(request.startsAt ? [{ label: "Starts", value: formatTime(request.startsAt, now) }] : []),
      ...(request.once ? [{ label: "Ends", value: "with its first session" }] : []),
      { label: "Reason", value: request.reason },
      { label: "Request", value: request.id },
      ...(extension && request.grant ? [{ label: "Grant", value: request.grant.id }] : []),
    ],
  };
  if (request.state === "pending") {
    view.buttons = [
      { action: "approve", label: "Approve", value: request.id, style: "primary" },
      { action: "deny", label: "Deny", value: request.id, style: "danger" },
    ];
  }
  return view;
}

/** The thread's card for a live grant: until when, and Extend / Revoke while it lasts. */
export function grantCardView(grant: GrantState, now: Date = new Date()): MessageView {
  const status = grantStatus(grant, now, "🔓 Live, ");
  const live = grant.state === "active" && grant.expiresAt.getTime() > now.getTime();
  const view: MessageView = {
    text: live
      ? `🔓 Access to ${grant.target} granted to ${grant.holderName} until ${formatTime(grant.expiresAt, now)} (grant ${grant.id})`
      : `${status.text} (grant ${grant.id})`,
    status,
    fields: [
      { label: "Holder", value: grant.holderName },
      { label: "Grant", value: grant.id },
    ],
  };
  if (live) {
    view.buttons = [
      { action: "extend", label: "Extend", value: grant.id },
      { action: "revoke", label: "Revoke", value: grant.id, style: "danger" },
    ];
  }
  return view;
}

/** A break-glass use as its Review card shows it (`BreakGlassSnapshot` with dates). */
export interface BreakGlassState {
  id: string;
  /** The request whose thread holds the card (its buttons carry it: one review per request). */
  requestId: string;
  target: string;
  requesterName: string;
  reason: string;
  grantId: string;
  state: "open" | "acknowledged" | "flagged";
  createdAt: Date;
  reviewerName: string | null;
}

/** A review's event snapshot (ISO times) as the views take it. */
export function breakGlassState(snapshot: {
  id: string;
  requestId: string;
  grantId: string;
  target: string;
  requesterName: string;
  reason: string;
  state: "open" | "acknowledged" | "flagged";
  createdAt: string;
  reviewerName: string | null;
}): BreakGlassState {
  return {
    id: snapshot.id,
    requestId: snapshot.requestId,
    target: snapshot.target,
    requesterName: snapshot.requesterName,
    reason: snapshot.reason,
    grantId: snapshot.grantId,
    state: snapshot.state,
    createdAt: new Date(snapshot.createdAt),
    reviewerName: snapshot.reviewerName,
  };
}

/** The Review card in a break-glass thread: open (with its buttons) until an approver reviews it. */
export function reviewCardView(review: BreakGlassState, now: Date = new Date()): MessageView {
  const status: { text: string; tone: Tone } =
    review.state === "open"
      ? { text: `🔎 Review needed: an approver of ${review.target} (not ${review.requesterName}) acknowledges or flags this use`, tone: "pending" }
      : review.state === "acknowledged"
        ? { text: `✅ Acknowledged${review.reviewerName ? ` by ${review.reviewerName}` : ""}`, tone: "good" }
        : { text: `🚩 Flagged as misuse${review.reviewerName ? ` by ${review.reviewerName}` : ""}`, tone: "bad" };
  const view: MessageView = {
    text: `🔎 Review of ${review.requesterName}'s break-glass on ${review.target} (${review.id}) — ${status.text}`,
    title: `Review: break-glass on ${review.target}`,
    status,
    fields: [
      { label: "Who", value: review.requesterName },
      { label: "When", value: formatTime(review.createdAt, now) },
      { label: "Reason", value: review.reason },
      { label: "Grant", value: review.grantId },
      { label: "Review", value: review.id },
    ],
  };
  if (review.state === "open") {
    view.buttons = [
      { action: "acknowledge-break-glass", label: "Acknowledge", value: review.requestId, style: "primary" },
      { action: "flag-break-glass", label: "Flag as misuse", value: review.requestId, style: "danger" },
    ];
  }
  return view;
}

/** The loud message to `breakGlass.alertChannel`. */
export function breakGlassAlertView(review: BreakGlassState, now: Date = new Date()): MessageView {
  return {
    alert: true,
    text: `🚨 BREAK-GLASS: ${review.requesterName} took ${review.target} without approval at ${formatTime(review.createdAt, now)}: ${review.reason} (grant ${review.grantId}, review ${review.id})`,
    title: `🚨 Break-glass access: ${review.target}`,
    fields: [
      { label: "Who", value: review.requesterName },
      { label: "Reason", value: review.reason },
      { label: "Grant", value: review.grantId },
      { label: "Review", value: review.id },
    ],
  };
}

/** The daily reminder of a review still open, in its thread. */
export function reviewReminderView(review: BreakGlassState, now: Date = new Date()): MessageView {
  const days = Math.max(1, Math.floor((now.getTime() - review.createdAt.getTime()) / 86_400_000));
  return {
    text: `⏰ ${review.requesterName}'s break-glass on ${review.target} (${review.id}) is still not reviewed after ${plural(days, "day")}: an approver, please Acknowledge or Flag it`,
  };
}

// ------------------------------------------------------------------ thread replies (one per event)

export function decisionReply(input: {
  approverName: string;
  verdict: "approve" | "deny";
  reason: string | null;
  approvals: number;
  required: number;
}): MessageView {
  if (input.verdict === "deny") {
    return { text: `❌ Denied by ${input.approverName}${input.reason ? `: ${input.reason}` : ""}` };
  }
  return { text: `✅ Approved by ${input.approverName} (${input.approvals} of ${input.required})` };
}

export function extensionRequestedReply(input: { requesterName: string; durationMs: number; requestId: string }): MessageView {
  return {
    text: `⏩ ${input.requesterName} asks for ${formatDuration(input.durationMs)} more (request ${input.requestId})`,
  };
}

export function requestExpiredReply(): MessageView {
  return { text: "⌛ The request expired without a decision" };
}

export function grantExtendedReply(input: { byName: string; expiresAt: Date }, now: Date = new Date()): MessageView {
  return { text: `⏩ Extended by ${input.byName}: access now expires ${formatTime(input.expiresAt, now)}` };
}

export function grantRevokedReply(input: { byName: string; reason: string | null }): MessageView {
  return { text: `⛔ Revoked by ${input.byName}${input.reason ? `: ${input.reason}` : ""}` };
}

export function grantExpiredReply(input: { expiresAt: Date }, now: Date = new Date()): MessageView {
  return { text: `⌛ Access expired at ${formatTime(input.expiresAt, now)}` };
}

/**
 * The requester's DM on approval. It holds the grant's secret: it is built in the replica that
 * handled the approval, sealed in the outbox, and never logged.
 */
export function connectionView(input: { target: string; grantId: string; line: string; expiresAt: Date }, now: Date = new Date(), timeZone = "UTC"): MessageView {
  const until = formatTime(input.expiresAt, now, timeZone);
  return {
    text: `Your access to ${input.target} is approved until ${until}`,
    title: `Access to ${input.target} approved`,
    lines: [`Connect with the line below. It works only for this grant and stops working at ${until}.`],
    code: input.line,
    fields: [
      { label: "Expires", value: until },
      { label: "Grant", value: input.grantId },
    ],
  };
}

/**
 * The held statement in the request's thread: what it is, exactly, and Approve / Deny while it
 * waits. The text is the view's `code`; a platform that cannot show all of it shows its start and
 * end, says so, and links `fullText` (its audit page).
 */
export function heldView(held: HeldState, now: Date = new Date()): MessageView {
  const quorum = held.approvalsRequired > 1;
  const approvedBy = held.approvedBy.length > 0 ? ` by ${held.approvedBy.join(", ")}` : held.decidedByName ? ` by ${held.decidedByName}` : "";
  const status: { text: string; tone: Tone } =
    held.state === "held"
      ? {
          text:
            (held.approvedBy.length > 0 ? `⏸ Approved${approvedBy} (${held.approvedBy.length} of ${held.approvalsRequired}); ` : "⏸ ") +
            `${held.approvedBy.length > 0 ? "w" : "W"}aiting for ${quorum ? `${plural(held.approvalsRequired - held.approvedBy.length, "more approval")}` : "approval"} until ${formatTime(held.timeoutAt, now)}`,
          tone: "pending",
        }
      : held.state === "approved"
        ? { text: `✅ Approved${approvedBy}: it ran`, tone: "good" }
        : held.state === "denied"
          ? { text: `❌ Denied${held.decidedByName ? ` by ${held.decidedByName}` : ""}: it did not run`, tone: "bad" }
          : { text: "⌛ Expired without a decision: it did not run", tone: "neutral" };
  const view: MessageView = {
    text: `⏸ ${held.personName} wants to run on ${held.target} (rule ${held.rule}) — ${status.text}`,
    title: `Held on ${held.target}: ${held.personName} wants to run`,
    code: held.text,
    fullText: { url: held.fullTextUrl, reference: `held ${held.id}` },
    fields: [
      { label: "Rule", value: held.rule },
      { label: "Held", value: held.id },
      ...(quorum ? [{ label: "Approvals needed", value: String(held.approvalsRequired) }] : []),
    ],
    status,
  };
  if (held.state === "held") {
    view.buttons = [
      { action: "approve-statement", label: "Approve", value: held.id, style: "primary" },
      { action: "deny-statement", label: "Deny", value: held.id, style: "danger" },
    ];
  }
  return view;
}

export function blockedReply(input: { personName: string; target: string; text: string; rule: string }): MessageView {
  return {
    text: `⛔ Blocked on ${input.target}: ${input.personName} tried a statement that rule ${input.rule} forbids`,
    code: input.text,
  };
}

/** An auditor viewed the sealed originals of one statement's results (issue 16): said in the request's thread. */
export function resultsRevealedReply(input: { byName: string; seq: number; sessionId: string; reason: string }): MessageView {
  return {
    text: `🔓 An auditor (${input.byName}) viewed the unmasked results of statement ${input.seq} of session ${input.sessionId}. Reason: ${input.reason}`,
  };
}

/** An interactive shell started under a grant: said in the thread, because its commands are only checked best-effort. */
export function shellStartedReply(input: { personName: string; target: string; text: string }): MessageView {
  return {
    text: `🐚 ${input.personName} started an interactive shell on ${input.target}: ${SHELL_CHECKS}. jitgate records every keystroke and checks each typed line, but a shell can run what no line shows.`,
    code: input.text,
  };
}

// ------------------------------------------------------------------ the approver's inbox

/**
 * One entry of the inbox: what waits, since when, and the very buttons its thread message carries
 * (same actions, same values), so a click here does what it does there.
 */
export function inboxItemView(item: InboxItem, now: Date = new Date(), timeZone = "UTC"): MessageView {
  const since = `waiting since ${formatTime(item.createdAt, now, timeZone)}`;
  const thread: ThreadPointer = {
    requestId: item.threadRequestId,
    ...(item.thread ? { channel: item.thread.channel, messageId: item.thread.messageId } : {}),
  };
  switch (item.kind) {
    case "request": {
      const quorum = item.approvalsRequired > 1 ? `, ${item.approvals} of ${item.approvalsRequired} approvals` : "";
      const text =
        item.requestKind === "extension"
          ? `⏩ Extension request ${item.id}: ${item.requesterName} asks for ${formatDuration(item.durationMs)} more on ${item.target}${item.grantId ? ` (grant ${item.grantId})` : ""} — ${item.reason} (${since}${quorum})`
          : `⏳ Access request ${item.id}: ${item.requesterName} → ${item.target} for ${formatDuration(item.durationMs)}${item.startsAt ? ` from ${formatTime(item.startsAt, now, timeZone)}` : ""}${item.once ? ", ending with its first session" : ""} — ${item.reason} (${since}${quorum})`;
      return {
        text,
        thread,
        buttons: [
          { action: "approve", label: "Approve", value: item.id, style: "primary" },
          { action: "deny", label: "Deny", value: item.id, style: "danger" },
        ],
      };
    }
    case "held": {
      const quorum = item.approvalsRequired > 1 ? `, ${item.approvals} of ${item.approvalsRequired} approvals` : "";
      return {
        text: `⏸ Held ${item.id} on ${item.target}: ${item.personName} wants to run (rule ${item.rule}); decide before ${formatTime(item.timeoutAt, now, timeZone)} (${since}${quorum})`,
        code: item.text,
        fullText: { url: item.fullTextUrl, reference: `held ${item.id}` },
        thread,
        buttons: [
          { action: "approve-statement", label: "Approve", value: item.id, style: "primary" },
          { action: "deny-statement", label: "Deny", value: item.id, style: "danger" },
        ],
      };
    }
    case "break-glass":
      return {
        text: `🚨 Break-glass ${item.id} to review: ${item.requesterName} took ${item.target} without approval — ${item.reason} (grant ${item.grantId}; ${since})`,
        thread,
        // As on the Review card: one review per request, its buttons carry the request id.
        buttons: [
          { action: "acknowledge-break-glass", label: "Acknowledge", value: item.requestId, style: "primary" },
          { action: "flag-break-glass", label: "Flag as misuse", value: item.requestId, style: "danger" },
        ],
      };
  }
}

/** `pending`: the approver's inbox, oldest first, capped (saying how many more wait). */
export function inboxView(inbox: Inbox, now: Date = new Date(), timeZone = "UTC"): MessageView {
  if (inbox.items.length === 0) {
    return noticeView("Nothing waits for you: no requests, extensions, held statements or break-glass reviews for you to decide.");
  }
  const more = inbox.total - inbox.items.length;
  const text =
    more > 0
      ? `${plural(inbox.total, "item")} wait for you; the oldest ${inbox.items.length} first (${more} more not shown: decide these, or find them in the approval channel):`
      : `${plural(inbox.total, "item")} ${inbox.total === 1 ? "waits" : "wait"} for you, oldest first:`;
  return { text, items: inbox.items.map((item) => inboxItemView(item, now, timeZone)) };
}

/** A short reply to the person who acted (an ephemeral message). */
export function noticeView(text: string, lines: string[] = []): MessageView {
  return lines.length > 0 ? { text, lines } : { text };
}

// ------------------------------------------------------------------ reminders, summaries, digest

/**
 * `reminderBefore` ahead of expiry: a thread reply to the holder, in their time zone, with the grant
 * card's Extend button. One per grant: an extension redraws it, and so does the grant's end.
 */
export function reminderView(grant: GrantState, mention: { user: string; name: string } | undefined, now: Date = new Date(), timeZone = "UTC"): MessageView {
  if (grant.state !== "active" || grant.expiresAt.getTime() <= now.getTime()) {
    const at = grant.endedAt ?? grant.expiresAt;
    return {
      text: `⌛ ${grant.holderName}, your access to ${grant.target} ended at ${formatTime(at, now, timeZone)}`,
      fields: [{ label: "Grant", value: grant.id }],
      ...(mention ? { mention } : {}),
    };
  }
  const left = formatDuration(Math.max(0, grant.expiresAt.getTime() - now.getTime()));
  return {
    text: `⏰ ${grant.holderName}, your access to ${grant.target} ends at ${formatTime(grant.expiresAt, now, timeZone)} (in ${left})`,
    fields: [{ label: "Grant", value: grant.id }],
    buttons: [{ action: "extend", label: "Extend", value: grant.id }],
    ...(mention ? { mention } : {}),
  };
}

/** What a closed session's summary shows (DESIGN.md path 5). */
export type SessionSummaryState = Omit<SessionSummary, "bytesIn" | "bytesOut"> & {
  sessionId: string;
  personName: string;
  target: string;
  protocol: "postgres" | "ssh";
};

export function sessionSummaryView(summary: SessionSummaryState): MessageView {
  const unit = summary.protocol === "ssh" ? "command" : "statement";
  const kinds = Object.entries(summary.statementsByKind).sort(([a, x], [b, y]) => y - x || a.localeCompare(b));
  const statements = kinds.reduce((sum, [, n]) => sum + n, 0);
  const byKind = kinds.length > 0 ? ` (${kinds.map(([kind, n]) => `${kind} ${n}`).join(", ")})` : "";
  return {
    text: `📋 Session of ${summary.personName} on ${summary.target} closed after ${formatDuration(summary.durationMs)}: ${plural(statements, unit)}, ${summary.blocked} blocked, ${summary.held} held`,
    title: `Session summary: ${summary.personName} on ${summary.target}`,
    fields: [
      { label: "Who", value: summary.personName },
      { label: "Target", value: summary.target },
      { label: "Duration", value: formatDuration(summary.durationMs) },
      { label: `${unit[0]!.toUpperCase()}${unit.slice(1)}s`, value: `${statements}${byKind}` },
      ...(summary.protocol === "postgres"
        ? [
            { label: "Rows", value: `${summary.rowsReturned} returned, ${summary.rowsAffected} affected` },
            { label: "Values masked", value: String(summary.valuesMasked) },
          ]
        : []),
      { label: "Blocked / held / approved", value: `${summary.blocked} / ${summary.held} / ${summary.approved}` },
      { label: "Ended", value: summary.endReason },
      { label: "Recording", value: summary.recordingId },
    ],
  };
}

/** The daily digest as a chat message: figures in fields, rankings and the longest grant in lines. */
export interface DigestState {
  since: Date;
  until: Date;
  requests: { total: number; extensions: number; byOutcome: Record<"approved" | "denied" | "expired" | "cancelled" | "pending", number> };
  grants: { issued: number; grantedMs: number; revoked: number };
  sessions: { total: number; postgres: number; ssh: number };
  topTargets: { name: string; count: number }[];
  topRequesters: { name: string; count: number }[];
  statements: { blocked: number; held: number; approved: number; denied: number; timedOut: number };
  pending: { count: number; oldest: { id: string; target: string; requesterName: string; createdAt: Date }[] };
  longestGrant: { id: string; target: string; holderName: string; grantedMs: number } | null;
  /** Break-glass uses not reviewed at the window's end, whenever they were made. */
  breakGlassUnreviewed?: { id: string; target: string; requesterName: string; createdAt: Date }[];
}

const hours = (ms: number) => `${(ms / 3_600_000).toFixed(1)} h`;

/** The digest, its times in `timeZone` (`digest.timezone`, the zone its cron runs in). */
export function digestView(digest: DigestState, timeZone = "UTC"): MessageView {
  const { requests, grants, sessions, statements, pending } = digest;
  const o = requests.byOutcome;
  const ranking = (list: { name: string; count: number }[]) =>
    list.length > 0 ? list.map((r) => `${r.name} (${r.count})`).join(", ") : "none";
  const window = `${formatTime(digest.since, digest.since, timeZone)} – ${formatTime(digest.until, digest.since, timeZone)}`;
  return {
    text: `📊 jitgate digest ${window}: ${plural(requests.total, "request")}, ${plural(grants.issued, "grant")} (${hours(grants.grantedMs)}), ${plural(sessions.total, "session")}, ${pending.count} pending`,
    title: `jitgate digest: ${window}`,
    fields: [
      {
        label: "Requests",
        value: `${requests.total}: ${o.approved} approved, ${o.denied} denied, ${o.expired} expired, ${o.pending} pending${o.cancelled > 0 ? `, ${o.cancelled} cancelled` : ""}${requests.extensions > 0 ? ` (${plural(requests.extensions, "extension")})` : ""}`,
      },
      { label: "Grants", value: `${grants.issued}, ${hours(grants.grantedMs)} in total${grants.revoked > 0 ? `, ${grants.revoked} revoked` : ""}` },
      { label: "Sessions", value: `${sessions.total} (${sessions.postgres} postgres, ${sessions.ssh} ssh)` },
      { label: "Blocked", value: String(statements.blocked) },
      {
        label: "Held",
        value: `${statements.held}: ${statements.approved} approved, ${statements.denied} denied, ${statements.timedOut} expired`,
      },
      { label: "Still pending", value: String(pending.count) },
      ...((digest.breakGlassUnreviewed ?? []).length > 0 ? [{ label: "Break-glass to review", value: String(digest.breakGlassUnreviewed!.length) }] : []),
    ],
    lines: [
      `Top targets: ${ranking(digest.topTargets)}`,
      `Top requesters: ${ranking(digest.topRequesters)}`,
      `Longest grant: ${digest.longestGrant ? `${digest.longestGrant.holderName} on ${digest.longestGrant.target}, ${hours(digest.longestGrant.grantedMs)} (${digest.longestGrant.id})` : "none"}`,
      ...pending.oldest.map((r) => `Pending since ${formatTime(r.createdAt, digest.until, timeZone)}: ${r.requesterName} → ${r.target} (${r.id})`),
      ...(digest.breakGlassUnreviewed ?? []).map(
        (r) => `🚨 Break-glass not reviewed, since ${formatTime(r.createdAt, digest.until, timeZone)}: ${r.requesterName} on ${r.target} (${r.id})`,
      ),
    ],
  };
}

/** A view as plain text, for a terminal (`jitgate digest --dry-run`). */
export function viewToPlainText(view: MessageView): string {
  const out = [view.title ?? view.text];
  for (const field of view.fields ?? []) out.push(`  ${field.label}: ${field.value}`);
  for (const line of view.lines ?? []) out.push(`  ${line}`);
  if (view.code !== undefined) out.push(view.code);
  if (view.status) out.push(view.status.text);
  return out.join("\n");
}

/**
 * The thread's note on auto-approval: the rule that approved and the facts it used, the sign-in it
 * waits for (stepUp targets), or why a rule could not apply (an on-call provider failed).
 */
export function autoApprovalReply(input: { outcome: "approved" | "awaiting-sign-in" | "not-applied"; rule: string | null; facts: string[]; notes: string[] }): MessageView {
  if (input.outcome === "approved") {
    return { text: `🤖 Approved by rule ${input.rule}`, lines: input.facts };
  }
  if (input.outcome === "awaiting-sign-in") {
    return { text: `🤖 Rule ${input.rule} applies; it approves once the requester signs in again (stepUp target). An approver may still decide.`, lines: input.facts };
  }
  return { text: "No auto-approval: an on-call provider gave no answer, so the request waits for an approver.", lines: input.notes };
}
