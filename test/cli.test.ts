import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { Broker } from "../src/broker/index.js";
import { openStorage, type Storage } from "../src/db/client.js";
import { createTestDatabase, REDIS_URL, testPrefix } from "./support/databases.js";
import { brokerConfig } from "./support/fixtures.js";

const CLI = join(import.meta.dirname, "..", "src", "cli.ts");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `jitgate` command (TypeScript through tsx) and collects what it prints. */
function jitgate(args: string[], env: NodeJS.ProcessEnv = {}, untilStdout?: RegExp, signal?: NodeJS.Signals): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let signalled = false;
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      // Once: a second signal is the operator's "stop now", which exits 1 on purpose.
      if (untilStdout && signal && !signalled && untilStdout.test(stdout)) {
        signalled = true;
        child.kill(signal);
      }
    });
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

let dir: string;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let configFile: string;
let storage: Storage;
const prefix = testPrefix("cli");

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "jitgate-cli-"));
  database = await createTestDatabase("cli");
  configFile = join(dir, "jitgate.yaml");
  writeFileSync(
    configFile,
    `database: \${DATABASE_URL}
redis: ${REDIS_URL}
redisPrefix: ${prefix}
dataDir: ${join(dir, "data")}
http: { listen: "127.0.0.1:0" }
log: { level: warn }
targets:
  - name: web-1
    kind: ssh
    upstream: ssh://deploy@127.0.0.1:22
    privateKeyFile: ./k
    hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
    approvers: [lead@example.com]
`,
  );
});

afterAll(async () => {
  await storage?.close();
  await database?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe("jitgate config check", () => {
  it("lists every mistake with its path and exits 1", async () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, `targets:\n  - name: orders-db\n    kind: postgres\n    upstream: postgres://x@h/db\n    approvers: [a@b.c]\n    maxDuration: 9x\n    aprovals: 2\nhttp: { listen: nowhere }\n`);
    const run = await jitgate(["config", "check", bad]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('targets[0].maxDuration: "9x" is not a duration like 30m, 2h, 1d');
    expect(run.stderr).toContain("targets[0].aprovals: unknown key");
    expect(run.stderr).toContain("http.listen: expected host:port");
    expect(run.stderr).toContain("3 problems");
  });

  it("says ok for a good file", async () => {
    const run = await jitgate(["config", "check", configFile], { DATABASE_URL: database.url });
    expect(run).toMatchObject({ code: 0, stdout: `${configFile}: ok (1 target)\n` });
  });
});

describe("jitgate migrate, audit verify and audit search", () => {
  it("migrates, verifies the chain, finds a tampered row, and searches", async () => {
    const env = { DATABASE_URL: database.url, JITGATE_CONFIG: configFile };
    const migrated = await jitgate(["migrate"], env);
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toContain("migrations applied");

    storage = await openStorage({ url: database.url, dataDir: dir });
    const broker = new Broker({ db: storage.db, config: brokerConfig() });
    await broker.syncTargets();
    const dev = await broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com", displayName: "Dev" });
    const lead = await broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com", displayName: "Lead" });
    const request = await broker.request(dev, { target: "web-1", duration: "1h", reason: "deploy" });
    await broker.decide(lead, { requestId: request.id, verdict: "approve" });

    const ok = await jitgate(["audit", "verify"], env);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^audit chain ok: 4 events, head [0-9a-f]{16}\n$/);

    const json = await jitgate(["audit", "search", "--user", "dev@example.com", "--json"], env);
    expect(json.code).toBe(0);
    const events = json.stdout.trim().split("\n").map((line) => JSON.parse(line) as { kind: string; actorEmail: string });
    expect(events.map((e) => e.kind)).toEqual(["request.created"]);
    const byTarget = await jitgate(["audit", "search", "--target", "web-1", "--kind", "grant.*", "--since", "1h"], env);
    expect(byTarget.stdout).toMatch(/grant\.issued\s+lead@example\.com\s+web-1 req_\w+ grt_\w+/);
    expect(byTarget.stderr).toBe("1 event\n");
    const future = await jitgate(["audit", "search", "--since", "2099-01-01"], env);
    expect(future.stderr).toBe("0 events\n");
    const badWhen = await jitgate(["audit", "search", "--since", "yesterday-ish"], env);
    expect(badWhen.code).toBe(1);
    expect(badWhen.stderr).toContain('"yesterday-ish" is neither a time like 2026-11-22T09:00Z nor a duration like 24h');

    // A superuser who disables the trigger can change a row; the chain says which.
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    await admin.query("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete");
    await admin.query(`UPDATE audit_events SET data = '{"reason":"nothing to see"}' WHERE seq = 3`);
    await admin.query("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete");
    await admin.end();
    const broken = await jitgate(["audit", "verify"], env);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toBe("audit chain broken at event 3: its content does not match its hash (altered) (2 events before it verify)\n");
  }, 120_000);
});

describe("jitgate serve", () => {
  it("starts, prints what listens where, and shuts down gracefully on SIGTERM", async () => {
    const run = await jitgate(["serve"], { DATABASE_URL: database.url, JITGATE_CONFIG: configFile }, /not configured:/, "SIGTERM");
    expect(run.stdout).toContain("jitgate is running (configuration: ");
    expect(run.stdout).toMatch(/HTTP\s+http:\/\/127\.0\.0\.1:\d+/);
    expect(run.stdout).toContain("no chat platform (slack: or teams:) is configured");
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
  });

  it("refuses to start on a broken configuration, with the problems and exit 1", async () => {
    const bad = join(dir, "broken.yaml");
    writeFileSync(bad, "defaults: { maxDuration: forever }\n");
    const run = await jitgate(["serve"], { JITGATE_CONFIG: bad });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('defaults.maxDuration: "forever" is not a duration like 30m, 2h, 1d');
  });
});
