import { beforeAll, describe, expect, it } from "vitest";
import { ClassificationCache } from "../src/proxy/postgres/classification-cache.js";
import { BASELINE_SQL_RULES, classifySql, compileRules, loadSqlParser, type CompiledRules, type RuleSet } from "../src/rules/sql-classifier.js";

/**
 * Nothing the cache folds may change a verdict: for every statement and every variant of it that
 * differs in its digits, what the cache returns after seeing the first is what the variant gets
 * when it is parsed on its own.
 */

beforeAll(async () => {
  await loadSqlParser();
});

const RULES: RuleSet = {
  block: [...BASELINE_SQL_RULES.block, "drop-database"],
  review: [...BASELINE_SQL_RULES.review, "delete-without-where", "update-without-where", "truncate"],
  unverifiable: "block",
};

const STATEMENTS = [
  "SELECT abalance FROM pgbench_accounts WHERE aid = 12345",
  "SELECT * FROM orders WHERE id = 1 LIMIT 10 OFFSET 20",
  "DELETE FROM orders WHERE id = 1",
  "UPDATE orders SET total = 2.50 WHERE id = 3",
  "EXPLAIN (ANALYZE 0) DELETE FROM orders",
  "EXPLAIN (ANALYZE 1, COSTS 0) DELETE FROM orders",
  "EXPLAIN (ANALYZE 2147483648) UPDATE orders SET a = 1",
  "SET standard_conforming_strings = 1",
  "SET standard_conforming_strings TO 0",
  "SET client_encoding = 6",
  "SELECT a$1 FROM t1 WHERE b = $1",
  "SELECT 1e5, 1.5, .5, 0x1F, 1_000 FROM t",
  "DO E'BEGIN DELET\\101 FROM orders; END'",
  "DO E'BEGIN DELET\\105 FROM orders; END'",
  "SELECT U&'\\0031', U&\"\\0061\" FROM t",
  "SELECT set_config('standard_conforming_strings', 'o' || 'n', false) WHERE 1 = 1",
  "SELECT lo_get(16400)",
  "SELECT 1; DELETE FROM orders",
  "SELECT 1 -- 2 ; 3",
  "SELECT pg_read_file('/proc/1/status')",
  "PREPARE p1 AS DELETE FROM orders WHERE id = 1",
  "SELECT\tabalance  FROM\n pgbench_accounts WHERE aid=42 ;",
  "  DELETE FROM orders WHERE id = 42 /* 7 */",
  "UPDATE orders SET total = 42\r\n WHERE id = 7;  ",
  "SELECT 42",
  "ALTER SYSTEM SET work_mem = 42",
];

/** Each digit run replaced by 0, by 1 and by a number too large for int4, one at a time and all at once. */
function variants(sql: string): string[] {
  const runs = [...sql.matchAll(/\d+/g)];
  const out = new Set<string>();
  for (const replacement of ["0", "1", "7", "99999999999"]) {
    out.add(sql.replace(/\d+/g, replacement));
    for (const run of runs) out.add(sql.slice(0, run.index) + replacement + sql.slice(run.index + run[0].length));
  }
  return [...out];
}

function verdicts(statements: { verdict: string; rule?: string | undefined }[]): string[] {
  return statements.map((s) => `${s.verdict}:${s.rule ?? ""}`);
}

describe("the classification cache", () => {
  const targets: [string, CompiledRules][] = [
    ["built-in rules only (numbers folded)", compileRules(RULES)],
    ["with a regex rule (nothing folded)", compileRules({ ...RULES, review: [...RULES.review, "\\b42\\b"] })],
  ];

  const regexTargets: [string, CompiledRules][] = [
    ["with regex rules that read numbers (numbers folded, regexes matched again)", compileRules({ ...RULES, block: [...RULES.block, "^ALTER SYSTEM", "aid ?= ?7\\b"], review: [...RULES.review, "\\b42\\b", "WHERE id = 1$"] })],
  ];

  it.each([...targets.map(([name, rules]) => [name, rules, false] as const), ...regexTargets.map(([name, rules]) => [name, rules, true] as const)])("never returns another verdict than a fresh parse, %s", (_name, rules, forRules) => {
    const foldNumbers = [...rules.block, ...rules.review].every((r) => r.type === "builtin");
    let checked = 0;
    for (const first of STATEMENTS) {
      for (const second of variants(first)) {
        const cache = forRules ? ClassificationCache.forRules(rules) : new ClassificationCache((sql) => classifySql(sql, rules), foldNumbers);
        cache.get(first);
        const fromCache = cache.get(second);
        expect(verdicts(fromCache), `${first} then ${second}`).toEqual(verdicts(classifySql(second, rules)));
        expect(fromCache.map((s) => s.text)).toEqual(classifySql(second, rules).map((s) => s.text));
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it("shares one entry between statements that differ only in a number literal", () => {
    let parsed = 0;
    const rules = compileRules(RULES);
    const cache = new ClassificationCache((sql) => {
      parsed += 1;
      return classifySql(sql, rules);
    }, true);
    cache.get("SELECT abalance FROM pgbench_accounts WHERE aid = 17");
    expect(cache.get("SELECT abalance FROM pgbench_accounts WHERE aid = 42")).toEqual([
      { text: "SELECT abalance FROM pgbench_accounts WHERE aid = 42", kind: "select", verdict: "allow" },
    ]);
    // A verdict that read a number is parsed every time: stored under its own text, it would be
    // found under the folded key of `EXPLAIN (ANALYZE 1) …`.
    cache.get("EXPLAIN (ANALYZE 0) DELETE FROM orders");
    cache.get("EXPLAIN (ANALYZE 0) DELETE FROM orders");
    expect(parsed).toBe(3);
  });

  it("with a regex rule, shares the parse but matches the regex against each text's own numbers", () => {
    const rules = compileRules({ ...RULES, review: [...RULES.review, "aid = 42\\b"] });
    const cache = ClassificationCache.forRules(rules);
    expect(cache.get("SELECT abalance FROM pgbench_accounts WHERE aid = 17")).toEqual([
      { text: "SELECT abalance FROM pgbench_accounts WHERE aid = 17", kind: "select", verdict: "allow" },
    ]);
    expect(cache.get("SELECT abalance FROM pgbench_accounts WHERE  aid   =\n42;")).toEqual([
      { text: "SELECT abalance FROM pgbench_accounts WHERE  aid   =\n42", kind: "select", verdict: "review", rule: "aid = 42\\b" },
    ]);
    expect(cache.get("SELECT abalance FROM pgbench_accounts WHERE aid = 421")).toEqual([
      { text: "SELECT abalance FROM pgbench_accounts WHERE aid = 421", kind: "select", verdict: "allow" },
    ]);
  });
});
