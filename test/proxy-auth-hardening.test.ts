import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { and, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { runCommand } from "../src/bot/commands.js";
import type { Person } from "../src/broker/index.js";
import { auditEvents, sessions } from "../src/db/schema.js";
import { closeRedis, connectRedis } from "../src/infra/redis.js";
import { addressKey } from "../src/proxy/login-throttle.js";
import { createTestDatabase, REDIS_URL } from "./support/databases.js";
import { startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";
import { runProcess } from "./support/processes.js";
import { SSH_CLIENT_OPTIONS, startPrivateSshd, type PrivateSshd } from "./support/sshd.js";

/**
 * Issue 17, musts 4 and 5: the proxies give a guesser nothing (one answer and the same work for a
 * wrong user, a user without a grant, an unknown target and a wrong password; a public key is never
 * judged before its holder signs), failed logins are slowed down and audited per address, and the
 * PostgreSQL connection line verifies the gateway, which takes ID tokens only over TLS.
 */

const run = promisify(execFile);

let dir: string;
let ca: { cert: string; key: string };
let otherCa: string;
let gatewayTls: { cert: string; key: string };
let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let sshd: PrivateSshd;
let provider: TestProvider;
/** The gateway under test: TLS on the PostgreSQL proxy (a private CA), no plaintext tokens. */
let test: Awaited<ReturnType<typeof startOidcGateway>>;
/** The same targets without TLS, allowing plaintext tokens for local use. */
let local: Awaited<ReturnType<typeof startOidcGateway>>;
let redis: ReturnType<typeof connectRedis>;
let lead: Person;
let pgPort: number;
let sshPort: number;
let people = 0;

async function openssl(args: string[]): Promise<void> {
  await run("openssl", args);
}

/** A private CA and a gateway certificate for 127.0.0.1 signed by it. */
async function makeCertificates(): Promise<void> {
  ca = { cert: join(dir, "ca.crt"), key: join(dir, "ca.key") };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(["req", "-x509", ...ec, "-days", "1", "-subj", "/CN=jitgate test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", ca.key, "-out", ca.cert]);
  gatewayTls = { cert: join(dir, "gateway.crt"), key: join(dir, "gateway.key") };
  const csr = join(dir, "gateway.csr");
  await openssl(["req", ...ec, "-subj", "/CN=127.0.0.1", "-keyout", gatewayTls.key, "-out", csr]);
  const ext = join(dir, "gateway.ext");
  writeFileSync(ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
  await openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", gatewayTls.cert]);
  // Another CA, that did not sign the gateway's certificate: what an impostor's line would trust.
  otherCa = join(dir, "other-ca.crt");
  await openssl(["req", "-x509", ...ec, "-days", "1", "-subj", "/CN=someone else", "-keyout", join(dir, "other-ca.key"), "-out", otherCa]);
}

function targetsYaml(postgres: string, hostKeyFile: string): string {
  return `
proxy:
  postgres: ${postgres}
  ssh: { listen: 127.0.0.1:0, publicAddress: 127.0.0.1:1, hostKeyFile: ${hostKeyFile} }
  loginFailures: { threshold: 3, window: 15m, delay: 1s, maxDelay: 1s }
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
`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "jitgate-auth-hardening-"));
  await makeCertificates();
  upstream = await createTestDatabase("auth_hardening_upstream");
  const seed = new pg.Client({ connectionString: upstream.url });
  await seed.connect();
  await seed.query("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1), (2)");
  await seed.end();
  sshd = await startPrivateSshd("auth-hardening");
  provider = await startTestProvider([{ sub: "sub-dev", email: "dev@example.com", name: "Dev" }]);
  test = await startOidcGateway(
    "auth_hardening",
    provider.issuer,
    targetsYaml(`{ listen: 127.0.0.1:0, publicAddress: 127.0.0.1:1, tls: { cert: ${gatewayTls.cert}, key: ${gatewayTls.key}, ca: ${ca.cert} } }`, join(dir, "host_key")),
    { UPSTREAM_URL: upstream.url },
  );
  local = await startOidcGateway(
    "auth_hardening_local",
    provider.issuer,
    targetsYaml("{ listen: 127.0.0.1:0, allowPlaintextTokens: true }", join(dir, "local_host_key")),
    { UPSTREAM_URL: upstream.url },
  );
  pgPort = test.gateway.postgresProxy!.address.port;
  sshPort = test.gateway.sshProxy!.address.port;
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "ULEAD", email: "lead@example.com", displayName: "Lead" });
  redis = connectRedis(REDIS_URL);
}, 120_000);

