import { parseApproverEntry, type ApproverEntry } from "../config/approver-entry.js";
import type { PolicyDefaults, TargetConfig } from "../config/schema.js";

/** What policy says about one target, with the defaults applied. */
export interface TargetPolicy {
  name: string;
  kind: TargetConfig["kind"];
  approvers: string[];
  /** Who may request the target (people and groups); undefined: everyone who reaches the bot. */
  requesters: string[] | undefined;
  approvals: number;
  maxDurationMs: number;
  reasonPattern: RegExp | undefined;
  requestTtlMs: number;
  /** An approval counts only after the approver's fresh OIDC login (step-up). */
  stepUp: boolean;
  /** Distinct approvals a held statement or command needs before it runs (`review.approvals`). */
  heldApprovals: number;
  /** Who may take the target at once with `--break-glass`, and the extra channel told; undefined: nobody. */
  breakGlass: { allow: string[]; alertChannel: string | undefined } | undefined;
  /** Auto-approval rules, tried in order at request time (see auto-approval.ts). */
  autoApprove: NonNullable<TargetConfig["autoApprove"]>;
}

export function targetPolicy(target: TargetConfig, defaults: PolicyDefaults): TargetPolicy {
  return {
    name: target.name,
    kind: target.kind,
    approvers: target.approvers,
    requesters: target.requesters,
    approvals: target.approvals ?? defaults.approvals,
    maxDurationMs: target.maxDuration ?? defaults.maxDuration,
    reasonPattern: target.reasonPattern === undefined ? undefined : new RegExp(target.reasonPattern),
    requestTtlMs: defaults.requestTtl,
    stepUp: target.stepUp,
    heldApprovals: target.review.approvals,
    breakGlass: target.breakGlass ? { allow: target.breakGlass.allow, alertChannel: target.breakGlass.alertChannel } : undefined,
    autoApprove: target.autoApprove ?? [],
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

/**
 * A group the person is in, with where jitgate learnt it: the `groups` claim of their latest OIDC
 * sign-in, or a Slack user group whose member list (fetched in the background) holds one of their
 * Slack ids.
 */
export type GroupMembership = { source: "oidc"; name: string } | { source: "slack"; id: string; handle: string };

export interface Identity {
  personId: string;
  /** The person's email: only ever one a platform vouched for (see PeopleService.identify). */
  email: string | null;
  /** Every identity of the person (Slack, Teams, console, OIDC subject), each with its platform. */
  chatIds: readonly ChatId[];
  /** The person's groups as last refreshed (see PeopleService.identity). */
  groups: readonly GroupMembership[];
}

/** Whether one parsed entry names this person: themselves, or a group they are in. */
export function entryNames(entry: ApproverEntry, who: Identity): boolean {
  switch (entry.kind) {
    case "email":
      return who.email !== null && who.email.toLowerCase() === entry.email;
    case "chat":
      return who.chatIds.some((chat) => chat.platform === entry.platform && chat.externalId === entry.id);
    case "oidc-group":
      return who.groups.some((g) => g.source === "oidc" && g.name === entry.name);
    case "slack-group":
      return who.groups.some((g) => g.source === "slack" && g.id === entry.id);
    case "slack-handle":
      return who.groups.some((g) => g.source === "slack" && g.handle.toLowerCase() === entry.handle);
  }
}

/**
 * Whether a list of policy entries names this person. People are named by email
 * (case-insensitive) or by a chat user id on one platform (`slack:U0LEAD42`, `teams:29:…`, a plain
 * id being Slack's): an id matches on its own platform only, so a Teams user, an OIDC subject or a
 * console user whose id happens to read `U0LEAD42` is not the Slack user U0LEAD42. Groups are named
 * `group:dba` (OIDC), `slack-group:S0DBA` or `@dba` (Slack). An entry the configuration would refuse
 * matches no one.
 */
export function listNames(entries: readonly string[], who: Identity): boolean {
  return entries.some((text) => {
    const entry = parseApproverEntry(text);
    return !("problem" in entry) && entryNames(entry, who);
  });
}

/** Whether this person approves the target (see listNames for how entries match). */
export function isApprover(policy: TargetPolicy, who: Identity): boolean {
  return listNames(policy.approvers, who);
}

/** Whether this person may request the target: anyone when it has no `requesters`, else those it names. */
export function mayRequest(policy: TargetPolicy, who: Identity): boolean {
  return policy.requesters === undefined || listNames(policy.requesters, who);
}

/**
 * Whether this person is one of the configured `auditors`. The list is matched by the very function
 * that reads approver and requester lists, so every kind of entry they may hold (emails,
 * `slack:`/`teams:` ids, groups) names an auditor the same way.
 */
export function isAuditor(auditors: readonly string[], who: Identity): boolean {
  return listNames(auditors, who);
}
