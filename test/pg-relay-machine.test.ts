import { connect, type Socket } from "node:net";
import pg from "pg";
import { serialize } from "pg-protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendReader, BackendType, decodeCommandTag, decodeDataRow, decodeErrorFields, decodeRowDescription, type ErrorFields } from "../src/proxy/postgres/backend-codec.js";
import { ClassificationCache } from "../src/proxy/postgres/classification-cache.js";
import type { ConnectionSummary, SessionHooks } from "../src/proxy/postgres/connection.js";
import { FrontendReader } from "../src/proxy/postgres/frontend-codec.js";
import { MaskingSession } from "../src/proxy/postgres/masking-session.js";
import { PgRelay, type RelayIo } from "../src/proxy/postgres/relay.js";
import { parseUpstreamUrl } from "../src/proxy/postgres/upstream.js";
import { compileMasking } from "../src/proxy/masking/masker.js";
import { compileRules, loadSqlParser } from "../src/rules/sql-classifier.js";
import { createTestDatabase } from "./support/databases.js";

/**
 * Issue 15, must 2: the relay is a state machine without sockets (relay.ts). Here it is driven
 * with no socket at all: a realistic conversation's client bytes go in, split at every byte (and
 * one byte at a time), and what it sends upstream must be exactly the bytes it sent when they came
 * whole; then the real server's answer to those bytes (recorded once, in beforeAll, from
 * PostgreSQL through a plain socket) goes in, split at every byte, and what the client gets, and
 * the hook calls (statement records and outcomes, blocks), must be exactly the same each time.
 * The hooks are the gateway's real classification and masking over this file's database.
 */

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let target: pg.Client;

const PEOPLE = 3;
const email = (n: number) => `user${n}@example.com`;
const card = (n: number) => `card 4111 1111 1111 1111 of ${n}`;

beforeAll(async () => {
  await loadSqlParser();
  upstream = await createTestDatabase("pgrelaymachine");
  target = new pg.Client({ connectionString: upstream.url });
  await target.connect();
  await target.query(`
    CREATE TABLE people (id int PRIMARY KEY, email text, note text);
    INSERT INTO people SELECT g, 'user' || g || '@example.com', 'card 4111 1111 1111 1111 of ' || g FROM generate_series(1, ${PEOPLE}) g;
    CREATE TABLE copied (v text);`);
});

afterAll(async () => {
  for (const session of sessions) session.close();
  await target?.end();
  await upstream?.drop();
});

// ------------------------------------------------------------------ the session's hooks

type Call = readonly unknown[];

const sessions: Session[] = [];

/**
 * A session's hooks: the gateway's classification (a DELETE without WHERE is blocked) and, when
 * `masked`, its masking (email, card numbers) with catalog look-ups on this file's database; the
 * hooks that record write to `calls`. One per conversation serves every run of it.
 */
class Session {
  calls: Call[] = [];
  readonly hooks: SessionHooks;
  readonly #masking: MaskingSession | undefined;

  constructor(masked: boolean) {
    const cache = ClassificationCache.forRules(compileRules({ block: ["delete-without-where"], review: [] }));
    const masking = compileMasking(masked ? [{ column: "email" }, { detect: "credit-card" }] : []);
    const maskingSession = masked ? new MaskingSession(masking, parseUpstreamUrl(upstream.url)) : undefined;
    this.#masking = maskingSession;
    this.hooks = {
      upstream: parseUpstreamUrl(upstream.url),
      masking: maskingSession,
      attach: () => {},
      classify(sql) {
        const result = cache.get(sql);
        maskingSession?.onStatements(result);
        return result;
      },
      inspectAttached: (statement) => Promise.resolve(statement),
      onStatements: async (starts) => {
        for (const s of starts) this.calls.push(["record", s.seq, s.protocol, s.statement.text, s.statement.verdict, s.parameters]);
      },
      onStatementEnd: (end) => {
        this.calls.push(["end", end.seq, end.rows, end.commandTag, end.error]);
      },
      onBlocked: async (statement) => {
        this.calls.push(["blocked", statement.text, statement.rule]);
      },
      onHold: () => Promise.resolve("denied"),
      onRowDescription: (fields) => masking.forResult(fields),
      redactParameters: (values) => values.map((value) => value?.toString("utf8") ?? null),
      onClose: () => Promise.resolve(),
      registerCancelKey: () => Promise.resolve(),
    };
    sessions.push(this);
  }

