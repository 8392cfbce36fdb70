import type { StatementLog, StatementOutcome, StatementRecord, StatementRecorder } from "./statement-log.js";
import type { ResultRecord, SealKeyRecord } from "./results.js";

/**
 * The local audit journal as the broker sees it (infra/journal.ts implements it on a file): opaque
 * records appended in order, read back from a position, and a shipped mark.
 */
export interface AuditJournalPort {
  /** Past the last appended record. */
  readonly end: number;
  /** Past the last written record (what `read` can return). */
  readonly written: number;
  readonly shipped: number;
  readonly unshippedBytes: number;
  readonly maxBytes: number;
  /** Why capped appends are refused now, if they are (the journal is full). */
  readonly refusing: Error | undefined;
  append(payload: Buffer, options: { durable: boolean; capped: boolean }): Promise<void>;
  read(from: number, maxRecords: number): Promise<{ records: Buffer[]; next: number }>;
  markShipped(position: number): Promise<void>;
  onWritten(listener: () => void): () => void;
  close(): Promise<void>;
}

/** A statement's row or an outcome, as one journal record (JSON; short keys, it is on the hot path). */
type JournalRecord =
  | { t: "s"; s: string; q: number; p: string; k: string; x: string; a: (string | null)[] | null; v: string; r: string | null; h: string | null; at: number }
  | { t: "o"; s: string; q: number; d: number; n: number | null; c: string | null; e: string | null }
  /** A statement's result (issue 16): rows deflated and originals sealed already (never plain here). */
  | { t: "r"; r: ResultRecord }
  /** A session's data key, wrapped by a seal key. */
  | { t: "k"; k: SealKeyRecord };

const BATCH_RECORDS = 2_000;
const SHIP_DELAY_MS = 20;
const EAGER_SHIP_BYTES = 1024 * 1024;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5_000;
/** How long closing a session waits for its records to reach the database before the summary is written. */
const CLOSE_WAIT_MS = 2_000;

/**
 * The statement timeline through the local audit journal: `record` resolves once the rows are in
 * the journal (written, or synced with `fsync: always`), and a shipper moves them into
 * `session_statements` in batches behind the statements' backs. Outcomes go through the journal
 * too, so the order is kept: a statement's row is always shipped before its outcome.
 *
 * Shipping is idempotent (rows keyed by session and seq; outcomes are updates), so a crash between
 * a batch's insert and its shipped mark only replays it.
 */
export class JournaledStatements implements StatementRecorder {
  #running: Promise<void> | undefined;
  #again = false;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = RETRY_MIN_MS;
  #waiters: { target: number; resolve: (shipped: boolean) => void; timer: NodeJS.Timeout }[] = [];
  #stopped = false;
  #failure: { since: Date; error: unknown } | undefined;
  readonly #unsubscribe: () => void;

  constructor(
    private readonly journal: AuditJournalPort,
    private readonly writer: Pick<StatementLog, "insert" | "updateOutcomes" | "insertResults" | "insertSealKeys">,
    private readonly onError: (error: unknown, what: string) => void = () => {},
  ) {
    this.#unsubscribe = journal.onWritten(() => this.#soon());
  }

