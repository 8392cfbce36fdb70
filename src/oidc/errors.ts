/**
 * Why an ID token or an OIDC login was refused. Stable codes; messages are shown to the person who
 * presented the token (psql's error, the SSH banner, the callback page) and never contain the token.
 */
export class OidcError extends Error {
  constructor(
    readonly code: `oidc_${string}`,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "OidcError";
  }
}

export const oidcErrors = {
  notConfigured: () => new OidcError("oidc_not_configured", "OIDC is not configured on this gateway (no oidc: section)"),
  unreachable: (issuer: string, cause: unknown) =>
    new OidcError("oidc_provider_unreachable", `the OIDC provider ${issuer} could not be reached; try again shortly`, { cause }),
  malformed: () => new OidcError("oidc_token_malformed", "the ID token is not a well-formed signed JWT"),
  tooLong: (max: number) => new OidcError("oidc_token_too_long", `the ID token is longer than ${max} bytes`),
  signature: () => new OidcError("oidc_token_signature", "the ID token's signature does not verify with the provider's keys"),
  issuer: (expected: string) => new OidcError("oidc_token_issuer", `the ID token was not issued by ${expected}`),
  audience: (clientId: string) => new OidcError("oidc_token_audience", `the ID token is not for this gateway (audience must be ${clientId})`),
  expired: () => new OidcError("oidc_token_expired", "the ID token has expired; get a fresh one with: jitgate login"),
  notYetValid: () => new OidcError("oidc_token_not_yet_valid", "the ID token is not valid yet (check the clocks)"),
  accessToken: () => new OidcError("oidc_token_not_id_token", "that is an access token; the gateway takes an ID token (jitgate token prints one)"),
  noEmail: () => new OidcError("oidc_token_no_email", "the ID token carries no email (ask for the email scope)"),
  emailUnverified: (email: string) => new OidcError("oidc_token_email_unverified", `the provider has not verified the email ${email}`),
  invalid: (why: string) => new OidcError("oidc_token_invalid", `the ID token was refused: ${why}`),
};
