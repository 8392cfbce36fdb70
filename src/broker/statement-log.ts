import { getTableName, sql } from "drizzle-orm";
import type { Database } from "../db/client.js";
import { sessionSealKeys, sessionStatements, statementResults } from "../db/schema.js";
import type { ResultRecord, SealKeyRecord } from "./results.js";

/**
 * A statement's row. Its start may come as epoch milliseconds: the proxy's hot path builds no Date
 * for it (issue 15), and the audit journal stores a number anyway; the Date is built at the insert.
 */
export type StatementRecord = Omit<typeof sessionStatements.$inferInsert, "startedAt"> & { startedAt: Date | number };

const MAX_WRITERS = 3;

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
 * moment later. The gateway gives it a pool with asynchronous commit: waiting for a WAL flush per
 * batch made every statement through the proxy wait ~20 ms on this machine's disk; the row is
 * still committed and visible before the statement runs, and only a crash of the database server
 * itself could lose the last fraction of a second of it.
 */
export class StatementLog implements StatementRecorder {
  #queue: { row: StatementRecord; resolve: () => void; reject: (error: unknown) => void }[] = [];
  #writers = 0;
  #outcomes: StatementOutcome[] = [];
  #outcomeTimer: NodeJS.Timeout | undefined;
  #outcomeFlush: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Database,
    private readonly onError: (error: unknown) => void = () => {},
    private readonly outcomeDelayMs = 200,
  ) {
    // drizzle keeps the driver (a node-postgres Pool or a PGlite instance) on `$client`; only
    // node-postgres takes a named (prepared) query config.
    const client = (db as unknown as { $client: { query: (...args: unknown[]) => Promise<unknown> } }).$client;
    const nodePostgres = "totalCount" in client;
    this.#driver = { query: (config) => (nodePostgres ? client.query(config) : client.query(config.text, config.values)) };
  }

  record(rows: StatementRecord[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    const promises = rows.map(
      (row) => new Promise<void>((resolve, reject) => this.#queue.push({ row, resolve, reject })),
    );
    if (this.#writers < MAX_WRITERS) void this.#drain();
    return Promise.all(promises).then(() => undefined);
  }

  /** Up to MAX_WRITERS batches in flight: a row that arrives mid-write waits one round trip, not two. */
  async #drain(): Promise<void> {
    this.#writers += 1;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, 500);
      try {
        await this.insert(batch.map((b) => b.row));
        for (const item of batch) item.resolve();
      } catch (error) {
        for (const item of batch) item.reject(error);
      }
    }
    this.#writers -= 1;
  }

  /**
   * One prepared INSERT … SELECT FROM unnest(…) per batch, straight on the driver: this runs for
   * every statement through the proxy, and building the query through the ORM each time cost more
   * than the insert. A row already there (same session and seq) is left as it is, so the journal's
   * shipper may replay what a crash left unconfirmed.
   */
  async insert(rows: StatementRecord[]): Promise<void> {
    if (rows.length === 0) return;
    const column = <T>(pick: (row: StatementRecord) => T) => rows.map(pick);
    const values = [
      column((r) => r.sessionId),
      column((r) => r.seq),
      column((r) => r.protocol),
      column((r) => r.kind),
      column((r) => r.text),
      column((r) => (r.parameters == null ? null : JSON.stringify(r.parameters))),
      column((r) => r.verdict),
      column((r) => r.rule ?? null),
      column((r) => r.heldId ?? null),
      column((r) => (r.startedAt instanceof Date ? r.startedAt : new Date(r.startedAt)).toISOString()),
      column((r) => (r.durationMs == null ? null : Math.round(r.durationMs))),
      column((r) => r.rows ?? null),
      column((r) => r.commandTag ?? null),
      column((r) => r.error ?? null),
    ];
    await this.#driver.query(
      {
        name: "jitgate_insert_statements",
        // A row shipped again after a crash keeps what it has, but takes an outcome it lacked.
        text: `insert into session_statements (session_id, seq, protocol, kind, text, parameters, verdict, rule, held_id, started_at, duration_ms, rows, command_tag, error)
               select * from unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::int[], $12::int[], $13::text[], $14::text[])
               on conflict (session_id, seq) do update
                 set duration_ms = excluded.duration_ms, rows = excluded.rows, command_tag = excluded.command_tag, error = excluded.error
               where excluded.duration_ms is not null and session_statements.duration_ms is null`,
        values,
      },
    );
  }

  readonly #driver: { query(config: { name: string; text: string; values: unknown[] }): Promise<unknown> };

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
        await this.updateOutcomes(batch);
      } catch (error) {
        this.onError(error);
      }
    });
    return this.#outcomeFlush;
  }

  /** Direct writes need no shipping: written is shipped once the outcomes are. */
  async shipped(): Promise<boolean> {
    await this.flushOutcomes();
    return true;
  }

  recordResult(result: ResultRecord): void {
    this.insertResults([result]).catch((error: unknown) => this.onError(error));
  }

  recordSealKey(key: SealKeyRecord): void {
    this.insertSealKeys([key]).catch((error: unknown) => this.onError(error));
  }

  /** Results of statements (idempotent: a replayed one is left as it is). */
  async insertResults(rows: ResultRecord[]): Promise<void> {
    if (rows.length === 0) return;
    // One prepared statement per batch, as the statements' own insert: this runs for most statements.
    const column = <T>(pick: (row: ResultRecord) => T) => rows.map(pick);
    await this.#driver.query({
      name: "jitgate_insert_results",
      text: `insert into ${getTableName(statementResults)} (session_id, seq, columns, data, rows_kept, rows_total, cut, sealed)
             select * from unnest($1::text[], $2::int[], $3::jsonb[], $4::text[], $5::int[], $6::int[], $7::boolean[], $8::text[])
             on conflict (session_id, seq) do nothing`,
      values: [
        column((r) => r.sessionId),
        column((r) => r.seq),
        column((r) => JSON.stringify(r.columns)),
        column((r) => r.data),
        column((r) => r.rowsKept),
        column((r) => r.rowsTotal),
        column((r) => r.cut),
        column((r) => r.sealed),
      ],
    });
  }

  /** Sessions' wrapped data keys (idempotent). */
  async insertSealKeys(rows: SealKeyRecord[]): Promise<void> {
    if (rows.length === 0) return;
    await this.db.insert(sessionSealKeys).values(rows).onConflictDoNothing();
  }

  /** Sets the outcome columns of statements already inserted (idempotent). */
  async updateOutcomes(batch: StatementOutcome[]): Promise<void> {
    if (batch.length === 0) return;
    const values = sql.join(
      batch.map(
        (o) => sql`(${o.sessionId}, ${o.seq}::int, ${Math.round(o.durationMs)}::int, ${o.rows}::int, ${o.commandTag}::text, ${o.error}::text)`,
      ),
      sql`, `,
    );
    await this.db.execute(sql`
      update session_statements s
         set duration_ms = v.duration_ms, rows = v.rows, command_tag = v.command_tag, error = v.error
        from (values ${values}) as v(session_id, seq, duration_ms, rows, command_tag, error)
       where s.session_id = v.session_id and s.seq = v.seq`);
  }
}

/**
 * What the proxy records statements through: straight into the database (StatementLog) or through
 * the local audit journal (JournaledStatements).
 */
export interface StatementRecorder {
  /** Resolves once the rows are recorded (durably, per the journal's mode); a rejection refuses the statements. */
  record(rows: StatementRecord[]): Promise<void>;
  complete(outcome: StatementOutcome): void;
  /** Outcomes so far are recorded (and, journaled, shipped, within a bounded wait). */
  flushOutcomes(): Promise<void>;
  /**
   * True once everything recorded before the call is in `session_statements`; false when that did
   * not happen within `timeoutMs` (the database does not take the records now).
   */
  shipped(timeoutMs: number): Promise<boolean>;
  /** A statement's result (issue 16), after the statement completed: not on any statement's path. */
  recordResult(result: ResultRecord): void;
  /** A session's wrapped data key, before the first result it seals. */
  recordSealKey(key: SealKeyRecord): void;
}
