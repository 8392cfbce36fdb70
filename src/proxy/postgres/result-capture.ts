import { decodeDataRow, decodeRowDescription, type RowField } from "./backend-codec.js";

/** The per-statement caps of a target's `record` setting. */
export interface RecordCaps {
  rows: number;
  /** Bytes of values (as the client received them) per statement. */
  bytes: number;
}

/** One original value that masking changed: row and column of the kept rows. */
export interface OriginalValue {
  row: number;
  column: number;
  value: Buffer | null;
}

/** What a statement returned, as the client received it, up to the caps. */
export interface CapturedResult {
  seq: number;
  columns: RowField[];
  /** The kept rows' values as sent (masked). */
  rows: (Buffer | null)[][];
  /** Originals of the values masking changed, in the kept rows only. */
  originals: OriginalValue[];
  rowsTotal: number;
  /** The caps stopped the capture before the last row. */
  cut: boolean;
}

/**
 * Keeps the rows of each statement's result up to the target's caps (issue 16, must 1), for the
 * relay (connection.ts) to feed at three points: a RowDescription seen, a DataRow forwarded (the
 * frame as sent, and the original when masking changed it), a statement completed. Past a cap a
 * row costs one property read (`open` is false): nothing is decoded or copied. A target that keeps
 * nothing has no capture at all. Frames are copied when kept: the relay's chunks are not ours.
 */
export class ResultCapture {
  #columns: RowField[] | undefined;
  /** Columns came since the last completion: the statement being answered returns rows. */
  #fresh = false;
  #rows: (Buffer | null)[][] = [];
  #originals: OriginalValue[] = [];
  #bytes = 0;
  #cut = false;
  /** Rows are wanted: columns are known and no cap is reached. */
  open = false;

  constructor(
    private readonly caps: RecordCaps,
    private readonly sink: (result: CapturedResult) => void,
  ) {}

  /** A RowDescription frame (the result's columns). */
  columns(frame: Buffer): void {
    this.#columns = decodeRowDescription(frame);
    this.#fresh = true;
    this.open = !this.#cut;
  }

  /** A DataRow as forwarded; `original` the frame before masking when masking changed it. */
  row(sent: Buffer, original?: Buffer): void {
    if (!this.open) return;
    if (this.#rows.length >= this.caps.rows) return this.#stop();
    const values = decodeDataRow(sent);
    let size = 0;
    for (const value of values) if (value) size += value.length;
    if (this.#bytes + size > this.caps.bytes) return this.#stop();
    this.#bytes += size;
    const index = this.#rows.length;
    this.#rows.push(values.map((value) => (value === null ? null : Buffer.from(value))));
    if (original) {
      const before = decodeDataRow(original);
      for (let column = 0; column < before.length; column++) {
        const was = before[column] ?? null;
        const now = values[column] ?? null;
        if (was === now || (was && now && was.equals(now))) continue;
        this.#originals.push({ row: index, column, value: was === null ? null : Buffer.from(was) });
      }
    }
  }

  #stop(): void {
    this.#cut = true;
    this.open = false;
  }

  /** The statement `seq` completed after `rowsTotal` rows (undefined: not a statement of ours). */
  complete(seq: number | undefined, rowsTotal: number): void {
    if (seq !== undefined && this.#columns && (this.#fresh || this.#rows.length > 0 || rowsTotal > 0)) {
      this.sink({ seq, columns: this.#columns, rows: this.#rows, originals: this.#originals, rowsTotal, cut: this.#cut || rowsTotal > this.#rows.length });
    }
    this.#rows = [];
    this.#originals = [];
    this.#bytes = 0;
    this.#cut = false;
    this.#fresh = false;
    this.open = this.#columns !== undefined;
  }

  /** ReadyForQuery: the next result brings its own columns. */
  idle(): void {
    this.#columns = undefined;
    this.#fresh = false;
    this.#rows = [];
    this.#originals = [];
    this.#bytes = 0;
    this.#cut = false;
    this.open = false;
  }
}
