import type { ClassifiedStatement } from "../../rules/sql-classifier.js";

// A run of digits that is not part of a name (`t1`, `a$1`, `é1`) or a parameter (`$1`).
const NUMBER_TOKEN = /(?<![\w$\u0080-\uffff])\d+(?![\w$\u0080-\uffff])/g;
const ONE_STATEMENT = /^[^;]*;?\s*$/;
// Digits inside a string, a quoted name or a dollar-quoted body are text, not numbers: a DO body,
// an E'\144' escape or a U&'\0061' escape would change meaning if they were folded.
const QUOTING = /['"$\\]/;

/**
 * Classification by statement text, per target: clients repeat the same statements all the time.
 *
 * Built-in rules look at a statement's structure, not at a number's value, so `… WHERE aid = 17`
 * and `… WHERE aid = 42` share an entry. That is only done for one-statement texts without
 * quoting (so a folded digit is always a number literal, and two texts with one key parse to the
 * same tree but for the numbers' values), on targets without regex rules (`foldNumbers`; a regex
 * may well look at numbers). A verdict that did read a number (`EXPLAIN (ANALYZE 0)`, see
 * `readsNumbers`) is not cached. So the cache never returns a verdict that the statement, parsed
 * on its own, would not get.
 */
export class ClassificationCache {
  readonly #entries = new Map<string, ClassifiedStatement[]>();

  constructor(
    private readonly classify: (sql: string) => ClassifiedStatement[],
    private readonly foldNumbers: boolean,
    private readonly limit = 2_000,
  ) {}

  get(sql: string): ClassifiedStatement[] {
    const folded = this.foldNumbers && ONE_STATEMENT.test(sql) && !QUOTING.test(sql);
    const key = folded ? sql.replace(NUMBER_TOKEN, "0") : sql;
    const cached = this.#entries.get(key);
    if (!cached) {
      const result = this.classify(sql);
      if (folded && result.some((statement) => statement.readsNumbers)) return result;
      if (this.#entries.size >= this.limit) this.#entries.delete(this.#entries.keys().next().value!);
      this.#entries.set(key, result);
      return result;
    }
    // The recorded text is the statement's own, not the one that filled the entry.
    if (folded && cached.length === 1 && cached[0]!.text !== sql.trim()) {
      return [{ ...cached[0]!, text: sql.trim().replace(/;\s*$/, "") }];
    }
    return cached;
  }
}
