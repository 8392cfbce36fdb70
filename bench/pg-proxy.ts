/**
 * bench/pg-proxy: pgbench through four paths, in one run with the rounds interleaved:
 *   direct      → PostgreSQL
 *   pipe        → a bare Node.js socket pipe (a.pipe(b); b.pipe(a)): the floor any Node proxy pays here
 *   jitgate     → the PostgreSQL proxy with auditing, rules and masking on
 *   jitgate-relay → the same gateway with statement recording stubbed out at the StatementLog, in
 *                 this benchmark only ("relay only, recording off"): the relay's own cost
 *   pgbouncer   → pgbouncer in session pooling (Debian package), when installed
 * Workloads: select-only in simple and extended protocol, and the default TPC-B-like script.
 * Prints TPS, mean latency and ratios. Run: npm run bench:pg [-- --seconds 5 --rounds 2 --clients 8]
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseConfig } from "../src/config/load.js";
import { createLogger } from "../src/infra/logger.js";
import { startGateway } from "../src/main.js";
import { StatementLog } from "../src/broker/statement-log.js";
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
 * "Relay only, recording off": while the path `jitgate-relay` runs, StatementLog's record and
 * complete are stubbed (in this benchmark process only, never in the product), so the figure is
 * the relay's own cost without the statement timeline's write.
 */
let recordingOff = false;
const realRecord = StatementLog.prototype.record;
const realComplete = StatementLog.prototype.complete;
StatementLog.prototype.record = function (this: StatementLog, ...args: Parameters<StatementLog["record"]>) {
  return recordingOff ? Promise.resolve() : realRecord.apply(this, args);
};
StatementLog.prototype.complete = function (this: StatementLog, ...args: Parameters<StatementLog["complete"]>) {
  if (!recordingOff) realComplete.apply(this, args);
};

interface Result {
  tps: number;
  latencyMs: number;
}

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

  const config = parseConfig(
    `
database: ${own.url}
redis: ${REDIS_URL}
redisPrefix: ${prefix}
log: { level: error }
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
`,
    "bench",
    {},
  );
  const gateway = await startGateway({ config, logger: createLogger("error"), httpListen: "127.0.0.1:0" });
  const { broker } = gateway;
  const bench = await broker.identify({ platform: "console", externalId: "bench", email: "bench@example.com" });
  const lead = await broker.identify({ platform: "console", externalId: "lead", email: "lead@example.com" });
  const request = await broker.request(bench, { target: "bench-db", duration: "8h", reason: "benchmark" });
  const { connection } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const proxyPort = gateway.postgresProxy!.address.port;
  const pipe = await barePipe(5432);
  const bouncer = await startPgbouncer(dir, upstream.name);

  const paths: Record<string, string> = {
    direct: upstream.url,
    pipe: `postgres://postgres@127.0.0.1:${(pipe.address() as AddressInfo).port}/${upstream.name}`,
    jitgate: connection!.line.replace(/@[^/]+\//, `@127.0.0.1:${proxyPort}/`),
  };
  paths["jitgate-relay"] = paths.jitgate!;
  if (bouncer) paths.pgbouncer = `postgres://postgres@127.0.0.1:${bouncer.port}/${upstream.name}`;
  const only = process.argv.indexOf("--only");
  if (only > 0) for (const key of Object.keys(paths)) if (key !== process.argv[only + 1]) delete paths[key];
  const workloads: Record<string, string[]> = process.argv.includes("--quick") ? { "select-only simple": ["-S", "-M", "simple"] } : {
    "select-only simple": ["-S", "-M", "simple"],
    "select-only extended": ["-S", "-M", "extended"],
    "tpc-b simple": ["-M", "simple"],
    "select-only 1 client": ["-S", "-M", "simple", "-c", "1", "-j", "1"],
  };
  const pick = process.argv.indexOf("--workload");
  if (pick > 0) for (const key of Object.keys(workloads)) if (!key.includes(process.argv[pick + 1]!)) delete workloads[key];

  const results: Record<string, Record<string, Result[]>> = {};
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [workload, args] of Object.entries(workloads)) {
        for (const [path, uri] of Object.entries(paths)) {
          recordingOff = path === "jitgate-relay";
          const result = await pgbench(uri, args).finally(() => (recordingOff = false));
          ((results[workload] ??= {})[path] ??= []).push(result);
          process.stderr.write(`round ${round} ${workload.padEnd(22)} ${path.padEnd(13)} ${result.tps.toFixed(0).padStart(7)} tps\n`);
        }
      }
    }
  } finally {
    await gateway.close();
    pipe.close();
    bouncer?.child.kill();
    await upstream.drop();
    await own.drop();
    rmSync(dir, { recursive: true, force: true });
  }

  const mean = (values: Result[], key: keyof Result) => values.reduce((sum, r) => sum + r[key], 0) / values.length;
  console.log(`\npgbench, ${CLIENTS} clients, ${SECONDS}s × ${ROUNDS} interleaved rounds, scale ${SCALE}, ${new Date().toISOString()}`);
  console.log("workload               path           TPS   latency ms");
  for (const [workload, byPath] of Object.entries(results)) {
    for (const [path, values] of Object.entries(byPath)) {
      console.log(`${workload.padEnd(22)} ${path.padEnd(13)} ${mean(values, "tps").toFixed(0).padStart(6)}   ${mean(values, "latencyMs").toFixed(3)}`);
    }
    const tps = (path: string) => (byPath[path] ? mean(byPath[path]!, "tps") : NaN);
    const ratio = (a: string, b: string) => (tps(a) / tps(b)).toFixed(2);
    console.log(
      `  ratios: jitgate/pipe ${ratio("jitgate", "pipe")}  jitgate-relay/pipe (relay only, recording off) ${ratio("jitgate-relay", "pipe")}  jitgate/direct ${ratio("jitgate", "direct")}  pipe/direct ${ratio("pipe", "direct")}` +
        (byPath.pgbouncer ? `  pgbouncer/direct ${ratio("pgbouncer", "direct")}  pipe/pgbouncer ${ratio("pipe", "pgbouncer")}  jitgate/pgbouncer ${ratio("jitgate", "pgbouncer")}` : "  (pgbouncer not installed)"),
    );
  }
}

await main();
