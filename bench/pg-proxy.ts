/**
 * bench/pg-proxy: pgbench through four paths, in one run with the rounds interleaved:
 *   direct      → PostgreSQL
 *   pipe        → a bare Node.js socket pipe (a.pipe(b); b.pipe(a)): the floor any Node proxy pays here
 *   jitgate-always   → the PostgreSQL proxy with auditing, rules and masking on; audit journal with
 *                      `fsync: always` (each statement waits for its group's fdatasync)
 *   jitgate-interval → the same with `fsync: interval` (waits for the journal write; fdatasync every 5 ms)
 *   jitgate-relay → the `interval` gateway with statement recording stubbed out (JournaledStatements'
 *                   record and complete), in this benchmark only ("relay only, recording off"):
 *                   the relay's own cost
 *   pgbouncer   → pgbouncer in session pooling (Debian package), when installed
 * Workloads: select-only in simple and extended protocol (8 clients), the default TPC-B-like
 * script, select-only at 1 client (latency), a 500k-row select with a masked column (psql wall
 * time), and COPY out and in of pgbench_accounts (500k rows) on a target without masking
 * (`jitgate` there is the gateway's unmasked target). Prints TPS (or runs per second for the
 * psql workloads), mean latency (or wall time), the CPU each transaction cost in PostgreSQL, in the
 * proxy process and in the client (run it on a quiet machine: other PostgreSQL work counts too), and ratios. Run: npm run bench:pg [-- --seconds 5 --rounds 2 --clients 8]
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseConfig } from "../src/config/load.js";
import { createLogger } from "../src/infra/logger.js";
import { startGateway } from "../src/main.js";
import { JournaledStatements } from "../src/broker/statement-journal.js";
import { ResultCapture } from "../src/proxy/postgres/result-capture.js";
import { createTestDatabase, REDIS_URL, testPrefix } from "../test/support/databases.js";

const run = promisify(execFile);
const arg = (name: string, fallback: number) => {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
};
const SECONDS = arg("seconds", 5);
const ROUNDS = arg("rounds", 2);
const CLIENTS = arg("clients", 8);
const SCALE = arg("scale", 5);

/**
 * "Relay only, recording off": while the path `jitgate-relay` runs, the audit journal's record and
 * complete, and result capture's columns (so no result is kept), are stubbed (in this benchmark
 * process only, never in the product), so the figure is the relay's own cost without recording.
 */
let recordingOff = false;
const realRecord = JournaledStatements.prototype.record;
const realComplete = JournaledStatements.prototype.complete;
JournaledStatements.prototype.record = function (this: JournaledStatements, ...args: Parameters<JournaledStatements["record"]>) {
  return recordingOff ? Promise.resolve() : realRecord.apply(this, args);
};
JournaledStatements.prototype.complete = function (this: JournaledStatements, ...args: Parameters<JournaledStatements["complete"]>) {
  if (!recordingOff) realComplete.apply(this, args);
};
// Results (issue 16's `record` caps) are recording too: without a result's columns nothing is kept.
const realColumns = ResultCapture.prototype.columns;
ResultCapture.prototype.columns = function (this: ResultCapture, ...args: Parameters<ResultCapture["columns"]>) {
  if (!recordingOff) realColumns.apply(this, args);
};

interface Result {
  tps: number;
  latencyMs: number;
  /** CPU time per transaction (µs): in PostgreSQL's processes, in this process (the proxies), in the client (pgbench or psql). */
  cpu?: { postgres: number; proxy: number; client: number };
}

/**
 * CPU seconds used so far: by every PostgreSQL process (the target's backends, and the gateway's
 * own database, the same server here), by this process (the pipe, pgbouncer aside, and the
 * gateway run in it), and by this process's finished children (pgbench, psql). On a 2-core machine
 * every path competes for the same cores, so this shows where each transaction's time goes.
 */
