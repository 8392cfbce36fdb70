import { createHash, createHmac, pbkdf2, randomBytes } from "node:crypto";
import { promisify } from "node:util";

const pbkdf2Async = promisify(pbkdf2);

/**
 * A SCRAM-SHA-256 verifier (RFC 5802 §3, RFC 7677): what PostgreSQL itself stores for a password.
 * The proxy runs a SCRAM exchange against it without the secret being kept anywhere (an SSH
 * password is found by its keyed hash instead, see credentialLookup).
 */
export interface ScramVerifier {
  salt: string; // base64
  iterations: number;
  storedKey: string; // base64
  serverKey: string; // base64
}

export const SCRAM_ITERATIONS = 4096;

const hmac = (key: Buffer, text: string) => createHmac("sha256", key).update(text).digest();

export async function saltedPassword(secret: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return pbkdf2Async(secret.normalize("NFKC"), salt, iterations, 32, "sha256");
}

export async function makeVerifier(secret: string, iterations = SCRAM_ITERATIONS, salt: Buffer = randomBytes(16)): Promise<ScramVerifier> {
  const salted = await saltedPassword(secret, salt, iterations);
  const clientKey = hmac(salted, "Client Key");
  return {
    salt: salt.toString("base64"),
    iterations,
    storedKey: createHash("sha256").update(clientKey).digest("base64"),
    serverKey: hmac(salted, "Server Key").toString("base64"),
  };
}

/**
 * What a proxy login costs, counted per instance so tests can show that every refusal path does the
 * same work (issue 17: no timing side channel tells a wrong user from a wrong password).
 * `lookups`: credential queries; `keyedHashes`: HMAC-SHA256 under the deployment's credential key;
 * `derivations`: PBKDF2 runs (only at issue, never on a login).
 */
export class CredentialWork {
  lookups = 0;
  keyedHashes = 0;
  derivations = 0;

  snapshot(): { lookups: number; keyedHashes: number; derivations: number } {
    return { lookups: this.lookups, keyedHashes: this.keyedHashes, derivations: this.derivations };
  }
}

/**
 * The index a credential is found by: HMAC-SHA256 of the secret under the deployment's credential
 * key. One hash and one indexed query per password try, whatever the number of live grants (a
 * PBKDF2 per live credential would let anyone with a socket burn the gateway's CPU).
 */
export function credentialLookup(key: Buffer, secret: string): string {
  return createHmac("sha256", key).update("jitgate grant credential\0").update(secret).digest("base64url");
}

/**
 * The SCRAM salt of a login on a target: derived, not random, so the salt the gateway announces is
 * the same whether or not the login holds a grant, and across its grants (PostgreSQL's own
 * `scram_mock_salt` does the same for unknown roles). The secret behind it is 192 random bits, so a
 * salt that repeats helps no precomputation.
 */
export function scramSalt(key: Buffer, login: string, target: string): Buffer {
  return createHmac("sha256", key).update("jitgate scram salt\0").update(login).update("\0").update(target).digest().subarray(0, 16);
}

/**
 * The verifier offered to a login that has no live credential: same salt and iterations as a real
 * one would have, and keys nobody can produce a proof for, so the exchange runs to its end and
 * fails there exactly as a wrong password does.
 */
export function mockVerifier(key: Buffer, login: string, target: string): ScramVerifier {
  const keyed = (label: string) => createHmac("sha256", key).update(`jitgate mock ${label}\0`).update(login).update("\0").update(target).digest("base64");
  return {
    salt: scramSalt(key, login, target).toString("base64"),
    iterations: SCRAM_ITERATIONS,
    storedKey: keyed("stored key"),
    serverKey: keyed("server key"),
  };
}

/** 192 random bits, URL-safe so it pastes into a postgres:// URI unescaped. */
export function newSecret(): string {
  return randomBytes(24).toString("base64url");
}

export interface ConnectionLine {
  /** What the DM shows, ready to paste; holds the secret. */
  line: string;
  login: string;
  secret: string;
}

function splitHostPort(address: string, defaultPort: number): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(address);
  const host = match?.[1] ?? address;
  const port = match?.[2] ? Number(match[2]) : defaultPort;
  return { host: host === "0.0.0.0" || host === "::" || host === "[::]" ? "localhost" : host, port };
}

/**
 * The TLS part of a connection URI to the PostgreSQL proxy. With a certificate, libpq checks it and
 * the host name (`verify-full`; `require` would encrypt to whoever answers, and hand them the
 * credential): against the private CA's certificate at the path users keep it (`tls.ca`), or the
 * system's CAs (`sslrootcert=system`, libpq 16+). https://www.postgresql.org/docs/current/libpq-ssl.html
 */
export function postgresSslParams(tls: { ca?: string | undefined } | undefined): string {
  if (!tls) return "sslmode=disable";
  const rootCert = tls.ca === undefined ? "system" : encodeURIComponent(tls.ca).replace(/%2F/g, "/");
  return `sslmode=verify-full&sslrootcert=${rootCert}`;
}

export function postgresConnectionLine(options: {
  login: string;
  secret: string;
  target: string;
  publicAddress: string;
  /** The gateway's TLS (`proxy.postgres.tls`), when it has a certificate. */
  tls: { ca?: string | undefined } | undefined;
}): ConnectionLine {
  const { host, port } = splitHostPort(options.publicAddress, 5432);
  const user = encodeURIComponent(options.login);
  const db = encodeURIComponent(options.target);
  return {
    line: `postgres://${user}:${options.secret}@${host}:${port}/${db}?${postgresSslParams(options.tls)}`,
    login: options.login,
    secret: options.secret,
  };
}

export function sshConnectionLine(options: {
  login: string;
  secret: string;
  target: string;
  publicAddress: string;
}): ConnectionLine {
  const { host, port } = splitHostPort(options.publicAddress, 22);
  return {
    line: `ssh -p ${port} ${options.target}@${host}   (password: ${options.secret})`,
    login: options.login,
    secret: options.secret,
  };
}
