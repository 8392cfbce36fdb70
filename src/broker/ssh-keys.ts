import { createHash } from "node:crypto";
import { and, asc, eq, or } from "drizzle-orm";
import ssh2 from "ssh2";
import { people, sshKeys } from "../db/schema.js";
import { appendAudit } from "./audit.js";
import type { Broker, Grant, Person } from "./broker.js";
import { InvalidSshKey, SshKeyNotFound, SshKeyRegistered } from "./errors.js";
import { newId } from "./ids.js";

export type SshKeyRow = typeof sshKeys.$inferSelect;

/** OpenSSH's fingerprint of a public key blob: `SHA256:` and unpadded base64 (ssh-keygen -l). */
export function sshFingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** Parses one public key in authorized_keys form (`ssh-ed25519 AAAA… comment`). */
export function parsePublicKey(text: string): { type: string; blob: Buffer; publicKey: string; comment: string | null; fingerprint: string } {
  const trimmed = text.trim().replace(/\s+/g, " ");
  if (trimmed === "") throw new InvalidSshKey("paste a public key, like: key add ssh-ed25519 AAAA… you@laptop");
  if (/PRIVATE KEY/.test(trimmed)) {
    throw new InvalidSshKey("that is a private key: never share it. Paste the public key (the .pub file) instead");
  }
  const parsed = ssh2.utils.parseKey(trimmed);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) {
    throw new InvalidSshKey(`not an SSH public key${key instanceof Error ? ` (${key.message})` : ""}; paste a line like ssh-ed25519 AAAA… you@laptop`);
  }
  if (key.isPrivateKey()) throw new InvalidSshKey("that is a private key: never share it. Paste the public key (the .pub file) instead");
  const blob = key.getPublicSSH();
  const [, , ...comment] = trimmed.split(" ");
  return {
    type: key.type,
    blob,
    publicKey: `${key.type} ${blob.toString("base64")}`,
    comment: comment.join(" ") || null,
    fingerprint: sshFingerprint(blob),
  };
}

/**
 * Public keys people registered with `key add`, so they can log in to the SSH proxy with their key
 * instead of the grant's password. A key only says who is connecting; the grant still decides
 * whether they may.
 */
export class SshKeys {
  constructor(private readonly broker: Broker) {}

  async add(person: Person, text: string): Promise<SshKeyRow> {
    const key = parsePublicKey(text);
    const now = this.broker.clock.now();
    return this.broker.context.db.transaction(async (tx) => {
      const [row] = await tx
        .insert(sshKeys)
        .values({ id: newId("key"), personId: person.id, fingerprint: key.fingerprint, publicKey: key.publicKey, comment: key.comment, createdAt: now })
        .onConflictDoNothing()
        .returning();
      if (!row) throw new SshKeyRegistered(key.fingerprint);
      await appendAudit(tx, now, {
        kind: "ssh_key.added",
        actorId: person.id,
        data: { keyId: row.id, fingerprint: row.fingerprint, type: key.type, comment: key.comment },
      });
      return row;
    });
  }

  async list(person: Person): Promise<SshKeyRow[]> {
    return this.broker.context.db.select().from(sshKeys).where(eq(sshKeys.personId, person.id)).orderBy(asc(sshKeys.createdAt));
  }

  /** Removes one of the person's keys, named by id or fingerprint. */
  async remove(person: Person, key: string): Promise<SshKeyRow> {
    const now = this.broker.clock.now();
    const name = key.trim();
    return this.broker.context.db.transaction(async (tx) => {
      const [row] = await tx
        .delete(sshKeys)
        .where(and(eq(sshKeys.personId, person.id), or(eq(sshKeys.id, name), eq(sshKeys.fingerprint, name))))
        .returning();
      if (!row) throw new SshKeyNotFound(name);
      await appendAudit(tx, now, { kind: "ssh_key.removed", actorId: person.id, data: { keyId: row.id, fingerprint: row.fingerprint } });
      return row;
    });
  }

  /** Who registered this key blob, if anyone. */
  async owner(blob: Buffer): Promise<{ person: Person; key: SshKeyRow } | undefined> {
    this.broker.grants.credentialWork.lookups += 1;
    const [row] = await this.broker.context.db
      .select({ person: people, key: sshKeys })
      .from(sshKeys)
      .innerJoin(people, eq(people.id, sshKeys.personId))
      .where(eq(sshKeys.fingerprint, sshFingerprint(blob)));
    return row;
  }

  /** The person's live grant on a target, if any. */
  async liveGrant(personId: string, target: string): Promise<Grant | undefined> {
    return this.broker.grants.liveOrExpire(personId, target, "login");
  }
}
