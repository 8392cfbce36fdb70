import { loadModule, parseSync, scanSync } from "libpg-query";
import type {
  CopyStmt,
  DefElem,
  DeleteStmt,
  ExplainStmt,
  ParseResult,
  PrepareStmt,
  RawStmt,
  ScanToken,
  SelectStmt,
  UpdateStmt,
} from "libpg-query";

/**
 * The classifier the PostgreSQL proxy applies to every statement a client sends (DESIGN.md, path 3).
 *
 * Built-in rules are decided from the parse tree of PostgreSQL's own grammar (libpg_query), so
 * comments, case, quoting and whitespace cannot hide a statement from them. Configured regexes are
 * matched against a normalized text (see `normalizeSql`). Nothing here does I/O.
 *
 * Known limits, by design of a syntactic classifier (regexes or the server's own privileges are
 * the answer to these):
 * - A WHERE clause is a WHERE clause: `DELETE FROM t WHERE true` or `WHERE 1 = 1` is not
 *   `delete-without-where`; neither is `MERGE … ON true WHEN MATCHED THEN DELETE`.
 * - A function can do anything: `SELECT f()`, `CALL p()`, `SELECT dblink_exec(…)` are classified
 *   by their own shape, not by what the function body does.
 * - `EXECUTE p` is allowed: the statement behind `p` was classified when it was `PREPARE`d.
 */

export type Verdict = "allow" | "review" | "block";

export type StatementKind =
  | "select"
  | "insert"
  | "update"
  | "delete"
  | "merge"
  | "truncate"
  | "copy"
  | "ddl"
  | "grant"
  | "set"
  | "show"
  | "transaction"
  | "do"
  | "call"
  | "explain"
  | "execute"
  | "other"
  | "error";

export const BUILTIN_SQL_RULES = [
  "ddl",
  "drop-database",
  "truncate",
  "delete-without-where",
  "update-without-where",
  "grant-revoke",
  "alter-system",
  "copy-program",
  "do",
] as const;

export type BuiltinSqlRule = (typeof BUILTIN_SQL_RULES)[number];

/** The rule that fires when the input cannot be parsed; not configurable, it always blocks. */
export const UNPARSEABLE_RULE = "unparseable";

/** A target's `commands` section: each entry is a built-in rule name or a regex. */
export interface RuleSet {
  readonly block: readonly string[];
  readonly review: readonly string[];
}

export type CompiledRule =
  | { readonly type: "builtin"; readonly name: BuiltinSqlRule }
  | { readonly type: "pattern"; readonly source: string; readonly regex: RegExp };

export interface CompiledRules {
  readonly block: readonly CompiledRule[];
  readonly review: readonly CompiledRule[];
}

export interface ClassifiedStatement {
  /** The statement exactly as the client sent it, trimmed. */
  text: string;
  kind: StatementKind;
  verdict: Verdict;
  /** The built-in rule name or regex source that decided a non-allow verdict. */
  rule?: string;
  /** The parser's message, when `rule` is `unparseable`. */
  detail?: string;
}