afterAll(async () => {
  if (redis) await closeRedis(redis);
  await test?.close();
  await local?.close();
  await provider?.close();
  await upstream?.drop();
  await sshd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Failed logins from this machine are counted across tests; each test starts from none. */
async function forgetFailures(): Promise<void> {
  const keys = await redis.keys(`${test.prefix}:login-failures:*`);
  if (keys.length > 0) await redis.del(...keys);
}

async function person(): Promise<Person> {
  const n = ++people;
  return test.gateway.broker.identify({ platform: "slack", externalId: `U${n}`, email: `p${n}@example.com`, displayName: `P${n}` });
}

/** A grant for `who` on `target`, and the connection line of its DM with the real port in it. */
async function grant(who: Person, target: string): Promise<{ line: string; secret: string; login: string; grantId: string }> {
  const { broker } = test.gateway;
  const request = await broker.request(who, { target, duration: "1h", reason: "INC-17 hardening" });
  const decided = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const connection = decided.connection!;
  const port = target === "orders-db" ? pgPort : sshPort;
  return { line: connection.line.replace("127.0.0.1:1", `127.0.0.1:${port}`), secret: connection.secret, login: connection.login, grantId: decided.grant!.id };
}

async function psql(uri: string, sql = "SELECT count(*) FROM orders", env: NodeJS.ProcessEnv = {}) {
  return runProcess("psql", [uri, "-X", "-A", "-t", "-c", sql], { env: { PGCONNECT_TIMEOUT: "10", PGPASSWORD: "", ...env } });
}

/** psql with the line's TLS settings but another user, password or database. */
function lineWith(line: string, parts: { user?: string; password?: string; database?: string }): string {
  const url = new URL(line);
  if (parts.user !== undefined) url.username = encodeURIComponent(parts.user);
  if (parts.password !== undefined) url.password = parts.password;
  if (parts.database !== undefined) url.pathname = `/${parts.database}`;
  return url.toString();
}

const pgWork = () => test.gateway.postgresProxy!.server.admission.credentialWork;
const sshWork = () => test.gateway.sshProxy!.server.admission.credentialWork;

function workOf(before: { lookups: number; keyedHashes: number; derivations: number }, after: typeof before) {
  return { lookups: after.lookups - before.lookups, keyedHashes: after.keyedHashes - before.keyedHashes, derivations: after.derivations - before.derivations };
}

/**
 * The SCRAM server-first-message the gateway sends a login (RFC 5802 §7): its salt and iteration
 * count, read on a raw socket as any client could, without knowing a password.
 */
async function scramChallenge(user: string, database: string): Promise<{ salt: string; iterations: string }> {
  const socket = connect(pgPort, "127.0.0.1");
  await new Promise((resolve) => socket.once("connect", resolve));
  const params = Buffer.from(`user\0${user}\0database\0${database}\0\0`);
  const startup = Buffer.alloc(8 + params.length);
  startup.writeInt32BE(startup.length, 0);
  startup.writeInt32BE(196608, 4);
  params.copy(startup, 8);
  let received = Buffer.alloc(0);
  const frames: Buffer[] = [];
  const waiters: (() => void)[] = [];
  socket.on("data", (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    while (received.length >= 5 && received.length >= 1 + received.readInt32BE(1)) {
      const length = 1 + received.readInt32BE(1);
      frames.push(received.subarray(0, length));
      received = received.subarray(length);
    }
    waiters.splice(0).forEach((w) => w());
  });
  const next = async (): Promise<Buffer> => {
    while (frames.length === 0) await new Promise<void>((resolve) => waiters.push(resolve));
    return frames.shift()!;
  };
  try {
    socket.write(startup);
    const sasl = await next();
    expect(String.fromCharCode(sasl[0]!)).toBe("R");
    expect(sasl.readInt32BE(5)).toBe(10); // AuthenticationSASL
    const clientFirst = Buffer.from(`n,,n=*,r=${randomBytes(18).toString("base64")}`);
    const mechanism = Buffer.from("SCRAM-SHA-256\0");
    const body = Buffer.concat([mechanism, Buffer.alloc(4), clientFirst]);
    body.writeInt32BE(clientFirst.length, mechanism.length);
    const message = Buffer.alloc(5 + body.length);
    message.write("p", 0);
    message.writeInt32BE(4 + body.length, 1);
    body.copy(message, 5);
    socket.write(message);
    const cont = await next();
    expect(cont.readInt32BE(5)).toBe(11); // AuthenticationSASLContinue
    const serverFirst = cont.subarray(9).toString("utf8");
    const attributes = new Map(serverFirst.split(",").map((part) => [part[0]!, part.slice(2)]));
    return { salt: attributes.get("s")!, iterations: attributes.get("i")! };
  } finally {
    socket.destroy();
  }
}

/** The type of the gateway's first message after a plaintext startup packet, and its SQLSTATE if an error. */
async function firstAnswerTo(user: string, database: string): Promise<{ type: string; code?: string }> {
  const socket = connect(pgPort, "127.0.0.1");
  await new Promise((resolve) => socket.once("connect", resolve));
  try {
    const params = Buffer.from(`user\0${user}\0database\0${database}\0\0`);
    const startup = Buffer.alloc(8 + params.length);
    startup.writeInt32BE(startup.length, 0);
    startup.writeInt32BE(196608, 4);
    params.copy(startup, 8);
    socket.write(startup);
    let received = Buffer.alloc(0);
    while (received.length < 5 || received.length < 1 + received.readInt32BE(1)) {
      const chunk = await new Promise<Buffer>((resolve) => socket.once("data", resolve));
      received = Buffer.concat([received, chunk]);
    }
    const type = String.fromCharCode(received[0]!);
    if (type !== "E") return { type };
    const fields = received.subarray(5, 1 + received.readInt32BE(1)).toString("utf8").split("\0");
    return { type, code: fields.find((f) => f.startsWith("C"))?.slice(1) };
  } finally {
    socket.destroy();
  }
}

describe("no help to someone guessing: PostgreSQL", () => {
  beforeEach(forgetFailures);

  it("a wrong user, a user without a grant, an unknown target and a wrong password get the same bytes after the same work", async () => {
    const holder = await person();
    const withoutGrant = await person();
    const { line, login } = await grant(holder, "orders-db");
    // The legitimate line works (over TLS, verify-full).
    const ok = await psql(line);
    expect(ok.stderr).toBe("");
    expect(ok.stdout.trim()).toBe("2");

    const attempts = {
      "wrong user": lineWith(line, { user: "nobody@example.com" }),
      "user without a grant": lineWith(line, { user: withoutGrant.email! }),
      "unknown target": lineWith(line, { database: "payroll-db" }),
      "wrong password": lineWith(line, { password: randomBytes(24).toString("base64url") }),
    };
    const answers: Record<string, string> = {};
    const errors: Record<string, unknown> = {};
    for (const [what, uri] of Object.entries(attempts)) {
      await forgetFailures();
      const user = decodeURIComponent(new URL(uri).username);
      const before = pgWork();
      const result = await psql(uri);
      // Each refusal did one keyed hash and one credential query, and derived no key.
      expect(workOf(before, pgWork()), what).toEqual({ lookups: 1, keyedHashes: 1, derivations: 0 });
      expect(result.code, what).not.toBe(0);
      expect(result.stdout, what).toBe("");
      answers[what] = result.stderr.replaceAll(user, "<user>");
      // The fields node-postgres sees: severity, SQLSTATE, message, hint, detail.
      // node-postgres reads sslmode=verify-full and sslrootcert from the line as libpq does.
      const client = new pg.Client({ connectionString: uri });
      await forgetFailures();
      const error = (await client.connect().then(
        () => undefined,
        (e: unknown) => e,
      )) as pg.DatabaseError;
      errors[what] = { severity: error.severity, code: error.code, message: error.message.replaceAll(user, "<user>"), hint: error.hint, detail: error.detail };
    }
    expect(answers["wrong user"]).toBe('psql: error: connection to server at "127.0.0.1", port ' + pgPort + ' failed: FATAL:  password authentication failed for user "<user>"\n');
    for (const what of Object.keys(attempts)) {
      expect(answers[what], what).toBe(answers["wrong user"]);
      expect(errors[what], what).toEqual({ severity: "FATAL", code: "28P01", message: 'password authentication failed for user "<user>"', hint: undefined, detail: undefined });
    }
    // The successful login cost the same: one keyed hash, one query.
    const before = pgWork();
    expect((await psql(line)).stdout.trim()).toBe("2");
    expect(workOf(before, pgWork())).toEqual({ lookups: 1, keyedHashes: 1, derivations: 0 });
    expect(login).toBe(holder.email);
  }, 120_000);

  it("the SCRAM challenge of a login is the same before it holds a grant, while it does, and for a login nobody has", async () => {
    const dev = await person();
    const before = await scramChallenge(dev.email!, "orders-db");
    expect(await scramChallenge(dev.email!, "orders-db")).toEqual(before);
    expect(before.iterations).toBe("4096");
    await grant(dev, "orders-db");
    // With a live grant the exchange offers the very same salt: nothing to compare against.
    expect(await scramChallenge(dev.email!, "orders-db")).toEqual(before);
    const nobody = await scramChallenge("nobody-at-all@example.com", "orders-db");
    expect(nobody.iterations).toBe("4096");
    expect(Buffer.from(nobody.salt, "base64")).toHaveLength(16);
    expect(await scramChallenge("nobody-at-all@example.com", "orders-db")).toEqual(nobody);
  });
});

/** `ssh` with a password through sshpass, as a person (or a guesser) would type it. */
function sshWithPassword(password: string, target: string) {
  return runProcess(
    "sshpass",
    ["-e", "ssh", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-p", String(sshPort), `${target}@127.0.0.1`, "echo", "in"],
    { env: { SSHPASS: password } },
  );
}

/** `ssh` offering one key only, in batch mode (no password prompt). */
function sshWithKey(keyFile: string, target: string, extra: string[] = []) {
  return runProcess("ssh", [
    ...SSH_CLIENT_OPTIONS,
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "PreferredAuthentications=publickey",
    "-i", keyFile,
    ...extra,
    "-p", String(sshPort),
    `${target}@127.0.0.1`,
    "echo", "in",
  ]);
}

async function newKey(name: string): Promise<string> {
  const file = join(dir, name);
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file]);
  return file;
}

describe("no help to someone guessing: SSH", () => {
  beforeEach(forgetFailures);

  it("an unknown target, a wrong password, another target's credential and a revoked one get the same bytes after the same work", async () => {
    const holder = await person();
    const { secret } = await grant(holder, "web-1");
    const legit = await sshWithPassword(secret, "web-1");
    expect(legit.stdout).toBe("in\n");

    const other = await person();
    const pgGrant = await grant(other, "orders-db");
    const revokedOwner = await person();
    const revoked = await grant(revokedOwner, "web-1");
    await test.gateway.broker.revoke(lead, { grantId: revoked.grantId, reason: "done" });

    const attempts: Record<string, [password: string, target: string]> = {
      "unknown target (the SSH user)": [secret, "payroll-1"],
      "wrong password": [randomBytes(24).toString("base64url"), "web-1"],
      "the credential of a grant on another target": [pgGrant.secret, "web-1"],
      "the credential of a revoked grant": [revoked.secret, "web-1"],
    };
    const answers: Record<string, string> = {};
    for (const [what, [password, target]] of Object.entries(attempts)) {
      await forgetFailures();
      const before = sshWork();
      const result = await sshWithPassword(password, target);
      expect(workOf(before, sshWork()), what).toEqual({ lookups: 1, keyedHashes: 1, derivations: 0 });
      expect(result.code, what).not.toBe(0);
      expect(result.stdout, what).toBe("");
      answers[what] = result.stderr.replaceAll(target, "<target>");
    }
    const first = Object.values(answers)[0]!;
    expect(first).toContain("jitgate: that is not the credential of a live access grant on <target> (wrong, expired or revoked); request access with: /access request <target> <duration> <reason>");
    for (const [what, answer] of Object.entries(answers)) expect(answer, what).toBe(first);
    expect(await test.gateway.broker.db.select().from(sessions).where(eq(sessions.personId, other.id))).toEqual([]);
  }, 120_000);

  it("answers a public-key query with 'it may do' for every key (RFC 4252 §7): only the private key's holder learns more", async () => {
    const dev = await person();
    const registered = await newKey("registered");
    const context = { broker: test.gateway.broker, person: dev, command: "/access", origin: "slack" as const };
    expect((await runCommand(context, `key add ${readFileSync(`${registered}.pub`, "utf8")}`)).view.text).toContain("registered");
    const unknown = await newKey("unknown");
    // Public keys only: what a guesser holds (the key from a GitHub profile, say). ssh offers the
    // .pub, and would sign only if the server accepted it.
    const publicOnly = (file: string, name: string) => {
      const copy = join(dir, `${name}-public-only`);
      copyFileSync(`${file}.pub`, `${copy}.pub`);
      // Given the .pub itself, OpenSSH offers it and finds no private key to sign with.
      return `${copy}.pub`;
    };
    const probes = {
      "a registered key (its owner has no grant)": publicOnly(registered, "registered"),
      "an unknown key": publicOnly(unknown, "unknown"),
    };
    const answers: Record<string, string> = {};
    for (const [what, file] of Object.entries(probes)) {
      const before = sshWork();
      const result = await sshWithKey(file, "web-1", ["-v"]);
      expect(result.code, what).not.toBe(0);
      // PK_OK for both: the server said "this key may do", then the client had no private key to sign with.
      expect(result.stderr, what).toMatch(/Server accepts key: .*-public-only/);
      // A query costs no lookup: nothing about the key was looked at.
      expect(workOf(before, sshWork()), what).toEqual({ lookups: 0, keyedHashes: 0, derivations: 0 });
      answers[what] = result.stderr
        .split("\n")
        .filter((l) => /Server accepts key|Authentications that can continue|Permission denied|jitgate:/.test(l))
        .map((l) => l.replace(/\S*-public-only\S*/g, "<key>").replace(/SHA256:\S+/g, "<fingerprint>"))
        .join("\n");
    }
    expect(answers["an unknown key"]).toBe(answers["a registered key (its owner has no grant)"]);

    // Signed with an unknown key, on a known or an unknown target: refused alike, after one lookup.
    const signed: Record<string, string> = {};
    for (const target of ["web-1", "payroll-1"]) {
      const before = sshWork();
      const result = await sshWithKey(unknown, target);
      expect(result.code).not.toBe(0);
      expect(workOf(before, sshWork())).toEqual({ lookups: 1, keyedHashes: 0, derivations: 0 });
      signed[target] = result.stderr.replaceAll(target, "<target>");
    }
    expect(signed["payroll-1"]).toBe(signed["web-1"]);
    expect(signed["web-1"]).toContain("jitgate: that is not the credential of a live access grant on <target>");

    // The holder of the registered key, having signed, is told what is missing; with a grant they get in.
    const refused = await sshWithKey(registered, "web-1");
    expect(refused.stderr).toContain(`no live access grant for ${dev.email} on web-1`);
    await grant(dev, "web-1");
    expect((await sshWithKey(registered, "web-1")).stdout).toBe("in\n");
  }, 120_000);
});

describe("repeated failures from one address", () => {
  beforeEach(forgetFailures);

  it("are counted across both proxies in Redis, slow the next try down, and are audited once per burst, not per guess", async () => {
    const dev = await person();
    const { line } = await grant(dev, "orders-db");
    const throttles = [test.gateway.postgresProxy!.server.admission.throttle, test.gateway.sshProxy!.server.admission.throttle];
    const delayedBefore = throttles.map((t) => t.stats.delayed);
    const auditRows = () =>
      test.gateway.broker.db.select().from(auditEvents).where(and(eq(auditEvents.kind, "proxy.login_failures")));
    const rowsBefore = (await auditRows()).length;
    const wrong = lineWith(line, { password: "guess" });

    // Three failures (the threshold), two by psql and one by ssh: none of them waited.
    expect((await psql(wrong)).code).not.toBe(0);
    expect((await psql(wrong)).code).not.toBe(0);
    expect((await sshWithPassword("guess", "web-1")).code).not.toBe(0);
    expect(throttles.map((t) => t.stats.delayed)).toEqual(delayedBefore);
    const key = `${test.prefix}:login-failures:${addressKey("127.0.0.1")}`;
    expect(await redis.get(key)).toBe("3");
    expect(await redis.pttl(key)).toBeGreaterThan(0);
    // The burst reached the threshold: one audit row, saying from where and how many.
    const [burst] = (await auditRows()).slice(rowsBefore);
    expect(burst).toMatchObject({ kind: "proxy.login_failures", target: "web-1" });
    expect(burst!.data).toMatchObject({ address: "127.0.0.1", protocol: "ssh", failures: 3, windowSeconds: 900, nextDelayMs: 1000 });
    expect(JSON.stringify(burst!.data)).not.toContain("guess");

    // The next try, even the right password, waits first (the gateway delays it; the test only
    // reads the throttle's state). The legitimate line still gets in.
    const ok = await psql(line);
    expect(ok.stdout.trim()).toBe("2");
    expect(throttles[0]!.stats.delayed).toBe(delayedBefore[0]! + 1);
    expect(throttles[0]!.stats.lastDelayMs).toBe(1000);
    // And over SSH, from the same address: the count is shared.
    expect((await sshWithPassword("guess", "web-1")).code).not.toBe(0);
    expect(throttles[1]!.stats.delayed).toBe(delayedBefore[1]! + 1);

    // Three more guesses: six failures, one more audit row (at the doubling), not one per guess.
    expect((await psql(wrong)).code).not.toBe(0);
    expect((await psql(wrong)).code).not.toBe(0);
    expect(await redis.get(key)).toBe("6");
    const rows = (await auditRows()).slice(rowsBefore);
    expect(rows.map((r) => (r.data as { failures: number }).failures)).toEqual([3, 6]);
  }, 120_000);

  it("counts an IPv6 client by its /64", () => {
    expect(addressKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:db8:1:2:ffff:ffff:ffff:ffff")).toBe("2001:db8:1:2::/64");
    expect(addressKey("::ffff:10.1.2.3")).toBe("10.1.2.3");
    expect(addressKey("::1")).toBe("0:0:0:0::/64");
  });
});

describe("connection lines that verify the gateway", () => {
  it("the DM's line says sslmode=verify-full with the private CA, works with psql, and fails against another CA", async () => {
    const dev = await person();
    const { line } = await grant(dev, "orders-db");
    expect(line).toMatch(new RegExp(`^postgres://p\\d+%40example\\.com:[\\w-]{32}@127\\.0\\.0\\.1:${pgPort}/orders-db\\?sslmode=verify-full&sslrootcert=${ca.cert}$`));
    const ok = await psql(line, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    expect(ok.stderr).toBe("");
    // The ssl column is the upstream's; the gateway's side is TLS by the line's sslmode.
    expect(ok.code).toBe(0);
    // A gateway whose certificate another CA vouches for (an impostor, to this line) is refused by
    // psql before any credential is sent.
    const impostor = await psql(line.replace(ca.cert, otherCa));
    expect(impostor.code).not.toBe(0);
    expect(impostor.stderr).toMatch(/certificate verify failed/);
 
    // `jitgate connect` builds its line from what the gateway publishes: TLS and the CA's path.
    const published = (await (await fetch(`${test.origin}/oidc/config`)).json()) as { proxies: { postgres?: { tls: boolean; ca?: string } } };
    expect(published.proxies.postgres).toMatchObject({ tls: true, ca: ca.cert });
  });

  it("an ID token is refused over plaintext (loopback included), accepted over TLS, and over plaintext only where allowPlaintextTokens is set", async () => {
    const dev = await test.gateway.broker.identify({ platform: "slack", externalId: "UDEV", email: "dev@example.com", displayName: "Dev" });
    await grant(dev, "orders-db");
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, name: "Dev" });
    const plain = await psql(`host=127.0.0.1 port=${pgPort} user=oidc dbname=orders-db sslmode=disable`, "SELECT count(*) FROM orders", { PGPASSWORD: token });
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toContain("FATAL:  an ID token is only accepted over TLS: connect with sslmode=verify-full");
    // On the wire: the refusal is the gateway's first answer to the startup packet, so the client
    // is never asked for the token (no AuthenticationCleartextPassword) and never sends it.
    expect(await firstAnswerTo("oidc", "orders-db")).toMatchObject({ type: "E", code: "28000" });
    expect(await test.gateway.broker.db.select().from(sessions).where(eq(sessions.personId, dev.id))).toEqual([]);

    const secure = await psql(`host=127.0.0.1 port=${pgPort} user=oidc dbname=orders-db sslmode=verify-full sslrootcert=${ca.cert}`, "SELECT count(*) FROM orders", {
      PGPASSWORD: token,
    });
    expect(secure.stderr).toBe("");
    expect(secure.stdout.trim()).toBe("2");

    const localDev = await local.gateway.broker.identify({ platform: "slack", externalId: "UDEV", email: "dev@example.com", displayName: "Dev" });
    const localLead = await local.gateway.broker.identify({ platform: "slack", externalId: "ULEAD", email: "lead@example.com", displayName: "Lead" });
    const request = await local.gateway.broker.request(localDev, { target: "orders-db", duration: "1h", reason: "INC-17 local" });
    await local.gateway.broker.decide(localLead, { requestId: request.id, verdict: "approve" });
    const localPort = local.gateway.postgresProxy!.address.port;
    const allowed = await psql(`host=127.0.0.1 port=${localPort} user=oidc dbname=orders-db sslmode=disable`, "SELECT count(*) FROM orders", { PGPASSWORD: token });
    expect(allowed.stderr).toBe("");
    expect(allowed.stdout.trim()).toBe("2");
  }, 60_000);
});
