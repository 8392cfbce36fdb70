import type { Queue } from "bullmq";
import { Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { Database } from "../db/client.js";
import { OperationCounts } from "../broker/operation-counts.js";
import { sendJson, type HttpServer } from "../infra/web/http-server.js";

/** A check's failure that is not about reaching something: shown as its message alone. */
export class NotReadyError extends Error {}

export interface Check {
  name: string;
  check(): Promise<void>;
}

export interface OperationsOptions {
  db: Database;
  /** What must answer for the gateway to be ready: database and Redis. */
  checks: Check[];
  queues: Queue[];
  /** The local audit journal's backlog (bytes not yet shipped to the database), when there is one. */
  auditJournal?: { readonly backlogBytes: number } | undefined;
  now?: () => Date;
  checkTimeoutMs?: number;
}

async function withTimeout(run: () => Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      run(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The Prometheus registry; gauges are read from the database and the queues at scrape time. */
export function createMetrics(options: OperationsOptions): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "jitgate_process_" });
  const now = options.now ?? (() => new Date());
  const counts = new OperationCounts(options.db);
  new Gauge({
    name: "jitgate_requests",
    help: "Access requests by state",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      this.reset();
      const rows = await counts.requestsByState();
      for (const row of rows) this.set({ state: row.state }, row.count);
    },
  });
  new Gauge({
    name: "jitgate_live_grants",
    help: "Grants that are active and not past their expiry",
    registers: [registry],
    async collect() {
      this.set(await counts.liveGrants(now()));
    },
  });
  new Gauge({
    name: "jitgate_live_sessions",
    help: "Proxy sessions open now",
    registers: [registry],
    async collect() {
      this.set(await counts.liveSessions());
    },
  });
  // Read from the audit log, so every replica reports the same numbers and a restart loses none.
  // A scrape collects the four overdue gauges below at once: they share the query in flight.
  let overdue: ReturnType<OperationCounts["overdueGrants"]> | undefined;
  const overdueGrants = () => {
    overdue ??= counts.overdueGrants().finally(() => {
      overdue = undefined;
    });
    return overdue;
  };
  new Gauge({
    name: "jitgate_grants_found_overdue",
    help: "Grants found past their end by something other than their expiry job (lost or late job), by what found them",
    labelNames: ["found_by"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { foundBy, count } of (await overdueGrants()).byFinder) this.set({ found_by: foundBy }, count);
    },
  });
  new Gauge({
    name: "jitgate_grant_overdue_seconds",
    help: "How late overdue grants were found after their end (quantiles over every one found; _sum and _count alongside)",
    labelNames: ["quantile"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { quantile, ms } of (await overdueGrants()).lateness.quantilesMs) this.set({ quantile: String(quantile) }, ms / 1000);
    },
  });
  new Gauge({
    name: "jitgate_grant_overdue_seconds_sum",
    help: "Total lateness of every grant found overdue",
    registers: [registry],
    async collect() {
      this.set((await overdueGrants()).lateness.sumMs / 1000);
    },
  });
  new Gauge({
    name: "jitgate_grant_overdue_seconds_count",
    help: "Grants found overdue",
    registers: [registry],
    async collect() {
      this.set((await overdueGrants()).lateness.count);
    },
  });
  new Gauge({
    name: "jitgate_queue_lag_seconds",
    help: "How long the oldest job that is due has been waiting for a worker",
    labelNames: ["queue"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const queue of options.queues) {
        const [oldest] = await queue.getJobs(["waiting"], 0, 0, true);
        const due = oldest ? oldest.timestamp + (oldest.delay ?? 0) : undefined;
        this.set({ queue: queue.name }, due === undefined ? 0 : Math.max(0, (Date.now() - due) / 1000));
      }
    },
  });
  new Gauge({
    name: "jitgate_queue_jobs",
    help: "Jobs by queue and state",
    labelNames: ["queue", "state"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const queue of options.queues) {
        const counts = await queue.getJobCounts("waiting", "active", "delayed", "failed");
        for (const [state, count] of Object.entries(counts)) this.set({ queue: queue.name, state }, count);
      }
    },
  });
  const journal = options.auditJournal;
  if (journal) {
    new Gauge({
      name: "jitgate_audit_journal_unshipped_bytes",
      help: "Bytes of statement records in this replica's audit journal not yet shipped to the database (statements are refused at audit.journal.maxBytes)",
      registers: [registry],
      collect() {
        this.set(journal.backlogBytes);
      },
    });
  }
  return registry;
}

/** `/healthz` (the process answers), `/readyz` (database and Redis answer, the audit journal takes statements), `/metrics`. */
export function mountOperations(server: HttpServer, options: OperationsOptions): Registry {
  const registry = createMetrics(options);
  const timeout = options.checkTimeoutMs ?? 2_000;
  server.route("GET", "/healthz", (_req, res) => sendJson(res, 200, { status: "ok" }));
  server.route("GET", "/readyz", async (_req, res) => {
    const results = await Promise.all(
      options.checks.map(async ({ name, check }) => {
        try {
          await withTimeout(check, timeout);
          return [name, "ok"] as const;
        } catch (error) {
          if (error instanceof NotReadyError) return [name, error.message] as const;
          return [name, `unreachable: ${(error as Error).message}`] as const;
        }
      }),
    );
    const ready = results.every(([, status]) => status === "ok");
    sendJson(res, ready ? 200 : 503, { status: ready ? "ready" : "not ready", checks: Object.fromEntries(results) });
  });
  server.route("GET", "/metrics", async (_req, res) => {
    try {
      const body = await registry.metrics();
      res.writeHead(200, { "content-type": registry.contentType });
      res.end(body);
    } catch (error) {
      sendJson(res, 503, { error: `metrics unavailable: ${(error as Error).message}` });
    }
  });
  return registry;
}
