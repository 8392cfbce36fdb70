import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, expect } from "vitest";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { formatDuration, isDuration, parseDuration } from "../src/config/duration.js";
import { ConfigError, loadConfig, parseConfig } from "../src/config/load.js";
import { configSchema } from "../src/config/schema.js";

const root = new URL("../", import.meta.url);
const readRepoFile = (path: string) => readFileSync(new URL(path, root), "utf8");

/** The problems `parseConfig` reports for `text`, or a failure if it accepts it. */
function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, "test.yaml", env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error("expected the configuration to be rejected");
}

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample";

// Shaped like the example in DESIGN.md's "Configuration" section.
const DESIGN_EXAMPLE = `
http: { listen: 0.0.0.0:3000 }
database: \${DATABASE_URL}
redis: \${REDIS_URL}
slack:
  botToken: \${SLACK_BOT_TOKEN}
  signingSecret: \${SLACK_SIGNING_SECRET}
  appToken: \${SLACK_APP_TOKEN}
  apiUrl: \${SLACK_API_URL}
  command: /access
  approvalChannel: C0APPROVALS
  digestChannel: C0DIGEST
teams:
  appId: \${MICROSOFT_APP_ID}
  appPassword: \${MICROSOFT_APP_PASSWORD}
  tenantId: \${MICROSOFT_TENANT_ID}
  serviceUrl: https://smba.trafficmanager.net/teams/
  approvalConversation: "19:abc@thread.tacv2"
proxy:
  postgres: { listen: 0.0.0.0:15432, publicAddress: db-gw.example.com:15432, tls: { cert: ./tls/cert.pem, key: ./tls/key.pem } }
  ssh: { listen: 0.0.0.0:2222, publicAddress: ssh-gw.example.com:2222, hostKeyFile: ./data/ssh_host_ed25519_key }
defaults: { maxDuration: 8h, approvals: 1, requestTtl: 1h, reviewTimeout: 10m, reminderBefore: 10m }
digest: { cron: "0 9 * * *", timezone: UTC }
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw_orders:\${ORDERS_DB_PASSWORD}@10.0.0.5:5432/orders
    approvers: [lead@example.com, U0LEAD42]
    approvals: 1
    maxDuration: 4h
    reasonPattern: "^(INC|JIRA)-[0-9]+"
    commands:
      block: [drop-database, "^ALTER SYSTEM"]
      review: [ddl, truncate, delete-without-where, update-without-where]
    mask: [{ column: email }, { column: card_number }, { detect: credit-card }]
  - name: web-1
    kind: ssh
    upstream: ssh://deploy@10.0.0.6:22
    privateKeyFile: ./secrets/web-1
    hostKey: "${HOST_KEY}"
    approvers: [lead@example.com]
    commands: { block: ["rm -rf /"], review: ["^sudo ", "^systemctl "] }
`;

const DESIGN_ENV = {
  DATABASE_URL: "postgres://jitgate:pw@db.internal:5432/jitgate",
  REDIS_URL: "redis://redis.internal:6379",
  SLACK_BOT_TOKEN: "xoxb-1",
  SLACK_SIGNING_SECRET: "signing",
  SLACK_APP_TOKEN: "xapp-1",
  SLACK_API_URL: "http://127.0.0.1:4010/api/",
  MICROSOFT_APP_ID: "app-id",
  MICROSOFT_APP_PASSWORD: "app-password",
  MICROSOFT_TENANT_ID: "tenant",
  ORDERS_DB_PASSWORD: "s3cret",
};

