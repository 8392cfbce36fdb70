import type { AddressInfo } from "node:net";
import { SessionBroker } from "../broker/sessions.js";
import { SshKeys } from "../broker/ssh-keys.js";
import type { StatementRecorder } from "../broker/statement-log.js";
import type { Cleanups } from "../infra/cleanups.js";
import type { Logger } from "../infra/logger.js";
import type { OidcVerifier } from "../oidc/verifier.js";
import { PgProxyServer } from "../proxy/postgres/server.js";
import { SshProxyServer } from "../proxy/ssh/server.js";
import { loadSqlParser } from "../rules/sql-classifier.js";
import type { Core } from "./core.js";
import type { Domain } from "./domain.js";

export interface Proxies {
  sessions: SessionBroker;
  postgres: { server: PgProxyServer; address: AddressInfo } | undefined;
  ssh: { server: SshProxyServer; address: AddressInfo } | undefined;
}

/** Starts the proxies that are configured; their cleanups drain them before the outboxes and workers stop. */
export async function startProxies(
  core: Core,
  domain: Domain,
  options: {
    logger: Logger;
    oidc: OidcVerifier | undefined;
    /** The statement timeline (through the audit journal): required with proxy.postgres. */
    statements: StatementRecorder | undefined;
    postgresListen?: string | undefined;
    sshListen?: string | undefined;
  },
  cleanups: Cleanups,
): Promise<Proxies> {
  const { config, onBackgroundError } = core;
  const { broker, cluster } = domain;
  const { logger } = options;
  const sessions = new SessionBroker(broker);
  // What both proxies are given.
  const common = {
    broker,
    sessions,
    events: cluster.events,
    redis: core.connection,
    redisPrefix: config.redisPrefix,
    loginFailures: config.proxy.loginFailures,
    targets: config.targets,
    requestCommand: config.slack?.command ?? "/access",
    oidc: options.oidc,
    onError: onBackgroundError,
  };
  let postgres: Proxies["postgres"];
  if (config.proxy.postgres) {
    await loadSqlParser();
    // Every statement is recorded in the local audit journal before it runs (see compose/audit-journal.ts).
    const statements = options.statements;
    if (!statements) throw new Error("the PostgreSQL proxy needs the audit journal");
    const server = new PgProxyServer({ ...common, statements, config: config.proxy.postgres });
    const address = await server.listen(options.postgresListen ?? config.proxy.postgres.listen);
    cleanups.add("postgres proxy", async () => {
      await server.close();
      await statements.flushOutcomes();
    });
    postgres = { server, address };
    logger.debug({ address }, "postgres proxy listening");
  }
  let ssh: Proxies["ssh"];
  if (config.proxy.ssh) {
    const server = new SshProxyServer({ ...common, keys: new SshKeys(broker), config: config.proxy.ssh });
    const address = await server.listen(options.sshListen ?? config.proxy.ssh.listen);
    cleanups.add("ssh proxy", () => server.close());
    ssh = { server, address };
    logger.debug({ address }, "ssh proxy listening");
  }
  return { sessions, postgres, ssh };
}
