import {
  withAttachedFunctions,
  type AttachedFunction,
  type AttachedFunctionLookup,
  type CompiledRules,
} from "../../rules/sql-classifier.js";
import type { ClassifiedStatement } from "./connection.js";
import type { UpstreamTarget } from "./upstream.js";
import { UpstreamQueries } from "./upstream-query.js";

/**
 * Reads the bodies of the functions a statement attaches (`CREATE TRIGGER … EXECUTE FUNCTION f()`,
 * `ALTER TABLE … ENABLE TRIGGER t`, see the classifier's `functionsToInspect`) from the target's
 * catalog, through a session of the gateway's own opened when first needed, so that the statement
 * takes the strictest verdict of its own and of those bodies.
 *
 * That session does not share the client's search_path, so a name is looked up wherever the
 * server could find it: an unqualified function name matches every function of that name with no
 * arguments that returns `trigger` or `event_trigger`, in any schema; a qualified one only that
 * schema's (`pg_temp.f` is another session's schema here, so it is not found). Every match is
 * read. What the client's own transaction changed is not visible here either: the connection only
 * asks when the statement starts a transaction of its own (see connection.ts); otherwise, and when
 * nothing is found, the look-up fails or a body cannot be read, the statement is unverifiable.
 * Nothing here is cached: another session may replace a function at any time.
 */
export class AttachedFunctions {
  #queries: Promise<UpstreamQueries> | undefined;
  #closed = false;

  constructor(
    private readonly upstream: UpstreamTarget,
    private readonly rules: CompiledRules,
    private readonly timeoutMs = 10_000,
  ) {}

  /**
   * The statement with the verdict of the functions it attaches; `unverifiable` says why they
   * cannot be looked up now (then they are not).
   */
  async inspect<S extends ClassifiedStatement>(statement: S, unverifiable: string | undefined): Promise<S> {
    const attached = statement.functionsToInspect ?? [];
    if (attached.length === 0 || statement.verdict === "block") return withAttachedFunctions(statement, { functions: [] }, this.rules);
    const lookup: AttachedFunctionLookup =
      unverifiable !== undefined ? { unverifiable } : await this.#lookUp(attached).catch((error: unknown) => ({
        unverifiable: `jitgate could not read the attached function from the target's catalog (${error instanceof Error ? error.message : String(error)})`,
      }));
    return withAttachedFunctions(statement, lookup, this.rules);
  }

  close(): void {
    this.#closed = true;
    void this.#queries?.then((q) => q.close(), () => {});
  }

  async #lookUp(attached: readonly AttachedFunction[]): Promise<AttachedFunctionLookup> {
    const functions: { name: string; definition: string }[] = [];
    for (const one of attached) {
      const rows = await this.#query(...lookupOf(one));
      if (rows.length === 0 && (one.via !== "trigger" || one.which === "named")) return { unverifiable: `${nameOf(one)} is not in the target's catalog` };
      for (const [name, definition] of rows) {
        if (typeof name !== "string" || typeof definition !== "string") return { unverifiable: `the definition of ${nameOf(one)} cannot be read` };
        functions.push({ name, definition });
      }
    }
    return { functions };
  }

  async #query(sql: string, params: (string | null)[]): Promise<(string | null)[][]> {
    if (this.#closed) throw new Error("the session has ended");
    const opening = (this.#queries ??= UpstreamQueries.open(this.upstream, "jitgate: catalog", this.timeoutMs));
    opening.catch(() => {
      if (this.#queries === opening) this.#queries = undefined;
    });
    const queries = await opening;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      return await Promise.race([queries.query(sql, params), timeout]);
    } catch (error) {
      // Whatever went wrong (the session may be gone), the next look-up starts on a fresh one.
      if (this.#queries === opening) this.#queries = undefined;
      queries.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }
}

function nameOf(one: AttachedFunction): string {
  const name = (schema: string | undefined, object: string) => (schema === undefined ? object : `${schema}.${object}`);
  switch (one.via) {
    case "function":
      return `the function ${name(one.schema, one.name)}() that returns trigger or event_trigger`;
    case "trigger":
      return `the trigger ${one.trigger} on ${name(one.schema, one.table)}`;
    case "event-trigger":
      return `the event trigger ${one.trigger}`;
  }
}

// Each query returns (the function's name as `schema.name()`, pg_get_functiondef of it). The
// session is the gateway's own, with the target's default search_path; names are compared as text.
const FUNCTION_NAME = "pg_catalog.format('%I.%I()', n.nspname, p.proname)";

/** CreateTrigger and CreateEventTrigger look the name up with no arguments (LookupFuncName(…, 0, …)). */
const FUNCTIONS_SQL = `
  SELECT ${FUNCTION_NAME}, pg_catalog.pg_get_functiondef(p.oid)
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  WHERE p.proname = $2 AND p.pronargs = 0 AND p.prokind = 'f'
    AND p.prorettype IN ('pg_catalog.trigger'::pg_catalog.regtype, 'pg_catalog.event_trigger'::pg_catalog.regtype)
    AND ($1::text IS NULL OR n.nspname = $1)
  ORDER BY 1`;

/**
 * The functions of a table's triggers. Internal triggers (those PostgreSQL makes for foreign keys
 * and deferrable constraints, tgisinternal) are left out: they run PostgreSQL's own checks, and
 * enabling them by name needs a superuser.
 */
const TRIGGERS_SQL = `
  SELECT ${FUNCTION_NAME}, pg_catalog.pg_get_functiondef(p.oid)
  FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
  JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  WHERE c.relname = $2 AND ($1::text IS NULL OR cn.nspname = $1) AND NOT t.tgisinternal
    AND ($3::text IS NULL OR t.tgname = $3)
  ORDER BY 1`;

const EVENT_TRIGGER_SQL = `
  SELECT ${FUNCTION_NAME}, pg_catalog.pg_get_functiondef(p.oid)
  FROM pg_catalog.pg_event_trigger e
  JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  WHERE e.evtname = $1`;

function lookupOf(one: AttachedFunction): [sql: string, params: (string | null)[]] {
  switch (one.via) {
    case "function":
      return [FUNCTIONS_SQL, [one.schema ?? null, one.name]];
    case "trigger":
      return [TRIGGERS_SQL, [one.schema ?? null, one.table, one.which === "named" ? one.trigger : null]];
    case "event-trigger":
      return [EVENT_TRIGGER_SQL, [one.trigger]];
  }
}
