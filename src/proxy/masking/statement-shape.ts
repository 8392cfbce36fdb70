import { parseSync } from "libpg-query";

/**
 * What the parse tree of one statement says about where its results can come from, for masking
 * (issue 13, must 3). RowDescription names the table and column of a plain column reference
 * (https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ROWDESCRIPTION);
 * every other output column — an expression, an aggregate, a whole row, a function's result — comes
 * with table 0, and only the statement itself can say what went into it. No I/O: names the
 * statement refers to are listed here and looked up in the target's catalog by the caller.
 */
export interface StatementShape {
  /**
   * The statement's results cannot be traced from its own text: FETCH (the cursor's query was
   * another statement), EXECUTE of a prepared statement, CALL, SHOW, DO, EXPLAIN ANALYZE…
   */
  opaque: boolean;
  /** An identifier anywhere in it is the name of a masked column (`email`, `o.email`, `(o).email`). */
  namesMaskedColumn: boolean;
  /** A relation's or alias's name used as a value: a whole row (`row_to_json(o)`, `select o`, `o::text`). */
  wholeRow: boolean;
  /** A `*` column list anywhere (`x.*`, `select *` in a subquery, `RETURNING *`). */
  star: boolean;
  /** Relations read by name (FROM, JOIN, subqueries), CTE names excluded: tables, views, or unknown. */
  relations: string[];
  /** Functions and operators called by name, schema-qualified or not. */
  functions: { schema: string | undefined; name: string }[];
  operators: string[];
}

