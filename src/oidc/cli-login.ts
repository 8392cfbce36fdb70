import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import * as client from "openid-client";
import { decodeJwt } from "jose";
import type { GatewayOidcConfig } from "./routes.js";
import { postgresSslParams } from "../broker/credentials.js";

/** What `jitgate login` keeps between commands (mode 0600). */
export interface TokenCache {
  gateway: string;
  issuer: string;
  clientId: string;
  idToken: string;
  refreshToken?: string | undefined;
  /** When the ID token expires (epoch ms). */
  expiresAt: number;
}

export class CliError extends Error {}

const SCOPE = "openid email profile offline_access";
/** A token this close to its expiry is refreshed before it is used. */
const REFRESH_MARGIN_MS = 60_000;

/** `$JITGATE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/jitgate`, else `~/.config/jitgate`. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.JITGATE_CONFIG_DIR) return env.JITGATE_CONFIG_DIR;
  return join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "jitgate");
}

export function cachePath(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), "token.json");
}

function writeCache(cache: TokenCache, env: NodeJS.ProcessEnv): void {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = cachePath(env);
  writeFileSync(file, `${JSON.stringify(cache, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600); // an existing file keeps its mode otherwise
}

export function readCache(env: NodeJS.ProcessEnv = process.env): TokenCache {
  let text: string;
  try {
    text = readFileSync(cachePath(env), "utf8");
  } catch {
    throw new CliError("not logged in: run jitgate login --gateway https://<your gateway>");
  }
  const cache = JSON.parse(text) as Partial<TokenCache>;
  if (!cache.gateway || !cache.issuer || !cache.clientId || !cache.idToken || typeof cache.expiresAt !== "number") {
    throw new CliError(`${cachePath(env)} is damaged: run jitgate login again`);
  }
  return cache as TokenCache;
}

async function gatewayConfig(gateway: string): Promise<GatewayOidcConfig> {
  let response: Response;
  try {
    response = await fetch(new URL("/oidc/config", gateway), { signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    throw new CliError(`could not reach the gateway at ${gateway}: ${(error as Error).message}`);
  }
  if (response.status === 404) throw new CliError(`the gateway at ${gateway} has no OIDC configured (GET /oidc/config answered 404)`);
  if (!response.ok) throw new CliError(`the gateway at ${gateway} answered ${response.status} to GET /oidc/config`);
  return (await response.json()) as GatewayOidcConfig;
}

async function providerConfiguration(issuer: string, clientId: string): Promise<client.Configuration> {
  const server = new URL(issuer);
  try {
    return await client.discovery(server, clientId, undefined, client.None(), server.protocol === "http:" ? { execute: [client.allowInsecureRequests] } : {});
  } catch (error) {
    throw new CliError(`could not read the OIDC provider's configuration at ${issuer}: ${(error as Error).message}`);
  }
}

function cacheFrom(tokens: client.TokenEndpointResponse, base: Pick<TokenCache, "gateway" | "issuer" | "clientId">, previousRefresh?: string): TokenCache {
  if (!tokens.id_token) throw new CliError("the provider returned no ID token (is the openid scope allowed for this client?)");
  const { exp } = decodeJwt(tokens.id_token);
  return {
    ...base,
    idToken: tokens.id_token,
    refreshToken: tokens.refresh_token ?? previousRefresh,
    expiresAt: typeof exp === "number" ? exp * 1000 : Date.now() + 5 * 60_000,
  };
}

/** Opens a URL in the desktop's browser, if there is one; failure is silent (the URL is printed anyway). */
function openBrowser(url: string): void {
  const command = process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open";
  try {
    const child = spawn(command, [url], { stdio: "ignore", detached: true });
    child.on("error", () => {});
    child.unref();
  } catch {
    // no browser here: the printed URL is the way
  }
}

export interface LoginOptions {
  gateway: string;
  browser?: boolean;
  /** Authorization code with PKCE even when the provider offers the device grant. */
  pkce?: boolean;
  out?: (text: string) => void;
  env?: NodeJS.ProcessEnv;
  /** How long to wait for the person to finish in the browser. */
  timeoutMs?: number;
}

/**
 * `jitgate login`: the device authorization grant (RFC 8628) when the provider offers it, else
 * the authorization code grant with PKCE and a loopback redirect (RFC 8252 §7.3). The tokens are
 * cached under the user's config directory with mode 0600.
 */