  /**
   * Ships a moment after a write rather than after every one: a batch then carries many groups'
   * records, and the per-batch work (read, insert, update, checkpoint) stays off the statements'
   * cores. A waiter (an audit page, a closing session) or a large backlog ships at once.
   */
  #soon(): void {
    if (this.#delay || this.#running) return;
    if (this.journal.written - this.journal.shipped >= EAGER_SHIP_BYTES) return this.#kick();
    this.#delay = setTimeout(() => {
      this.#delay = undefined;
      this.#kick();
    }, SHIP_DELAY_MS);
    this.#delay.unref();
  }

  #delay: NodeJS.Timeout | undefined;

  record(rows: StatementRecord[]): Promise<void> {
    if (rows.length === 1) return this.journal.append(encodeStatement(rows[0]!), { durable: true, capped: true });
    return Promise.all(rows.map((row) => this.journal.append(encodeStatement(row), { durable: true, capped: true }))).then(() => undefined);
  }

  complete(outcome: StatementOutcome): void {
    const record: JournalRecord = { t: "o", s: outcome.sessionId, q: outcome.seq, d: Math.round(outcome.durationMs), n: outcome.rows, c: outcome.commandTag, e: outcome.error };
    this.journal.append(Buffer.from(JSON.stringify(record)), { durable: false, capped: false }).catch((error: unknown) => this.onError(error, "audit journal"));
  }

  /**
   * Results go after their statement, on the same durability path but not awaited by anyone: the
   * statement already ran. Uncapped like outcomes (the target's `record` caps bound them).
   */
  recordResult(result: ResultRecord): void {
    const record: JournalRecord = { t: "r", r: result };
    this.journal.append(Buffer.from(JSON.stringify(record)), { durable: false, capped: false }).catch((error: unknown) => this.onError(error, "audit journal"));
  }

  recordSealKey(key: SealKeyRecord): void {
    const record: JournalRecord = { t: "k", k: key };
    this.journal.append(Buffer.from(JSON.stringify(record)), { durable: false, capped: false }).catch((error: unknown) => this.onError(error, "audit journal"));
  }

  /** At a session's close: its statements and outcomes reach the database before the summary, if they can within a moment. */
  async flushOutcomes(): Promise<void> {
    await this.shipped(CLOSE_WAIT_MS);
  }

  shipped(timeoutMs: number): Promise<boolean> {
    const target = this.journal.end;
    if (this.journal.shipped >= target) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        target,
        resolve,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          resolve(false);
        }, timeoutMs),
      };
      this.#waiters.push(waiter);
      this.#kick();
    });
  }

  /** Why the journal does not take new statements now, and how far behind the shipper is; undefined when all is well. */
  problem(): string | undefined {
    const full = this.journal.refusing;
    if (!full) return undefined;
    const behind = this.#failure ? `; the database has not taken its records since ${this.#failure.since.toISOString()} (${errorText(this.#failure.error)})` : "";
    return `${full.message}: new statements are refused${behind}`;
  }

  /** The shipper's state, for /readyz and logs. */
  get backlogBytes(): number {
    return this.journal.unshippedBytes;
  }

  /**
   * Ships whatever the journal holds (what a crash left behind, at start-up); throws if the database
   * did not take it within `timeoutMs`.
   */
  async shipAll(timeoutMs: number): Promise<void> {
    if (!(await this.shipped(timeoutMs))) {
      throw new Error(
        `the audit journal holds ${this.journal.unshippedBytes} bytes the database did not take within ${timeoutMs} ms${this.#failure ? `: ${errorText(this.#failure.error)}` : ""}`,
      );
    }
  }

  #kick(): void {
    if (this.#stopped || this.#retry) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
      if (this.#again) {
        this.#again = false;
        this.#kick();
      }
    });
  }

  async #run(): Promise<void> {
    try {
      while (!this.#stopped && this.journal.shipped < this.journal.written) {
        const from = this.journal.shipped;
        const { records, next } = await this.journal.read(from, BATCH_RECORDS);
        if (next <= from) break;
        await this.#ship(records);
        await this.journal.markShipped(next);
        this.#settle();
      }
      this.#failure = undefined;
      this.#retryMs = RETRY_MIN_MS;
      this.#settle();
    } catch (error) {
      if (!this.#failure) {
        this.#failure = { since: new Date(), error };
        this.onError(error, "audit journal shipping (retrying)");
      } else this.#failure.error = error;
      if (this.#stopped) return;
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        this.#kick();
      }, this.#retryMs);
      this.#retry.unref();
      this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
    }
  }

  async #ship(records: Buffer[]): Promise<void> {
    const statements: StatementRecord[] = [];
    const outcomes: StatementOutcome[] = [];
    const unfinished = new Map<string, StatementRecord>();
    const results: ResultRecord[] = [];
    const keys: SealKeyRecord[] = [];
    for (const payload of records) {
      let record: JournalRecord;
      try {
        record = JSON.parse(payload.toString("utf8")) as JournalRecord;
      } catch (error) {
        // Intact by its CRC but not ours: nothing to ship; say so rather than stop every later record.
        this.onError(error, "audit journal record that is not JSON (skipped)");
        continue;
      }
      if (record.t === "s") {
        const statement = decodeStatement(record);
        statements.push(statement);
        unfinished.set(`${record.s}\n${record.q}`, statement);
        continue;
      }
      if (record.t === "r") {
        results.push(record.r);
        continue;
      }
      if (record.t === "k") {
        keys.push(record.k);
        continue;
      }
      // A statement shipped in this batch takes its outcome in its insert: one write, not two.
      const statement = unfinished.get(`${record.s}\n${record.q}`);
      if (statement) Object.assign(statement, { durationMs: Math.round(record.d), rows: record.n, commandTag: record.c, error: record.e });
      else outcomes.push({ sessionId: record.s, seq: record.q, durationMs: record.d, rows: record.n, commandTag: record.c, error: record.e });
    }
    await this.#each(statements, (rows) => this.writer.insert(rows), "statement", (row) => this.writer.insert([withoutNul(row)]));
    await this.#each(outcomes, (batch) => this.writer.updateOutcomes(batch), "outcome");
    await this.#each(keys, (batch) => this.writer.insertSealKeys(batch), "seal key");
    await this.#each(results, (batch) => this.writer.insertResults(batch), "result");
  }

  /**
   * Writes a batch; when the database refuses its data (not the connection), one by one, so a row
   * it will never take is reported and skipped instead of holding back every later one.
   */
  async #each<T>(items: T[], write: (batch: T[]) => Promise<void>, what: string, retry?: (item: T) => Promise<void>): Promise<void> {
    if (items.length === 0) return;
    try {
      await write(items);
      return;
    } catch (error) {
      if (!isDataError(error)) throw error;
    }
    for (const item of items) {
      try {
        await write([item]);
      } catch (error) {
        if (!isDataError(error)) throw error;
        try {
          // A value PostgreSQL cannot store as text or jsonb (a NUL character) is kept visibly escaped.
          if (retry) await retry(item);
          else throw error;
        } catch (again) {
          if (!isDataError(again)) throw again;
          this.onError(again, `audit journal ${what} the database refuses (skipped)`);
        }
      }
    }
  }

  #settle(): void {
    const shipped = this.journal.shipped;
    const done = this.#waiters.filter((w) => w.target <= shipped);
    if (done.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => w.target > shipped);
    for (const waiter of done) {
      clearTimeout(waiter.timer);
      waiter.resolve(true);
    }
  }

  /** Ships what it can within `timeoutMs`, then closes the journal (what is left ships at the next start). Safe to call twice. */
  close(timeoutMs = 5_000): Promise<void> {
    this.#closing ??= (async () => {
      await this.shipped(timeoutMs);
      this.#stopped = true;
      this.#unsubscribe();
      clearTimeout(this.#delay);
      clearTimeout(this.#retry);
      await this.#running;
      for (const waiter of this.#waiters.splice(0)) {
        clearTimeout(waiter.timer);
        waiter.resolve(false);
      }
      await this.journal.close();
    })();
    return this.#closing;
  }

  #closing: Promise<void> | undefined;
}