describe("a full configuration", () => {
  const config = parseConfig(DESIGN_EXAMPLE, "design.yaml", DESIGN_ENV);

  it.each([
    ["http.listen", config.http.listen, "0.0.0.0:3000"],
    ["database", config.database, "postgres://jitgate:pw@db.internal:5432/jitgate"],
    ["redis", config.redis, "redis://redis.internal:6379"],
    ["slack.botToken", config.slack?.botToken, "xoxb-1"],
    ["slack.signingSecret", config.slack?.signingSecret, "signing"],
    ["slack.appToken", config.slack?.appToken, "xapp-1"],
    ["slack.apiUrl", config.slack?.apiUrl, "http://127.0.0.1:4010/api/"],
    ["slack.command", config.slack?.command, "/access"],
    ["slack.approvalChannel", config.slack?.approvalChannel, "C0APPROVALS"],
    ["slack.digestChannel", config.slack?.digestChannel, "C0DIGEST"],
    ["teams.appId", config.teams?.appId, "app-id"],
    ["teams.appPassword", config.teams?.appPassword, "app-password"],
    ["teams.tenantId", config.teams?.tenantId, "tenant"],
    ["teams.serviceUrl", config.teams?.serviceUrl, "https://smba.trafficmanager.net/teams/"],
    ["teams.approvalConversation", config.teams?.approvalConversation, "19:abc@thread.tacv2"],
    ["proxy.postgres.listen", config.proxy.postgres?.listen, "0.0.0.0:15432"],
    ["proxy.postgres.publicAddress", config.proxy.postgres?.publicAddress, "db-gw.example.com:15432"],
    ["proxy.postgres.tls", config.proxy.postgres?.tls, { cert: "./tls/cert.pem", key: "./tls/key.pem" }],
    ["proxy.postgres.maxMessageSize", config.proxy.postgres?.maxMessageSize, 64 * 1024 * 1024],
    ["proxy.ssh.listen", config.proxy.ssh?.listen, "0.0.0.0:2222"],
    ["proxy.ssh.publicAddress", config.proxy.ssh?.publicAddress, "ssh-gw.example.com:2222"],
    ["proxy.ssh.hostKeyFile", config.proxy.ssh?.hostKeyFile, "./data/ssh_host_ed25519_key"],
    ["defaults.maxDuration", config.defaults.maxDuration, 8 * 3_600_000],
    ["defaults.approvals", config.defaults.approvals, 1],
    ["defaults.requestTtl", config.defaults.requestTtl, 3_600_000],
    ["defaults.reviewTimeout", config.defaults.reviewTimeout, 600_000],
    ["defaults.reminderBefore", config.defaults.reminderBefore, 600_000],
    ["digest.cron", config.digest.cron, "0 9 * * *"],
    ["digest.timezone", config.digest.timezone, "UTC"],
  ])("%s", (_path, actual, expected) => {
    expect(actual).toEqual(expected);
  });

  it("reads both targets, with ${ENV} substituted inside the upstream URL and durations in ms", () => {
    expect(config.targets).toEqual([
      {
        name: "orders-db",
        kind: "postgres",
        upstream: "postgres://gw_orders:s3cret@10.0.0.5:5432/orders",
        approvers: ["lead@example.com", "U0LEAD42"],
        approvals: 1,
        maxDuration: 4 * 3_600_000,
        reasonPattern: "^(INC|JIRA)-[0-9]+",
        commands: {
          block: ["drop-database", "^ALTER SYSTEM"],
          review: ["ddl", "truncate", "delete-without-where", "update-without-where"],
          unverifiable: "review",
        },
        mask: [{ column: "email" }, { column: "card_number" }, { detect: "credit-card" }],
        record: { rows: 100, bytes: 65_536 },
        stepUp: false,
        review: { approvals: 1 },
      },
      {
        name: "web-1",
        kind: "ssh",
        upstream: "ssh://deploy@10.0.0.6:22",
        privateKeyFile: "./secrets/web-1",
        hostKey: HOST_KEY,
        approvers: ["lead@example.com"],
        commands: { block: ["rm -rf /"], review: ["^sudo ", "^systemctl "], unverifiable: "review", shell: "review" },
        files: { block: [], review: [] },
        allowPortForwarding: false,
        allowAgentForwarding: false,
        stepUp: false,
        review: { approvals: 1 },
      },
    ]);
  });

  it("drops optional settings whose whole value is an unset ${VAR}", () => {
    const partial = parseConfig(DESIGN_EXAMPLE, "design.yaml", {
      SLACK_BOT_TOKEN: "xoxb-1",
      SLACK_SIGNING_SECRET: "signing",
      ORDERS_DB_PASSWORD: "s3cret",
      SLACK_APP_TOKEN: "", // empty counts as unset
    });
    expect(partial.database).toBeUndefined();
    expect(partial.redis).toBeUndefined();
    expect(partial.slack).toEqual({
      botToken: "xoxb-1",
      signingSecret: "signing",
      command: "/access",
      approvalChannel: "C0APPROVALS",
      digestChannel: "C0DIGEST",
      userGroupsRefresh: 300_000,
    });
    expect(partial.teams).toEqual({
      serviceUrl: "https://smba.trafficmanager.net/teams/",
      approvalConversation: "19:abc@thread.tacv2",
    });
  });
});

