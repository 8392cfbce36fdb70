import { execFileSync } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ssh2 from "ssh2";
import { afterAll, describe, expect, it } from "vitest";
import { loadOrCreateHostKey, openSshEd25519PrivateKey } from "../src/proxy/ssh/host-key.js";

const dir = mkdtempSync(join(tmpdir(), "jitgate-host-key-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The Ed25519 public key of a 32-byte seed (PKCS#8 DER around the seed, then the JWK's x). */
function publicOf(seed: Buffer): Buffer {
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  const jwk = createPrivateKey({ key: der, format: "der", type: "pkcs8" }).export({ format: "jwk" });
  return Buffer.from(jwk.x!, "base64url");
}

/** What OpenSSH itself reads from the key file: its public key line. */
function sshKeygenPublic(file: string): string {
  return execFileSync("ssh-keygen", ["-y", "-f", file], { encoding: "utf8" }).trim();
}

describe("the SSH proxy's host key", () => {
  it("is written so that ssh2 and OpenSSH read it, also when its public key starts with a zero byte", () => {
    // ssh2's own generator dropped that byte (one key in 256) and wrote a file nothing could read.
    let seed = Buffer.alloc(32);
    for (let i = 0; publicOf(seed)[0] !== 0; i++) seed = Buffer.from(Buffer.alloc(32, 0).fill(i % 256, 0, 1).fill(Math.floor(i / 256), 1, 2));
    const publicKey = publicOf(seed);
    expect(publicKey[0]).toBe(0);
    const file = join(dir, "zero_lead_key");
    writeFileSync(file, openSshEd25519PrivateKey(seed, publicKey, "jitgate ssh proxy", Buffer.from([1, 2, 3, 4])), { mode: 0o600 });
    const parsed = ssh2.utils.parseKey(readFileSync(file));
    expect(parsed).not.toBeInstanceOf(Error);
    const key = Array.isArray(parsed) ? parsed[0]! : (parsed as ssh2.ParsedKey);
    expect(key.isPrivateKey()).toBe(true);
    const expected = `ssh-ed25519 ${Buffer.concat([Buffer.from("0000000b", "hex"), Buffer.from("ssh-ed25519"), Buffer.from("00000020", "hex"), publicKey]).toString("base64")}`;
    expect(key.getPublicSSH().toString("base64")).toBe(expected.split(" ")[1]);
    expect(sshKeygenPublic(file)).toBe(`${expected} jitgate ssh proxy`);
    // And the gateway starts on it.
    expect(loadOrCreateHostKey(file).fingerprint).toMatch(/^SHA256:/);
  });

  it("is made on first start (mode 0600), readable by OpenSSH, and the same key on the next start", () => {
    const fingerprints = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const file = join(dir, `made_${i}`);
      const first = loadOrCreateHostKey(file);
      expect(loadOrCreateHostKey(file).fingerprint).toBe(first.fingerprint);
      fingerprints.add(first.fingerprint);
      if (i === 0) {
        expect(statSync(file).mode & 0o777).toBe(0o600);
        expect(sshKeygenPublic(file)).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI/);
      }
    }
    expect(fingerprints.size).toBe(300);
  });
});
