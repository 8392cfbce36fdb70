import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { createSecureContext, type SecureContext } from "node:tls";
import type { Redis } from "ioredis";
import type { Broker } from "../../broker/broker.js";
import { BrokerError, NoLiveGrant } from "../../broker/errors.js";
import type { TypedEvents } from "../../broker/events.js";
import type { SessionBroker } from "../../broker/sessions.js";
import type { StatementLog } from "../../broker/statement-log.js";
import type { Config, PostgresTargetConfig } from "../../config/schema.js";
import { compileMasking, type Masking } from "../masking/masker.js";
import { classifySql, compileRules, normalizeSql, type CompiledRules } from "../../rules/sql-classifier.js";
import {
  PgProxyConnection,
  ProxyRefusal,
  type ClassifiedStatement,
  type ConnectionHooks,
  type ConnectionSummary,
  type SessionHooks,
  type StartupPlan,
} from "./connection.js";
import { cancelUpstream, parseUpstreamUrl } from "./upstream.js";
import { listenOn } from "../../infra/listen.js";
import { OidcError } from "../../oidc/errors.js";
import type { OidcVerifier } from "../../oidc/verifier.js";
import { LiveSessions } from "../live-sessions.js";
import { holdForDecision, type HeldVerdict } from "../held-decision.js";

export interface PgProxyOptions {
  broker: Broker;
  sessions: SessionBroker;
  statements: StatementLog;
  /** Domain events from every replica. */
  events: TypedEvents;
  redis: Redis;
  redisPrefix: string;
  config: NonNullable<Config["proxy"]["postgres"]>;
  targets: Config["targets"];
  /** The command users type to ask for access, for the refusal's hint. */
  requestCommand?: string;
  /** Checks ID tokens from the user `oidc` (absent when `oidc:` is not configured). */
  oidc?: OidcVerifier | undefined;
  onError?: (error: unknown, where: string) => void;
}

/** The user name under which a client presents an OIDC ID token as its password. */
export const OIDC_LOGIN = "oidc";

const isLoopback = (address: string | null) =>
  address !== null && (/^127\./.test(address) || address === "::1" || /^::ffff:127\./.test(address));

interface TargetRuntime {
  config: PostgresTargetConfig;
  rules: CompiledRules;
  masking: Masking;
  /** Classification by statement text: clients repeat the same statements all the time. */
  cache: Map<string, ClassifiedStatement[]>;
  /** Whether number literals can be folded in the cache key (no regex rules; see `classify`). */
  foldNumbers: boolean;
}

// A whole number token: the same statement with another constant gets the same built-in verdict.
const NUMBER_TOKEN = /\b\d+\b/g;
const ONE_STATEMENT = /^[^;]*;?\s*$/;

const CACHE_LIMIT = 2_000;

/**
 * COPY … TO sends rows as CopyData, not DataRow, so masking cannot see its columns: on a target
 * with masking rules it would be a way around them. It is refused there; COPY … FROM STDIN is not.
 */
function guardCopyOut(statement: ClassifiedStatement, runtime: TargetRuntime): ClassifiedStatement {
  if (statement.kind !== "copy" || runtime.config.mask.length === 0 || statement.verdict === "block") return statement;
  if (/\bFROM\s+STDIN\b/i.test(normalizeSql(statement.text))) return statement;
  return { ...statement, verdict: "block", rule: "copy-out-on-masked-target" };
}

/**
 * The PostgreSQL proxy listener: admits connections under live grants, wires each connection's
 * hooks to the broker (sessions, statement log, held statements), and ends sessions when their
 * grant ends on any replica.
 */
export class PgProxyServer {
  readonly #server: Server;
  readonly #targets = new Map<string, TargetRuntime>();
  readonly #live: LiveSessions<PgProxyConnection>;
  readonly #secureContext: SecureContext | undefined;
  #closing: Promise<void> | undefined;