  close(): void {
    this.#masking?.close();
  }
}

/**
 * The calls of a run by hook, each in order. How they interleave is not the relay's to fix: the
 * statements a client read carries are recorded in one call, so where its bytes are cut decides
 * whether a record comes before or after a later statement's block.
 */
const byHook = (calls: Call[]) => ({
  record: calls.filter((c) => c[0] === "record"),
  end: calls.filter((c) => c[0] === "end"),
  blocked: calls.filter((c) => c[0] === "blocked"),
});

// ------------------------------------------------------------------ driving the machine

/** Counts the frames of a client's (frontend, past start-up) or the server's (backend) stream. */
function countFrontend(bytes: Buffer, types: string): number {
  const reader = new FrontendReader(1 << 30);
  reader.startupPhase = false;
  return reader.push(bytes).filter((frame) => types.includes(String.fromCharCode(frame[0]!))).length;
}

function backendFrames(bytes: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  new BackendReader().push(bytes, (_type, frame) => frames.push(frame));
  return frames;
}

const readyCount = (bytes: Buffer) => backendFrames(bytes).filter((frame) => frame[0] === BackendType.ReadyForQuery).length;

function newSummary(): ConnectionSummary {
  const now = new Date();
  return { startedAt: now, endedAt: now, statementsByKind: {}, rowsReturned: 0, rowsAffected: 0, valuesMasked: 0, blocked: 0, held: 0, approved: 0, bytesIn: 0, bytesOut: 0, endReason: "client" };
}

/** One relay with nothing but arrays around it: what it writes either way, and what it asks of the connection. */
class Drive implements RelayIo {
  readonly relay: PgRelay;
  readonly summary = newSummary();
  readonly toUpstreamBytes: Buffer[] = [];
  readonly toClientBytes: Buffer[] = [];
  readonly fatals: ErrorFields[] = [];
  readonly errors: unknown[] = [];
  readonly #waiters: { done: () => boolean; resolve: () => void }[] = [];

  constructor(readonly session: Session) {
    session.calls = [];
    const reader = new FrontendReader(1 << 20);
    reader.startupPhase = false;
    this.relay = new PgRelay(session.hooks, this, { reader, summary: this.summary });
  }

  get calls(): Call[] {
    return this.session.calls;
  }

  get upstreamOut(): Buffer {
    return Buffer.concat(this.toUpstreamBytes);
  }

  get clientOut(): Buffer {
    return Buffer.concat(this.toClientBytes);
  }

  toUpstream(bytes: Buffer): void {
    this.toUpstreamBytes.push(Buffer.from(bytes));
    this.#check();
  }
  toClient(bytes: Buffer): void {
    this.toClientBytes.push(Buffer.from(bytes));
    this.#check();
  }
  pauseClient(): void {}
  resumeClient(): void {}
  pauseUpstream(): void {}
  resumeUpstream(): void {}
  fatal(fields: ErrorFields): void {
    this.fatals.push(fields);
    this.relay.close("error");
    this.#check();
  }
  end(reason: string): void {
    this.relay.close(reason);
    this.#check();
  }
  onError(error: unknown): void {
    this.errors.push(error);
  }

  #check(): void {
    for (const waiter of this.#waiters.splice(0)) {
      if (waiter.done()) waiter.resolve();
      else this.#waiters.push(waiter);
    }
  }

  /** Resolves once `done` holds (checked as output arrives), or at once if it does; a session that ends first fails it. */
  until(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise<void>((resolve) => this.#waiters.push({ done: () => done() || this.fatals.length > 0, resolve }));
  }

  /** Feeds the client's bytes in `parts`, and waits until every Query and Sync went upstream. */
  async client(parts: Buffer[]): Promise<void> {
    const whole = Buffer.concat(parts);
    const batches = countFrontend(whole, "QS");
    for (const part of parts) this.relay.fromClient(part);
    await this.until(() => countFrontend(this.upstreamOut, "QS") === batches);
  }

  /** Feeds the server's bytes in `parts`, and waits until the client got `ready` ReadyForQuery. */
  async server(parts: Buffer[], ready: number): Promise<void> {
    for (const part of parts) this.relay.fromUpstream(part);
    await this.until(() => readyCount(this.clientOut) === ready);
  }
}

