import { deflateRawSync, inflateRawSync } from "node:zlib";
import { and, asc, eq, gte, lte, or, sql } from "drizzle-orm";
import type { Executor } from "../db/client.js";
import { grants, people, sessions, sessionSealKeys, statementResults } from "../db/schema.js";
import { openResult, SealError, SealKeyring } from "../infra/seal.js";
import { appendAudit } from "./audit.js";
import type { BrokerContext } from "./context.js";
import { BrokerError } from "./errors.js";
import type { SessionSnapshot } from "./events.js";
import type { PeopleService } from "./people.js";
import { isApprover, isAuditor } from "./policy.js";
import type { StepUpService } from "./step-up.js";
import type { Person, StepUpProof } from "./types.js";

/**
 * Recorded results (issue 16): what each statement returned as the client received it (masked),
 * and the sealed originals of its masked values, with who may read which.
 *
 * - The session's own person, approvers of its target and auditors read the masked results.
 * - Only an auditor reveals originals: one statement at a time, with a reason, after a fresh
 *   sign-in on a `stepUp` target; each reveal is an audit event and a post in the request's thread.
 */

/** A statement's result as the journal carries it and `statement_results` stores it. */
export interface ResultRecord {
  sessionId: string;
  seq: number;
  columns: { name: string; dataTypeID: number; format: number }[];
  /** The kept rows: JSON as it is when short, else base64 of the deflated JSON (see `packRows`). */
  data: string;
  rowsKept: number;
  rowsTotal: number;
  cut: boolean;
  /** base64 of the sealed originals (AES-256-GCM under the session's data key), or null. */
  sealed: string | null;
}

/** A session's data key as wrapped by the seal key `keyId`. */
export interface SealKeyRecord {
  sessionId: string;
  keyId: string;
  /** base64 */
  wrapped: string;
}

/**
 * Rows under this many bytes of JSON are stored as the JSON itself: deflating a one-row result
 * costs more (a zlib stream per call) than it saves. Base64 never starts with `[`, JSON rows always do.
 */
const DEFLATE_FROM = 512;

function packRows(json: string): string {
  return json.length < DEFLATE_FROM ? json : deflateRawSync(Buffer.from(json, "utf8")).toString("base64");
}

/** Values in the stored JSON: text-format values as text, binary-format ones as base64. */
const encodeValue = (value: Buffer | null, format: number): string | null => (value === null ? null : format === 1 ? value.toString("base64") : value.toString("utf8"));

/**
 * A captured result as a record: its rows deflated, the originals of masked values sealed with
 * `seal` (which makes the session's data key on first use), or dropped when there is no seal key.
 */
export function encodeResult(
  sessionId: string,
  result: {
    seq: number;
    columns: readonly { name: string; dataTypeID: number; format: number }[];
    rows: readonly (readonly (Buffer | null)[])[];
    originals: readonly { row: number; column: number; value: Buffer | null }[];
    rowsTotal: number;
    cut: boolean;
  },
  seal: ((seq: number, plain: Buffer) => Buffer) | undefined,
): ResultRecord {
  const columns = result.columns.map((c) => ({ name: c.name, dataTypeID: c.dataTypeID, format: c.format }));
  const formatOf = (column: number) => columns[column]?.format ?? 0;
  const rows = result.rows.map((row) => row.map((value, column) => encodeValue(value, formatOf(column))));
  let sealed: string | null = null;
  if (seal && result.originals.length > 0) {
    const originals = result.originals.map((o) => [o.row, o.column, encodeValue(o.value, formatOf(o.column))]);
    sealed = seal(result.seq, deflateRawSync(Buffer.from(JSON.stringify(originals), "utf8"))).toString("base64");
  }
  return {
    sessionId,
    seq: result.seq,
    columns,
    data: packRows(JSON.stringify(rows)),
    rowsKept: rows.length,
    rowsTotal: result.rowsTotal,
    cut: result.cut,
    sealed,
  };
}

/** A recorded result as read back: masked rows, unless revealed. */
export interface StatementResult {
  seq: number;
  columns: { name: string; dataTypeID: number; format: number }[];
  rows: (string | null)[][];
  rowsKept: number;
  rowsTotal: number;
  cut: boolean;
  /** Originals of masked values are sealed for this statement. */
  sealed: boolean;
}

export type StoredResult = typeof statementResults.$inferSelect;

export function decodeRows(data: string): (string | null)[][] {
  const json = data.startsWith("[") ? data : inflateRawSync(Buffer.from(data, "base64")).toString("utf8");
  return JSON.parse(json) as (string | null)[][];
}

export function decodeResult(row: StoredResult): StatementResult {
  return { seq: row.seq, columns: row.columns, rows: decodeRows(row.data), rowsKept: row.rowsKept, rowsTotal: row.rowsTotal, cut: row.cut, sealed: row.sealed !== null };
}

