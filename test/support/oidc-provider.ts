import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import Provider, { type Configuration } from "oidc-provider";
import type { Clock } from "../../src/broker/clock.js";
import type { TeamsCloudOptions } from "../../src/bot/teams/teams-app.js";
import { startTestGateway, type TestGateway } from "./gateway.js";
import { freePort } from "./ports.js";

/** A person the test provider knows. */
export interface TestAccount {
  sub: string;
  email: string;
  emailVerified?: boolean;
  name: string;
  /**
   * The `groups` claim of this account's ID tokens, as providers configured to send one do (a
   * Keycloak group mapper, an Okta groups claim, Entra's groupMembershipClaims); change it between
   * logins to move the person between groups. Absent: no claim.
   */
  groups?: string[];
}

export interface TestProvider {
  issuer: string;
  provider: Provider;
  /** The account the next interactive login signs in as (default: the `login_hint`, else the first account). */
  nextLogin: { account?: string | undefined; ageSeconds?: number | undefined };
  /** Logins completed so far (the account ids), in order. */
  logins: string[];
  /** Signs claims with the provider's own key: for tokens no real flow would issue (expired, wrong audience). */
  sign(claims: Record<string, unknown>, options?: { expiresInSeconds?: number; issuedAgoSeconds?: number }): Promise<string>;
  close(): Promise<void>;
}

export const CLIENT_ID = "jitgate";

/**
 * A real OpenID Connect provider (oidc-provider 8) on loopback, in the test process. One public
 * client (`jitgate`: device code, authorization code with PKCE, refresh token, loopback redirects on
 * any port). Logins need no form: the interaction endpoint signs in `nextLogin.account` (or the
 * `login_hint`) at once, with `auth_time` `nextLogin.ageSeconds` in the past when set.
 */
