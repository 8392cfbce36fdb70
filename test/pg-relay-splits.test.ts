import pg from "pg";
import { serialize } from "pg-protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Person } from "../src/broker/index.js";
import { BackendReader, BackendType, decodeDataRow, decodeErrorFields } from "../src/proxy/postgres/backend-codec.js";
import { openUpstream, type UpstreamSession } from "../src/proxy/postgres/upstream.js";
import { createTestDatabase } from "./support/databases.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

/**
 * Issue 15, must 2: the relay decides messages on the spot, records a batch in one call and
 * writes it upstream in one write, and passes what it need not change as the bytes that came.
 * However the client's bytes are cut into reads, the client must get exactly the same answer:
 * the same stream is sent whole, split in two at every byte, and one byte per write, on a target
 * with masking rules and on one without; the answer's bytes are compared, and the effects on the
 * target (a blocked DELETE deleted nothing, the statements were recorded) are checked there.
 */

let upstream: Awaited<ReturnType<typeof createTestDatabase>>;
let test: TestGateway;
let dev: Person, lead: Person;
let port: number;
let target: pg.Client;

const PEOPLE = 3;

beforeAll(async () => {
  upstream = await createTestDatabase("pgsplit_upstream");
  target = new pg.Client({ connectionString: upstream.url });
  await target.connect();
  await target.query(`
    CREATE TABLE people (id int PRIMARY KEY, email text, note text);
    INSERT INTO people SELECT g, 'user' || g || '@example.com', 'card 4111 1111 1111 1111 of ' || g FROM generate_series(1, ${PEOPLE}) g;
    CREATE TABLE copied (v text);`);
  test = await startTestGateway(
    "pgsplit",
    `
proxy:
  postgres: { listen: 127.0.0.1:0, publicAddress: db-gw.example.com:15432 }
targets:
  - name: masked-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    commands:
      block: [delete-without-where, "^ALTER SYSTEM"]
    mask: [{ column: email }, { detect: credit-card }]
  - name: plain-db
    kind: postgres
    upstream: \${UPSTREAM_URL}
    approvers: [lead@example.com]
    commands:
      block: [delete-without-where, "^ALTER SYSTEM"]
`,
    { UPSTREAM_URL: upstream.url },
  );
  port = test.gateway.postgresProxy!.address.port;
  const { broker } = test.gateway;
  dev = await broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com", displayName: "Dev" });
  lead = await broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com", displayName: "Lead" });
});

afterAll(async () => {
  await target?.end();
  await test?.close();
  await upstream?.drop();
});

const lines = new Map<string, Promise<string>>();

/** dev's connection line for a target (one live grant per target). */
function line(targetName: string): Promise<string> {
  let granted = lines.get(targetName);
  if (!granted) {
    const { broker } = test.gateway;
    granted = broker
      .request(dev, { target: targetName, duration: "1h", reason: "INC-15 relay splits" })
      .then((request) => broker.decide(lead, { requestId: request.id, verdict: "approve" }))
      .then((result) => result.connection!.line);
    lines.set(targetName, granted);
  }
  return granted;
}

async function session(targetName: string): Promise<UpstreamSession> {
  const url = new URL(await line(targetName));
  return openUpstream(
    { host: "127.0.0.1", port, user: decodeURIComponent(url.username), password: decodeURIComponent(url.password), database: targetName, sslmode: "disable" },
    {},
  );
}

/** Simple and extended protocol, a pipelined pair, a blocked statement and COPY in, in one stream. */
const STREAM = Buffer.concat([
  serialize.query("select id, email, note from people order by id"),
  serialize.parse({ text: "select email, note from people where id = $1" }),
  serialize.bind({ values: ["2"] }),
  serialize.describe({ type: "P" }),
  serialize.execute({}),
  serialize.sync(),
  serialize.query("select 1 as one; select 'two' as two"),
  serialize.query("delete from people"),
  serialize.query("truncate copied"),
  serialize.query("copy copied from stdin"),
  serialize.copyData(Buffer.from("a\n")),
  serialize.copyData(Buffer.from("b\n")),
  serialize.copyDone(),
  serialize.query("select count(*) from copied"),
  serialize.query("select note from people where id = 3"),
]);
/** One ReadyForQuery per Query and per Sync. */
const READY_COUNT = 8;

