import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker, type Person } from "../src/broker/index.js";
import { parseConfig } from "../src/config/load.js";
import { openStorage, type Storage } from "../src/db/client.js";
import { startGateway, type Gateway } from "../src/main.js";
import { closeRedis, connectRedis } from "../src/infra/redis.js";
import { ADMIN_URL, createTestDatabase, REDIS_URL, testPrefix } from "./support/databases.js";
import { eventually } from "./support/fake-slack.js";
import { capturedLogger } from "./support/logs.js";

/**
 * Nothing lost, proven (issue 15): statements go through the local audit journal, and neither a
 * SIGKILL of the gateway nor a database that stops taking records loses one or lets one run
 * unrecorded.
 */

const CLI = join(import.meta.dirname, "..", "src", "cli.ts");
const dirs: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  const redis = connectRedis(REDIS_URL);
  const keys = await redis.keys("jitgate-test:journal*");
  if (keys.length > 0) await redis.del(...keys);
  await closeRedis(redis);
});

/** `jitgate serve` as a child process; resolves once it printed where it listens. */
function serve(configFile: string): Promise<{ child: ChildProcess; proxyPort: number; httpPort: number; exited: Promise<void>; output: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "serve"], {
      env: { ...process.env, JITGATE_CONFIG: configFile },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    const exited = new Promise<void>((done) => child.on("close", () => done()));
    child.stdout!.on("data", (chunk) => {
      stdout += chunk;
      const proxy = /postgres\s+[\d.]+:(\d+)/.exec(stdout);
      const http = /HTTP\s+http:\/\/[\d.]+:(\d+)/.exec(stdout);
      if (proxy && http) resolve({ child, proxyPort: Number(proxy[1]), httpPort: Number(http[1]), exited, output: () => stdout + stderr });
    });
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    void exited.then(() => reject(new Error(`jitgate serve exited before it listened:\n${stdout}\n${stderr}`)));
  });
}

