import type { ResultCapture } from "./result-capture.js";
import { serialize } from "pg-protocol";
import {
  BackendReader,
  BackendType,
  decodeCommandTag,
  decodeDataRow,
  decodeErrorFields,
  decodeRowDescription,
  encodeDataRow,
  rowsOfCommandTag,
  type ErrorFields,
} from "./backend-codec.js";
import { decodeFrontend, ProtocolViolation, type FrontendMessage, type FrontendReader } from "./frontend-codec.js";
import type { ClassifiedStatement, ConnectionSummary, RowMasker, SessionHooks, SessionMasking, StatementStart } from "./connection.js";
import { INVALID_ENCODING_DETAIL, INVALID_ENCODING_RULE, pinnedSettingChange } from "./session-settings.js";

/** A refusal the client sees as an ErrorResponse (FATAL during start-up). */
export class ProxyRefusal extends Error {
  constructor(
    readonly sqlState: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/**
 * Builds a statement that makes the upstream server itself raise our error, so the client and
 * the server agree on the protocol and transaction state (a failed statement inside a
 * transaction block aborts it, exactly as if the server had refused it).
 */
export function refusalSql(sqlState: string, message: string): string {
  const literal = message.replace(/'/g, "''").replace(/\$jitgate\$/g, "");
  return `DO $jitgate$BEGIN RAISE EXCEPTION USING ERRCODE = '${sqlState}', MESSAGE = '${literal}'; END$jitgate$`;
}

/** The FATAL answer for an error that ends the session: ours say why, anything else is XX000 (and reported). */
export function fatalFieldsOf(error: unknown, onError?: (error: unknown) => void): ErrorFields {
  if (error instanceof ProtocolViolation) return { severity: "FATAL", code: "08P01", message: error.message };
  if (error instanceof ProxyRefusal) return { severity: "FATAL", code: error.sqlState, message: error.message, ...(error.hint ? { hint: error.hint } : {}) };
  onError?.(error);
  return { severity: "FATAL", code: "XX000", message: "jitgate could not handle this message; the session is closed" };
}

/**
 * Where the relay's output goes: bytes for either side, flow control and the session's end. The
 * relay never touches a socket; the connection (connection.ts) implements this over its two.
 */
export interface RelayIo {
  /** Bytes for the upstream server: everything a client read queued, in one call. */
  toUpstream(bytes: Buffer): void;
  /** Bytes for the client: everything an upstream read produced, in one call (the read itself when nothing changed). */
  toClient(bytes: Buffer): void;
  /** Client messages are queued behind one that waits (a held statement): stop reading the client … */
  pauseClient(): void;
  /** … and read it again. */
  resumeClient(): void;
  /** A result's masker is being resolved: stop reading upstream … */
  pauseUpstream(): void;
  /** … and read it again. */
  resumeUpstream(): void;
  /** Ends the session with `fields` as the client's last message (FATAL); the connection then calls `close`. */
  fatal(fields: ErrorFields): void;
  /** Ends the session without a message (the client sent Terminate); the connection then calls `close`. */
  end(reason: string): void;
  /** An unexpected error (a bug, a failing hook), for the log. */
  onError?(error: unknown): void;
}

/** A Query (done at its ReadyForQuery) or an Execute (done at its completion) awaiting its results. */
interface Inflight {
  kind: "query" | "execute";
  seqs: number[];
  next: number;
  startedAt: number;
  /** The number of the Sync (or Query) whose ReadyForQuery ends it at the latest. */
  sync: number;
  rows: number;
  /** The statements' texts, by position, for tracing results and messages to them. */
  texts: string[];
  /** Our own substitute (a refusal): its error is the gateway's text, not the server's. */
  ours: boolean;
}

/** A Describe whose answer (RowDescription or NoData) is still to come. */
interface PendingDescribe {
  /** Ours, added before an Execute: its answer is not the client's to see. */
  injected: boolean;
  /**
   * Its answer gives the masker of the Execute right after it: ours always; the client's own when
   * the client sent it right before its Execute of the same portal (then nothing is added).
   */
  forExecute: boolean;
  text: string | undefined;
  sync: number;
}

/** Server messages that carry text other than result rows (masked on masked targets). */
const SERVER_TEXT_TYPES: ReadonlySet<number> = new Set([
  BackendType.ErrorResponse,
  BackendType.NoticeResponse,
  BackendType.ParameterStatus,
  BackendType.CopyData,
  0x41, // NotificationResponse
]);

const ROW_COUNT_TAGS = /^(SELECT|FETCH|MOVE|COPY)\b/;

const COPY_DATA = 0x64; // d, from the client

const allAllowed = (statements: readonly ClassifiedStatement[]) => statements.every((s) => s.verdict === "allow");

// ReadyForQuery's transaction status byte.
const TRANSACTION_IDLE = 0x49; // I
const TRANSACTION_FAILED = 0x45; // E

/**
 * The relay of one admitted session, without sockets (issue 15, must 2): bytes from the client and
 * from upstream in, bytes to either side out (through `RelayIo`) and calls on the session's hooks.
 * Client messages are handled strictly in order: while one is held for approval, the ones after it
 * wait behind it. The connection (connection.ts) does start-up, authentication, TLS, the sockets'
 * back-pressure and closing, and feeds this what it reads once the session is ready.
 *
 * The hot path: a client read whose messages are all allowed is decided synchronously
 * (`#relayFrame`), its statements are recorded in one `onStatements` call and everything it queued
 * goes upstream in one write once that call resolves (`#flushUpstream`); an upstream read goes to
 * the client in one write, as slices of the chunk wherever nothing changes (`#onUpstreamData`).
 * Client → upstream is `#relayFrame`/`#handleMessage`, upstream → client `#inspect`/`#inspectMasked`.
 */
export class PgRelay {
  /** The session ended (`close`): nothing more is relayed, no hook is called. */
  #closed = false;
  /** The grant ended (`stop`): nothing more goes to the upstream backend or comes back from it. */
  #ending = false;
  #session: SessionHooks | undefined;
  readonly #reader: FrontendReader;
  readonly #upstreamReader = new BackendReader();
  readonly #summary: ConnectionSummary;
  #work: Promise<void> = Promise.resolve();
  #queued = 0;
  readonly #statements = new Map<string, ClassifiedStatement>();
  readonly #portals = new Map<string, { statement: string; params: (string | null)[] | null }>();
  /** Discard client messages until Sync (after a refused Parse), as the server does after an error. */
  #skipUntilSync = false;
  #refusalAtSync: string | undefined;
  /**
   * Upstream responses to our own substitutions that the client must not see: in batch `sync`,
   * the first `pass` messages of `type` still answer the client's own messages.
   */
  readonly #swallow: { type: number; sync: number; pass: number }[] = [];
  /** The client's Parse and Bind messages sent upstream since the last Sync (each gets its Complete before ours). */
  #batchParses = 0;
  #batchBinds = 0;
  readonly #inflight: Inflight[] = [];
  #syncCount = 0;
  #syncsAnswered = 0;
  /** The transaction status of the last ReadyForQuery (I, T or E). */
  #transactionStatus = TRANSACTION_IDLE;
  /** Extended-protocol messages (and among them an Execute) went upstream since the last Sync. */
  #unsynced = false;
  #unsyncedExecute = false;
  #seq = 0;
  #masker: RowMasker | undefined;
  readonly #maskCounts = { masked: 0 };
  /** Keeps results for the record (issue 16): fed at RowDescription, each DataRow sent, completion and ReadyForQuery. */
  readonly #capture: ResultCapture | undefined;

  /**
   * `reader` frames the client's bytes (the connection's, past the start-up phase: bytes it has
   * already read but not framed stay in it); `summary` is the session's, counted here.
   */
  constructor(
    session: SessionHooks,
    private readonly io: RelayIo,
    options: { reader: FrontendReader; summary: ConnectionSummary },
  ) {
    this.#session = session;
    this.#masking = session.masking;
    this.#capture = session.capture;
    this.#reader = options.reader;
    this.#summary = options.summary;
  }

  /** Upstream is paused until a result's masker is known: the connection must not resume it on a drain. */
  get holdsUpstream(): boolean {
    return this.#upstreamHeld !== undefined;
  }

  /** Bytes the client sent, in the ready state. */
  fromClient(chunk: Buffer): void {
    this.#summary.bytesIn += chunk.length;
    let frames: Buffer[];
    try {
      frames = this.#reader.push(chunk);
    } catch (error) {
      this.#fatal({ severity: "FATAL", code: "08P01", message: (error as Error).message });
      return;
    }
    this.fromClientFrames(frames);
  }

  /** Whole client messages (framed by the connection before this relay existed), in order. */
  fromClientFrames(frames: Buffer[]): void {
    if (frames.length === 0) return;
    if (this.#queued === 0 && !this.#closed && !this.#ending) {
      // The hot path: nothing waits, so the messages are decided on the spot, their statements
      // recorded in one call and everything written upstream in one write once that call is done.
      for (let i = 0; i < frames.length; i++) {
        let pending: void | Promise<void>;
        try {
          pending = this.#relayFrame(frames[i]!);
        } catch (error) {
          this.#failed(error);
          return;
        }
        if (pending) {
          // A message that needs more (a hold, a block, a catalog look-up): the rest waits behind it.
          this.#settle(pending.then(() => this.#handleFrames(frames, i + 1)));
          return;
        }
        if (this.#isClosed() || this.#ending) return;
      }
      if (this.#unrecorded.length === 0) this.#writeUpstream();
      else this.#settle(this.#flushUpstream());
      return;
    }
    this.#settle(this.#work.then(() => this.#handleFrames(frames, 0)));
  }

  /** Bytes the upstream server sent. */
  fromUpstream(chunk: Buffer): void {
    this.#onUpstreamData(chunk);
  }

  /**
   * The grant ended: nothing more is relayed either way, and nothing queued goes upstream (the
   * connection ends the backend, then the session).
   */
  stop(): void {
    this.#ending = true;
    this.#outgoing = [];
    this.#unrecorded = [];
  }

  /** The session ended: statements still running end with `session ended (reason)`; no hook is called after this. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    const session = this.#session;
    this.#session = undefined;
    if (!session) return;
    for (const entry of this.#inflight.splice(0)) {
      for (let i = entry.next; i < entry.seqs.length; i++) {
        session.onStatementEnd({ seq: entry.seqs[i]!, durationMs: performance.now() - entry.startedAt, rows: null, commandTag: null, error: `session ended (${reason})` });
      }
    }
  }

  // A method, not a field read: the state changes under awaits that TypeScript's narrowing cannot see.
  #isClosed(): boolean {
    return this.#closed;
  }

  #fatal(fields: ErrorFields): void {
    if (this.#closed) return;
    this.io.fatal(fields);
  }

  /**
   * Queues work behind what is queued (messages are handled strictly in order). Back-pressure:
   * while earlier messages wait (a held statement), stop reading more. Pausing costs system
   * calls, so it is only done once a few batches are queued.
   */
  #settle(work: Promise<void>): void {
    this.#queued += 1;
    if (this.#queued > 4) this.io.pauseClient();
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
    if (this.#queued <= 4 && !this.#closed) this.io.resumeClient();
  }

  #failed(error: unknown): void {
    this.#fatal(fatalFieldsOf(error, (e) => this.io.onError?.(e)));
  }

  async #handleFrames(frames: Buffer[], start: number): Promise<void> {
    for (let i = start; i < frames.length; i++) {
      if (this.#closed || this.#ending) return;
      const pending = this.#relayFrame(frames[i]!);
      if (pending) await pending;
    }
    await this.#flushUpstream();
  }

  /** One client message; a promise only when deciding it needs to wait. */
  #relayFrame(frame: Buffer): void | Promise<void> {
    // Only the message right after a Describe can be the Execute that reuses it.
    const described = this.#described;
    this.#described = undefined;
    // COPY data is only framed, never decoded: it goes upstream as it came.
    if (frame[0] === COPY_DATA && !this.#skipUntilSync) {
      this.#send(frame);
      return;
    }
    return this.#handleMessage(decodeFrontend(frame[0]!, frame), described);
  }

  // ------------------------------------------------------------------ client → upstream
  
  #outgoing: Buffer[] = [];
  #refusedSeq: number | undefined;

  /**
   * Statements handled since the last flush. Their records go in one call, and nothing queued for
   * upstream is written before that call is done (a rejection refuses them all: fail closed).
   */
  #unrecorded: StatementStart[] = [];

  #send(buffer: Buffer): void {
    this.#outgoing.push(buffer);
  }

  /** Records the unrecorded statements, then writes what is queued upstream. */
  async #flushUpstream(): Promise<void> {
    if (this.#unrecorded.length > 0) {
      const starts = this.#unrecorded;
      this.#unrecorded = [];
      await this.#record(starts);
    }
    this.#writeUpstream();
  }

  /** Only after the records of everything queued are accepted (see `#unrecorded`). */
  #writeUpstream(): void {
    if (this.#ending) this.#outgoing = [];
    if (this.#outgoing.length === 0) return;
    const out = this.#outgoing.length === 1 ? this.#outgoing[0]! : Buffer.concat(this.#outgoing);
    this.#outgoing = [];
    this.io.toUpstream(out);
  }

  #count(kind: string): void {
    this.#summary.statementsByKind[kind] = (this.#summary.statementsByKind[kind] ?? 0) + 1;
  }

  #track(kind: Inflight["kind"], seqs: number[], sync: number, texts: string[] = [], ours = false): void {
    this.#inflight.push({ kind, seqs, next: 0, startedAt: performance.now(), sync, rows: 0, texts, ours });
  }

  /** `described`: the client's Describe of a portal, when it was the message right before this one. */
  #handleMessage(message: FrontendMessage, described?: { portal: string; entry: PendingDescribe }): void | Promise<void> {
    const session = this.#session!;
    if (this.#skipUntilSync) {
      if (message.type !== "sync") return;
      this.#skipUntilSync = false;
      const refusal = this.#refusalAtSync!;
      this.#refusalAtSync = undefined;
      // The server raises the error for the refused statement; the ParseComplete and BindComplete
      // of our substitute are not the client's to see (those of the client's own Parse and Bind
      // messages earlier in the batch come first, and are).
      const sync = this.#syncCount + 1;
      this.#swallow.push({ type: BackendType.ParseComplete, sync, pass: this.#batchParses }, { type: BackendType.BindComplete, sync, pass: this.#batchBinds });
      this.#send(serialize.parse({ text: refusal }));
      this.#send(serialize.bind({}));
      this.#send(serialize.execute({}));
      this.#track("execute", this.#refusedSeq === undefined ? [] : [this.#refusedSeq], this.#syncCount + 1, [], true);
      this.#refusedSeq = undefined;
      this.#send(message.raw);
      this.#syncCount += 1;
      this.#unsynced = this.#unsyncedExecute = false;
      this.#batchParses = this.#batchBinds = 0;
      return;
    }
    switch (message.type) {
      case "query": {
        const classified = this.#classify(message);
        // Decided on the spot when every statement is allowed and needs no look-up.
        const statements = classified.some((s) => s.functionsToInspect !== undefined) ? undefined : this.#vetted(classified);
        if (statements === undefined || !allAllowed(statements)) return this.#queryDeciding(message.raw, classified);
        this.#forwardQuery(message.raw, statements, undefined);
        return;
      }
      case "parse": {
        const classified = this.#classify(message);
        const statements = this.#vetted(classified);
        if (statements === undefined || !allAllowed(statements)) return this.#parseDeciding(message, classified);
        this.#forwardParse(message, statements);
        return;
      }
      case "bind": {
        this.#unsynced = true;
        this.#batchBinds += 1;
        this.#portals.set(message.portal, {
          statement: message.statement,
          params: message.params.length > 0 ? session.redactParameters(message.params, message.paramFormats) : null,
        });
        this.#send(message.raw);
        return;
      }
      case "execute": {
        const portal = this.#portals.get(message.portal);
        const statement: ClassifiedStatement = (portal && this.#statements.get(portal.statement)) ?? { text: "(unknown portal)", kind: "other", verdict: "allow" as const };
        const ownDescribe = described?.portal === message.portal ? described.entry : undefined;
        if (statement.functionsToInspect) return this.#executeInspecting(message, portal, statement, ownDescribe);
        this.#forwardExecute(message, portal, statement, ownDescribe);
        return;
      }
      case "describe":
        this.#unsynced = true;
        if (session.masking) {
          const entry: PendingDescribe = { injected: false, forExecute: false, text: undefined, sync: this.#syncCount + 1 };
          this.#describes.push(entry);
          if (message.target === "P") this.#described = { portal: message.name, entry };
        }
        this.#send(message.raw);
        return;
      case "sync":
        this.#syncCount += 1;
        this.#unsynced = this.#unsyncedExecute = false;
        this.#batchParses = this.#batchBinds = 0;
        this.#send(message.raw);
        return;
      case "close":
        this.#unsynced = true;
        if (message.target === "S") this.#statements.delete(message.name);
        else this.#portals.delete(message.name);
        this.#send(message.raw);
        return;
      case "terminate":
        this.#send(message.raw);
        return this.#flushUpstream().then(() => this.io.end("client"));
      case "function-call":
        // The fast-path function call protocol runs functions by OID, past any statement rule.
        this.#send(serialize.query(refusalSql("42501", "jitgate: the function call protocol is not allowed")));
        this.#track("query", [], ++this.#syncCount);
        return;
      case "auth":
        throw new ProtocolViolation("unexpected authentication message");
      default:
        this.#send(message.raw);
    }
  }

