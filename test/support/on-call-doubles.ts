import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Local doubles of the on-call endpoints jitgate asks, answering with the shapes of their API
 * references:
 *
 * - PagerDuty REST API v2 `GET /oncalls?schedule_ids[]=…&since=…&until=…` →
 *   `{ oncalls: [ { escalation_policy, escalation_level, schedule, user: { id, type, summary, self, html_url }, start, end } ], limit, offset, more, total }`
 *   (the user reference carries no email) and `GET /users/{id}` → `{ user: { id, type, name, email, … } }`;
 *   auth `Authorization: Token token=<key>`, else 401 `{ error: { message: "Invalid Credentials", code: 2001 } }`.
 * - Opsgenie `GET /v2/schedules/{id}/on-calls?flat=false` →
 *   `{ data: { _parent: { id, name, enabled }, onCallParticipants: [ { id, name, type: "user" | "escalation" | "team", onCallParticipants? } ] }, took, requestId }`;
 *   auth `Authorization: GenieKey <key>`, else 401 `{ message: "Could not authenticate", took, requestId }`.
 */
export interface PagerDutyOnCall {
  userId: string;
  level: number;
  /** Default: a shift covering any time a test sets its clock to. */
  start?: string;
  end?: string | null;
}

export type OpsgenieParticipant = { name: string; type: "user" } | { name: string; type: "escalation" | "team"; onCallParticipants: OpsgenieParticipant[] };

export class OnCallDoubles {
  readonly pagerDutyToken: string;
  readonly opsgenieKey: string;
  /** PagerDuty users by id: their email as `GET /users/{id}` gives it. */
  readonly pagerDutyUsers = new Map<string, { name: string; email: string }>();
  /** Who is on call per PagerDuty schedule id. */
  readonly pagerDutySchedules = new Map<string, PagerDutyOnCall[]>();
  /** Who is on call per Opsgenie schedule id. */
  readonly opsgenieSchedules = new Map<string, OpsgenieParticipant[]>();
  /** Answer every request with this status (a provider down): 0 = serve normally. */
  failWith = { pagerduty: 0, opsgenie: 0 };
  /** Every request as received: method, path with query, the Authorization header. */
  readonly requests: { provider: "pagerduty" | "opsgenie"; url: string; authorization: string | undefined; status: number }[] = [];
  #server: Server | undefined;

  constructor(options: { pagerDutyToken: string; opsgenieKey: string }) {
    this.pagerDutyToken = options.pagerDutyToken;
    this.opsgenieKey = options.opsgenieKey;
  }

  get pagerDutyUrl(): string {
    return `http://127.0.0.1:${(this.#server!.address() as AddressInfo).port}/pagerduty`;
  }

  get opsgenieUrl(): string {
    return `http://127.0.0.1:${(this.#server!.address() as AddressInfo).port}/opsgenie`;
  }

  async start(): Promise<void> {
    this.#server = createServer((req, res) => this.#handle(req, res));
    await new Promise<void>((resolve) => this.#server!.listen(0, "127.0.0.1", resolve));
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://double");
    const provider = url.pathname.startsWith("/opsgenie/") ? "opsgenie" : "pagerduty";
    const answer = (status: number, body: unknown) => {
      this.requests.push({ provider, url: `${url.pathname}${url.search}`, authorization: req.headers.authorization, status });
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.method !== "GET") return answer(405, { error: { message: "Method Not Allowed" } });
    if (provider === "pagerduty") {
      if (req.headers.authorization !== `Token token=${this.pagerDutyToken}`) return answer(401, { error: { message: "Invalid Credentials", code: 2001 } });
      if (this.failWith.pagerduty) return answer(this.failWith.pagerduty, { error: { message: "Internal Server Error", code: 2000 } });
      const path = url.pathname.slice("/pagerduty".length);
      if (path === "/oncalls") {
        const ids = url.searchParams.getAll("schedule_ids[]");
        if (!url.searchParams.get("since") || !url.searchParams.get("until")) return answer(400, { error: { message: "Invalid Input Provided", code: 2001, errors: ["since and until are required here"] } });
        const oncalls = ids.flatMap((id) =>
          (this.pagerDutySchedules.get(id) ?? []).map((entry) => {
            const user = this.pagerDutyUsers.get(entry.userId);
            return {
              escalation_policy: { id: "PEP0001", type: "escalation_policy_reference", summary: "Databases", self: "https://api.pagerduty.com/escalation_policies/PEP0001" },
              escalation_level: entry.level,
              schedule: { id, type: "schedule_reference", summary: `Schedule ${id}`, self: `https://api.pagerduty.com/schedules/${id}` },
              user: { id: entry.userId, type: "user_reference", summary: user?.name ?? entry.userId, self: `https://api.pagerduty.com/users/${entry.userId}`, html_url: `https://acme.pagerduty.com/users/${entry.userId}` },
              start: entry.start ?? "2020-01-01T00:00:00Z",
              end: entry.end === undefined ? "2099-01-01T00:00:00Z" : entry.end,
            };
          }),
        );
        return answer(200, { oncalls, limit: 100, offset: 0, more: false, total: null });
      }
      const user = /^\/users\/([^/]+)$/.exec(path);
      if (user) {
        const found = this.pagerDutyUsers.get(decodeURIComponent(user[1]!));
        if (!found) return answer(404, { error: { message: "Not Found", code: 2100 } });
        return answer(200, { user: { id: user[1], type: "user", name: found.name, summary: found.name, email: found.email, time_zone: "Europe/Berlin", role: "user" } });
      }
      return answer(404, { error: { message: "Not Found", code: 2100 } });
    }
    const took = 0.01;
    const requestId = "00000000-0000-4000-8000-000000000000";
    if (req.headers.authorization !== `GenieKey ${this.opsgenieKey}`) return answer(401, { message: "Could not authenticate", took, requestId });
    if (this.failWith.opsgenie) return answer(this.failWith.opsgenie, { message: "Internal Server Error", took, requestId });
    const match = /^\/opsgenie\/v2\/schedules\/([^/]+)\/on-calls$/.exec(url.pathname);
    if (!match) return answer(404, { message: "Not Found", took, requestId });
    const date = url.searchParams.get("date");
    if (date !== null && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/.test(date)) return answer(422, { message: `Invalid date [${date}]`, took, requestId });
    const id = decodeURIComponent(match[1]!);
    const participants = this.opsgenieSchedules.get(id);
    if (!participants) return answer(404, { message: `No schedule exists with identifier [${id}]`, took, requestId });
    const shaped = (list: OpsgenieParticipant[]): unknown[] =>
      list.map((p, i) => ({ id: `${id}-${i}`, name: p.name, type: p.type, ...(p.type !== "user" ? { onCallParticipants: shaped(p.onCallParticipants) } : {}) }));
    return answer(200, { data: { _parent: { id, name: `Schedule ${id}`, enabled: true }, onCallParticipants: shaped(participants) }, took, requestId });
  }
}