async function grantLine(broker: Broker, person: Person, lead: Person, target: string, port: number): Promise<string> {
  const request = await broker.request(person, { target, duration: "1h", reason: "INC-1 journal test" });
  const { connection } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  return connection!.line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`);
}

describe.each(["always", "interval"] as const)("a SIGKILL under load (fsync: %s)", (fsync) => {
  let dir: string;
  let configFile: string;
  let target: Awaited<ReturnType<typeof createTestDatabase>>;
  let own: Awaited<ReturnType<typeof createTestDatabase>>;
  let storage: Storage;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "jitgate-journal-crash-"));
    dirs.push(dir);
    target = await createTestDatabase("journal_crash_target");
    own = await createTestDatabase("journal_crash_gateway");
    cleanups.push(() => target.drop(), () => own.drop());
    const seed = new pg.Client({ connectionString: target.url });
    await seed.connect();
    await seed.query("CREATE TABLE landed (client int NOT NULL, n int NOT NULL, PRIMARY KEY (client, n))");
    await seed.end();
    configFile = join(dir, "jitgate.yaml");
    writeFileSync(
      configFile,
      `database: ${own.url}
redis: ${REDIS_URL}
redisPrefix: ${testPrefix("journal_crash")}
dataDir: ${join(dir, "data")}
http: { listen: "127.0.0.1:0" }
log: { level: warn }
audit: { journal: { fsync: ${fsync}, intervalMs: 5 } }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: crash-db
    kind: postgres
    upstream: ${target.url}
    approvers: [lead@example.com]
`,
    );
  });

  afterAll(async () => {
    await storage?.close();
  });

  it("every row that reached the target has its statement in session_statements after a restart", async () => {
    const first = await serve(configFile);
    cleanups.push(async () => {
      first.child.kill("SIGKILL");
      await first.exited;
    });
    storage = await openStorage({ url: own.url, dataDir: dir });
    const config = parseConfig(readFileSync(configFile, "utf8"), "crash test", {});
    const broker = new Broker({ db: storage.db, config });
    const lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com" });
    const CLIENTS = 4;
    const clients: pg.Client[] = [];
    for (let c = 0; c < CLIENTS; c++) {
      const person = await broker.identify({ platform: "slack", externalId: `U${c}`, email: `dev${c}@example.com` });
      const client = new pg.Client({ connectionString: await grantLine(broker, person, lead, "crash-db", first.proxyPort) });
      client.on("error", () => {});
      await client.connect();
      clients.push(client);
    }
    const admin = new pg.Client({ connectionString: own.url });
    await admin.connect();
    cleanups.push(() => admin.end());

    // Several clients insert one row per statement until the gateway dies under them.
    const acknowledged: string[] = [];
    let stop = false;
    const load = clients.map(async (client, c) => {
      for (let n = 1; !stop; n++) {
        try {
          await client.query(`INSERT INTO landed (client, n) VALUES (${c}, ${n})`);
          acknowledged.push(`${c}:${n}`);
        } catch {
          return;
        }
      }
    });
    await eventually(() => acknowledged.length >= 200, 30_000, "200 inserts through the proxy");
    // From now on session_statements cannot take records: what runs is only in the journal.
    await admin.query("ALTER TABLE session_statements RENAME TO session_statements_away");
    const before = acknowledged.length;
    await eventually(() => acknowledged.length >= before + 200, 30_000, "200 more inserts, recorded in the journal only");
    first.child.kill("SIGKILL");
    await first.exited;
    stop = true;
    await Promise.all(load);
    for (const client of clients) await client.end().catch(() => {});
    await admin.query("ALTER TABLE session_statements_away RENAME TO session_statements");

    // What the database had when the gateway died, and what was left in the journal.
    const shippedBefore = await admin.query<{ count: string }>("SELECT count(*) FROM session_statements");
    const journalDir = join(dir, "data", "journal");
    expect(readdirSync(journalDir)).toHaveLength(1);

    // The restart ships what the crash left before it listens.
    const second = await serve(configFile);
    cleanups.push(async () => {
      second.child.kill("SIGTERM");
      await second.exited;
    });

    const landed = new pg.Client({ connectionString: target.url });
    await landed.connect();
    const rows = (await landed.query<{ client: number; n: number }>("SELECT client, n FROM landed")).rows.map((r) => `${r.client}:${r.n}`);
    await landed.end();
    const recorded = (await admin.query<{ text: string }>("SELECT text FROM session_statements")).rows.map((r) => {
      const match = /VALUES \((\d+), (\d+)\)/.exec(r.text);
      return match ? `${match[1]}:${match[2]}` : r.text;
    });
    const recordedSet = new Set(recorded);
    // Every row that reached the target has its statement; every acknowledged insert reached it.
    expect(rows.filter((row) => !recordedSet.has(row))).toEqual([]);
    expect(acknowledged.filter((row) => !rows.includes(row))).toEqual([]);
    expect(rows.length).toBeGreaterThanOrEqual(400);
    // The journal held at least the 200 statements the database could not take before the crash.
    expect(recorded.length - Number(shippedBefore.rows[0]!.count)).toBeGreaterThanOrEqual(200);
    // Each statement once (the replay is idempotent).
    expect(recorded.length).toBe(recordedSet.size);

    second.child.kill("SIGTERM");
    await second.exited;
  }, 120_000);
});

/** A TCP relay to PostgreSQL that the test can cut (every connection dropped, new ones refused) and restore. */
class CuttableRelay {
  #server: Server;
  #sockets = new Set<Socket>();
  #cut = false;
  port = 0;

  constructor() {
    const admin = new URL(ADMIN_URL);
    this.#server = createServer((client) => {
      if (this.#cut) {
        client.destroy();
        return;
      }
      const upstream = connect(Number(admin.port || 5432), admin.hostname);
      this.#sockets.add(client).add(upstream);
      client.pipe(upstream);
      upstream.pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) =>
      this.#server.listen(0, "127.0.0.1", () => {
        this.port = (this.#server.address() as { port: number }).port;
        resolve();
      }),
    );
  }

  cut(): void {
    this.#cut = true;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  restore(): void {
    this.#cut = false;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

describe("the journal's cap while the gateway's database is unreachable", () => {
  let relay: CuttableRelay;
  let gateway: Gateway;
  let target: Awaited<ReturnType<typeof createTestDatabase>>;
  let own: Awaited<ReturnType<typeof createTestDatabase>>;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "jitgate-journal-cap-"));
    dirs.push(dir);
    target = await createTestDatabase("journal_cap_target");
    own = await createTestDatabase("journal_cap_gateway");
    cleanups.push(() => target.drop(), () => own.drop());
    const seed = new pg.Client({ connectionString: target.url });
    await seed.connect();
    await seed.query("CREATE TABLE landed (n int PRIMARY KEY, padding text)");
    await seed.end();
    relay = new CuttableRelay();
    await relay.listen();
    cleanups.push(() => relay.close());
    const ownThroughRelay = new URL(own.url);
    ownThroughRelay.port = String(relay.port);
    const { logger } = capturedLogger("warn");
    gateway = await startGateway({
      config: parseConfig(
        `database: ${ownThroughRelay.toString()}
redis: ${REDIS_URL}
redisPrefix: ${testPrefix("journal_cap")}
dataDir: ${join(dir, "data")}
audit: { journal: { maxBytes: 16KiB } }
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: cap-db
    kind: postgres
    upstream: ${target.url}
    approvers: [lead@example.com]
`,
        "cap test",
        {},
      ),
      logger,
      httpListen: "127.0.0.1:0",
      postgresListen: "127.0.0.1:0",
    });
    cleanups.push(() => gateway.close());
  });

  const readyz = async () => {
    const response = await fetch(`http://127.0.0.1:${gateway.httpAddress.port}/readyz`);
    return { status: response.status, body: (await response.json()) as { checks: Record<string, string> } };
  };

  it("refuses new statements with 53100 once the cap is reached, says why at /readyz, and takes them again once shipped", async () => {
    const { broker } = gateway;
    const lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com" });
    const dev = await broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com" });
    const port = gateway.postgresProxy!.address.port;
    const client = new pg.Client({ connectionString: await grantLine(broker, dev, lead, "cap-db", port) });
    client.on("error", () => {});
    await client.connect();
    await client.query("INSERT INTO landed VALUES (0, 'before the cut')");
    expect((await readyz()).status).toBe(200);

    relay.cut();
    const padding = "x".repeat(400);
    const accepted: number[] = [];
    let refusal: { code?: string; message: string } | undefined;
    for (let n = 1; n < 1000 && !refusal; n++) {
      try {
        await client.query(`INSERT INTO landed VALUES (${n}, '${padding}')`);
        accepted.push(n);
      } catch (error) {
        refusal = error as { code?: string; message: string };
      }
    }
    expect(refusal).toMatchObject({
      code: "53100",
      message: "jitgate: the audit journal is full (the gateway's database has not taken its records), so the statement was not run",
    });
    // 16 KiB of ~480-byte records: the cap, not something else, refused it.
    expect(accepted.length).toBeGreaterThan(10);
    expect(accepted.length).toBeLessThan(40);
    const notReady = await readyz();
    expect(notReady.status).toBe(503);
    expect(notReady.body.checks["audit journal"]).toMatch(/^the audit journal is full \(\d+ of 16384 bytes not yet shipped to the database\): new statements are refused/);

    // The refused statement did not run.
    const landedBefore = await countLanded(target.url);
    expect(landedBefore).toBe(1 + accepted.length);

    relay.restore();
    expect(await gateway.audit!.journaled.shipped(30_000)).toBe(true);
    await eventually(async () => (await readyz()).status === 200, 30_000, "/readyz 200 once the journal is shipped");
    const metrics = await (await fetch(`http://127.0.0.1:${gateway.httpAddress.port}/metrics`)).text();
    expect(metrics).toMatch(/^jitgate_audit_journal_unshipped_bytes 0$/m);

    const other = await broker.identify({ platform: "slack", externalId: "U2", email: "other@example.com" });
    const again = new pg.Client({ connectionString: await grantLine(broker, other, lead, "cap-db", port) });
    again.on("error", () => {});
    await again.connect();
    await again.query("INSERT INTO landed VALUES (5000, 'after the restore')");
    await again.end();
    expect(await gateway.audit!.journaled.shipped(30_000)).toBe(true);

    // Every statement that ran is recorded; the refused one neither ran nor was recorded.
    const admin = new pg.Client({ connectionString: own.url });
    await admin.connect();
    const recorded = (await admin.query<{ text: string }>("SELECT text FROM session_statements WHERE text LIKE 'INSERT INTO landed%'")).rows.map((r) => /VALUES \((\d+)/.exec(r.text)![1]!);
    await admin.end();
    const ran = new pg.Client({ connectionString: target.url });
    await ran.connect();
    const landed = (await ran.query<{ n: number }>("SELECT n FROM landed ORDER BY n")).rows.map((r) => String(r.n));
    await ran.end();
    const numerically = (list: string[]) => [...list].sort((a, b) => Number(a) - Number(b));
    expect(numerically(recorded)).toEqual(landed);
    expect(landed).toEqual(["0", ...accepted.map(String), "5000"]);
  }, 120_000);

  it("refuses a statement the journal cannot write (58000), and it does not run", async () => {
    const { broker } = gateway;
    const lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com" });
    const third = await broker.identify({ platform: "slack", externalId: "U3", email: "third@example.com" });
    const client = new pg.Client({ connectionString: await grantLine(broker, third, lead, "cap-db", gateway.postgresProxy!.address.port) });
    client.on("error", () => {});
    await client.connect();
    // The journal's file is closed under the running proxy (what a lost disk looks like to it).
    await gateway.audit!.journal.close();
    await expect(client.query("INSERT INTO landed VALUES (7000, 'never')")).rejects.toMatchObject({
      code: "58000",
      message: "jitgate could not record the statement, so it was not run; the session is closed",
    });
    const check = new pg.Client({ connectionString: target.url });
    await check.connect();
    expect((await check.query("SELECT n FROM landed WHERE n = 7000")).rows).toEqual([]);
    await check.end();
  });
});

