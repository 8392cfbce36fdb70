import { and, eq } from "drizzle-orm";
import { formatDuration } from "../config/duration.js";
import type { TargetConfig } from "../config/schema.js";
import type { Executor } from "../db/client.js";
import { accessRequests, decisions } from "../db/schema.js";
import { appendAudit } from "./audit.js";
import type { ConnectionLine } from "./credentials.js";
import { RequestNotPending } from "./errors.js";
import type { GrantsService } from "./grants.js";
import { newId } from "./ids.js";
import { listNames, type Identity } from "./policy.js";
import type { AccessRequest, Decision, Grant } from "./types.js";

/** The on-call providers a rule may ask. */
export type OnCallProvider = "pagerduty" | "opsgenie";

/** One person on call now: their email as the provider knows it (lower-cased), and the escalation level (PagerDuty; null for Opsgenie). */
export interface OnCallPerson {
  email: string;
  level: number | null;
}

export type OnCallAnswer = { ok: true; people: OnCallPerson[] } | { ok: false; problem: string };

/**
 * Who is on call now in a schedule. The broker does no HTTP: the gateway injects an implementation
 * (src/infra/on-call.ts); without one, every rule that asks about on-call does not apply.
 */
export interface OnCallPort {
  onCall(provider: OnCallProvider, schedule: string, now: Date): Promise<OnCallAnswer>;
}

export type AutoApproveRule = NonNullable<TargetConfig["autoApprove"]>[number];

/** What a rule looked at, as recorded in the audit log and posted in the thread. */
export interface RuleFacts {
  rule: string;
  /** The request time in the rule's zone (`Wed 10:00 Europe/Berlin`) and the window it fell in. */
  time?: { local: string; window: string };
  durationMs: number;
  maxDurationMs?: number;
  onCall?: { provider: OnCallProvider; schedule: string; email: string; level: number | null; levels: number[] | null };
}

/** Why one rule did not approve; `provider` set when an on-call provider failed (the thread says so). */
export interface RuleRefusal {
  rule: string;
  why: string;
  provider?: true;
}

export interface RulesOutcome {
  applied?: RuleFacts;
  refused: RuleRefusal[];
}

const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;
const DAY_NAMES: Record<string, string> = { sun: "Sun", mon: "Mon", tue: "Tue", wed: "Wed", thu: "Thu", fri: "Fri", sat: "Sat" };

/** The weekday (`mon`…) and minutes since midnight of `at` in `zone`. */
export function localTime(at: Date, zone: string): { day: (typeof DAYS)[number]; minutes: number; text: string } {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).formatToParts(at);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  const day = get("weekday").toLowerCase().slice(0, 3) as (typeof DAYS)[number];
  const hour = Number(get("hour"));
  const minute = Number(get("minute"));
  const text = `${DAY_NAMES[day] ?? day} ${String(hour).padStart(2, "0")}:${String(minute).padStart(2, "0")} ${zone}`;
  return { day, minutes: hour * 60 + minute, text };
}

const minutesOf = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

function windowText(when: NonNullable<AutoApproveRule["when"]>): string {
  const days = when.days.length === 7 ? "every day" : when.days.map((d) => DAY_NAMES[d]).join(", ");
  return `${days} ${when.from}–${when.to} ${when.timezone}`;
}

/**
 * Tries the rules in order for a request of `durationMs` by `who` at `now`: the first rule whose
 * every condition holds applies. Conditions are checked cheapest first; a rule's on-call provider is
 * asked only when everything else about the rule holds, and a provider that fails makes that rule
 * not apply (fail closed).
 */
