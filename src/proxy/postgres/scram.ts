import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * SCRAM-SHA-256 as PostgreSQL speaks it (RFC 5802, RFC 7677;
 * https://www.postgresql.org/docs/current/sasl-authentication.html): the server side runs against a
 * stored verifier, so the proxy never knows a grant's secret; the client side logs in upstream.
 */

export interface Verifier {
  salt: string; // base64
  iterations: number;
  storedKey: string; // base64
  serverKey: string; // base64
}

const hmac = (key: Buffer, data: string | Buffer) => createHmac("sha256", key).update(data).digest();
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest();

function attributes(message: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of message.split(",")) {
    const eq = part.indexOf("=");
    if (eq === 1) out.set(part[0]!, part.slice(2));
  }
  return out;
}

export class ScramError extends Error {}

/** One server-side exchange. */
export class ScramServer {
  #clientFirstBare = "";
  #serverFirst = "";
  #nonce = "";

  constructor(private readonly verifier: Verifier) {}

  /** Takes the client-first-message (from SASLInitialResponse); returns the server-first-message. */
  start(clientFirst: string): string {
    // gs2 header: "n,," (no channel binding) or "y,," (client could but we did not offer it).
    const match = /^([ny]),(?:a=[^,]*)?,(.*)$/.exec(clientFirst);
    if (!match) throw new ScramError("channel binding is not supported; use SCRAM-SHA-256");
    this.#clientFirstBare = match[2]!;
    const clientNonce = attributes(this.#clientFirstBare).get("r");
    if (!clientNonce) throw new ScramError("client-first-message has no nonce");
    this.#nonce = clientNonce + randomBytes(18).toString("base64");
    this.#serverFirst = `r=${this.#nonce},s=${this.verifier.salt},i=${this.verifier.iterations}`;
    return this.#serverFirst;
  }

  /** Checks the client-final-message's proof; returns the server-final-message, or throws. */
  finish(clientFinal: string): string {
    const proofAt = clientFinal.lastIndexOf(",p=");
    if (proofAt < 0) throw new ScramError("client-final-message has no proof");
    const withoutProof = clientFinal.slice(0, proofAt);
    const attrs = attributes(clientFinal);
    if (attrs.get("r") !== this.#nonce) throw new ScramError("nonce mismatch");
    const proof = Buffer.from(attrs.get("p") ?? "", "base64");
    const authMessage = `${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`;
    const storedKey = Buffer.from(this.verifier.storedKey, "base64");
    const clientSignature = hmac(storedKey, authMessage);
    if (proof.length !== clientSignature.length) throw new ScramError("invalid proof");
    const clientKey = Buffer.alloc(proof.length);
    for (let i = 0; i < proof.length; i++) clientKey[i] = proof[i]! ^ clientSignature[i]!;
    if (!timingSafeEqual(sha256(clientKey), storedKey)) throw new ScramError("invalid proof");
    const serverSignature = hmac(Buffer.from(this.verifier.serverKey, "base64"), authMessage);
    return `v=${serverSignature.toString("base64")}`;
  }
}

/** One client-side exchange towards the upstream server. */
export class ScramClient {
  readonly #clientNonce = randomBytes(18).toString("base64");
  #clientFirstBare = "";
  #serverSignature: Buffer | undefined;

  constructor(private readonly password: string) {}

  first(): string {
    this.#clientFirstBare = `n=*,r=${this.#clientNonce}`;
    return `n,,${this.#clientFirstBare}`;
  }

  final(serverFirst: string): string {
    const attrs = attributes(serverFirst);
    const nonce = attrs.get("r");
    const salt = attrs.get("s");
    const iterations = Number(attrs.get("i"));
    if (!nonce?.startsWith(this.#clientNonce) || !salt || !Number.isInteger(iterations) || iterations < 1) {
      throw new ScramError("invalid server-first-message from upstream");
    }
    const salted = pbkdf2Sync(this.password.normalize("NFKC"), Buffer.from(salt, "base64"), iterations, 32, "sha256");
    const clientKey = hmac(salted, "Client Key");
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.#clientFirstBare},${serverFirst},${withoutProof}`;
    const signature = hmac(sha256(clientKey), authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < clientKey.length; i++) proof[i] = clientKey[i]! ^ signature[i]!;
    this.#serverSignature = hmac(hmac(salted, "Server Key"), authMessage);
    return `${withoutProof},p=${proof.toString("base64")}`;
  }

  verify(serverFinal: string): void {
    const signature = Buffer.from(attributes(serverFinal).get("v") ?? "", "base64");
    if (!this.#serverSignature || signature.length !== this.#serverSignature.length || !timingSafeEqual(signature, this.#serverSignature)) {
      throw new ScramError("upstream server signature does not match");
    }
  }
}

/** md5 password as PostgreSQL computes it: "md5" + md5(md5(password + user) + salt). */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash("md5").update(password + user).digest("hex");
  return `md5${createHash("md5").update(Buffer.concat([Buffer.from(inner), salt])).digest("hex")}`;
}
