import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { and, eq } from "drizzle-orm";
import pg from "pg";
import ssh2 from "ssh2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Person } from "../src/broker/index.js";
import { runCommand } from "../src/bot/commands.js";
import { viewToPlainText } from "../src/bot/view-model.js";
import { sessions } from "../src/db/schema.js";
import { createTestDatabase } from "./support/databases.js";
import { startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";
import { SSH_CLIENT_OPTIONS } from "./support/sshd.js";

const run = promisify(execFile);

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let provider: TestProvider;
let foreign: TestProvider;
let test: Awaited<ReturnType<typeof startOidcGateway>>;
let dev: Person, lead: Person;
let port: number;
let sshUpstream: ssh2.Server;
let dir: string;

const accounts = [
  { sub: "sub-dev", email: "dev@example.com", name: "Dev Eloper" },
  { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
  { sub: "sub-other", email: "other@example.com", name: "Other" },
];

/** psql as a person would run it: user oidc, the ID token in PGPASSWORD, never in the URI. */
async function psqlWithToken(token: string, sql: string, database = "orders-db") {
  try {
    const { stdout, stderr } = await run(
      "psql",
      [`host=127.0.0.1 port=${port} user=oidc dbname=${database} sslmode=disable`, "-X", "-A", "-t", "-c", sql],
      { env: { ...process.env, PGPASSWORD: token, PGCONNECT_TIMEOUT: "5" }, timeout: 30_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function grant(who: Person, target = "orders-db") {
  const { broker } = test.gateway;
  const request = await broker.request(who, { target, duration: "1h", reason: "INC-7 look at orders" });
  return (await broker.decide(lead, { requestId: request.id, verdict: "approve" })).grant!;
}

beforeAll(async () => {
  upstream = await createTestDatabase("oidc_proxy_upstream");
  const seed = new pg.Client({ connectionString: upstream.url });
  await seed.connect();
  await seed.query(`CREATE TABLE orders (id int PRIMARY KEY, email text); INSERT INTO orders VALUES (1, 'ann@example.com'), (2, 'bob@example.com');`);
  await seed.end();
  dir = mkdtempSync(join(tmpdir(), "jitgate-oidc-proxy-"));
  // The SSH target: a small ssh2 server that runs `echo …` (no sshd needed for what is tested here: the login).
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "target_host_key")]);
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "gateway_key")]);
  const targetHostKey = readFileSync(join(dir, "target_host_key.pub"), "utf8").trim().split(" ").slice(0, 2).join(" ");
  sshUpstream = new ssh2.Server({ hostKeys: [readFileSync(join(dir, "target_host_key"))] }, (client) => {
    client.on("error", () => {});
    client.on("authentication", (ctx) => (ctx.method === "publickey" ? ctx.accept() : ctx.reject(["publickey"])));
    client.on("session", (accept) => {
      const session = accept();
      session.on("exec", (acceptExec, _reject, info) => {
        const stream = acceptExec();
        stream.write(`${info.command.replace(/^echo /, "")}\n`);
        stream.exit(0);
        stream.end();
      });
    });
  });
  await new Promise<void>((resolve) => sshUpstream.listen(0, "127.0.0.1", resolve));
  const upstreamPort = (sshUpstream.address() as AddressInfo).port;
  provider = await startTestProvider([...accounts, { sub: "sub-unverified", email: "unverified@example.com", emailVerified: false, name: "Unverified" }]);
  foreign = await startTestProvider(accounts);
  test = await startOidcGateway(
    "oidc_proxy",
    provider.issuer,
    `
proxy:
  postgres: { listen: 127.0.0.1:0 }
  ssh: { listen: 127.0.0.1:0, hostKeyFile: ${join(dir, "ssh_host_ed25519_key")} }
targets:
  - name: web-1
    kind: ssh
    upstream: ssh://deploy@127.0.0.1:${upstreamPort}
    privateKeyFile: ${join(dir, "gateway_key")}
    hostKey: "${targetHostKey}"
    approvers: [lead@example.com]
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    mask: [{ column: email }]
`,
    { UPSTREAM_URL: upstream.url },
    // On every address, so a client can also come from a non-loopback one (the TLS rule).
    { postgresListen: "0.0.0.0:0" },
  );
  port = test.gateway.postgresProxy!.address.port;
  dev = await test.gateway.broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
}, 60_000);

