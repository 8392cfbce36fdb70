import { and, eq, gt, isNull, sql } from "drizzle-orm";
import type { Executor } from "../db/client.js";
import { accessRequests, grants, sessions } from "../db/schema.js";

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
}
