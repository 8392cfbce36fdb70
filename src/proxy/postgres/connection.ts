import type { Socket } from "node:net";
import type { SessionSummary } from "../../broker/index.js";
import { TLSSocket, type SecureContext } from "node:tls";
import { backend, type ErrorFields, type RowField } from "./backend-codec.js";
import { decodeFrontend, decodeStartup, FrontendReader, ProtocolViolation, type FrontendMessage } from "./frontend-codec.js";
import { ScramError, ScramServer, type Verifier } from "./scram.js";
import { openUpstream, type UpstreamSession, type UpstreamTarget } from "./upstream.js";
import { endUpstreamBackend } from "./backend-termination.js";
import type { EndReason } from "../live-sessions.js";
import type { AttachedFunction } from "../../rules/sql-classifier.js";
import type { ResultCapture } from "./result-capture.js";
import { pinnedSettingChange, upstreamStartupParams } from "./session-settings.js";
import { fatalFieldsOf, PgRelay, ProxyRefusal, type RelayIo } from "./relay.js";

export { ProxyRefusal, refusalSql } from "./relay.js";

export interface ClassifiedStatement {
  text: string;
  kind: string;
  verdict: "allow" | "review" | "block";
  rule?: string | undefined;
  /** Why, for rules that explain themselves (pinned-setting, unverifiable, unparseable). */
  detail?: string | undefined;
  /** Functions of the target's catalog the statement attaches; their bodies decide too (see `inspectAttached`). */
  functionsToInspect?: readonly AttachedFunction[] | undefined;
}

export interface StatementStart {
  seq: number;
  protocol: "simple" | "extended";
  statement: ClassifiedStatement;
  parameters: (string | null)[] | null;
  /** When it was handled, in epoch milliseconds (a Date is built only where it is recorded). */
  startedAt: number;
}

export interface StatementEnd {
  seq: number;
  durationMs: number;
  rows: number | null;
  commandTag: string | null;
  error: string | null;
}

export interface RowMasker {
  mask(values: readonly (Buffer | null)[]): { values: readonly (Buffer | null)[]; masked: number };
  /** The same on a whole DataRow frame: the frame itself when nothing changed (see masker.ts). */
  maskFrame?(frame: Buffer, counts: { masked: number }): Buffer;
}

/**
 * Masking on a target with masking rules (issue 13, musts 3 and 4): results are traced to where
 * their values come from, and every other text the server sends is masked too.
 */
export interface SessionMasking {
  /** The masker for a result of the statement `statement` (its text; undefined when unknown). */
  forResult(fields: RowField[], statement: string | undefined): RowMasker | undefined | Promise<RowMasker | undefined>;
  /** An ErrorResponse, NoticeResponse, NotificationResponse, ParameterStatus or CopyData frame to forward instead. */
  serverText(type: number, frame: Buffer, statement: string | undefined): Buffer;
  /** Refuses what cannot be masked (COPY out of masked columns); resolves with the statements to decide on. */
  vet(statements: ClassifiedStatement[]): Promise<ClassifiedStatement[]>;
  /** `vet` without waiting: the same answer when it needs no look-up, else undefined. */
  vetSync?(statements: ClassifiedStatement[]): ClassifiedStatement[] | undefined;
}

