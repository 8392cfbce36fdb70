import type { ActionKind, ButtonView, MessageView, Tone } from "../view-model.js";
import { presentCode } from "./excerpt.js";

/**
 * Adaptive Cards from the same view model as Block Kit (https://adaptivecards.io/explorer/).
 * Buttons are Universal Actions (`Action.Execute`, schema 1.4): a click reaches the bot as an
 * `adaptiveCard/action` invoke and the bot answers with the card that clicker should see
 * (https://learn.microsoft.com/microsoftteams/platform/task-modules-and-cards/cards/universal-actions-for-adaptive-cards/overview).
 */

export const ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive";

/** The verbs of `Action.Execute`: the view model's actions, plus the two steps that ask for input. */
export type CardVerb = ActionKind | "refresh" | "deny-confirm" | "extend-confirm";

/** What a card is about, so a refresh or a click knows what to redraw. */
export type CardSubject = "request" | "grant" | "held" | "review";

/** The `data` of every jitgate `Action.Execute`; input values (a reason) are merged into it by the client. */
export interface CardActionData {
  jitgate: 1;
  subject: CardSubject;
  id: string;
  reason?: string;
  duration?: string;
}

export function subjectOf(action: ActionKind): CardSubject {
  switch (action) {
    case "approve":
    case "deny":
      return "request";
    // A break-glass review is one per request: its buttons carry the request id.
    case "acknowledge-break-glass":
    case "flag-break-glass":
      return "review";
    case "extend":
    case "revoke":
      return "grant";
    case "approve-statement":
    case "deny-statement":
      return "held";
  }
}

export type AdaptiveCard = Record<string, unknown> & { type: "AdaptiveCard"; body: Record<string, unknown>[] };

const TONE_COLOR: Record<Tone, string> = { pending: "Warning", good: "Good", bad: "Attention", neutral: "Default" };

// Teams shows at most this many characters of one text block comfortably; longer user text is cut.
const TEXT_MAX = 3000;
const cut = (text: string, max = TEXT_MAX) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/**
 * Every string is rendered as a `TextRun` inside a `RichTextBlock`: unlike TextBlock and FactSet,
 * TextRun is never parsed as Markdown (https://adaptivecards.io/explorer/TextRun.html), and Teams
 * resolves `<at>` mentions only with a matching `msteams.entities` entry, which jitgate never sends.
 * So user text (a reason) stays text without escaping, and the connection line copies exactly.
 */
const run = (text: string, extra: Record<string, unknown> = {}) => ({ type: "TextRun", text: cut(text), ...extra });
/**
 * Preformatted text in a TextRun, whole (the caller cut it with a notice if it had to). `{{` gets a
 * zero-width space between the braces so that no `{{DATE(…)}}` / `{{TIME(…)}}` in a statement is
 * shown as a formatted date instead of what it is
 * (https://learn.microsoft.com/adaptive-cards/authoring-cards/text-features#datetime-formatting-and-localization).
 */
