import { escapeMrkdwn } from "../render/block-kit.js";

/** Callback ids of jitgate's modals (https://docs.slack.dev/surfaces/modals). */
export const DENY_MODAL = "jitgate_deny_modal";
export const EXTEND_MODAL = "jitgate_extend_modal";

/** What a modal remembers of where it was opened, to answer there when it is submitted. */
export interface ModalContext {
  id: string;
  channel: string | null;
}

export function parseModalContext(text: string): ModalContext | undefined {
  try {
    const value = JSON.parse(text) as Partial<ModalContext>;
    return typeof value.id === "string" ? { id: value.id, channel: typeof value.channel === "string" ? value.channel : null } : undefined;
  } catch {
    return undefined;
  }
}

/** Deny asks for an optional reason. */
export function denyModal(context: ModalContext, target: string) {
  return {
    type: "modal" as const,
    callback_id: DENY_MODAL,
    private_metadata: JSON.stringify(context),
    title: { type: "plain_text" as const, text: "Deny request" },
    submit: { type: "plain_text" as const, text: "Deny" },
    close: { type: "plain_text" as const, text: "Cancel" },
    blocks: [
      { type: "section", text: { type: "mrkdwn", text: `Deny access to *${escapeMrkdwn(target)}* (request ${escapeMrkdwn(context.id)})?` } },
      {
        type: "input",
        block_id: "reason",
        optional: true,
        label: { type: "plain_text", text: "Reason (shown in the thread)" },
        element: { type: "plain_text_input", action_id: "reason", multiline: true, max_length: 500 },
      },
    ],
  };
}

/** Extend asks for how much more time. */
export function extendModal(context: ModalContext, target: string, initialDuration: string) {
  return {
    type: "modal" as const,
    callback_id: EXTEND_MODAL,
    private_metadata: JSON.stringify(context),
    title: { type: "plain_text" as const, text: "Extend access" },
    submit: { type: "plain_text" as const, text: "Extend" },
    close: { type: "plain_text" as const, text: "Cancel" },
    blocks: [
      { type: "section", text: { type: "mrkdwn", text: `More time on *${escapeMrkdwn(target)}* (grant ${escapeMrkdwn(context.id)})` } },
      {
        type: "input",
        block_id: "duration",
        label: { type: "plain_text", text: "How much more (30m, 2h, 1d)" },
        element: { type: "plain_text_input", action_id: "duration", initial_value: initialDuration, max_length: 20 },
      },
    ],
  };
}
