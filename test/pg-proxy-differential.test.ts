import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Person } from "../src/broker/index.js";
import { createTestDatabase } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

// The relay must not change what a client sees on a target with no masking rules: SQL nobody here
// wrote (PostgreSQL's own contrib install scripts: types, operators, operator classes, C and SQL
// functions, casts, comments, errors and notices) is run with psql directly and through the proxy,
// and the two transcripts are compared line by line.

const SCRIPTS = ["citext--1.4", "hstore--1.4", "ltree--1.1", "cube--1.2", "seg--1.1", "isn--1.1", "pg_trgm--1.3", "earthdistance--1.1"];
const EXTENSIONS = "/usr/share/postgresql/15/extension";

/** The install script as psql can run it: no `\echo … \quit` guard, the module path spelled out. */
function script(name: string): string {
  const module = name.replace(/--.*$/, "");
  return readFileSync(`${EXTENSIONS}/${name}.sql`, "utf8")
    .split("\n")
    .filter((line) => !line.startsWith("\\echo"))
    .join("\n")
    .replaceAll("MODULE_PATHNAME", `$libdir/${module}`);
}

// After the scripts, statements that use what they created, including ones that fail.
const USE = `
SELECT 'Hello'::citext = 'hELLO'::citext AS same, 'a=>1, b=>2'::hstore -> 'b' AS b;
SELECT 'Top.Science.Astronomy'::ltree <@ 'Top.Science'::ltree AS under, cube(array[1,2], array[3,4]) AS c;
SELECT '1 .. 2'::seg AS s, isbn('978-0-393-04002-9') AS i, similarity('word', 'words') AS sim;
SELECT earth_distance(ll_to_earth(52.5, 13.4), ll_to_earth(48.9, 2.35))::int / 1000 AS km;
SELECT 'not an isbn'::isbn;
SELECT 'a=>'::hstore;
CREATE TABLE notes (id int PRIMARY KEY, body citext, tags hstore);
INSERT INTO notes VALUES (1, 'One', 'k=>v'), (2, 'Two', NULL) RETURNING *;
INSERT INTO notes VALUES (1, 'dup', NULL);
SELECT * FROM notes WHERE body = 'ONE';
\\d notes
SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_name = 'notes' ORDER BY ordinal_position;
`;

let direct: Awaited<ReturnType<typeof createTestDatabase>>;
let proxied: Awaited<ReturnType<typeof createTestDatabase>>;
let test: TestGateway;
let lead: Person, dev: Person;

beforeAll(async () => {
  direct = await createTestDatabase("diff_direct");
  proxied = await createTestDatabase("diff_proxied");
  test = await startTestGateway(
    "diff",
    `
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: plain-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    commands: { block: [drop-database], unverifiable: allow }
`,
    { UPSTREAM_URL: proxied.url },
  );
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com" });
  dev = await test.gateway.broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com" });
});

afterAll(async () => {
  await test?.close();
  await direct?.drop();
  await proxied?.drop();
});

function transcript(uri: string, input: string): Promise<string> {
  return new Promise((resolve) => {
    // One stream (stderr into stdout's pipe), in order, as a user reads it.
    const child = spawn("sh", ["-c", 'psql "$URI" -X -a -v ON_ERROR_STOP=0 -f - 2>&1'], {
      stdio: ["pipe", "pipe", "inherit"],
      env: { ...process.env, URI: uri },
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stdin.end(input);
    child.on("close", () => resolve(output));
  });
}

it("contrib install scripts and their use read the same directly and through the proxy", async () => {
  const request = await test.gateway.broker.request(dev, { target: "plain-db", duration: "1h", reason: "install" });
  const result = await test.gateway.broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const uri = result.connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${test.gateway.postgresProxy!.address.port}`);
  const input = SCRIPTS.map(script).join("\n") + USE;
  const [viaDirect, viaProxy] = await Promise.all([transcript(direct.url, input), transcript(uri, input)]);
  const a = viaDirect.split("\n");
  const b = viaProxy.split("\n");
  expect(a.length).toBeGreaterThan(3_000);
  expect(viaDirect).toContain("ERROR:  invalid input syntax for ISBN number");
  expect(viaDirect).toContain("km");
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) expect({ line: i + 1, proxy: b[i] }).toEqual({ line: i + 1, proxy: a[i] });
  }
}, 60_000);
