import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { createSecureContext, type SecureContext } from "node:tls";
import type { Redis } from "ioredis";
import type { Broker, Grant } from "../../broker/broker.js";
import type { SessionSnapshot, TypedEvents } from "../../broker/events.js";
import type { SessionBroker } from "../../broker/sessions.js";
import type { StatementRecorder } from "../../broker/statement-log.js";
import { JournalFullError } from "../../infra/journal.js";
import type { Config, PostgresTargetConfig } from "../../config/schema.js";
import { compileMasking, type Masking } from "../masking/masker.js";
import { compileRules, type CompiledRules } from "../../rules/sql-classifier.js";
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
import { AttachedFunctions } from "./attached-functions.js";
import { ClassificationCache } from "./classification-cache.js";
import { MaskingSession } from "./masking-session.js";
import { ResultCapture } from "./result-capture.js";
import { encodeResult } from "../../broker/results.js";
import { sealResult } from "../../infra/seal.js";
import { listenOn } from "../../infra/listen.js";
import type { OidcVerifier } from "../../oidc/verifier.js";
import { Admission, AdmissionRefused, type RefusalCode } from "../admission.js";
import { holdForDecision, type HeldVerdict } from "../held-decision.js";

export interface PgProxyOptions {
  broker: Broker;
  sessions: SessionBroker;
  statements: StatementRecorder;
  /** Domain events from every replica. */
  events: TypedEvents;
  redis: Redis;
  redisPrefix: string;
  config: NonNullable<Config["proxy"]["postgres"]>;
  /** `proxy.loginFailures`. */
  loginFailures: Config["proxy"]["loginFailures"];
  targets: Config["targets"];
  /** The command users type to ask for access, for the refusal's hint. */
  requestCommand?: string;
  /** Checks ID tokens from the user `oidc` (absent when `oidc:` is not configured). */
  oidc?: OidcVerifier | undefined;
  onError?: (error: unknown, where: string) => void;
  /** Test hook: runs between opening a session's record and binding it under its grant (see Admission). */
  onOpened?: (session: SessionSnapshot) => Promise<void> | void;
}

/** How each refusal reads as a SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
const SQLSTATE: Record<RefusalCode, string> = {
  no_live_grant: "28000",
  bad_credential: "28000",
  not_allowed: "28000",
  unavailable: "57P03",
  grant_ended: "57P01",
  target_unreachable: "08006",
  internal: "XX000",
};

/**
 * Records statements before they run. A full audit journal (the database has not taken its records
 * for a while) refuses them with 53100 disk_full and says why; the session ends (fail closed).
 */
function recordOrRefuse(statements: StatementRecorder, rows: Parameters<StatementRecorder["record"]>[0]): Promise<void> {
  return statements.record(rows).catch((error: unknown) => {
    if (error instanceof JournalFullError) {
      throw new ProxyRefusal(
        "53100",
        "jitgate: the audit journal is full (the gateway's database has not taken its records), so the statement was not run",
        "statements are accepted again once the journal has been shipped to the database; /readyz says why meanwhile",
      );
    }
    throw error;
  });
}

/** The user name under which a client presents an OIDC ID token as its password. */
export const OIDC_LOGIN = "oidc";

const isLoopback = (address: string | null) =>
  address !== null && (/^127\./.test(address) || address === "::1" || /^::ffff:127\./.test(address));

interface TargetRuntime {
  config: PostgresTargetConfig;
  rules: CompiledRules;
  masking: Masking;
  cache: ClassificationCache;
}

/**
 * The PostgreSQL proxy listener: admits connections under live grants, wires each connection's
 * hooks to the broker (sessions, statement log, held statements), and ends sessions when their
 * grant ends on any replica.
 */
export class PgProxyServer {
  readonly #server: Server;
  readonly #targets = new Map<string, TargetRuntime>();
  readonly #admission: Admission<TargetRuntime, PgProxyConnection>;
  readonly #secureContext: SecureContext | undefined;
  #closing: Promise<void> | undefined;

