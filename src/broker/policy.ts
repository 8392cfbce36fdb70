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
  /** Who may take the target at once with `--break-glass`, and the extra channel told; undefined: nobody. */
  breakGlass: { allow: string[]; alertChannel: string | undefined } | undefined;
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
    breakGlass: target.breakGlass ? { allow: target.breakGlass.allow, alertChannel: target.breakGlass.alertChannel } : undefined,
  };
}

/** May this person break the glass on the target? Entries are matched exactly as approver entries are. */
export function mayBreakGlass(policy: TargetPolicy, who: Identity): boolean {
  if (!policy.breakGlass) return false;
  return isApprover({ ...policy, approvers: policy.breakGlass.allow }, who);
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
