import { parseSync, scanSync } from "libpg-query";
import type { Masking } from "../masking/masker.js";
import { CATALOG_SQL, catalogParams, catalogRows, ResultOrigins } from "../masking/result-origins.js";
import { ServerTextMasking } from "../masking/server-text.js";
import { storedValuesShape } from "../masking/statement-shape.js";
import { BackendType } from "./backend-codec.js";
import type { ClassifiedStatement, SessionMasking } from "./connection.js";
import type { UpstreamTarget } from "./upstream.js";
import { UpstreamQueries } from "./upstream-query.js";

/**
 * The masking of one session on a target with masking rules (issue 13, musts 3 and 4), with a
 * session of the gateway's own on the target for catalog look-ups, opened when first needed.
 */
export class MaskingSession implements SessionMasking {
  readonly #origins: ResultOrigins | undefined;
  readonly #text: ServerTextMasking;
  #catalog: Promise<UpstreamQueries> | undefined;

  constructor(
    private readonly masking: Masking,
    private readonly upstream: UpstreamTarget,
  ) {
    this.#text = new ServerTextMasking(masking);
    if (masking.hasColumnRules) {
      this.#origins = new ResultOrigins(masking.isMaskedName, async (query) =>
        catalogRows(await (await this.#queries()).query(CATALOG_SQL, catalogParams(query))),
      );
    }
  }

  #queries(): Promise<UpstreamQueries> {
    this.#catalog ??= UpstreamQueries.open(this.upstream, "jitgate: masking");
    this.#catalog.catch(() => (this.#catalog = undefined));
    return this.#catalog;
  }

  close(): void {
    void this.#catalog?.then((q) => q.close(), () => {});
  }

  /** After DDL in the session, table columns may have changed. */
  onStatements(statements: ClassifiedStatement[]): void {
    if (statements.some((s) => s.kind === "ddl")) this.#origins?.forget();
  }

  forResult(fields: Parameters<SessionMasking["forResult"]>[0], statement: string | undefined): ReturnType<SessionMasking["forResult"]> {
    if (!this.#origins) return this.masking.forResult(fields);
    const wholly = this.#origins.maskedFields(fields, statement);
    if (wholly instanceof Promise) return wholly.then((set) => this.masking.forResult(fields, set));
    return this.masking.forResult(fields, wholly);
  }

  serverText(type: number, frame: Buffer, statement: string | undefined): Buffer {
    switch (type) {
      case BackendType.ErrorResponse:
      case BackendType.NoticeResponse: {
        const plain = !this.#origins || ServerTextMasking.speaksPlainly(statement === undefined ? undefined : this.#origins.shapeOf(statement));
        return this.#text.errorOrNotice(frame, plain);
      }
      case BackendType.ParameterStatus:
        return this.#text.parameterStatus(frame);
      case BackendType.CopyData:
        return this.#text.copyData(frame);
      default:
        return this.#text.notification(frame);
    }
  }

  /**
   * COPY … TO sends CopyData, not DataRows. It is allowed when what it copies is provably free of
   * masked columns (its query, described by the target, traced like any result), in text or CSV
   * (the detectors run over each row); otherwise it is refused.
   */
  async vet(statements: ClassifiedStatement[]): Promise<ClassifiedStatement[]> {
    const out: ClassifiedStatement[] = [];
    for (const statement of statements) {
      if (statement.verdict === "block") out.push(statement);
      else if (statement.kind === "copy") {
        const why = await this.#copyProblem(statement.text);
        out.push(why === undefined ? statement : { ...statement, verdict: "block", rule: why });
      } else if (this.#origins && STORING_KINDS.has(statement.kind) && (statement.kind !== "select" || /\binto\b/i.test(statement.text))) {
        // Masked values written elsewhere would be read back under a name no rule masks.
        const stored = storedValuesShape(statement.text, this.masking.isMaskedName);
        const copies = stored !== undefined && (await this.#origins.storesMaskedData(stored));
        out.push(copies ? { ...statement, verdict: "block", rule: "copy-of-masked-columns" } : statement);
      } else out.push(statement);
    }
    return out;
  }

  /** `vet` when nothing needs a look-up: what it would answer (every statement as it is), else undefined. */
  vetSync(statements: ClassifiedStatement[]): ClassifiedStatement[] | undefined {
    for (const statement of statements) {
      if (statement.verdict === "block") continue;
      if (statement.kind === "copy") return undefined;
      if (this.#origins && STORING_KINDS.has(statement.kind) && (statement.kind !== "select" || /\binto\b/i.test(statement.text))) return undefined;
    }
    return statements;
  }

  async #copyProblem(sql: string): Promise<string | undefined> {
    let copy: { is_from?: boolean; is_program?: boolean; filename?: string; query?: unknown; relation?: { schemaname?: string; relname?: string }; attlist?: { String?: { sval?: string } }[]; options?: { DefElem?: { defname?: string; arg?: { String?: { sval?: string } } } }[] };
    try {
      const stmt = parseSync(sql).stmts?.[0]?.stmt as { CopyStmt?: typeof copy } | undefined;
      if (!stmt?.CopyStmt) return "copy-out-on-masked-target";
      copy = stmt.CopyStmt;
    } catch {
      return "copy-out-on-masked-target";
    }
    if (copy.is_from) return undefined;
    const format = copy.options?.find((o) => o.DefElem?.defname === "format")?.DefElem?.arg?.String?.sval?.toLowerCase();
    if (format === "binary") return "copy-binary-on-masked-target";
    if (!this.#origins) return undefined;
    const query = copy.query !== undefined ? innerQueryText(sql) : relationQuery(copy.relation, copy.attlist);
    if (query === undefined) return "copy-out-on-masked-target";
    let fields;
    try {
      fields = await (await this.#queries()).describe(query);
    } catch {
      // Not something the gateway's own session can see (a temporary table, an open transaction's
      // table): it cannot tell what the copy carries.
      return "copy-out-on-masked-target";
    }
    if (!fields) return undefined;
    const masked = await this.#origins.maskedFields(fields, query);
    return masked.size > 0 ? "copy-of-masked-columns" : undefined;
  }
}

const STORING_KINDS = new Set(["insert", "update", "merge", "ddl", "select", "other"]);

/** The text of `(…)` in `COPY (query) TO …`, by the scanner's token offsets (bytes). */
function innerQueryText(sql: string): string | undefined {
  const bytes = Buffer.from(sql, "utf8");
  const tokens = scanSync(sql).tokens;
  const open = tokens.findIndex((t) => t.text === "(");
  if (open < 0) return undefined;
  let depth = 0;
  for (let i = open; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.text === "(") depth++;
    else if (token.text === ")" && --depth === 0) return bytes.toString("utf8", tokens[open]!.end, token.start);
  }
  return undefined;
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

function relationQuery(relation: { schemaname?: string; relname?: string } | undefined, attlist: { String?: { sval?: string } }[] | undefined): string | undefined {
  if (!relation?.relname) return undefined;
  const columns = attlist && attlist.length > 0 ? attlist.map((a) => quoteIdent(a.String?.sval ?? "")).join(", ") : "*";
  const name = (relation.schemaname ? `${quoteIdent(relation.schemaname)}.` : "") + quoteIdent(relation.relname);
  return `SELECT ${columns} FROM ${name}`;
}