/** Writes `parts` one after the other (each once the previous is handed to the kernel) and collects the answer up to the last ReadyForQuery. */
async function exchange(client: UpstreamSession, parts: Buffer[]): Promise<Buffer> {
  const reader = new BackendReader();
  const chunks: Buffer[] = [];
  let ready = 0;
  const answered = new Promise<Buffer>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      reader.push(chunk, (type) => {
        if (type === BackendType.ReadyForQuery && ++ready === READY_COUNT) {
          client.socket.off("data", onData);
          resolve(Buffer.concat(chunks));
        }
      });
    };
    client.socket.on("data", onData);
    client.socket.once("close", () => reject(new Error(`the session closed after ${ready} ReadyForQuery: ${Buffer.concat(chunks).toString("latin1")}`)));
  });
  for (const part of parts) await new Promise<void>((resolve, reject) => client.socket.write(part, (error) => (error ? reject(error) : resolve())));
  return answered;
}

function framesOf(answer: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  new BackendReader().push(answer, (_type, frame) => frames.push(frame));
  return frames;
}

describe.each(["masked-db", "plain-db"])("the relay on %s", (targetName) => {
  let client: UpstreamSession;
  let whole: Buffer;

  beforeAll(async () => {
    client = await session(targetName);
    whole = await exchange(client, [STREAM]);
  });

  afterAll(() => {
    client?.socket.destroy();
  });

  it("answers the stream sent whole: masked where rules apply, the DELETE refused, COPY in done", async () => {
    const frames = framesOf(whole);
    const rows = frames.filter((f) => f[0] === BackendType.DataRow).map((f) => decodeDataRow(f).map((v) => v?.toString() ?? null));
    const masked = targetName === "masked-db";
    const email = (n: number) => (masked ? "***" : `user${n}@example.com`);
    const note = (n: number) => (masked ? `card ****-****-****-1111 of ${n}` : `card 4111 1111 1111 1111 of ${n}`);
    expect(rows).toEqual([
      ["1", email(1), note(1)],
      ["2", email(2), note(2)],
      ["3", email(3), note(3)],
      [email(2), note(2)],
      ["1"],
      ["two"],
      ["2"],
      [note(3)],
    ]);
    const errors = frames.filter((f) => f[0] === BackendType.ErrorResponse).map((f) => decodeErrorFields(f).M);
    expect(errors).toEqual(['jitgate: statement blocked by rule "delete-without-where"']);
    const { rows: left } = await target.query<{ n: string }>("SELECT count(*) AS n FROM people");
    expect(Number(left[0]!.n)).toBe(PEOPLE);
  });

  it("gives the same bytes when the stream is split in two at every byte", async () => {
    for (let split = 1; split < STREAM.length; split++) {
      const answer = await exchange(client, [STREAM.subarray(0, split), STREAM.subarray(split)]);
      if (!answer.equals(whole)) expect(framesOf(answer).map((f) => f.toString("latin1")), `split at byte ${split}`).toEqual(framesOf(whole).map((f) => f.toString("latin1")));
    }
  }, 240_000);

  it("gives the same bytes when the stream comes one byte per write", async () => {
    const answer = await exchange(client, [...STREAM].map((byte) => Buffer.from([byte])));
    if (!answer.equals(whole)) expect(framesOf(answer).map((f) => f.toString("latin1"))).toEqual(framesOf(whole).map((f) => f.toString("latin1")));
  }, 60_000);
});

describe("a batch whose records cannot be written", () => {
  it("reaches the target with none of its statements, and the session ends with 58000", async () => {
    const client = await session("plain-db");
    const before = await target.query<{ n: string }>("SELECT count(*) AS n FROM copied");
    // The audit journal's file is closed under the running proxy (what a lost disk looks like to it).
    // The last test of this file: the gateway records nothing after it.
    await test.gateway.audit!.journal.close();
    // Three pipelined INSERTs in one write: recorded in one call, so refused together.
    const stream = Buffer.concat([1, 2, 3].map((n) => serialize.query(`insert into copied values ('pipelined ${n}')`)));
    const answer = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      client.socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      client.socket.once("close", () => resolve(Buffer.concat(chunks)));
      client.socket.write(stream);
    });
    const frames = framesOf(answer);
    expect(frames.map((f) => String.fromCharCode(f[0]!))).toEqual(["E"]);
    expect(decodeErrorFields(frames[0]!)).toMatchObject({ S: "FATAL", C: "58000", M: "jitgate could not record the statement, so it was not run; the session is closed" });
    const after = await target.query<{ n: string }>("SELECT count(*) AS n FROM copied");
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);
  });
});
