import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";

const pbkdf2Async = promisify(pbkdf2);

/**
 * A SCRAM-SHA-256 verifier (RFC 5802 §3, RFC 7677): what PostgreSQL itself stores for a password.
 * The proxy can run a SCRAM exchange against it, and a plain password can be checked against it,
 * without the secret being kept anywhere.
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

export async function makeVerifier(secret: string, iterations = SCRAM_ITERATIONS): Promise<ScramVerifier> {
  const salt = randomBytes(16);
  const salted = await saltedPassword(secret, salt, iterations);
  const clientKey = hmac(salted, "Client Key");
  return {
    salt: salt.toString("base64"),
    iterations,
    storedKey: createHash("sha256").update(clientKey).digest("base64"),
    serverKey: hmac(salted, "Server Key").toString("base64"),
  };
}

export async function verifySecret(secret: string, verifier: ScramVerifier): Promise<boolean> {
  const salted = await saltedPassword(secret, Buffer.from(verifier.salt, "base64"), verifier.iterations);
  const storedKey = createHash("sha256").update(hmac(salted, "Client Key")).digest();
  const expected = Buffer.from(verifier.storedKey, "base64");
  return expected.length === storedKey.length && timingSafeEqual(expected, storedKey);
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

export function postgresConnectionLine(options: {
  login: string;
  secret: string;
  target: string;
  publicAddress: string;
  tls: boolean;
}): ConnectionLine {
  const { host, port } = splitHostPort(options.publicAddress, 5432);
  const user = encodeURIComponent(options.login);
  const db = encodeURIComponent(options.target);
  const sslmode = options.tls ? "require" : "disable";
  return {
    line: `postgres://${user}:${options.secret}@${host}:${port}/${db}?sslmode=${sslmode}`,
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
