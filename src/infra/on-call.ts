import type { OnCallAnswer, OnCallPort, OnCallProvider, OnCallPerson } from "../broker/auto-approval.js";
import type { Config } from "../config/schema.js";

/** How long an answer of a provider is reused (per provider and schedule); failures are not kept. */
export const ON_CALL_CACHE_MS = 60_000;
const TIMEOUT_MS = 5_000;

type OnCallConfig = NonNullable<Config["onCall"]>;

/**
 * Who is on call now, from PagerDuty (REST API v2: `GET /oncalls`, then `GET /users/{id}` for an
 * email the listing leaves out) and Opsgenie (`GET /v2/schedules/{id}/on-calls`). A provider that
 * cannot be reached, times out or answers anything but 2xx with the documented shape gives
 * `{ ok: false, problem }`: the rule asking does not apply (fail closed).
 */
export class OnCallClient implements OnCallPort {
  readonly #cache = new Map<string, { at: number; answer: OnCallAnswer & { ok: true } }>();
  readonly #emails = new Map<string, { at: number; email: string }>();

  constructor(
    private readonly config: OnCallConfig,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  async onCall(provider: OnCallProvider, schedule: string, now: Date): Promise<OnCallAnswer> {
    const key = `${provider}\n${schedule}`;
    const cached = this.#cache.get(key);
    if (cached && now.getTime() - cached.at >= 0 && now.getTime() - cached.at < ON_CALL_CACHE_MS) return cached.answer;
    let answer: OnCallAnswer;
    try {
      answer = provider === "pagerduty" ? await this.#pagerduty(schedule, now) : await this.#opsgenie(schedule, now);
    } catch (error) {
      answer = { ok: false, problem: `${providerName(provider)} could not be reached (${error instanceof Error ? error.message : String(error)})` };
    }
    if (answer.ok) this.#cache.set(key, { at: now.getTime(), answer });
    return answer;
  }

  async #pagerduty(schedule: string, now: Date): Promise<OnCallAnswer> {
    const pd = this.config.pagerduty;
    if (!pd) return { ok: false, problem: "PagerDuty is not configured (onCall.pagerduty)" };
    const headers = { authorization: `Token token=${pd.token}`, accept: "application/vnd.pagerduty+json;version=2" };
    const url = new URL("oncalls", withSlash(pd.apiUrl));
    url.searchParams.append("schedule_ids[]", schedule);
    url.searchParams.set("since", now.toISOString());
    url.searchParams.set("until", new Date(now.getTime() + 1000).toISOString());
    url.searchParams.set("limit", "100");
    const body = await this.#get(url, headers, "PagerDuty");
    if ("problem" in body) return { ok: false, problem: body.problem };
    const oncalls = (body.json as { oncalls?: unknown }).oncalls;
    if (!Array.isArray(oncalls)) return { ok: false, problem: "PagerDuty answered without an oncalls list" };
    const people: OnCallPerson[] = [];
    for (const entry of oncalls as { user?: { id?: unknown; email?: unknown }; escalation_level?: unknown; schedule?: { id?: unknown } | null; start?: unknown; end?: unknown }[]) {
      // Only this schedule's entries, and only those covering now (a listing may hold the edges).
      if (entry.schedule && typeof entry.schedule.id === "string" && entry.schedule.id !== schedule) continue;
      if (typeof entry.start === "string" && Date.parse(entry.start) > now.getTime()) continue;
      if (typeof entry.end === "string" && Date.parse(entry.end) <= now.getTime()) continue;
      const id = entry.user?.id;
      if (typeof id !== "string") continue;
      let email = typeof entry.user?.email === "string" ? entry.user.email : undefined;
      if (!email) {
        const cached = this.#emails.get(id);
        if (cached && now.getTime() - cached.at < ON_CALL_CACHE_MS) email = cached.email;
        else {
          const user = await this.#get(new URL(`users/${encodeURIComponent(id)}`, withSlash(pd.apiUrl)), headers, "PagerDuty");
          if ("problem" in user) return { ok: false, problem: user.problem };
          const found = (user.json as { user?: { email?: unknown } }).user?.email;
          if (typeof found !== "string") return { ok: false, problem: `PagerDuty answered without the email of user ${id}` };
          email = found;
          this.#emails.set(id, { at: now.getTime(), email });
        }
      }
      people.push({ email: email.toLowerCase(), level: typeof entry.escalation_level === "number" ? entry.escalation_level : null });
    }
    return { ok: true, people };
  }

  async #opsgenie(schedule: string, now: Date): Promise<OnCallAnswer> {
    const og = this.config.opsgenie;
    if (!og) return { ok: false, problem: "Opsgenie is not configured (onCall.opsgenie)" };
    const url = new URL(`v2/schedules/${encodeURIComponent(schedule)}/on-calls`, withSlash(og.apiUrl));
    url.searchParams.set("scheduleIdentifierType", "id");
    url.searchParams.set("flat", "false");
    // Opsgenie's reference: yyyy-MM-dd'T'HH:mm:ssZ, like 2017-01-15T08:00:00+02:00 (the + is escaped by URLSearchParams).
    url.searchParams.set("date", now.toISOString().replace(/\.\d{3}Z$/, "+00:00"));
    const body = await this.#get(url, { authorization: `GenieKey ${og.apiKey}` }, "Opsgenie");
    if ("problem" in body) return { ok: false, problem: body.problem };
    const participants = (body.json as { data?: { onCallParticipants?: unknown } }).data?.onCallParticipants;
    if (!Array.isArray(participants)) return { ok: false, problem: "Opsgenie answered without onCallParticipants" };
    const people: OnCallPerson[] = [];
    // Users directly, or inside an escalation or team that is on call (flat=false nests them).
    const walk = (list: unknown[]) => {
      for (const p of list as { name?: unknown; type?: unknown; onCallParticipants?: unknown }[]) {
        if (p?.type === "user" && typeof p.name === "string") people.push({ email: p.name.toLowerCase(), level: null });
        if (Array.isArray(p?.onCallParticipants)) walk(p.onCallParticipants);
      }
    };
    walk(participants);
    return { ok: true, people };
  }

  async #get(url: URL, headers: Record<string, string>, name: string): Promise<{ json: unknown } | { problem: string }> {
    const response = await this.fetchImpl(url, { headers, signal: AbortSignal.timeout(TIMEOUT_MS), redirect: "error" });
    if (!response.ok) {
      await response.body?.cancel();
      return { problem: `${name} answered HTTP ${response.status} to ${url.pathname}` };
    }
    try {
      const json: unknown = await response.json();
      if (typeof json !== "object" || json === null) return { problem: `${name} answered something other than a JSON object` };
      return { json };
    } catch {
      return { problem: `${name} answered something other than JSON` };
    }
  }
}

const withSlash = (base: string) => (base.endsWith("/") ? base : `${base}/`);
const providerName = (provider: OnCallProvider) => (provider === "pagerduty" ? "PagerDuty" : "Opsgenie");