afterAll(async () => {
  await test?.close();
  await provider?.close();
  await foreign?.close();
  await upstream?.drop();
  await new Promise<void>((resolve) => (sshUpstream ? sshUpstream.close(() => resolve()) : resolve()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** OpenSSH as \`jitgate connect web-1 --exec\` runs it: the token from an SSH_ASKPASS helper. */
async function sshWithToken(token: string, command: string) {
  const askpass = join(dir, "askpass");
  writeFileSync(askpass, '#!/bin/sh\nprintf \'%s\\n\' "$JITGATE_ASKPASS_TOKEN"\n', { mode: 0o700 });
  const sshPort = test.gateway.sshProxy!.address.port;
  try {
    const { stdout, stderr } = await run(
      "ssh",
      [...SSH_CLIENT_OPTIONS, "-p", String(sshPort), "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1", "web-1@127.0.0.1", command],
      { env: { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", JITGATE_ASKPASS_TOKEN: token, DISPLAY: "" }, timeout: 30_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("PostgreSQL proxy with an ID token", () => {
  it("admits psql as user oidc with a fresh ID token of a person holding a live grant, masked and recorded as usual", async () => {
    const issued = await grant(dev);
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, name: "Dev Eloper" });
    const result = await psqlWithToken(token, "SELECT id, email FROM orders ORDER BY id");
    expect(result.stderr).toBe("");
    expect(result.stdout.trim().split("\n")).toEqual(["1|***", "2|***"]);
    const recorded = await test.gateway.broker.db.select().from(sessions).where(and(eq(sessions.grantId, issued.id), eq(sessions.personId, dev.id)));
    expect(recorded).toHaveLength(1);
    expect(recorded[0]!.protocol).toBe("postgres");
  });

  it("links the OIDC subject to the Slack person with the same verified email; whoami shows both", async () => {
    const identities = await test.gateway.broker.identitiesOf(dev);
    expect(identities.map((i) => `${i.platform}:${i.externalId}`)).toEqual(["oidc:sub-dev", "slack:U0DEV"]);
    const { view } = await runCommand({ broker: test.gateway.broker, person: dev, command: "/access", origin: "slack" }, "whoami");
    const text = viewToPlainText(view);
    expect(text).toContain("You are Dev <dev@example.com>");
    expect(text).toContain("Slack: U0DEV");
    expect(text).toContain("OIDC: sub-dev (dev@example.com)");
  });

  it("refuses a token for another audience", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, aud: "another-app" });
    const result = await psqlWithToken(token, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("the ID token is not for this gateway (audience must be jitgate)");
  });

  it("refuses a token from another issuer, and one claiming our issuer but signed by another provider", async () => {
    const other = await foreign.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true });
    const result = await psqlWithToken(other, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`the ID token was not issued by ${provider.issuer}`);
    const forged = await foreign.sign({ iss: provider.issuer, sub: "sub-dev", email: "dev@example.com", email_verified: true });
    const second = await psqlWithToken(forged, "SELECT 1");
    expect(second.code).not.toBe(0);
    expect(second.stderr).toContain("the ID token's signature does not verify with the provider's keys");
  });

  it("refuses an expired token", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true }, { issuedAgoSeconds: 3600, expiresInSeconds: 600 });
    const result = await psqlWithToken(token, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("the ID token has expired; get a fresh one with: jitgate login");
  });

  it("refuses the token of a person without a live grant on the target, naming how to request one", async () => {
    const token = await provider.sign({ sub: "sub-other", email: "other@example.com", email_verified: true });
    const result = await psqlWithToken(token, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('no live access grant for "other@example.com" on orders-db');
    expect(result.stderr).toContain("request one with: /access request orders-db <duration> <reason>");
  });

  it("refuses a token whose email the provider has not verified, and garbage", async () => {
    const token = await provider.sign({ sub: "sub-unverified", email: "unverified@example.com", email_verified: false });
    const result = await psqlWithToken(token, "SELECT 1");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("the provider has not verified the email unverified@example.com");
    const garbage = await psqlWithToken("not-a-token", "SELECT 1");
    expect(garbage.stderr).toContain("the ID token is not a well-formed signed JWT");
  });

  it("refuses an ID token sent in clear from a non-loopback address (TLS required), before looking at it", async () => {
    const external = Object.values(networkInterfaces()).flat().find((i) => i && !i.internal && i.family === "IPv4")?.address;
    expect(external, "this test needs a non-loopback IPv4 address on the machine").toBeDefined();
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true });
    const client = new pg.Client({ host: external, port, user: "oidc", database: "orders-db", password: token });
    await expect(client.connect()).rejects.toMatchObject({ code: "28000", message: "an ID token is only accepted over TLS: connect with sslmode=require" });
  });

  it("answers the refusal with SQLSTATE 28000 (node-postgres sees the code)", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, aud: "another-app" });
    const client = new pg.Client({ host: "127.0.0.1", port, user: "oidc", database: "orders-db", password: token });
    await expect(client.connect()).rejects.toMatchObject({ code: "28000" });
  });
});

describe("SSH proxy with an ID token as the password", () => {
  it("admits OpenSSH whose password (through SSH_ASKPASS) is the ID token of a person with a live grant", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, name: "Dev Eloper" });
    // OpenSSH reads a password into a 1024-byte buffer: this token must fit (README documents the limit).
    expect(token.length).toBeLessThan(1024);
    const refused = await sshWithToken(token, "echo through");
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("no live access grant for dev@example.com on web-1");
    await grant(dev, "web-1");
    const admitted = await sshWithToken(token, "echo through");
    expect(admitted.stdout.trim()).toBe("through");
    expect(admitted.code).toBe(0);
  }, 60_000);

  it("refuses an ID token for another audience with the reason in the banner", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, aud: "another-app" });
    const result = await sshWithToken(token, "echo through");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("the ID token is not for this gateway (audience must be jitgate)");
    expect(result.stdout).toBe("");
  }, 60_000);
});
