import { loadModule, parsePlPgSQLSync, parseSync, scanSync } from "libpg-query";
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
  VariableSetStmt,
} from "libpg-query";
import {
  DEFERRED_SQL_FUNCTIONS,
  LARGE_OBJECT_FUNCTIONS,
  REMOTE_CONNECTION_FUNCTIONS,
  REMOTE_CONNECTION_STATEMENTS,
  REPLICATION_FUNCTIONS,
  REPLICATION_STATEMENTS,
  SERVER_FILE_FUNCTIONS,
  SET_CONFIG,
  SQL_TEXT_FUNCTIONS,
} from "./sql-function-catalog.js";
import { isPinnedSetting, keepsPinnedValue, PINNED_SETTING_RULE, PINNED_SETTINGS } from "./sql-pinned-settings.js";

/**
 * The classifier the PostgreSQL proxy applies to every statement a client sends (DESIGN.md, path 3).
 *
 * Built-in rules are decided from the parse tree of PostgreSQL's own grammar (libpg_query), so
 * comments, case, quoting and whitespace cannot hide a statement from them. Configured regexes are
 * matched against a normalized text (see `normalizeSql`). Nothing here does I/O.
 *
 * Statements are classified wherever they hide: the statements of a DO block or of a function or
 * procedure body (SQL, `BEGIN ATOMIC`, PL/pgSQL through libpg_query's PL/pgSQL parser, every
 * expression included) count as the statement's own, so `CREATE FUNCTION` and `DO` take the
 * strictest verdict of their bodies. What cannot be read before it runs (`EXECUTE <expression>`
 * in PL/pgSQL, a body in another language, SQL text built at run time for query_to_xml & co.) is
 * *unverifiable* and gets the target's `unverifiable` verdict. A statement that would change a
 * pinned setting (see sql-pinned-settings.ts) is always blocked, whatever the rules.
 *
 * Known limits, by design of a syntactic classifier (regexes or the server's own privileges are
 * the answer to these):
 * - A WHERE clause is a WHERE clause: `DELETE FROM t WHERE true` or `WHERE 1 = 1` is not
 *   `delete-without-where`. (A MERGE's ON is not a WHERE: its DELETE or UPDATE action counts as
 *   one without a WHERE unless the action has an `AND condition` of its own.)
 * - A function that already exists in the target is classified by its call, not by its body:
 *   `SELECT f()`, `CALL p()`. Functions created through the gateway were classified by their body
 *   when they were created. A statement that attaches one as a trigger lists it in
 *   `functionsToInspect`: the proxy reads its body from the catalog (`withAttachedFunctions`).
 * - `EXECUTE p` is allowed: the statement behind `p` was classified when it was `PREPARE`d.
 *
 * No verdict depends on the value of a number outside quotes (a number in a SET of a pinned
 * setting is refused whatever it is; `EXPLAIN (ANALYZE 0)` reports itself as reading one), so
 * the proxy's cache may fold numbers: see `readsNumbers`.
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
  "server-files",
  "large-objects",
  "set-role",
  "remote-connection",
  "replication",
] as const;

export type BuiltinSqlRule = (typeof BUILTIN_SQL_RULES)[number];

/** The rule that fires when the input cannot be parsed; not configurable, it always blocks. */
export const UNPARSEABLE_RULE = "unparseable";

/** The rule that fires for what cannot be read before it runs; its verdict is configured per target. */
export const UNVERIFIABLE_RULE = "unverifiable";

export { PINNED_SETTING_RULE } from "./sql-pinned-settings.js";

/** A target's `commands` section: each entry is a built-in rule name or a regex. */
export interface RuleSet {
  readonly block: readonly string[];
  readonly review: readonly string[];
  /** The verdict for what cannot be verified before it runs; `review` when absent. */
  readonly unverifiable?: Verdict | undefined;
}

/**
 * The rules of a PostgreSQL target whose configuration has no `commands`: what reaches past the
 * database (server files, other servers, replication streams, the server's configuration) is
 * refused, and what changes who the session is or reads data no table rule sees is held.
 */
export const BASELINE_SQL_RULES = {
  block: ["copy-program", "alter-system", "server-files", "replication"],
  review: ["set-role", "large-objects", "remote-connection"],
  unverifiable: "review",
} as const satisfies RuleSet;

export type CompiledRule =
  | { readonly type: "builtin"; readonly name: BuiltinSqlRule }
  | { readonly type: "pattern"; readonly source: string; readonly regex: RegExp };

export interface CompiledRules {
  readonly block: readonly CompiledRule[];
  readonly review: readonly CompiledRule[];
  readonly unverifiable: Verdict;
}

