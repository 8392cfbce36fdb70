export const DEMO_SOURCE = "demo mode (no jitgate.yaml)";

/** The demo's people: one asks, the other approves (the target's only approver). */
export const DEMO_USERS = [
  { id: "dev", name: "Dana Developer", email: "dev@demo.jitgate.local" },
  { id: "lead", name: "Lee Lead", email: "lead@demo.jitgate.local" },
] as const;

export const DEMO_TARGET = "demo";

export interface DemoOverrides {
  /** Where the console and the other HTTP endpoints listen (default 127.0.0.1:3000). */
  httpListen?: string;
  /** The PostgreSQL proxy (default 127.0.0.1:15432); also the address in the connection line. */
  proxyListen?: string;
  /** The demo target itself (default 127.0.0.1:15499). */
  targetListen?: string;
  dataDir?: string;
  /** Replaces `database:` (tests use their own PostgreSQL database); absent → embedded PGlite. */
  database?: string;
  redis?: string;
  redisPrefix?: string;
  /** How long a held statement waits for a decision (default 10m). */
  reviewTimeout?: string;
  /** The console's people (default DEMO_USERS); the target's approver stays the second of DEMO_USERS. */
  users?: readonly { id: string; name: string; email: string }[];
}

const quote = (text: string) => JSON.stringify(text);

/**
 * The configuration `npm start` runs with when there is no jitgate.yaml: the console (people pick
 * themselves), a demo PostgreSQL target next to the gateway, masking and review rules on. Every
 * listener is on 127.0.0.1: the console has no login in demo mode, so it must not be reachable
 * from other machines.
 */
export function demoConfigYaml(overrides: DemoOverrides = {}): string {
  const target = overrides.targetListen ?? "127.0.0.1:15499";
  return `# jitgate demo mode: what runs when there is no jitgate.yaml (see README, "Try it in five minutes").
http:
  listen: ${overrides.httpListen ?? "127.0.0.1:3000"}
${overrides.dataDir ? `dataDir: ${quote(overrides.dataDir)}\n` : ""}${overrides.database ? `database: ${quote(overrides.database)}\n` : ""}${overrides.redis ? `redis: ${quote(overrides.redis)}\n` : ""}${overrides.redisPrefix ? `redisPrefix: ${quote(overrides.redisPrefix)}\n` : ""}demo:
  enabled: true
  postgresListen: ${target}
console:
  enabled: true
  channel: access-requests
  users:
${(overrides.users ?? DEMO_USERS).map((u) => `    - { id: ${u.id}, name: ${quote(u.name)}, email: ${u.email} }`).join("\n")}
proxy:
  postgres:
    listen: ${overrides.proxyListen ?? "127.0.0.1:15432"}
defaults:
  reviewTimeout: ${overrides.reviewTimeout ?? "10m"}
targets:
  - name: ${DEMO_TARGET}
    kind: postgres
    # PGlite's socket server takes any user name and password; it listens on 127.0.0.1 only.
    upstream: postgres://demo:demo@${target}/postgres
    approvers: [${DEMO_USERS[1].email}]
    maxDuration: 8h
    commands:
      block: [drop-database, alter-system, copy-program, server-files, replication]
      review: [delete-without-where, update-without-where, ddl, truncate, grant-revoke, set-role, large-objects, remote-connection]
      unverifiable: review
    mask:
      - { detect: email }
      - { detect: credit-card }
`;
}
