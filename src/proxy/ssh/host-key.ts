import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import ssh2 from "ssh2";
import { sshFingerprint } from "../../broker/ssh-keys.js";

/**
 * The proxy's own host key: read from `file`, or generated there (Ed25519, mode 0600) on first
 * start, so clients see the same key across restarts. Replicas behind one address should share the
 * file. Returns the private key in OpenSSH format and its public fingerprint.
 */
export function loadOrCreateHostKey(file: string): { privateKey: Buffer; fingerprint: string } {
  let text: Buffer;
  try {
    text = readFileSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    try {
      // `wx`: another replica starting at the same moment keeps its key; we read it below.
      writeFileSync(file, newEd25519HostKey("jitgate ssh proxy"), { mode: 0o600, flag: "wx" });
    } catch (writeError) {
      if ((writeError as NodeJS.ErrnoException).code !== "EEXIST") throw writeError;
    }
    text = readFileSync(file);
  }
  const parsed = ssh2.utils.parseKey(text);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error || !key.isPrivateKey()) {
    throw new Error(`${file} is not an SSH private key${key instanceof Error ? ` (${key.message})` : ""}`);
  }
  return { privateKey: text, fingerprint: sshFingerprint(key.getPublicSSH()) };
}

/**
 * A new Ed25519 key in OpenSSH's private key format, made with node:crypto. (ssh2's own
 * generateKeyPairSync drops a leading zero byte of the public key, about one key in 256, and writes
 * a file that neither it nor OpenSSH can read: the gateway then could not start.)
 */
export function newEd25519HostKey(comment: string): string {
  const jwk = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" });
  return openSshEd25519PrivateKey(Buffer.from(jwk.d!, "base64url"), Buffer.from(jwk.x!, "base64url"), comment, randomBytes(4));
}

/**
 * An Ed25519 key pair (32-byte seed and public key) as an unencrypted `openssh-key-v1` file
 * (OpenSSH's PROTOCOL.key); `check` is the private section's check integer.
 */
export function openSshEd25519PrivateKey(seed: Buffer, publicKey: Buffer, comment: string, check: Buffer): string {
  const string = (value: Buffer | string) => {
    const body = typeof value === "string" ? Buffer.from(value, "utf8") : value;
    const length = Buffer.alloc(4);
    length.writeUInt32BE(body.length);
    return Buffer.concat([length, body]);
  };
  const one = Buffer.from([0, 0, 0, 1]);
  const publicBlob = Buffer.concat([string("ssh-ed25519"), string(publicKey)]);
  const secret = Buffer.concat([check, check, string("ssh-ed25519"), string(publicKey), string(Buffer.concat([seed, publicKey])), string(comment)]);
  const padding = Buffer.from(Array.from({ length: (8 - (secret.length % 8)) % 8 }, (_, i) => i + 1));
  const body = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    string("none"),
    string("none"),
    string(Buffer.alloc(0)),
    one,
    string(publicBlob),
    string(Buffer.concat([secret, padding])),
  ]);
  const lines = body.toString("base64").match(/.{1,70}/g)!;
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join("\n")}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

/** A target's pinned host key (`ssh-ed25519 AAAA…`) as its type and blob. */
export function parsePinnedHostKey(text: string): { type: string; blob: Buffer; fingerprint: string } {
  const [type, base64] = text.trim().split(/\s+/);
  const blob = Buffer.from(base64 ?? "", "base64");
  return { type: type ?? "", blob, fingerprint: sshFingerprint(blob) };
}

/**
 * The host key algorithms to offer for a pinned key's type: the server must present exactly that
 * key (RFC 4253 §7.1 negotiation picks the first we list that it has).
 */
export function hostKeyAlgorithms(type: string): string[] {
  if (type === "ssh-rsa") return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];
  return [type];
}
