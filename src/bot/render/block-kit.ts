import type { ActionKind, MessageView } from "../view-model.js";
import { presentCode } from "./excerpt.js";

/** Block Kit action ids of the view model's buttons (https://docs.slack.dev/reference/block-kit/block-elements/button-element). */
export const SLACK_ACTION_IDS: Record<ActionKind, string> = {
  approve: "jitgate_approve",
  deny: "jitgate_deny",
  extend: "jitgate_extend",
  revoke: "jitgate_revoke",
  "approve-statement": "jitgate_approve_statement",
  "deny-statement": "jitgate_deny_statement",
  "acknowledge-break-glass": "jitgate_acknowledge_break_glass",
  "flag-break-glass": "jitgate_flag_break_glass",
};

// Block Kit's own limits: section text 3000 characters, field 2000, button value 2000, 10 fields.
const SECTION_MAX = 3000;
const FIELD_MAX = 2000;

/**
 * Slack's three control characters in mrkdwn (https://docs.slack.dev/messaging/formatting-message-text#escaping).
 * Escaping them is what keeps user text (a reason) from becoming a mention or a link.
 */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

const cut = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

const ZWSP = "\u200B";

/**
 * Text inside a ``` block, inert: mrkdwn's control characters escaped (so `<!channel>`, `<@U…>` and
 * `<http://evil|click>` stay text), and a zero-width space between adjacent backticks and at a
 * backtick next to the fence, so that no ``` in the text can close the block early
 * (https://docs.slack.dev/messaging/formatting-message-text#escaping: Slack has no escape for `).
 */
export function inertCode(text: string): string {
  let out = escapeMrkdwn(text).replace(/`(?=`)/g, "`" + ZWSP);
  if (out.startsWith("`")) out = ZWSP + out;
  if (out.endsWith("`")) out += ZWSP;
  return out;
}

/** What one character of code costs in a section's text once it is inert (an upper bound). */
const codeCost = (char: string) => (char === "&" ? 5 : char === "<" || char === ">" ? 4 : char === "`" ? 2 : char.length);
// The fences and the two zero-width spaces a backtick at either end may need.
const CODE_MAX = SECTION_MAX - 6 - 2;

const codeSection = (text: string) => ({ type: "section", text: { type: "mrkdwn", text: "```" + inertCode(text) + "```" } });

/** The code block, or its start and end under a plain notice with the link to all of it. */
function codeBlocks(view: MessageView): Record<string, unknown>[] {
  const shown = presentCode(view.code ?? "", CODE_MAX, codeCost, view.fullText);
  const blocks: Record<string, unknown>[] = [];
  if (shown.notice) {
    // https://docs.slack.dev/messaging/formatting-message-text#linking-urls: `<url|label>`; the URL is the gateway's own.
    const link = shown.url ? ` <${shown.url.replace(/[<>|]/g, encodeURIComponent)}|${escapeMrkdwn(shown.url)}>` : "";
    blocks.push({ type: "section", text: { type: "mrkdwn", text: escapeMrkdwn(shown.notice) + link } });
  }
  shown.parts.forEach((part, index) => {
    if (index > 0 && shown.gap) blocks.push({ type: "context", elements: [{ type: "mrkdwn", text: escapeMrkdwn(shown.gap) }] });
    blocks.push(codeSection(part));
  });
  return blocks;
}

// https://docs.slack.dev/reference/block-kit/blocks: at most 50 blocks in a message.
const BLOCKS_MAX = 50;

/** Where an inbox item's thread is: its request, and the channel (as Slack's own channel link) when known. */
function threadPointer(view: MessageView): string {
  if (!view.thread) return "";
  // https://docs.slack.dev/messaging/formatting-message-text#linking-channels; only an id Slack could have made.
  const channel = view.thread.channel && /^[CG][A-Z0-9]+$/.test(view.thread.channel) ? ` in <#${view.thread.channel}>` : "";
  return `\n↳ thread of request ${escapeMrkdwn(view.thread.requestId)}${channel}`;
}

