import { OPAQUE_BUILTINS, statementShape, type StatementShape } from "./statement-shape.js";

/**
 * Decides which output columns of a result must be masked whole because of where their values
 * come from (issue 13, must 3): masking follows the data, not the output column's name.
 *
 * - A plain column (RowDescription gives its table OID and attribute number) is masked when the
 *   column's real name is masked (`select email as e` included), or when its relation is a view
 *   or materialized view whose definition reads masked data, or when the gateway cannot find it.
 * - Any other column (an expression, aggregate, whole row, function result: table OID 0) is masked
 *   when the statement could put masked data in it: it names a masked column anywhere, uses a
 *   whole row or `*`, reads a view that reads masked data or a relation the gateway cannot see,
 *   calls a function or operator that is not PostgreSQL's own (or one of PostgreSQL's that reads
 *   tables or settings by name), or cannot be traced at all (FETCH, EXECUTE, CALL, SHOW…).
 *
 * When the gateway cannot tell, it masks. Catalog look-ups go through `lookup` (the target's
 * catalog, read by a session of the gateway's own); only table columns' names are cached, views
 * are read again for each result because another session may redefine them.
 */
export interface CatalogRow {
  what: "relation" | "function" | "operator";
  oid: number;
  /** relkind for relations, the schema for functions and operators. */
  detail: string;
  name: string;
  attnum: number | null;
  attname: string | null;
  viewDefinition: string | null;
}

export type CatalogLookup = (query: { oids: number[]; relations: string[]; functions: string[]; operators: string[] }) => Promise<CatalogRow[]>;

export interface OutputField {
  tableID: number;
  columnID: number;
}

const TABLE_KINDS = new Set(["r", "p", "f", "S", "t", "c"]);
const VIEW_KINDS = new Set(["v", "m"]);
const MAX_VIEW_DEPTH = 8;

interface Relation {
  kind: string;
  columns: Map<number, string>;
  viewDefinition: string | null;
}

export class ResultOrigins {
  readonly #tables = new Map<number, Relation>();
  readonly #shapes = new Map<string, StatementShape>();

  constructor(
    private readonly isMaskedName: (lowerName: string) => boolean,
    private readonly lookup: CatalogLookup,
  ) {}

  /** Forget cached table columns (after DDL in this session). */
  forget(): void {
    this.#tables.clear();
  }

  shapeOf(sql: string): StatementShape {
    let shape = this.#shapes.get(sql);
    if (!shape) {
      shape = statementShape(sql, this.isMaskedName);
      if (this.#shapes.size >= 500) this.#shapes.delete(this.#shapes.keys().next().value!);
      this.#shapes.set(sql, shape);
    }
    return shape;
  }

  /** Whether the statement's expression columns can carry masked data, from its text alone (undefined: ask the catalog). */
  #taintedByText(shape: StatementShape): boolean | undefined {
    if (shape.opaque || shape.namesMaskedColumn || shape.wholeRow || shape.star) return true;
    if (shape.functions.some((f) => OPAQUE_BUILTINS.has(f.name) || (f.schema !== undefined && f.schema !== "pg_catalog"))) return true;
    if (shape.relations.length === 0 && shape.functions.length === 0 && shape.operators.length === 0) return false;
    return undefined;
  }

  /**
   * The indexes of the fields to mask whole; synchronous when nothing needs the catalog.
   * `statement` is the text of the statement the result belongs to, undefined when unknown.
   */
  maskedFields(fields: readonly OutputField[], statement: string | undefined): Set<number> | Promise<Set<number>> {
    const masked = new Set<number>();
    const expressions: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < fields.length; i++) (fields[i]!.tableID === 0 ? expressions : plain).push(i);
    // Only expression columns need the statement's shape (a parse): plain columns are traced by the catalog.
    const shape = statement === undefined || expressions.length === 0 ? undefined : this.shapeOf(statement);
    const byText = expressions.length === 0 ? false : shape === undefined ? true : this.#taintedByText(shape);
    if (expressions.length > 0 && byText === true) for (const i of expressions) masked.add(i);
    const needExpressions = expressions.length > 0 && byText === undefined;
    let unknownTables = false;
    for (const i of plain) if (!this.#tables.has(fields[i]!.tableID)) unknownTables = true;
    if (!needExpressions && !unknownTables) {
      for (const i of plain) if (this.#plainMasked(fields[i]!) !== false) masked.add(i);
      return masked;
    }
    return this.#resolve(fields, plain, needExpressions ? expressions : [], shape, masked);
  }

  /** false: not masked; true: masked; undefined: a view, to be checked. */
  #plainMasked(field: OutputField): boolean | undefined {
    const relation = this.#tables.get(field.tableID);
    if (!relation) return true;
    const name = relation.columns.get(field.columnID);
    if (name === undefined || this.isMaskedName(name.toLowerCase())) return true;
    return TABLE_KINDS.has(relation.kind) ? false : undefined;
  }

