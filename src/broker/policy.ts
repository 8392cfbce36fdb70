import { parseApproverEntry } from "../config/approver-entry.js";
import type { PolicyDefaults, TargetConfig } from "../config/schema.js";

/** What policy says about one target, with the defaults applied. */
export interface TargetPolicy {
  name: string;
  kind: TargetConfig["kind"];
  approvers: string[];
  approvals: number;
  maxDurationMs: number;
  reasonPattern: RegExp | undefined;
  requestTtlMs: number;
  /** An approval counts only after the approver's fresh OIDC login (step-up). */
  stepUp: boolean;
  /** Distinct approvals a held statement or command needs before it runs (`review.approvals`). */
  heldApprovals: number;
}

export function targetPolicy(target: TargetConfig, defaults: PolicyDefaults): TargetPolicy {
  return {
    name: target.name,
    kind: target.kind,
    approvers: target.approvers,
    approvals: target.approvals ?? defaults.approvals,
    maxDurationMs: target.maxDuration ?? defaults.maxDuration,
    reasonPattern: target.reasonPattern === undefined ? undefined : new RegExp(target.reasonPattern),
    requestTtlMs: defaults.requestTtl,
    stepUp: target.stepUp,
    heldApprovals: target.review.approvals,
  };
}

/** A chat identity as stored (`chat_identities`): the platform and the id it knows the person by. */
export interface ChatId {
  platform: string;
  externalId: string;
}

export interface Identity {
  personId: string;
  /** The person's email: only ever one a platform vouched for (see PeopleService.identify). */
  email: string | null;
  /** Every identity of the person (Slack, Teams, console, OIDC subject), each with its platform. */
  chatIds: readonly ChatId[];
}

/**
 * Approver lists name people by email (case-insensitive) or by a chat user id on one platform
 * (`slack:U0LEAD42`, `teams:29:…`, a plain id being Slack's). An id matches on its own platform
 * only: a Teams user, an OIDC subject or a console user whose id happens to read `U0LEAD42` is
 * not the Slack user U0LEAD42. An entry the configuration would refuse matches no one.
 */
export function isApprover(policy: TargetPolicy, who: Identity): boolean {
  const email = who.email?.toLowerCase();
  return policy.approvers.some((text) => {
    const entry = parseApproverEntry(text);
    if ("problem" in entry) return false;
    if (entry.kind === "email") return email !== undefined && entry.email === email;
    return who.chatIds.some((chat) => chat.platform === entry.platform && chat.externalId === entry.id);
  });
}

/**
 * Whether this person is one of the configured `auditors`. The list is read and matched by the very
 * function that reads an approver list, so every kind of entry an approver list may hold (emails,
 * `slack:`/`teams:` ids, and groups where the policy brings them) names an auditor the same way.
 */
export function isAuditor(auditors: readonly string[], who: Identity): boolean {
  // isApprover reads nothing of the policy but its approver list.
  return isApprover({ approvers: [...auditors] } as Pick<TargetPolicy, "approvers"> as TargetPolicy, who);
}