/** What the gateway decides about one admitted session (STYLE 2: policy hangs on hooks). */
export interface SessionHooks {
  upstream: UpstreamTarget;
  /**
   * Hands the gateway the way to end this session (FATAL 57P01) once it can be ended: from then on
   * it ends with its grant, at once if the grant ended during admission.
   */
  attach(end: (reason: EndReason) => void): void;
  classify(sql: string): ClassifiedStatement[];
  /**
   * A statement with `functionsToInspect`, with the strictest verdict of its own and of those
   * functions' bodies as the target's catalog holds them now; unverifiable (and not looked up)
   * when `unverifiable` says why the catalog may not be what the statement will see.
   */
  inspectAttached(statement: ClassifiedStatement, unverifiable: string | undefined): Promise<ClassifiedStatement>;
  /** Records statements before they are forwarded; a rejection refuses them (fail closed). */
  onStatements(statements: StatementStart[]): Promise<void>;
  onStatementEnd(end: StatementEnd): void;
  onBlocked(statement: ClassifiedStatement): Promise<void>;
  /** Holds a statement for approval and resolves with the decision. */
  onHold(statement: ClassifiedStatement): Promise<"approved" | "denied" | "timed_out">;
  /** The masker for a result, or undefined when nothing in it can need masking. */
  onRowDescription(fields: { name: string; dataTypeID: number; format: 0 | 1 }[]): RowMasker | undefined;
  /** Present on targets with masking rules; then it, not onRowDescription, masks. */
  masking?: SessionMasking | undefined;
  /** Keeps each statement's result rows for the record (issue 16); absent when the target keeps none. */
  capture?: ResultCapture | undefined;
  /** Redacts bind parameters for the record. */
  redactParameters(values: (Buffer | null)[], formats: number[]): (string | null)[];
  onClose(summary: ConnectionSummary): Promise<void>;
  /** Cancel-key registration so a CancelRequest on any replica reaches this upstream backend. */
  registerCancelKey(key: { processId: number; secretKey: number }, upstream: { host: string; port: number; processId: number; secretKey: number }): Promise<void>;
}

/**
 * How a login is checked: a SCRAM exchange against the grant credential's verifier, or a password
 * sent in clear (AuthenticationCleartextPassword) that the gateway checks itself (an OIDC ID token).
 */
export type StartupPlan =
  | { verifier: Verifier; admit(): Promise<SessionHooks>; /** Counts a failed proof (login throttle). */ failed(): Promise<void> }
  | { checkPassword(password: string): Promise<{ admit(): Promise<SessionHooks> }> };

/** A cleartext password (an ID token) longer than this is refused before it is looked at. */
export const MAX_CLEARTEXT_PASSWORD = 16 * 1024;

export interface ConnectionHooks {
  /** Checks the login against a live grant; returns how to authenticate it and the way to admit it. */
  onStartup(startup: { user: string; database: string; params: Record<string, string>; clientAddress: string | null; tls: boolean }): Promise<StartupPlan>;
  onCancel(processId: number, secretKey: number): Promise<void>;
  newCancelKey(): { processId: number; secretKey: number };
}

/** The session summary (broker's SessionSummary) as the connection counts it: times instead of a duration. */
export type ConnectionSummary = Omit<SessionSummary, "durationMs" | "recordingId"> & { startedAt: Date; endedAt: Date };

/**
 * One client connection through the PostgreSQL proxy, the relay's socket adapter: start-up, TLS
 * and SCRAM towards the client, admission and the upstream session, then the relay (relay.ts,
 * socket-free) fed with what either socket reads, the sockets' back-pressure, and the end.
 */
export class PgProxyConnection {
  #client: Socket | TLSSocket;
  readonly #reader: FrontendReader;
  #state: "startup" | "auth" | "connecting" | "ready" | "closed" = "startup";
  /** The grant ended: nothing more goes to the upstream backend or comes back from it. */
  #ending = false;
  /** Start-up and authentication, in order; once the relay exists, it orders client messages itself. */
  #work: Promise<void> = Promise.resolve();
  #queued = 0;
  #tls = false;
  #scram: ScramServer | undefined;
  #plan: Awaited<ReturnType<ConnectionHooks["onStartup"]>> | undefined;
  #user = "";
  #session: SessionHooks | undefined;
  #upstream: UpstreamSession | undefined;
  #relay: PgRelay | undefined;
  #closed: Promise<void> | undefined;
  #resolveClosed: (() => void) | undefined;
  readonly #summary: ConnectionSummary;

