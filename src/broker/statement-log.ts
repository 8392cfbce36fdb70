import { sql } from "drizzle-orm";
import type { Database } from "../db/client.js";
import { sessionStatements } from "../db/schema.js";

export type StatementRecord = typeof sessionStatements.$inferInsert;

export interface StatementOutcome {
  sessionId: string;
  seq: number;
  durationMs: number;
  rows: number | null;
  commandTag: string | null;
  error: string | null;
}

/**
 * The PostgreSQL statement timeline, written with group commit: every statement's row must be in
 * the database before the statement reaches the target, so `record` resolves only once its row is
 * committed, and rows arriving while a write is in flight go together in the next one. Outcomes
 * (duration, rows, tag, error) are not on the statement's path: they are batched and written a
 * moment later.
 */
export class StatementLog {
  #queue: { row: StatementRecord; resolve: () => void; reject: (error: unknown) => void }[] = [];
  #writing = false;
  #outcomes: StatementOutcome[] = [];
  #outcomeTimer: NodeJS.Timeout | undefined;
  #outcomeFlush: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Database,
    private readonly onError: (error: unknown) => void = () => {},
    private readonly outcomeDelayMs = 200,
  ) {}

  record(rows: StatementRecord[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    const promises = rows.map(
      (row) => new Promise<void>((resolve, reject) => this.#queue.push({ row, resolve, reject })),
    );
    if (!this.#writing) void this.#drain();
    return Promise.all(promises).then(() => undefined);
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, 500);
      try {
        await this.db.insert(sessionStatements).values(batch.map((b) => b.row));
        for (const item of batch) item.resolve();
      } catch (error) {
        for (const item of batch) item.reject(error);
      }
    }
    this.#writing = false;
  }

  complete(outcome: StatementOutcome): void {
    this.#outcomes.push(outcome);
    if (this.#outcomes.length >= 500) void this.flushOutcomes();
    else this.#outcomeTimer ??= setTimeout(() => void this.flushOutcomes(), this.outcomeDelayMs);
  }

  /** Writes the outcomes collected so far (also called at session close and shutdown). */
  flushOutcomes(): Promise<void> {
    clearTimeout(this.#outcomeTimer);
    this.#outcomeTimer = undefined;
    const batch = this.#outcomes.splice(0);
    if (batch.length === 0) return this.#outcomeFlush;
    this.#outcomeFlush = this.#outcomeFlush.then(async () => {
      try {
        const values = sql.join(
          batch.map(
            (o) =>
              sql`(${o.sessionId}, ${o.seq}::int, ${Math.round(o.durationMs)}::int, ${o.rows}::int, ${o.commandTag}::text, ${o.error}::text)`,
          ),
          sql`, `,
        );
        await this.db.execute(sql`
          update session_statements s
             set duration_ms = v.duration_ms, rows = v.rows, command_tag = v.command_tag, error = v.error
            from (values ${values}) as v(session_id, seq, duration_ms, rows, command_tag, error)
           where s.session_id = v.session_id and s.seq = v.seq`);
      } catch (error) {
        this.onError(error);
      }
    });
    return this.#outcomeFlush;
  }
}
