import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { connect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Person } from "../src/broker/index.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { freePort } from "./support/ports.js";

const run = promisify(execFile);
const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";

async function selfSignedCertificate(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]);
  return { cert, key };
}

// A private PostgreSQL server of this test's own, with password (md5 and SCRAM) and TLS-only users:
// the shared test server trusts everyone on the loopback, which would test nothing here.
let gatewayTls: { cert: string; key: string };
let dir: string;
let upstreamPort: number;
let test: TestGateway;
let lead: Person;
const asPostgres = (command: string, args: string[]) => run("runuser", ["-u", "postgres", "--", command, ...args], { timeout: 60_000 });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "jitgate-upstream-"));
  const data = join(dir, "data");
  writeFileSync(join(dir, "pw"), "admin-secret\n");
  await run("chown", ["-R", "postgres:postgres", dir]);
  await asPostgres(join(PG_BIN, "initdb"), ["-D", data, "-U", "postgres", "--pwfile", join(dir, "pw"), "--auth=scram-sha-256", "-E", "UTF8"]);
  const { cert, key } = await selfSignedCertificate(data, "server");
  await run("chown", ["postgres:postgres", cert, key]);
  await run("chmod", ["600", key]);
  writeFileSync(
    join(data, "pg_hba.conf"),
    [
      "local all postgres scram-sha-256",
      "host all trusted 127.0.0.1/32 trust",
      "host all md5_user 127.0.0.1/32 md5",
      "hostssl all tls_user 127.0.0.1/32 scram-sha-256",
      "hostnossl all tls_user 127.0.0.1/32 reject",
      "host all scram_user 127.0.0.1/32 scram-sha-256",
      "host all postgres 127.0.0.1/32 scram-sha-256",
      "",
    ].join("\n"),
  );
  appendFileSync(join(data, "postgresql.conf"), `ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n`);
  upstreamPort = await freePort();
  await asPostgres(join(PG_BIN, "pg_ctl"), ["-D", data, "-w", "-l", join(dir, "log"), "-o", `-p ${upstreamPort} -k ${dir} -c listen_addresses=127.0.0.1`, "start"]);
  const admin = new pg.Client({ host: "127.0.0.1", port: upstreamPort, user: "postgres", password: "admin-secret", database: "postgres" });
  await admin.connect();
  await admin.query("CREATE ROLE trusted LOGIN");
  await admin.query("SET password_encryption = 'md5'");
  await admin.query("CREATE ROLE md5_user LOGIN PASSWORD 'md5-secret'");
  await admin.query("SET password_encryption = 'scram-sha-256'");
  await admin.query("CREATE ROLE scram_user LOGIN PASSWORD 'scram-secret'");
  await admin.query("CREATE ROLE tls_user LOGIN PASSWORD 'tls-secret'");
  await admin.end();

  gatewayTls = await selfSignedCertificate(dir, "gateway");
  const upstream = (user: string, password: string, extra = "") =>
    `postgres://${user}${password ? `:${password}` : ""}@127.0.0.1:${upstreamPort}/postgres${extra}`;
  const target = (name: string, url: string) => `
  - name: ${name}
    kind: postgres
    upstream: ${url}
    approvers: [lead@example.com]`;
  test = await startTestGateway(
    "upstreamauth",
    `
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: 127.0.0.1:1, tls: { cert: ${gatewayTls.cert}, key: ${gatewayTls.key}, ca: ${gatewayTls.cert} } }
targets:${target("trust-db", upstream("trusted", ""))}${target("md5-db", upstream("md5_user", "md5-secret"))}${target(
      "scram-db",
      upstream("scram_user", "scram-secret"),
    )}${target("tls-db", upstream("tls_user", "tls-secret", "?sslmode=require"))}${target("bad-password-db", upstream("scram_user", "wrong"))}
`,
  );
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "L", email: "lead@example.com", displayName: "Lead" });
}, 120_000);

afterAll(async () => {
  await test?.close();
  if (dir) {
    await asPostgres(join(PG_BIN, "pg_ctl"), ["-D", join(dir, "data"), "-m", "immediate", "stop"]).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
});

let people = 0;
async function uriFor(target: string): Promise<string> {
  const { broker } = test.gateway;
  const person = await broker.identify({ platform: "slack", externalId: `P${++people}`, email: `p${people}@example.com` });
  const request = await broker.request(person, { target, duration: "1h", reason: "auth test" });
  const { connection } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  return connection!.line.replace("127.0.0.1:1/", `127.0.0.1:${test.gateway.postgresProxy!.address.port}/`);
}

async function psql(uri: string, sql: string) {
  try {
    return { code: 0, ...(await run("psql", [uri, "-X", "-A", "-t", "-c", sql], { timeout: 20_000 })) };
  } catch (error) {
    return error as { code: number; stdout: string; stderr: string };
  }
}

describe("upstream authentication with the target's own credentials", () => {
  it.each([
    ["trust", "trust-db", "trusted|f"],
    ["md5", "md5-db", "md5_user|f"],
    ["SCRAM-SHA-256", "scram-db", "scram_user|f"],
    ["SCRAM-SHA-256 over TLS (sslmode=require in the target URL)", "tls-db", "tls_user|t"],
  ])("%s", async (_method, target, expected) => {
    const uri = await uriFor(target);
    const result = await psql(uri, "SELECT current_user, coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)");
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe(expected);
  });

  it("a target whose own password is wrong refuses the session with the upstream's reason", async () => {
    const uri = await uriFor("bad-password-db");
    const result = await psql(uri, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('password authentication failed for user "scram_user"');
  });
});

describe("TLS towards the client", () => {
  it("answers SSLRequest with S: the line's sslmode=verify-full (the CA of tls.ca) works and the session is encrypted", async () => {
    const uri = await uriFor("trust-db");
    expect(uri).toContain(`sslmode=verify-full&sslrootcert=${gatewayTls.cert}`);
    const result = await psql(uri, "SELECT 1");
    expect(result.stdout.trim()).toBe("1");
    // The raw exchange: SSLRequest (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SSL) → 'S' → TLS.
    const port = test.gateway.postgresProxy!.address.port;
    const socket = connect(port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    const request = Buffer.alloc(8);
    request.writeInt32BE(8, 0);
    request.writeInt32BE(80877103, 4);
    socket.write(request);
    const answer = await new Promise<Buffer>((resolve) => socket.once("data", resolve));
    expect(answer.toString()).toBe("S");
    const secure = tlsConnect({ socket, rejectUnauthorized: false });
    await new Promise((resolve) => secure.once("secureConnect", resolve));
    expect(secure.getProtocol()).toMatch(/^TLSv1\.[23]$/);
    secure.destroy();
  });
});
