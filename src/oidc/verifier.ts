import * as client from "openid-client";
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from "jose";
import type { Broker, Person } from "../broker/index.js";
import { systemClock, type Clock } from "../broker/clock.js";
import type { Config } from "../config/schema.js";
import { OidcError, oidcErrors } from "./errors.js";

export type OidcConfig = NonNullable<Config["oidc"]>;

/** What a verified ID token says about its holder. */
export interface VerifiedIdToken {
  sub: string;
  email: string;
  name: string | undefined;
  /** When the person last authenticated at the provider (`auth_time`), if the token says. */
  authTime: Date | undefined;
  issuedAt: Date | undefined;
  expiresAt: Date;
  nonce: string | undefined;
  /**
   * The token's `groups` claim: the person's groups at the provider as of this sign-in. A claim
   * that is absent or not a list of names (a provider that sends none, Entra's "overage" pointer)
   * counts as no groups: only what the token names is believed.
   */
  groups: string[];
}

/** Reads a `groups` claim: a list of names (a single name is taken as a list of one); anything else is none. */
export function groupsClaim(value: unknown): string[] {
  const names = Array.isArray(value) ? value : typeof value === "string" ? [value] : [];
  // Names are kept exactly as the provider sends them: policy matches them exactly.
  return [...new Set(names.filter((g): g is string => typeof g === "string" && g !== ""))].slice(0, MAX_GROUPS);
}

/** More groups than this in one token are not read (a bound on what one sign-in stores). */
const MAX_GROUPS = 1000;

/** ID tokens are a few kilobytes; anything much longer is refused before it is parsed. */
export const MAX_ID_TOKEN_LENGTH = 16 * 1024;
/** Leeway for clocks that differ a little between the provider and the gateway. */
const CLOCK_TOLERANCE_SECONDS = 30;

/** Three base64url segments, the first a JSON header (`eyJ…`): worth verifying as an ID token. */
export function looksLikeJwt(text: string): boolean {
  return /^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(text);
}

/**
 * Verifies ID tokens from the configured provider: signature (keys from the provider's jwks_uri,
 * found by discovery), `iss` exactly the configured issuer, `aud` naming our client id (and `azp`
 * when there are several audiences), `exp`/`nbf` with a small tolerance, and a verified `email`
 * (https://openid.net/specs/openid-connect-core-1_0.html#IDTokenValidation). The token itself is
 * never logged nor put into an error.
 */
export class OidcVerifier {
  readonly config: OidcConfig;
  readonly #clock: Clock;
  #discovered: Promise<{ configuration: client.Configuration; jwks: ReturnType<typeof createRemoteJWKSet> }> | undefined;

  constructor(config: OidcConfig, options: { clock?: Clock } = {}) {
    this.config = config;
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * The provider's metadata and client configuration (openid-client), discovered once; a failed
   * discovery is retried on the next use, so a provider that was down at start-up is picked up later.
   */
  discovered(): Promise<{ configuration: client.Configuration; jwks: ReturnType<typeof createRemoteJWKSet> }> {
    this.#discovered ??= (async () => {
      const { issuer, clientId, clientSecret } = this.config;
      const server = new URL(issuer);
      const insecure = server.protocol === "http:";
      let configuration: client.Configuration;
      try {
        configuration = await client.discovery(
          server,
          clientId,
          clientSecret,
          clientSecret === undefined ? client.None() : client.ClientSecretPost(clientSecret),
          insecure ? { execute: [client.allowInsecureRequests] } : {},
        );
      } catch (error) {
        throw oidcErrors.unreachable(issuer, error);
      }
      const jwksUri = configuration.serverMetadata().jwks_uri;
      if (!jwksUri) throw new OidcError("oidc_provider_unusable", `the OIDC provider ${issuer} publishes no jwks_uri`);
      return { configuration, jwks: createRemoteJWKSet(new URL(jwksUri)) };
    })();
    const pending = this.#discovered;
    pending.catch(() => {
      if (this.#discovered === pending) this.#discovered = undefined;
    });
    return pending;
  }