  async #resolve(fields: readonly OutputField[], plain: number[], expressions: number[], shape: StatementShape | undefined, masked: Set<number>): Promise<Set<number>> {
    const oids = [...new Set(plain.map((i) => fields[i]!.tableID))];
    const rows = await this.lookup({
      oids,
      relations: expressions.length > 0 ? shape!.relations : [],
      functions: expressions.length > 0 ? shape!.functions.map((f) => f.name) : [],
      operators: expressions.length > 0 ? shape!.operators : [],
    });
    const byOid = relationsByOid(rows);
    for (const [oid, relation] of byOid) if (TABLE_KINDS.has(relation.kind)) this.#tables.set(oid, relation);
    for (const i of plain) {
      const field = fields[i]!;
      const relation = byOid.get(field.tableID);
      if (!relation) {
        masked.add(i);
        continue;
      }
      const name = relation.columns.get(field.columnID);
      if (name === undefined || this.isMaskedName(name.toLowerCase())) masked.add(i);
      else if (!TABLE_KINDS.has(relation.kind) && !(await this.#relationClean(relation, 0))) masked.add(i);
    }
    if (expressions.length > 0 && !(await this.#shapeClean(shape!, rows, 0))) for (const i of expressions) masked.add(i);
    return masked;
  }

  /**
   * Whether the values a writing statement stores (see storedValuesShape) can come from a masked
   * column: then they would be readable later under another name.
   */
  async storesMaskedData(shape: StatementShape): Promise<boolean> {
    if (shape.opaque || shape.namesMaskedColumn || shape.wholeRow) return true;
    if (shape.relations.length === 0 && shape.functions.length === 0 && shape.operators.length === 0) return false;
    const rows = await this.lookup({ oids: [], relations: shape.relations, functions: shape.functions.map((f) => f.name), operators: shape.operators });
    if (shape.star) {
      const named = relationsByOid(rows.filter((r) => r.what === "relation"));
      for (const relation of named.values()) {
        if ([...relation.columns.values()].some((name) => this.isMaskedName(name.toLowerCase()))) return true;
      }
    }
    return !(await this.#shapeClean({ ...shape, star: false }, rows, 0));
  }

  async #relationClean(relation: Relation, depth: number): Promise<boolean> {
    if (TABLE_KINDS.has(relation.kind)) return true;
    if (!VIEW_KINDS.has(relation.kind) || relation.viewDefinition === null || depth >= MAX_VIEW_DEPTH) return false;
    const shape = statementShape(relation.viewDefinition, this.isMaskedName);
    if (this.#taintedByText(shape) === true) return false;
    const rows = await this.lookup({ oids: [], relations: shape.relations, functions: shape.functions.map((f) => f.name), operators: shape.operators });
    return this.#shapeClean(shape, rows, depth + 1);
  }

  /** Whether a statement whose text alone is not tainted reads only clean relations and calls only PostgreSQL's own functions. */
  async #shapeClean(shape: StatementShape, rows: CatalogRow[], depth: number): Promise<boolean> {
    if (this.#taintedByText(shape) === true) return false;
    for (const name of new Set(shape.functions.map((f) => f.name))) {
      const procs = rows.filter((r) => r.what === "function" && r.name === name);
      if (procs.length === 0 || procs.some((p) => p.detail !== "pg_catalog")) return false;
    }
    for (const name of new Set(shape.operators)) {
      const ops = rows.filter((r) => r.what === "operator" && r.name === name);
      if (ops.length === 0 || ops.some((o) => o.detail !== "pg_catalog")) return false;
    }
    const named = relationsByOid(rows.filter((r) => r.what === "relation" && shape.relations.includes(r.name)));
    for (const name of shape.relations) {
      const candidates = [...named.entries()].filter(([, r]) => r.name === name);
      // Not in the catalog the gateway reads: created in the client's open transaction, perhaps.
      if (candidates.length === 0) return false;
      for (const [, relation] of candidates) if (!(await this.#relationClean(relation, depth))) return false;
    }
    return true;
  }
}

function relationsByOid(rows: CatalogRow[]): Map<number, Relation & { name: string }> {
  const out = new Map<number, Relation & { name: string }>();
  for (const row of rows) {
    if (row.what !== "relation") continue;
    let relation = out.get(row.oid);
    if (!relation) {
      relation = { kind: row.detail, columns: new Map(), viewDefinition: row.viewDefinition, name: row.name };
      out.set(row.oid, relation);
    }
    if (row.attnum !== null && row.attname !== null) relation.columns.set(row.attnum, row.attname);
  }
  return out;
}

/** The catalog query behind `CatalogLookup`: one round trip, parameters as JSON arrays. */
export const CATALOG_SQL = `
SELECT 'relation', c.oid::text, c.relkind::text, c.relname::text, a.attnum::text, a.attname::text,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END
  FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE $1::jsonb ? c.oid::text OR $2::jsonb ? c.relname::text
UNION ALL
SELECT 'function', p.oid::text, n.nspname::text, p.proname::text, NULL, NULL, NULL
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE $3::jsonb ? p.proname::text
UNION ALL
SELECT 'operator', o.oid::text, n.nspname::text, o.oprname::text, NULL, NULL, NULL
  FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE $4::jsonb ? o.oprname::text`;

export function catalogParams(query: Parameters<CatalogLookup>[0]): string[] {
  return [JSON.stringify(query.oids.map(String)), JSON.stringify(query.relations), JSON.stringify(query.functions), JSON.stringify(query.operators)];
}

export function catalogRows(rows: (string | null)[][]): CatalogRow[] {
  return rows.map((r) => ({
    what: r[0] as CatalogRow["what"],
    oid: Number(r[1]),
    detail: r[2] ?? "",
    name: r[3] ?? "",
    attnum: r[4] === null || r[4] === undefined ? null : Number(r[4]),
    attname: r[5] ?? null,
    viewDefinition: r[6] ?? null,
  }));
}