/** One inbox item: its text and thread, its code, and its own buttons (an actions block with a block id of its own). */
function itemBlocks(item: MessageView, index: number): Record<string, unknown>[] {
  const text = [escapeMrkdwn(item.text), ...(item.lines ?? []).map(escapeMrkdwn)].join("\n");
  // Two blocks an item (three with code), so that 20 fit in Slack's 50: no divider.
  const blocks: Record<string, unknown>[] = [{ type: "section", block_id: `jitgate_item_${index}`, text: { type: "mrkdwn", text: cut(text, SECTION_MAX - 200) + threadPointer(item) } }];
  if (item.code !== undefined) blocks.push(...codeBlocks(item));
  if (item.buttons && item.buttons.length > 0) blocks.push(actionsBlock(item, `jitgate_actions_${index}`));
  return blocks;
}

function actionsBlock(view: MessageView, blockId: string): Record<string, unknown> {
  return {
    type: "actions",
    block_id: blockId,
    elements: (view.buttons ?? []).map((b) => ({
      type: "button",
      action_id: SLACK_ACTION_IDS[b.action],
      text: { type: "plain_text", text: b.label, emoji: true },
      value: b.value,
      ...(b.style ? { style: b.style } : {}),
    })),
  };
}

export interface SlackMessage {
  text: string;
  blocks: Record<string, unknown>[];
}

/** Renders a view as a Slack message: `text` for notifications, `blocks` for the message itself. */
export function toBlockKit(view: MessageView): SlackMessage {
  const blocks: Record<string, unknown>[] = [];
  const mrkdwn = (text: string) => ({ type: "mrkdwn", text });
  // https://docs.slack.dev/messaging/formatting-message-text#mentioning-users: the one unescaped `<…>`.
  const person = view.mention && /^[A-Z0-9]+$/i.test(view.mention.user) ? `<@${view.mention.user}> ` : "";
  // A loud message notifies everyone active in the channel (https://docs.slack.dev/messaging/formatting-message-text#special-mentions).
  const mention = (view.alert ? "<!here> " : "") + person;
  const headline = mention + (view.title ? `*${escapeMrkdwn(view.title)}*` : escapeMrkdwn(view.text));
  blocks.push({ type: "section", text: mrkdwn(cut(headline, SECTION_MAX)) });
  if (view.fields && view.fields.length > 0) {
    blocks.push({
      type: "section",
      fields: view.fields
        .slice(0, 10)
        .map((f) => mrkdwn(cut(`*${escapeMrkdwn(f.label)}*\n${escapeMrkdwn(f.value)}`, FIELD_MAX))),
    });
  }
  for (const line of view.lines ?? []) blocks.push({ type: "section", text: mrkdwn(cut(escapeMrkdwn(line), SECTION_MAX)) });
  if (view.code !== undefined) blocks.push(...codeBlocks(view));
  if (view.status) blocks.push({ type: "context", elements: [mrkdwn(cut(escapeMrkdwn(view.status.text), SECTION_MAX))] });
  if (view.buttons && view.buttons.length > 0) blocks.push(actionsBlock(view, "jitgate_actions"));
  const items = view.items ?? [];
  for (const [index, item] of items.entries()) {
    const next = itemBlocks(item, index);
    // Within Slack's block limit, with room for the note that says what did not fit.
    if (blocks.length + next.length > BLOCKS_MAX - 1) {
      const left = items.length - index;
      blocks.push({ type: "context", elements: [mrkdwn(`${left} more not shown here: decide these first, or find them in the approval channel.`)] });
      break;
    }
    blocks.push(...next);
  }
  // `text` is shown in notifications and where blocks cannot be; it is not mrkdwn-parsed by us.
  return { text: cut(mention + escapeMrkdwn(view.text), 4000), blocks };
}
