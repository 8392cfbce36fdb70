import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt } from "jose";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TokenCache } from "../src/oidc/cli-login.js";
import { createTestDatabase } from "./support/databases.js";
import { browse, startOidcGateway, startTestProvider, type TestProvider } from "./support/oidc-provider.js";

const CLI = join(import.meta.dirname, "..", "src", "cli.ts");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real `jitgate` command. `onUrl` gets the first login URL it prints (the person opening
 * it in a browser is played by `browse`).
 */
function jitgate(args: string[], env: NodeJS.ProcessEnv, onUrl?: (url: string) => Promise<unknown>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let opened: Promise<unknown> | undefined;
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      const url = /open (http\S+)/.exec(stdout)?.[1];
      if (url && onUrl && !opened) opened = onUrl(url).catch((error: unknown) => (stderr += `browse failed: ${String(error)}`));
    });
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    // A login that never completes must not outlive the test.
    const deadline = setTimeout(() => child.kill("SIGKILL"), 45_000);
    child.on("close", (code) => {
      clearTimeout(deadline);
      void Promise.resolve(opened).then(() => resolve({ code, stdout, stderr }));
    });
  });
}

let provider: TestProvider;
let test: Awaited<ReturnType<typeof startOidcGateway>>;
let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let dirs: string[] = [];
const newConfigDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "jitgate-oidc-cli-"));
  dirs.push(dir);
  return join(dir, "jitgate"); // not there yet: login creates it
};

beforeAll(async () => {
  upstream = await createTestDatabase("oidc_cli_upstream");
  const seed = new pg.Client({ connectionString: upstream.url });
  await seed.connect();
  await seed.query("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2), (3)");
  await seed.end();
  provider = await startTestProvider([
    { sub: "sub-dev", email: "dev@example.com", name: "Dev" },
    { sub: "sub-lead", email: "lead@example.com", name: "Lead" },
  ]);
  test = await startOidcGateway(
    "oidc_cli",
    provider.issuer,
    `
proxy:
  postgres: { listen: 127.0.0.1:0, allowPlaintextTokens: true }
targets:
  - name: orders-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
`,
    { UPSTREAM_URL: upstream.url },
  );
}, 60_000);

