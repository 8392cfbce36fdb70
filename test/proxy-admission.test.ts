import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { and, eq, inArray } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock, SshKeys, StatementLog, type Person, type SessionSnapshot, type SessionSummary } from "../src/broker/index.js";
import { auditEvents } from "../src/db/schema.js";
import { closeRedis, connectRedis } from "../src/infra/redis.js";
import { PgProxyServer } from "../src/proxy/postgres/server.js";
import { SshProxyServer } from "../src/proxy/ssh/server.js";
import { createTestDatabase, REDIS_URL } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { nextEvent } from "./support/jobs.js";
import { SSH_CLIENT_OPTIONS, startPrivateSshd, type PrivateSshd } from "./support/sshd.js";

// The whole gateway runs on a clock the test moves: the proxies' grant timers fire when it passes
// `expiresAt`, while the BullMQ expiry jobs stay an hour of real time away.
const clock = new ManualClock();
let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let sshd: PrivateSshd;
let test: TestGateway;
let dir: string;
let lead: Person;
let redis: Redis;
/** Proxies of their own next to the gateway's, with admission's test hook between open and bind. */
let hooked: { pg: PgProxyServer; pgPort: number; ssh: SshProxyServer; sshPort: number };
let betweenOpenAndBind: ((session: SessionSnapshot) => Promise<void>) | undefined;

let people = 0;
async function person(): Promise<Person> {
  people += 1;
  return test.gateway.broker.identify({ platform: "slack", externalId: `U${people}`, email: `dev${people}@example.com`, displayName: `Dev ${people}` });
}

async function grant(who: Person, target: "orders-db" | "web-1") {
  const { broker } = test.gateway;
  const request = await broker.request(who, { target, duration: "1h", reason: "INC-1 admission" });
  const result = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  return { grant: result.grant!, line: result.connection!.line };
}

const pgUri = (line: string, port: number) => line.replace("db-gw.example.com:15432", `127.0.0.1:${port}`);
const sshSecret = (line: string) => /\(password: ([^)]+)\)/.exec(line)![1]!;

const closedEvent = (grantId: string) =>
  nextEvent<{ session: SessionSnapshot; summary: SessionSummary }>(
    (l) => test.gateway.cluster.events.on("session.closed", l),
    (p) => p.session.grantId === grantId,
    20_000,
  );

/** `ssh` through a proxy with the grant's credential; `output` resolves once stdout matches. */
function ssh(secret: string, port: number, command: string) {
  const child = spawn(
    "sshpass",
    ["-e", "ssh", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-p", String(port), "web-1@127.0.0.1", command],
    { env: { ...process.env, SSHPASS: secret }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  const watchers = new Set<() => void>();
  child.stdout.on("data", (chunk) => {
    stdout += chunk;
    for (const watch of watchers) watch();
  });
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    }),
  );
  const output = (pattern: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const watch = () => {
        if (!pattern.test(stdout)) return;
        watchers.delete(watch);
        resolve();
      };
      watchers.add(watch);
      void exited.then(() => reject(new Error(`ssh exited before ${pattern}: ${JSON.stringify({ stdout, stderr })}`)));
      watch();
    });
  return { exited, output };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "jitgate-admission-"));
  chmodSync(dir, 0o755);
  upstream = await createTestDatabase("admission_upstream");
  sshd = await startPrivateSshd("admission");
  test = await startTestGateway(
    "admission",
    `
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
  ssh: { listen: 127.0.0.1:0, publicAddress: ssh-gw.example.com:2222, hostKeyFile: ${join(dir, "ssh_host_ed25519_key")} }
targets:
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
  - name: web-1
    kind: ssh
    upstream: ssh://${sshd.user}@127.0.0.1:${sshd.port}
    privateKeyFile: ${sshd.gatewayKeyFile}
    hostKey: "${sshd.hostKey}"
    approvers: [lead@example.com]
`,
    { UPSTREAM_URL: upstream.url },
    { clock },
  );
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "ULEAD", email: "lead@example.com", displayName: "Lead" });

  const { gateway } = test;
  redis = connectRedis(REDIS_URL);
  if (redis.status !== "ready") await once(redis, "ready");
  const common = {
    broker: gateway.broker,
    sessions: gateway.sessions,
    events: gateway.cluster.events,
    redis,
    redisPrefix: test.prefix,
    loginFailures: gateway.config.proxy.loginFailures,
    targets: gateway.config.targets,
    onOpened: (session: SessionSnapshot) => betweenOpenAndBind?.(session) ?? Promise.resolve(),
  };
  const pgServer = new PgProxyServer({
    ...common,
    statements: new StatementLog(gateway.broker.db),
    config: gateway.config.proxy.postgres!,
  });
  const sshServer = new SshProxyServer({ ...common, keys: new SshKeys(gateway.broker), config: gateway.config.proxy.ssh! });
  hooked = {
    pg: pgServer,
    pgPort: (await pgServer.listen("127.0.0.1:0")).port,
    ssh: sshServer,
    sshPort: (await sshServer.listen("127.0.0.1:0")).port,
  };
}, 60_000);

