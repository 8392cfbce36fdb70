import * as client from "openid-client";
import { OidcError } from "./errors.js";
import type { OidcVerifier, VerifiedIdToken } from "./verifier.js";

/** What the gateway keeps between sending the browser to the provider and the callback. */
export interface PendingLogin {
  state: string;
  nonce: string;
  codeVerifier: string;
}

/**
 * Starts an authorization code login with PKCE (RFC 7636), state and nonce, towards
 * `oidc.redirectUrl`. `fresh` asks the provider to authenticate the person again whatever session
 * it has (`prompt=login`, `max_age=0`: https://openid.net/specs/openid-connect-core-1_0.html#AuthRequest).
 */
export async function startAuthorization(
  verifier: OidcVerifier,
  options: { loginHint?: string | undefined; fresh?: boolean },
): Promise<{ url: URL; pending: PendingLogin }> {
  const configuration = await verifier.configuration();
  const pending: PendingLogin = { state: client.randomState(), nonce: client.randomNonce(), codeVerifier: client.randomPKCECodeVerifier() };
  const parameters: Record<string, string> = {
    redirect_uri: verifier.config.redirectUrl,
    scope: "openid email profile",
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await client.calculatePKCECodeChallenge(pending.codeVerifier),
    code_challenge_method: "S256",
  };
  if (options.fresh) Object.assign(parameters, { prompt: "login", max_age: "0" });
  if (options.loginHint) parameters.login_hint = options.loginHint;
  return { url: client.buildAuthorizationUrl(configuration, parameters), pending };
}

/**
 * Completes a login at the callback: checks the authorization response against the pending state,
 * exchanges the code (with the PKCE verifier), checks the nonce, then verifies the ID token as the
 * proxies do (signature, issuer, audience, expiry, verified email).
 */
export async function finishAuthorization(verifier: OidcVerifier, callbackUrl: URL, pending: PendingLogin): Promise<VerifiedIdToken> {
  const configuration = await verifier.configuration();
  let idToken: string | undefined;
  try {
    const tokens = await client.authorizationCodeGrant(configuration, callbackUrl, {
      expectedState: pending.state,
      expectedNonce: pending.nonce,
      pkceCodeVerifier: pending.codeVerifier,
      idTokenExpected: true,
    });
    idToken = tokens.id_token;
  } catch (error) {
    const why = error instanceof client.AuthorizationResponseError ? `${error.error}${error.error_description ? `: ${error.error_description}` : ""}` : (error as Error).message;
    throw new OidcError("oidc_login_failed", `the sign-in could not be completed (${why})`, { cause: error });
  }
  if (!idToken) throw new OidcError("oidc_login_failed", "the provider returned no ID token");
  const verified = await verifier.verifyIdToken(idToken);
  if (verified.nonce !== pending.nonce) throw new OidcError("oidc_login_failed", "the ID token's nonce does not match this sign-in");
  return verified;
}

/** The callback URL as the provider called it: the configured redirect URL with the request's query. */
export function callbackUrlOf(redirectUrl: string, requestUrl: string | undefined): URL {
  const url = new URL(redirectUrl);
  url.search = new URL(requestUrl ?? "/", "http://gateway").search;
  return url;
}