export async function login(options: LoginOptions): Promise<TokenCache> {
  const out = options.out ?? ((text: string) => process.stdout.write(text));
  const env = options.env ?? process.env;
  const gateway = options.gateway.replace(/\/+$/, "");
  const remote = await gatewayConfig(gateway);
  const configuration = await providerConfiguration(remote.issuer, remote.clientId);
  const base = { gateway, issuer: remote.issuer, clientId: remote.clientId };
  const useDevice = !options.pkce && configuration.serverMetadata().device_authorization_endpoint !== undefined;
  const tokens = useDevice
    ? await deviceLogin(configuration, out, options.browser ?? true)
    : await loopbackLogin(configuration, out, options.browser ?? true, options.timeoutMs ?? 5 * 60_000);
  const cache = cacheFrom(tokens, base);
  writeCache(cache, env);
  const { email } = decodeJwt(cache.idToken);
  out(`Logged in${typeof email === "string" ? ` as ${email}` : ""}; token cached in ${cachePath(env)}\n`);
  return cache;
}

async function deviceLogin(configuration: client.Configuration, out: (text: string) => void, browser: boolean) {
  const device = await client.initiateDeviceAuthorization(configuration, { scope: SCOPE });
  const url = device.verification_uri_complete ?? device.verification_uri;
  out(`To log in, open ${url}\nand check that it shows the code ${device.user_code}\n`);
  if (browser) openBrowser(url);
  try {
    return await client.pollDeviceAuthorizationGrant(configuration, device);
  } catch (error) {
    throw new CliError(`the login did not complete: ${(error as Error).message}`);
  }
}

