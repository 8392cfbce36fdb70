import type { Redis } from "ioredis";
import type { Broker, Grant } from "../broker/broker.js";
import { BrokerError, InvalidCredential, NoLiveGrant } from "../broker/errors.js";
import type { SessionSnapshot, SessionSummary, TypedEvents } from "../broker/events.js";
import type { SessionBroker, SessionRow } from "../broker/sessions.js";
import type { SshKeys } from "../broker/ssh-keys.js";
import { OidcError } from "../oidc/errors.js";
import type { OidcVerifier } from "../oidc/verifier.js";
import type { Config } from "../config/schema.js";
import { GrantTimer } from "./grant-timer.js";
import { LoginThrottle } from "./login-throttle.js";
import { LiveSessions, type EndReason, type GrantBinding, type LiveSession } from "./live-sessions.js";

export type ProxyProtocol = "postgres" | "ssh";

/**
 * Why a login is refused, whatever the protocol; each engine renders it on its wire (PostgreSQL a
 * SQLSTATE in a FATAL ErrorResponse, SSH a userauth banner). `bad_credential` is the one a client
 * may retry in the same connection (SSH offers the next method or key).
 */
export type RefusalCode =
  | "no_live_grant"
  | "bad_credential"
  | "not_allowed"
  | "unavailable"
  | "grant_ended"
  | "target_unreachable"
  | "internal";

export interface Refusal {
  code: RefusalCode;
  message: string;
  /** What the user can do about it. */
  hint?: string | undefined;
}

/** A login refused on purpose, with the words for the user. */
export class AdmissionRefused extends Error {
  constructor(
    readonly refusal: Refusal,
    options?: ErrorOptions,
  ) {
    super(refusal.message, options);
    this.name = "AdmissionRefused";
  }
}

const CANNOT_CHECK_GRANTS = "jitgate cannot check grants right now; try again shortly";

/**
 * The sentences whose wording each protocol has had since it shipped: a PostgreSQL user sees the
 * target as a database, an SSH user as the user name.
 */
const PHRASES: Record<ProxyProtocol, {
  noLiveGrant(who: string, target: string, command: string): Omit<Refusal, "code">;
  oidcNotConfigured: string;
}> = {
  postgres: {
    noLiveGrant: (who, target, command) => ({
      message: `no live access grant for "${who}" on ${target}`,
      hint: `request one with: ${command} request ${target} <duration> <reason>`,
    }),
    oidcNotConfigured: "OIDC is not configured on this gateway, so the user oidc cannot log in; use the connection line of your grant",
  },
  ssh: {
    noLiveGrant: (who, target, command) => ({
      message: `no live access grant for ${who} on ${target}`,
      hint: `request one with: ${command} request ${target} <duration> <reason>`,
    }),
    oidcNotConfigured: "OIDC is not configured on this gateway, so an ID token cannot log in; use your grant's credential or a registered key",
  },
};

export interface AdmissionOptions<R> {
  protocol: ProxyProtocol;
  broker: Broker;
  sessions: SessionBroker;
  /** Registered public keys (SSH). */
  keys?: SshKeys | undefined;
  /** Domain events from every replica: grants that end or move reach their sessions through them. */
  events: TypedEvents;
  redis: Redis;
  /** The deployment's Redis prefix (failed-login counts live under it). */
  redisPrefix: string;
  /** `proxy.loginFailures`: when failed logins from one address are slowed down and audited. */
  loginFailures: Config["proxy"]["loginFailures"];
  /** This protocol's targets by name, as the engine prepared them. */
  targets: ReadonlyMap<string, R>;
  /** The command users type to ask for access, for the refusals' hints. */
  requestCommand?: string | undefined;
  /** Checks ID tokens (absent when `oidc:` is not configured). */
  oidc?: OidcVerifier | undefined;
  onError?: ((error: unknown, where: string) => void) | undefined;
  /**
   * Runs after the session record is opened and before the session is bound under its grant: the
   * window in which a revoke finds no session to end. Tests act in it; the gateway sets nothing.
   */
  onOpened?: ((session: SessionSnapshot) => Promise<void> | void) | undefined;
}