/** Which statements' results: one (`seq`), a range (`from`..`to`, both included), or all of them. */
export type ResultsRange = number | { from: number; to: number };

/** A session's recorded results (masked), in statement order; one statement's with `seq`, a range's with `{ from, to }`. */
export async function resultsOf(db: Executor, sessionId: string, seq?: ResultsRange): Promise<StatementResult[]> {
  const which = seq === undefined ? undefined : typeof seq === "number" ? eq(statementResults.seq, seq) : and(gte(statementResults.seq, seq.from), lte(statementResults.seq, seq.to));
  const rows = await db
    .select()
    .from(statementResults)
    .where(and(eq(statementResults.sessionId, sessionId), which))
    .orderBy(asc(statementResults.seq));
  return rows.map(decodeResult);
}

/**
 * Opens a statement's sealed originals with the configured keys and puts them in its rows. Throws
 * SealError (naming the key) when the session's key is not configured or does not open it.
 */
export async function openSealed(db: Executor, keyring: SealKeyring, sessionId: string, seq: number): Promise<{ result: StatementResult; revealed: { row: number; column: number }[] } | null> {
  const [row] = await db.select().from(statementResults).where(and(eq(statementResults.sessionId, sessionId), eq(statementResults.seq, seq)));
  if (!row || row.sealed === null) return null;
  const [key] = await db.select().from(sessionSealKeys).where(eq(sessionSealKeys.sessionId, sessionId));
  if (!key) throw new SealError(`session ${sessionId} has sealed originals but no data key was recorded for it`);
  const dataKey = keyring.unwrap(sessionId, key.keyId, Buffer.from(key.wrapped, "base64"));
  const plain = inflateRawSync(openResult(dataKey, sessionId, seq, Buffer.from(row.sealed, "base64")));
  const originals = JSON.parse(plain.toString("utf8")) as [number, number, string | null][];
  const result = decodeResult(row);
  for (const [r, c, value] of originals) {
    if (result.rows[r]) result.rows[r]![c] = value;
  }
  return { result, revealed: originals.map(([r, c]) => ({ row: r, column: c })) };
}

/** A person by id or (verified) email, for the command line's `--as`. */
export async function personByLogin(db: Executor, login: string): Promise<Person | undefined> {
  const [row] = await db
    .select()
    .from(people)
    .where(or(eq(people.id, login), sql`lower(${people.email}) = ${login.trim().toLowerCase()}`))
    .limit(1);
  return row as Person | undefined;
}

export class NotAnAuditor extends BrokerError {
  readonly code = "broker_not_an_auditor";
  constructor() {
    super("only auditors may reveal the originals of masked results");
  }
}

export class RevealRefused extends BrokerError {
  readonly code = "broker_reveal_refused";
}

export class ResultsNotVisible extends BrokerError {
  readonly code = "broker_results_not_visible";
  constructor(sessionId: string) {
    super(`you may not see the results of session ${sessionId}: they are its user's, its target's approvers' and the auditors'`);
  }
}

export type RevealOutcome =
  | { kind: "step-up-needed"; challengeId: string; link: string; expiresAt: Date }
  | { kind: "revealed"; result: StatementResult; revealed: { row: number; column: number }[]; keyId: string };

export class ResultsService {
  readonly keyring: SealKeyring;

  constructor(
    private readonly ctx: BrokerContext,
    private readonly people: PeopleService,
    private readonly stepUp: StepUpService,
  ) {
    this.keyring = SealKeyring.fromConfig(ctx.config.audit ?? {});
  }