async function loopbackLogin(configuration: client.Configuration, out: (text: string) => void, browser: boolean, timeoutMs: number) {
  const state = client.randomState();
  const nonce = client.randomNonce();
  const codeVerifier = client.randomPKCECodeVerifier();
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
  try {
    const callback = new Promise<URL>((resolve, reject) => {
      const timer = setTimeout(() => reject(new CliError("the login did not complete in time")), timeoutMs);
      server.on("request", (req, res) => {
        const url = new URL(req.url ?? "/", redirectUri);
        if (url.pathname !== "/callback") {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
        res.end(url.searchParams.has("error") ? "jitgate: the login failed; see the terminal.\n" : "jitgate: you are logged in; you can close this page.\n");
        clearTimeout(timer);
        resolve(url);
      });
    });
    const url = client.buildAuthorizationUrl(configuration, {
      redirect_uri: redirectUri,
      scope: SCOPE,
      state,
      nonce,
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: "S256",
    });
    out(`To log in, open ${url.toString()}\n`);
    if (browser) openBrowser(url.toString());
    const returned = await callback;
    try {
      return await client.authorizationCodeGrant(configuration, returned, {
        expectedState: state,
        expectedNonce: nonce,
        pkceCodeVerifier: codeVerifier,
        idTokenExpected: true,
      });
    } catch (error) {
      throw new CliError(`the login did not complete: ${(error as Error).message}`);
    }
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/**
 * `jitgate token`: a fresh ID token from the cache, refreshed with the refresh token when it has
 * expired or is about to.
 */
export async function freshIdToken(env: NodeJS.ProcessEnv = process.env, now = Date.now()): Promise<TokenCache> {
  const cache = readCache(env);
  if (cache.expiresAt - now > REFRESH_MARGIN_MS) return cache;
  if (!cache.refreshToken) throw new CliError("the cached ID token has expired and there is no refresh token: run jitgate login again");
  const configuration = await providerConfiguration(cache.issuer, cache.clientId);
  let tokens;
  try {
    tokens = await client.refreshTokenGrant(configuration, cache.refreshToken, { scope: SCOPE });
  } catch (error) {
    throw new CliError(`the token could not be refreshed (${(error as Error).message}): run jitgate login again`);
  }
  const refreshed = cacheFrom(tokens, cache, cache.refreshToken);
  writeCache(refreshed, env);
  return refreshed;
}

/** `jitgate logout`: forgets the cached tokens. */
export function logout(env: NodeJS.ProcessEnv = process.env): boolean {
  try {
    rmSync(cachePath(env));
    return true;
  } catch {
    return false;
  }
}

/** A `host:port` as the gateway published it; a wildcard host means "where the gateway is". */
function proxyHostPort(address: string, gateway: string, defaultPort: number): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(address);
  let host = match?.[1] ?? address;
  if (host === "0.0.0.0" || host === "[::]" || host === "::" || host === "") host = new URL(gateway).hostname;
  return { host, port: match?.[2] ? Number(match[2]) : defaultPort };
}

/** OpenSSH reads a typed password (and an SSH_ASKPASS answer) into a 1024-byte buffer (readpass.c). */
export const OPENSSH_PASSWORD_LIMIT = 1023;

export interface ConnectPlan {
  /** What to print: the command with the token kept out of it. */
  line: string;
  command: string;
  args: string[];
  /** Environment for `--exec`: holds the token. */
  env: NodeJS.ProcessEnv;
}

/**
 * `jitgate connect <target>`: the psql or ssh command that logs in with the OIDC identity. The
 * token never goes into the printed line or a URI: psql takes it from PGPASSWORD (user `oidc`),
 * ssh from an SSH_ASKPASS helper that prints it.
 */
export async function connectPlan(target: string, options: { env?: NodeJS.ProcessEnv } = {}): Promise<ConnectPlan> {
  const env = options.env ?? process.env;
  const cache = await freshIdToken(env);
  const remote = await gatewayConfig(cache.gateway);
  const known = remote.targets.find((t) => t.name === target);
  if (!known) throw new CliError(`unknown target "${target}"; targets: ${remote.targets.map((t) => t.name).join(", ") || "(none)"}`);
  if (known.kind === "postgres") {
    if (!remote.proxies.postgres) throw new CliError("the gateway runs no PostgreSQL proxy");
    const { host, port } = proxyHostPort(remote.proxies.postgres.address, cache.gateway, 5432);
    const uri = `postgres://oidc@${host}:${port}/${encodeURIComponent(target)}?${postgresSslParams(remote.proxies.postgres.tls ? { ca: remote.proxies.postgres.ca } : undefined)}`;
    return { line: `PGPASSWORD="$(jitgate token)" psql "${uri}"`, command: "psql", args: [uri], env: { ...env, PGPASSWORD: cache.idToken } };
  }
  if (!remote.proxies.ssh) throw new CliError("the gateway runs no SSH proxy");
  const { host, port } = proxyHostPort(remote.proxies.ssh.address, cache.gateway, 22);
  if (cache.idToken.length > OPENSSH_PASSWORD_LIMIT) {
    throw new CliError(
      `your ID token is ${cache.idToken.length} bytes, longer than the ${OPENSSH_PASSWORD_LIMIT} bytes OpenSSH can send as a password; register an SSH key with /access key add and use: ssh -p ${port} ${target}@${host}`,
    );
  }
  const args = ["-p", String(port), "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no", `${target}@${host}`];
  return {
    line: `ssh ${args.join(" ")}   (password: the output of jitgate token)`,
    command: "ssh",
    args,
    env: { ...env, SSH_ASKPASS_REQUIRE: "force", JITGATE_ASKPASS_TOKEN: cache.idToken },
  };
}

/** Runs the planned client with the terminal attached; resolves with its exit code. */
export async function runPlan(plan: ConnectPlan, extraArgs: string[] = []): Promise<number> {
  // ssh asks SSH_ASKPASS for the password: a throw-away helper that prints the token from its environment.
  const helperDir = plan.command === "ssh" ? mkdtempSync(join(tmpdir(), "jitgate-askpass-")) : undefined;
  const env = { ...plan.env };
  if (helperDir) {
    const helper = join(helperDir, "askpass");
    writeFileSync(helper, '#!/bin/sh\nprintf \'%s\\n\' "$JITGATE_ASKPASS_TOKEN"\n', { mode: 0o700 });
    env.SSH_ASKPASS = helper;
  }
  try {
    return await new Promise<number>((resolve, reject) => {
      const child = spawn(plan.command, [...plan.args, ...extraArgs], { stdio: "inherit", env });
      child.on("error", (error) => reject(new CliError(`could not run ${plan.command}: ${error.message}`)));
      child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
    });
  } finally {
    if (helperDir) rmSync(helperDir, { recursive: true, force: true });
  }
}
