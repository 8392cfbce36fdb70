import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

/**
 * Envelope encryption of the originals of masked values (issue 16, must 2), with node:crypto only.
 *
 * Every session gets a data key (DEK) of its own, 32 random bytes. What it seals is AES-256-GCM
 * with associated data binding the session id and the statement's seq, so a sealed blob moved to
 * another session or statement does not open. The DEK is stored wrapped (AES-256-GCM too) by a
 * key-encryption key (KEK) from the configuration, under the KEK's id, with the session id as
 * associated data. The database alone therefore never suffices: the KEK lives only in the
 * configuration (an environment variable). Rotation: a new current key seals new sessions; old
 * keys listed as retired still unwrap the sessions sealed under them.
 *
 * Blob layout: `[12-byte IV][16-byte tag][ciphertext]`.
 */

const IV = 12;
const TAG = 16;

export interface SealKey {
  id: string;
  /** 32 bytes. */
  key: Buffer;
}

/** The seal key cannot open what it is asked to (unknown key id, wrong key, a changed blob). */
export class SealError extends Error {
  readonly code = "seal_error";
}

export class SealKeyring {
  readonly #byId = new Map<string, Buffer>();

  /** `current` seals new sessions; `retired` only open old ones. Keys as configured: base64 of 32 bytes. */
  constructor(
    readonly current: SealKey | undefined,
    retired: readonly SealKey[] = [],
  ) {
    for (const key of [...(current ? [current] : []), ...retired]) {
      if (key.key.length !== 32) throw new SealError(`the seal key "${key.id}" is ${key.key.length} bytes, not 32`);
      this.#byId.set(key.id, key.key);
    }
  }

  static fromConfig(audit: { sealKey?: { id: string; key: string } | undefined; retiredSealKeys?: readonly { id: string; key: string }[] | undefined }): SealKeyring {
    const decode = (k: { id: string; key: string }): SealKey => ({ id: k.id, key: Buffer.from(k.key.trim(), "base64") });
    return new SealKeyring(audit.sealKey ? decode(audit.sealKey) : undefined, (audit.retiredSealKeys ?? []).map(decode));
  }

  /** A new session's data key, and its wrapped form to store; undefined without a current key. */
  newDataKey(sessionId: string): { dataKey: Buffer; keyId: string; wrapped: Buffer } | undefined {
    if (!this.current) return undefined;
    const dataKey = randomBytes(32);
    return { dataKey, keyId: this.current.id, wrapped: encrypt(this.current.key, dataKey, wrapAad(sessionId, this.current.id)) };
  }

  /** The session's data key, unwrapped with the key it names (current or retired). */
  unwrap(sessionId: string, keyId: string, wrapped: Buffer): Buffer {
    const kek = this.#byId.get(keyId);
    if (!kek) {
      throw new SealError(
        `the originals of session ${sessionId} are sealed under the seal key "${keyId}", which is not configured (neither audit.sealKey nor audit.retiredSealKeys): add it as a retired key to reveal them`,
      );
    }
    try {
      return decrypt(kek, wrapped, wrapAad(sessionId, keyId));
    } catch {
      throw new SealError(`the seal key "${keyId}" as configured does not open session ${sessionId}'s data key (a different key under the same id?)`);
    }
  }
}

const wrapAad = (sessionId: string, keyId: string) => Buffer.from(`jitgate-dek/1\n${sessionId}\n${keyId}`, "utf8");
const resultAad = (sessionId: string, seq: number) => Buffer.from(`jitgate-results/1\n${sessionId}\n${seq}`, "utf8");

/** Seals one statement's originals under the session's data key. */
export function sealResult(dataKey: Buffer, sessionId: string, seq: number, plain: Buffer): Buffer {
  return encrypt(dataKey, plain, resultAad(sessionId, seq));
}

/** Opens what `sealResult` sealed for this very session and statement. */
export function openResult(dataKey: Buffer, sessionId: string, seq: number, sealed: Buffer): Buffer {
  try {
    return decrypt(dataKey, sealed, resultAad(sessionId, seq));
  } catch {
    throw new SealError(`the sealed originals of statement ${seq} of session ${sessionId} do not open (changed, or not this statement's)`);
  }
}

function encrypt(key: Buffer, plain: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(IV);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

function decrypt(key: Buffer, blob: Buffer, aad: Buffer): Buffer {
  if (blob.length < IV + TAG) throw new SealError("too short to be sealed");
  const decipher = createDecipheriv("aes-256-gcm", key, blob.subarray(0, IV));
  decipher.setAAD(aad);
  decipher.setAuthTag(blob.subarray(IV, IV + TAG));
  return Buffer.concat([decipher.update(blob.subarray(IV + TAG)), decipher.final()]);
}