  constructor(private readonly options: PgProxyOptions) {
    for (const target of options.targets) {
      if (target.kind !== "postgres") continue;
      const rules = compileRules(target.commands);
      const runtime: TargetRuntime = {
        config: target,
        rules,
        masking: compileMasking(target.mask),
        cache: ClassificationCache.forRules(rules),
      };
      this.#targets.set(target.name, runtime);
    }
    if (options.config.tls) {
      this.#secureContext = createSecureContext({
        cert: readFileSync(options.config.tls.cert),
        key: readFileSync(options.config.tls.key),
      });
    }
    this.#server = createServer((socket) => this.#accept(socket));
    this.#admission = new Admission({
      protocol: "postgres",
      broker: options.broker,
      sessions: options.sessions,
      events: options.events,
      redis: options.redis,
      redisPrefix: options.redisPrefix,
      loginFailures: options.loginFailures,
      targets: this.#targets,
      requestCommand: options.requestCommand,
      oidc: options.oidc,
      onError: options.onError,
      onOpened: options.onOpened,
    });
  }

  /** Admission's counters (credential work, failed logins), for tests. */
  get admission(): Admission<unknown, PgProxyConnection> {
    return this.#admission as Admission<unknown, PgProxyConnection>;
  }

  get connections(): number {
    return this.#admission.live.size;
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
    const connection = new PgProxyConnection(socket, this.#hooks(), {
      maxMessageLength: this.options.config.maxMessageSize,
      secureContext: this.#secureContext,
      onError: (error) => this.options.onError?.(error, "postgres proxy connection"),
    });
    this.#admission.live.track(connection);
  }

  #cancelKey(processId: number, secretKey: number): string {
    return `${this.options.redisPrefix}:pg-cancel:${processId}:${secretKey}`;
  }

  #hooks(): ConnectionHooks {
    const { redis } = this.options;
    const admission = this.#admission;
    return {
      newCancelKey: () => ({ processId: randomBytes(4).readInt32BE(0) & 0x7fffffff, secretKey: randomBytes(4).readInt32BE(0) }),
      onCancel: async (processId, secretKey) => {
        const stored = await redis.get(this.#cancelKey(processId, secretKey));
        if (!stored) return;
        const target = JSON.parse(stored) as { host: string; port: number; processId: number; secretKey: number };
        await cancelUpstream(target, target.processId, target.secretKey);
      },
      onStartup: ({ user, database, clientAddress, tls }) =>
        this.#refusing(async () => {
          // An unknown target is answered like a wrong password: a guesser learns no names.
          const runtime = admission.knownTarget(database);
          if (user === OIDC_LOGIN) return this.#oidcPlan(runtime, database, clientAddress, tls);
          await admission.beforeTry(clientAddress);
          const { grant, verifier } = await admission.verifierOfLogin(user, database);
          return {
            verifier,
            failed: () => admission.failed(clientAddress, database, "scram"),
            admit: () =>
              this.#refusing(async () => {
                // A mock verifier accepts no proof; this is only the type system's comfort.
                if (!grant || !runtime) throw admission.badCredential(database);
                return this.#admit(runtime, grant, clientAddress);
              }),
          };
        }),
    };
  }

  /** Runs a step of admission; what it refuses reaches the client as a FATAL ErrorResponse. */
  async #refusing<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (error) {
      const refusal = this.#admission.refusalFor(error);
      if (refusal.code === "internal") throw error;
      throw new ProxyRefusal(SQLSTATE[refusal.code], refusal.message, refusal.hint);
    }
  }

  /**
   * The user `oidc` sends an ID token as a cleartext password; it is verified by admission and its
   * verified email must be the person of a live grant on the target. A token is a bearer secret
   * that anyone who sees it can replay: it is only taken over TLS (loopback included, since a
   * proxy or tunnel may sit in front), unless `allowPlaintextTokens` says this is local use. The
   * refusal comes before the client is asked for the token, so it never leaves the client.
   */
  #oidcPlan(runtime: TargetRuntime | undefined, database: string, clientAddress: string | null, tls: boolean): StartupPlan {
    this.#admission.requireOidc();
    if (!tls && !(this.options.config.allowPlaintextTokens && isLoopback(clientAddress))) {
      throw new AdmissionRefused({
        code: "not_allowed",
        message: "an ID token is only accepted over TLS: connect with sslmode=verify-full",
        hint: "jitgate connect prints a ready command",
      });
    }
    return {
      checkPassword: (token) =>
        this.#refusing(async () => {
          await this.#admission.beforeTry(clientAddress);
          let grant: Grant;
          try {
            grant = await this.#admission.grantOfIdToken(database, token);
          } catch (error) {
            if (error instanceof AdmissionRefused && error.refusal.code === "bad_credential") {
              await this.#admission.failed(clientAddress, database, "id-token");
            }
            throw error;
          }
          if (!runtime) throw this.#admission.badCredential(database);
          return { admit: () => this.#refusing(() => this.#admit(runtime, grant, clientAddress)) };
        }),
    };
  }

  async #admit(runtime: TargetRuntime, grant: Grant, clientAddress: string | null): Promise<SessionHooks> {
    const { sessions, statements, redis } = this.options;
    const admitted = await this.#admission.open(grant, clientAddress);
    const { session, snapshot } = admitted;
    let cancelKey: string | undefined;
    const self = this;
    const masking = runtime.masking;
    const paramMasker = masking.forResult([{ name: "$", dataTypeID: 25, format: 0 }]);
    const upstreamTarget = parseUpstreamUrl(runtime.config.upstream);
    // COPY … TO on a masked target is vetted by the masking session (what it copies is traced).
    const maskingSession = runtime.config.mask.length > 0 ? new MaskingSession(masking, upstreamTarget) : undefined;
    // Statements that attach a function of the catalog (CREATE TRIGGER …) are decided by its body too.
    const attachedFunctions = new AttachedFunctions(upstreamTarget, runtime.rules);
    const capture = this.#capture(runtime, session.id);
    const recordedText = (text: string) => (masking.detectors ? (masking.detectors.mask(Buffer.from(text, "utf8"))?.toString("utf8") ?? text) : text);

    const hooks: SessionHooks = {
      upstream: upstreamTarget,
      masking: maskingSession,
      capture,
      attach: (end) => admitted.attach(end),
      classify(sql) {
        const result = runtime.cache.get(sql);
        maskingSession?.onStatements(result);
        return result;
      },
      inspectAttached: (statement, unverifiable) => attachedFunctions.inspect(statement, unverifiable),
      onStatements: (starts) =>
        recordOrRefuse(statements, 
          starts.map((s) => ({
            sessionId: session.id,
            seq: s.seq,
            protocol: s.protocol,
            kind: s.statement.kind,
            // What the user typed may hold a value the detectors find (`… WHERE email = '…'`); the
            // log and the audit pages show it to others.
            text: recordedText(s.statement.text),
            parameters: s.parameters,
            verdict: s.statement.verdict,
            rule: s.statement.rule ?? null,
            startedAt: s.startedAt,
          })),
        ),
      onStatementEnd: (end) => statements.complete({ sessionId: session.id, ...end }),
      onBlocked: (statement) => sessions.blocked(snapshot, recordedText(statement.text), statement.rule ?? "block"),
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
        maskingSession?.close();
        attachedFunctions.close();
        if (cancelKey) await redis.del(cancelKey).catch(() => {});
        await statements.flushOutcomes();
        const { startedAt, endedAt, ...counts } = summary;
        await admitted.close({ ...counts, durationMs: endedAt.getTime() - startedAt.getTime(), recordingId: session.id });
      },
    };
    return hooks;
  }

  /**
   * The session's result capture (issue 16), or none when the target keeps no rows. The originals
   * of masked values are sealed under a data key of the session's own, made (and its wrapped form
   * journaled) at the first result that has any; without a seal key they are dropped.
   */
  #capture(runtime: TargetRuntime, sessionId: string): ResultCapture | undefined {
    const caps = runtime.config.record;
    if (caps.rows === 0 || caps.bytes === 0) return undefined;
    const { statements } = this.options;
    const keyring = this.options.broker.results.keyring;
    let dataKey: Buffer | undefined;
    const seal = keyring.current
      ? (seq: number, plain: Buffer) => {
          if (!dataKey) {
            const made = keyring.newDataKey(sessionId)!;
            dataKey = made.dataKey;
            statements.recordSealKey({ sessionId, keyId: made.keyId, wrapped: made.wrapped.toString("base64") });
          }
          return sealResult(dataKey, sessionId, seq, plain);
        }
      : undefined;
    return new ResultCapture(caps, (result) => {
      try {
        statements.recordResult(encodeResult(sessionId, result, seal));
      } catch (error) {
        this.options.onError?.(error, "result record");
      }
    });
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
      await this.#admission.live.drain(graceMs);
      await stopped;
    })();
    return this.#closing;
  }
}
