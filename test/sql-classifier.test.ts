import { beforeAll, describe, expect, it, vi } from "vitest";
import {
  BASELINE_SQL_RULES,
  BUILTIN_SQL_RULES,
  InvalidCommandRule,
  classifyFunctionDefinition,
  classifySql,
  compileRules,
  loadSqlParser,
  normalizeSql,
  sqlRuleProblem,
  type BuiltinSqlRule,
  type ClassifiedStatement,
  type RuleSet,
  type StatementKind,
  withAttachedFunctions,
} from "../src/rules/sql-classifier.js";

beforeAll(async () => {
  await loadSqlParser();
});

const EVERY_BUILTIN: RuleSet = { block: [], review: [...BUILTIN_SQL_RULES] };

// The postgres target of DESIGN.md's configuration example.
const DESIGN_EXAMPLE: RuleSet = {
  block: ["drop-database", "^ALTER SYSTEM"],
  review: ["ddl", "truncate", "delete-without-where", "update-without-where"],
};

function classify(sql: string, rules: RuleSet): ClassifiedStatement[] {
  return classifySql(sql, compileRules(rules));
}

/** The one statement `sql` holds. */
function classifyOne(sql: string, rules: RuleSet): ClassifiedStatement {
  const statements = classify(sql, rules);
  expect(statements).toHaveLength(1);
  return statements[0]!;
}