describe("defaults", () => {
  const expected = {
    http: { listen: "0.0.0.0:3000" },
    dataDir: "./data",
    log: { level: "info" },
    proxy: { loginFailures: { threshold: 5, window: 900_000, delay: 1_000, maxDelay: 30_000 } },
    defaults: {
      maxDuration: 28_800_000,
      approvals: 1,
      requestTtl: 3_600_000,
      reviewTimeout: 600_000,
      reminderBefore: 600_000,
      timezone: "UTC",
    },
    digest: { cron: "0 9 * * *", timezone: "UTC" },
    console: { enabled: false, users: [], channel: "access-requests" },
    demo: { enabled: false, postgresListen: "127.0.0.1:15499" },
    audit: { journal: { fsync: "interval", intervalMs: 5, maxBytes: 268_435_456 }, retiredSealKeys: [] },
    targets: [],
    auditors: [],
  };

  it.each([
    ["{}", "{}"],
    ["an empty file", ""],
    ["comments only", "# nothing configured yet\n"],
    ["empty sections", "http: {}\nproxy: {}\ndefaults: {}\ndigest: {}\nlog: {}\ntargets: []\n"],
  ])("%s yields the documented defaults", (_name, text) => {
    expect(parseConfig(text, "test.yaml", {})).toEqual(expected);
  });

  it("fills in a section's defaults when the section is given", () => {
    const config = parseConfig(
      `
proxy: { postgres: {}, ssh: {} }
slack: { botToken: x, appToken: y, approvalChannel: C1 }
teams: { approvalConversation: "19:a@thread.tacv2" }
targets:
  - { name: pg, kind: postgres, upstream: "postgresql://h/db", approvers: [a@example.com] }
  - { name: box, kind: ssh, upstream: "ssh://u@h", approvers: [U1], privateKeyFile: k, hostKey: "${HOST_KEY}" }
`,
      "test.yaml",
      {},
    );
    expect(config.proxy).toEqual({
      postgres: { listen: "0.0.0.0:15432", allowPlaintextTokens: false, maxMessageSize: 67_108_864 },
      loginFailures: { threshold: 5, window: 900_000, delay: 1_000, maxDelay: 30_000 },
      ssh: { listen: "0.0.0.0:2222", hostKeyFile: "./data/ssh_host_ed25519_key" },
    });
    expect(config.slack?.command).toBe("/access");
    expect(config.teams?.serviceUrl).toBe("https://smba.trafficmanager.net/teams/");
    expect(config.targets[0]).toEqual({
      name: "pg",
      kind: "postgres",
      upstream: "postgresql://h/db",
      approvers: ["a@example.com"],
      // No `commands`: the baseline.
      commands: {
        block: ["copy-program", "alter-system", "server-files", "replication"],
        review: ["set-role", "large-objects", "remote-connection"],
        unverifiable: "review",
      },
      mask: [],
      record: { rows: 100, bytes: 65_536 },
      stepUp: false,
      review: { approvals: 1 },
    });
    expect(config.targets[1]).toMatchObject({
      commands: { block: [], review: [] },
      allowPortForwarding: false,
      allowAgentForwarding: false,
    });
    expect(config.targets[0]).not.toHaveProperty("approvals");
    expect(config.targets[0]).not.toHaveProperty("maxDuration");
  });
});

describe("recorded results and the seal key (issue 16)", () => {
  const KEY = Buffer.alloc(32, 7).toString("base64");
  const pg = (extra: string) => `targets:\n  - name: pg\n    kind: postgres\n    upstream: postgresql://h/db\n    approvers: [a@example.com]\n${extra}`;

  it("record: 0 keeps nothing; a partial record keeps the other default", () => {
    expect(parseConfig(pg("    record: 0\n"), "test.yaml", {}).targets[0]).toMatchObject({ record: { rows: 0, bytes: 0 } });
    expect(parseConfig(pg("    record: { rows: 10 }\n"), "test.yaml", {}).targets[0]).toMatchObject({ record: { rows: 10, bytes: 65_536 } });
    expect(parseConfig(pg("    record: { bytes: 1MiB }\n"), "test.yaml", {}).targets[0]).toMatchObject({ record: { rows: 100, bytes: 1_048_576 } });
    expect(problemsOf(pg("    record: 5\n"))).toEqual(["targets[0].record: expected { rows: 100, bytes: 64KiB } or 0 (keep no result rows)"]);
  });

  it("a seal key from the environment, with retired keys; a key that is not 32 bytes of base64, or an id used twice, is refused with a clear error", () => {
    const config = parseConfig(`audit:\n  sealKey: { id: k2, key: "\${SEAL}" }\n  retiredSealKeys: [{ id: k1, key: ${KEY} }]\n`, "test.yaml", { SEAL: KEY });
    expect(config.audit.sealKey).toEqual({ id: "k2", key: KEY });
    expect(config.audit.retiredSealKeys).toEqual([{ id: "k1", key: KEY }]);
    // The value is never echoed: it may be a real key with a typo.
    expect(problemsOf(`audit:\n  sealKey: { id: k2, key: c2hvcnQ= }\n`)).toEqual(["audit.sealKey.key: expected base64 of 32 random bytes (openssl rand -base64 32)"]);
    expect(problemsOf(`audit:\n  retiredSealKeys: [{ id: k1, key: "${KEY}x" }]\n`)).toEqual(["audit.retiredSealKeys[0].key: expected base64 of 32 random bytes (openssl rand -base64 32)"]);
    expect(problemsOf(`audit:\n  sealKey: { id: "k 2", key: ${KEY} }\n`)).toEqual(["audit.sealKey.id: expected a key id of letters, digits, '.', '_' or '-' (like k1) (got \"k 2\")"]);
    expect(problemsOf(`audit:\n  sealKey: { id: k1, key: ${KEY} }\n  retiredSealKeys: [{ id: k1, key: ${KEY} }]\n`)).toEqual([
      'audit.retiredSealKeys: names the seal key id "k1" twice: every key needs an id of its own',
    ]);
  });
});