export interface ClassifiedStatement {
  /** The statement exactly as the client sent it, trimmed. */
  text: string;
  kind: StatementKind;
  verdict: Verdict;
  /** The built-in rule name or regex source that decided a non-allow verdict. */
  rule?: string;
  /** Why, when `rule` is `unparseable`, `unverifiable` or `pinned-setting`. */
  detail?: string;
  /**
   * Set when the verdict depends on the value of a number written outside quotes, so that a text
   * differing only in its numbers may be classified differently (see the proxy's cache).
   */
  readsNumbers?: true;
  /**
   * Functions in the target's catalog that this statement attaches to a table or event without
   * running them now (`CREATE TRIGGER … EXECUTE FUNCTION f()`, `ALTER TABLE … ENABLE TRIGGER t`):
   * their bodies are not in the text, so the proxy reads them from the catalog and the statement
   * takes the strictest verdict of its own and theirs (see `withAttachedFunctions`). Only set for
   * a statement sent on its own; one nested in a body, a DO block or CREATE SCHEMA is unverifiable.
   */
  functionsToInspect?: AttachedFunction[];
}

/**
 * A function attached by a statement, as the statement names it. Names are as PostgreSQL reads
 * them (quotes removed, unquoted names folded to lower case); `schema` is absent when unqualified.
 * - `function`: CREATE [CONSTRAINT] TRIGGER / CREATE EVENT TRIGGER … EXECUTE FUNCTION name(),
 *   looked up with no arguments as the server does;
 * - `trigger`: ALTER TABLE … ENABLE [ALWAYS | REPLICA] TRIGGER name | ALL | USER: the function of
 *   each named trigger of the table;
 * - `event-trigger`: ALTER EVENT TRIGGER name ENABLE …: the function of that event trigger.
 * https://www.postgresql.org/docs/current/sql-createtrigger.html, https://www.postgresql.org/docs/current/sql-altertable.html
 */
export type AttachedFunction =
  | { readonly via: "function"; readonly schema?: string; readonly name: string }
  | { readonly via: "trigger"; readonly schema?: string; readonly table: string; readonly trigger: string; readonly which: "named" | "all" | "user" }
  | { readonly via: "event-trigger"; readonly trigger: string };

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
    unverifiable: rules.unverifiable ?? "review",
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

/** The regex rules' part of a verdict, for another text of the same structure (see `classifySqlForReuse`). */
export type Rejudge = (normalized: string) => Pick<ClassifiedStatement, "verdict" | "rule" | "detail">;

/**
 * `classifySql`, and for one statement with nothing nested in it (no body, no SQL-text argument)
 * whose findings the regex rules only add to: how to decide the verdict of another text that
 * parses to the same tree but for the values of its number literals, from that text's normalized
 * form (`normalizeSql`) alone. The built-in findings are the tree's, so they are the same for it;
 * only the regexes, which may look at the numbers, are matched again. For the proxy's cache.
 * `normalized` is what the regexes were matched against for this text (absent without regex rules).
 */
export function classifySqlForReuse(sql: string, rules: CompiledRules): { statements: ClassifiedStatement[]; rejudge?: Rejudge; normalized?: string } {
  assertParserLoaded();
  if (sql.trim() === "" || sql.includes("\0")) return { statements: classifySql(sql, rules) };
  let parsed: ParseResult;
  try {
    parsed = parseSync(sql);
  } catch {
    return { statements: classifySql(sql, rules) };
  }
  const bytes = utf8.encode(sql);
  const raws = parsed.stmts ?? [];
  if (raws.length !== 1) return { statements: raws.map((raw) => classifyRawStatement(raw, bytes, rules)) };
  let kept: { found: Findings; normalized: string[] } | undefined;
  const statement = classifyRawStatement(raws[0]!, bytes, rules, (found, normalized) => (kept = { found, normalized }));
  if (!kept || kept.found.nested.length > 0 || kept.normalized.length !== 1) return { statements: [statement] };
  const { found } = kept;
  return { statements: [statement], rejudge: (normalized) => verdictOf(found, [normalized], rules), normalized: kept.normalized[0]! };
}

/** What the proxy found in the catalog for a statement's `functionsToInspect`. */
export type AttachedFunctionLookup =
  | { readonly functions: readonly { readonly name: string; readonly definition: string }[] }
  | { readonly unverifiable: string };

type Decided = { verdict: Verdict; rule?: string | undefined; detail?: string | undefined };

const SEVERITY: Readonly<Record<Verdict, number>> = { allow: 0, review: 1, block: 2 };

/**
 * The verdict of a function's body as the catalog holds it: `definition` is what
 * `pg_get_functiondef(oid)` returns (a CREATE OR REPLACE FUNCTION statement). The body is read by
 * the same code as a CREATE FUNCTION sent by a client (SQL, `BEGIN ATOMIC`, PL/pgSQL; any other
 * language is unverifiable), but the CREATE itself is not counted: it is not run. A definition
 * that is not exactly one CREATE FUNCTION is unverifiable.
 */
