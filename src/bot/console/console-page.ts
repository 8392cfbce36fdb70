import type { ConsoleViewer } from "../../infra/web/console-auth.js";
import { html, page, raw, type Html } from "../../infra/web/html.js";
import { messageHtml, type HtmlFormOptions } from "../render/html.js";
import type { MessageView } from "../view-model.js";
import type { ConsoleMessage, ConsoleThread } from "./console-port.js";

export const CONSOLE_PATH = "/console";
export const COMMAND_PATH = "/console/command";
export const ACTION_PATH = "/console/action";
export const EVENTS_PATH = "/console/events";
export const ASSETS_PREFIX = "/console/assets/";
/** The approver's inbox: what waits for the viewer's decision (`/access pending`), with its buttons. */
export const PENDING_PATH = "/console/pending";

/** The console's anchor of a thread message (its messages are `m-<id>` on the page). */
export const consoleThreadHref = (thread: NonNullable<MessageView["thread"]>) =>
  thread.messageId ? `${CONSOLE_PATH}#m-${encodeURIComponent(thread.messageId)}` : undefined;

export interface ConsolePageInput {
  viewer: ConsoleViewer;
  channel: string;
  threads: ConsoleThread[];
  dms: ConsoleMessage[];
  notes: ConsoleMessage[];
  /** Hidden fields of every form (the CSRF token). */
  hidden: Record<string, string>;
  /** Where "switch" goes (the demo picker); none with an OIDC login. */
  switchHref?: string | undefined;
}

/** The example in the command box: the first command anyone types. */
export const COMMAND_EXAMPLE = "request demo 30m trying jitgate";

const domId = (message: ConsoleMessage) => `m-${message.id}`;

function threadHtml(thread: ConsoleThread, form: HtmlFormOptions): Html {
  const { root, replies } = thread;
  return html`<li class="thread">
${messageHtml(root.view, { id: domId(root), form, at: root.createdAt, className: "root" })}
${replies.length > 0 ? html`<ol class="replies" aria-label="Thread: ${replies.length} ${replies.length === 1 ? "reply" : "replies"}">${replies.map((reply) => html`<li>${messageHtml(reply.view, { id: domId(reply), form, at: reply.createdAt, className: "reply" })}</li>`)}</ol>` : ""}
</li>`;
}

/** The three parts a live update redraws; each has an id the page script swaps by. */
export function liveParts(input: ConsolePageInput): { notes: Html; dms: Html; channel: Html } {
  const form: HtmlFormOptions = { action: ACTION_PATH, hidden: input.hidden };
  const notes = html`<div id="live-notes" class="live" aria-live="polite">
${input.notes.length > 0
  ? html`<h2 class="small">Only visible to you</h2><ol class="notes">${input.notes.map((note, index) => html`<li>${messageHtml(note.view, { id: domId(note), at: note.createdAt, className: index === 0 ? "note latest" : "note", ...(note.view.items ? { form, threadHref: consoleThreadHref } : {}) })}</li>`)}</ol>`
  : ""}
</div><!-- /live-notes -->`;
  const dms = html`<div id="live-dms" class="live">
${input.dms.length > 0
  ? html`<ol class="dms">${input.dms.map((dm) => html`<li>${messageHtml(dm.view, { id: domId(dm), form, at: dm.createdAt, className: "dm" })}</li>`)}</ol>`
  : html`<p class="empty">No direct messages yet. When a request of yours is approved, the connection line arrives here.</p>`}
</div><!-- /live-dms -->`;
  const channel = html`<div id="live-channel" class="live">
${input.threads.length > 0
  ? html`<ol class="threads">${input.threads.map((thread) => threadHtml(thread, form))}</ol>`
  : html`<p class="empty">No requests yet. Type <code>${COMMAND_EXAMPLE}</code> in the command box.</p>`}
</div><!-- /live-channel -->`;
  return { notes, dms, channel };
}

/**
 * The console: a command box taking the `/access` words, what only the viewer sees (answers to
 * commands and clicks), their direct messages, and the approval channel with every request's
 * thread. Plain HTML with forms; /console/assets/console.js only makes it live.
 */
export function consolePage(input: ConsolePageInput): Html {
  const parts = liveParts(input);
  const body = html`<div class="console">
<section class="pane command-pane" aria-label="Commands and answers">
<form id="command" class="command" method="post" action="${COMMAND_PATH}">
${Object.entries(input.hidden).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`)}
<label id="command-label" for="command-text">Command <span class="hint">the words of <code>/access</code>: <code>request &lt;target&gt; &lt;duration&gt; &lt;reason&gt;</code>, <code>list</code>, <code>targets</code>, <code>help</code></span></label>
<div class="row"><input id="command-text" name="text" type="text" required autocomplete="off" spellcheck="false" maxlength="2000" placeholder="${COMMAND_EXAMPLE}"><button type="submit" class="btn primary">Send</button></div>
</form>
${parts.notes}
</section>
<section class="pane dm-pane" aria-labelledby="dm-title">
<h2 id="dm-title">Direct messages <span class="hint">to ${input.viewer.displayName}</span></h2>
${parts.dms}
</section>
<section class="pane channel-pane" aria-labelledby="channel-title">
<h1 id="channel-title"># ${input.channel} <a class="reload" href="${CONSOLE_PATH}">Reload</a> <a class="reload" href="${PENDING_PATH}">Waiting for me</a></h1>
${parts.channel}
</section>
</div>`;
  return page({
    title: `# ${input.channel}`,
    body,
    section: "console",
    viewer: { name: input.viewer.displayName, ...(input.switchHref ? { switchHref: input.switchHref } : {}) },
    head: raw(`<script src="${ASSETS_PREFIX}console.js" defer></script>`),
  });
}

export interface PendingPageInput {
  viewer: ConsoleViewer;
  /** The inbox (`inboxView`). */
  inbox: MessageView;
  /** The viewer's latest note: what their last click did. */
  notes: ConsoleMessage[];
  /** Hidden fields of every form (the CSRF token, and where to come back to). */
  hidden: Record<string, string>;
  switchHref?: string | undefined;
}

/**
 * The approver's inbox as a page: the same view `/access pending` answers with, its buttons posting
 * to the console's action path like every other button (CSRF-checked), and back here afterwards.
 */
export function pendingPage(input: PendingPageInput): Html {
  const form: HtmlFormOptions = { action: ACTION_PATH, hidden: input.hidden };
  const body = html`<div class="console pending">
<section class="pane" aria-labelledby="pending-title">
<h1 id="pending-title">Waiting for ${input.viewer.displayName} <a class="reload" href="${PENDING_PATH}">Reload</a> <a class="reload" href="${CONSOLE_PATH}">Console</a></h1>
${input.notes.map((note) => messageHtml(note.view, { id: domId(note), at: note.createdAt, className: "note latest" }))}
<div id="inbox">${messageHtml(input.inbox, { id: "inbox-list", form, threadHref: consoleThreadHref })}</div><!-- /inbox -->
</section>
</div>`;
  return page({
    title: `Waiting for ${input.viewer.displayName}`,
    body,
    section: "console",
    viewer: { name: input.viewer.displayName, ...(input.switchHref ? { switchHref: input.switchHref } : {}) },
  });
}
