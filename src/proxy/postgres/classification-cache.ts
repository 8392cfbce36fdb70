import { classifySqlForReuse, type ClassifiedStatement, type CompiledRules, type Rejudge } from "../../rules/sql-classifier.js";

// A run of digits that is not part of a name (`t1`, `a$1`, `é1`) or a parameter (`$1`).
const NUMBER_TOKEN = /(?<![\w$\u0080-\uffff])\d+(?![\w$\u0080-\uffff])/g;
const ONE_STATEMENT = /^[^;]*;?\s*$/;
// Digits inside a string, a quoted name or a dollar-quoted body are text, not numbers: a DO body,
// an E'\144' escape or a U&'\0061' escape would change meaning if they were folded.
const QUOTING = /['"$\\]/;
// A comment: regex rules see the text without it, so the quick normalization below cannot be used.
const COMMENT = /--|\/\*/;
// PostgreSQL's lexer's whitespace (scan.l: `space [ \t\n\r\f\v]`).
const PG_SPACE = /[ \t\n\r\f\v]+/g;

interface Entry {
  statements: ClassifiedStatement[];
  /** With regex rules: the verdict of another text under the same key (see `classifySqlForReuse`). */
  rejudge?: Rejudge | undefined;
}

/**
 * Classification by statement text, per target: clients repeat the same statements all the time.
 *
 * Built-in rules look at a statement's structure, not at a number's value, so `… WHERE aid = 17`
 * and `… WHERE aid = 42` share an entry. That is only done for one-statement texts without
 * quoting (so a folded digit is always a number literal, and two texts with one key parse to the
 * same tree but for the numbers' values). A verdict that did read a number (`EXPLAIN (ANALYZE 0)`,
 * see `readsNumbers`) is not cached. So the cache never returns a verdict that the statement,
 * parsed on its own, would not get.
 *
 * Regex rules may look at numbers: on a target with regex rules an entry keeps the built-in
 * findings of its tree and a hit matches the regexes again against the new text's own normalized
 * form. Without quoting or comments that form is the text with each run of whitespace made one
 * space (whitespace only ever separates tokens there); an entry is only shared when that holds
 * for the text that filled it, checked against the lexer's own normalization.
 */
export class ClassificationCache {
  readonly #entries = new Map<string, Entry>();
  readonly #classify: (sql: string) => { statements: ClassifiedStatement[]; rejudge?: Rejudge | undefined; normalized?: string | undefined };

  /** `foldNumbers`: share entries between number literals (only right without regex rules, or with `rejudge`). */
  constructor(
    classify: (sql: string) => ClassifiedStatement[] | { statements: ClassifiedStatement[]; rejudge?: Rejudge | undefined; normalized?: string | undefined },
    private readonly foldNumbers: boolean,
    private readonly limit = 2_000,
    private readonly regexRules = false,
  ) {
    this.#classify = (sql) => {
      const result = classify(sql);
      return Array.isArray(result) ? { statements: result } : result;
    };
  }

  /** The cache of a target: numbers are folded with or without regex rules. */
  static forRules(rules: CompiledRules, limit?: number): ClassificationCache {
    const regexRules = [...rules.block, ...rules.review].some((r) => r.type === "pattern");
    return new ClassificationCache((sql) => classifySqlForReuse(sql, rules), true, limit, regexRules);
  }

  get(sql: string): ClassifiedStatement[] {
    const folded = this.foldNumbers && ONE_STATEMENT.test(sql) && !QUOTING.test(sql) && !(this.regexRules && COMMENT.test(sql));
    const key = folded ? sql.replace(NUMBER_TOKEN, "0") : sql;
    const cached = this.#entries.get(key);
    if (!cached) {
      const { statements, rejudge, normalized } = this.#classify(sql);
      if (folded && statements.some((statement) => statement.readsNumbers)) return statements;
      // With regex rules a shared entry needs `rejudge`, and the quick normalization must be the lexer's.
      if (folded && this.regexRules && (!rejudge || statements.length !== 1 || normalized !== quickNormalized(statements[0]!.text))) return statements;
      if (this.#entries.size >= this.limit) this.#entries.delete(this.#entries.keys().next().value!);
      this.#entries.set(key, { statements, rejudge: folded && this.regexRules ? rejudge : undefined });
      return statements;
    }
    const statements = cached.statements;
    if (!folded || statements.length !== 1) return statements;
    const first = statements[0]!;
    // The recorded text is the statement's own, not the one that filled the entry.
    const text = first.text === sql ? sql : sql.trim().replace(/;\s*$/, "").trim();
    if (cached.rejudge) {
      const { verdict, rule, detail } = cached.rejudge(quickNormalized(text));
      const { rule: _rule, detail: _detail, ...rest } = first;
      const statement: ClassifiedStatement = { ...rest, text, verdict };
      if (rule !== undefined) statement.rule = rule;
      if (detail !== undefined) statement.detail = detail;
      return [statement];
    }
    return text === first.text ? statements : [{ ...first, text }];
  }
}

/** `normalizeSql` of a one-statement text without quoting or comments. */
function quickNormalized(text: string): string {
  return text.replace(PG_SPACE, " ").trim();
}
