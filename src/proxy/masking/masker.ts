/**
 * Masking of result values before they leave the proxy (DESIGN.md, path 3; the target's
 * `mask:` rules).
 *
 * Work is split by how often it happens: `compileMasking` once per target, `forResult` once per
 * RowDescription (decides per column what, if anything, to do), `RowMasker.mask` once per
 * DataRow (touches only the columns that have an action). A result no rule can apply to gets no
 * RowMasker at all, so the proxy forwards its DataRows untouched.
 *
 * Wire formats: https://www.postgresql.org/docs/current/protocol-message-formats.html
 * (RowDescription gives each column's type OID and format code, DataRow the values).
 */
import type { PostgresTargetConfig } from "../../config/schema.js";
import { compileDetectors, type DetectorKind, type TextMasker } from "./detectors.js";

export type MaskRule = PostgresTargetConfig["mask"][number];

/** One column of a RowDescription. */
export interface FieldInfo {
  name: string;
  dataTypeID: number;
  /** 0 = text, 1 = binary. */
  format: 0 | 1;
}

export interface MaskedRow {
  /** The row to forward: the input array itself when nothing changed, otherwise a copy. */
  values: readonly (Buffer | null)[];
  /** How many values of this row were changed. */
  masked: number;
}

export interface RowMasker {
  /** Never mutates `values`. Replacement buffers may be shared between rows: do not write to them. */
  mask(values: readonly (Buffer | null)[]): MaskedRow;
  /**
   * The same on a whole DataRow frame (type byte, length, column count, values): the frame itself
   * when nothing in it changed, found without decoding the row; otherwise a new frame.
   * `counts.masked` is set to the number of values changed.
   */
  maskFrame(frame: Buffer, counts: { masked: number }): Buffer;
}

export interface Masking {
  /**
   * Called once per RowDescription; undefined when nothing in this result can need masking,
   * so the proxy forwards its DataRows untouched. `wholly` lists columns to mask whole whatever
   * their name (their values come from a masked column: see result-origins.ts).
   */
  forResult(fields: readonly FieldInfo[], wholly?: ReadonlySet<number>): RowMasker | undefined;
  /** Whether a column of this (lower-case) name is masked by a column rule. */
  isMaskedName(lowerName: string): boolean;
  /** Whether the target has column rules (then results are traced to their origins). */
  readonly hasColumnRules: boolean;
  /** The detectors, for server text that is not a result (errors, notices, notifications, COPY data). */
  readonly detectors: TextMasker | undefined;
}

/**
 * Type OIDs (pg_type.dat) whose binary send format is the UTF-8 text itself (textsend), so
 * detectors and a `***` replacement are valid in either format.
 */
const TEXT_SEND_TYPES: ReadonlySet<number> = new Set([
  25, // text
  1043, // varchar
  1042, // bpchar
  19, // name
]);

const JSON_TYPES: ReadonlySet<number> = new Set([
  114, // json
  3802, // jsonb
]);

/** Column-rule replacement in text format, and in binary format for TEXT_SEND_TYPES. */
const MASKED_TEXT = Buffer.from("***");
/** For json/jsonb in text format: `***` is not JSON and a client that parses JSON (node-postgres does) would throw. */
const MASKED_JSON = Buffer.from('"***"');

/**
 * What to do with one column: replace its non-null value (with a buffer, or with NULL for a
 * binary value whose type cannot hold `***` — a client decoding binary int4 would break), or
 * run the detectors over it.
 */
type ColumnAction = { kind: "replace"; with: Buffer | null } | { kind: "detect" };

export function compileMasking(rules: readonly MaskRule[]): Masking {
  const exactColumns = new Set<string>();
  const columnGlobs: RegExp[] = [];
  const detectorKinds: DetectorKind[] = [];
  for (const rule of rules) {
    if ("column" in rule) {
      const name = rule.column.toLowerCase();
      if (name.includes("*")) columnGlobs.push(globToRegExp(name));
      else exactColumns.add(name);
    } else {
      detectorKinds.push(rule.detect);
    }
  }
  const detectors = compileDetectors(detectorKinds);
  if (exactColumns.size === 0 && columnGlobs.length === 0 && detectors === undefined) return NO_MASKING;

  const columnRuleMatches = (name: string): boolean => {
    if (exactColumns.size === 0 && columnGlobs.length === 0) return false;
    const lower = name.toLowerCase();
    return exactColumns.has(lower) || columnGlobs.some((glob) => glob.test(lower));
  };

  return {
    isMaskedName: columnRuleMatches,
    hasColumnRules: exactColumns.size > 0 || columnGlobs.length > 0,
    detectors,
    forResult(fields, wholly) {
      const indexes: number[] = [];
      const actions: ColumnAction[] = [];
      fields.forEach((field, index) => {
        const action = actionFor(field, wholly?.has(index) === true || columnRuleMatches(field.name), detectors !== undefined);
        if (action === undefined) return;
        indexes.push(index);
        actions.push(action);
      });
      if (indexes.length === 0) return undefined;
      return new ColumnMasker(indexes, actions, detectors);
    },
  };
}

