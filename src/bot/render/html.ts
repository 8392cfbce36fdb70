import { html, type Html } from "../../infra/web/html.js";
import { countHidden, hiddenMarker, hiddenNotice, splitHidden } from "../../infra/visible-text.js";
import type { ButtonView, MessageView } from "../view-model.js";

/**
 * The view model as HTML, for the console (next to Block Kit and Adaptive Cards). Every string of
 * a view is text: the `html` template escapes it, so a reason like `<script>` stays text.
 *
 * Buttons are real `<button>`s, each in its own `<form method="post">`: keyboard reachable, and
 * they work without JavaScript. Deny carries an optional reason and Extend a duration, in the
 * same form (the console's counterpart of Slack's modals and Teams' card inputs).
 */
export interface HtmlFormOptions {
  /** Where the forms post (`/console/action`). */
  action: string;
  /** Hidden fields every form carries (the CSRF token). */
  hidden: Record<string, string>;
}

export interface HtmlMessageOptions {
  /** The message's id on the page: the anchor, and the prefix of its form ids (so focus can be kept across a refresh). */
  id: string;
  /** Without forms the buttons are not shown (a message seen by someone who cannot act, a read-only page). */
  form?: HtmlFormOptions | undefined;
  /** When the message was sent or last changed, shown small. */
  at?: Date | undefined;
  /** Extra class names (`reply`, `dm`, `note`). */
  className?: string | undefined;
  /** Where an inbox item's thread message is on this page, when it is on one (a local link). */
  threadHref?: ((thread: NonNullable<MessageView["thread"]>) => string | undefined) | undefined;
}

const BUTTON_LABEL_HINT: Partial<Record<ButtonView["action"], string>> = {
  deny: "Reason (optional)",
  extend: "How much longer",
};

function hiddenInputs(fields: Record<string, string>): Html[] {
  return Object.entries(fields).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`);
}

function buttonForm(button: ButtonView, form: HtmlFormOptions, messageId: string, titleId: string): Html {
  const formId = `${messageId}-${button.action}`;
  const style = button.style ? ` ${button.style}` : "";
  let input: Html | string = "";
  if (button.action === "deny") {
    input = html`<label class="visually-hidden" for="${formId}-reason">${BUTTON_LABEL_HINT.deny}</label><input id="${formId}-reason" name="reason" type="text" maxlength="500" autocomplete="off" placeholder="${BUTTON_LABEL_HINT.deny}">`;
  } else if (button.action === "extend") {
    input = html`<label class="visually-hidden" for="${formId}-duration">${BUTTON_LABEL_HINT.extend}</label><input id="${formId}-duration" name="duration" type="text" size="4" maxlength="12" required value="1h" title="A duration like 30m, 2h, 1d">`;
  }
  return html`<form id="${formId}" class="act" method="post" action="${form.action}">${hiddenInputs(form.hidden)}<input type="hidden" name="action" value="${button.action}"><input type="hidden" name="value" value="${button.value}">${input}<button type="submit" class="btn${style}" aria-describedby="${titleId}">${button.label}</button></form>`;
}

/**
 * Text with its http(s) URLs as links (a step-up approval's sign-in link, say). The text around
 * them stays escaped text; a URL is only linked when `URL` parses it as http or https.
 */
export function linkified(text: string): Html[] {
  const parts: Html[] = [];
  let last = 0;
  for (const match of text.matchAll(/https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)]/g)) {
    let href: string | undefined;
    try {
      href = new URL(match[0]).href;
    } catch {
      continue;
    }
    parts.push(html`${text.slice(last, match.index)}<a href="${href}">${match[0]}</a>`);
    last = match.index + match[0].length;
  }
  parts.push(html`${text.slice(last)}`);
  return parts;
}

/**
 * The code block: every character as text (escaped), and characters a reader cannot see (bidi
 * overrides, zero-width characters, controls) shown as marked `⟨U+…⟩`, with a note, so what an
 * approver reads is what would run.
 */
function codeHtml(code: string): Html {
  const hidden = countHidden(code);
  const parts = splitHidden(code).map((part) => (part.hidden ? html`<mark class="hidden-char" title="an invisible or direction-changing character">${hiddenMarker(part.text)}</mark>` : html`${part.text}`));
  return html`${hidden > 0 ? html`<p class="line">${hiddenNotice(hidden)}</p>` : ""}<pre class="code" tabindex="0" aria-label="Text to copy"><code>${parts}</code></pre>`;
}

/** One message: headline, status, fields, lines, the copyable code block, and its buttons. */
export function messageHtml(view: MessageView, options: HtmlMessageOptions): Html {
  const titleId = `${options.id}-title`;
  const tone = view.status ? ` tone-${view.status.tone}` : "";
  const mention = view.mention ? html`<strong class="mention">@${view.mention.name}</strong> ` : "";
  const headline = view.title ? html`<strong>${view.title}</strong>` : html`${linkified(view.text)}`;
  const buttons = options.form && view.buttons && view.buttons.length > 0 ? view.buttons : [];
  const form = options.form;
  return html`<article id="${options.id}" class="msg${options.className ? ` ${options.className}` : ""}${tone}">
<p class="headline" id="${titleId}">${mention}${headline}${options.at ? html` <time datetime="${options.at.toISOString()}">${options.at.toISOString().slice(11, 16)} UTC</time>` : ""}</p>
${view.status ? html`<p class="status">${view.status.text}</p>` : ""}
${view.fields && view.fields.length > 0 ? html`<dl class="fields">${view.fields.map((f) => html`<div><dt>${f.label}</dt><dd>${f.value}</dd></div>`)}</dl>` : ""}
${(view.lines ?? []).map((line) => html`<p class="line">${linkified(line)}</p>`)}
${view.code !== undefined ? codeHtml(view.code) : ""}
${threadHtml(view, options)}
${buttons.length > 0 && form ? html`<div class="actions">${buttons.map((b) => buttonForm(b, form, options.id, titleId))}</div>` : ""}
${view.items && view.items.length > 0 ? html`<ol class="items">${view.items.map((item, index) => html`<li>${messageHtml(item, { id: `${options.id}-i${index}`, form, threadHref: options.threadHref, className: "item" })}</li>`)}</ol>` : ""}
</article>`;
}

/** An inbox item's pointer to its thread: a link when the thread is on this page's site, else its request id. */
function threadHtml(view: MessageView, options: HtmlMessageOptions): Html | string {
  if (!view.thread) return "";
  const href = options.threadHref?.(view.thread);
  const label = `thread of request ${view.thread.requestId}`;
  return html`<p class="line thread">↳ ${href ? html`<a href="${href}">${label}</a>` : label}</p>`;
}

/** A view as one line of text, where there is no room for more (a page title, a notification). */
export function messageSummary(view: MessageView): string {
  return view.title ?? view.text;
}
