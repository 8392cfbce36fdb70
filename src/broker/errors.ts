import { formatDuration } from "../config/duration.js";

/**
 * Domain errors with stable codes. Adapters map them to chat replies or SQLSTATEs; their messages
 * are written to be shown to the person who caused them, and never contain a secret.
 */
export abstract class BrokerError extends Error {
  abstract readonly code: `broker_${string}`;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class UnknownTarget extends BrokerError {
  readonly code = "broker_unknown_target";
  constructor(
    readonly target: string,
    readonly known: string[],
  ) {
    super(`unknown target "${target}"; targets: ${known.length > 0 ? known.join(", ") : "(none configured)"}`);
  }
}

export class InvalidDuration extends BrokerError {
  readonly code = "broker_invalid_duration";
  constructor(readonly text: string) {
    super(`"${text}" is not a duration like 30m, 2h, 1d`);
  }
}

export class DurationTooLong extends BrokerError {
  readonly code = "broker_duration_too_long";
  constructor(
    readonly target: string,
    readonly requestedMs: number,
    readonly maxMs: number,
    what = "access",
  ) {
    super(`${formatDuration(requestedMs)} of ${what} to ${target} is over the maximum of ${formatDuration(maxMs)}`);
  }
}

export class ReasonRequired extends BrokerError {
  readonly code = "broker_reason_required";
  constructor() {
    super("a reason is required");
  }
}

export class ReasonRejected extends BrokerError {
  readonly code = "broker_reason_rejected";
  constructor(
    readonly target: string,
    readonly pattern: string,
  ) {
    super(`the reason for ${target} must match ${pattern} (for example a ticket id)`);
  }
}

export class RequestNotFound extends BrokerError {
  readonly code = "broker_request_not_found";
  constructor(readonly requestId: string) {
    super(`no request ${requestId}`);
  }
}

export class RequestNotPending extends BrokerError {
  readonly code = "broker_request_not_pending";
  constructor(
    readonly requestId: string,
    readonly state: string,
    readonly decidedBy: string[],
  ) {
    super(`request ${requestId} is already ${state}${decidedBy.length > 0 ? ` by ${decidedBy.join(", ")}` : ""}`);
  }
}

export class NotAnApprover extends BrokerError {
  readonly code = "broker_not_an_approver";
  constructor(readonly target: string) {
    super(`you are not an approver of ${target}`);
  }
}

export class NotARequester extends BrokerError {
  readonly code = "broker_not_a_requester";
  constructor(readonly target: string) {
    super(`you may not request ${target}: its requesters do not include you (ask its approvers if you should be)`);
  }
}

export class SelfApproval extends BrokerError {
  readonly code = "broker_self_approval";
  constructor() {
    super("you cannot approve your own request");
  }
}

export class AlreadyDecided extends BrokerError {
  readonly code = "broker_already_decided";
  constructor(
    readonly requestId: string,
    readonly verdict: string,
    what = "request",
  ) {
    super(`you have already ${verdict === "approve" ? "approved" : "denied"} ${what} ${requestId}`);
  }
}

export class GrantNotFound extends BrokerError {
  readonly code = "broker_grant_not_found";
  constructor(readonly grantId: string) {
    super(`no grant ${grantId}`);
  }
}

export class GrantNotActive extends BrokerError {
  readonly code = "broker_grant_not_active";
  constructor(
    readonly grantId: string,
    readonly state: string,
  ) {
    super(`grant ${grantId} is ${state}`);
  }
}

export class GrantExpired extends BrokerError {
  readonly code = "broker_grant_expired";
  constructor(readonly grantId: string) {
    super(`grant ${grantId} has expired`);
  }
}

export class GrantAlreadyLive extends BrokerError {
  readonly code = "broker_grant_already_live";
  constructor(
    readonly target: string,
    readonly grantId: string,
  ) {
    super(`you already have live access to ${target} (grant ${grantId}); extend it instead`);
  }
}

export class NotAllowed extends BrokerError {
  readonly code = "broker_not_allowed";
}

export class InvalidCredential extends BrokerError {
  readonly code = "broker_invalid_credential";
  constructor() {
    super("wrong or expired credential");
  }
}

export class NoLiveGrant extends BrokerError {
  readonly code = "broker_no_live_grant";
  constructor(readonly target: string) {
    super(`no live access grant for ${target}; request one with: /access request ${target} <duration> <reason>`);
  }
}

export class InvalidSshKey extends BrokerError {
  readonly code = "broker_invalid_ssh_key";
}

export class SshKeyRegistered extends BrokerError {
  readonly code = "broker_ssh_key_registered";
  constructor(readonly fingerprint: string) {
    super(`the key ${fingerprint} is already registered`);
  }
}

export class SshKeyNotFound extends BrokerError {
  readonly code = "broker_ssh_key_not_found";
  constructor(readonly key: string) {
    super(`you have no registered key ${key}; see them with: key list`);
  }
}

/**
 * An approval on a `stepUp` target needs a fresh sign-in at the OIDC provider first. The message
 * carries the one-time link (it is shown only to the approver who clicked).
 */
export class StepUpRequired extends BrokerError {
  readonly code = "broker_step_up_required";
  constructor(
    readonly target: string,
    readonly challengeId: string,
    readonly link: string,
    readonly expiresAt: Date,
    validForMs: number,
    /** What the approval is of: access, or a held statement (`held hld_…`). */
    what = `access to ${target}`,
  ) {
    super(`approving ${what} needs a fresh sign-in: open ${link} within ${formatDuration(validForMs)} to sign in again; your approval is recorded after it`);
  }
}

/** A step-up approval that cannot be recorded: the link was used or expired, another person signed in, or the sign-in was not fresh. */
export class StepUpRefused extends BrokerError {
  readonly code = "broker_step_up_refused";
}

export class BreakGlassNotAllowed extends BrokerError {
  readonly code = "broker_break_glass_not_allowed";
  constructor(
    readonly target: string,
    configured: boolean,
  ) {
    super(
      configured
        ? `you may not break the glass on ${target}: you are not on its breakGlass.allow list; ask for access normally`
        : `there is no break-glass access on ${target}; ask for access normally`,
    );
  }
}

export class InvalidStartTime extends BrokerError {
  readonly code = "broker_invalid_start_time";
  constructor(message: string) {
    super(message);
  }
}

export class ReviewNotFound extends BrokerError {
  readonly code = "broker_review_not_found";
  constructor(readonly reviewId: string) {
    super(`no break-glass review ${reviewId}`);
  }
}

export class ReviewClosed extends BrokerError {
  readonly code = "broker_review_closed";
  constructor(
    readonly reviewId: string,
    readonly state: string,
    readonly by: string | null,
  ) {
    super(`this break-glass use was already ${state}${by ? ` by ${by}` : ""}`);
  }
}

/**
 * Break-glass on a `stepUp` target: the grant waits for the requester's own fresh sign-in. The
 * message carries the one-time link (shown only to the requester).
 */
export class BreakGlassSignInRequired extends StepUpRequired {
  constructor(target: string, challengeId: string, link: string, expiresAt: Date, validForMs: number) {
    super(target, challengeId, link, expiresAt, validForMs);
    this.message = `break-glass on ${target} needs a fresh sign-in, like every grant there: open ${link} within ${formatDuration(validForMs)} to sign in again; the grant is issued after it`;
  }
}

/**
 * An auto-approval rule approves a request on a `stepUp` target: the approval waits for the
 * requester's own fresh sign-in (the link, shown only to them); the grant is issued after it.
 */
export class AutoApprovalSignInRequired extends StepUpRequired {
  constructor(
    readonly requestId: string,
    readonly rule: string,
    target: string,
    challengeId: string,
    link: string,
    expiresAt: Date,
    validForMs: number,
  ) {
    super(target, challengeId, link, expiresAt, validForMs);
    this.message = `request ${requestId} on ${target} meets auto-approval rule ${rule}, and every grant there rests on a fresh sign-in: open ${link} within ${formatDuration(validForMs)} to sign in again; the rule's approval and the grant come after it (until then an approver may approve it as usual)`;
  }
}