  async #session(sessionId: string) {
    const [session] = await this.ctx.db.select().from(sessions).where(eq(sessions.id, sessionId));
    if (!session) throw new RevealRefused(`no session ${sessionId}`);
    const [grant] = await this.ctx.db.select({ requestId: grants.requestId }).from(grants).where(eq(grants.id, session.grantId));
    return { session, requestId: grant?.requestId ?? "" };
  }

  async #isAuditor(person: Person): Promise<boolean> {
    const auditors = this.ctx.config.auditors ?? [];
    return auditors.length > 0 && isAuditor(auditors, await this.people.identity(person));
  }

  /**
   * A session's recorded results, masked (one statement's with `seq`): for the person who ran the
   * session, approvers of its target and auditors. Nobody sees originals here.
   */
  async results(viewer: Person, sessionId: string, seq?: ResultsRange): Promise<StatementResult[]> {
    // An unknown session answers as one the viewer may not see: ids are not probed this way.
    const { session } = await this.#session(sessionId).catch(() => {
      throw new ResultsNotVisible(sessionId);
    });
    if (session.personId !== viewer.id && !(await this.#isAuditor(viewer))) {
      const policy = this.ctx.policies().find((p) => p.name === session.target);
      if (!policy || !isApprover(policy, await this.people.identity(viewer))) throw new ResultsNotVisible(sessionId);
    }
    return resultsOf(this.ctx.db, sessionId, seq);
  }

  /**
   * Finishes the reveal a step-up sign-in was asked for (a challenge opened by `reveal`): the
   * statement and the reason stored with the challenge, by the auditor who asked.
   */
  async completeSignIn(auditor: Person, proof: StepUpProof): Promise<{ sessionId: string; seq: number; reason: string; outcome: RevealOutcome }> {
    const challenge = await this.stepUp.challenge(proof.challengeId);
    const match = challenge.reveal ? /^(.+)#(\d{1,9})$/.exec(challenge.reveal) : null;
    if (!match) throw new RevealRefused("this sign-in link is not for a reveal");
    const sessionId = match[1]!;
    const seq = Number(match[2]);
    // The reveal the auditor asked for, with the reason they gave then: nothing from the callback's URL.
    const reason = challenge.revealReason ?? "";
    const outcome = await this.reveal(auditor, { sessionId, seq, reason, stepUp: proof });
    return { sessionId, seq, reason, outcome };
  }

  /**
   * Reveals the sealed originals of one statement to an auditor, with a stated reason. On a
   * `stepUp` target the first call answers "step-up needed" with a sign-in link for this reveal
   * only; the call with its proof reveals. Each reveal is a `results.revealed` audit event (who,
   * which session and statement, why) and a post in the request's thread.
   */
  async reveal(auditor: Person, input: { sessionId: string; seq: number; reason: string; stepUp?: StepUpProof | undefined }): Promise<RevealOutcome> {
    const reason = input.reason.trim();
    if (!(await this.#isAuditor(auditor))) throw new NotAnAuditor();
    if (reason === "") throw new RevealRefused("a reveal needs a stated reason");
    const { session, requestId } = await this.#session(input.sessionId);
    const subject = { requestId, heldId: null, target: session.target, grantId: session.grantId, sessionId: session.id, reveal: `${session.id}#${input.seq}`, revealReason: reason };
    const [stored] = await this.ctx.db
      .select({ sealed: statementResults.sealed })
      .from(statementResults)
      .where(and(eq(statementResults.sessionId, session.id), eq(statementResults.seq, input.seq)));
    if (!stored?.sealed) throw new RevealRefused(`statement ${input.seq} of session ${session.id} has no sealed originals`);
    const stepUp = this.ctx.policies().find((p) => p.name === session.target)?.stepUp ?? false;
    const now = this.ctx.clock.now();
    if (stepUp && !input.stepUp) {
      const challenge = await this.ctx.db.transaction((tx) => this.stepUp.open(tx, subject, auditor, now));
      return { kind: "step-up-needed", challengeId: challenge.id, link: this.stepUp.link(challenge.id), expiresAt: challenge.expiresAt };
    }
    // Opened first: a key that is not configured fails here, before anything is recorded or shown.
    const opened = await openSealed(this.ctx.db, this.keyring, session.id, input.seq);
    if (!opened) throw new RevealRefused(`statement ${input.seq} of session ${session.id} has no sealed originals`);
    const [key] = await this.ctx.db.select({ keyId: sessionSealKeys.keyId }).from(sessionSealKeys).where(eq(sessionSealKeys.sessionId, session.id));
    await this.ctx.db.transaction(async (tx) => {
      const proof = stepUp && input.stepUp ? await this.stepUp.complete(tx, input.stepUp, subject, auditor, now) : undefined;
      await appendAudit(tx, now, {
        kind: "results.revealed",
        actorId: auditor.id,
        target: session.target,
        requestId: requestId || null,
        grantId: session.grantId,
        sessionId: session.id,
        data: { seq: input.seq, reason, values: opened.revealed.length, keyId: key?.keyId ?? null, ...(proof ? { stepUpAuthTime: proof.authTime } : {}) },
      });
    });
    const person = await this.people.person(session.personId);
    const snapshot: SessionSnapshot = {
      id: session.id,
      grantId: session.grantId,
      requestId,
      target: session.target,
      personId: session.personId,
      personName: person?.displayName ?? session.personId,
      protocol: session.protocol,
      clientAddress: session.clientAddress,
      startedAt: session.startedAt.toISOString(),
      endedAt: session.endedAt ? session.endedAt.toISOString() : null,
    };
    this.ctx.events.emit("results.revealed", { session: snapshot, seq: input.seq, byId: auditor.id, byName: auditor.displayName, reason, at: now.toISOString() });
    return { kind: "revealed", result: opened.result, revealed: opened.revealed, keyId: key?.keyId ?? "" };
  }
}
