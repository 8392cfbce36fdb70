import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { and, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Person } from "../src/broker/index.js";
import { runCommand } from "../src/bot/commands.js";
import { viewToPlainText } from "../src/bot/view-model.js";
import { sessions } from "../src/db/schema.js";
import { createTestDatabase } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";
import { SSH_CLIENT_OPTIONS, startPrivateSshd, type PrivateSshd } from "./support/sshd.js";

const run = promisify(execFile);

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let provider: TestProvider;
let foreign: TestProvider;
let test: Awaited<ReturnType<typeof startOidcGateway>>;
let dev: Person, lead: Person;
let port: number;
let sshd: PrivateSshd;
let gatewayKeyFingerprint: string;
/** The same targets on a gateway without `oidc:`. */
let plain: TestGateway;
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

async function grant(who: Person, target = "orders-db", { broker } = test.gateway, approver = lead) {
  const request = await broker.request(who, { target, duration: "1h", reason: "INC-7 look at orders" });
  return (await broker.decide(approver, { requestId: request.id, verdict: "approve" })).grant!;
}

/** The gateway's own logins to the real sshd so far (sshd logs each accepted key). */
function gatewayLoginsOnSshd(): number {
  return sshd.log().split(`Accepted publickey for ${sshd.user} from 127.0.0.1`).length - 1;
}

function targetsYaml(sshHostKeyFile: string) {
  return `
proxy:
  postgres: { listen: 127.0.0.1:0, allowPlaintextTokens: true }
  ssh: { listen: 127.0.0.1:0, hostKeyFile: ${sshHostKeyFile} }
targets:
  - name: web-1
    kind: ssh
    upstream: ssh://${sshd.user}@127.0.0.1:${sshd.port}
    privateKeyFile: ${sshd.gatewayKeyFile}
    hostKey: "${sshd.hostKey}"
    approvers: [lead@example.com]
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    mask: [{ column: email }]
`;
}

beforeAll(async () => {
  upstream = await createTestDatabase("oidc_proxy_upstream");
  const seed = new pg.Client({ connectionString: upstream.url });
  await seed.connect();
  await seed.query(`CREATE TABLE orders (id int PRIMARY KEY, email text); INSERT INTO orders VALUES (1, 'ann@example.com'), (2, 'bob@example.com');`);
  await seed.end();
  dir = mkdtempSync(join(tmpdir(), "jitgate-oidc-proxy-"));
  // The SSH target: a real OpenSSH server of the test's own, its host key pinned on the target.
  sshd = await startPrivateSshd("oidc-proxy");
  gatewayKeyFingerprint = (await run("ssh-keygen", ["-l", "-f", `${sshd.gatewayKeyFile}.pub`])).stdout.split(/\s+/)[1]!;
  provider = await startTestProvider([...accounts, { sub: "sub-unverified", email: "unverified@example.com", emailVerified: false, name: "Unverified" }]);
  foreign = await startTestProvider(accounts);
  test = await startOidcGateway(
    "oidc_proxy",
    provider.issuer,
    targetsYaml(join(dir, "ssh_host_ed25519_key")),
    { UPSTREAM_URL: upstream.url },
    // On every address, so a client can also come from a non-loopback one (the TLS rule).
    { postgresListen: "0.0.0.0:0" },
  );
  port = test.gateway.postgresProxy!.address.port;
  dev = await test.gateway.broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
  plain = await startTestGateway("oidc_proxy_plain", targetsYaml(join(dir, "plain_ssh_host_ed25519_key")), { UPSTREAM_URL: upstream.url });
}, 60_000);