export class InvalidCommandRule extends Error {
  readonly code = "proxy_invalid_command_rule";
  constructor(
    readonly rule: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

let parserLoading: Promise<void> | undefined;
let parserLoaded = false;

/** Loads the WASM parser; call once at start-up, before `classifySql`. Safe to call again. */
export async function loadSqlParser(): Promise<void> {
  parserLoading ??= loadModule().then(
    () => {
      parserLoaded = true;
    },
    (error: unknown) => {
      parserLoading = undefined;
      throw error;
    },
  );
  await parserLoading;
}

function assertParserLoaded(): void {
  // Without this, libpg-query's "not initialized" error would surface as an unparseable
  // statement and every statement would be blocked for a reason nobody could see.
  if (!parserLoaded) throw new Error("the SQL parser is not loaded; await loadSqlParser() first");
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

const BUILTIN_NAMES: ReadonlySet<string> = new Set(BUILTIN_SQL_RULES);
const LOOKS_LIKE_A_NAME = /^[a-z-]+$/;

function isBuiltinRule(entry: string): entry is BuiltinSqlRule {
  return BUILTIN_NAMES.has(entry);
}

/**
 * Why `entry` cannot be a SQL command rule, or undefined when it can. A bare lower-case word is
 * taken for a built-in name, so a typo like `delete-wihtout-where` is an error instead of a regex
 * that silently never matches.
 */
export function sqlRuleProblem(entry: string): string | undefined {
  if (isBuiltinRule(entry)) return undefined;
  if (LOOKS_LIKE_A_NAME.test(entry)) {
    const [near] = BUILTIN_SQL_RULES
      .map((name) => ({ name, distance: editDistance(name, entry) }))
      .filter(({ name, distance }) => distance <= Math.max(1, Math.floor(name.length / 3)))
      .sort((a, b) => a.distance - b.distance);
    const hint = near === undefined ? "" : ` (did you mean "${near.name}"?)`;
    return (
      `"${entry}" is not a built-in rule${hint}; built-in rules are ${BUILTIN_SQL_RULES.join(", ")}. ` +
      `To match text, write a regex that is not a bare lower-case word, e.g. "\\b${entry}\\b"`
    );
  }
  try {
    new RegExp(entry, "i");
  } catch (error) {
    return `"${entry}" is not a valid regex: ${(error as Error).message}`;
  }
  return undefined;
}

function compileRule(entry: string, list: "block" | "review", index: number): CompiledRule {
  const problem = sqlRuleProblem(entry);
  if (problem !== undefined) throw new InvalidCommandRule(entry, `commands.${list}[${index}]: ${problem}`);
  if (isBuiltinRule(entry)) return { type: "builtin", name: entry };
  return { type: "pattern", source: entry, regex: new RegExp(entry, "i") };
}

/** Validates every entry once, so that classifying a statement cannot fail on configuration. */
export function compileRules(rules: RuleSet): CompiledRules {
  return {
    block: rules.block.map((entry, index) => compileRule(entry, "block", index)),
    review: rules.review.map((entry, index) => compileRule(entry, "review", index)),
  };
}

/**
 * Splits `sql` into its statements and classifies each one; block beats review beats allow, and
 * within a list the first matching entry names the rule. Empty input or input made only of
 * comments yields no statements. Input that does not parse yields one blocked statement: the
 * server would reject it anyway, and a proxy that cannot read a statement must not pass it on.
 */
export function classifySql(sql: string, rules: CompiledRules): ClassifiedStatement[] {
  assertParserLoaded();
  if (sql.trim() === "") return [];
  // The parser reads a C string and would stop at a NUL, leaving whatever follows unseen.
  if (sql.includes("\0")) return [unparseable(sql, "the statement text contains a NUL byte")];

  let parsed: ParseResult;
  try {
    parsed = parseSync(sql);
  } catch (error) {
    return [unparseable(sql, error instanceof Error ? error.message : String(error))];
  }

  const bytes = utf8.encode(sql);
  return (parsed.stmts ?? []).map((raw) => classifyRawStatement(raw, bytes, rules));
}

function unparseable(text: string, detail: string): ClassifiedStatement {
  return { text: text.trim(), kind: "error", verdict: "block", rule: UNPARSEABLE_RULE, detail };
}

function classifyRawStatement(raw: RawStmt, sqlBytes: Uint8Array, rules: CompiledRules): ClassifiedStatement {
  // stmt_location and stmt_len are byte offsets into the UTF-8 text; both are omitted when 0, and
  // the last statement has no stmt_len when it runs to the end of the input.
  const start = raw.stmt_location ?? 0;
  const end = raw.stmt_len === undefined || raw.stmt_len === 0 ? sqlBytes.length : start + raw.stmt_len;
  const text = utf8Decoder.decode(sqlBytes.subarray(start, end)).trim();
  if (raw.stmt === undefined) return unparseable(text, "the parser returned no statement");

  const fired = new Set<BuiltinSqlRule>();
  collectBuiltinRules(raw.stmt, fired);
  let normalized = "";
  if ([...rules.block, ...rules.review].some((rule) => rule.type === "pattern")) {
    try {
      normalized = normalizeSql(text);
    } catch (error) {
      return unparseable(text, error instanceof Error ? error.message : String(error));
    }
  }
  const matches = (rule: CompiledRule): boolean =>
    rule.type === "builtin" ? fired.has(rule.name) : rule.regex.test(normalized);

  const kind = statementKind(raw.stmt);
  const blockedBy = rules.block.find(matches);
  if (blockedBy !== undefined) return { text, kind, verdict: "block", rule: ruleLabel(blockedBy) };
  const reviewedBy = rules.review.find(matches);
  if (reviewedBy !== undefined) return { text, kind, verdict: "review", rule: ruleLabel(reviewedBy) };
  return { text, kind, verdict: "allow" };
}

function ruleLabel(rule: CompiledRule): string {
  return rule.type === "builtin" ? rule.name : rule.source;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The `{ NodeType: fields }` wrapper libpg_query puts around every node, unwrapped. */
function unwrapNode(node: unknown): [type: string, fields: Record<string, unknown>] | undefined {
  if (!isRecord(node)) return undefined;
  const entries = Object.entries(node);
  if (entries.length !== 1) return undefined;
  const [type, fields] = entries[0]!;
  return /^[A-Z]/.test(type) && isRecord(fields) ? [type, fields] : undefined;
}

/**
 * Statement types that create, alter, drop, rename or comment on a catalog object but whose names
 * do not start with Create/Alter/Drop. See the node list in PostgreSQL's
 * src/include/nodes/parsenodes.h.
 */
const DDL_STATEMENTS: ReadonlySet<string> = new Set([
  "DefineStmt", // CREATE AGGREGATE / OPERATOR / TYPE / COLLATION / TEXT SEARCH …
  "CompositeTypeStmt",
  "ViewStmt",
  "IndexStmt",
  "RuleStmt",
  "CommentStmt",
  "SecLabelStmt",
  "RenameStmt",
  "ReassignOwnedStmt",
  "ImportForeignSchemaStmt",
]);

const GRANT_STATEMENTS: ReadonlySet<string> = new Set(["GrantStmt", "GrantRoleStmt", "AlterDefaultPrivilegesStmt"]);

/**
 * A prefix test rather than a closed list, so a statement type added by a future PostgreSQL
 * release is DDL by default. ALTER SYSTEM and ALTER DEFAULT PRIVILEGES count too: each also has
 * its own rule, and where both are configured block still beats review.
 */
function isDdl(type: string, fields: Record<string, unknown>): boolean {
  if (/^(Create|Alter|Drop)[A-Za-z]*Stmt$/.test(type) || DDL_STATEMENTS.has(type)) return true;
  // SELECT … INTO creates a table, exactly like CREATE TABLE AS.
  return type === "SelectStmt" && (fields as SelectStmt).intoClause !== undefined;
}

/**
 * Whether EXPLAIN runs its statement: only with ANALYZE. An ANALYZE option counts unless it is
 * explicitly false (`ANALYZE off`, `ANALYZE false`, `ANALYZE 0`); PostgreSQL's defGetBoolean
 * rejects anything else, and when ANALYZE is given twice, any true one is enough here.
 * https://www.postgresql.org/docs/current/sql-explain.html
 */
function explainRunsStatement(explain: ExplainStmt): boolean {
  return (explain.options ?? []).some((option) => {
    if (!("DefElem" in option)) return false;
    const elem: DefElem = option.DefElem;
    if (elem.defname !== "analyze") return false;
    const arg = elem.arg;
    if (arg === undefined) return true;
    if ("Integer" in arg) return (arg.Integer.ival ?? 0) !== 0;
    if ("Boolean" in arg) return arg.Boolean.boolval === true;
    if ("String" in arg) return !["false", "off", "0"].includes((arg.String.sval ?? "").toLowerCase());
    return true;
  });
}

function rulesOfStatement(type: string, fields: Record<string, unknown>, fired: Set<BuiltinSqlRule>): void {
  if (isDdl(type, fields)) fired.add("ddl");
  if (GRANT_STATEMENTS.has(type)) fired.add("grant-revoke");
  switch (type) {
    case "DeleteStmt":
      if ((fields as DeleteStmt).whereClause === undefined) fired.add("delete-without-where");
      break;
    case "UpdateStmt":
      if ((fields as UpdateStmt).whereClause === undefined) fired.add("update-without-where");
      break;
    case "TruncateStmt":
      fired.add("truncate");
      break;
    case "DropdbStmt":
      fired.add("drop-database");
      break;
    case "AlterSystemStmt":
      fired.add("alter-system");
      break;
    case "CopyStmt":
      if ((fields as CopyStmt).is_program === true) fired.add("copy-program");
      break;
    case "DoStmt":
      fired.add("do");
      break;
  }
}

/**
 * Walks the whole tree, so statements nested anywhere are seen: data-modifying CTEs
 * (`WITH x AS (DELETE FROM t RETURNING *) SELECT …`), PREPARE bodies, COPY (query), EXPLAIN
 * ANALYZE, rule actions, SQL-standard function bodies. Only a plain EXPLAIN's statement is
 * skipped, because it is planned and never run.
 */
function collectBuiltinRules(node: unknown, fired: Set<BuiltinSqlRule>): void {
  if (Array.isArray(node)) {
    for (const item of node) collectBuiltinRules(item, fired);
    return;
  }
  if (!isRecord(node)) return;
  const wrapped = unwrapNode(node);
  if (wrapped !== undefined) {
    const [type, fields] = wrapped;
    if (type === "ExplainStmt" && !explainRunsStatement(fields as ExplainStmt)) return;
    rulesOfStatement(type, fields, fired);
  }
  for (const value of Object.values(node)) collectBuiltinRules(value, fired);
}

const KIND_OF_TYPE: Readonly<Record<string, StatementKind>> = {
  SelectStmt: "select",
  InsertStmt: "insert",
  UpdateStmt: "update",
  DeleteStmt: "delete",
  MergeStmt: "merge",
  TruncateStmt: "truncate",
  CopyStmt: "copy",
  GrantStmt: "grant",
  GrantRoleStmt: "grant",
  AlterDefaultPrivilegesStmt: "grant",
  VariableSetStmt: "set",
  ConstraintsSetStmt: "set",
  VariableShowStmt: "show",
  TransactionStmt: "transaction",
  DoStmt: "do",
  CallStmt: "call",
  ExecuteStmt: "execute",
};

/** The kind a session summary counts the statement under: what it does when it runs. */
function statementKind(node: unknown): StatementKind {
  const wrapped = unwrapNode(node);
  if (wrapped === undefined) return "other";
  const [type, fields] = wrapped;
  if (type === "ExplainStmt") {
    const explain = fields as ExplainStmt;
    return explainRunsStatement(explain) ? statementKind(explain.query) : "explain";
  }
  if (type === "PrepareStmt") return statementKind((fields as PrepareStmt).query);
  if (type === "DeclareCursorStmt") return statementKind(fields["query"]);
  if (type === "SelectStmt" && isDdl(type, fields)) return "ddl";
  return KIND_OF_TYPE[type] ?? (isDdl(type, fields) ? "ddl" : "other");
}

/**
 * The text regex rules are matched against: comments removed, each run of whitespace or comments
 * between tokens replaced by one space, quoted identifiers unquoted (`"Orders"` → `Orders`,
 * `U&"d\0061ta"` → `data`), trimmed. String literals are kept as written. Regexes are matched
 * case-insensitively, so case needs no folding. Uses PostgreSQL's own lexer, so `--` inside a
 * string is not a comment; throws if `sql` cannot be tokenized (it is not valid SQL).
 */
export function normalizeSql(sql: string): string {
  assertParserLoaded();
  let tokens: ScanToken[];
  try {
    tokens = scanSync(sql).tokens;
  } catch (error) {
    throw new Error("cannot tokenize the statement", { cause: error });
  }

  let out = "";
  let previousEnd: number | undefined;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.tokenName === "SQL_COMMENT" || token.tokenName === "C_COMMENT") continue;
    if (previousEnd !== undefined && token.start > previousEnd) out += " ";
    previousEnd = token.end;

    let text = token.text;
    if (text.startsWith('"')) {
      text = text.slice(1, -1).replaceAll('""', '"');
    } else if (/^u&"/i.test(text)) {
      // U&"…" UESCAPE '!' names its own escape character.
      const next = nextNonComment(tokens, i + 1);
      const hasUescape = next !== undefined && tokens[next]!.text.toUpperCase() === "UESCAPE";
      const escapeLiteral = hasUescape ? nextNonComment(tokens, next + 1) : undefined;
      const escape = escapeLiteral === undefined ? "\\" : tokens[escapeLiteral]!.text.slice(1, -1);
      const decoded = decodeUnicodeEscapes(text.slice(3, -1).replaceAll('""', '"'), escape);
      if (decoded !== undefined) {
        text = decoded;
        if (escapeLiteral !== undefined) {
          i = escapeLiteral;
          previousEnd = tokens[escapeLiteral]!.end;
        }
      }
    }
    out += text;
  }
  return out.trim();
}

function nextNonComment(tokens: readonly ScanToken[], from: number): number | undefined {
  for (let i = from; i < tokens.length; i++) {
    const name = tokens[i]!.tokenName;
    if (name !== "SQL_COMMENT" && name !== "C_COMMENT") return i;
  }
  return undefined;
}

/**
 * Decodes the escapes of a Unicode identifier body: `\XXXX`, `\+XXXXXX` and `\\`, with `\` being
 * the UESCAPE character. https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS-UESCAPE
 */
function decodeUnicodeEscapes(body: string, escape: string): string | undefined {
  if (escape.length !== 1) return undefined;
  let out = "";
  let i = 0;
  while (i < body.length) {
    const ch = body[i]!;
    if (ch !== escape) {
      out += ch;
      i += 1;
    } else if (body[i + 1] === escape) {
      out += escape;
      i += 2;
    } else {
      const long = body[i + 1] === "+";
      const hex = long ? body.slice(i + 2, i + 8) : body.slice(i + 1, i + 5);
      if (!/^[0-9a-f]+$/i.test(hex) || hex.length !== (long ? 6 : 4)) return undefined;
      const codePoint = Number.parseInt(hex, 16);
      if (codePoint > 0x10ffff) return undefined;
      out += String.fromCodePoint(codePoint);
      i += long ? 8 : 5;
    }
  }
  return out;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}
