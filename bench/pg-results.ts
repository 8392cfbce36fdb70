/**
 * What recording results costs (issue 16): the same gateway, the same masked target twice, once
 * with the default `record: { rows: 100, bytes: 64KiB }` and a seal key, once with `record: 0`.
 * Workloads: pgbench select-only (simple protocol, 8 clients: one row per statement, so every
 * statement's result is kept), and a 500k-row `select *` with a masked column (psql wall time:
 * 100 rows kept, 499 900 past the cap). Rounds interleave the two targets.
 *
 *   npx tsx bench/pg-results.ts [--seconds 5] [--rounds 2]
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseConfig } from "../src/config/load.js";
import { createLogger } from "../src/infra/logger.js";
import { startGateway } from "../src/main.js";
import { createTestDatabase, dropRedisKeys, REDIS_URL, testPrefix } from "../test/support/databases.js";

const run = promisify(execFile);
const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const SECONDS = arg("seconds", 5);
const ROUNDS = arg("rounds", 2);

async function pgbench(uri: string): Promise<number> {
  const { stdout } = await run("pgbench", ["-n", "-c", "8", "-j", "2", "-S", "-T", String(SECONDS), uri], { timeout: (SECONDS + 60) * 1000, maxBuffer: 16 << 20 });
  return Number(/tps = ([\d.]+)/.exec(stdout)![1]);
}

async function bigSelect(uri: string): Promise<number> {
  const started = performance.now();
  await run("psql", ["-X", "-q", "-c", "select * from bench_people", "-o", "/dev/null", uri], { timeout: 300_000, maxBuffer: 16 << 20 });
  return performance.now() - started;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "jitgate-bench-results-"));
  const upstream = await createTestDatabase("bench_results_upstream");
  const own = await createTestDatabase("bench_results_gateway");
  const prefix = testPrefix("bench-results");
  await run("pgbench", ["-i", "-q", "-s", "5", upstream.url], { timeout: 300_000 });
  await run("psql", ["-X", "-q", "-c", "create table bench_people as select g as id, 'user' || g || '@example.com' as email, 'note ' || g as note from generate_series(1, 500000) g", upstream.url]);
  const target = (name: string, record: string) => `
  - name: ${name}
    kind: postgres
    upstream: ${upstream.url}
    approvers: [lead@example.com]
    mask: [{ column: email }]
    record: ${record}`;
  const config = parseConfig(
    `
database: ${own.url}
redis: ${REDIS_URL}
redisPrefix: ${prefix}
dataDir: ${join(dir, "data")}
log: { level: error }
audit:
  sealKey: { id: k1, key: "${randomBytes(32).toString("base64")}" }
proxy:
  postgres: { listen: 127.0.0.1:0 }
targets:${target("recorded", "{ rows: 100, bytes: 64KiB }")}${target("unrecorded", "0")}
`,
    "bench",
    {},
  );
  const gateway = await startGateway({ config, logger: createLogger("error"), httpListen: "127.0.0.1:0" });
  try {
    const { broker } = gateway;
    const bench = await broker.identify({ platform: "console", externalId: "bench", email: "bench@example.com" });
    const lead = await broker.identify({ platform: "console", externalId: "lead", email: "lead@example.com" });
    const port = gateway.postgresProxy!.address.port;
    const uris: Record<string, string> = {};
    for (const name of ["recorded", "unrecorded"]) {
      const request = await broker.request(bench, { target: name, duration: "8h", reason: "benchmark" });
      const { connection } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
      uris[name] = connection!.line.replace(/@[^/]+\//, `@127.0.0.1:${port}/`);
    }
    const results: Record<string, { tps: number[]; ms: number[] }> = { recorded: { tps: [], ms: [] }, unrecorded: { tps: [], ms: [] } };
    for (let round = 1; round <= ROUNDS; round++) {
      for (const name of round % 2 === 1 ? ["recorded", "unrecorded"] : ["unrecorded", "recorded"]) {
        results[name]!.tps.push(await pgbench(uris[name]!));
        results[name]!.ms.push(await bigSelect(uris[name]!));
        process.stderr.write(`round ${round} ${name}: ${results[name]!.tps.at(-1)!.toFixed(0)} TPS select-only, ${results[name]!.ms.at(-1)!.toFixed(0)} ms for 500k masked rows\n`);
      }
    }
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    for (const name of ["recorded", "unrecorded"]) {
      process.stdout.write(`${name.padEnd(10)}  select-only 8 clients: ${mean(results[name]!.tps).toFixed(0)} TPS   500k-row masked select: ${mean(results[name]!.ms).toFixed(0)} ms\n`);
    }
  } finally {
    await gateway.close();
    await dropRedisKeys(prefix);
    await own.drop();
    await upstream.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