describe("mistakes", () => {
  it("reports every mistake in one file at once, each with its path", () => {
    const text = `
http: { listen: 0.0.0.0:3000, port: 80 }
bogus: true
database: postgres://jitgate:\${DB_PASSWORD}@db/jitgate
slack: { botToken: "\${SLACK_BOT_TOKEN}", signingSecret: s, approvalChannel: C1 }
defaults: { maxDuration: 9x, approvals: 0 }
digest: { cron: "not a cron", timezone: Mars/Olympus }
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@10.0.0.5/orders
    approvers: [lead@example.com]
    colour: red
    commands: { block: [], allow: [ddl] }
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@10.0.0.6/orders
    approvers: [lead@example.com]
    maxDuration: 9x
  - { name: cache, kind: mysql, upstream: "mysql://h", approvers: [a] }
  - { name: web-1, kind: ssh, upstream: "ssh://deploy@h", approvers: [a] }
  - name: reports
    kind: postgres
    upstream: postgres://h/reports
    approvers: []
    reasonPattern: "("
    mask: [{ column: email }, { hash: email }]
`;
    expect(problemsOf(text)).toEqual([
      "database: environment variable DB_PASSWORD is not set",
      "http.port: unknown key (not part of the configuration)",
      "slack.botToken: is required (environment variable SLACK_BOT_TOKEN is not set)",
      'defaults.maxDuration: "9x" is not a duration like 30m, 2h, 1d',
      "defaults.approvals: Too small: expected number to be >=1 (got 0)",
      'digest.cron: is not a cron expression like "0 9 * * *" (got "not a cron")',
      'digest.timezone: is not an IANA time zone like UTC or Europe/Berlin (got "Mars/Olympus")',
      "targets[0].commands.allow: unknown key (not part of the configuration)",
      "targets[0].colour: unknown key (not part of the configuration)",
      'targets[1].maxDuration: "9x" is not a duration like 30m, 2h, 1d',
      'targets[2].kind: kind must be "postgres" or "ssh"',
      "targets[3].privateKeyFile: is required",
      "targets[3].hostKey: is required",
      "targets[4].approvers: needs at least one approver",
      'targets[4].reasonPattern: is not a valid regular expression (got "(")',
      "targets[4].mask[1]: expected { column: <name> } or { detect: email | credit-card | iban | phone }",
      "bogus: unknown key (not part of the configuration)",
      'targets[1].name: "orders-db" is already the name of targets[0]',
    ]);
  });

  // One kind of mistake per row, around otherwise valid settings.
  const valid = {
    pg: `  - name: pg\n    kind: postgres\n    upstream: postgres://gw@h/db\n    approvers: [a@example.com]\n`,
    ssh: `  - name: box\n    kind: ssh\n    upstream: ssh://deploy@h\n    approvers: [a@example.com]\n    privateKeyFile: k\n    hostKey: "${HOST_KEY}"\n`,
  };
  it.each<[string, string, NodeJS.ProcessEnv, string[]]>([
    ["unknown top-level key", "listen: 0.0.0.0:3000\n", {}, ["listen: unknown key (not part of the configuration)"]],
    [
      "unknown key nested in a target",
      `targets:\n${valid.pg}    commands: { block: [], deny: [x] }\n`,
      {},
      ["targets[0].commands.deny: unknown key (not part of the configuration)"],
    ],
    [
      "key of the other target kind",
      `targets:\n${valid.pg}    hostKey: "${HOST_KEY}"\n${valid.ssh}    mask: []\n`,
      {},
      [
        "targets[0].hostKey: unknown key (not part of the configuration)",
        "targets[1].mask: unknown key (not part of the configuration)",
      ],
    ],
    [
      "unknown key in a mask rule",
      `targets:\n${valid.pg}    mask: [{ column: email, detect: email }]\n`,
      {},
      ["targets[0].mask[0]: expected { column: <name> } or { detect: email | credit-card | iban | phone }"],
    ],
    [
      "a misspelt built-in SQL rule",
      `targets:\n${valid.pg}    commands: { review: [delete-wihtout-where] }\n`,
      {},
      [
        'targets[0].commands.review[0]: "delete-wihtout-where" is not a built-in rule (did you mean "delete-without-where"?); built-in rules are ddl, drop-database, truncate, delete-without-where, update-without-where, grant-revoke, alter-system, copy-program, do, server-files, large-objects, set-role, remote-connection, replication. To match text, write a regex that is not a bare lower-case word, e.g. "\\bdelete-wihtout-where\\b"',
      ],
    ],
    [
      "quorum larger than the approver list",
      `targets:\n${valid.pg}    approvals: 2\n`,
      {},
      ["targets[0].approvals: a quorum of 2 can never be met by 1 approver"],
    ],
    [
      "a held-statement quorum larger than the approver list",
      `targets:\n${valid.pg}    review: { approvals: 2 }\n`,
      {},
      ["targets[0].review.approvals: held statements would wait for 2 approvals that 1 approver can never give"],
    ],
    [
      "a held-statement quorum that is not a whole number of at least 1",
      `targets:\n${valid.pg}    review: { approvals: 0 }\n  - name: b\n    kind: postgres\n    upstream: postgres://h/db\n    approvers: [a@example.com]\n    review: { approvals: many }\n`,
      {},
      ["targets[0].review.approvals: expected a whole number of approvals, at least 1 (got 0)", 'targets[1].review.approvals: expected a whole number of approvals, at least 1 (got "many")'],
    ],
    [
      "default quorum larger than a target's approver list",
      `defaults: { approvals: 3 }\ntargets:\n${valid.ssh}`,
      {},
      ["targets[0].approvers: a quorum of 3 can never be met by 1 approver"],
    ],
    ["bad duration", "defaults: { requestTtl: 1w }\n", {}, ['defaults.requestTtl: "1w" is not a duration like 30m, 2h, 1d']],
    ["zero duration", "defaults: { reviewTimeout: 0m }\n", {}, ['defaults.reviewTimeout: "0m" is not a duration like 30m, 2h, 1d']],
    ["duration as a number", "defaults: { maxDuration: 5 }\n", {}, ["defaults.maxDuration: Invalid input: expected string, received number (got 5)"]],
    ["bad cron", 'digest: { cron: "61 * * * *" }\n', {}, ['digest.cron: is not a cron expression like "0 9 * * *" (got "61 * * * *")']],
    ["cron with a missing field", 'digest: { cron: "0 9 * *" }\n', {}, ['digest.cron: is not a cron expression like "0 9 * * *" (got "0 9 * *")']],
    ["empty cron", 'digest: { cron: "" }\n', {}, ['digest.cron: is not a cron expression like "0 9 * * *" (got "")']],
    ["bad timezone", "digest: { timezone: Europe/Springfield }\n", {}, ['digest.timezone: is not an IANA time zone like UTC or Europe/Berlin (got "Europe/Springfield")']],
    [
      "duplicate target name",
      `targets:\n${valid.pg}${valid.pg}`,
      {},
      ['targets[1].name: "pg" is already the name of targets[0]'],
    ],
    [
      "bad kind",
      "targets:\n  - { name: x, kind: mysql, upstream: 'mysql://h', approvers: [a] }\n",
      {},
      ['targets[0].kind: kind must be "postgres" or "ssh"'],
    ],
    ["missing kind", "targets:\n  - { name: x, upstream: 'postgres://h', approvers: [a] }\n", {}, ['targets[0].kind: kind must be "postgres" or "ssh"']],
    [
      "missing required keys",
      "slack: { signingSecret: s }\ntargets:\n  - { kind: postgres }\n",
      {},
      [
        "slack.botToken: is required",
        "slack.approvalChannel: is required",
        "targets[0].name: is required",
        "targets[0].approvers: is required",
        "targets[0].upstream: is required",
      ],
    ],
    ["slack in HTTP mode without a signing secret", "slack: { botToken: x, approvalChannel: C1 }\n", {}, ["slack.signingSecret: is required in HTTP mode"]],
    [
      "unset ${VAR} as the whole value of a required key",
      "slack:\n  botToken: ${SLACK_BOT_TOKEN}\n  signingSecret: ${SLACK_SIGNING_SECRET}\n  approvalChannel: C1\n",
      { SLACK_SIGNING_SECRET: "s" },
      ["slack.botToken: is required (environment variable SLACK_BOT_TOKEN is not set)"],
    ],
    [
      "empty ${VAR} as the whole value of a required key",
      `targets:\n  - name: box\n    kind: ssh\n    upstream: ssh://deploy@h\n    approvers: ["\${LEAD}"]\n    privateKeyFile: \${WEB_KEY}\n    hostKey: "${HOST_KEY}"\n`,
      { WEB_KEY: "", LEAD: "lead@example.com" },
      ["targets[0].privateKeyFile: is required (environment variable WEB_KEY is not set)"],
    ],
    [
      "unset ${VAR} inside a longer string",
      `targets:\n  - name: pg\n    kind: postgres\n    upstream: postgres://gw:\${PG_PASSWORD}@h/db\n    approvers: [a]\n`,
      {},
      ["targets[0].upstream: environment variable PG_PASSWORD is not set"],
    ],
    [
      "wrong type",
      "http: { listen: 3000 }\ntargets: orders-db\nproxy: { postgres: { maxMessageSize: 100 } }\n",
      {},
      [
        "http.listen: Invalid input: expected string, received number (got 3000)",
        "proxy.postgres.maxMessageSize: Too small: expected number to be >=1024 (got 100)",
        'targets: Invalid input: expected array, received string (got "orders-db")',
      ],
    ],
    [
      "bad listen address and port",
      "http: { listen: localhost }\nproxy: { postgres: { listen: '0.0.0.0:99999' }, ssh: { publicAddress: 'ssh://gw' } }\n",
      {},
      [
        'http.listen: expected host:port, like 0.0.0.0:3000 (got "localhost")',
        'proxy.postgres.listen: port must be at most 65535 (got "0.0.0.0:99999")',
        'proxy.ssh.publicAddress: expected host or host:port, like db-gw.example.com:15432 (got "ssh://gw")',
      ],
    ],
    [
      "bad URLs",
      `database: mysql://h/db\nredis: http://h\ntargets:\n  - { name: box, kind: ssh, upstream: "postgres://h", approvers: [a], privateKeyFile: k, hostKey: "${HOST_KEY}" }\n`,
      {},
      [
        'database: is not a URL like postgres://user@host:5432/jitgate (got "mysql://h/db")',
        'redis: is not a URL like redis://127.0.0.1:6379 (got "http://h")',
        'targets[0].upstream: is not a URL like ssh://deploy@10.0.0.6:22 (got "postgres://h")',
      ],
    ],
    [
      "a value from the environment is never echoed",
      "database: ${DATABASE_URL}\nredis: redis://:${REDIS_PASSWORD}@h:6379 trailing\n",
      { DATABASE_URL: "mysql://root:hunter2@h/db", REDIS_PASSWORD: "hunter3" },
      [
        "database: is not a URL like postgres://user@host:5432/jitgate",
        "redis: is not a URL like redis://127.0.0.1:6379",
      ],
    ],
    [
      "bad target name and hostKey",
      `targets:\n  - { name: Web 1, kind: ssh, upstream: "ssh://h", approvers: [a], privateKeyFile: k, hostKey: AAAA }\n`,
      {},
      [
        `targets[0].name: expected lower-case letters, digits, '.', '_' or '-' (at most 63) (got "Web 1")`,
        'targets[0].hostKey: expected a pinned host key like "ssh-ed25519 AAAA…" (got "AAAA")',
      ],
    ],
    [
      "bad enum values",
      `log: { level: verbose }\ntargets:\n${valid.pg}    mask: [{ detect: ssn }]\n`,
      {},
      [
        'log.level: Invalid option: expected one of "fatal"|"error"|"warn"|"info"|"debug"|"trace"|"silent" (got "verbose")',
        "targets[0].mask[0]: expected { column: <name> } or { detect: email | credit-card | iban | phone }",
      ],
    ],
    ["YAML syntax error", "targets: [orders-db\nhttp: {}\n", {}, ["YAML: Flow sequence in block collection must be sufficiently indented and end with a ] at line 2, column 1"]],
    ["YAML duplicate key", "http: {}\nhttp: {}\n", {}, ["YAML: Map keys must be unique at line 2, column 1"]],
    ["not a mapping", "- http\n- targets\n", {}, ["(root): expected a mapping of settings"]],
  ])("%s", (_name, text, env, expected) => {
    expect(problemsOf(text, env)).toEqual(expected);
  });

  it("reports a YAML syntax error as one line, without the code excerpt", () => {
    const problems = problemsOf("http:\n  listen: 1\n   x: 2\n");
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^YAML: .+ at line 2, column \d+$/);
  });

  it("throws a ConfigError whose message lists the problems under the source", () => {
    let caught: unknown;
    try {
      parseConfig("bogus: 1\ndefaults: { maxDuration: 9x }\n", "jitgate.yaml", {});
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const error = caught as ConfigError;
    expect(error.code).toBe("config_invalid");
    expect(error.source).toBe("jitgate.yaml");
    expect(error.message).toBe(
      [
        "jitgate.yaml: 2 problems",
        '  defaults.maxDuration: "9x" is not a duration like 30m, 2h, 1d',
        "  bogus: unknown key (not part of the configuration)",
      ].join("\n"),
    );
  });
});

