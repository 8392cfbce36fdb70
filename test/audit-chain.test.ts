import { eq, sql } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { auditHash, GENESIS_HASH, recordAudit, verifyAuditChain, type AuditRow } from "../src/broker/audit.js";
import { openStorage, type Storage } from "../src/db/client.js";
import { auditEvents } from "../src/db/schema.js";
import { testPostgresStorage } from "./support/databases.js";

// Real PostgreSQL only: two pools (as two replicas would have) appending to one chain at once.

const T0 = Date.parse("2026-11-22T10:00:00Z");
const opened: Storage[] = [];

afterEach(async () => {
  // Replicas first, then the owner, which drops the database.
  while (opened.length > 0) await opened.pop()!.close();
});

async function rows<T>(storage: Storage, query: ReturnType<typeof sql>): Promise<T[]> {
  return ((await storage.db.execute(query)) as unknown as { rows: T[] }).rows;
}

/**
 * A fresh database with a chain of 22 events: one from the owner, then 2×10 at once from two
 * separate pools of their own, then one more from the owner.
 */
async function seededChain(label: string) {
  const owner = await testPostgresStorage(label);
  opened.push(owner);
  const replicas = [
    await openStorage({ url: owner.url, dataDir: "unused", poolSize: 10 }),
    await openStorage({ url: owner.url, dataDir: "unused", poolSize: 10 }),
  ] as const;
  opened.push(...replicas);

  const appended: AuditRow[] = [];
  appended.push(await recordAudit(owner.db, new Date(T0), { kind: "test.first", data: { n: 0 } }));
  const concurrent = await Promise.all(
    replicas.flatMap((replica, r) =>
      Array.from({ length: 10 }, (_, i) =>
        recordAudit(replica.db, new Date(T0 + 1_000 * (r * 10 + i + 1)), {
          kind: "test.concurrent",
          actorId: `replica-${r}`,
          target: `target-${i % 3}`,
          data: { replica: r, i, nested: { b: [1, { y: 2, x: 1 }], a: "é" } },
        }),
      ),
    ),
  );
  appended.push(...concurrent);
  appended.push(await recordAudit(owner.db, new Date(T0 + 60_000), { kind: "test.last", data: { n: 21 } }));
  return { owner, replicas, appended };
}

/** As the superuser, with the append-only trigger disabled for the length of one transaction. */
async function tamper(storage: Storage, statement: ReturnType<typeof sql>): Promise<void> {
  await storage.db.transaction(async (tx) => {
    await tx.execute(sql`alter table audit_events disable trigger audit_events_no_update_delete`);
    await tx.execute(statement);
    await tx.execute(sql`alter table audit_events enable trigger audit_events_no_update_delete`);
  });
}

describe("audit chain on PostgreSQL", () => {
  it("appends from two pools at once leave a gapless chain that verifies", async () => {
    const { owner, replicas, appended } = await seededChain("chain");
    expect(appended).toHaveLength(22);

    const seqs = appended.map((row) => row.seq).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));

    const stored = await rows<{ seq: string; prev_hash: string; hash: string }>(
      owner,
      sql`select seq::text, prev_hash, hash from audit_events order by audit_events.seq`,
    );
    expect(stored.map((row) => Number(row.seq))).toEqual(seqs);
    expect(new Set(stored.map((row) => row.hash)).size).toBe(22);
    expect(stored[0]!.prev_hash).toBe(GENESIS_HASH);
    stored.slice(1).forEach((row, i) => expect(row.prev_hash).toBe(stored[i]!.hash));
    // What each append returned is what was stored.
    for (const row of appended) expect(row.hash).toBe(stored[row.seq - 1]!.hash);

    const verdict = { ok: true, count: 22, head: stored[21]!.hash };
    expect(await verifyAuditChain(owner.db)).toEqual(verdict);
    // Any replica sees the same chain; a small batch size walks it in several pages.
    expect(await verifyAuditChain(replicas[0].db, 5)).toEqual(verdict);
    expect(await verifyAuditChain(replicas[1].db, 1)).toEqual(verdict);
  });

  it("finds a row altered by a superuser with the trigger disabled", async () => {
    const { owner } = await seededChain("chain_altered");
    const change = sql`update audit_events set data = jsonb_set(data, '{i}', '99') where seq = 7`;

    // Without disabling the trigger, not even the superuser can.
    await expect(owner.db.execute(change)).rejects.toMatchObject({ cause: { message: expect.stringMatching(/append-only: UPDATE refused/) } });
    expect(await verifyAuditChain(owner.db)).toMatchObject({ ok: true, count: 22 });

    await tamper(owner, change);
    const [trigger] = await rows<{ tgenabled: string }>(
      owner,
      sql`select tgenabled from pg_trigger where tgname = 'audit_events_no_update_delete'`,
    );
    expect(trigger!.tgenabled).toBe("O"); // re-enabled
    const [altered] = await rows<{ i: number }>(owner, sql`select (data->>'i')::int as i from audit_events where seq = 7`);
    expect(altered!.i).toBe(99);

    const verdict = await verifyAuditChain(owner.db);
    expect(verdict).toMatchObject({ ok: false, seq: 7, count: 6 });
    expect(verdict.ok === false && verdict.problem).toMatch(/altered/);
  });

  it("an altered row whose hash was recomputed breaks the next link", async () => {
    const { owner } = await seededChain("chain_rehashed");
    const [original] = await owner.db.select().from(auditEvents).where(eq(auditEvents.seq, 7));
    // Someone who knows the hashing rule rewrites row 7 and gives it a matching hash.
    const forged = { ...original!, data: { ...original!.data, forged: true } };
    const forgedHash = auditHash(forged);
    await tamper(owner, sql`update audit_events set data = ${JSON.stringify(forged.data)}::jsonb, hash = ${forgedHash} where seq = 7`);

    const verdict = await verifyAuditChain(owner.db);
    expect(verdict).toMatchObject({ ok: false, seq: 8, count: 7 });
    expect(verdict.ok === false && verdict.problem).toMatch(/prev_hash does not match the hash of row 7/);
  });

  it("names the missing seq when a middle row is deleted", async () => {
    const { owner } = await seededChain("chain_deleted");
    await expect(owner.db.execute(sql`delete from audit_events where seq = 12`)).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/append-only: DELETE refused/) },
    });

    await tamper(owner, sql`delete from audit_events where seq = 12`);
    const [{ count } = { count: 0 }] = await rows<{ count: number }>(owner, sql`select count(*)::int as count from audit_events`);
    expect(count).toBe(21);

    const verdict = await verifyAuditChain(owner.db);
    expect(verdict).toMatchObject({ ok: false, seq: 12, count: 11 });
    expect(verdict.ok === false && verdict.problem).toBe("row 12 is missing (next is 13)");
  });
});
