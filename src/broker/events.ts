import { EventEmitter } from "node:events";

/** Snapshots carried by events: plain JSON (times as ISO strings) so they cross Redis unchanged. */
export interface RequestSnapshot {
  id: string;
  kind: "access" | "extension";
  target: string;
  requesterId: string;
  requesterName: string;
  durationMs: number;
  reason: string;
  state: string;
  approvalsRequired: number;
  grantId: string | null;
  origin: string;
  createdAt: string;
  timeoutAt: string;
}

export interface GrantSnapshot {
  id: string;
  requestId: string;
  personId: string;
  target: string;
  state: string;
  startsAt: string;
  expiresAt: string;
  endedAt: string | null;
}

export interface DecisionSnapshot {
  id: string;
  approverId: string;
  approverName: string;
  verdict: "approve" | "deny";
  reason: string | null;
  at: string;
}

/** A break-glass use and its review, as the loud message and the Review card show it. */
export interface BreakGlassSnapshot {
  id: string;
  requestId: string;
  grantId: string;
  target: string;
  requesterId: string;
  requesterName: string;
  reason: string;
  state: "open" | "acknowledged" | "flagged";
  createdAt: string;
  reviewedAt: string | null;
  reviewerName: string | null;
  /** `breakGlass.alertChannel` of the target, when set. */
  alertChannel: string | null;
}

export interface SessionSnapshot {
  id: string;
  grantId: string;
  requestId: string;
  target: string;
  personId: string;
  personName: string;
  protocol: "postgres" | "ssh";
  clientAddress: string | null;
  startedAt: string;
  endedAt: string | null;
}

/** What a session did, as DESIGN.md path 5 lists it. */
export interface SessionSummary {
  durationMs: number;
  /** statements (PostgreSQL) or commands (SSH) by kind: select, insert, ddl, … */
  statementsByKind: Record<string, number>;
  rowsReturned: number;
  rowsAffected: number;
  valuesMasked: number;
  blocked: number;
  held: number;
  approved: number;
  bytesIn: number;
  bytesOut: number;
  /** Why the session ended: client, expired, revoked, error, shutdown */
  endReason: string;
  recordingId: string;
}

export interface HeldSnapshot {
  id: string;
  sessionId: string;
  grantId: string;
  requestId: string;
  target: string;
  personId: string;
  personName: string;
  text: string;
  rule: string;
  state: string;
  createdAt: string;
  timeoutAt: string;
}

/**
 * The broker's domain events. None carries a secret: the connection line goes back to the caller of
 * `decide`, never onto a bus.
 */
export interface BrokerEvents {
  "request.created": { request: RequestSnapshot };
  "request.decided": { request: RequestSnapshot; decision: DecisionSnapshot; approvals: number; required: number };
  "request.denied": { request: RequestSnapshot; decision: DecisionSnapshot };
  "request.expired": { request: RequestSnapshot };
  "grant.issued": { grant: GrantSnapshot; request: RequestSnapshot; approvers: string[] };
  "grant.extended": { grant: GrantSnapshot; previousExpiresAt: string; byId: string; byName: string };
  "grant.revoked": { grant: GrantSnapshot; byId: string; byName: string; reason: string | null };
  "grant.expired": { grant: GrantSnapshot };
  /** A grant issued at once by break-glass (its `grant.issued` follows); the review is open. */
  "break_glass.used": { review: BreakGlassSnapshot };
  "break_glass.reviewed": { review: BreakGlassSnapshot };
  /** An approved scheduled request: its grant comes at `startsAt`. */
  "request.scheduled": { request: RequestSnapshot; startsAt: string };
  /**
   * Auto-approval at request time: a rule approved (`approved`), approves once the requester signs
   * in again (`awaiting-sign-in`, stepUp targets), or no rule applied because an on-call provider
   * failed (`not-applied`, with why). `facts` are the lines the thread shows.
   */
  "request.auto_approval": { request: RequestSnapshot; outcome: "approved" | "awaiting-sign-in" | "not-applied"; rule: string | null; facts: string[]; notes: string[] };
  "session.opened": { session: SessionSnapshot };
  "session.closed": { session: SessionSnapshot; summary: SessionSummary };
  "statement.blocked": { session: SessionSnapshot; text: string; rule: string; at: string };
  /** An interactive shell started in an SSH session: what it runs is checked best-effort only. */
  "session.shell": { session: SessionSnapshot; text: string; at: string };
  "statement.held": { held: HeldSnapshot };
  "statement.decided": { held: HeldSnapshot; verdict: "approved" | "denied" | "timed_out"; byId: string | null; byName: string | null };
  /** One approval of a held statement that needs more (`review.approvals`): it keeps waiting. */
  "statement.approval": { held: HeldSnapshot; approvals: number; required: number; byId: string; byName: string };
  /** An auditor viewed the unmasked (sealed original) results of one statement (issue 16). */
  "results.revealed": { session: SessionSnapshot; seq: number; byId: string; byName: string; reason: string; at: string };
}

export type BrokerEventName = keyof BrokerEvents;
export type BrokerEvent = { [K in BrokerEventName]: { name: K; payload: BrokerEvents[K] } }[BrokerEventName];
export type Listener<K extends BrokerEventName> = (payload: BrokerEvents[K]) => void | Promise<void>;

export const brokerEventNames: readonly BrokerEventName[] = [
  "request.created",
  "request.decided",
  "request.denied",
  "request.expired",
  "grant.issued",
  "grant.extended",
  "grant.revoked",
  "grant.expired",
  "break_glass.used",
  "break_glass.reviewed",
  "request.scheduled",
  "request.auto_approval",
  "session.opened",
  "session.closed",
  "statement.blocked",
  "session.shell",
  "statement.held",
  "statement.decided",
  "statement.approval",
  "results.revealed",
];

/**
 * A typed emitter. A listener that throws or rejects is reported through `onListenerError` and
 * never breaks the broker operation that emitted the event (its change is already committed).
 */
export class TypedEvents {
  readonly #emitter = new EventEmitter({ captureRejections: false });
  readonly #any = new Set<(event: BrokerEvent) => void | Promise<void>>();

  constructor(private readonly onListenerError: (error: unknown, event: BrokerEventName) => void = () => {}) {
    this.#emitter.setMaxListeners(0);
  }

  on<K extends BrokerEventName>(name: K, listener: Listener<K>): () => void {
    const wrapped = (payload: BrokerEvents[K]) => this.#call(name, () => listener(payload));
    this.#emitter.on(name, wrapped);
    return () => this.#emitter.off(name, wrapped);
  }

  onAny(listener: (event: BrokerEvent) => void | Promise<void>): () => void {
    this.#any.add(listener);
    return () => this.#any.delete(listener);
  }

  emit<K extends BrokerEventName>(name: K, payload: BrokerEvents[K]): void {
    this.#emitter.emit(name, payload);
    const event = { name, payload } as BrokerEvent;
    for (const listener of this.#any) this.#call(name, () => listener(event));
  }

  #call(name: BrokerEventName, run: () => void | Promise<void>): void {
    try {
      const result = run();
      if (result instanceof Promise) result.catch((error: unknown) => this.onListenerError(error, name));
    } catch (error) {
      this.onListenerError(error, name);
    }
  }
}