/**
 * The one path from "a login arrived" to "a bound, live session", for every protocol (STYLE 16):
 * the target and the fail-closed checks, the grant behind a credential, an ID token or a key, the
 * session record, the binding under the grant, the grant's own timer, and the words of every
 * refusal. The protocol engines only speak their wire around it.
 */
export class Admission<R, S extends LiveSession> {
  /** The sessions this proxy holds: tracked by the engine, bound under their grants here. */
  readonly live: LiveSessions<S>;

  /** Failed logins per address, shared by every replica through Redis. */
  readonly throttle: LoginThrottle;

  constructor(private readonly options: AdmissionOptions<R>) {
    this.live = new LiveSessions(options.events);
    const failures = options.loginFailures;
    this.throttle = new LoginThrottle({
      redis: options.redis,
      redisPrefix: options.redisPrefix,
      threshold: failures.threshold,
      windowMs: failures.window,
      delayMs: failures.delay,
      maxDelayMs: failures.maxDelay,
      audit: (event) => options.sessions.audit(event),
      onError: options.onError,
    });
  }

  /** What credential checks have cost (lookups, keyed hashes, key derivations), for tests. */
  get credentialWork(): { lookups: number; keyedHashes: number; derivations: number } {
    return this.options.broker.grants.credentialWork.snapshot();
  }