function encodeStatement(row: StatementRecord): Buffer {
  const startedAt = typeof row.startedAt === "number" ? row.startedAt : row.startedAt.getTime();
  const record: JournalRecord = {
    t: "s",
    s: row.sessionId,
    q: row.seq,
    p: row.protocol,
    k: row.kind,
    x: row.text,
    a: row.parameters ?? null,
    v: row.verdict,
    r: row.rule ?? null,
    h: row.heldId ?? null,
    at: startedAt,
  };
  return Buffer.from(JSON.stringify(record));
}

/** The record with NUL characters (which text and jsonb cannot hold) written as `\0`. */
function withoutNul(row: StatementRecord): StatementRecord {
  const clean = (text: string) => text.replaceAll("\u0000", "\\0");
  return { ...row, text: clean(row.text), parameters: row.parameters?.map((value) => (value === null ? null : clean(value))) ?? null };
}

function decodeStatement(record: Extract<JournalRecord, { t: "s" }>): StatementRecord {
  return {
    sessionId: record.s,
    seq: record.q,
    protocol: record.p,
    kind: record.k,
    text: record.x,
    parameters: record.a,
    verdict: record.v as StatementRecord["verdict"],
    rule: record.r,
    heldId: record.h,
    startedAt: new Date(record.at),
  };
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation): retrying cannot help. */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code ?? (error as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof code === "string" && /^2[23]/.test(code);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
