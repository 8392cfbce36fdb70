import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { openResult, sealResult, SealError, SealKeyring } from "../src/infra/seal.js";

/** The envelope encryption of masked originals (issue 16, must 2), on its own. */

const key = (id: string) => ({ id, key: randomBytes(32) });

describe("seal keys", () => {
  it("seals under a session's data key that only the configured key unwraps; the blob opens for its own session and statement only", () => {
    const k1 = key("k1");
    const ring = new SealKeyring(k1);
    const made = ring.newDataKey("ses_a")!;
    expect(made.keyId).toBe("k1");
    expect(made.wrapped.includes(made.dataKey)).toBe(false);
    const plain = Buffer.from('[[0,1,"ann@example.com"]]');
    const sealed = sealResult(made.dataKey, "ses_a", 3, plain);
    expect(sealed.includes(plain)).toBe(false);
    expect(openResult(ring.unwrap("ses_a", "k1", made.wrapped), "ses_a", 3, sealed).equals(plain)).toBe(true);
    // Moved to another statement or session, it does not open.
    expect(() => openResult(made.dataKey, "ses_a", 4, sealed)).toThrow(SealError);
    expect(() => openResult(made.dataKey, "ses_b", 3, sealed)).toThrow(SealError);
    // The wrapped key is bound to its session too.
    expect(() => ring.unwrap("ses_b", "k1", made.wrapped)).toThrow(/does not open session ses_b's data key/);
    // One changed byte and nothing opens.
    const changed = Buffer.from(sealed);
    changed[changed.length - 1]! ^= 1;
    expect(() => openResult(made.dataKey, "ses_a", 3, changed)).toThrow(SealError);
  });

  it("rotation: a retired key still unwraps what it wrapped and wraps nothing new; a forgotten key is named", () => {
    const k1 = key("k1");
    const k2 = key("k2");
    const old = new SealKeyring(k1).newDataKey("ses_old")!;
    const rotated = new SealKeyring(k2, [k1]);
    expect(rotated.unwrap("ses_old", "k1", old.wrapped).equals(old.dataKey)).toBe(true);
    expect(rotated.newDataKey("ses_new")!.keyId).toBe("k2");
    expect(() => new SealKeyring(k2).unwrap("ses_old", "k1", old.wrapped)).toThrow(
      'the originals of session ses_old are sealed under the seal key "k1", which is not configured (neither audit.sealKey nor audit.retiredSealKeys): add it as a retired key to reveal them',
    );
    // The same id with another key: refused, not garbage.
    expect(() => new SealKeyring({ id: "k1", key: randomBytes(32) }).unwrap("ses_old", "k1", old.wrapped)).toThrow(/does not open/);
    // No current key: nothing is sealed at all.
    expect(new SealKeyring(undefined, [k1]).newDataKey("ses_x")).toBeUndefined();
  });

  it("reads keys as configured (base64 of 32 bytes) and refuses another length", () => {
    const text = randomBytes(32).toString("base64");
    const ring = SealKeyring.fromConfig({ sealKey: { id: "k9", key: text }, retiredSealKeys: [] });
    expect(ring.current?.key.equals(Buffer.from(text, "base64"))).toBe(true);
    expect(() => new SealKeyring({ id: "short", key: randomBytes(16) })).toThrow('the seal key "short" is 16 bytes, not 32');
  });
});