async function countLanded(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return Number((await client.query<{ count: string }>("SELECT count(*) FROM landed")).rows[0]!.count);
  } finally {
    await client.end();
  }
}

describe("a journal of another deployment", () => {
  it("is not shipped into this deployment's database: the gateway refuses to start and says why", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jitgate-journal-owner-"));
    dirs.push(dir);
    const journalDir = join(dir, "journal");
    const { FileJournal } = await import("../src/infra/journal.js");
    const foreign = FileJournal.open({ dir: journalDir, fsync: "always", intervalMs: 5, maxBytes: 1024 * 1024 });
    await foreign.append(Buffer.from(JSON.stringify({ t: "s", s: "ses_elsewhere", q: 1 })), { durable: true, capped: true });
    await foreign.close();
    writeFileSync(join(journalDir, "deployment"), "dep_of_another_database");
    const own = await createTestDatabase("journal_owner");
    cleanups.push(() => own.drop());
    const { logger } = capturedLogger("warn");
    await expect(
      startGateway({
        config: parseConfig(
          `database: ${own.url}
redis: ${REDIS_URL}
redisPrefix: ${testPrefix("journal_owner")}
audit: { journal: { dir: ${journalDir} } }
proxy:
  postgres: { listen: 127.0.0.1:0 }
`,
          "owner test",
          {},
        ),
        logger,
        httpListen: "127.0.0.1:0",
        postgresListen: "127.0.0.1:0",
      }),
    ).rejects.toThrow(/the audit journal in .* holds \d+ bytes of records of deployment dep_of_another_database, but this database is deployment \w+: start that deployment's gateway to ship them, or move the directory away/);
    // Left as it was, for its own deployment.
    expect(readdirSync(journalDir).filter((name) => name.endsWith(".journal"))).toHaveLength(1);
  });
});
