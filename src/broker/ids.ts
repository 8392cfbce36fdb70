import { randomBytes } from "node:crypto";

// Crockford-style alphabet without look-alikes: ids are typed into `/access revoke grt_…`.
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

function randomId(length: number): string {
  const bytes = randomBytes(length);
  let out = "";
  for (const byte of bytes) out += ALPHABET[byte & 31];
  return out;
}

export type IdKind = "req" | "grt" | "dec" | "ses" | "hld" | "hdc" | "msg" | "usr" | "key" | "bgr";

export function newId(kind: IdKind): string {
  return `${kind}_${randomId(10)}`;
}