function cpuNow(): { postgres: number; proxy: number; client: number } {
  const ticks = 100; // USER_HZ on Linux
  let postgres = 0;
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue;
    }
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    if (name !== "postgres" && name !== "pgbouncer") continue;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Its own time, and that of its children that have exited (a backend's, once its client left).
    postgres += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / ticks;
  }
  const self = readFileSync("/proc/self/stat", "utf8");
  const fields = self.slice(self.lastIndexOf(")") + 2).split(" ");
  const usage = process.cpuUsage();
  return { postgres, proxy: (usage.user + usage.system) / 1e6, client: (Number(fields[13]) + Number(fields[14])) / ticks };
}

/** `work`, with the CPU each side spent on it per transaction (µs). */
async function measured(work: () => Promise<Result>): Promise<Result> {
  const before = cpuNow();
  const started = performance.now();
  const result = await work();
  const after = cpuNow();
  const transactions = (result.tps * (performance.now() - started)) / 1000;
  const per = (key: keyof typeof before) => ((after[key] - before[key]) * 1e6) / Math.max(transactions, 1);
  return { ...result, cpu: { postgres: per("postgres"), proxy: per("proxy"), client: per("client") } };
}

const fmt = (rate: number) => rate.toFixed(rate < 100 ? 2 : 0);