// ------------------------------------------------------------------ the real server, through a plain socket

/** Sends `bytes` to PostgreSQL on a fresh session and returns its answer, up to `ready` ReadyForQuery. */
async function serverAnswer(bytes: Buffer, ready: number): Promise<Buffer> {
  const { host, port, user, database } = parseUpstreamUrl(upstream.url);
  const socket: Socket = connect({ host, port });
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const chunks: Buffer[] = [];
  let seen = 0;
  let started = false;
  const answered = new Promise<Buffer>((resolve, reject) => {
    const reader = new BackendReader();
    socket.on("data", (chunk: Buffer) => {
      reader.push(chunk, (type, frame) => {
        if (!started) {
          // Start-up (trust): the session is ready at its first ReadyForQuery; then the conversation goes.
          if (type === BackendType.ErrorResponse) reject(new Error(decodeErrorFields(frame).M));
          if (type === BackendType.ReadyForQuery) {
            started = true;
            socket.write(bytes);
          }
          return;
        }
        chunks.push(Buffer.from(frame));
        if (type === BackendType.ReadyForQuery && ++seen === ready) resolve(Buffer.concat(chunks));
      });
    });
    socket.once("close", () => reject(new Error(`the server closed after ${seen} ReadyForQuery`)));
  });
  socket.write(serialize.startup({ user, database }));
  try {
    return await answered;
  } finally {
    socket.destroy();
  }
}

// ------------------------------------------------------------------ conversations

interface Recorded {
  session: Session;
  client: Buffer;
  /** What the relay sent upstream when the client's bytes came whole. */
  upstream: Buffer;
  /** The real server's answer to that. */
  server: Buffer;
  /** What the client got when the server's bytes came whole, and the hook calls of that run. */
  answer: Buffer;
  calls: Call[];
  ready: number;
}

async function record(masked: boolean, client: Buffer): Promise<Recorded> {
  const session = new Session(masked);
  const ready = countFrontend(client, "QS");
  const drive = new Drive(session);
  await drive.client([client]);
  const upstreamBytes = drive.upstreamOut;
  const server = await serverAnswer(upstreamBytes, ready);
  await drive.server([server], ready);
  expect(drive.fatals).toEqual([]);
  expect(drive.errors).toEqual([]);
  return { session, client, upstream: upstreamBytes, server, answer: drive.clientOut, calls: drive.calls, ready };
}

const everySplit = (bytes: Buffer) => Array.from({ length: bytes.length - 1 }, (_, i) => [bytes.subarray(0, i + 1), bytes.subarray(i + 1)]);
const bytewise = (bytes: Buffer) => [...bytes].map((byte) => Buffer.from([byte]));

/** The same conversation at every split of the client's bytes, then of the server's: the same bytes out both ways, the same hook calls. */
async function expectSameAtEverySplit(recorded: Recorded): Promise<void> {
  const clientSplits = [...everySplit(recorded.client), bytewise(recorded.client)];
  for (const parts of clientSplits) {
    const drive = new Drive(recorded.session);
    await drive.client(parts);
    expect(drive.upstreamOut.equals(recorded.upstream), `upstream bytes, client split ${parts.map((p) => p.length).join("+")}`).toBe(true);
    await drive.server([recorded.server], recorded.ready);
    expect(drive.clientOut.equals(recorded.answer), `client bytes, client split ${parts.map((p) => p.length).join("+")}`).toBe(true);
    expect(byHook(drive.calls)).toEqual(byHook(recorded.calls));
    expect(drive.fatals).toEqual([]);
  }
  const serverSplits = [...everySplit(recorded.server), bytewise(recorded.server)];
  for (const parts of serverSplits) {
    const drive = new Drive(recorded.session);
    await drive.client([recorded.client]);
    await drive.server(parts, recorded.ready);
    const split = `server split ${parts.map((p) => p.length).join("+")}`;
    if (!drive.clientOut.equals(recorded.answer)) {
      expect(backendFrames(drive.clientOut).map((f) => f.toString("latin1")), split).toEqual(backendFrames(recorded.answer).map((f) => f.toString("latin1")));
    }
    expect(drive.clientOut.equals(recorded.answer), split).toBe(true);
    expect(drive.calls).toEqual(recorded.calls);
    expect(drive.fatals).toEqual([]);
  }
}