/** Result-returning statements whose output columns the shape describes. */
const TRACEABLE = new Set(["SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]);

/**
 * Builtin functions that read a relation or run SQL given as text (`table_to_xml('orders', …)`,
 * `query_to_xml('select email …')`), or set a value the session reports back: their results are
 * traced by nothing in the statement's text.
 */
export const OPAQUE_BUILTINS: ReadonlySet<string> = new Set([
  "query_to_xml",
  "query_to_xmlschema",
  "query_to_xml_and_xmlschema",
  "table_to_xml",
  "table_to_xmlschema",
  "table_to_xml_and_xmlschema",
  "cursor_to_xml",
  "cursor_to_xmlschema",
  "schema_to_xml",
  "schema_to_xmlschema",
  "schema_to_xml_and_xmlschema",
  "database_to_xml",
  "database_to_xmlschema",
  "database_to_xml_and_xmlschema",
  "current_setting",
  "set_config",
  "pg_read_file",
  "pg_read_binary_file",
  "lo_get",
  "loread",
  "lo_export",
]);

/**
 * Operators taken as PostgreSQL's own without a catalog look-up: pg_catalog is searched first
 * (https://www.postgresql.org/docs/current/ddl-schemas.html#DDL-SCHEMAS-CATALOG), so for the
 * built-in types they resolve to the built-in operators. Keeps arithmetic and comparisons — the
 * common path — free of a round trip to the target.
 */
export const PLAIN_OPERATORS: ReadonlySet<string> = new Set(["=", "<>", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "||", "~~", "!~~", "~~*", "!~~*", "~", "!~", "~*", "!~*"]);

/** The shape of one statement's text; a text that does not parse is opaque. */
export function statementShape(sql: string, isMaskedName: (lowerName: string) => boolean): StatementShape {
  const shape: StatementShape = {
    opaque: false,
    namesMaskedColumn: false,
    wholeRow: false,
    star: false,
    relations: [],
    functions: [],
    operators: [],
  };
  let tree: { stmts?: { stmt?: Record<string, unknown> }[] };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch {
    return { ...shape, opaque: true };
  }
  const stmts = tree.stmts ?? [];
  if (stmts.length !== 1) return { ...shape, opaque: stmts.length > 1 };
  const stmt = stmts[0]!.stmt ?? {};
  const type = Object.keys(stmt)[0] ?? "";
  // COPY (query) TO carries a query that is traced like a SELECT; everything else is opaque.
  return { ...nodeShape(stmt, isMaskedName), opaque: !TRACEABLE.has(type) && type !== "CopyStmt" };
}

/**
 * The parts of a writing statement whose values end up stored: what INSERT inserts, what UPDATE
 * sets, what MERGE writes, the query of CREATE TABLE AS and SELECT INTO. Undefined when the
 * statement stores no values it read (or does not parse: the classifier refuses that).
 */
export function storedValuesShape(sql: string, isMaskedName: (lowerName: string) => boolean): StatementShape | undefined {
  let tree: { stmts?: { stmt?: Record<string, unknown> }[] };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch {
    return undefined;
  }
  const stmt = tree.stmts?.[0]?.stmt ?? {};
  const [type, body] = Object.entries(stmt)[0] ?? [];
  const node = body as Record<string, unknown> | undefined;
  if (!node) return undefined;
  let parts: unknown[];
  if (type === "InsertStmt") parts = [node.selectStmt, node.withClause];
  else if (type === "UpdateStmt") parts = [node.targetList, node.fromClause, node.withClause];
  else if (type === "MergeStmt") parts = [node.sourceRelation, node.mergeWhenClauses, node.withClause];
  else if (type === "CreateTableAsStmt") parts = [node.query];
  else if (type === "SelectStmt" && node.intoClause) parts = [node];
  else return undefined;
  return nodeShape({ parts }, isMaskedName);
}

function nodeShape(stmt: unknown, isMaskedName: (lowerName: string) => boolean): StatementShape {
  const shape: StatementShape = {
    opaque: false,
    namesMaskedColumn: false,
    wholeRow: false,
    star: false,
    relations: [],
    functions: [],
    operators: [],
  };
  const names = new Set<string>();
  const ctes = new Set<string>();
  const singleRefs: string[] = [];
  const relations = new Set<string>();
  const walk = (node: unknown, key: string | undefined): void => {
    if (Array.isArray(node)) {
      for (const item of node) walk(item, key);
      return;
    }
    if (node === null || typeof node !== "object") return;
    for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
      if (k === "sval" && typeof v === "string") {
        if (isMaskedName(v.toLowerCase())) shape.namesMaskedColumn = true;
      } else if (k === "A_Star") shape.star = true;
      else if (k === "RangeVar") {
        const rv = v as { relname?: string; alias?: { aliasname?: string } };
        if (rv.relname) relations.add(rv.relname);
        if (rv.relname) names.add(rv.relname);
        if (rv.alias?.aliasname) names.add(rv.alias.aliasname);
      } else if (k === "RangeSubselect" || k === "JoinExpr") {
        // A subquery's or join's alias used as a value is its whole row. (A function's alias is not listed:
        // for a scalar function it is the value, and a function returning rows is not PostgreSQL's own.)
        const alias = (v as { alias?: { aliasname?: string } }).alias?.aliasname;
        if (alias) names.add(alias);
      } else if (k === "CommonTableExpr") {
        const cte = v as { ctename?: string };
        if (cte.ctename) {
          ctes.add(cte.ctename);
          names.add(cte.ctename);
        }
      } else if (k === "ColumnRef") {
        const fields = (v as { fields?: { String?: { sval?: string } }[] }).fields ?? [];
        if (fields.length === 1 && fields[0]!.String?.sval !== undefined) singleRefs.push(fields[0]!.String.sval);
      } else if (k === "FuncCall") {
        const parts = ((v as { funcname?: { String?: { sval?: string } }[] }).funcname ?? []).map((p) => p.String?.sval ?? "");
        const name = parts[parts.length - 1] ?? "";
        shape.functions.push({ schema: parts.length > 1 ? parts[parts.length - 2] : undefined, name });
      } else if (k === "A_Expr") {
        const parts = ((v as { name?: { String?: { sval?: string } }[] }).name ?? []).map((part) => part.String?.sval ?? "");
        const name = parts[parts.length - 1] ?? "";
        // A schema-qualified OPERATOR(s.op) is looked up like any other.
        if (parts.length > 1 || !PLAIN_OPERATORS.has(name)) shape.operators.push(parts.length > 1 ? `${parts[0]}.${name}` : name);
      }
      walk(v, k);
    }
  };
  walk(stmt, undefined);
  // A bare name that is a relation or alias in this statement is a whole row, unless a column of
  // that name exists too — which the parser resolves to the column; either way it is masked when
  // the name is masked, and a whole row is treated as carrying every column.
  shape.wholeRow = singleRefs.some((name) => names.has(name));
  shape.relations = [...relations].filter((name) => !ctes.has(name));
  return shape;
}