export async function startTestProvider(
  accounts: TestAccount[],
  options: { idTokenTtlSeconds?: number; deviceFlow?: boolean; /** More redirect URIs (an https gateway's callback). */ redirectUris?: string[] } = {},
): Promise<TestProvider> {
  const deviceFlow = options.deviceFlow ?? true;
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk: JWK = { ...(await exportJWK(privateKey)), kid: "test-key", alg: "RS256", use: "sig" };
  const byId = new Map(accounts.map((a) => [a.sub, a]));
  const byEmail = new Map(accounts.map((a) => [a.email, a]));
  let provider: Provider | undefined;
  const state: TestProvider["nextLogin"] = {};
  const logins: string[] = [];

  const interact = async (req: IncomingMessage, res: ServerResponse) => {
    const details = await provider!.interactionDetails(req, res);
    const hint = typeof details.params.login_hint === "string" ? byEmail.get(details.params.login_hint)?.sub : undefined;
    const accountId = state.account ?? hint ?? accounts[0]!.sub;
    const clientId = String(details.params.client_id);
    const grant = details.grantId ? await provider!.Grant.find(details.grantId) : new provider!.Grant({ accountId, clientId });
    grant!.addOIDCScope(String(details.params.scope ?? "openid"));
    const grantId = await grant!.save();
    const ts = Math.floor(Date.now() / 1000) - (state.ageSeconds ?? 0);
    logins.push(accountId);
    await provider!.interactionFinished(req, res, { login: { accountId, ts }, consent: { grantId } }, { mergeWithLastSubmission: false });
  };

  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith("/interaction/")) {
      interact(req, res).catch((error: unknown) => {
        res.statusCode = 500;
        res.end(String(error));
      });
      return;
    }
    provider!.callback()(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const configuration: Configuration = {
    clients: [
      {
        client_id: CLIENT_ID,
        application_type: "native",
        token_endpoint_auth_method: "none",
        grant_types: [...(deviceFlow ? ["urn:ietf:params:oauth:grant-type:device_code"] : []), "authorization_code", "refresh_token"],
        response_types: ["code"],
        // Loopback redirects of a native client match on any port (RFC 8252 §7.3).
        redirect_uris: ["http://127.0.0.1/callback", "http://127.0.0.1/oidc/callback", ...(options.redirectUris ?? [])],
      },
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: ["test-cookie-key"] },
    // `groups` rides with `openid`, as providers that map groups into the ID token send it without a scope of its own.
    claims: { openid: ["sub", "groups"], email: ["email", "email_verified"], profile: ["name"] },
    conformIdTokenClaims: false,
    scopes: ["openid", "offline_access", "email", "profile"],
    features: { devInteractions: { enabled: false }, deviceFlow: { enabled: deviceFlow } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
    ttl: { IdToken: options.idTokenTtlSeconds ?? 3600, AccessToken: 3600, DeviceCode: 600, RefreshToken: 86400, Interaction: 600, Session: 3600, Grant: 86400 },
    findAccount: async (_ctx, sub) => {
      const account = byId.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        claims: async () => ({
          sub,
          email: account.email,
          email_verified: account.emailVerified ?? true,
          name: account.name,
          ...(account.groups ? { groups: [...account.groups] } : {}),
        }),
      };
    },
  };
  provider = new Provider(issuer, configuration);

  return {
    issuer,
    provider,
    nextLogin: state,
    logins,
    async sign(claims, signOptions = {}) {
      const now = Math.floor(Date.now() / 1000) - (signOptions.issuedAgoSeconds ?? 0);
      return new SignJWT({ iss: issuer, aud: CLIENT_ID, iat: now, exp: now + (signOptions.expiresInSeconds ?? 600), auth_time: now, ...claims })
        .setProtectedHeader({ alg: "RS256", kid: "test-key" })
        .sign(privateKey);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * A minimal browser for the provider's pages: follows redirects, keeps cookies, and submits the
 * page's POST form (the device flow's confirmation, a script-submitted form). Returns the first
 * page without one.
 */
export async function browse(start: string, maxSteps = 20): Promise<{ url: string; status: number; body: string; cookies: Map<string, string> }> {
  const jar = new Map<string, string>();
  let url = start;
  let init: RequestInit = { method: "GET" };
  for (let step = 0; step < maxSteps; step++) {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const response = await fetch(url, { ...init, redirect: "manual", headers: { ...(init.headers as Record<string, string>), ...(cookie ? { cookie } : {}) } });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const index = pair!.indexOf("=");
      const name = pair!.slice(0, index).trim();
      const value = pair!.slice(index + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === "") jar.delete(name);
      else jar.set(name, value);
    }
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      url = new URL(location, url).toString();
      init = { method: "GET" };
      continue;
    }
    const body = await response.text();
    // The device flow's pages: the confirmation form, and forms a browser posts by script (form_post).
    const form = /<form[^>]*method="post"[^>]*>([\s\S]*?)<\/form>/i.exec(body);
    if (response.status === 200 && form) {
      const action = /action="([^"]*)"/.exec(form[0])?.[1] ?? url;
      const fields = new URLSearchParams();
      for (const input of form[1]!.matchAll(/<input[^>]*>/g)) {
        const name = /name="([^"]*)"/.exec(input[0])?.[1];
        const value = /value="([^"]*)"/.exec(input[0])?.[1] ?? "";
        if (name) fields.set(name, value);
      }
      url = new URL(action, url).toString();
      init = { method: "POST", body: fields.toString(), headers: { "content-type": "application/x-www-form-urlencoded" } };
      continue;
    }
    return { url, status: response.status, body, cookies: jar };
  }
  throw new Error(`no final page after ${maxSteps} steps (at ${url})`);
}

/**
 * A whole gateway (own database and Redis prefix) with `oidc:` pointing at `issuer`, its HTTP
 * listener on a port chosen first so that `oidc.redirectUrl` can name it.
 */
export async function startOidcGateway(label: string, issuer: string, yaml: string, env: NodeJS.ProcessEnv = {}, options: { clock?: Clock; postgresListen?: string; teamsCloud?: TeamsCloudOptions } = {}): Promise<TestGateway & { origin: string }> {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const oidc = `oidc: { issuer: "${issuer}", clientId: ${CLIENT_ID}, redirectUrl: "${origin}/oidc/callback" }\n`;
  const test = await startTestGateway(label, `${oidc}${yaml}`, env, { ...options, httpListen: `127.0.0.1:${port}` });
  return { ...test, origin };
}

/** Follows the provider's redirects until the browser would be sent to `prefix`; returns that URL unvisited. */
export async function browseUntil(start: string, prefix: string): Promise<string> {
  const jar = new Map<string, string>();
  let url = start;
  for (let step = 0; step < 20; step++) {
    if (url.startsWith(prefix)) return url;
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const response = await fetch(url, { redirect: "manual", headers: cookie ? { cookie } : {} });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const index = pair!.indexOf("=");
      jar.set(pair!.slice(0, index).trim(), pair!.slice(index + 1).trim());
    }
    const location = response.headers.get("location");
    if (!location) throw new Error(`no redirect at ${url} (${response.status})`);
    url = new URL(location, url).toString();
  }
  throw new Error("too many redirects");
}