  async configuration(): Promise<client.Configuration> {
    return (await this.discovered()).configuration;
  }

  /** Checks an ID token as presented at a proxy (or returned to the callback); throws OidcError. */
  async verifyIdToken(token: string): Promise<VerifiedIdToken> {
    if (token.length > MAX_ID_TOKEN_LENGTH) throw oidcErrors.tooLong(MAX_ID_TOKEN_LENGTH);
    let unverified: JWTPayload;
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch {
      throw oidcErrors.malformed();
    }
    // RFC 9068 access tokens are JWTs too, but they are for resource servers, not for us.
    if (typeof header.typ === "string" && /^(application\/)?at\+jwt$/i.test(header.typ)) throw oidcErrors.accessToken();
    // Named before the signature is checked, only to say clearly which rule a foreign token breaks.
    if (unverified.iss !== this.config.issuer) throw oidcErrors.issuer(this.config.issuer);
    const { jwks } = await this.discovered();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        issuer: this.config.issuer,
        audience: this.config.clientId,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        currentDate: this.#clock.now(),
        requiredClaims: ["sub", "exp", "iat"],
      }));
    } catch (error) {
      throw this.#explain(error);
    }
    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (audiences.length > 1 && payload.azp !== this.config.clientId) throw oidcErrors.audience(this.config.clientId);
    const email = typeof payload.email === "string" ? payload.email.trim().toLowerCase() : "";
    if (email === "") throw oidcErrors.noEmail();
    if (payload.email_verified !== true) throw oidcErrors.emailUnverified(email);
    const seconds = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? new Date(value * 1000) : undefined);
    return {
      sub: payload.sub!,
      email,
      name: typeof payload.name === "string" && payload.name.trim() !== "" ? payload.name.trim() : undefined,
      authTime: seconds(payload.auth_time),
      issuedAt: seconds(payload.iat),
      expiresAt: seconds(payload.exp)!,
      nonce: typeof payload.nonce === "string" ? payload.nonce : undefined,
      groups: groupsClaim(payload.groups),
    };
  }

  /**
   * Verifies the token and finds its person: the OIDC subject is linked to whoever has the same
   * verified email on any chat platform (Broker.identify). The token's `groups` become the person's
   * OIDC groups (identifyVerified).
   */
  async identify(broker: Broker, token: string): Promise<{ person: Person; token: VerifiedIdToken }> {
    const verified = await this.verifyIdToken(token);
    return { person: await identifyVerified(broker, verified), token: verified };
  }

  #explain(error: unknown): OidcError {
    if (error instanceof OidcError) return error;
    if (error instanceof joseErrors.JWTExpired) return oidcErrors.expired();
    if (error instanceof joseErrors.JWTClaimValidationFailed) {
      if (error.claim === "aud") return oidcErrors.audience(this.config.clientId);
      if (error.claim === "iss") return oidcErrors.issuer(this.config.issuer);
      if (error.claim === "nbf" || error.claim === "iat") return oidcErrors.notYetValid();
      return oidcErrors.invalid(`claim ${error.claim}: ${error.reason}`);
    }
    if (error instanceof joseErrors.JWSSignatureVerificationFailed || error instanceof joseErrors.JWKSNoMatchingKey) return oidcErrors.signature();
    if (error instanceof joseErrors.JWKSTimeout || error instanceof joseErrors.JWKSInvalid) return oidcErrors.unreachable(this.config.issuer, error);
    if (error instanceof joseErrors.JOSEError) return oidcErrors.invalid(error.code);
    return oidcErrors.unreachable(this.config.issuer, error);
  }
}

/**
 * The person behind a verified ID token, with the token's `groups` claim recorded as their OIDC
 * groups: every sign-in (console, step-up, a token at a proxy) refreshes them, so a group removed
 * at the provider stops counting at the person's next sign-in.
 */
export async function identifyVerified(broker: Broker, token: VerifiedIdToken): Promise<Person> {
  const person = await broker.identify({ platform: "oidc", externalId: token.sub, email: token.email, displayName: token.name });
  await broker.recordOidcGroups(person, token.groups);
  return person;
}