afterAll(async () => {
  await test?.close();
  await provider?.close();
  await upstream?.drop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("jitgate login, token, connect, logout", () => {
  const configDir = newConfigDir();
  const env = { JITGATE_CONFIG_DIR: configDir };
  const cacheFile = join(configDir, "token.json");

  it("logs in with the device flow and caches the tokens with mode 0600 in a 0700 directory", async () => {
    provider.nextLogin.account = "sub-dev";
    const run = await jitgate(["login", "--gateway", test.origin, "--no-browser"], env, async (url) => {
      expect(url).toContain("/device?user_code=");
      const page = await browse(url);
      expect(page.body).toContain("Sign-in Success");
    });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/and check that it shows the code [A-Z]{4}-?[A-Z]{4}/);
    expect(run.stdout).toContain(`Logged in as dev@example.com; token cached in ${cacheFile}`);
    expect(statSync(cacheFile).mode & 0o777).toBe(0o600);
    expect(statSync(configDir).mode & 0o777).toBe(0o700);
    const cache = JSON.parse(readFileSync(cacheFile, "utf8")) as TokenCache;
    expect(cache).toMatchObject({ gateway: test.origin, issuer: provider.issuer, clientId: "jitgate" });
    expect(cache.refreshToken).toMatch(/^\S{20,}$/);
    // A real provider's ID token (RS256, with email, name, sid, at_hash): short enough for OpenSSH's password buffer.
    expect(cache.idToken.length).toBeLessThan(1024);
    expect(decodeJwt(cache.idToken)).toMatchObject({ sub: "sub-dev", email: "dev@example.com", email_verified: true, aud: "jitgate" });
  }, 60_000);

  it("prints the psql line without the token, and runs psql with it: the proxy accepts the device-flow token", async () => {
    const printed = await jitgate(["connect", "orders-db"], env);
    const port = test.gateway.postgresProxy!.address.port;
    expect(printed.stdout.trim()).toBe(`PGPASSWORD="$(jitgate token)" psql "postgres://oidc@127.0.0.1:${port}/orders-db?sslmode=disable"`);
    const cache = JSON.parse(readFileSync(cacheFile, "utf8")) as TokenCache;
    expect(printed.stdout).not.toContain(cache.idToken);

    const refused = await jitgate(["connect", "orders-db", "--exec", "--", "-X", "-A", "-t", "-c", "SELECT count(*) FROM orders"], env);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('no live access grant for "dev@example.com" on orders-db');

    const { broker } = test.gateway;
    const dev = await broker.identify({ platform: "slack", externalId: "U0DEV", email: "dev@example.com", displayName: "Dev" });
    const lead = await broker.identify({ platform: "slack", externalId: "U0LEAD", email: "lead@example.com", displayName: "Lead" });
    const request = await broker.request(dev, { target: "orders-db", duration: "30m", reason: "INC-1" });
    await broker.decide(lead, { requestId: request.id, verdict: "approve" });
    const ran = await jitgate(["connect", "orders-db", "--exec", "--", "-X", "-A", "-t", "-c", "SELECT count(*) FROM orders"], env);
    expect(ran.stderr).toBe("");
    expect(ran.stdout.trim()).toBe("3");
    expect(ran.code).toBe(0);
  }, 60_000);

  it("refreshes an expired ID token with the refresh token (jitgate token)", async () => {
    const before = JSON.parse(readFileSync(cacheFile, "utf8")) as TokenCache;
    writeFileSync(cacheFile, JSON.stringify({ ...before, expiresAt: Date.now() - 1000 }));
    const run = await jitgate(["token"], env);
    expect(run.stderr).toBe("");
    const token = run.stdout.trim();
    expect(token).not.toBe(before.idToken);
    expect(decodeJwt(token)).toMatchObject({ sub: "sub-dev", email: "dev@example.com" });
    const after = JSON.parse(readFileSync(cacheFile, "utf8")) as TokenCache;
    expect(after.idToken).toBe(token);
    expect(after.expiresAt).toBeGreaterThan(Date.now() + 60_000);
    expect(statSync(cacheFile).mode & 0o777).toBe(0o600);
    // Fresh enough: printed from the cache as it is.
    expect((await jitgate(["token"], env)).stdout.trim()).toBe(token);
  }, 60_000);

  it("logs out: the cache is gone and token says how to log in", async () => {
    expect((await jitgate(["logout"], env)).stdout).toContain("logged out");
    const run = await jitgate(["token"], env);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("jitgate: not logged in: run jitgate login --gateway https://<your gateway>");
  }, 30_000);
});

describe("jitgate login with PKCE and a loopback redirect", () => {
  it("logs in through the browser with the authorization code flow (--pkce)", async () => {
    const configDir = newConfigDir();
    provider.nextLogin.account = "sub-lead";
    const run = await jitgate(["login", "--gateway", test.origin, "--no-browser", "--pkce"], { JITGATE_CONFIG_DIR: configDir }, async (url) => {
      const authorize = new URL(url);
      expect(authorize.searchParams.get("code_challenge_method")).toBe("S256");
      expect(authorize.searchParams.get("redirect_uri")).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
      const page = await browse(url);
      expect(page.body).toContain("you are logged in");
    });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("Logged in as lead@example.com");
    const cache = JSON.parse(readFileSync(join(configDir, "token.json"), "utf8")) as TokenCache;
    expect(decodeJwt(cache.idToken)).toMatchObject({ sub: "sub-lead", aud: "jitgate" });
  }, 60_000);

  it("falls back to PKCE on its own when the provider has no device authorization endpoint", async () => {
    const noDevice = await startTestProvider([{ sub: "sub-dev", email: "dev@example.com", name: "Dev" }], { deviceFlow: false });
    const gateway = await startOidcGateway("oidc_cli_nodevice", noDevice.issuer, "");
    try {
      const configDir = newConfigDir();
      let opened: URL | undefined;
      const run = await jitgate(["login", "--gateway", gateway.origin, "--no-browser"], { JITGATE_CONFIG_DIR: configDir }, async (url) => {
        opened = new URL(url);
        expect((await browse(url)).body).toContain("you are logged in");
      });
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(opened?.origin).toBe(noDevice.issuer);
      expect(opened?.searchParams.get("code_challenge_method")).toBe("S256");
      expect(opened?.searchParams.get("redirect_uri")).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
      expect(run.stdout).toContain("Logged in as dev@example.com");
    } finally {
      await gateway.close();
      await noDevice.close();
    }
  }, 60_000);

  it("says clearly when the gateway cannot be reached or has no OIDC", async () => {
    const run = await jitgate(["login", "--gateway", "http://127.0.0.1:9", "--no-browser"], { JITGATE_CONFIG_DIR: newConfigDir() });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("jitgate: could not reach the gateway at http://127.0.0.1:9");
  }, 30_000);
});