  get #command(): string {
    return this.options.requestCommand ?? "/access";
  }

  get #phrases() {
    return PHRASES[this.options.protocol];
  }

  #noLiveGrant(who: string, target: string): AdmissionRefused {
    return new AdmissionRefused({ code: "no_live_grant", ...this.#phrases.noLiveGrant(who, target, this.#command) });
  }


  /** Refuses at once when ID tokens cannot be checked here (before a client is asked for one). */
  requireOidc(): OidcVerifier {
    if (!this.options.oidc) throw new AdmissionRefused({ code: "not_allowed", message: this.#phrases.oidcNotConfigured });
    return this.options.oidc;
  }

  /**
   * The target a login names, or undefined when there is none: the credential paths carry on with
   * it as with a wrong password, so a guesser learns no target names either. Fails closed (Redis).
   */
  knownTarget(name: string): R | undefined {
    // Fail closed: without Redis, expiry and revocation could not reach this session.
    if (this.options.redis.status !== "ready") throw new AdmissionRefused({ code: "unavailable", message: CANNOT_CHECK_GRANTS });
    return this.options.targets.get(name);
  }

  /**
   * Waits out the delay that the failures from `address` have earned (see LoginThrottle) before a
   * credential is checked; refuses when the count cannot be read.
   */
  async beforeTry(address: string | null): Promise<void> {
    try {
      await this.throttle.beforeTry(address);
    } catch (error) {
      this.options.onError?.(error, "read login failures");
      throw new AdmissionRefused({ code: "unavailable", message: CANNOT_CHECK_GRANTS }, { cause: error });
    }
  }

  /** Counts a failed try from `address` (slowing the next ones down, auditing bursts). */
  failed(address: string | null, target: string, method: string): Promise<void> {
    return this.throttle.failed(address, { protocol: this.options.protocol, target: target.slice(0, 100), method });
  }

  /**
   * The SCRAM verifier for a PostgreSQL login and, when the login holds a live credential on the
   * target, its grant. Unknown logins, logins without a grant and unknown targets get a mock
   * verifier after the same work (one keyed hash, one query), so the exchange only fails at the
   * proof, exactly as a wrong password does (issue 17).
   */
  async verifierOfLogin(login: string, target: string): Promise<Awaited<ReturnType<Broker["loginCredential"]>>> {
    try {
      return await this.options.broker.loginCredential(login, target);
    } catch (error) {
      this.options.onError?.(error, "check grant");
      throw new AdmissionRefused({ code: "unavailable", message: CANNOT_CHECK_GRANTS }, { cause: error });
    }
  }

  /**
   * The refusal of every credential that does not open a live grant (wrong secret, no grant, unknown
   * user, key or target): one sentence, whatever the reason, so it says nothing a guesser can use.
   */
  badCredential(target: string): AdmissionRefused {
    return new AdmissionRefused({
      code: "bad_credential",
      message: `that is not the credential of a live access grant on ${target} (wrong, expired or revoked)`,
      hint: `request access with: ${this.#command} request ${target} <duration> <reason>`,
    });
  }

  /** The live grant whose credential is `secret` (SSH, where the user name is the target). */
  async grantOfSecret(target: string, secret: string): Promise<Grant> {
    try {
      return await this.options.broker.checkCredential({ target, secret });
    } catch (error) {
      if (error instanceof InvalidCredential || error instanceof NoLiveGrant) throw this.badCredential(target);
      this.options.onError?.(error, "check credential");
      throw new AdmissionRefused({ code: "unavailable", message: CANNOT_CHECK_GRANTS }, { cause: error });
    }
  }

  /**
   * An OIDC ID token: verified (signature, issuer, audience, expiry, verified email), and its person
   * must hold a live grant on the target.
   */
  async grantOfIdToken(target: string, token: string): Promise<Grant> {
    const verifier = this.requireOidc();
    let person;
    try {
      ({ person } = await verifier.identify(this.options.broker, token));
    } catch (error) {
      if (error instanceof OidcError && error.code !== "oidc_provider_unreachable") {
        throw new AdmissionRefused({ code: "bad_credential", message: error.message }, { cause: error });
      }
      this.options.onError?.(error, "verify ID token");
      throw new AdmissionRefused({ code: "unavailable", message: "jitgate cannot check ID tokens right now; try again shortly" }, { cause: error });
    }
    try {
      return await this.options.broker.liveGrantOf(person, target);
    } catch (error) {
      if (!(error instanceof NoLiveGrant)) throw error;
      throw this.#noLiveGrant(person.email ?? person.displayName, target);
    }
  }

  /**
   * The live grant of the person who registered this public key; undefined when nobody did. Only
   * called once the client has signed with the key (RFC 4252 §7): the holder of the private key
   * may hear that they have no grant, nobody else learns anything about a public key.
   */
  async grantOfKey(target: string, key: Buffer): Promise<Grant | undefined> {
    const keys = this.options.keys;
    if (!keys) return undefined;
    const owner = await keys.owner(key);
    if (!owner) return undefined;
    const grant = await keys.liveGrant(owner.person.id, target);
    if (!grant) throw this.#noLiveGrant(owner.person.email ?? owner.person.displayName, target);
    return grant;
  }

  /**
   * Opens the session record under `grant`, binds it under the grant (revoke, expiry and extension
   * on any replica reach it from then on), re-reads the grant, and arms the grant's own timer. A
   * grant that ended before the binding could hear of it ends the session here: its record is
   * closed and the login is refused with `grant_ended`.
   */
  async open(grant: Grant, clientAddress: string | null): Promise<AdmittedSession> {
    const { sessions, broker, protocol } = this.options;
    let opened;
    try {
      opened = await sessions.open({ grantId: grant.id, protocol, clientAddress });
    } catch (error) {
      if (error instanceof BrokerError) throw new AdmissionRefused({ code: "not_allowed", message: error.message }, { cause: error });
      this.options.onError?.(error, "open session");
      throw new AdmissionRefused({ code: "unavailable", message: "jitgate cannot record this session right now, so it is refused" }, { cause: error });
    }
    const admitted = new AdmittedSession(opened.session, opened.snapshot, sessions, broker);
    try {
      await this.options.onOpened?.(opened.snapshot);
    } catch (error) {
      await admitted.close(admitted.emptySummary("error")).catch((closeError: unknown) => this.options.onError?.(closeError, "close session"));
      throw error;
    }
    admitted.bind(this.live.bind(grant.id, admitted), grant.expiresAt);
    // Re-read after the bind: a revoke or expiry that landed before it found no session to end.
    let current: Grant;
    try {
      current = await broker.getGrant(grant.id);
    } catch (error) {
      this.options.onError?.(error, "re-check grant");
      await admitted.close(admitted.emptySummary("error")).catch((closeError: unknown) => this.options.onError?.(closeError, "close session"));
      throw new AdmissionRefused({ code: "unavailable", message: CANNOT_CHECK_GRANTS }, { cause: error });
    }
    const ended =
      admitted.endedBy ??
      (current.state === "revoked" ? "revoked" : current.state !== "active" || current.expiresAt.getTime() <= broker.clock.now().getTime() ? "expired" : undefined);
    if (ended) {
      await admitted.close(admitted.emptySummary(ended)).catch((error: unknown) => this.options.onError?.(error, "close session"));
      throw new AdmissionRefused({ code: "grant_ended", message: `access grant ${ended}` });
    }
    if (current.expiresAt.getTime() !== grant.expiresAt.getTime()) admitted.extendTo(current.expiresAt);
    return admitted;
  }

  /** The refusal for anything admission (or the engine around it) threw. */
  refusalFor(error: unknown): Refusal {
    if (error instanceof AdmissionRefused) return error.refusal;
    if (error instanceof BrokerError) return { code: "not_allowed", message: error.message };
    return { code: "internal", message: "the login could not be checked; try again shortly" };
  }
}

/**
 * A session admitted under a live grant, bound under it: it ends when the grant expires (its own
 * timer on the broker's clock, or the expiry job's event) or is revoked. The protocol engine
 * `attach`es the way to end it once it can be ended; an end that came earlier is delivered then.
 */
export class AdmittedSession implements GrantBinding {
  #end: ((reason: EndReason) => void) | undefined;
  #endedBy: "expired" | "revoked" | undefined;
  #unbind: (() => void) | undefined;
  #timer: GrantTimer | undefined;
  #closed: Promise<void> | undefined;

  constructor(
    readonly session: SessionRow,
    readonly snapshot: SessionSnapshot,
    private readonly sessions: SessionBroker,
    private readonly broker: Broker,
  ) {}

  /** How the grant ended before the engine attached, if it did. */
  get endedBy(): "expired" | "revoked" | undefined {
    return this.#endedBy;
  }

  /** When the grant ends, as this session knows it. */
  get expiresAt(): Date | undefined {
    return this.#timer?.expiresAt;
  }

  bind(unbind: () => void, expiresAt: Date): void {
    this.#unbind = unbind;
    this.#timer = new GrantTimer(this.broker.clock, expiresAt, () => this.terminate("expired"));
  }

  /** The engine's way to end its session with a reason the user is told (at once, if the grant already ended). */
  attach(end: (reason: EndReason) => void): void {
    this.#end = end;
    if (this.#endedBy && !this.#closed) end(this.#endedBy);
  }

  terminate(reason: "expired" | "revoked"): void {
    if (this.#closed) return;
    this.#timer?.stop();
    if (this.#end) this.#end(reason);
    else this.#endedBy ??= reason;
  }

  extendTo(at: Date): void {
    this.#timer?.extendTo(at);
  }

  /** Closes the record once with the session's summary: the grant no longer reaches it. */
  close(summary: SessionSummary, recording?: unknown): Promise<void> {
    this.#closed ??= (async () => {
      this.#timer?.stop();
      this.#unbind?.();
      await this.sessions.close(this.session.id, summary, recording);
    })();
    return this.#closed;
  }

  /** The summary of a session that ended before it carried anything. */
  emptySummary(endReason: string): SessionSummary {
    return {
      durationMs: Math.max(0, this.broker.clock.now().getTime() - this.session.startedAt.getTime()),
      statementsByKind: {},
      rowsReturned: 0,
      rowsAffected: 0,
      valuesMasked: 0,
      blocked: 0,
      held: 0,
      approved: 0,
      bytesIn: 0,
      bytesOut: 0,
      endReason,
      recordingId: this.session.id,
    };
  }
}
