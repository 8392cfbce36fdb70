import { and, eq, gt, isNull, sql } from "drizzle-orm";

/** Quantiles of how late overdue grants were found, as a Prometheus summary reports them. */
export const LATENESS_QUANTILES = [0.5, 0.9, 0.99, 1] as const;
import type { Executor } from "../db/client.js";
import { accessRequests, auditEvents, grants, sessions } from "../db/schema.js";

/** The counts `/metrics` reports, read from the database at scrape time (the same on every replica). */
export class OperationCounts {
  constructor(private readonly db: Executor) {}

  async requestsByState(): Promise<{ state: string; count: number }[]> {
    return this.db
      .select({ state: accessRequests.state, count: sql<number>`count(*)::int` })
      .from(accessRequests)
      .groupBy(accessRequests.state);
  }

  /** Grants a login would accept now: active and not past their end. */
  async liveGrants(now: Date): Promise<number> {
    const [row] = await this.db
      .select({ count: sql<number>`count(*)::int` })
      .from(grants)
      .where(and(eq(grants.state, "active"), gt(grants.expiresAt, now)));
    return row?.count ?? 0;
  }

  async liveSessions(): Promise<number> {
    const [row] = await this.db.select({ count: sql<number>`count(*)::int` }).from(sessions).where(isNull(sessions.endedAt));
    return row?.count ?? 0;
  }

  /**
   * Grants that something other than their expiry job found past their end (the job was lost or
   * late), by what found them, with the quantiles, sum and count of how late (audit `grant.expired`
   * records marked `foundLate`).
   */
  async overdueGrants(): Promise<{
    byFinder: { foundBy: string; count: number }[];
    lateness: { count: number; sumMs: number; quantilesMs: { quantile: number; ms: number }[] };
  }> {
    const foundLate = and(eq(auditEvents.kind, "grant.expired"), sql`${auditEvents.data}->>'foundLate' = 'true'`);
    const lateMs = sql`(${auditEvents.data}->>'lateMs')::double precision`;
    const byFinder = await this.db
      .select({ foundBy: sql<string>`${auditEvents.data}->>'foundBy'`, count: sql<number>`count(*)::int` })
      .from(auditEvents)
      .where(foundLate)
      .groupBy(sql`${auditEvents.data}->>'foundBy'`);
    const quantiles = sql.raw(`array[${LATENESS_QUANTILES.join(",")}]::double precision[]`);
    const [row] = await this.db
      .select({
        count: sql<number>`count(*)::int`,
        sumMs: sql<number>`coalesce(sum(${lateMs}), 0)::double precision`,
        quantilesMs: sql<number[] | null>`percentile_cont(${quantiles}) within group (order by ${lateMs})`,
      })
      .from(auditEvents)
      .where(foundLate);
    return {
      byFinder,
      lateness: {
        count: row?.count ?? 0,
        sumMs: Number(row?.sumMs ?? 0),
        quantilesMs: row?.quantilesMs ? LATENESS_QUANTILES.map((quantile, i) => ({ quantile, ms: Number(row.quantilesMs![i]) })) : [],
      },
    };
  }
}