  /** The statements after a masked target's vetting, or undefined when vetting needs a look-up. */
  #vetted(classified: ClassifiedStatement[]): ClassifiedStatement[] | undefined {
    const masking = this.#session!.masking;
    if (!masking) return classified;
    return masking.vetSync ? masking.vetSync(classified) : undefined;
  }

  async #queryDeciding(raw: Buffer, classified: ClassifiedStatement[]): Promise<void> {
    const session = this.#session!;
    if (classified.some((s) => s.functionsToInspect !== undefined)) {
      classified = await Promise.all(classified.map((s, i) => (s.functionsToInspect ? session.inspectAttached(s, this.#notOnItsOwn("simple", i)) : s)));
      if (this.#closed) return;
    }
    const statements = session.masking ? await session.masking.vet(classified) : classified;
    const refusal = await this.#decide(statements);
    if (this.#closed) return;
    this.#forwardQuery(raw, statements, refusal);
  }

  /** Queues a Query (or the refusal that runs instead) behind the records of its statements. */
  #forwardQuery(raw: Buffer, statements: ClassifiedStatement[], refusal: string | undefined): void {
    const seqs: number[] = [];
    const texts: string[] = [];
    for (const statement of statements) {
      const start = this.#start("simple", statement, null);
      this.#unrecorded.push(start);
      seqs.push(start.seq);
      texts.push(statement.text);
    }
    this.#send(refusal === undefined ? raw : serialize.query(refusal));
    this.#track("query", seqs, ++this.#syncCount, texts, refusal !== undefined);
    // Its ReadyForQuery also answers extended-protocol messages sent before it.
    this.#unsynced = this.#unsyncedExecute = false;
    this.#batchParses = this.#batchBinds = 0;
  }

  async #parseDeciding(message: Extract<FrontendMessage, { type: "parse" }>, classified: ClassifiedStatement[]): Promise<void> {
    const session = this.#session!;
    const statements = session.masking ? await session.masking.vet(classified) : classified;
    const refusal = await this.#decide(statements);
    if (this.#closed) return;
    if (refusal !== undefined) {
      this.#refuseAtSync(this.#start("extended", statements.find((s) => s.verdict !== "allow") ?? statements[0]!, null), refusal);
      return;
    }
    this.#forwardParse(message, statements);
  }

  #forwardParse(message: Extract<FrontendMessage, { type: "parse" }>, statements: ClassifiedStatement[]): void {
    const [first] = statements;
    this.#statements.set(message.statement, first ?? { text: message.sql, kind: "empty", verdict: "allow" });
    this.#unsynced = true;
    this.#batchParses += 1;
    this.#send(message.raw);
  }

  /** The refused statement is recorded; the server raises the refusal at the batch's Sync. */
  #refuseAtSync(start: StatementStart, refusal: string): void {
    this.#unrecorded.push(start);
    this.#refusedSeq = start.seq;
    this.#skipUntilSync = true;
    this.#refusalAtSync = refusal;
  }

  async #executeInspecting(
    message: Extract<FrontendMessage, { type: "execute" }>,
    portal: { statement: string; params: (string | null)[] | null } | undefined,
    statement: ClassifiedStatement,
    ownDescribe: PendingDescribe | undefined,
  ): Promise<void> {
    // Decided at its Parse by its text; now by the attached functions, as they are when it runs.
    const inspected = await this.#session!.inspectAttached(statement, this.#notOnItsOwn("extended", 0));
    const changed = inspected.verdict !== statement.verdict || inspected.rule !== statement.rule;
    const refusal = changed ? await this.#decide([inspected]) : undefined;
    if (this.#closed) return;
    if (refusal !== undefined) {
      this.#refuseAtSync(this.#start("extended", inspected, portal?.params ?? null), refusal);
      return;
    }
    this.#forwardExecute(message, portal, inspected, ownDescribe);
  }

  #forwardExecute(
    message: Extract<FrontendMessage, { type: "execute" }>,
    portal: { statement: string; params: (string | null)[] | null } | undefined,
    statement: ClassifiedStatement,
    ownDescribe?: PendingDescribe,
  ): void {
    this.#unsynced = true;
    this.#unsyncedExecute = true;
    const start = this.#start("extended", statement, portal?.params ?? null);
    this.#unrecorded.push(start);
    if (this.#session!.masking) {
      // The result's row shape, whether or not the client asked for it: without a
      // RowDescription the proxy would not know which values to mask.
      const text = portal ? statement.text : undefined;
      if (ownDescribe && this.#describes.includes(ownDescribe)) {
        // The client's own Describe of this portal came right before this Execute and is not
        // answered yet: nothing comes between its answer and the rows, so that answer (which the
        // client sees, as it asked) gives the masker.
        ownDescribe.forExecute = true;
        ownDescribe.text = text;
      } else {
        // Ours; its answer is not the client's to see.
        this.#send(serialize.describe({ type: "P", name: message.portal }));
        this.#describes.push({ injected: true, forExecute: true, text, sync: this.#syncCount + 1 });
      }
    }
    this.#send(message.raw);
    this.#track("execute", [start.seq], this.#syncCount + 1, [statement.text]);
  }

  /**
   * Why the target's catalog, as the gateway's own session reads it, may not be what the
   * statement at `index` of its message will see when it runs, if so. That session sees committed
   * work only, so the statement must start a transaction of its own: first in its message, outside
   * a transaction block, with everything this session sent before it finished.
   */
  #notOnItsOwn(protocol: "simple" | "extended", index: number): string | undefined {
    const what = "a statement that attaches a function is checked against the catalog only when sent on its own";
    if (index > 0) return `${what}: here other statements of the same message run before it`;
    if (this.#transactionStatus !== TRANSACTION_IDLE) return `${what}: here it runs inside a transaction block, whose changes jitgate cannot see`;
    const pending = this.#inflight.length > 0 || this.#syncCount !== this.#syncsAnswered || (protocol === "simple" ? this.#unsynced : this.#unsyncedExecute);
    if (pending) return `${what}: here statements sent before it have not finished`;
    return undefined;
  }

  /** Text that is not UTF-8 is not read the way the server reads it: it is refused, not classified. */
  #classify(message: { sql: string; invalidUtf8?: true }): ClassifiedStatement[] {
    if (message.invalidUtf8) return [{ text: message.sql, kind: "error", verdict: "block", rule: INVALID_ENCODING_RULE, detail: INVALID_ENCODING_DETAIL }];
    return this.#session!.classify(message.sql);
  }

  /** Applies block and review to a message's statements; returns the refusal to run instead, if any. */
  async #decide(statements: ClassifiedStatement[]): Promise<string | undefined> {
    const session = this.#session!;
    const blocked = statements.find((s) => s.verdict === "block");
    if (blocked) {
      this.#summary.blocked += 1;
      await session.onBlocked(blocked);
      const why = blocked.detail === undefined ? "" : `: ${blocked.detail}`;
      return refusalSql("42501", `jitgate: statement blocked by rule "${blocked.rule ?? "block"}"${why}`);
    }
    for (const statement of statements.filter((s) => s.verdict === "review")) {
      // What is already queued goes out first: the server must not wait behind the held statement.
      await this.#flushUpstream();
      this.#summary.held += 1;
      const verdict = await session.onHold(statement);
      if (this.#closed) return undefined;
      if (verdict === "approved") {
        this.#summary.approved += 1;
        continue;
      }
      const why = verdict === "denied" ? "was denied in the request thread" : "got no decision in time";
      return refusalSql("42501", `jitgate: the held statement ${why} (rule "${statement.rule ?? "review"}")`);
    }
    return undefined;
  }

  #start(protocol: "simple" | "extended", statement: ClassifiedStatement, parameters: (string | null)[] | null): StatementStart {
    this.#count(statement.kind);
    return { seq: ++this.#seq, protocol, statement, parameters, startedAt: Date.now() };
  }

  async #record(starts: StatementStart[]): Promise<void> {
    try {
      await this.#session!.onStatements(starts);
    } catch (error) {
      // A refusal that says why (the audit journal is full) reaches the client as it is.
      if (error instanceof ProxyRefusal) throw error;
      this.io.onError?.(error);
      // Fail closed: a statement that cannot be recorded does not reach the target.
      throw new ProxyRefusal("58000", "jitgate could not record the statement, so it was not run; the session is closed");
    }
  }

  // ------------------------------------------------------------------ relay: upstream → client

  #onUpstreamData(chunk: Buffer): void {
    if (this.#ending) return;
    if (this.#masking) {
      if (this.#upstreamHeld) this.#upstreamHeld.push(chunk);
      else this.#relayMasked(chunk);
      return;
    }
    // Runs of messages that pass unchanged go out as slices of the chunk (the whole chunk, in the
    // common case); only a changed or swallowed message cuts a run. DataRows without a masker and
    // COPY data are counted or passed by their header alone.
    const out: Buffer[] = [];
    let run: Buffer | undefined;
    let runStart = 0;
    let runEnd = 0;
    try {
      this.#upstreamReader.scan(chunk, (type, buffer, start, end) => {
        let replaced: Buffer | null | undefined;
        if (type === BackendType.DataRow) {
          this.#countRow();
          if (this.#masker) {
            const frame = buffer.subarray(start, end);
            const masked = this.#maskRow(frame);
            if (masked !== frame) replaced = masked;
          }
          // Result capture (issue 16): the row as sent, and its original when masking changed it.
          if (this.#capture?.open) this.#capture.row(replaced ?? buffer.subarray(start, end), replaced ? buffer.subarray(start, end) : undefined);
        } else if (type !== BackendType.CopyData) {
          const frame = buffer.subarray(start, end);
          if (type === BackendType.ParameterStatus && this.#pinnedSettingChanged(frame)) replaced = null;
          else if (this.#swallowed(type)) replaced = null;
          else {
            const inspected = this.#inspect(type, frame);
            if (inspected !== frame) replaced = inspected;
          }
        }
        if (replaced === undefined) {
          if (run === buffer && runEnd === start) runEnd = end;
          else {
            if (run) out.push(run.subarray(runStart, runEnd));
            run = buffer;
            runStart = start;
            runEnd = end;
          }
          return;
        }
        if (run) out.push(run.subarray(runStart, runEnd));
        run = undefined;
        if (replaced) out.push(replaced);
      });
    } catch (error) {
      this.io.onError?.(error);
      this.#fatal({ severity: "FATAL", code: "08P01", message: "jitgate received an invalid message from the target" });
      return;
    }
    if (this.#closed) return;
    if (run) out.push(runStart === 0 && runEnd === run.length ? run : run.subarray(runStart, runEnd));
    if (out.length > 0) this.#writeClient(out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  #countRow(): void {
    const current = this.#inflight[0];
    if (current) current.rows += 1;
    this.#summary.rowsReturned += 1;
  }

  /** A DataRow with the current masker applied (the frame itself when nothing changed). */
  #maskRow(frame: Buffer): Buffer {
    const masker = this.#masker!;
    if (masker.maskFrame) {
      const out = masker.maskFrame(frame, this.#maskCounts);
      this.#summary.valuesMasked += this.#maskCounts.masked;
      return out;
    }
    const { values, masked } = masker.mask(decodeDataRow(frame));
    if (masked === 0) return frame;
    this.#summary.valuesMasked += masked;
    return encodeDataRow(values as (Buffer | null)[]);
  }

  #writeClient(written: Buffer): void {
    if (written.length === 0 || this.#closed) return;
    this.#summary.bytesOut += written.length;
    this.io.toClient(written);
  }

  /** Ends the session (fail closed) when the target reports a pinned setting changed; see session-settings.ts. */
  #pinnedSettingChanged(frame: Buffer): boolean {
    if (this.#closed) return true;
    const problem = pinnedSettingChange(frame);
    if (problem === undefined) return false;
    this.#fatal({ severity: "FATAL", code: "55000", message: problem });
    return true;
  }

  // On a masked target: frames are relayed one by one, and a result whose masking needs the
  // target's catalog holds everything after it until the masker is known.

  #masking: SessionMasking | undefined;
  /** Chunks that arrived while a masker was being resolved. */
  #upstreamHeld: Buffer[] | undefined;
  /** Describe answers (RowDescription or NoData) still to come, in order: ours are not the client's to see. */
  readonly #describes: PendingDescribe[] = [];
  /** The client's Describe of a portal, while it is the last message handled (see `#forwardExecute`). */
  #described: { portal: string; entry: PendingDescribe } | undefined;

  #relayMasked(chunk: Buffer): void {
    const frames: Buffer[] = [];
    const whole = this.#upstreamReader.pendingLength === 0;
    try {
      this.#upstreamReader.push(chunk, (_type, frame) => frames.push(frame));
    } catch (error) {
      this.io.onError?.(error);
      this.#fatal({ severity: "FATAL", code: "08P01", message: "jitgate received an invalid message from the target" });
      return;
    }
    // A chunk of whole messages that nothing changes goes out as it came.
    this.#relayFrames(frames, 0, whole && this.#upstreamReader.pendingLength === 0 ? chunk : undefined);
  }

  #relayFrames(frames: Buffer[], start: number, chunk?: Buffer): void {
    const out: Buffer[] = [];
    let modified = chunk === undefined;
    for (let i = start; i < frames.length; i++) {
      if (this.#ending || this.#closed) return;
      const frame = frames[i]!;
      const result = this.#inspectMasked(frame[0]!, frame);
      if (result instanceof Promise) {
        this.#writeClient(Buffer.concat(out));
        this.#upstreamHeld = [];
        this.io.pauseUpstream();
        void result
          .catch((error: unknown) => {
            this.io.onError?.(error);
            this.#fatal({ severity: "FATAL", code: "XX000", message: "jitgate could not resolve which values of a result to mask; the session is closed" });
            return null;
          })
          .then((forward) => {
            if (this.#ending || this.#closed) return;
            if (forward) this.#writeClient(forward);
            const held = this.#upstreamHeld ?? [];
            this.#upstreamHeld = undefined;
            this.#relayFrames(frames, i + 1);
            for (const chunk of held) this.#onUpstreamData(chunk);
            if (!this.#upstreamHeld) this.io.resumeUpstream();
          });
        return;
      }
      if (result !== frame) modified = true;
      if (result) out.push(result);
    }
    this.#writeClient(!modified ? chunk! : out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  #currentText(): string | undefined {
    const current = this.#inflight[0];
    return current?.texts[current.next];
  }

  /** Whether a message from upstream answers our own substitution (see `#swallow`). */
  #swallowed(type: number): boolean {
    if (this.#swallow.length === 0) return false;
    const batch = this.#syncsAnswered + 1;
    if (type === BackendType.ReadyForQuery) {
      // The batch is over: what did not come (an earlier error skipped our substitute) never will.
      for (let i = this.#swallow.length - 1; i >= 0; i--) if (this.#swallow[i]!.sync <= batch) this.#swallow.splice(i, 1);
      return false;
    }
    const entry = this.#swallow.find((e) => e.type === type && e.sync === batch);
    if (!entry) return false;
    if (entry.pass > 0) {
      entry.pass -= 1;
      return false;
    }
    this.#swallow.splice(this.#swallow.indexOf(entry), 1);
    return true;
  }

  /** A frame to forward, null to swallow, or the promise of either once a masker is resolved. */
  #inspectMasked(type: number, frame: Buffer): Buffer | null | Promise<Buffer | null> {
    if (type === BackendType.ParameterStatus && this.#pinnedSettingChanged(frame)) return null;
    if (this.#swallowed(type)) return null;
    const masking = this.#masking!;
    if (type === BackendType.RowDescription || type === BackendType.NoData) {
      if (type === BackendType.RowDescription) this.#capture?.columns(frame); // result capture
      // A Describe of a later batch is not answered yet: this result is a simple Query's, pipelined
      // before it (its rows must be masked, not passed as the answer to that Describe).
      const describe = this.#describes[0]?.sync === this.#syncsAnswered + 1 ? this.#describes.shift() : undefined;
      if (describe && !describe.forExecute) return frame;
      if (type === BackendType.NoData) {
        this.#masker = undefined;
        return describe?.injected ? null : frame;
      }
      const resolved = masking.forResult(decodeRowDescription(frame), describe ? describe.text : this.#currentText());
      const forward = describe?.injected ? null : frame;
      if (resolved instanceof Promise) {
        return resolved.then((masker) => {
          this.#masker = masker;
          return forward;
        });
      }
      this.#masker = resolved;
      return forward;
    }
    if (SERVER_TEXT_TYPES.has(type)) {
      const current = this.#inflight[0];
      const ours = type === BackendType.ErrorResponse && current?.ours === true;
      if (!ours) frame = masking.serverText(type, frame, this.#currentText());
      if (type === BackendType.ErrorResponse) {
        // The server skips the rest of the extended batch up to its Sync: those Describes go unanswered.
        const batch = this.#syncsAnswered + 1;
        while (this.#describes.length > 0 && this.#describes[0]!.sync <= batch) this.#describes.shift();
      }
    }
    if (type === BackendType.ReadyForQuery) {
      while (this.#describes.length > 0 && this.#describes[0]!.sync <= this.#syncsAnswered + 1) this.#describes.shift();
    }
    return this.#inspect(type, frame);
  }

  #inspect(type: number, frame: Buffer): Buffer {
    switch (type) {
      case BackendType.DataRow: {
        this.#countRow();
        const sent = this.#masker ? this.#maskRow(frame) : frame;
        if (this.#capture?.open) this.#capture.row(sent, sent !== frame ? frame : undefined); // result capture
        return sent;
      }
      case BackendType.RowDescription:
        this.#masker = this.#session!.onRowDescription(decodeRowDescription(frame));
        this.#capture?.columns(frame); // result capture
        return frame;
      case BackendType.CommandComplete: {
        const tag = decodeCommandTag(frame);
        const rows = rowsOfCommandTag(tag);
        if (rows !== undefined && !ROW_COUNT_TAGS.test(tag)) this.#summary.rowsAffected += rows;
        this.#completeOne(tag, null, rows ?? null);
        this.#masker = undefined;
        return frame;
      }
      case BackendType.EmptyQueryResponse:
      case BackendType.PortalSuspended:
        this.#completeOne(null, null, null);
        return frame;
      case BackendType.ErrorResponse: {
        const fields = decodeErrorFields(frame);
        this.#completeOne(null, `${fields.C ?? ""} ${fields.M ?? ""}`.trim(), null);
        this.#masker = undefined;
        return frame;
      }
      case BackendType.ReadyForQuery:
        this.#transactionStatus = frame[5] ?? TRANSACTION_FAILED;
        this.#syncsAnswered += 1;
        while (this.#inflight.length > 0 && this.#inflight[0]!.sync <= this.#syncsAnswered) this.#finishInflight(this.#inflight.shift()!);
        this.#masker = undefined;
        this.#capture?.idle(); // result capture
        return frame;
      default:
        return frame;
    }
  }

  #completeOne(tag: string | null, error: string | null, rows: number | null): void {
    const current = this.#inflight[0];
    if (!current) return;
    const seq = current.seqs[current.next];
    this.#capture?.complete(seq, current.rows); // result capture
    if (seq !== undefined) {
      this.#session!.onStatementEnd({
        seq,
        durationMs: performance.now() - current.startedAt,
        rows: rows ?? current.rows,
        commandTag: tag,
        error,
      });
      current.next += 1;
      current.rows = 0;
    }
    // An Execute is done with its completion; a Query waits for its ReadyForQuery.
    if (current.kind === "execute") this.#inflight.shift();
  }

  /** Statements after a failed one (in a Query, or in a pipeline before Sync) never ran. */
  #finishInflight(entry: Inflight, why = "not run: an earlier statement failed"): void {
    for (let i = entry.next; i < entry.seqs.length; i++) {
      this.#session?.onStatementEnd({ seq: entry.seqs[i]!, durationMs: performance.now() - entry.startedAt, rows: null, commandTag: null, error: why });
    }
  }
}