afterAll(async () => {
  await hooked?.pg.close(0);
  await hooked?.ssh.close(0);
  if (redis) await closeRedis(redis);
  await test?.close();
  await upstream?.drop();
  await sshd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * Revokes the grant inside admission's window between the session record and its binding, and
 * waits until the revocation has reached this replica: its event finds no session to end, so only
 * admission's re-check after the bind can stop the session.
 */
function revokeBetweenOpenAndBind(grantId: string): void {
  betweenOpenAndBind = async (session) => {
    if (session.grantId !== grantId) return;
    betweenOpenAndBind = undefined;
    const delivered = nextEvent<{ grant: { id: string } }>((l) => test.gateway.cluster.events.on("grant.revoked", l), (p) => p.grant.id === grantId);
    await test.gateway.broker.revoke(lead, { grantId, reason: "revoked while the session opened" });
    await delivered;
  };
}

describe("a revoke between opening the session and binding it", () => {
  it("ends the PostgreSQL session: the client gets 57P01 and the record closes as revoked", async () => {
    const { grant: g, line } = await grant(await person(), "orders-db");
    revokeBetweenOpenAndBind(g.id);
    const closed = closedEvent(g.id);
    const client = new pg.Client({ connectionString: pgUri(line, hooked.pgPort) });
    client.on("error", () => {});
    await expect(client.connect()).rejects.toMatchObject({ code: "57P01", message: "access grant revoked" });
    expect((await closed).payload.summary).toMatchObject({ endReason: "revoked" });
    expect(hooked.pg.connections).toBe(0);
  });

  it("ends the SSH session: the login is refused with the reason and the record closes as revoked", async () => {
    const { grant: g, line } = await grant(await person(), "web-1");
    revokeBetweenOpenAndBind(g.id);
    const closed = closedEvent(g.id);
    const result = await ssh(sshSecret(line), hooked.sshPort, "echo ran").exited;
    // sshpass exits 5 when the server refuses the password it typed.
    expect(result.code).toBe(5);
    expect(result.stderr).toContain("jitgate: access grant revoked");
    expect(result.stdout).not.toContain("ran");
    expect((await closed).payload.summary).toMatchObject({ endReason: "revoked" });
    expect(hooked.ssh.sessions).toBe(0);
  });
});

describe("the grant timer on the injected clock", () => {
  it("ends a live session of each protocol when the clock passes expiresAt, and an extension moves it", async () => {
    const { gateway } = test;
    const pgGrant = await grant(await person(), "orders-db");
    const sshGrant = await grant(await person(), "web-1");

    const client = new pg.Client({ connectionString: pgUri(pgGrant.line, gateway.postgresProxy!.address.port) });
    const pgEnded = new Promise<{ code?: string; message: string }>((resolve) => client.on("error", (error) => resolve(error as never)));
    await client.connect();
    expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    const shell = ssh(sshSecret(sshGrant.line), gateway.sshProxy!.address.port, "echo started; sleep 60");
    await shell.output(/started/);

    // An approver's extension reaches the PostgreSQL session's timer over the cluster bus.
    const extended = nextEvent<{ grant: { id: string } }>((l) => gateway.cluster.events.on("grant.extended", l), (p) => p.grant.id === pgGrant.grant.id);
    await gateway.broker.extend(lead, { grantId: pgGrant.grant.id, duration: "1h" });
    await extended;

    const pgClosed = closedEvent(pgGrant.grant.id);
    const sshClosed = closedEvent(sshGrant.grant.id);
    const expiredEvent = (grantId: string) =>
      nextEvent<{ grant: { id: string } }>((l) => gateway.cluster.events.on("grant.expired", l), (p) => p.grant.id === grantId);
    const pgExpired = expiredEvent(pgGrant.grant.id);
    const sshExpired = expiredEvent(sshGrant.grant.id);
    clock.set(sshGrant.grant.expiresAt.getTime() + 1_000);
    const result = await shell.exited;
    expect(result.stderr).toContain("[jitgate] access grant expired");
    expect((await sshClosed).payload.summary).toMatchObject({ endReason: "expired" });
    // The extended grant's session lives on past the first hour.
    expect((await client.query("SELECT 2 AS two")).rows).toEqual([{ two: 2 }]);

    clock.set(pgGrant.grant.expiresAt.getTime() + 3_600_000 + 1_000);
    expect(await pgEnded).toMatchObject({ code: "57P01", message: "access grant expired" });
    expect((await pgClosed).payload.summary).toMatchObject({ endReason: "expired" });
    // The proxies' own timers did it, and the session's end expired the overdue grant (issue 20):
    // the expiry jobs, delayed in real time, have not run.
    await Promise.all([pgExpired, sshExpired]);
    const found = await gateway.storage.db
      .select({ data: auditEvents.data })
      .from(auditEvents)
      .where(and(inArray(auditEvents.grantId, [pgGrant.grant.id, sshGrant.grant.id]), eq(auditEvents.kind, "grant.expired")));
    expect(found.map((e) => (e.data as { foundBy?: string }).foundBy)).toEqual(["session-end", "session-end"]);
    expect(gateway.postgresProxy!.server.connections).toBe(0);
    expect(gateway.sshProxy!.server.sessions).toBe(0);
  }, 60_000);
});