describe("loadConfig", () => {
  it("reads the named file, and fails on a named file that is missing", () => {
    const dir = mkdtempSync(join(tmpdir(), "jitgate-config-"));
    try {
      const file = join(dir, "jitgate.yaml");
      writeFileSync(file, "http: { listen: 127.0.0.1:8080 }\n");
      expect(loadConfig(file, {}).config.http.listen).toBe("127.0.0.1:8080");
      const missing = join(dir, "nope.yaml");
      expect(() => loadConfig(missing, {})).toThrow(ConfigError);
      try {
        loadConfig(missing, {});
      } catch (error) {
        expect((error as ConfigError).source).toBe(missing);
        expect((error as ConfigError).problems[0]).toMatch(/^cannot read the file: ENOENT/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("durations", () => {
  it.each<[string, number, string]>([
    ["90s", 90_000, "1m30s"],
    ["30m", 1_800_000, "30m"],
    ["2h", 7_200_000, "2h"],
    ["1d", 86_400_000, "1d"],
    ["1h30m", 5_400_000, "1h30m"],
    ["1d2h3m4s", 93_784_000, "1d2h3m4s"],
    ["90m", 5_400_000, "1h30m"],
    ["48h", 172_800_000, "2d"],
    [" 2H ", 7_200_000, "2h"],
    ["1h1h", 7_200_000, "2h"],
  ])("%s is %d ms, written %s", (text, ms, canonical) => {
    expect(parseDuration(text)).toBe(ms);
    expect(isDuration(text)).toBe(true);
    expect(formatDuration(ms)).toBe(canonical);
    expect(parseDuration(canonical)).toBe(ms);
  });

  it.each(["", " ", "0s", "0m", "30", "m", "1w", "1.5h", "-1h", "1h 30m", "h1", "1h30", "99999999999999999d"])(
    "%j is not a duration",
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
      expect(isDuration(text)).toBe(false);
    },
  );

  it.each([1_000, 59_000, 61_000, 3_599_000, 3_600_000, 86_399_000, 90_061_000, 30 * 86_400_000])(
    "%d ms survives format → parse",
    (ms) => {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    },
  );

  it.each<[number, string]>([
    [0, "0s"],
    [-5_000, "0s"],
    [1_400, "1s"],
    [400, "0s"],
  ])("formats %d ms as %s (whole seconds)", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

// ---------------------------------------------------------------------------------------------
// The schema's key paths, for the reference documentation and the example.

interface KeyInfo {
  /** scalar default (after `.default()` or `.prefault()`), if any */
  defaultValue?: string | number | boolean;
}

/**
 * Every key path of a zod 4 schema: `a.b`, with `[]` for list items (`targets[].name`), and the
 * sections and lists themselves (`proxy.postgres`, `targets[].mask`), but not bare items (`targets[]`).
 */
function schemaKeyPaths(schema: z.core.$ZodType): Map<string, KeyInfo> {
  const out = new Map<string, KeyInfo>();
  const record = (path: string, info: KeyInfo) => {
    if (path !== "" && !path.endsWith("[]")) out.set(path, info);
  };
  const walk = (node: z.core.$ZodType, path: string, info: KeyInfo): void => {
    const def = node._zod.def;
    switch (def.type) {
      case "optional":
      case "nullable":
      case "readonly":
      case "nonoptional":
      case "catch":
        return walk((def as z.core.$ZodOptionalDef).innerType, path, info);
      case "default":
      case "prefault": {
        const inner = def as z.core.$ZodDefaultDef | z.core.$ZodPrefaultDef;
        const value: unknown = inner.defaultValue;
        const scalar = ["string", "number", "boolean"].includes(typeof value);
        return walk(inner.innerType, path, scalar ? { defaultValue: value as string | number | boolean } : info);
      }
      case "pipe": // transforms such as durations: the keys are those of the input side
        return walk((def as z.core.$ZodPipeDef).in, path, info);
      case "object":
        record(path, info);
        for (const [key, child] of Object.entries((def as z.core.$ZodObjectDef).shape)) {
          walk(child, path === "" ? key : `${path}.${key}`, {});
        }
        return;
      case "array":
        record(path, info);
        return walk((def as z.core.$ZodArrayDef).element, `${path}[]`, {});
      case "union": // discriminated unions too: every option contributes its keys
        for (const option of (def as z.core.$ZodUnionDef).options) walk(option, path, info);
        return;
      default:
        record(path, info);
    }
  };
  walk(schema, "", {});
  return out;
}

/** Rows of the markdown tables whose first cell is a `key path`: path → cells. */
function documentedKeys(markdown: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of markdown.split("\n")) {
    const match = /^\|\s*`([^`]+)`\s*\|(.*)\|\s*$/.exec(line);
    if (!match) continue;
    const cells = match[2]!.split(/(?<!\\)\|/).map((cell) => cell.trim());
    rows.set(match[1]!, cells);
  }
  return rows;
}

/** Every key path present in a plain YAML tree, in the same notation. */
function treeKeyPaths(node: unknown, path = "", out = new Set<string>()): Set<string> {
  if (Array.isArray(node)) {
    for (const item of node) treeKeyPaths(item, `${path}[]`, out);
  } else if (node !== null && typeof node === "object") {
    for (const [key, value] of Object.entries(node)) {
      const child = path === "" ? key : `${path}.${key}`;
      out.add(child);
      treeKeyPaths(value, child, out);
    }
  }
  return out;
}

const schemaPaths = schemaKeyPaths(configSchema);

describe("schema walk", () => {
  it("finds nested, defaulted, piped and per-kind keys", () => {
    for (const path of [
      "http.listen",
      "proxy.postgres.maxMessageSize",
      "proxy.postgres.tls.key",
      "defaults.maxDuration",
      "targets[].reasonPattern",
      "targets[].hostKey",
      "targets[].mask",
      "targets[].mask[].detect",
      "targets[].commands.review",
    ]) {
      expect(schemaPaths.has(path), path).toBe(true);
    }
    expect(schemaPaths.get("defaults.maxDuration")).toEqual({ defaultValue: "8h" });
    expect(schemaPaths.get("proxy.postgres.maxMessageSize")).toEqual({ defaultValue: 67_108_864 });
    expect(schemaPaths.has("targets[]")).toBe(false);
    expect(schemaPaths.size).toBeGreaterThan(50);
  });
});

describe("docs/configuration.md", () => {
  const documented = documentedKeys(readRepoFile("docs/configuration.md"));

  it("documents every key of the schema", () => {
    const missing = [...schemaPaths.keys()].filter((path) => !documented.has(path));
    expect(missing).toEqual([]);
  });

  it("documents no key that the schema does not have", () => {
    const stale = [...documented.keys()].filter((path) => !schemaPaths.has(path));
    expect(stale).toEqual([]);
  });

  it("gives each key a type, a default column and a meaning, and the schema's default where there is one", () => {
    const wrong: string[] = [];
    for (const [path, info] of schemaPaths) {
      const cells = documented.get(path);
      if (!cells) continue; // reported above
      const [type, defaultCell, meaning] = cells;
      if (cells.length !== 3 || !type || !meaning) wrong.push(`${path}: expected | type | default | meaning |`);
      if (info.defaultValue !== undefined && !defaultCell?.includes(`\`${String(info.defaultValue)}\``)) {
        wrong.push(`${path}: default should be \`${String(info.defaultValue)}\`, the table says ${JSON.stringify(defaultCell)}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});

describe("examples/jitgate.yaml", () => {
  const text = readRepoFile("examples/jitgate.yaml");
  const env = {
    DATABASE_URL: "postgres://jitgate:pw@db.internal:5432/jitgate",
    REDIS_URL: "rediss://:pw@redis.internal:6380",
    SLACK_BOT_TOKEN: "xoxb-example",
    SLACK_SIGNING_SECRET: "signing-secret",
    SLACK_APP_TOKEN: "xapp-example",
    SLACK_API_URL: "https://slack.com/api/",
    MICROSOFT_APP_ID: "00000000-0000-0000-0000-000000000000",
    MICROSOFT_APP_PASSWORD: "app-password",
    MICROSOFT_TENANT_ID: "11111111-1111-1111-1111-111111111111",
    PROXY_TLS_CERT: "/etc/jitgate/tls.crt",
    PROXY_TLS_KEY: "/etc/jitgate/tls.key",
    ORDERS_DB_PASSWORD: "orders-password",
    PAGERDUTY_TOKEN: "pd-read-only-key",
    OPSGENIE_API_KEY: "og-integration-key",
    JITGATE_SEAL_KEY: Buffer.alloc(32, 2).toString("base64"),
    JITGATE_SEAL_KEY_K1: Buffer.alloc(32, 1).toString("base64"),
  };

  it("parses, with every variable set", () => {
    const config = parseConfig(text, "examples/jitgate.yaml", env);
    expect(config.database).toBe(env.DATABASE_URL);
    expect(config.slack?.appToken).toBe("xapp-example");
    expect(config.proxy.postgres?.tls).toEqual({ cert: "/etc/jitgate/tls.crt", key: "/etc/jitgate/tls.key", ca: "/etc/jitgate/ca.crt" });
    expect(config.digest).toEqual({ cron: "0 9 * * 1-5", timezone: "Europe/Berlin" });
    expect(config.targets.map((t) => [t.name, t.kind, t.maxDuration])).toEqual([
      ["orders-db", "postgres", 4 * 3_600_000],
      ["web-1", "ssh", 3_600_000],
    ]);
    expect(config.targets[0]?.upstream).toBe("postgres://gw_orders:orders-password@10.0.0.5:5432/orders");
  });

  it("parses with only the variables it cannot do without (embedded database, HTTP mode, no Teams auth)", () => {
    const config = parseConfig(text, "examples/jitgate.yaml", {
      SLACK_BOT_TOKEN: env.SLACK_BOT_TOKEN,
      SLACK_SIGNING_SECRET: env.SLACK_SIGNING_SECRET,
      PROXY_TLS_CERT: env.PROXY_TLS_CERT,
      PROXY_TLS_KEY: env.PROXY_TLS_KEY,
      ORDERS_DB_PASSWORD: env.ORDERS_DB_PASSWORD,
      PAGERDUTY_TOKEN: env.PAGERDUTY_TOKEN,
      OPSGENIE_API_KEY: env.OPSGENIE_API_KEY,
      JITGATE_SEAL_KEY: env.JITGATE_SEAL_KEY,
      JITGATE_SEAL_KEY_K1: env.JITGATE_SEAL_KEY_K1,
    });
    expect(config.database).toBeUndefined();
    expect(config.redis).toBeUndefined();
    expect(config.slack?.appToken).toBeUndefined();
    expect(config.teams?.appId).toBeUndefined();
  });

  it("names the variables that are missing", () => {
    expect(problemsOf(text, {})).toEqual([
      "targets[0].upstream: environment variable ORDERS_DB_PASSWORD is not set",
      "slack.botToken: is required (environment variable SLACK_BOT_TOKEN is not set)",
      "proxy.postgres.tls.cert: is required (environment variable PROXY_TLS_CERT is not set)",
      "proxy.postgres.tls.key: is required (environment variable PROXY_TLS_KEY is not set)",
      "audit.sealKey.key: is required (environment variable JITGATE_SEAL_KEY is not set)",
      "audit.retiredSealKeys[0].key: is required (environment variable JITGATE_SEAL_KEY_K1 is not set)",
      "onCall.pagerduty.token: is required (environment variable PAGERDUTY_TOKEN is not set)",
      "onCall.opsgenie.apiKey: is required (environment variable OPSGENIE_API_KEY is not set)",
      "slack.signingSecret: is required in HTTP mode (environment variable SLACK_SIGNING_SECRET is not set)",
    ]);
  });

  it("shows every key of the schema", () => {
    const shown = treeKeyPaths(parseYaml(text));
    const missing = [...schemaPaths.keys()].filter((path) => !shown.has(path));
    expect(missing).toEqual([]);
  });

  it("keeps its secrets in the environment", () => {
    const raw = parseYaml(text) as {
      slack: Record<string, string>;
      teams: Record<string, string>;
      proxy: { postgres: { tls: Record<string, string> } };
      targets: { upstream: string }[];
    };
    for (const value of [
      raw.slack.botToken,
      raw.slack.signingSecret,
      raw.slack.appToken,
      raw.teams.appPassword,
      raw.proxy.postgres.tls.key,
    ]) {
      expect(value).toMatch(/^\$\{[A-Z_]+\}$/);
    }
    expect(raw.targets[0]!.upstream).toContain("${ORDERS_DB_PASSWORD}");
  });
});