  constructor(
    socket: Socket,
    private readonly hooks: ConnectionHooks,
    private readonly options: { maxMessageLength: number; secureContext?: SecureContext | undefined; onError?: (error: unknown) => void },
  ) {
    this.#client = socket;
    this.#reader = new FrontendReader(options.maxMessageLength);
    const now = new Date();
    this.#summary = {
      startedAt: now,
      endedAt: now,
      statementsByKind: {},
      rowsReturned: 0,
      rowsAffected: 0,
      valuesMasked: 0,
      blocked: 0,
      held: 0,
      approved: 0,
      bytesIn: 0,
      bytesOut: 0,
      endReason: "client",
    };
    socket.setNoDelay(true);
    this.#attachClient(socket);
  }

  /** Resolves when both sides are closed and the session is summarized. */
  get closed(): Promise<void> {
    return (this.#closed ??= new Promise((resolve) => {
      this.#resolveClosed = resolve;
      if (this.#state === "closed" && !this.#session) resolve();
    }));
  }

  #attachClient(socket: Socket | TLSSocket): void {
    socket.on("data", (chunk: Buffer) => this.#onClientData(chunk));
    socket.on("error", () => this.#end("client"));
    socket.on("close", () => this.#end("client"));
  }

  #onClientData(chunk: Buffer): void {
    if (this.#relay && this.#queued === 0) {
      this.#relay.fromClient(chunk);
      return;
    }
    this.#summary.bytesIn += chunk.length;
    let frames: Buffer[];
    try {
      frames = this.#reader.push(chunk);
    } catch (error) {
      this.#fatal({ severity: "FATAL", code: "08P01", message: (error as Error).message });
      return;
    }
    if (frames.length === 0) return;
    this.#settle(this.#work.then(() => this.#handleFrames(frames, 0)));
  }

  /**
   * Queues work behind what is queued (messages are handled strictly in order). Back-pressure:
   * while earlier messages wait, stop reading more. Pausing costs system calls, so it is only
   * done once a few batches are queued.
   */
  #settle(work: Promise<void>): void {
    this.#queued += 1;
    if (this.#queued > 4) this.#client.pause();
    this.#work = work.then(
      () => this.#settled(),
      (error: unknown) => {
        this.#failed(error);
        this.#settled();
      },
    );
  }

  #settled(): void {
    this.#queued -= 1;
    if (this.#queued <= 4 && this.#state !== "closed" && this.#client.isPaused()) this.#client.resume();
  }

  #failed(error: unknown): void {
    this.#fatal(fatalFieldsOf(error, this.options.onError));
  }

  async #handleFrames(frames: Buffer[], start: number): Promise<void> {
    for (let i = start; i < frames.length; i++) {
      if (this.#state === "closed" || this.#ending) return;
      const frame = frames[i]!;
      if (this.#state === "startup") {
        await this.#handleStartup(frame);
        // Bytes that followed the startup packet belong to the next phase.
        const more = this.#reader.drain();
        if (more.length > 0) await this.#handleFrames(more, 0);
      } else if (this.#state === "auth") {
        await this.#handleAuth(decodeFrontend(frame[0]!, frame));
      } else if (this.#state === "ready") {
        // What the client sent while it was being admitted: the relay takes it from here, in order.
        this.#relay!.fromClientFrames(frames.slice(i));
        return;
      } else {
        throw new ProtocolViolation("message before the session was ready");
      }
    }
  }

  /** The relay's output, over the two sockets. */
  #relayIo(upstream: UpstreamSession): RelayIo {
    return {
      toUpstream: (bytes: Buffer) => {
        upstream.socket.write(bytes);
      },
      toClient: (bytes: Buffer) => this.#writeClient(bytes),
      pauseClient: () => this.#client.pause(),
      resumeClient: () => {
        if (this.#queued <= 4 && this.#state !== "closed" && this.#client.isPaused()) this.#client.resume();
      },
      pauseUpstream: () => upstream.socket.pause(),
      resumeUpstream: () => upstream.socket.resume(),
      fatal: (fields: ErrorFields) => this.#fatal(fields),
      end: (reason: string) => this.#end(reason),
      onError: (error: unknown) => this.options.onError?.(error),
    };
  }

  #writeClient(written: Buffer): void {
    if (written.length === 0 || this.#state === "closed") return;
    if (this.#client.write(written) === false) {
      this.#upstream?.socket.pause();
      this.#client.once("drain", () => {
        if (!this.#relay?.holdsUpstream) this.#upstream?.socket.resume();
      });
    }
  }

  // ------------------------------------------------------------------ start-up and authentication

  async #handleStartup(frame: Buffer): Promise<void> {
    const message = decodeStartup(frame.subarray(4));
    if (message.type === "ssl-request") {
      if (!this.options.secureContext || this.#tls) {
        this.#client.write("N");
        return;
      }
      this.#client.write("S");
      await this.#upgradeTls();
      return;
    }
    if (message.type === "gssenc-request") {
      this.#client.write("N");
      return;
    }
    if (message.type === "cancel") {
      // https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS:
      // the server answers nothing and closes.
      await this.hooks.onCancel(message.processId, message.secretKey).catch(() => {});
      this.#end("cancel-request");
      return;
    }
    const user = message.params.user ?? "";
    const database = message.params.database ?? user;
    if (message.params.replication && message.params.replication !== "false") {
      throw new ProxyRefusal("28000", "replication connections are not allowed through jitgate");
    }
    this.#reader.startupPhase = false;
    this.#user = user;
    this.#upstreamParams = upstreamStartupParams(message.params);
    this.#state = "auth";
    this.#plan = await this.hooks.onStartup({
      user,
      database,
      params: message.params,
      clientAddress: this.#client.remoteAddress ?? null,
      tls: this.#tls,
    });
    this.#client.write("verifier" in this.#plan ? backend.authenticationSasl(["SCRAM-SHA-256"]) : backend.authenticationCleartextPassword());
  }

  async #upgradeTls(): Promise<void> {
    const raw = this.#client as Socket;
    raw.removeAllListeners("data");
    raw.removeAllListeners("close");
    raw.removeAllListeners("error");
    const secure = new TLSSocket(raw, { isServer: true, secureContext: this.options.secureContext! });
    this.#client = secure;
    this.#tls = true;
    await new Promise<void>((resolve, reject) => {
      secure.once("secure", resolve);
      secure.once("error", reject);
    });
    this.#attachClient(secure);
  }

  async #handleAuth(message: FrontendMessage): Promise<void> {
    if (message.type !== "auth") throw new ProtocolViolation(`expected an authentication message, got ${message.type}`);
    const plan = this.#plan!;
    if (!("verifier" in plan)) {
      // PasswordMessage: the password as a C string (https://www.postgresql.org/docs/current/protocol-message-formats.html).
      if (message.body.length > MAX_CLEARTEXT_PASSWORD) throw new ProxyRefusal("28000", `the password is longer than ${MAX_CLEARTEXT_PASSWORD} bytes`);
      const end = message.body.indexOf(0);
      const checked = await plan.checkPassword(message.body.toString("utf8", 0, end < 0 ? message.body.length : end));
      this.#client.write(backend.authenticationOk());
      this.#state = "connecting";
      await this.#admit(() => checked.admit());
      return;
    }
    try {
      if (!this.#scram) {
        // SASLInitialResponse: mechanism, int32 length, client-first-message.
        const end = message.body.indexOf(0);
        const mechanism = message.body.toString("utf8", 0, end);
        if (mechanism !== "SCRAM-SHA-256") throw new ScramError(`unsupported SASL mechanism ${mechanism}`);
        const length = message.body.readInt32BE(end + 1);
        const clientFirst = message.body.toString("utf8", end + 5, end + 5 + Math.max(0, length));
        this.#scram = new ScramServer(plan.verifier);
        this.#client.write(backend.saslContinue(this.#scram.start(clientFirst)));
        return;
      }
      const serverFinal = this.#scram.finish(message.body.toString("utf8"));
      this.#client.write(backend.saslFinal(serverFinal));
    } catch (error) {
      if (!(error instanceof ScramError)) throw error;
      // What PostgreSQL itself answers, whether the user, their grant or the password was wrong.
      await plan.failed();
      throw new ProxyRefusal("28P01", `password authentication failed for user "${this.#user}"`);
    }
    this.#client.write(backend.authenticationOk());
    this.#state = "connecting";
    await this.#admit(() => plan.admit());
  }

  async #admit(admit: () => Promise<SessionHooks>): Promise<void> {
    const session = await admit();
    this.#session = session;
    // The client may have gone, or the grant ended, while admission ran: then only the record closes.
    if (this.#isClosed()) return this.#finishSession(this.#summary.endReason);
    session.attach((reason) => this.terminate(reason));
    if (this.#isClosed()) return;
    let upstream: UpstreamSession;
    try {
      upstream = await openUpstream(session.upstream, this.#upstreamParams);
    } catch (error) {
      await this.#finishSession("error");
      throw new ProxyRefusal("08006", `jitgate could not reach the target: ${(error as Error).message}`);
    }
    if (this.#isClosed()) {
      upstream.socket.destroy();
      return;
    }
    const changed = upstream.parameterFrames.map(pinnedSettingChange).find((problem) => problem !== undefined);
    if (changed !== undefined) {
      upstream.socket.destroy();
      await this.#finishSession("error");
      throw new ProxyRefusal("55000", changed);
    }
    this.#upstream = upstream;
    const key = this.hooks.newCancelKey();
    await session.registerCancelKey(key, {
      host: session.upstream.host,
      port: session.upstream.port,
      processId: upstream.processId,
      secretKey: upstream.secretKey,
    });
    if (this.#isClosed()) return;
    const relay = new PgRelay(session, this.#relayIo(upstream), { reader: this.#reader, summary: this.#summary });
    this.#relay = relay;
    upstream.socket.on("data", (chunk: Buffer) => relay.fromUpstream(chunk));
    upstream.socket.on("error", () => this.#end("upstream"));
    upstream.socket.on("close", () => this.#end("upstream"));
    for (const frame of upstream.parameterFrames) this.#client.write(frame);
    this.#client.write(backend.backendKeyData(key.processId, key.secretKey));
    this.#client.write(backend.readyForQuery("I"));
    this.#state = "ready";
  }

  #upstreamParams: Record<string, string> = {};

  // A method, not a comparison: the state changes under awaits that TypeScript's narrowing cannot see.
  #isClosed(): boolean {
    return this.#state === "closed";
  }

  // ------------------------------------------------------------------ ending

  /**
   * Ends the session because its grant ended. The work ends first: the upstream backend's running
   * statement is cancelled and the backend terminated (its open transaction rolls back), and only
   * then does the client get FATAL 57P01 and both sockets close. Meanwhile nothing more is relayed
   * either way, so nothing the client sends after the grant's end reaches the target.
   */
  terminate(reason: EndReason): void {
    if (this.#state === "closed" || this.#ending) return;
    const message =
      reason === "expired" ? "access grant expired" : reason === "revoked" ? "access grant revoked" : "jitgate is shutting down";
    const upstream = this.#upstream;
    const target = this.#session?.upstream;
    if (!upstream || !target) {
      this.#fatal({ severity: "FATAL", code: "57P01", message }, reason);
      return;
    }
    this.#ending = true;
    this.#relay?.stop();
    this.#client.pause();
    void endUpstreamBackend(target, upstream.processId, upstream.secretKey).then(() => {
      this.#ending = false;
      this.#fatal({ severity: "FATAL", code: "57P01", message }, reason);
    });
  }

  #fatal(fields: ErrorFields, reason = "error"): void {
    if (this.#state === "closed") return;
    if (!this.#client.destroyed) this.#client.end(backend.error(fields));
    this.#end(reason);
  }

  #end(reason: string): void {
    // While the backend is being ended its socket closes, and the client may go: the session
    // ends when that is done, with the grant's reason.
    if (this.#state === "closed" || this.#ending) return;
    this.#state = "closed";
    this.#summary.endReason = reason;
    this.#upstream?.socket.destroy();
    if (!this.#client.destroyed) {
      this.#client.end();
      setTimeout(() => this.#client.destroy(), 1_000).unref();
    }
    void this.#finishSession(reason);
  }

  async #finishSession(reason: string): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    if (session) {
      this.#relay?.close(reason);
      this.#summary.endedAt = new Date();
      this.#summary.endReason = reason;
      await session.onClose(this.#summary).catch((error: unknown) => this.options.onError?.(error));
    }
    this.#resolveClosed?.();
  }
}