describe("built-in rules, each configured alone", () => {
  const cases: { rule: BuiltinSqlRule; sql: string; fires: boolean }[] = [
    // ddl
    { rule: "ddl", sql: "CREATE TABLE t (a int)", fires: true },
    { rule: "ddl", sql: "CREATE TEMP TABLE t (a int)", fires: true },
    { rule: "ddl", sql: "CREATE INDEX ON t (a)", fires: true },
    { rule: "ddl", sql: "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)", fires: true },
    { rule: "ddl", sql: "ALTER TABLE t ADD COLUMN b int", fires: true },
    { rule: "ddl", sql: "ALTER TABLE t RENAME TO u", fires: true },
    { rule: "ddl", sql: "ALTER TABLE t RENAME COLUMN a TO b", fires: true },
    { rule: "ddl", sql: "ALTER TABLE t OWNER TO someone", fires: true },
    { rule: "ddl", sql: "ALTER TABLE t SET SCHEMA archive", fires: true },
    { rule: "ddl", sql: "DROP TABLE t", fires: true },
    { rule: "ddl", sql: "DROP INDEX IF EXISTS i", fires: true },
    { rule: "ddl", sql: "DROP VIEW v CASCADE", fires: true },
    { rule: "ddl", sql: "COMMENT ON TABLE t IS 'orders'", fires: true },
    { rule: "ddl", sql: "SECURITY LABEL ON TABLE t IS 'secret'", fires: true },
    { rule: "ddl", sql: "CREATE VIEW v AS SELECT 1", fires: true },
    { rule: "ddl", sql: "CREATE MATERIALIZED VIEW mv AS SELECT 1", fires: true },
    { rule: "ddl", sql: "CREATE TABLE t2 AS SELECT * FROM t", fires: true },
    { rule: "ddl", sql: "SELECT * INTO t2 FROM t", fires: true },
    { rule: "ddl", sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", fires: true },
    { rule: "ddl", sql: "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", fires: true },
    { rule: "ddl", sql: "CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", fires: true },
    { rule: "ddl", sql: "CREATE TYPE mood AS ENUM ('sad', 'ok')", fires: true },
    { rule: "ddl", sql: "CREATE TYPE pair AS (a int, b int)", fires: true },
    { rule: "ddl", sql: "CREATE AGGREGATE agg (int) (sfunc = int4pl, stype = int)", fires: true },
    { rule: "ddl", sql: "CREATE SCHEMA s", fires: true },
    { rule: "ddl", sql: "CREATE EXTENSION pgcrypto", fires: true },
    { rule: "ddl", sql: "CREATE SEQUENCE s", fires: true },
    { rule: "ddl", sql: "ALTER SEQUENCE s RESTART", fires: true },
    { rule: "ddl", sql: "CREATE ROLE intruder SUPERUSER", fires: true },
    { rule: "ddl", sql: "ALTER ROLE someone SUPERUSER", fires: true },
    { rule: "ddl", sql: "DROP ROLE someone", fires: true },
    { rule: "ddl", sql: "CREATE DATABASE d", fires: true },
    { rule: "ddl", sql: "DROP DATABASE d", fires: true },
    { rule: "ddl", sql: "DROP OWNED BY someone", fires: true },
    { rule: "ddl", sql: "REASSIGN OWNED BY a TO b", fires: true },
    { rule: "ddl", sql: "IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO public", fires: true },
    { rule: "ddl", sql: "ALTER SYSTEM SET work_mem = '1GB'", fires: true },
    { rule: "ddl", sql: "SELECT 1", fires: false },
    { rule: "ddl", sql: "INSERT INTO t VALUES (1)", fires: false },
    { rule: "ddl", sql: "UPDATE t SET a = 1 WHERE id = 1", fires: false },
    { rule: "ddl", sql: "TRUNCATE t", fires: false },
    { rule: "ddl", sql: "VACUUM ANALYZE t", fires: false },
    { rule: "ddl", sql: "REFRESH MATERIALIZED VIEW mv", fires: false },
    { rule: "ddl", sql: "GRANT SELECT ON t TO someone", fires: false },
    { rule: "ddl", sql: "SELECT 'CREATE TABLE x (a int)'", fires: false },
    { rule: "ddl", sql: 'SELECT * FROM "create"', fires: false },
    { rule: "ddl", sql: "EXPLAIN CREATE TABLE t2 AS SELECT 1", fires: false },
    // drop-database
    { rule: "drop-database", sql: "DROP DATABASE d", fires: true },
    { rule: "drop-database", sql: 'drop database if exists "Prod" with (force)', fires: true },
    { rule: "drop-database", sql: "DROP TABLE database", fires: false },
    { rule: "drop-database", sql: "DROP SCHEMA d CASCADE", fires: false },
    { rule: "drop-database", sql: "ALTER DATABASE d RENAME TO e", fires: false },
    { rule: "drop-database", sql: "SELECT 'DROP DATABASE d'", fires: false },
    // truncate
    { rule: "truncate", sql: "TRUNCATE t", fires: true },
    { rule: "truncate", sql: "TRUNCATE TABLE a, b RESTART IDENTITY CASCADE", fires: true },
    { rule: "truncate", sql: "truncate only t", fires: true },
    { rule: "truncate", sql: "DELETE FROM t WHERE id = 1", fires: false },
    { rule: "truncate", sql: "SELECT trunc(1.5)", fires: false },
    { rule: "truncate", sql: "CREATE TABLE truncate_log (a int)", fires: false },
    // delete-without-where
    { rule: "delete-without-where", sql: "DELETE FROM t", fires: true },
    { rule: "delete-without-where", sql: "DELETE FROM ONLY t", fires: true },
    { rule: "delete-without-where", sql: "DELETE FROM t USING u", fires: true },
    { rule: "delete-without-where", sql: "DELETE FROM t RETURNING *", fires: true },
    { rule: "delete-without-where", sql: "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", fires: true },
    { rule: "delete-without-where", sql: "WITH x AS (SELECT 1) DELETE FROM t", fires: true },
    {
      rule: "delete-without-where",
      sql: "WITH d AS (DELETE FROM t RETURNING *) INSERT INTO archive SELECT * FROM d",
      fires: true,
    },
    {
      rule: "delete-without-where",
      sql: "WITH a AS (WITH b AS (DELETE FROM t RETURNING 1) SELECT * FROM b) SELECT * FROM a",
      fires: true,
    },
    { rule: "delete-without-where", sql: "COPY (DELETE FROM t RETURNING *) TO STDOUT", fires: true },
    { rule: "delete-without-where", sql: "EXPLAIN ANALYZE DELETE FROM t", fires: true },
    { rule: "delete-without-where", sql: "EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM t", fires: true },
    { rule: "delete-without-where", sql: "EXPLAIN (ANALYZE true) DELETE FROM t", fires: true },
    { rule: "delete-without-where", sql: "EXPLAIN (ANALYZE 1) DELETE FROM t", fires: true },
    { rule: "delete-without-where", sql: "EXPLAIN (ANALYZE, ANALYZE off) DELETE FROM t", fires: true },
    { rule: "delete-without-where", sql: "PREPARE p AS DELETE FROM t", fires: true },
    // A rule action runs later, on every INSERT: classified as if it ran now.
    { rule: "delete-without-where", sql: "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u", fires: true },
    { rule: "delete-without-where", sql: "DELETE FROM t WHERE id = 1", fires: false },
    { rule: "delete-without-where", sql: "DELETE FROM t WHERE CURRENT OF c", fires: false },
    { rule: "delete-without-where", sql: "WITH x AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM x", fires: false },
    { rule: "delete-without-where", sql: "EXPLAIN DELETE FROM t", fires: false },
    { rule: "delete-without-where", sql: "EXPLAIN (FORMAT JSON) DELETE FROM t", fires: false },
    { rule: "delete-without-where", sql: "EXPLAIN (ANALYZE false) DELETE FROM t", fires: false },
    { rule: "delete-without-where", sql: "EXPLAIN (ANALYZE off) DELETE FROM t", fires: false },
    { rule: "delete-without-where", sql: "EXPLAIN (ANALYZE 0) DELETE FROM t", fires: false },
    { rule: "delete-without-where", sql: "EXECUTE p", fires: false },
    { rule: "delete-without-where", sql: "SELECT 'DELETE FROM t'", fires: false },
    // update-without-where
    { rule: "update-without-where", sql: "UPDATE t SET a = 1", fires: true },
    { rule: "update-without-where", sql: "UPDATE t SET a = u.a FROM u", fires: true },
    { rule: "update-without-where", sql: 'update "T" set a = 1 returning *', fires: true },
    { rule: "update-without-where", sql: "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u", fires: true },
    { rule: "update-without-where", sql: "EXPLAIN ANALYZE UPDATE t SET a = 1", fires: true },
    { rule: "update-without-where", sql: "PREPARE p (int) AS UPDATE t SET a = $1", fires: true },
    { rule: "update-without-where", sql: "UPDATE t SET a = 1 WHERE id = 1", fires: false },
    { rule: "update-without-where", sql: "UPDATE t SET a = u.a FROM u WHERE t.id = u.id", fires: false },
    { rule: "update-without-where", sql: "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1", fires: false },
    { rule: "update-without-where", sql: "SELECT * FROM t FOR UPDATE", fires: false },
    { rule: "update-without-where", sql: "EXPLAIN UPDATE t SET a = 1", fires: false },
    // grant-revoke
    { rule: "grant-revoke", sql: "GRANT SELECT ON t TO someone", fires: true },
    { rule: "grant-revoke", sql: "REVOKE ALL ON t FROM someone", fires: true },
    { rule: "grant-revoke", sql: "GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO PUBLIC", fires: true },
    { rule: "grant-revoke", sql: "GRANT pg_read_server_files TO someone", fires: true },
    { rule: "grant-revoke", sql: "REVOKE admins FROM someone", fires: true },
    { rule: "grant-revoke", sql: "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO someone", fires: true },
    { rule: "grant-revoke", sql: "CREATE ROLE someone", fires: false },
    { rule: "grant-revoke", sql: "SELECT * FROM grants", fires: false },
    { rule: "grant-revoke", sql: "SELECT 'GRANT ALL ON t TO x'", fires: false },
    // alter-system
    { rule: "alter-system", sql: "ALTER SYSTEM SET work_mem = '1GB'", fires: true },
    { rule: "alter-system", sql: "alter system reset all", fires: true },
    { rule: "alter-system", sql: "ALTER DATABASE d SET work_mem = '1MB'", fires: false },
    { rule: "alter-system", sql: "ALTER ROLE someone SET work_mem = '1MB'", fires: false },
    { rule: "alter-system", sql: "SET work_mem = '1MB'", fires: false },
    // copy-program
    { rule: "copy-program", sql: "COPY t TO PROGRAM 'gzip > /tmp/t.gz'", fires: true },
    { rule: "copy-program", sql: "COPY t FROM PROGRAM 'curl https://example.com/t.csv'", fires: true },
    { rule: "copy-program", sql: "COPY (SELECT 1) TO PROGRAM 'sh'", fires: true },
    { rule: "copy-program", sql: "COPY t TO STDOUT", fires: false },
    { rule: "copy-program", sql: "COPY t FROM STDIN WITH (FORMAT csv)", fires: false },
    { rule: "copy-program", sql: "COPY t TO '/tmp/t.csv'", fires: false },
    // do
    { rule: "do", sql: "DO $$ BEGIN PERFORM 1; END $$", fires: true },
    { rule: "do", sql: "DO LANGUAGE plpgsql 'BEGIN NULL; END'", fires: true },
    { rule: "do", sql: "SELECT 'DO $$ BEGIN END $$'", fires: false },
    { rule: "do", sql: "CALL p()", fires: false },
    // server-files
    { rule: "server-files", sql: "SELECT pg_read_file('/etc/passwd')", fires: true },
    { rule: "server-files", sql: "SELECT pg_catalog.pg_read_binary_file('postgresql.conf')", fires: true },
    { rule: "server-files", sql: "SELECT * FROM pg_ls_dir('.')", fires: true },
    { rule: "server-files", sql: "SELECT lo_import('/etc/passwd')", fires: true },
    { rule: "server-files", sql: "SELECT lo_export(16400, '/tmp/x')", fires: true },
    { rule: "server-files", sql: "COPY t TO '/tmp/t.csv'", fires: true },
    { rule: "server-files", sql: "COPY t FROM '/etc/passwd'", fires: true },
    { rule: "server-files", sql: "CREATE OPERATOR ### (FUNCTION = pg_read_file, RIGHTARG = text)", fires: true },
    { rule: "server-files", sql: "CREATE VIEW v AS SELECT pg_read_file('/etc/passwd')", fires: true },
    { rule: "server-files", sql: "SELECT 'pg_read_file'", fires: false },
    { rule: "server-files", sql: "COPY t TO STDOUT", fires: false },
    { rule: "server-files", sql: "SELECT read_file FROM t", fires: false },
    // large-objects
    { rule: "large-objects", sql: "SELECT lo_get(16400)", fires: true },
    { rule: "large-objects", sql: "SELECT lo_from_bytea(0, 'x')", fires: true },
    { rule: "large-objects", sql: "SELECT loid FROM pg_largeobject_metadata", fires: false },
    // set-role
    { rule: "set-role", sql: "SET ROLE postgres", fires: true },
    { rule: "set-role", sql: "SET LOCAL ROLE postgres", fires: true },
    { rule: "set-role", sql: "SET SESSION AUTHORIZATION postgres", fires: true },
    { rule: "set-role", sql: "SELECT set_config('role', 'postgres', false)", fires: true },
    { rule: "set-role", sql: "RESET ROLE", fires: false },
    { rule: "set-role", sql: "SET search_path = public", fires: false },
    // remote-connection
    { rule: "remote-connection", sql: "SELECT dblink_exec('dbname=orders', 'DELETE FROM orders')", fires: true },
    { rule: "remote-connection", sql: "SELECT * FROM dblink('host=10.0.0.9', 'SELECT 1') AS t(a int)", fires: true },
    { rule: "remote-connection", sql: "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'x')", fires: true },
    { rule: "remote-connection", sql: "CREATE USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (user 'postgres')", fires: true },
    { rule: "remote-connection", sql: "SELECT * FROM pg_foreign_server", fires: false },
    // replication
    { rule: "replication", sql: "SELECT pg_create_logical_replication_slot('s', 'test_decoding')", fires: true },
    { rule: "replication", sql: "SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)", fires: true },
    { rule: "replication", sql: "CREATE PUBLICATION p FOR ALL TABLES", fires: true },
    { rule: "replication", sql: "SELECT * FROM pg_replication_slots", fires: false },
  ];

  it.each(cases)("$rule on `$sql` fires: $fires", ({ rule, sql, fires }) => {
    const statement = classifyOne(sql, { block: [], review: [rule] });
    if (fires) {
      expect(statement).toMatchObject({ verdict: "review", rule });
    } else {
      expect(statement.verdict).toBe("allow");
      expect(statement.rule).toBeUndefined();
    }
  });

  it("reads a MERGE action without a condition of its own as one without a WHERE (its ON is a join, not a filter)", () => {
    const review = { block: [], review: ["delete-without-where", "update-without-where"] };
    expect(classifyOne("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", review)).toMatchObject({ verdict: "review", rule: "delete-without-where" });
    expect(classifyOne("MERGE INTO t USING s ON true WHEN MATCHED THEN UPDATE SET a = 1", review)).toMatchObject({ verdict: "review", rule: "update-without-where" });
    expect(classifyOne("MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE", review)).toMatchObject({ verdict: "review", rule: "delete-without-where" });
    // The honest forms: an action with its own condition, and an insert-only MERGE.
    expect(classifyOne("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.gone THEN DELETE", review).verdict).toBe("allow");
    expect(classifyOne("MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)", review).verdict).toBe("allow");
  });

  // Named as a limit, not as correct behaviour: a syntactic rule cannot judge what a WHERE selects.
  it("known gap (issue 13, documented): any WHERE counts, so DELETE … WHERE true passes delete-without-where", () => {
    const statement = classifyOne("DELETE FROM t WHERE true", { block: [], review: ["delete-without-where"] });
    expect(statement.verdict).toBe("allow");
    expect(statement.rule).toBeUndefined();
  });

  it("covers every built-in rule with a positive and a negative case", () => {
    for (const rule of BUILTIN_SQL_RULES) {
      expect(cases.some((c) => c.rule === rule && c.fires), rule).toBe(true);
      expect(cases.some((c) => c.rule === rule && !c.fires), rule).toBe(true);
    }
  });
});

describe("evasion attempts", () => {
  const cases: { name: string; sql: string; rule?: BuiltinSqlRule }[] = [
    { name: "comment between keywords", sql: "DELETE/**/FROM t", rule: "delete-without-where" },
    { name: "line comment before", sql: "-- harmless\nDROP TABLE x", rule: "ddl" },
    { name: "nested block comment before", sql: "/* a /* nested */ comment */ DROP TABLE x", rule: "ddl" },
    { name: "comment glued to the table name", sql: "TRUNCATE/*x*/t", rule: "truncate" },
    { name: "mixed case", sql: "dElEtE fRoM T", rule: "delete-without-where" },
    { name: "quoted table", sql: 'DELETE FROM "orders"', rule: "delete-without-where" },
    { name: "quoted mixed-case table and alias", sql: 'DELETE FROM "Orders" AS "o"', rule: "delete-without-where" },
    { name: "unicode-escaped table", sql: 'DELETE FROM U&"\\006frders"', rule: "delete-without-where" },
    { name: "newlines and tabs", sql: "DELETE\n\n\tFROM\r\n   t\n", rule: "delete-without-where" },
    { name: "extra whitespace", sql: "  \n  drop   database   x  ", rule: "drop-database" },
    { name: "comment inside the SET list", sql: "UPDATE t SET a = 1 /* WHERE id = 1 */", rule: "update-without-where" },
    { name: "WHERE only in a trailing line comment", sql: "UPDATE t SET a = 1 -- WHERE id = 1", rule: "update-without-where" },
    { name: "hidden after a harmless statement", sql: "SELECT 1;DROP TABLE x", rule: "ddl" },
    { name: "semicolon in a string literal", sql: "SELECT ';DROP TABLE x'" },
    { name: "semicolon in a dollar-quoted string", sql: "SELECT $$;DROP TABLE x$$" },
    { name: "semicolon in a tagged dollar-quoted string", sql: "SELECT $q$';DROP TABLE x;'$q$" },
    { name: "semicolon in an escape string", sql: "SELECT E'\\';DROP TABLE x'" },
    { name: "semicolon in a quoted identifier", sql: 'SELECT 1 AS "a;DROP TABLE x"' },
    { name: "statement inside a line comment", sql: "SELECT 1 -- ; DROP TABLE x" },
    { name: "statement inside a block comment", sql: "SELECT 1 /* ; DROP TABLE x */" },
  ];

  it.each(cases)("$name: `$sql`", ({ sql, rule }) => {
    if (rule === undefined) {
      const statements = classify(sql, { block: [...BUILTIN_SQL_RULES], review: [] });
      expect(statements).toHaveLength(1);
      expect(statements[0]!.verdict).toBe("allow");
    } else {
      const flagged = classify(sql, { block: [rule], review: [] }).filter((s) => s.verdict !== "allow");
      expect(flagged).toHaveLength(1);
      expect(flagged[0]).toMatchObject({ verdict: "block", rule });
    }
  });
});

describe("kinds", () => {
  const cases: { sql: string; kind: StatementKind }[] = [
    { sql: "SELECT 1", kind: "select" },
    { sql: "VALUES (1), (2)", kind: "select" },
    { sql: "SELECT 1 UNION SELECT 2", kind: "select" },
    { sql: "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", kind: "select" },
    { sql: "TABLE t", kind: "select" },
    { sql: "INSERT INTO t VALUES (1)", kind: "insert" },
    { sql: "UPDATE t SET a = 1 WHERE id = 1", kind: "update" },
    { sql: "DELETE FROM t WHERE id = 1", kind: "delete" },
    { sql: "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", kind: "merge" },
    { sql: "TRUNCATE t", kind: "truncate" },
    { sql: "COPY t TO STDOUT", kind: "copy" },
    { sql: "CREATE TABLE t (a int)", kind: "ddl" },
    { sql: "SELECT * INTO t2 FROM t", kind: "ddl" },
    { sql: "ALTER SYSTEM SET work_mem = '1GB'", kind: "ddl" },
    { sql: "GRANT SELECT ON t TO someone", kind: "grant" },
    { sql: "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO someone", kind: "grant" },
    { sql: "SET search_path = public", kind: "set" },
    { sql: "RESET ALL", kind: "set" },
    { sql: "SET ROLE someone", kind: "set" },
    { sql: "SHOW work_mem", kind: "show" },
    { sql: "BEGIN", kind: "transaction" },
    { sql: "COMMIT", kind: "transaction" },
    { sql: "SAVEPOINT s", kind: "transaction" },
    { sql: "DO $$ BEGIN END $$", kind: "do" },
    { sql: "CALL p()", kind: "call" },
    { sql: "EXPLAIN SELECT 1", kind: "explain" },
    { sql: "EXPLAIN DELETE FROM t", kind: "explain" },
    { sql: "EXPLAIN ANALYZE DELETE FROM t", kind: "delete" },
    { sql: "PREPARE p AS UPDATE t SET a = 1 WHERE id = $1", kind: "update" },
    { sql: "EXECUTE p (1)", kind: "execute" },
    { sql: "DECLARE c CURSOR FOR SELECT * FROM t", kind: "select" },
    { sql: "VACUUM t", kind: "other" },
    { sql: "LISTEN channel", kind: "other" },
  ];

  it.each(cases)("`$sql` is $kind", ({ sql, kind }) => {
    expect(classifyOne(sql, EVERY_BUILTIN).kind).toBe(kind);
  });
});

describe("multi-statement strings", () => {
  it("classifies each statement and keeps its exact text", () => {
    const sql = "SELECT 1; DELETE FROM t;\nDROP DATABASE d ; UPDATE t SET a = 1 WHERE id = 2";
    expect(classify(sql, DESIGN_EXAMPLE)).toEqual([
      { text: "SELECT 1", kind: "select", verdict: "allow" },
      { text: "DELETE FROM t", kind: "delete", verdict: "review", rule: "delete-without-where" },
      { text: "DROP DATABASE d", kind: "ddl", verdict: "block", rule: "drop-database" },
      { text: "UPDATE t SET a = 1 WHERE id = 2", kind: "update", verdict: "allow" },
    ]);
  });

  it("cuts statements at byte offsets without breaking multi-byte characters", () => {
    const statements = classify("SELECT 'héllo 😀 ünïcode'; DELETE FROM \"tëst\"; SELECT '日本'", DESIGN_EXAMPLE);
    expect(statements.map((statement) => statement.text)).toEqual([
      "SELECT 'héllo 😀 ünïcode'",
      'DELETE FROM "tëst"',
      "SELECT '日本'",
    ]);
    expect(statements.map((statement) => statement.verdict)).toEqual(["allow", "review", "allow"]);
  });

  it("starts a statement's text at its first token, keeps what trails it, and skips empty statements", () => {
    const statements = classify("-- lead\nSELECT 1 /* one */;;  /* note */ SELECT 2 -- bye", EVERY_BUILTIN);
    expect(statements.map((statement) => statement.text)).toEqual(["SELECT 1 /* one */", "SELECT 2 -- bye"]);
  });

  it("finds a dangerous statement after a string holding a semicolon", () => {
    const statements = classify("SELECT ';'; TRUNCATE t", DESIGN_EXAMPLE);
    expect(statements.map((statement) => [statement.text, statement.verdict])).toEqual([
      ["SELECT ';'", "allow"],
      ["TRUNCATE t", "review"],
    ]);
  });
});

describe("verdicts", () => {
  it("block beats review", () => {
    expect(classifyOne("DROP DATABASE d", { block: ["drop-database"], review: ["ddl"] })).toMatchObject({
      verdict: "block",
      rule: "drop-database",
    });
    expect(classifyOne("DROP TABLE t", { block: ["^drop table"], review: ["ddl"] })).toMatchObject({
      verdict: "block",
      rule: "^drop table",
    });
  });

  it("names the first matching entry of the list that decides", () => {
    expect(classifyOne("DROP DATABASE d", { block: [], review: ["ddl", "drop-database"] }).rule).toBe("ddl");
    expect(classifyOne("DROP DATABASE d", { block: [], review: ["drop-database", "ddl"] }).rule).toBe("drop-database");
  });

  it("allows everything under an empty rule set except what does not parse", () => {
    expect(classify("DROP DATABASE d; DELETE FROM t", { block: [], review: [] }).map((s) => s.verdict)).toEqual([
      "allow",
      "allow",
    ]);
    expect(classifyOne("DROP DATABSE d", { block: [], review: [] }).verdict).toBe("block");
  });

  it("applies the configuration example of DESIGN.md", () => {
    const verdicts = [
      ["ALTER SYSTEM SET fsync = off", "block", "^ALTER SYSTEM"],
      ["CREATE INDEX ON orders (created_at)", "review", "ddl"],
      ["TRUNCATE orders", "review", "truncate"],
      ["SELECT * FROM orders WHERE id = 1", "allow", undefined],
    ] as const;
    for (const [sql, verdict, rule] of verdicts) {
      const statement = classifyOne(sql, DESIGN_EXAMPLE);
      expect([statement.verdict, statement.rule], sql).toEqual([verdict, rule]);
    }
  });
});

describe("regex rules", () => {
  const cases: { pattern: string; sql: string; matches: boolean }[] = [
    { pattern: "^ALTER SYSTEM", sql: "/* hi */ alter   system set work_mem = '1MB'", matches: true },
    { pattern: "^ALTER SYSTEM", sql: "ALTER/**/SYSTEM\nSET work_mem = '1MB'", matches: true },
    { pattern: "^ALTER SYSTEM", sql: "ALTER DATABASE d SET work_mem = '1MB'", matches: false },
    { pattern: "^DELETE FROM orders\\b", sql: 'DELETE FROM "orders" WHERE id = 1', matches: true },
    { pattern: "^DELETE FROM orders\\b", sql: "delete\n from /* x */ ORDERS where id = 1", matches: true },
    { pattern: "^DELETE FROM orders\\b", sql: 'DELETE FROM U&"\\006frders" WHERE id = 1', matches: true },
    { pattern: "^DELETE FROM orders\\b", sql: "DELETE FROM U&\"!006frders\" UESCAPE '!' WHERE id = 1", matches: true },
    { pattern: "^DELETE FROM orders\\b", sql: "DELETE FROM orders_archive WHERE id = 1", matches: false },
    { pattern: "\\bpg_terminate_backend\\b", sql: "SELECT pg_terminate_backend(123)", matches: true },
    { pattern: "\\bpg_terminate_backend\\b", sql: 'SELECT "pg_terminate_backend"(123)', matches: true },
    { pattern: "\\bpg_terminate_backend\\b", sql: "SELECT pg_cancel_backend(123)", matches: false },
    { pattern: "^SET ROLE\\b", sql: "-- become someone else\nset   role postgres", matches: true },
    { pattern: "\\bsecret\\b", sql: "SELECT 1 /* secret */", matches: false },
    { pattern: "\\bsecret\\b", sql: "SELECT 1 -- secret", matches: false },
    { pattern: "'--x'", sql: "SELECT '--x'", matches: true },
    { pattern: "--\\s*x", sql: "SELECT 1 --x", matches: false },
    { pattern: "^select \\* from t$", sql: "SELECT\n\t*\n  FROM   t", matches: true },
  ];

  it.each(cases)("$pattern on `$sql` matches: $matches", ({ pattern, sql, matches }) => {
    const statement = classifyOne(sql, { block: [pattern], review: [] });
    expect(statement.verdict).toBe(matches ? "block" : "allow");
    if (matches) expect(statement.rule).toBe(pattern);
  });

  it("matches each statement of a multi-statement string on its own", () => {
    const statements = classify("SELECT 1; /* x */ SET ROLE postgres", { block: ["^set role\\b"], review: [] });
    expect(statements.map((statement) => statement.verdict)).toEqual(["allow", "block"]);
  });
});

describe("normalizeSql", () => {
  const cases: { sql: string; normalized: string }[] = [
    { sql: "/* hi */ alter   system set x = 1", normalized: "alter system set x = 1" },
    { sql: "DELETE/**/FROM t", normalized: "DELETE FROM t" },
    { sql: "-- lead\nSELECT\n\t1 -- trail", normalized: "SELECT 1" },
    { sql: 'DELETE FROM "Orders" WHERE "a""b" = 1', normalized: 'DELETE FROM Orders WHERE a"b = 1' },
    { sql: 'SELECT * FROM U&"d\\0061t\\+000061"', normalized: "SELECT * FROM data" },
    { sql: "SELECT * FROM U&\"d!0061ta\" UESCAPE '!' WHERE x", normalized: "SELECT * FROM data WHERE x" },
    { sql: "SELECT '  two  spaces -- kept ', $$ /* kept */ $$", normalized: "SELECT '  two  spaces -- kept ', $$ /* kept */ $$" },
    { sql: "SELECT a.b::int FROM s.t", normalized: "SELECT a.b::int FROM s.t" },
    { sql: "   ", normalized: "" },
  ];

  it.each(cases)("`$sql` → `$normalized`", ({ sql, normalized }) => {
    expect(normalizeSql(sql)).toBe(normalized);
  });
});

describe("input that does not parse", () => {
  const cases: { name: string; sql: string; detail: RegExp }[] = [
    { name: "a typo", sql: "selec 1", detail: /syntax error at or near "selec"/ },
    { name: "a truncated statement", sql: "SELECT * FROM t WHERE", detail: /syntax error at end of input/ },
    { name: "an unterminated string", sql: "SELECT 'abc", detail: /unterminated quoted string/ },
    { name: "an unterminated comment", sql: "SELECT 1 /* abc", detail: /unterminated \/\* comment/ },
    { name: "a psql meta-command", sql: "\\d orders", detail: /syntax error/ },
    { name: "a NUL byte hiding a second statement", sql: "SELECT 1\0; DROP TABLE x", detail: /NUL byte/ },
  ];

  it.each(cases)("blocks $name", ({ sql, detail }) => {
    const statement = classifyOne(sql, { block: [], review: [] });
    expect(statement).toMatchObject({ text: sql.trim(), kind: "error", verdict: "block", rule: "unparseable" });
    expect(statement.detail).toMatch(detail);
  });

  it("blocks the whole string when any statement in it does not parse", () => {
    expect(classify("SELECT 1; selec 2; SELECT 3", EVERY_BUILTIN)).toEqual([
      {
        text: "SELECT 1; selec 2; SELECT 3",
        kind: "error",
        verdict: "block",
        rule: "unparseable",
        detail: 'syntax error at or near "selec"',
      },
    ]);
  });
});

describe("input without statements", () => {
  it.each(["", "   ", "\n\t", "-- only a comment", "/* only a comment */", ";", " ; ; "])("`%s` yields none", (sql) => {
    expect(classify(sql, EVERY_BUILTIN)).toEqual([]);
  });
});

describe("compileRules", () => {
  it("accepts every built-in name and any regex that is not a bare lower-case word", () => {
    const compiled = compileRules({
      block: [...BUILTIN_SQL_RULES, "^ALTER SYSTEM", "VACUUM", "drop table", "\\bpg_read_file\\b"],
      review: ["^delete-me"],
    });
    expect(compiled.block.filter((rule) => rule.type === "builtin")).toHaveLength(BUILTIN_SQL_RULES.length);
    expect(compiled.block.filter((rule) => rule.type === "pattern").map((rule) => rule.type === "pattern" && rule.source))
      .toEqual(["^ALTER SYSTEM", "VACUUM", "drop table", "\\bpg_read_file\\b"]);
  });

  const errors: { name: string; rules: RuleSet; message: RegExp }[] = [
    {
      name: "a misspelt built-in name",
      rules: { block: [], review: ["ddl", "delete-wihtout-where"] },
      message: /^commands\.review\[1\]: "delete-wihtout-where" is not a built-in rule \(did you mean "delete-without-where"\?\)/,
    },
    {
      name: "a bare word far from every built-in name",
      rules: { block: [], review: ["--x"] },
      message: /^commands\.review\[0\]: "--x" is not a built-in rule; /,
    },
    {
      name: "a bare word that is no built-in name",
      rules: { block: ["vacuum"], review: [] },
      message: /^commands\.block\[0\]: "vacuum" is not a built-in rule; built-in rules are ddl, drop-database/,
    },
    {
      name: "an invalid regex",
      rules: { block: ["drop-database", "(unclosed"], review: [] },
      message: /^commands\.block\[1\]: "\(unclosed" is not a valid regex/,
    },
  ];

  it.each(errors)("rejects $name", ({ rules, message }) => {
    let thrown: unknown;
    try {
      compileRules(rules);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InvalidCommandRule);
    expect(thrown).toMatchObject({ code: "proxy_invalid_command_rule" });
    expect((thrown as Error).message).toMatch(message);
  });

  it("explains a rule's problem for the config schema without throwing", () => {
    expect(sqlRuleProblem("ddl")).toBeUndefined();
    expect(sqlRuleProblem("^ALTER SYSTEM")).toBeUndefined();
    expect(sqlRuleProblem("trunacte")).toMatch(/did you mean "truncate"/);
    expect(sqlRuleProblem("[")).toMatch(/not a valid regex/);
  });
});

describe("parser loading", () => {
  it("refuses to classify before the parser is loaded, instead of blocking everything", async () => {
    vi.resetModules();
    const fresh = await import("../src/rules/sql-classifier.js");
    const rules = fresh.compileRules(EVERY_BUILTIN);
    expect(() => fresh.classifySql("SELECT 1", rules)).toThrow(/loadSqlParser/);
    await Promise.all([fresh.loadSqlParser(), fresh.loadSqlParser()]);
    expect(fresh.classifySql("SELECT 1", rules)).toMatchObject([{ verdict: "allow" }]);
  });
});

describe("pinned settings: standard_conforming_strings stays on, client_encoding UTF8", () => {
  const refused = [
    "SET standard_conforming_strings = off",
    "SET standard_conforming_strings TO 0",
    "SET standard_conforming_strings = 1",
    "set local standard_conforming_strings = 'off'",
    "SET SESSION \"standard_conforming_strings\" = false",
    'SET U&"standard\\005fconforming\\005fstrings" = off',
    "SET client_encoding = 'SJIS'",
    "SET client_encoding TO BIG5",
    "SET NAMES 'GBK'",
    "set client_encoding = gb18030",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "SELECT pg_catalog.set_config('client_encoding', 'SJIS', true)",
    "SELECT 1 FROM t WHERE set_config('standard_conforming_strings', 'off', false) IS NOT NULL",
    "SELECT set_config(name, 'off', false) FROM (VALUES ('standard_conforming_strings')) v(name)",
    "SELECT set_config('standard_' || 'conforming_strings', 'off', false)",
    "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
    "WITH x AS (UPDATE pg_catalog.pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings' RETURNING 1) SELECT 1",
    "CREATE VIEW v AS SELECT * FROM pg_settings",
    "CREATE AGGREGATE a(text, boolean) (SFUNC = set_config, STYPE = text, INITCOND = 'standard_conforming_strings')",
    "ALTER ROLE CURRENT_USER SET standard_conforming_strings = off",
    "ALTER DATABASE orders SET client_encoding = 'SJIS'",
    "ALTER SYSTEM SET standard_conforming_strings = off",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET standard_conforming_strings = off AS 'SELECT 1'",
    "ALTER FUNCTION f() SET standard_conforming_strings = off",
    "DO $$BEGIN SET standard_conforming_strings = off; END$$",
    "DO $$BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END$$",
    "DO $$DECLARE x text := set_config('standard_conforming_strings', 'off', false); BEGIN END$$",
    "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$SELECT set_config('standard_conforming_strings', 'off', false)$$",
  ];
  it.each(refused)("blocks `%s` under every rule set", (sql) => {
    for (const rules of [{ block: [], review: [], unverifiable: "allow" as const }, BASELINE_SQL_RULES]) {
      const statement = classifyOne(sql, rules);
      expect(statement).toMatchObject({ verdict: "block", rule: "pinned-setting" });
      expect(statement.detail).toMatch(/standard_conforming_strings|client_encoding|set_config|pg_settings/);
    }
  });

  const allowed = [
    "SET standard_conforming_strings = on",
    "SET standard_conforming_strings TO true",
    "SET client_encoding = 'UTF8'",
    "SET NAMES 'utf-8'",
    "RESET standard_conforming_strings",
    "RESET client_encoding",
    "RESET ALL",
    "DISCARD ALL",
    "SET standard_conforming_strings TO DEFAULT",
    "SELECT set_config('search_path', 'public', false)",
    "SELECT set_config('standard_conforming_strings', 'on', false)",
    "SELECT current_setting('standard_conforming_strings')",
    "SELECT name, setting FROM pg_settings WHERE name = 'standard_conforming_strings'",
    "SELECT 'set_config'",
    "SHOW client_encoding",
  ];
  it.each(allowed)("allows `%s`", (sql) => {
    expect(classifyOne(sql, { block: [], review: [] }).verdict).toBe("allow");
  });
});

describe("statements inside other statements", () => {
  const rules: RuleSet = { block: ["drop-database", "server-files"], review: ["delete-without-where", "ddl"], unverifiable: "block" };
  const cases: { name: string; sql: string; verdict: "allow" | "review" | "block"; rule?: string }[] = [
    { name: "DELETE in a DO block", sql: "do $$begin delete from orders; end$$", verdict: "review", rule: "delete-without-where" },
    { name: "DO with explicit language", sql: "DO LANGUAGE plpgsql $x$ BEGIN DELETE FROM orders; END $x$", verdict: "review", rule: "delete-without-where" },
    { name: "DO with a quoted body", sql: "DO 'BEGIN DELETE FROM orders; END'", verdict: "review", rule: "delete-without-where" },
    { name: "DO with an E'' body", sql: "DO E'BEGIN DELETE FROM orders; END'", verdict: "review", rule: "delete-without-where" },
    { name: "DO with an escaped body", sql: "DO E'BEGIN \\144ELETE FROM orders; END'", verdict: "review", rule: "delete-without-where" },
    { name: "DELETE in a nested block", sql: "DO $$BEGIN BEGIN IF true THEN DELETE FROM orders; END IF; END; END$$", verdict: "review", rule: "delete-without-where" },
    { name: "DELETE in an exception handler", sql: "DO $$BEGIN PERFORM 1/0; EXCEPTION WHEN others THEN DELETE FROM orders; END$$", verdict: "review", rule: "delete-without-where" },
    { name: "DROP DATABASE through EXECUTE of a constant", sql: "DO $$BEGIN EXECUTE 'DROP DATABASE orders'; END$$", verdict: "block", rule: "drop-database" },
    { name: "EXECUTE of built text", sql: "do $$begin execute 'delete ' || 'from orders'; end$$", verdict: "block", rule: "unverifiable" },
    { name: "EXECUTE format()", sql: "DO $$BEGIN EXECUTE format('DELETE FROM %I', 'orders'); END$$", verdict: "block", rule: "unverifiable" },
    { name: "FOR … IN EXECUTE", sql: "DO $$DECLARE r record; BEGIN FOR r IN EXECUTE 'DELETE FROM ' || 'orders RETURNING *' LOOP END LOOP; END$$", verdict: "block", rule: "unverifiable" },
    { name: "RETURN QUERY EXECUTE", sql: "CREATE FUNCTION f() RETURNS SETOF int LANGUAGE plpgsql AS $$BEGIN RETURN QUERY EXECUTE 'x' || 'y'; END$$", verdict: "block", rule: "unverifiable" },
    { name: "a PL/pgSQL function", sql: "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN DELETE FROM orders; END$$", verdict: "review", rule: "delete-without-where" },
    { name: "a procedure", sql: "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$BEGIN DELETE FROM orders; COMMIT; END$$", verdict: "review", rule: "delete-without-where" },
    { name: "a SQL function", sql: "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM orders'", verdict: "review", rule: "delete-without-where" },
    { name: "a SQL function with BEGIN ATOMIC", sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC DELETE FROM orders; SELECT 1; END", verdict: "review", rule: "delete-without-where" },
    { name: "a trigger function", sql: "CREATE FUNCTION t() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM orders; RETURN NEW; END$$", verdict: "review", rule: "delete-without-where" },
    { name: "a rule", sql: "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM orders", verdict: "review", rule: "delete-without-where" },
    { name: "a function that creates a function", sql: "DO $$BEGIN CREATE FUNCTION g() RETURNS void LANGUAGE sql AS 'DELETE FROM orders'; END$$", verdict: "review", rule: "delete-without-where" },
    { name: "a body in another language", sql: "CREATE FUNCTION f() RETURNS void LANGUAGE plpython3u AS 'plpy.execute(\"DELETE FROM orders\")'", verdict: "block", rule: "unverifiable" },
    { name: "a body that does not parse", sql: "DO $$ BEGIN nonsense END $$", verdict: "block", rule: "unverifiable" },
    { name: "query_to_xml over built text", sql: "SELECT query_to_xml('SELECT ' || 'pg_read_file(1)', true, true, '')", verdict: "block", rule: "unverifiable" },
    { name: "an expression in an assignment", sql: "DO $$DECLARE x text; BEGIN x := (SELECT count(*) FROM (DELETE FROM orders RETURNING 1) d); END$$", verdict: "block", rule: "unparseable" },
    { name: "a subscript of an assignment target", sql: "DO $$DECLARE x int[]; BEGIN x[length(pg_read_file('/etc/passwd'))] := 1; END$$", verdict: "block", rule: "server-files" },
    { name: "an assignment to a record field", sql: "CREATE FUNCTION t() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.v := pg_read_file('/etc/passwd'); RETURN NEW; END$$", verdict: "block", rule: "server-files" },
    { name: "a cursor declared over a DELETE", sql: "DO $$DECLARE c CURSOR FOR DELETE FROM orders RETURNING *; BEGIN OPEN c; END$$", verdict: "review", rule: "delete-without-where" },
    { name: "a DO block inside a DO block", sql: "DO $a$BEGIN DO $b$BEGIN DELETE FROM orders; END$b$; END$a$", verdict: "review", rule: "delete-without-where" },
    { name: "a function call in RAISE", sql: "DO $$BEGIN RAISE NOTICE '%', pg_read_file('/etc/passwd'); END$$", verdict: "block", rule: "server-files" },
    { name: "a function call in PERFORM", sql: "DO $$BEGIN PERFORM lo_export(1, '/tmp/x'); END$$", verdict: "block", rule: "server-files" },
    { name: "a function call in a variable's default", sql: "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$DECLARE x text := pg_read_file('/etc/passwd'); BEGIN END$$", verdict: "block", rule: "server-files" },
    { name: "EXECUTE of a constant USING a parameter", sql: "DO $$BEGIN EXECUTE 'DELETE FROM orders WHERE id = $1' USING 1; END$$", verdict: "allow" },
    { name: "a column default", sql: "CREATE TABLE x (a text DEFAULT pg_read_file('/etc/passwd'))", verdict: "block", rule: "server-files" },
    { name: "a pg_cron job", sql: "SELECT cron.schedule('wipe', '* * * * *', 'SELECT 1')", verdict: "block", rule: "unverifiable" },
    { name: "a pg_cron job through search_path", sql: "SELECT schedule('* * * * *', $$DELETE FROM orders$$)", verdict: "block", rule: "unverifiable" },
    { name: "a background worker", sql: "SELECT pg_background_launch('DELETE FROM orders')", verdict: "block", rule: "unverifiable" },
    { name: "PREPARE of a held statement", sql: "PREPARE p AS DELETE FROM orders", verdict: "review", rule: "delete-without-where" },
    { name: "an honest DO block", sql: "DO $$BEGIN UPDATE orders SET status = 'x' WHERE id = 1; RAISE NOTICE 'done %', 1; END$$", verdict: "allow" },
    { name: "an honest function", sql: "CREATE FUNCTION f(a int) RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN a + 1; END$$", verdict: "review", rule: "ddl" },
    { name: "EXECUTE of an honest constant", sql: "DO $$BEGIN EXECUTE 'SELECT 1'; END$$", verdict: "allow" },
    { name: "CALL", sql: "CALL p(1)", verdict: "allow" },
    { name: "EXPLAIN ANALYZE", sql: "EXPLAIN ANALYZE SELECT 1", verdict: "allow" },
  ];
  it.each(cases)("$name: `$sql`", ({ sql, verdict, rule }) => {
    const statement = classifyOne(sql, rules);
    if (rule === "unparseable") {
      // A DELETE inside a subquery is not valid SQL; the server refuses it too. Nothing is allowed.
      expect(statement.verdict).not.toBe("allow");
      return;
    }
    expect(statement).toMatchObject({ verdict, ...(rule ? { rule } : {}) });
  });

  it("gives the unverifiable verdict the target configures, review by default", () => {
    const sql = "DO $$BEGIN EXECUTE 'DELETE ' || 'FROM orders'; END$$";
    expect(classifyOne(sql, { block: [], review: [] })).toMatchObject({ verdict: "review", rule: "unverifiable" });
    expect(classifyOne(sql, { block: [], review: [], unverifiable: "block" })).toMatchObject({ verdict: "block", rule: "unverifiable" });
    expect(classifyOne(sql, { block: [], review: [], unverifiable: "allow" }).verdict).toBe("allow");
  });

  it("matches regex rules against the statements of a body too", () => {
    const statement = classifyOne("DO $$BEGIN DELETE FROM audit_log WHERE id = 1; END$$", { block: ["^DELETE FROM audit_log"], review: [] });
    expect(statement).toMatchObject({ verdict: "block", rule: "^DELETE FROM audit_log" });
  });
});

describe("functions a statement attaches from the catalog (CREATE TRIGGER, ENABLE TRIGGER)", () => {
  const rules = compileRules({ block: [], review: ["delete-without-where"] });
  const WIPE = "CREATE OR REPLACE FUNCTION public.wipe()\n RETURNS trigger\n LANGUAGE plpgsql\nAS $function$BEGIN DELETE FROM orders; RETURN NEW; END$function$";
  const STAMP = "CREATE OR REPLACE FUNCTION public.stamp()\n RETURNS trigger\n LANGUAGE plpgsql\nAS $function$BEGIN NEW.updated_at := now(); RETURN NEW; END$function$";

  it.each([
    ["CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION wipe()", [{ via: "function", name: "wipe" }]],
    ['CREATE OR REPLACE TRIGGER t BEFORE UPDATE ON orders FOR EACH ROW EXECUTE PROCEDURE "Dba"."Wipe"(\'x\')', [{ via: "function", schema: "Dba", name: "Wipe" }]],
    ["CREATE CONSTRAINT TRIGGER t AFTER INSERT ON orders DEFERRABLE FOR EACH ROW EXECUTE FUNCTION DBA.WIPE()", [{ via: "function", schema: "dba", name: "wipe" }]],
    ["CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION wipe()", [{ via: "function", name: "wipe" }]],
    [
      "ALTER TABLE s.orders ENABLE TRIGGER t, ENABLE ALWAYS TRIGGER u, ENABLE TRIGGER ALL, DISABLE TRIGGER v",
      [
        { via: "trigger", schema: "s", table: "orders", trigger: "t", which: "named" },
        { via: "trigger", schema: "s", table: "orders", trigger: "u", which: "named" },
        { via: "trigger", schema: "s", table: "orders", trigger: "", which: "all" },
      ],
    ],
    ["ALTER TABLE orders ENABLE REPLICA TRIGGER t", [{ via: "trigger", table: "orders", trigger: "t", which: "named" }]],
    ["ALTER TABLE orders ENABLE TRIGGER USER", [{ via: "trigger", table: "orders", trigger: "", which: "user" }]],
    ["ALTER EVENT TRIGGER e ENABLE ALWAYS", [{ via: "event-trigger", trigger: "e" }]],
  ])("lists what `%s` attaches, as the server reads the names", (sql, expected) => {
    expect(classifyOne(sql, { block: [], review: [] }).functionsToInspect).toEqual(expected);
  });

  it.each([
    "ALTER TABLE orders DISABLE TRIGGER t",
    "ALTER EVENT TRIGGER e DISABLE",
    "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
    "SELECT 1",
  ])("lists nothing for `%s`", (sql) => {
    expect(classifyOne(sql, { block: [], review: [] }).functionsToInspect).toBeUndefined();
  });

  it.each([
    ["inside a DO block", "DO $$BEGIN CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION wipe(); END$$"],
    ["inside a function body", "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'ALTER TABLE orders ENABLE TRIGGER t'"],
    ["inside EXECUTE of a constant", "DO $$BEGIN EXECUTE 'CREATE EVENT TRIGGER e ON sql_drop EXECUTE FUNCTION wipe()'; END$$"],
    ["inside CREATE SCHEMA", "CREATE SCHEMA s CREATE TABLE t (a int) CREATE TRIGGER x AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION wipe()"],
    ["a three-part function name", "CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION db.s.wipe()"],
    ["enabling a rule", "ALTER TABLE orders ENABLE RULE r"],
  ])("makes a trigger it cannot look up unverifiable: %s", (_name, sql) => {
    const statement = classifyOne(sql, { block: [], review: [] });
    expect(statement).toMatchObject({ verdict: "review", rule: "unverifiable" });
    expect(statement.functionsToInspect).toBeUndefined();
  });

  it("reads a body from the catalog as it reads a CREATE FUNCTION's, without counting the CREATE", () => {
    expect(classifyFunctionDefinition(WIPE, rules)).toMatchObject({ verdict: "review", rule: "delete-without-where" });
    expect(classifyFunctionDefinition(STAMP, compileRules({ block: [], review: ["ddl"] }))).toEqual({ verdict: "allow" });
    const c = "CREATE OR REPLACE FUNCTION public.f()\n RETURNS trigger\n LANGUAGE c\nAS '$libdir/x', $function$f$function$";
    expect(classifyFunctionDefinition(c, rules)).toMatchObject({ verdict: "review", rule: "unverifiable" });
    const sqlBody = "CREATE OR REPLACE FUNCTION public.g()\n RETURNS void\n LANGUAGE sql\nBEGIN ATOMIC\n DELETE FROM orders;\nEND";
    expect(classifyFunctionDefinition(sqlBody, rules)).toMatchObject({ verdict: "review", rule: "delete-without-where" });
    expect(classifyFunctionDefinition("SELECT 1; DELETE FROM orders", rules)).toMatchObject({ verdict: "review", rule: "unverifiable" });
    expect(classifyFunctionDefinition("not sql", rules)).toMatchObject({ verdict: "review", rule: "unverifiable" });
  });

  it("gives the statement the strictest verdict of its own and its functions' bodies", () => {
    const statement = classifyOne("CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION wipe()", { block: [], review: ["delete-without-where"] });
    expect(statement.verdict).toBe("allow");
    const checked = withAttachedFunctions(statement, { functions: [{ name: "public.stamp()", definition: STAMP }, { name: "public.wipe()", definition: WIPE }] }, rules);
    expect(checked).toMatchObject({ verdict: "review", rule: "delete-without-where", detail: "in the body of public.wipe(), which this statement attaches" });
    expect(checked.functionsToInspect).toBeUndefined();
    expect(withAttachedFunctions(statement, { functions: [{ name: "public.stamp()", definition: STAMP }] }, rules)).toMatchObject({ verdict: "allow" });
    expect(withAttachedFunctions(statement, { unverifiable: "no function wipe()" }, rules)).toMatchObject({ verdict: "review", rule: "unverifiable", detail: "no function wipe()" });
    const reviewing = compileRules({ block: [], review: ["ddl", "delete-without-where"] });
    const reviewed = classifyOne("CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION wipe()", { block: [], review: ["ddl"] });
    expect(withAttachedFunctions(reviewed, { functions: [{ name: "public.wipe()", definition: WIPE }] }, reviewing)).toMatchObject({ verdict: "review", rule: "delete-without-where" });
    expect(withAttachedFunctions(reviewed, { functions: [{ name: "public.stamp()", definition: STAMP }] }, reviewing)).toMatchObject({ verdict: "review", rule: "ddl" });
    const blocking = compileRules({ block: ["ddl"], review: ["delete-without-where"] });
    const blocked = classifyOne("CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION wipe()", { block: ["ddl"], review: [] });
    expect(withAttachedFunctions(blocked, { functions: [{ name: "public.wipe()", definition: WIPE }] }, blocking)).toMatchObject({ verdict: "block", rule: "ddl" });
  });
});

describe("baseline", () => {
  const cases: { sql: string; verdict: "allow" | "review" | "block" }[] = [
    { sql: "COPY t FROM PROGRAM 'id'", verdict: "block" },
    { sql: "ALTER SYSTEM SET work_mem = '1GB'", verdict: "block" },
    { sql: "SELECT pg_read_file('/etc/passwd')", verdict: "block" },
    { sql: "SELECT lo_export(1, '/tmp/x')", verdict: "block" },
    { sql: "SELECT pg_create_logical_replication_slot('s', 'test_decoding')", verdict: "block" },
    { sql: "SET ROLE postgres", verdict: "review" },
    { sql: "SELECT lo_get(1)", verdict: "review" },
    { sql: "SELECT dblink_connect('host=10.0.0.9')", verdict: "review" },
    { sql: "DO $$BEGIN EXECUTE 'SELECT ' || 'pg_read_file(1)'; END$$", verdict: "review" },
    { sql: "SELECT * FROM orders WHERE id = 1", verdict: "allow" },
    { sql: "UPDATE orders SET status = 'x' WHERE id = 1", verdict: "allow" },
  ];
  it.each(cases)("`$sql` → $verdict", ({ sql, verdict }) => {
    expect(classifyOne(sql, BASELINE_SQL_RULES).verdict).toBe(verdict);
  });
});

describe("numbers the proxy's cache folds", () => {
  it("marks a verdict that read a number outside quotes", () => {
    const rules: RuleSet = { block: [], review: ["delete-without-where"] };
    expect(classifyOne("EXPLAIN (ANALYZE 0) DELETE FROM orders", rules)).toMatchObject({ verdict: "allow", readsNumbers: true });
    expect(classifyOne("EXPLAIN (ANALYZE 1) DELETE FROM orders", rules)).toMatchObject({ verdict: "review", readsNumbers: true });
    expect(classifyOne("EXPLAIN (ANALYZE 99999999999) DELETE FROM orders", rules)).toMatchObject({ verdict: "review", readsNumbers: true });
    expect(classifyOne("SELECT * FROM orders WHERE id = 1", rules).readsNumbers).toBeUndefined();
  });

  it("gives a pinned setting the same verdict whatever number it is set to", () => {
    for (const value of ["0", "1", "2", "99999999999", "1.5", "-1"]) {
      expect(classifyOne(`SET standard_conforming_strings = ${value}`, { block: [], review: [] }), value).toMatchObject({ verdict: "block", rule: "pinned-setting" });
    }
  });
});
