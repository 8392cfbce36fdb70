import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from "drizzle-orm/pg-core";
import type { ExtractTablesWithRelations } from "drizzle-orm";
import * as schema from "./schema.js";

export type Schema = typeof schema;
/** Both drivers (node-postgres and PGlite) yield this one type; nothing above `db/` knows which. */
export type Database = PgDatabase<PgQueryResultHKT, Schema>;
export type Transaction = PgTransaction<PgQueryResultHKT, Schema, ExtractTablesWithRelations<Schema>>;
/** A query runner: the database itself or a transaction inside it. */
export type Executor = Database | Transaction;

export interface Storage {
  readonly db: Database;
  readonly kind: "postgres" | "pglite";
  /** Where the data lives, for start-up messages (password removed). */
  readonly location: string;
  ping(): Promise<void>;
  migrate(): Promise<void>;
  close(): Promise<void>;
}

/** src/db/client.ts and dist/db/client.js both sit two levels below the package root. */
export const MIGRATIONS_FOLDER = resolve(dirname(fileURLToPath(import.meta.url)), "../../migrations");

// Any fixed number works: it only has to be the same in every replica that migrates at start-up.
const MIGRATION_LOCK = 7_236_001;

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparseable URL)";
  }
}

export interface StorageOptions {
  /** postgres://… ; absent → embedded PGlite under `dataDir`. */
  url?: string | undefined;
  dataDir: string;
  /** PGlite only: keep everything in memory (tests). */
  inMemory?: boolean;
  poolSize?: number;
  /**
   * PostgreSQL only: commit without waiting for the WAL flush (`synchronous_commit = off`). A
   * committed row is visible and ordered at once; only a crash of the database server itself can
   * lose the last moments of such commits.
   */
  asynchronousCommit?: boolean;
}

export async function openStorage(options: StorageOptions): Promise<Storage> {
  return options.url ? openPostgres(options.url, options.poolSize ?? 10, options.asynchronousCommit ?? false) : openPglite(options);
}

async function openPostgres(url: string, poolSize: number, asynchronousCommit: boolean): Promise<Storage> {
  const { default: pg } = await import("pg");
  const { drizzle } = await import("drizzle-orm/node-postgres");
  const { migrate } = await import("drizzle-orm/node-postgres/migrator");
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    connectionTimeoutMillis: 5_000,
    ...(asynchronousCommit ? { options: "-c synchronous_commit=off" } : {}),
  });
  // An idle client that loses its server must not crash the process; the next query reports it.
  pool.on("error", () => {});
  // Nor one that is checked out: pg-pool takes its own listener off a client while it is lent, and
  // a backend terminated mid-transaction (failover, restart, pg_terminate_backend) then emits
  // "Connection terminated unexpectedly" with nobody listening. The query in flight already fails
  // with the server's error, and the pool drops the dead client when it comes back.
  pool.on("connect", (client) => client.on("error", () => {}));
  const db = drizzle(pool, { schema }) as unknown as Database;
  let closed = false;
  return {
    db,
    kind: "postgres",
    location: redactUrl(url),
    async ping() {
      await db.execute(sql`select 1`);
    },
    async migrate() {
      // Replicas starting together must not race on the migrations table.
      const client = await pool.connect();
      try {
        await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK]);
        await migrate(drizzle(client, { schema }), { migrationsFolder: MIGRATIONS_FOLDER });
      } finally {
        await client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
        client.release();
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}

async function openPglite(options: StorageOptions): Promise<Storage> {
  const { PGlite } = await import("@electric-sql/pglite");
  const { drizzle } = await import("drizzle-orm/pglite");
  const { migrate } = await import("drizzle-orm/pglite/migrator");
  let location = "memory";
  let client;
  if (options.inMemory) client = new PGlite();
  else {
    location = resolve(join(options.dataDir, "pglite"));
    mkdirSync(location, { recursive: true });
    client = new PGlite(location);
  }
  await client.waitReady;
  const db = drizzle(client, { schema }) as unknown as Database;
  let closed = false;
  return {
    db,
    kind: "pglite",
    location,
    async ping() {
      await db.execute(sql`select 1`);
    },
    async migrate() {
      await migrate(drizzle(client, { schema }), { migrationsFolder: MIGRATIONS_FOLDER });
    },
    async close() {
      if (closed) return;
      closed = true;
      await client.close();
    },
  };
}