afterAll(async () => {
  await test?.close();
  await plain?.close();
  await provider?.close();
  await foreign?.close();
  await upstream?.drop();
  await sshd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** OpenSSH as \`jitgate connect web-1 --exec\` runs it: the token from an SSH_ASKPASS helper. */
async function sshWithToken(token: string, command: string, gateway = test.gateway) {
  const askpass = join(dir, "askpass");
  writeFileSync(askpass, '#!/bin/sh\nprintf \'%s\\n\' "$JITGATE_ASKPASS_TOKEN"\n', { mode: 0o700 });
  const sshPort = gateway.sshProxy!.address.port;
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

  it("refuses an ID token sent in clear from a non-loopback address even with allowPlaintextTokens, before looking at it", async () => {
    const external = Object.values(networkInterfaces()).flat().find((i) => i && !i.internal && i.family === "IPv4")?.address;
    expect(external, "this test needs a non-loopback IPv4 address on the machine").toBeDefined();
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true });
    const client = new pg.Client({ host: external, port, user: "oidc", database: "orders-db", password: token });
    await expect(client.connect()).rejects.toMatchObject({ code: "28000", message: "an ID token is only accepted over TLS: connect with sslmode=verify-full" });
  });

  it("answers the refusal with SQLSTATE 28000 (node-postgres sees the code)", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, aud: "another-app" });
    const client = new pg.Client({ host: "127.0.0.1", port, user: "oidc", database: "orders-db", password: token });
    await expect(client.connect()).rejects.toMatchObject({ code: "28000" });
  });
});

describe("SSH proxy with an ID token as the password, in front of a real OpenSSH server", () => {
  it("admits OpenSSH whose password (through SSH_ASKPASS) is the ID token of a person with a live grant; the command runs on the real sshd", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, name: "Dev Eloper" });
    // OpenSSH reads a password into a 1024-byte buffer: this token must fit (README documents the limit).
    expect(token.length).toBeLessThan(1024);
    const loginsBefore = gatewayLoginsOnSshd();
    const refused = await sshWithToken(token, "echo through");
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("no live access grant for dev@example.com on web-1");
    expect(gatewayLoginsOnSshd()).toBe(loginsBefore);
    const issued = await grant(dev, "web-1");
    // The remote shell expands $((…)) and $USER: the output can only come from a real login there.
    const admitted = await sshWithToken(token, "echo through $((6 * 7)) $USER");
    expect(admitted.stdout.trim()).toBe(`through 42 ${sshd.user}`);
    expect(admitted.code).toBe(0);
    // sshd accepted the gateway's own key (pinned host key, private key of the target) once.
    expect(gatewayLoginsOnSshd()).toBe(loginsBefore + 1);
    expect(sshd.log()).toContain(`Accepted publickey for ${sshd.user} from 127.0.0.1`);
    expect(sshd.log()).toContain(gatewayKeyFingerprint);
    const recorded = await test.gateway.broker.db.select().from(sessions).where(and(eq(sessions.grantId, issued.id), eq(sessions.personId, dev.id)));
    expect(recorded).toHaveLength(1);
    expect(recorded[0]!.protocol).toBe("ssh");
  }, 60_000);

  it("refuses an ID token for another audience with the reason in the banner, without logging in to the target", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, aud: "another-app" });
    const loginsBefore = gatewayLoginsOnSshd();
    const result = await sshWithToken(token, "echo through");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("the ID token is not for this gateway (audience must be jitgate)");
    expect(result.stdout).toBe("");
    expect(gatewayLoginsOnSshd()).toBe(loginsBefore);
  }, 60_000);
});

describe("a gateway without oidc: configured", () => {
  it("refuses psql as user oidc with SQLSTATE 28000 saying OIDC is not configured", async () => {
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true });
    const message = "OIDC is not configured on this gateway, so the user oidc cannot log in; use the connection line of your grant";
    const plainPort = plain.gateway.postgresProxy!.address.port;
    const client = new pg.Client({ host: "127.0.0.1", port: plainPort, user: "oidc", database: "orders-db", password: token });
    await expect(client.connect()).rejects.toMatchObject({ code: "28000", message });
    const { stderr } = await run("psql", [`host=127.0.0.1 port=${plainPort} user=oidc dbname=orders-db sslmode=disable`, "-X", "-c", "SELECT 1"], {
      env: { ...process.env, PGPASSWORD: token, PGCONNECT_TIMEOUT: "5" },
      timeout: 30_000,
    }).catch((error: { stderr: string }) => error);
    expect(stderr).toContain(`FATAL:  ${message}`);
    expect(await plain.gateway.broker.db.select().from(sessions)).toEqual([]);
  });

  it("refuses an SSH password shaped like a JWT as a failed password, even from a person with a live grant; nothing is admitted", async () => {
    const plainDev = await plain.gateway.broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
    const plainLead = await plain.gateway.broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
    await grant(plainDev, "web-1", plain.gateway, plainLead);
    const token = await provider.sign({ sub: "sub-dev", email: "dev@example.com", email_verified: true, name: "Dev Eloper" });
    const loginsBefore = gatewayLoginsOnSshd();
    const result = await sshWithToken(token, "echo through", plain.gateway);
    expect(result.code).toBe(255);
    expect(result.stderr).toContain("web-1@127.0.0.1: Permission denied");
    expect(result.stderr).toContain("OIDC is not configured on this gateway, so an ID token cannot log in");
    expect(result.stdout).toBe("");
    expect(gatewayLoginsOnSshd()).toBe(loginsBefore);
    expect(await plain.gateway.broker.db.select().from(sessions)).toEqual([]);
    expect(await plain.gateway.broker.identitiesOf(plainDev)).toEqual([expect.objectContaining({ platform: "slack", externalId: "U0DEV" })]);
  }, 60_000);
});