const rowsOf = (answer: Buffer) => backendFrames(answer).filter((f) => f[0] === BackendType.DataRow).map((f) => decodeDataRow(f).map((v) => v?.toString() ?? null));
const typesOf = (answer: Buffer) => backendFrames(answer).map((f) => String.fromCharCode(f[0]!)).join("");
const frontendTypes = (bytes: Buffer) => {
  const reader = new FrontendReader(1 << 30);
  reader.startupPhase = false;
  return reader.push(bytes).map((f) => String.fromCharCode(f[0]!)).join("");
};

describe("the relay machine, without sockets", () => {
  it("a simple Query with rows, and one of two statements: passed as they came, recorded, counted", async () => {
    const recorded = await record(
      false,
      Buffer.concat([serialize.query("select id, email, note from people order by id"), serialize.query("select 1 as one; select 'two' as two")]),
    );
    // Nothing is changed either way.
    expect(recorded.upstream.equals(recorded.client)).toBe(true);
    expect(recorded.answer.equals(recorded.server)).toBe(true);
    expect(rowsOf(recorded.answer)).toEqual([["1", email(1), card(1)], ["2", email(2), card(2)], ["3", email(3), card(3)], ["1"], ["two"]]);
    expect(recorded.calls).toEqual([
      ["record", 1, "simple", "select id, email, note from people order by id", "allow", null],
      ["record", 2, "simple", "select 1 as one", "allow", null],
      ["record", 3, "simple", "select 'two' as two", "allow", null],
      ["end", 1, 3, "SELECT 3", null],
      ["end", 2, 1, "SELECT 1", null],
      ["end", 3, 1, "SELECT 1", null],
    ]);
    await expectSameAtEverySplit(recorded);
  }, 120_000);

  it("the extended protocol on a masked column, with and without the client's own Describe: masked either way, and the client's Describe is the only one", async () => {
    const recorded = await record(
      true,
      Buffer.concat([
        // The client describes its portal right before executing it (node-postgres, libpq).
        serialize.parse({ name: "s1", text: "select id, email, note from people where id = $1" }),
        serialize.bind({ statement: "s1", values: ["2"] }),
        serialize.describe({ type: "P" }),
        serialize.execute({}),
        serialize.sync(),
        // It does not (it knows the shape already): the relay asks for it, and the answer is not the client's.
        serialize.bind({ statement: "s1", values: ["3"] }),
        serialize.execute({}),
        serialize.sync(),
        // It describes the portal, but a Flush comes between: the answer may have passed already, so the relay asks again.
        serialize.bind({ statement: "s1", values: ["1"] }),
        serialize.describe({ type: "P" }),
        serialize.flush(),
        serialize.execute({}),
        serialize.sync(),
        // A portal run a row at a time: the first Execute follows the client's Describe, the second does not.
        serialize.parse({ name: "s2", text: "select email from people order by id" }),
        serialize.bind({ statement: "s2", portal: "p2" }),
        serialize.describe({ type: "P", name: "p2" }),
        serialize.execute({ portal: "p2", rows: 1 }),
        serialize.execute({ portal: "p2", rows: 1 }),
        serialize.sync(),
      ]),
    );
    expect(rowsOf(recorded.answer)).toEqual([
      ["2", "***", "card ****-****-****-1111 of 2"],
      ["3", "***", "card ****-****-****-1111 of 3"],
      ["1", "***", "card ****-****-****-1111 of 1"],
      ["***"],
      ["***"],
    ]);
    // Upstream: the client's own messages, plus one Describe before each Execute that had none right before it.
    expect(frontendTypes(recorded.client)).toBe("PBDES" + "BES" + "BDHES" + "PBDEES");
    expect(frontendTypes(recorded.upstream)).toBe("PBDES" + "BDES" + "BDHDES" + "PBDEDES");
    // The client gets the answers to its own messages only: one RowDescription per Describe it sent.
    expect(typesOf(recorded.answer)).toBe("12TDCZ" + "2DCZ" + "2TDCZ" + "12TDsDsZ");
    const descriptions = backendFrames(recorded.answer).filter((f) => f[0] === BackendType.RowDescription);
    expect(descriptions.map((d) => decodeRowDescription(d).map((f) => f.name))).toEqual([["id", "email", "note"], ["id", "email", "note"], ["email"]]);
    expect(recorded.calls.filter((c) => c[0] === "end")).toEqual([
      ["end", 1, 1, "SELECT 1", null],
      ["end", 2, 1, "SELECT 1", null],
      ["end", 3, 1, "SELECT 1", null],
      ["end", 4, 1, null, null],
      ["end", 5, 1, null, null],
    ]);
    await expectSameAtEverySplit(recorded);
  }, 240_000);

  it("a refused statement: the server raises the refusal, in the simple and the extended protocol, and what follows runs", async () => {
    const recorded = await record(
      false,
      Buffer.concat([
        serialize.query("delete from people"),
        serialize.parse({ text: "delete from people" }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.sync(),
        serialize.query("select count(*) from people"),
      ]),
    );
    const blocked = 'jitgate: statement blocked by rule "delete-without-where"';
    const errors = backendFrames(recorded.answer).filter((f) => f[0] === BackendType.ErrorResponse).map((f) => decodeErrorFields(f));
    expect(errors.map((e) => [e.C, e.M])).toEqual([
      ["42501", blocked],
      ["42501", blocked],
    ]);
    expect(rowsOf(recorded.answer)).toEqual([[String(PEOPLE)]]);
    // The DELETE never went upstream: the refusal ran instead, and the client saw no ParseComplete or BindComplete of it.
    expect(recorded.upstream.toString("latin1")).not.toMatch(/delete from people/);
    expect(typesOf(recorded.answer)).toBe("EZ" + "EZ" + "TDCZ");
    // Sent in one read, the three are recorded in one call once both refusals are decided.
    expect(recorded.calls).toEqual([
      ["blocked", "delete from people", "delete-without-where"],
      ["blocked", "delete from people", "delete-without-where"],
      ["record", 1, "simple", "delete from people", "block", null],
      ["record", 2, "extended", "delete from people", "block", null],
      ["record", 3, "simple", "select count(*) from people", "allow", null],
      ["end", 1, 0, null, `42501 ${blocked}`],
      ["end", 2, 0, null, `42501 ${blocked}`],
      ["end", 3, 1, "SELECT 1", null],
    ]);
    const { rows } = await target.query<{ n: string }>("SELECT count(*) AS n FROM people");
    expect(Number(rows[0]!.n)).toBe(PEOPLE);
    await expectSameAtEverySplit(recorded);
  }, 120_000);

  it("COPY in and out: the data passes as it came, and the rows are counted", async () => {
    const recorded = await record(
      false,
      Buffer.concat([
        serialize.query("copy copied from stdin"),
        serialize.copyData(Buffer.from("a\n")),
        serialize.copyData(Buffer.from("b\nc\n")),
        serialize.copyDone(),
        serialize.query("copy (select id from people order by id) to stdout"),
      ]),
    );
    expect(recorded.upstream.equals(recorded.client)).toBe(true);
    expect(recorded.answer.equals(recorded.server)).toBe(true);
    const frames = backendFrames(recorded.answer);
    expect(frames.filter((f) => f[0] === BackendType.CommandComplete).map(decodeCommandTag)).toEqual(["COPY 3", "COPY 3"]);
    expect(frames.filter((f) => f[0] === BackendType.CopyData).map((f) => f.toString("utf8", 5))).toEqual(["1\n", "2\n", "3\n"]);
    expect(recorded.calls.filter((c) => c[0] === "end")).toEqual([
      ["end", 1, 3, "COPY 3", null],
      ["end", 2, 3, "COPY 3", null],
    ]);
    const { rows } = await target.query<{ v: string }>("SELECT v FROM copied ORDER BY v");
    expect(rows.map((r) => r.v)).toEqual(["a", "b", "c"]);
    await expectSameAtEverySplit(recorded);
  }, 120_000);
});
