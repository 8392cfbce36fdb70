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
    const pair = ssh2.utils.generateKeyPairSync("ed25519", { comment: "jitgate ssh proxy" });
    try {
      // `wx`: another replica starting at the same moment keeps its key; we read it below.
      writeFileSync(file, pair.private, { mode: 0o600, flag: "wx" });
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
