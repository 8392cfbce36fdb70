import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { classifySql, compileRules, loadSqlParser } from "../src/rules/sql-classifier.js";
import { createTestDatabase } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

/**
 * Differential test of the classifier on SQL nobody here wrote: PostgreSQL's own
 * information_schema.sql and contrib install scripts run once directly against a fresh database
 * and once through the proxy against another; the two psql transcripts must be the same line for
 * line (a statement the classifier wrongly refused would show as an extra ERROR), and every
 * statement must get a verdict from the classifier without crashing it.
 */

const run = promisify(execFile);
const SHARE = "/usr/share/postgresql/15";
const EXTENSIONS = ["hstore--1.4", "citext--1.4", "pg_trgm--1.3", "ltree--1.1", "isn--1.1", "cube--1.2", "tablefunc--1.0"];

let direct: Awaited<ReturnType<typeof createTestDatabase>>;
let proxied: Awaited<ReturnType<typeof createTestDatabase>>;
let test: TestGateway;
let dir: string;
let uri: string;
const scripts: { name: string; path: string; sql: string }[] = [];

async function psqlFile(target: string, path: string): Promise<string[]> {
  const result = await run("psql", [target, "-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", path], {
    env: { ...process.env, PGCONNECT_TIMEOUT: "5" },
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { stdout: string; stderr: string }) => error);
  return `${result.stdout}${result.stderr}`.split("\n");
}

beforeAll(async () => {
  await loadSqlParser();
  dir = mkdtempSync(join(tmpdir(), "jitgate-differential-"));
  // information_schema exists in every database: install the copy under another name.
  const sources = [
    { name: "information_schema", sql: readFileSync(`${SHARE}/information_schema.sql`, "utf8").replaceAll("information_schema", "infoschema_copy") },
    ...EXTENSIONS.map((file) => {
      const module = file.split("--")[0]!;
      // Contrib scripts begin with an `\echo … \quit` guard against being run outside CREATE EXTENSION.
      const sql = readFileSync(`${SHARE}/extension/${file}.sql`, "utf8")
        .split("\n")
        .filter((line) => !line.startsWith("\\echo"))
        .join("\n")
        .replaceAll("MODULE_PATHNAME", `$libdir/${module}`)
        .replaceAll("@extschema@", "public");
      return { name: file, sql };
    }),
  ];
  for (const source of sources) {
    const path = join(dir, `${source.name}.sql`);
    writeFileSync(path, source.sql);
    scripts.push({ ...source, path });
  }
  direct = await createTestDatabase("differential_direct");
  proxied = await createTestDatabase("differential_proxied");
  test = await startTestGateway(
    "differential",
    `
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: ddl-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    commands: { block: [], review: [], unverifiable: allow }
`,
    { UPSTREAM_URL: proxied.url },
  );
  const { broker } = test.gateway;
  const dev = await broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com", displayName: "Dev" });
  const lead = await broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com", displayName: "Lead" });
  const request = await broker.request(dev, { target: "ddl-db", duration: "1h", reason: "differential" });
  const result = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  uri = result.connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${test.gateway.postgresProxy!.address.port}`);
}, 60_000);

afterAll(async () => {
  await test?.close();
  await direct?.drop();
  await proxied?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe("SQL nobody here wrote", () => {
  it("gives every statement a verdict, under every built-in rule, without crashing", () => {
    const rules = compileRules({
      block: [],
      review: ["ddl", "drop-database", "truncate", "delete-without-where", "update-without-where", "grant-revoke", "server-files", "set-role"],
    });
    for (const script of scripts) {
      const statements = classifySql(script.sql, rules);
      expect(statements.length, script.name).toBeGreaterThan(10);
      const unreadable = statements.filter((s) => s.rule === "unparseable" || s.rule === "pinned-setting");
      expect(unreadable, script.name).toEqual([]);
    }
  });

  it("runs them through the proxy with the same transcript as directly", async () => {
    for (const script of scripts) {
      const expected = await psqlFile(direct.url, script.path);
      const actual = await psqlFile(uri, script.path);
      expect(actual, script.name).toEqual(expected);
    }
    // And the work was done: the copied information_schema has its views on both sides.
    const count = async (url: string) => {
      const { stdout } = await run("psql", [url, "-X", "-A", "-t", "-c", "select count(*) from pg_views where schemaname = 'infoschema_copy'"]);
      return Number(stdout.trim());
    };
    expect(await count(proxied.url)).toBe(await count(direct.url));
    expect(await count(proxied.url)).toBeGreaterThan(50);
  }, 60_000);
});