async function pgbench(uri: string, args: string[]): Promise<Result> {
  // A workload may set its own client count (`-c 1` for latency); otherwise --clients.
  const clients = args.includes("-c") ? [] : ["-c", String(CLIENTS), "-j", "2"];
  const { stdout } = await run("pgbench", ["-n", ...clients, "-T", String(SECONDS), ...args, uri], {
    timeout: (SECONDS + 60) * 1000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const tps = /tps = ([\d.]+)/.exec(stdout);
  const latency = /latency average = ([\d.]+) ms/.exec(stdout);
  if (!tps || !latency) throw new Error(`unexpected pgbench output:\n${stdout}`);
  return { tps: Number(tps[1]), latencyMs: Number(latency[1]) };
}

/** psql runs (the workloads that are not pgbench), three in a row: the mean wall time, and runs per second. */
async function psqlRun(uri: string, commands: string[]): Promise<Result> {
  const runs = 3;
  const started = performance.now();
  for (let i = 0; i < runs; i++) {
    await run("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", ...commands.flatMap((c) => ["-c", c]), "-o", "/dev/null", uri], {
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  }
  const ms = (performance.now() - started) / runs;
  return { tps: 1000 / ms, latencyMs: ms };
}

function barePipe(upstreamPort: number): Promise<Server> {
  const server = createServer((client) => {
    const upstream = connect(upstreamPort, "127.0.0.1");
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function startPgbouncer(dir: string, database: string): Promise<{ port: number; child: ChildProcess } | undefined> {
  const binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].find(existsSync);
  if (!binary) return undefined;
  const port = 20000 + Math.floor(Math.random() * 20000);
  const ini = join(dir, "pgbouncer.ini");
  writeFileSync(
    ini,
    `[databases]\n${database} = host=127.0.0.1 port=5432 dbname=${database} user=postgres\n` +
      `[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = ${port}\nauth_type = any\npool_mode = session\n` +
      `max_client_conn = 100\ndefault_pool_size = ${CLIENTS + 2}\nunix_socket_dir =\nlogfile = ${join(dir, "pgbouncer.log")}\n`,
  );
  await run("chown", ["-R", "postgres", dir]);
  // pgbouncer refuses to run as root.
  const child = spawn("runuser", ["-u", "postgres", "--", binary, ini], { stdio: "ignore" });
  for (let i = 0; i < 50; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (up) return { port, child };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill();
  return undefined;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "jitgate-bench-"));
  const upstream = await createTestDatabase("bench_upstream");
  const own = await createTestDatabase("bench_gateway");
  const prefix = testPrefix("bench");
  await run("pgbench", ["-i", "-q", "-s", String(SCALE), upstream.url], { timeout: 300_000 });
  const copyFile = join(dir, "accounts.copy");
  await run("psql", ["-X", "-q", "-c", `\\copy pgbench_accounts to '${copyFile}'`, upstream.url]);
  await run("psql", ["-X", "-q", "-c", "create table bench_people as select g as id, 'user' || g || '@example.com' as email, 'note ' || g as note from generate_series(1, 500000) g", "-c", "create table bench_copy_in (like pgbench_accounts)", upstream.url]);

  // Two replicas of one deployment (same database and Redis), one per journal mode, each with its own journal.
  const configOf = (fsync: "always" | "interval") =>
    parseConfig(
      `
database: ${own.url}
redis: ${REDIS_URL}
redisPrefix: ${prefix}
dataDir: ${join(dir, "data")}
log: { level: error }
audit: { journal: { dir: ${join(dir, `journal-${fsync}`)}, fsync: ${fsync}, intervalMs: 5 } }
proxy:
  postgres: { listen: 127.0.0.1:0 }
targets:
  - name: bench-db
    kind: postgres
    upstream: ${upstream.url}
    approvers: [lead@example.com]
    commands:
      block: [drop-database, "^ALTER SYSTEM"]
      review: [delete-without-where, update-without-where]
    mask: [{ column: email }, { detect: credit-card }, { detect: email }]
  - name: bench-plain
    kind: postgres
    upstream: ${upstream.url}
    approvers: [lead@example.com]
    commands:
      block: [drop-database, "^ALTER SYSTEM"]
      review: [delete-without-where, update-without-where]
`,
      "bench",
      {},
    );
  const gateway = await startGateway({ config: configOf("always"), logger: createLogger("error"), httpListen: "127.0.0.1:0" });
  const intervalGateway = await startGateway({ config: configOf("interval"), logger: createLogger("error"), httpListen: "127.0.0.1:0" });
  const { broker } = gateway;
  const bench = await broker.identify({ platform: "console", externalId: "bench", email: "bench@example.com" });
  const lead = await broker.identify({ platform: "console", externalId: "lead", email: "lead@example.com" });
  const request = await broker.request(bench, { target: "bench-db", duration: "8h", reason: "benchmark" });
  const { connection } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const plainRequest = await broker.request(bench, { target: "bench-plain", duration: "8h", reason: "benchmark" });
  const { connection: plainConnection } = await broker.decide(lead, { requestId: plainRequest.id, verdict: "approve" });
  const proxyPort = gateway.postgresProxy!.address.port;
  const intervalPort = intervalGateway.postgresProxy!.address.port;
  const pipe = await barePipe(5432);
  const bouncer = await startPgbouncer(dir, upstream.name);

  const paths: Record<string, string> = {
    direct: upstream.url,
    pipe: `postgres://postgres@127.0.0.1:${(pipe.address() as AddressInfo).port}/${upstream.name}`,
    "jitgate-always": connection!.line.replace(/@[^/]+\//, `@127.0.0.1:${proxyPort}/`),
    "jitgate-interval": connection!.line.replace(/@[^/]+\//, `@127.0.0.1:${intervalPort}/`),
  };
  paths["jitgate-relay"] = paths["jitgate-interval"]!;
  // The unmasked target, on the gateway each jitgate path uses.
  const plainUri = (path: string) => plainConnection!.line.replace(/@[^/]+\//, `@127.0.0.1:${path === "jitgate-always" ? proxyPort : intervalPort}/`);
  if (bouncer) paths.pgbouncer = `postgres://postgres@127.0.0.1:${bouncer.port}/${upstream.name}`;
  const only = process.argv.indexOf("--only");
  if (only > 0) for (const key of Object.keys(paths)) if (!process.argv[only + 1]!.split(",").includes(key)) delete paths[key];
  type Workload = (uri: string) => Promise<Result>;
  const pgbenchOf = (...args: string[]): Workload => (uri) => pgbench(uri, args);
  const workloads: Record<string, Workload> = process.argv.includes("--quick") ? { "select-only simple": pgbenchOf("-S", "-M", "simple") } : {
    "select-only simple": pgbenchOf("-S", "-M", "simple"),
    "select-only extended": pgbenchOf("-S", "-M", "extended"),
    "tpc-b simple": pgbenchOf("-M", "simple"),
    "select-only 1 client": pgbenchOf("-S", "-M", "simple", "-c", "1", "-j", "1"),
    "500k rows, email masked": (uri) => psqlRun(uri, ["select * from bench_people"]),
    "copy out 500k (no mask)": (uri) => psqlRun(uri, ["copy pgbench_accounts to stdout"]),
    "copy in 500k (no mask)": (uri) => psqlRun(uri, ["truncate bench_copy_in", `\\copy bench_copy_in from '${copyFile}'`]),
  };
  // On these the gateway's path is its target without masking rules.
  const unmasked = new Set(["copy out 500k (no mask)", "copy in 500k (no mask)"]);
  const pick = process.argv.indexOf("--workload");
  if (pick > 0) for (const key of Object.keys(workloads)) if (!key.includes(process.argv[pick + 1]!)) delete workloads[key];

  const results: Record<string, Record<string, Result[]>> = {};
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [workload, runWorkload] of Object.entries(workloads)) {
        for (const [path, pathUri] of Object.entries(paths)) {
          const uri = unmasked.has(workload) && path.startsWith("jitgate") ? plainUri(path) : pathUri;
          recordingOff = path === "jitgate-relay";
          const result = await measured(() => runWorkload(uri)).finally(() => (recordingOff = false));
          ((results[workload] ??= {})[path] ??= []).push(result);
          process.stderr.write(`round ${round} ${workload.padEnd(24)} ${path.padEnd(16)} ${fmt(result.tps).padStart(7)} tps ${result.latencyMs.toFixed(3).padStart(9)} ms\n`);
        }
      }
    }
  } finally {
    await intervalGateway.close();
    await gateway.close();
    pipe.close();
    bouncer?.child.kill();
    await upstream.drop();
    await own.drop();
    rmSync(dir, { recursive: true, force: true });
  }

  const mean = (values: Result[], key: "tps" | "latencyMs") => values.reduce((sum, r) => sum + r[key], 0) / values.length;
  console.log(`\npgbench, ${CLIENTS} clients, ${SECONDS}s × ${ROUNDS} interleaved rounds, scale ${SCALE}, ${new Date().toISOString()}`);
  console.log("workload (psql ones: runs/s and wall ms)   path              TPS   latency ms   CPU µs per transaction: postgres / proxy process / client");
  const cpuOf = (values: Result[], key: keyof NonNullable<Result["cpu"]>) => values.reduce((sum, r) => sum + (r.cpu?.[key] ?? 0), 0) / values.length;
  for (const [workload, byPath] of Object.entries(results)) {
    for (const [path, values] of Object.entries(byPath)) {
      const cpu = (["postgres", "proxy", "client"] as const).map((key) => fmt(cpuOf(values, key)).padStart(7)).join(" /");
      console.log(`${workload.padEnd(24)} ${path.padEnd(16)} ${fmt(mean(values, "tps")).padStart(6)}   ${mean(values, "latencyMs").toFixed(3).padStart(8)}   ${cpu}`);
    }
    const tps = (path: string) => (byPath[path] ? mean(byPath[path]!, "tps") : NaN);
    const ratio = (a: string, b: string) => (tps(a) / tps(b)).toFixed(2);
    console.log(
      `  ratios: jitgate-always/pipe ${ratio("jitgate-always", "pipe")}  jitgate-interval/pipe ${ratio("jitgate-interval", "pipe")}` +
        `  jitgate-relay/pipe (relay only, recording off) ${ratio("jitgate-relay", "pipe")}  jitgate-interval/direct ${ratio("jitgate-interval", "direct")}  pipe/direct ${ratio("pipe", "direct")}` +
        (byPath.pgbouncer ? `  pgbouncer/direct ${ratio("pgbouncer", "direct")}  jitgate-interval/pgbouncer ${ratio("jitgate-interval", "pgbouncer")}` : "  (pgbouncer not installed)"),
    );
  }
}

await main();