const NO_MASKING: Masking = { forResult: () => undefined, isMaskedName: () => false, hasColumnRules: false, detectors: undefined };

function actionFor(field: FieldInfo, columnRule: boolean, haveDetectors: boolean): ColumnAction | undefined {
  const textBytes = field.format === 0 || TEXT_SEND_TYPES.has(field.dataTypeID);
  if (columnRule) {
    if (!textBytes) return { kind: "replace", with: null };
    const json = field.format === 0 && JSON_TYPES.has(field.dataTypeID);
    return { kind: "replace", with: json ? MASKED_JSON : MASKED_TEXT };
  }
  // In text format every value is text (an int8 holding a card number included); in binary
  // format only the textsend types are.
  return haveDetectors && textBytes ? { kind: "detect" } : undefined;
}

class ColumnMasker implements RowMasker {
  readonly #indexes: readonly number[];
  readonly #actions: readonly ColumnAction[];
  readonly #detectors: TextMasker | undefined;

  constructor(indexes: readonly number[], actions: readonly ColumnAction[], detectors: TextMasker | undefined) {
    this.#indexes = indexes;
    this.#actions = actions;
    this.#detectors = detectors;
  }

  mask(values: readonly (Buffer | null)[]): MaskedRow {
    let out: (Buffer | null)[] | undefined;
    let masked = 0;
    for (let i = 0; i < this.#indexes.length; i++) {
      const index = this.#indexes[i]!;
      const value = values[index];
      if (value === null || value === undefined) continue;
      const action = this.#actions[i]!;
      let replacement: Buffer | null | undefined;
      if (action.kind === "replace") replacement = action.with;
      else replacement = this.#detectors?.mask(value);
      if (replacement === undefined) continue;
      out ??= values.slice();
      out[index] = replacement;
      masked++;
    }
    return { values: out ?? values, masked };
  }

  maskFrame(frame: Buffer, counts: { masked: number }): Buffer {
    const count = frame.readInt16BE(5);
    const minDetected = this.#detectors?.minLength ?? Infinity;
    let replacements: (Buffer | null | undefined)[] | undefined;
    let masked = 0;
    let offset = 7;
    for (let column = 0, k = 0; column < count && k < this.#indexes.length; column++) {
      const length = frame.readInt32BE(offset);
      offset += 4;
      if (column === this.#indexes[k]) {
        const action = this.#actions[k++]!;
        if (length >= 0) {
          let replacement: Buffer | null | undefined;
          if (action.kind === "replace") replacement = action.with;
          else if (length >= minDetected) replacement = this.#detectors!.mask(frame.subarray(offset, offset + length));
          if (replacement !== undefined) {
            (replacements ??= new Array<Buffer | null | undefined>(count))[column] = replacement;
            masked++;
          }
        }
      }
      if (length > 0) offset += length;
    }
    counts.masked = masked;
    return replacements ? rebuildDataRow(frame, count, replacements) : frame;
  }
}

/** A DataRow frame with some values replaced (undefined: keep; null: NULL). */
function rebuildDataRow(frame: Buffer, count: number, replacements: readonly (Buffer | null | undefined)[]): Buffer {
  let size = frame.length;
  let offset = 7;
  for (let column = 0; column < count; column++) {
    const length = frame.readInt32BE(offset);
    offset += 4 + Math.max(length, 0);
    const replacement = replacements[column];
    if (replacement !== undefined) size += (replacement === null ? 0 : replacement.length) - Math.max(length, 0);
  }
  const out = Buffer.allocUnsafe(size);
  frame.copy(out, 0, 0, 7);
  out.writeInt32BE(size - 1, 1);
  let from = 7;
  let to = 7;
  for (let column = 0; column < count; column++) {
    const length = frame.readInt32BE(from);
    const end = from + 4 + Math.max(length, 0);
    const replacement = replacements[column];
    if (replacement === undefined) {
      to += frame.copy(out, to, from, end);
    } else if (replacement === null) {
      to = out.writeInt32BE(-1, to);
    } else {
      to = out.writeInt32BE(replacement.length, to);
      to += replacement.copy(out, to);
    }
    from = end;
  }
  return out;
}

/** `*_email` → /^.*_email$/; `*` is the only wildcard, everything else is literal. */
function globToRegExp(lowerPattern: string): RegExp {
  const body = lowerPattern
    .split("*")
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join("[\\s\\S]*");
  return new RegExp(`^${body}$`);
}
