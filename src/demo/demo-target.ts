import { mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

/**
 * Test card numbers published by the card schemes for integration testing (Luhn-valid, never
 * issued to anyone): what the masking rules of the demo find and hide.
 */
const TEST_CARDS = [
  "4111 1111 1111 1111",
  "5555 5555 5555 4444",
  "4012 8888 8888 1881",
  "5105 1051 0510 5100",
  "4242 4242 4242 4242",
  "6011 1111 1111 1117",
  "3530 1113 3330 0000",
  "2223 0031 2200 3222",
  "4000 0566 5566 5556",
  "5200 8282 8282 8210",
] as const;

const FIRST_NAMES = ["ada", "brian", "chloe", "dmitri", "elena", "farid", "grace", "hiro", "ines", "jonas"] as const;
const STATUSES = ["paid", "shipped", "stuck", "refunded"] as const;

/** The seeded `orders` rows: fake customers (example.com, RFC 2606), test cards, a few stuck. */
export const DEMO_ORDER_COUNT = 20;

function seedSql(): string {
  const rows: string[] = [];
  for (let i = 0; i < DEMO_ORDER_COUNT; i += 1) {
    const name = FIRST_NAMES[i % FIRST_NAMES.length]!;
    const email = `${name}.${i < FIRST_NAMES.length ? "customer" : "buyer"}@example.com`;
    const card = TEST_CARDS[i % TEST_CARDS.length]!;
    const amount = (((i * 37) % 180) + 12.5).toFixed(2);
    const status = STATUSES[i % STATUSES.length]!;
    // Fixed times, so the demo looks the same on every start.
    const createdAt = new Date(Date.UTC(2026, 0, 5, 9, 0) + i * 3_600_000 * 7).toISOString();
    rows.push(`(${i + 1}, '${email}', '${card}', ${amount}, '${status}', '${createdAt}')`);
  }
  return `
CREATE TABLE IF NOT EXISTS orders (
  id integer PRIMARY KEY,
  customer_email text NOT NULL,
  card_number text NOT NULL,
  amount numeric(10, 2) NOT NULL,
  status text NOT NULL,
  created_at timestamptz NOT NULL
);
INSERT INTO orders (id, customer_email, card_number, amount, status, created_at) VALUES
${rows.join(",\n")}
ON CONFLICT (id) DO NOTHING;`;
}

export interface DemoTarget {
  /** Where it listens (the port is the real one when 0 was asked for). */
  readonly address: AddressInfo;
  /** The URL the gateway's `demo` target uses as its upstream. */
  readonly upstreamUrl: string;
  readonly db: PGlite;
  close(): Promise<void>;
}

export interface DemoTargetOptions {
  /** host:port, like 127.0.0.1:15499 (port 0 picks a free one). */
  listen: string;
  /** Where PGlite keeps its files; absent → in memory (the demo starts afresh every time). */
  dataDir?: string;
  /**
   * Client connections at once. PGlite is one single-user backend: pglite-socket multiplexes
   * connections onto it one query at a time (a transaction keeps it until it ends), so a few
   * psql sessions work side by side, but they share one session (SET, temporary tables).
   */
  maxConnections?: number;
}

/**
 * The demo's PostgreSQL target: an embedded PGlite served over the wire protocol by
 * pglite-socket, seeded with an `orders` table holding emails and card numbers. It accepts any
 * user name and password: it listens on the loopback interface only, and the gateway is the one
 * that connects to it.
 */
export async function startDemoTarget(options: DemoTargetOptions): Promise<DemoTarget> {
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(options.listen);
  if (!match) throw new Error(`demo.postgresListen: expected host:port, got ${options.listen}`);
  const host = match[1]!.replace(/^\[|\]$/g, "");
  if (options.dataDir) mkdirSync(options.dataDir, { recursive: true });
  const db = await PGlite.create(options.dataDir ? { dataDir: options.dataDir } : {});
  try {
    await db.exec(seedSql());
    const server = new PGLiteSocketServer({ db, host, port: Number(match[2]), maxConnections: options.maxConnections ?? 16 });
    await server.start();
    // getServerConn() is "host:port" with the port the OS gave.
    const port = Number(server.getServerConn().split(":").pop());
    const address: AddressInfo = { address: host, family: host.includes(":") ? "IPv6" : "IPv4", port };
    const hostInUrl = host.includes(":") ? `[${host}]` : host;
    let closing: Promise<void> | undefined;
    return {
      address,
      upstreamUrl: `postgres://demo:demo@${hostInUrl}:${port}/postgres`,
      db,
      close() {
        closing ??= (async () => {
          try {
            await server.stop();
          } finally {
            await db.close();
          }
        })();
        return closing;
      },
    };
  } catch (error) {
    await db.close().catch(() => {});
    throw error;
  }
}
