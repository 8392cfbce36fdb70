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

export interface Identity {
  personId: string;
  email: string | null;
  /** chat user ids of every platform the person is known on */
  chatIds: string[];
}

/** Approver lists name people by email (case-insensitive) or by chat user id. */
export function isApprover(policy: TargetPolicy, who: Identity): boolean {
  const email = who.email?.toLowerCase();
  return policy.approvers.some(
    (entry) => (email !== undefined && entry.toLowerCase() === email) || who.chatIds.includes(entry),
  );
}