export async function evaluateRules(
  rules: readonly AutoApproveRule[],
  input: { who: Identity; durationMs: number; now: Date; onCall: OnCallPort | undefined },
): Promise<RulesOutcome> {
  const refused: RuleRefusal[] = [];
  for (const rule of rules) {
    const facts: RuleFacts = { rule: rule.name, durationMs: input.durationMs };
    if (!listNames(rule.who, input.who)) {
      refused.push({ rule: rule.name, why: "the requester is not one the rule names (who)" });
      continue;
    }
    if (rule.maxDuration !== undefined) {
      facts.maxDurationMs = rule.maxDuration;
      if (input.durationMs > rule.maxDuration) {
        refused.push({ rule: rule.name, why: `${formatDuration(input.durationMs)} is longer than the rule's ${formatDuration(rule.maxDuration)}` });
        continue;
      }
    }
    if (rule.when) {
      const local = localTime(input.now, rule.when.timezone);
      facts.time = { local: local.text, window: windowText(rule.when) };
      const inDays = rule.when.days.includes(local.day);
      const inHours = local.minutes >= minutesOf(rule.when.from) && local.minutes < minutesOf(rule.when.to);
      if (!inDays || !inHours) {
        refused.push({ rule: rule.name, why: `${local.text} is outside ${facts.time.window}` });
        continue;
      }
    }
    if (rule.onCall) {
      const { provider, schedule } = rule.onCall;
      const levels = rule.onCall.levels ?? null;
      const name = provider === "pagerduty" ? "PagerDuty" : "Opsgenie";
      if (!input.onCall) {
        refused.push({ rule: rule.name, why: `${name} is not configured on this gateway`, provider: true });
        continue;
      }
      const email = input.who.email?.toLowerCase();
      if (!email) {
        refused.push({ rule: rule.name, why: "the requester has no verified email to match the on-call schedule with" });
        continue;
      }
      const answer = await input.onCall.onCall(provider, schedule, input.now);
      if (!answer.ok) {
        refused.push({ rule: rule.name, why: `${answer.problem}; the rule does not apply without an answer`, provider: true });
        continue;
      }
      const entries = answer.people.filter((p) => p.email === email);
      const match = entries.find((p) => levels === null || (p.level !== null && levels.includes(p.level)));
      if (!match) {
        const atLevels = entries.map((p) => p.level).filter((l): l is number => l !== null);
        refused.push({
          rule: rule.name,
          why:
            entries.length === 0
              ? `${email} is not on call now in ${name} schedule ${schedule}`
              : `${email} is on call in ${name} schedule ${schedule} at level ${atLevels.join(", ")}, and the rule takes level ${levels!.join(", ")} only`,
        });
        continue;
      }
      facts.onCall = { provider, schedule, email, level: match.level, levels };
    }
    return { applied: facts, refused };
  }
  return { refused };
}

/** The facts as lines for the thread (plain text). */
export function factLines(facts: RuleFacts): string[] {
  const lines: string[] = [];
  if (facts.time) lines.push(`time: ${facts.time.local}, within ${facts.time.window}`);
  lines.push(`duration: ${formatDuration(facts.durationMs)}${facts.maxDurationMs !== undefined ? `, at most ${formatDuration(facts.maxDurationMs)}` : ""}`);
  if (facts.onCall) {
    const name = facts.onCall.provider === "pagerduty" ? "PagerDuty" : "Opsgenie";
    const level = facts.onCall.level !== null ? ` at level ${facts.onCall.level}${facts.onCall.levels ? ` (rule: level ${facts.onCall.levels.join(", ")})` : ""}` : "";
    lines.push(`on call: ${facts.onCall.email} in ${name} schedule ${facts.onCall.schedule}${level}`);
  }
  return lines;
}

/** What the requester learns of an auto-approval at request time. */
export interface AutoApproved {
  rule: string;
  facts: string[];
  grant: Grant;
  /** The requester's ready-to-paste line, holding the grant's secret: deliver it, never log it. */
  connection: ConnectionLine;
}

/**
 * Records the approval by a rule, in the transaction that created the request: a decision row with
 * no approver and the rule's name, the audit record of the facts it used, the request approved and
 * the grant issued.
 */
export async function approveByRuleIn(
  tx: Executor,
  grants: GrantsService,
  request: AccessRequest,
  facts: RuleFacts,
  now: Date,
  ended: Grant[],
  stepUp?: { authTime: string; personId: string },
): Promise<{ request: AccessRequest; grant: Grant; connection: ConnectionLine; decision: Decision }> {
  const [decision] = await tx
    .insert(decisions)
    .values({ id: newId("dec"), requestId: request.id, approverId: null, rule: facts.rule, verdict: "approve", reason: `approved by rule ${facts.rule}`, createdAt: now })
    .returning();
  const [approved] = await tx
    .update(accessRequests)
    .set({ state: "approved", decidedAt: now })
    .where(and(eq(accessRequests.id, request.id), eq(accessRequests.state, "pending")))
    .returning();
  if (!approved) throw new RequestNotPending(request.id, "decided", []);
  await appendAudit(tx, now, {
    kind: "request.auto_approved",
    actorId: null,
    target: request.target,
    requestId: request.id,
    data: { rule: facts.rule, facts: { ...facts }, ...(stepUp ? { stepUp } : {}) },
  });
  await appendAudit(tx, now, {
    kind: "request.approved",
    actorId: null,
    target: request.target,
    requestId: request.id,
    data: { reason: `approved by rule ${facts.rule}`, rule: facts.rule },
  });
  const issued = await grants.issueIn(tx, approved, null, now, ended);
  return { ...issued, decision: decision! };
}