const code = (text: string) => ({ type: "TextRun", text: text.replace(/\{(?=\{)/g, "{\u200B"), fontType: "Monospace" });
const richText = (inlines: Record<string, unknown>[], extra: Record<string, unknown> = {}) => ({ type: "RichTextBlock", inlines, ...extra });

function executeAction(button: ButtonView): Record<string, unknown> {
  const data: CardActionData = { jitgate: 1, subject: subjectOf(button.action), id: button.value };
  return {
    type: "Action.Execute",
    title: button.label,
    verb: button.action,
    data,
    ...(button.style === "primary" ? { style: "positive" } : button.style === "danger" ? { style: "destructive" } : {}),
  };
}

/**
 * One inbox item: its text, where its thread is, its code, and its own buttons in an ActionSet
 * (https://adaptivecards.io/explorer/ActionSet.html), the same `Action.Execute` data as its thread card's.
 */
const ITEM_CODE_MAX = 500;

function itemContainer(item: MessageView): Record<string, unknown> {
  const items: Record<string, unknown>[] = [richText([run(item.text)])];
  for (const line of item.lines ?? []) items.push(richText([run(line)], { spacing: "None" }));
  if (item.thread) items.push(richText([run(`In the approval channel: the thread of request ${item.thread.requestId}`, { isSubtle: true })], { spacing: "None" }));
  if (item.code !== undefined) {
    // Shorter than a card's own code: twenty items must stay within Teams' message size (about 28 KB).
    const shown = presentCode(item.code, ITEM_CODE_MAX, (char) => (char === "{" ? 2 : char.length), item.fullText);
    if (shown.notice) items.push(richText([run(shown.notice, { weight: "Bolder" }), ...(shown.url ? [run(` ${shown.url}`)] : [])]));
    shown.parts.forEach((part, index) => {
      if (index > 0 && shown.gap) items.push(richText([run(shown.gap, { isSubtle: true })]));
      items.push(richText([code(part)]));
    });
  }
  if (item.buttons && item.buttons.length > 0) items.push({ type: "ActionSet", actions: item.buttons.map(executeAction) });
  return { type: "Container", separator: true, spacing: "Medium", items };
}

export interface AdaptiveCardOptions {
  /**
   * Teams user ids (`29:…`) whose clients refresh the card when they see it, so each gets their own
   * view (https://learn.microsoft.com/microsoftteams/platform/task-modules-and-cards/cards/universal-actions-for-adaptive-cards/user-specific-views).
   * Others get a manual refresh. At most 60.
   */
  refreshUserIds?: string[];
  /** Extra elements after the view (the deny reason form), for the one user who asked for them. */
  extraBody?: Record<string, unknown>[];
  extraActions?: Record<string, unknown>[];
  /** Replace the view's buttons (a form's own submit). */
  replaceActions?: boolean;
}

/** Renders a view as an Adaptive Card: the title, fields as a FactSet, lines, code, status, buttons. */
export function toAdaptiveCard(view: MessageView, options: AdaptiveCardOptions = {}): AdaptiveCard {
  const body: Record<string, unknown>[] = [];
  body.push(richText([run(view.title ?? view.text, { weight: "Bolder", size: view.title ? "Medium" : "Default" })]));
  for (const field of view.fields ?? []) {
    body.push(richText([run(`${field.label}: `, { weight: "Bolder" }), run(field.value)], { spacing: "None" }));
  }
  for (const line of view.lines ?? []) body.push(richText([run(line)]));
  const openFullText: Record<string, unknown>[] = [];
  if (view.code !== undefined) {
    const shown = presentCode(view.code, TEXT_MAX, (char) => (char === "{" ? 2 : char.length), view.fullText);
    // A TextRun is never a link: the URL is shown as text, and opened by a button
    // (https://adaptivecards.io/explorer/Action.OpenUrl.html).
    if (shown.notice) body.push(richText([run(shown.notice, { weight: "Bolder" }), ...(shown.url ? [run(` ${shown.url}`)] : [])]));
    shown.parts.forEach((part, index) => {
      if (index > 0 && shown.gap) body.push(richText([run(shown.gap, { isSubtle: true })]));
      body.push(richText([code(part)]));
    });
    if (shown.url) openFullText.push({ type: "Action.OpenUrl", title: "Read the full text", url: shown.url });
  }
  if (view.status) body.push(richText([run(view.status.text, { color: TONE_COLOR[view.status.tone], weight: "Bolder" })], { id: "status" }));
  for (const item of view.items ?? []) body.push(itemContainer(item));
  body.push(...(options.extraBody ?? []));

  const buttons = view.buttons ?? [];
  const actions = [...(options.replaceActions ? [] : buttons.map(executeAction)), ...openFullText, ...(options.extraActions ?? [])];
  const card: AdaptiveCard = {
    type: "AdaptiveCard",
    $schema: "http://adaptivecards.io/schemas/adaptive-card.json",
    version: "1.4",
    // Shown where cards are not (notifications, older clients).
    fallbackText: cut(view.text, 4000),
    body,
    ...(actions.length > 0 ? { actions } : {}),
  };
  const first = buttons[0];
  if (first) {
    const data: CardActionData = { jitgate: 1, subject: subjectOf(first.action), id: first.value };
    card.refresh = {
      action: { type: "Action.Execute", title: "Refresh", verb: "refresh", data },
      ...(options.refreshUserIds && options.refreshUserIds.length > 0 ? { userIds: options.refreshUserIds.slice(0, 60) } : {}),
    };
  }
  return card;
}

/** Deny asks for an optional reason inside the card, shown only to the approver who clicked Deny. */
export function denyReasonCard(view: MessageView, requestId: string): AdaptiveCard {
  const data: CardActionData = { jitgate: 1, subject: "request", id: requestId };
  return toAdaptiveCard(view, {
    replaceActions: true,
    extraBody: [
      { type: "Input.Text", id: "reason", label: "Reason (shown in the thread)", isMultiline: true, maxLength: 500, placeholder: "optional" },
    ],
    extraActions: [
      { type: "Action.Execute", title: "Deny", verb: "deny-confirm", style: "destructive", data },
      { type: "Action.Execute", title: "Cancel", verb: "refresh", data },
    ],
  });
}

/** Extend asks for how much more time, inside the card. */
export function extendDurationCard(view: MessageView, grantId: string, initial = "1h"): AdaptiveCard {
  const data: CardActionData = { jitgate: 1, subject: "grant", id: grantId };
  return toAdaptiveCard(view, {
    replaceActions: true,
    extraBody: [{ type: "Input.Text", id: "duration", label: "How much more (30m, 2h, 1d)", value: initial, maxLength: 20 }],
    extraActions: [
      { type: "Action.Execute", title: "Extend", verb: "extend-confirm", style: "positive", data },
      { type: "Action.Execute", title: "Cancel", verb: "refresh", data },
    ],
  });
}

/** The message activity that carries a view: the card, and its one-line text for notifications. */
export function cardActivity(view: MessageView, options: AdaptiveCardOptions = {}) {
  return {
    type: "message" as const,
    // Teams shows `summary` in notifications and the chat list.
    summary: cut(view.text, 300),
    attachments: [{ contentType: ADAPTIVE_CARD_CONTENT_TYPE, content: toAdaptiveCard(view, options) }],
  };
}