  constructor(private readonly options: PgProxyOptions) {
    for (const target of options.targets) {
      if (target.kind !== "postgres") continue;
      const rules = compileRules(target.commands);
      this.#targets.set(target.name, {
        config: target,
        rules,
        masking: compileMasking(target.mask),
        cache: new Map(),
        foldNumbers: [...rules.block, ...rules.review].every((r) => r.type === "builtin"),
      });
    }
    if (options.config.tls) {
      this.#secureContext = createSecureContext({
        cert: readFileSync(options.config.tls.cert),
        key: readFileSync(options.config.tls.key),
      });
    }
    this.#server = createServer((socket) => this.#accept(socket));
    this.#live = new LiveSessions(options.events);
  }

  get connections(): number {
    return this.#live.size;
  }

  listen(address: string): Promise<AddressInfo> {
    return listenOn(this.#server, address);
  }

  #accept(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    socket.on("error", () => {});
    // The hooks need the connection (to end it with its grant); it exists before any hook runs.
    let connection: PgProxyConnection | undefined;
    connection = new PgProxyConnection(socket, this.#hooks(() => connection!), {
      maxMessageLength: this.options.config.maxMessageSize,
      secureContext: this.#secureContext,
      onError: (error) => this.options.onError?.(error, "postgres proxy connection"),
    });
    this.#live.track(connection);
  }

  #cancelKey(processId: number, secretKey: number): string {
    return `${this.options.redisPrefix}:pg-cancel:${processId}:${secretKey}`;
  }

  #hooks(connection: () => PgProxyConnection): ConnectionHooks {
    const { broker, redis } = this.options;
    return {
      newCancelKey: () => ({ processId: randomBytes(4).readInt32BE(0) & 0x7fffffff, secretKey: randomBytes(4).readInt32BE(0) }),
      onCancel: async (processId, secretKey) => {
        const stored = await redis.get(this.#cancelKey(processId, secretKey));
        if (!stored) return;
        const target = JSON.parse(stored) as { host: string; port: number; processId: number; secretKey: number };
        await cancelUpstream(target, target.processId, target.secretKey);
      },
      onStartup: async ({ user, database, clientAddress, tls }) => {
        const runtime = this.#targets.get(database);
        if (!runtime) {
          throw new ProxyRefusal("3D000", `target "${database}" does not exist`, `list the targets with: ${this.#command} targets`);
        }
        // Fail closed: without Redis, expiry and revocation could not reach this session.
        if (redis.status !== "ready") throw new ProxyRefusal("57P03", "jitgate cannot check grants right now; try again shortly");
        if (user === OIDC_LOGIN) return this.#oidcPlan(runtime, database, clientAddress, tls, connection);
        let credential;
        try {
          credential = await broker.liveCredential(user, database);
        } catch (error) {
          if (error instanceof NoLiveGrant) {
            throw new ProxyRefusal(
              "28000",
              `no live access grant for "${user}" on ${database}`,
              `request one with: ${this.#command} request ${database} <duration> <reason>`,
            );
          }
          throw new ProxyRefusal("57P03", "jitgate cannot check grants right now; try again shortly");
        }
        return {
          verifier: credential.verifier,
          admit: () => this.#admit(runtime, credential.grant.id, clientAddress, connection()),
        };
      },
    };
  }

  get #command(): string {
    return this.options.requestCommand ?? "/access";
  }

  /**
   * The user `oidc` sends an ID token as a cleartext password; it is verified here and its verified
   * email must be the person of a live grant on the target. A token is a bearer secret: it is only
   * taken over TLS, or from a client on the same machine.
   */
  #oidcPlan(runtime: TargetRuntime, database: string, clientAddress: string | null, tls: boolean, connection: () => PgProxyConnection): StartupPlan {
    const verifier = this.options.oidc;
    if (!verifier) throw new ProxyRefusal("28000", "OIDC is not configured on this gateway, so the user oidc cannot log in; use the connection line of your grant");
    if (!tls && !isLoopback(clientAddress)) {
      throw new ProxyRefusal("28000", "an ID token is only accepted over TLS: connect with sslmode=require", "jitgate connect prints a ready command");
    }
    return {
      checkPassword: async (token) => {
        let person;
        try {
          ({ person } = await verifier.identify(this.options.broker, token));
        } catch (error) {
          if (error instanceof OidcError && error.code !== "oidc_provider_unreachable") throw new ProxyRefusal("28000", error.message);
          this.options.onError?.(error, "verify ID token");
          throw new ProxyRefusal("57P03", "jitgate cannot check ID tokens right now; try again shortly");
        }
        let grant;
        try {
          grant = await this.options.broker.liveGrantOf(person, database);
        } catch (error) {
          if (!(error instanceof NoLiveGrant)) throw error;
          throw new ProxyRefusal(
            "28000",
            `no live access grant for "${person.email ?? person.displayName}" on ${database}`,
            `request one with: ${this.#command} request ${database} <duration> <reason>`,
          );
        }
        return { admit: () => this.#admit(runtime, grant.id, clientAddress, connection()) };
      },
    };
  }

  async #admit(runtime: TargetRuntime, grantId: string, clientAddress: string | null, connection: PgProxyConnection): Promise<SessionHooks> {
    const { sessions, statements, redis } = this.options;
    let opened;
    try {
      opened = await sessions.open({ grantId, protocol: "postgres", clientAddress });
    } catch (error) {
      if (error instanceof BrokerError) throw new ProxyRefusal("28000", error.message);
      this.options.onError?.(error, "open session");
      throw new ProxyRefusal("57P03", "jitgate cannot record this session right now, so it is refused");
    }
    const { session, snapshot } = opened;
    const grant = await this.options.broker.getGrant(grantId);
    const unbind = this.#live.bind(grantId, connection);
    let cancelKey: string | undefined;
    const self = this;
    const masking = runtime.masking;
    const paramMasker = masking.forResult([{ name: "$", dataTypeID: 25, format: 0 }]);

    const hooks: SessionHooks = {
      upstream: parseUpstreamUrl(runtime.config.upstream),
      expiresAt: grant.expiresAt,
      classify(sql) {
        // Built-in rules look at the statement's structure, never at a number's value, so
        // `… WHERE aid = 17` and `… WHERE aid = 42` share a cache entry. That is only done for
        // one-statement texts (whose recorded text is then the text itself) and targets without
        // regex rules (a regex may well look at numbers).
        const folded = runtime.foldNumbers && ONE_STATEMENT.test(sql);
        const key = folded ? sql.replace(NUMBER_TOKEN, "0") : sql;
        let result = runtime.cache.get(key);
        if (!result) {
          result = classifySql(sql, runtime.rules).map((statement) => guardCopyOut(statement, runtime));
          if (runtime.cache.size >= CACHE_LIMIT) runtime.cache.delete(runtime.cache.keys().next().value!);
          runtime.cache.set(key, result);
          return result;
        }
        if (folded && result.length === 1 && result[0]!.text !== sql.trim()) {
          return [{ ...result[0]!, text: sql.trim().replace(/;\s*$/, "") }];
        }
        return result;
      },
      onStatements: (starts) =>
        statements.record(
          starts.map((s) => ({
            sessionId: session.id,
            seq: s.seq,
            protocol: s.protocol,
            kind: s.statement.kind,
            text: s.statement.text,
            parameters: s.parameters,
            verdict: s.statement.verdict,
            rule: s.statement.rule ?? null,
            startedAt: s.startedAt,
          })),
        ),
      onStatementEnd: (end) => statements.complete({ sessionId: session.id, ...end }),
      onBlocked: (statement) => sessions.blocked(snapshot, statement.text, statement.rule ?? "block"),
      onHold: (statement) => self.#hold(snapshot, statement),
      onRowDescription: (fields) => masking.forResult(fields),
      redactParameters(values, formats) {
        return values.map((value, index) => {
          if (value === null) return null;
          const format = formats.length === 1 ? formats[0] : formats[index];
          if (format === 1) return `(binary, ${value.length} bytes)`;
          if (!paramMasker) return value.toString("utf8");
          return paramMasker.mask([value]).values[0]!.toString("utf8");
        });
      },
      registerCancelKey: async (key, upstream) => {
        cancelKey = self.#cancelKey(key.processId, key.secretKey);
        await redis.set(cancelKey, JSON.stringify(upstream), "EX", 7 * 24 * 3600);
      },
      onClose: async (summary: ConnectionSummary) => {
        unbind();
        if (cancelKey) await redis.del(cancelKey).catch(() => {});
        await statements.flushOutcomes();
        const { startedAt, endedAt, ...counts } = summary;
        await sessions.close(session.id, { ...counts, durationMs: endedAt.getTime() - startedAt.getTime(), recordingId: session.id });
      },
    };
    return hooks;
  }

  /** Holds a statement and waits for its decision from any replica, or its timeout. */
  #hold(session: Parameters<SessionBroker["hold"]>[0], statement: ClassifiedStatement): Promise<HeldVerdict> {
    return holdForDecision(this.options, session, statement.text, statement.rule ?? "review");
  }

  /**
   * Stops accepting, lets sessions finish for `graceMs`, then ends the rest with 57P01. Safe to
   * call twice.
   */
  close(graceMs = 5_000): Promise<void> {
    this.#closing ??= (async () => {
      // net.Server#close stops accepting at once, but calls back only when every connection is gone.
      const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      await this.#live.drain(graceMs);
      await stopped;
    })();
    return this.#closing;
  }
}