export function classifyFunctionDefinition(definition: string, rules: CompiledRules): Decided {
  assertParserLoaded();
  const found = newFindings();
  let stmts: RawStmt[] = [];
  try {
    if (definition.includes("\0")) throw new Error("it contains a NUL byte");
    stmts = parseSync(definition).stmts ?? [];
  } catch (error) {
    found.unverifiable = `the function's definition does not parse: ${error instanceof Error ? error.message : String(error)}`;
  }
  const [only] = stmts;
  const wrapped = stmts.length === 1 ? unwrapNode(only?.stmt) : undefined;
  if (wrapped?.[0] === "CreateFunctionStmt") {
    const fields = wrapped[1];
    analyzeBody("CreateFunctionStmt", fields, definition, found, 0);
    // A BEGIN ATOMIC body, the SET clauses and the parameters' defaults run with the function.
    for (const key of ["sql_body", "options", "parameters"]) analyzeStatement(fields[key], undefined, found, 1);
  } else {
    found.unverifiable ??= "the function's definition is not one CREATE FUNCTION";
  }
  let normalized: string[] = [];
  if ([...rules.block, ...rules.review].some((rule) => rule.type === "pattern")) {
    try {
      normalized = found.nested.map(normalizeSql);
    } catch (error) {
      found.unverifiable ??= `the function's body cannot be tokenized: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  return verdictOf(found, normalized, rules);
}

/**
 * A statement with `functionsToInspect`, given what the catalog holds for them: it takes the
 * strictest verdict of its own and of every attached function's body (on a tie the first body's
 * rule names it, since that is what the statement's text does not show); a look-up that could not
 * be done makes it unverifiable. The result lists nothing more to inspect.
 */
export function withAttachedFunctions<S extends Decided & { functionsToInspect?: unknown }>(
  statement: S,
  lookup: AttachedFunctionLookup,
  rules: CompiledRules,
): S {
  const { functionsToInspect: _inspected, ...own } = statement;
  let result = own as S;
  let ownRule = true;
  const stricter = (decided: Decided, where: string) => {
    const rank = SEVERITY[decided.verdict] - SEVERITY[result.verdict];
    // On a tie the body's rule names the verdict: what the approver cannot see in the text.
    if (rank < 0 || decided.verdict === "allow" || (rank === 0 && !ownRule)) return;
    ownRule = false;
    const detail = decided.detail === undefined ? where : `${where}: ${decided.detail}`;
    result = { ...result, verdict: decided.verdict, rule: decided.rule, detail };
  };
  if ("unverifiable" in lookup) {
    stricter({ verdict: rules.unverifiable, rule: UNVERIFIABLE_RULE }, lookup.unverifiable);
    return result;
  }
  for (const fn of lookup.functions) stricter(classifyFunctionDefinition(fn.definition, rules), `in the body of ${fn.name}, which this statement attaches`);
  return result;
}

function unparseable(text: string, detail: string): ClassifiedStatement {
  return { text: text.trim(), kind: "error", verdict: "block", rule: UNPARSEABLE_RULE, detail };
}

/** What a walk over one statement (and the statements it holds) found. */
interface Findings {
  fired: Set<BuiltinSqlRule>;
  /** Why the statement would change a pinned setting, if it would. */
  pinned?: string;
  /** Why part of the statement cannot be read before it runs, if so. */
  unverifiable?: string;
  /** Statements found inside bodies and SQL-text arguments, for the regex rules. */
  nested: string[];
  readsNumbers: boolean;
  /** The statement sent on its own, the only one whose attached functions the proxy can look up. */
  root?: unknown;
  attaches: AttachedFunction[];
}

function newFindings(): Findings {
  return { fired: new Set(), nested: [], readsNumbers: false, attaches: [] };
}

function classifyRawStatement(
  raw: RawStmt,
  sqlBytes: Uint8Array,
  rules: CompiledRules,
  keep?: (found: Findings, normalized: string[]) => void,
): ClassifiedStatement {
  // stmt_location and stmt_len are byte offsets into the UTF-8 text; both are omitted when 0, and
  // the last statement has no stmt_len when it runs to the end of the input.
  const start = raw.stmt_location ?? 0;
  const end = raw.stmt_len === undefined || raw.stmt_len === 0 ? sqlBytes.length : start + raw.stmt_len;
  const text = utf8Decoder.decode(sqlBytes.subarray(start, end)).trim();
  if (raw.stmt === undefined) return unparseable(text, "the parser returned no statement");

  const found = newFindings();
  found.root = raw.stmt;
  analyzeStatement(raw.stmt, text, found, 0);
  let normalized: string[] = [];
  if ([...rules.block, ...rules.review].some((rule) => rule.type === "pattern")) {
    try {
      normalized = [text, ...found.nested].map(normalizeSql);
    } catch (error) {
      return unparseable(text, error instanceof Error ? error.message : String(error));
    }
  }
  keep?.(found, normalized);
  const result: ClassifiedStatement = { text, kind: statementKind(raw.stmt), ...verdictOf(found, normalized, rules) };
  if (found.readsNumbers) result.readsNumbers = true;
  if (found.attaches.length > 0) result.functionsToInspect = found.attaches;
  return result;
}

/** Block beats review beats allow; within a list the first matching entry names the rule. */
function verdictOf(found: Findings, normalized: readonly string[], rules: CompiledRules): Pick<ClassifiedStatement, "verdict" | "rule" | "detail"> {
  const matches = (rule: CompiledRule): boolean =>
    rule.type === "builtin" ? found.fired.has(rule.name) : normalized.some((one) => rule.regex.test(one));
  if (found.pinned !== undefined) return { verdict: "block", rule: PINNED_SETTING_RULE, detail: found.pinned };
  const blockedBy = rules.block.find(matches);
  if (blockedBy !== undefined) return { verdict: "block", rule: ruleLabel(blockedBy) };
  if (found.unverifiable !== undefined && rules.unverifiable === "block") {
    return { verdict: "block", rule: UNVERIFIABLE_RULE, detail: found.unverifiable };
  }
  const reviewedBy = rules.review.find(matches);
  if (reviewedBy !== undefined) return { verdict: "review", rule: ruleLabel(reviewedBy) };
  if (found.unverifiable !== undefined && rules.unverifiable === "review") {
    return { verdict: "review", rule: UNVERIFIABLE_RULE, detail: found.unverifiable };
  }
  return { verdict: "allow" };
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
function explainRunsStatement(explain: ExplainStmt, found?: Findings): boolean {
  return (explain.options ?? []).some((option) => {
    if (!("DefElem" in option)) return false;
    const elem: DefElem = option.DefElem;
    if (elem.defname !== "analyze") return false;
    const arg = elem.arg;
    if (arg === undefined) return true;
    if ("Integer" in arg || "Float" in arg) {
      if (found) found.readsNumbers = true;
      return !("Integer" in arg) || (arg.Integer.ival ?? 0) !== 0;
    }
    if ("Boolean" in arg) return arg.Boolean.boolval === true;
    if ("String" in arg) return !["false", "off", "0"].includes((arg.String.sval ?? "").toLowerCase());
    return true;
  });
}

/**
 * MERGE's ON is a join, not a filter of the target: `ON true`, or a source that holds every key,
 * matches every row, and `WHEN NOT MATCHED BY SOURCE` reaches the rows the source lacks. A DELETE or
 * UPDATE action without an `AND condition` of its own is read as one without a WHERE.
 */
function mergeActionsWithoutCondition(fields: Record<string, unknown>, fired: Set<string>): void {
  const clauses = Array.isArray(fields["mergeWhenClauses"]) ? (fields["mergeWhenClauses"] as unknown[]) : [];
  for (const node of clauses) {
    const clause = isRecord(node) && isRecord(node["MergeWhenClause"]) ? node["MergeWhenClause"] : undefined;
    if (!clause || clause["condition"] !== undefined) continue;
    if (clause["commandType"] === "CMD_DELETE") fired.add("delete-without-where");
    if (clause["commandType"] === "CMD_UPDATE") fired.add("update-without-where");
  }
}

function rulesOfStatement(type: string, fields: Record<string, unknown>, found: Findings): void {
  const fired = found.fired;
  if (isDdl(type, fields)) fired.add("ddl");
  if (GRANT_STATEMENTS.has(type)) fired.add("grant-revoke");
  if (REMOTE_CONNECTION_STATEMENTS.has(type)) fired.add("remote-connection");
  if (REPLICATION_STATEMENTS.has(type)) fired.add("replication");
  switch (type) {
    case "DeleteStmt":
      if ((fields as DeleteStmt).whereClause === undefined) fired.add("delete-without-where");
      changesSettingsView(fields, found);
      break;
    case "UpdateStmt":
      if ((fields as UpdateStmt).whereClause === undefined) fired.add("update-without-where");
      changesSettingsView(fields, found);
      break;
    case "MergeStmt":
      mergeActionsWithoutCondition(fields, fired);
      changesSettingsView(fields, found);
      break;
    case "InsertStmt":
      changesSettingsView(fields, found);
      break;
    case "ViewStmt":
      // A view over pg_settings is updatable through pg_settings' own rules.
      if (mentionsRelation(fields["query"], SETTINGS_VIEW)) found.pinned ??= "a view over pg_settings can change any setting";
      break;
    case "TruncateStmt":
      fired.add("truncate");
      break;
    case "DropdbStmt":
      fired.add("drop-database");
      break;
    case "CopyStmt": {
      const copy = fields as CopyStmt;
      if (copy.is_program === true) fired.add("copy-program");
      else if (copy.filename !== undefined) fired.add("server-files");
      break;
    }
    case "DoStmt":
      fired.add("do");
      break;
    case "VariableSetStmt":
      checkVariableSet(fields as VariableSetStmt, found);
      break;
    case "AlterRoleSetStmt":
    case "AlterDatabaseSetStmt":
    case "AlterSystemStmt":
      if (type === "AlterSystemStmt") fired.add("alter-system");
      // Their SET is a bare struct, not a node the walk would recognize.
      if (isRecord(fields["setstmt"])) checkVariableSet(fields["setstmt"] as VariableSetStmt, found);
      break;
  }
}

const SETTINGS_VIEW = "pg_settings";

/** pg_settings is a view whose UPDATE rule calls set_config: changing its rows changes settings. */
function changesSettingsView(fields: Record<string, unknown>, found: Findings): void {
  const relation = fields["relation"];
  if (isRecord(relation) && relation["relname"] === SETTINGS_VIEW) {
    found.pinned ??= "changing pg_settings changes settings, standard_conforming_strings and client_encoding among them";
  }
}

function mentionsRelation(node: unknown, relname: string): boolean {
  if (Array.isArray(node)) return node.some((item) => mentionsRelation(item, relname));
  if (!isRecord(node)) return false;
  const range = node["RangeVar"];
  if (isRecord(range) && range["relname"] === relname) return true;
  return Object.values(node).some((value) => mentionsRelation(value, relname));
}

/**
 * SET, SET LOCAL, SET … TO DEFAULT, RESET and the SET clauses of ALTER ROLE / ALTER DATABASE /
 * CREATE FUNCTION / ALTER FUNCTION are all this node. RESET and DEFAULT go back to the session's
 * start-up value, which the proxy pins (session-settings.ts), so only a new value is a change.
 */
function checkVariableSet(set: VariableSetStmt, found: Findings): void {
  const name = (set.name ?? "").toLowerCase();
  if (name === "role" || name === "session_authorization") {
    if (set.kind !== "VAR_RESET" && set.kind !== "VAR_SET_DEFAULT") found.fired.add("set-role");
    return;
  }
  if (!isPinnedSetting(name) || set.kind !== "VAR_SET_VALUE") return;
  const args = set.args ?? [];
  const [arg] = args;
  const value = args.length === 1 && arg !== undefined && "A_Const" in arg ? arg.A_Const.sval?.sval : undefined;
  if (value === undefined || !keepsPinnedValue(name, value)) {
    found.pinned ??= `${name} stays ${PINNED_SETTINGS[name]} through jitgate, so that the gateway reads statements as the server does`;
  }
}

/** The rules a function's name fires, wherever the name appears. */
function rulesOfFunctionName(name: string, found: Findings): void {
  if (SERVER_FILE_FUNCTIONS.has(name)) found.fired.add("server-files");
  if (LARGE_OBJECT_FUNCTIONS.has(name)) found.fired.add("large-objects");
  if (REMOTE_CONNECTION_FUNCTIONS.has(name)) found.fired.add("remote-connection");
  if (REPLICATION_FUNCTIONS.has(name)) found.fired.add("replication");
  if (SQL_TEXT_FUNCTIONS.has(name)) found.unverifiable ??= `${name} runs SQL text that is only known when it runs`;
  if (DEFERRED_SQL_FUNCTIONS.has(name)) found.unverifiable ??= `${name} runs SQL later, outside this session`;
  if (name === SET_CONFIG) found.pinned ??= "set_config may only be called directly, with a constant setting name";
}

function stringConstant(node: unknown): string | undefined {
  if (!isRecord(node)) return undefined;
  const constant = node["A_Const"];
  if (!isRecord(constant)) return undefined;
  const sval = constant["sval"];
  return isRecord(sval) && typeof sval["sval"] === "string" ? sval["sval"] : undefined;
}

function functionName(names: unknown): string | undefined {
  if (!Array.isArray(names)) return undefined;
  const last: unknown = names[names.length - 1];
  if (!isRecord(last)) return undefined;
  const value = last["String"];
  return isRecord(value) && typeof value["sval"] === "string" ? value["sval"] : undefined;
}

/** A call: its name's rules, set_config's arguments, and the SQL text of SQL-running functions. */
function checkFunctionCall(fields: Record<string, unknown>, found: Findings, depth: number): void {
  const name = functionName(fields["funcname"]);
  if (name === undefined) return;
  const args = Array.isArray(fields["args"]) ? (fields["args"] as unknown[]) : [];
  if (name === SET_CONFIG) {
    const setting = stringConstant(args[0])?.toLowerCase();
    if (setting === undefined) {
      found.pinned ??= "set_config with a setting name that is not a constant could change a pinned setting";
    } else if (setting === "role" || setting === "session_authorization") {
      found.fired.add("set-role");
    } else if (isPinnedSetting(setting)) {
      const value = stringConstant(args[1]);
      if (value === undefined || !keepsPinnedValue(setting, value)) {
        found.pinned ??= `${setting} stays ${PINNED_SETTINGS[setting]} through jitgate, so that the gateway reads statements as the server does`;
      }
    }
    return;
  }
  if (SQL_TEXT_FUNCTIONS.has(name)) {
    const positions = SQL_TEXT_FUNCTIONS.get(name)!;
    const texts = positions.map((position) => stringConstant(args[position]));
    if (positions.length === 0 || texts.some((text) => text === undefined)) {
      found.unverifiable ??= `${name} runs SQL text that is only known when it runs`;
      return;
    }
    for (const text of texts) analyzeNestedSql(text!, found, depth + 1, `the SQL text given to ${name}`);
    return;
  }
  rulesOfFunctionName(name, found);
}

/**
 * Walks the whole tree, so statements nested anywhere are seen: data-modifying CTEs
 * (`WITH x AS (DELETE FROM t RETURNING *) SELECT …`), PREPARE bodies, COPY (query), EXPLAIN
 * ANALYZE, rule actions, SQL-standard function bodies; DO blocks and function bodies through
 * `analyzeBody`. Only a plain EXPLAIN's statement is skipped, because it is planned and never run.
 * `text` is the statement's own text when `node` is a whole statement, which DO and CREATE
 * FUNCTION always are.
 */
function analyzeStatement(node: unknown, text: string | undefined, found: Findings, depth: number): void {
  if (Array.isArray(node)) {
    for (const item of node) analyzeStatement(item, undefined, found, depth);
    return;
  }
  if (!isRecord(node)) return;
  const wrapped = unwrapNode(node);
  if (wrapped === undefined) {
    for (const value of Object.values(node)) analyzeStatement(value, undefined, found, depth);
    return;
  }
  const [type, fields] = wrapped;
  switch (type) {
    case "ExplainStmt":
      if (!explainRunsStatement(fields as ExplainStmt, found)) return;
      break;
    case "String": {
      const sval = fields["sval"];
      if (typeof sval === "string") rulesOfFunctionName(sval, found);
      return;
    }
    case "FuncCall": {
      checkFunctionCall(fields, found, depth);
      // The name is handled; everything else (arguments, FILTER, OVER) is walked.
      for (const [key, value] of Object.entries(fields)) if (key !== "funcname") analyzeStatement(value, undefined, found, depth);
      return;
    }
    case "DoStmt":
    case "CreateFunctionStmt":
      analyzeBody(type, fields, text, found, depth);
      break;
    case "CreateTrigStmt":
    case "CreateEventTrigStmt":
    case "AlterTableStmt":
    case "AlterEventTrigStmt":
      attachedFunctions(type, fields, node === found.root, found);
      break;
  }
  rulesOfStatement(type, fields, found);
  for (const value of Object.values(fields)) analyzeStatement(value, undefined, found, depth);
}

/** ALTER TABLE subcommands that make existing triggers fire (https://www.postgresql.org/docs/current/sql-altertable.html). */
const ENABLE_TRIGGER: Readonly<Record<string, "named" | "all" | "user">> = {
  AT_EnableTrig: "named",
  AT_EnableAlwaysTrig: "named",
  AT_EnableReplicaTrig: "named",
  AT_EnableTrigAll: "all",
  AT_EnableTrigUser: "user",
};
const ENABLE_RULE: ReadonlySet<string> = new Set(["AT_EnableRule", "AT_EnableAlwaysRule", "AT_EnableReplicaRule"]);

/**
 * Statements that attach a function of the catalog (its body is not in the text) to a table or an
 * event: see `AttachedFunction`. Sent on its own, the statement lists them for the proxy to read;
 * nested in another statement (a body, a DO block, CREATE SCHEMA … CREATE TRIGGER), where the
 * name may resolve differently by the time it runs, it is unverifiable.
 */
function attachedFunctions(type: string, fields: Record<string, unknown>, sentOnItsOwn: boolean, found: Findings): void {
  const attaches: AttachedFunction[] = [];
  let unreadable: string | undefined;
  if (type === "CreateTrigStmt" || type === "CreateEventTrigStmt") {
    const names = Array.isArray(fields["funcname"]) ? (fields["funcname"] as unknown[]).map(stringValue) : [];
    const [first, second] = names;
    if (names.length === 1 && first !== undefined) attaches.push({ via: "function", name: first });
    else if (names.length === 2 && first !== undefined && second !== undefined) attaches.push({ via: "function", schema: first, name: second });
    else unreadable = "the trigger's function name has a form jitgate does not look up";
  } else if (type === "AlterEventTrigStmt") {
    const trigger = fields["trigname"];
    if (fields["tgenabled"] !== "D") {
      if (typeof trigger === "string") attaches.push({ via: "event-trigger", trigger });
      else unreadable = "the event trigger has no name jitgate can read";
    }
  } else {
    const relation = isRecord(fields["relation"]) ? fields["relation"] : {};
    const table = relation["relname"];
    const schema = relation["schemaname"];
    for (const item of Array.isArray(fields["cmds"]) ? (fields["cmds"] as unknown[]) : []) {
      const cmd = isRecord(item) && isRecord(item["AlterTableCmd"]) ? item["AlterTableCmd"] : undefined;
      const subtype = typeof cmd?.["subtype"] === "string" ? cmd["subtype"] : "";
      if (ENABLE_RULE.has(subtype)) found.unverifiable ??= "enabling a rule makes actions stored in the catalog run, which jitgate does not read";
      const which = ENABLE_TRIGGER[subtype];
      if (which === undefined) continue;
      const trigger = which === "named" ? cmd?.["name"] : "";
      if (typeof table !== "string" || typeof trigger !== "string" || relation["catalogname"] !== undefined) {
        unreadable = "the trigger or its table has a name jitgate does not look up";
        continue;
      }
      attaches.push({ via: "trigger", ...(typeof schema === "string" ? { schema } : {}), table, trigger, which });
    }
  }
  if (unreadable !== undefined) found.unverifiable ??= unreadable;
  if (attaches.length === 0) return;
  if (sentOnItsOwn) found.attaches.push(...attaches);
  else found.unverifiable ??= "a trigger created or enabled inside another statement runs a function jitgate cannot look up before it runs";
}

/** Bodies nested deeper than this are not followed; what lies below is unverifiable. */
const MAX_NESTING = 10;

/**
 * Classifies SQL found inside a statement (a function body, a constant given to EXECUTE or to
 * query_to_xml) as if it had been sent on its own; its findings become the outer statement's.
 */
function analyzeNestedSql(sql: string, found: Findings, depth: number, what: string): void {
  if (depth > MAX_NESTING) {
    found.unverifiable ??= `${what} is nested more than ${MAX_NESTING} levels deep`;
    return;
  }
  if (sql.includes("\0")) {
    found.unverifiable ??= `${what} contains a NUL byte`;
    return;
  }
  let parsed: ParseResult;
  try {
    parsed = parseSync(sql);
  } catch (error) {
    found.unverifiable ??= `${what} does not parse: ${error instanceof Error ? error.message : String(error)}`;
    return;
  }
  const bytes = utf8.encode(sql);
  for (const raw of parsed.stmts ?? []) {
    const start = raw.stmt_location ?? 0;
    const end = raw.stmt_len === undefined || raw.stmt_len === 0 ? bytes.length : start + raw.stmt_len;
    const text = utf8Decoder.decode(bytes.subarray(start, end)).trim();
    found.nested.push(text);
    analyzeStatement(raw.stmt, text, found, depth);
  }
}

function defElems(list: unknown): Map<string, unknown> {
  const out = new Map<string, unknown>();
  if (!Array.isArray(list)) return out;
  for (const item of list) {
    const elem = isRecord(item) ? item["DefElem"] : undefined;
    if (isRecord(elem) && typeof elem["defname"] === "string") out.set(elem["defname"], elem["arg"]);
  }
  return out;
}

/** CREATE FUNCTION's `AS` is a list: one string for a body, two (file, symbol) for C functions. */
function onlyStringOfList(node: unknown): string | undefined {
  const list = isRecord(node) ? node["List"] : undefined;
  const items = isRecord(list) ? list["items"] : undefined;
  return Array.isArray(items) && items.length === 1 ? stringValue(items[0]) : undefined;
}

function stringValue(node: unknown): string | undefined {
  if (!isRecord(node)) return undefined;
  const value = node["String"];
  return isRecord(value) && typeof value["sval"] === "string" ? value["sval"] : undefined;
}

/**
 * The body of a DO block or of CREATE FUNCTION / PROCEDURE: SQL bodies are parsed as SQL
 * (a `BEGIN ATOMIC` body is already part of the tree), PL/pgSQL bodies with libpg_query's PL/pgSQL
 * parser, and a body in any other language cannot be read.
 * https://www.postgresql.org/docs/current/sql-createfunction.html, https://www.postgresql.org/docs/current/sql-do.html
 */
function analyzeBody(type: "DoStmt" | "CreateFunctionStmt", fields: Record<string, unknown>, text: string | undefined, found: Findings, depth: number): void {
  const options = defElems(type === "DoStmt" ? fields["args"] : fields["options"]);
  const as = options.get("as");
  if (as === undefined) return; // No body, or a BEGIN ATOMIC one, which the walk reaches.
  const language = (stringValue(options.get("language")) ?? (type === "DoStmt" ? "plpgsql" : "")).toLowerCase();
  const what = type === "DoStmt" ? "the DO block" : "the function body";
  if (language === "sql") {
    const body = stringValue(as) ?? onlyStringOfList(as);
    if (body === undefined) found.unverifiable ??= `${what} is not a single string`;
    else analyzeNestedSql(body, found, depth + 1, what);
    return;
  }
  if (language !== "plpgsql") {
    found.unverifiable ??= `${what} is in language ${JSON.stringify(language)}, which jitgate cannot read`;
    return;
  }
  if (text === undefined || depth > MAX_NESTING) {
    found.unverifiable ??= `${what} is nested where jitgate cannot read it`;
    return;
  }
  let functions: unknown;
  try {
    functions = (parsePlPgSQLSync(text) as unknown as { plpgsql_funcs?: unknown }).plpgsql_funcs;
  } catch (error) {
    found.unverifiable ??= `${what} does not parse as PL/pgSQL: ${error instanceof Error ? error.message : String(error)}`;
    return;
  }
  if (!Array.isArray(functions) || functions.length !== 1) {
    found.unverifiable ??= `${what} did not yield one PL/pgSQL function`;
    return;
  }
  analyzePlpgsql(functions, undefined, found, depth + 1);
}

/** PL/pgSQL statements whose query (under the given key) is SQL text computed when it runs. */
const DYNAMIC_SQL: Readonly<Record<string, string>> = {
  PLpgSQL_stmt_dynexecute: "query",
  PLpgSQL_stmt_dynfors: "query",
  PLpgSQL_stmt_open: "dynquery",
  PLpgSQL_stmt_return_query: "dynquery",
};

/** https://github.com/postgres/postgres/blob/master/src/include/parser/parser.h (RawParseMode) */
const PARSE_MODE_DEFAULT = 0;
const PARSE_MODE_ASSIGN = new Set([3, 4, 5]);

/**
 * Every PL/pgSQL expression and statement is SQL that the server parses with its own grammar:
 * statements (mode 0) as they are, expressions (`IF`, `RAISE`, defaults, cursor queries…) as the
 * target list of a SELECT, assignments as a SELECT of both sides. The query of EXECUTE, FOR …
 * EXECUTE, OPEN … FOR EXECUTE and RETURN QUERY EXECUTE is classified too when it is one string
 * constant, and is unverifiable otherwise.
 */
function analyzePlpgsql(node: unknown, statementType: string | undefined, found: Findings, depth: number): void {
  if (Array.isArray(node)) {
    for (const item of node) analyzePlpgsql(item, statementType, found, depth);
    return;
  }
  if (!isRecord(node)) return;
  for (const [key, value] of Object.entries(node)) {
    if (key === "PLpgSQL_expr" && isRecord(value)) {
      analyzePlpgsqlExpression(value, found, depth);
      continue;
    }
    if (key.startsWith("PLpgSQL_stmt_")) {
      const dynamicKey = DYNAMIC_SQL[key];
      if (dynamicKey !== undefined && isRecord(value)) {
        const expr = isRecord(value[dynamicKey]) ? (value[dynamicKey] as Record<string, unknown>)["PLpgSQL_expr"] : undefined;
        if (isRecord(expr) && typeof expr["query"] === "string") analyzeDynamicSql(expr["query"], found, depth);
      }
      analyzePlpgsql(value, key, found, depth);
      continue;
    }
    analyzePlpgsql(value, statementType, found, depth);
  }
}

function analyzePlpgsqlExpression(expr: Record<string, unknown>, found: Findings, depth: number): void {
  const query = expr["query"];
  if (typeof query !== "string") return;
  const mode = typeof expr["parseMode"] === "number" ? expr["parseMode"] : PARSE_MODE_DEFAULT;
  if (mode === PARSE_MODE_DEFAULT) {
    analyzeNestedSql(query, found, depth, "a statement in the PL/pgSQL body");
    return;
  }
  let sql = query;
  if (PARSE_MODE_ASSIGN.has(mode)) {
    // `target := value` (or `target = value`): the target's subscripts and the value are both
    // expressions; a SELECT of both reads them.
    const assign = assignmentOperator(query);
    if (assign !== undefined) sql = `${query.slice(0, assign.start)}, ${query.slice(assign.end)}`;
  }
  analyzeNestedSql(`SELECT ${sql}`, found, depth, "an expression in the PL/pgSQL body");
}

function assignmentOperator(query: string): { start: number; end: number } | undefined {
  try {
    const token = scanSync(query).tokens.find((t) => t.text === ":=");
    if (token === undefined) return undefined;
    // Token offsets are in UTF-8 bytes.
    const bytes = utf8.encode(query);
    return { start: utf8Decoder.decode(bytes.subarray(0, token.start)).length, end: utf8Decoder.decode(bytes.subarray(0, token.end)).length };
  } catch {
    return undefined;
  }
}

/** The SQL text given to EXECUTE: classified when it is one string constant, unverifiable otherwise. */
function analyzeDynamicSql(expression: string, found: Findings, depth: number): void {
  let constant: string | undefined;
  try {
    const [raw, ...more] = parseSync(`SELECT ${expression}`).stmts ?? [];
    const select = raw?.stmt !== undefined && "SelectStmt" in raw.stmt ? raw.stmt.SelectStmt : undefined;
    const targets = select?.targetList ?? [];
    const [only] = targets;
    if (more.length === 0 && targets.length === 1 && only !== undefined && "ResTarget" in only) constant = stringConstant(only.ResTarget.val);
  } catch {
    constant = undefined;
  }
  if (constant === undefined) {
    found.unverifiable ??= `EXECUTE of SQL text built when it runs (${expression.length > 60 ? `${expression.slice(0, 60)}…` : expression})`;
    return;
  }
  analyzeNestedSql(constant, found, depth + 1, "the SQL text given to EXECUTE");
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
