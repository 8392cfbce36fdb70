import { describe, expect, it } from "vitest";
import { serialize } from "pg-protocol";
import {
  backend,
  BackendReader,
  decodeDataRow,
  decodeErrorFields,
  decodeRowDescription,
  encodeDataRow,
  rowsOfCommandTag,
} from "../src/proxy/postgres/backend-codec.js";
import { decodeFrontend, decodeStartup, FrontendReader, ProtocolViolation } from "../src/proxy/postgres/frontend-codec.js";
import { refusalSql } from "../src/proxy/postgres/connection.js";
import { md5Password, ScramClient, ScramServer } from "../src/proxy/postgres/scram.js";
import { makeVerifier } from "../src/broker/credentials.js";

// What a client sends after start-up, as pg-protocol (node-postgres' own serializer) writes it.
const stream = Buffer.concat([
  serialize.query("SELECT 1; SELECT 'two'"),
  serialize.parse({ name: "s1", text: "SELECT $1::int", types: [23] }),
  serialize.bind({ portal: "p1", statement: "s1", values: ["42", null] }),
  serialize.describe({ type: "P", name: "p1" }),
  serialize.execute({ portal: "p1", rows: 10 }),
  serialize.sync(),
  serialize.copyData(Buffer.from("1,a\n")),
  serialize.copyDone(),
  serialize.end(),
]);

function framesOf(chunks: Buffer[], max = 1 << 20): Buffer[] {
  const reader = new FrontendReader(max);
  reader.startupPhase = false;
  return chunks.flatMap((chunk) => reader.push(chunk));
}

describe("FrontendReader", () => {
  const whole = framesOf([stream]);

  it("frames and decodes every message type", () => {
    expect(whole.map((f) => decodeFrontend(f[0]!, f).type)).toEqual([
      "query",
      "parse",
      "bind",
      "describe",
      "execute",
      "sync",
      "copy-data",
      "copy-done",
      "terminate",
    ]);
    const [query, parse, bind, describe_, execute] = whole.map((f) => decodeFrontend(f[0]!, f));
    expect(query).toMatchObject({ sql: "SELECT 1; SELECT 'two'" });
    expect(parse).toMatchObject({ statement: "s1", sql: "SELECT $1::int", paramTypes: [23] });
    expect(bind).toMatchObject({ portal: "p1", statement: "s1", params: [Buffer.from("42"), null] });
    expect(describe_).toMatchObject({ target: "P", name: "p1" });
    expect(execute).toMatchObject({ portal: "p1", maxRows: 10 });
  });

  it("gives the same frames whatever the split: at every byte, and one byte at a time", () => {
    for (let split = 1; split < stream.length; split++) {
      expect(framesOf([stream.subarray(0, split), stream.subarray(split)])).toEqual(whole);
    }
    const bytes = [...stream].map((byte) => Buffer.from([byte]));
    expect(framesOf(bytes)).toEqual(whole);
  });

  it("refuses a length under 4 or over the cap before buffering anything for it", () => {
    const tooLong = Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]);
    expect(() => framesOf([tooLong])).toThrow(ProtocolViolation);
    expect(() => framesOf([tooLong])).toThrow("message of 2147483647 bytes is over the limit of 1048576");
    expect(() => framesOf([Buffer.from([0x51, 0, 0, 0, 3])])).toThrow("invalid message length 3");
    expect(() => framesOf([serialize.query("x".repeat(2000))], 1000)).toThrow(/over the limit of 1000/);
  });

  it("decodes the startup packet, SSLRequest and CancelRequest; refuses truncated contents", () => {
    const startup = serialize.startup({ user: "dev@example.com", database: "orders-db", application_name: "psql" });
    const reader = new FrontendReader(1 << 20);
    const [frame] = reader.push(startup);
    expect(decodeStartup(frame!.subarray(4))).toEqual({
      type: "startup",
      protocol: 196608,
      params: { user: "dev@example.com", database: "orders-db", application_name: "psql", client_encoding: "UTF8" },
    });
    expect(decodeStartup(serialize.requestSsl().subarray(4))).toEqual({ type: "ssl-request" });
    expect(decodeStartup(serialize.cancel(7, 9).subarray(4))).toEqual({ type: "cancel", processId: 7, secretKey: 9 });
    const truncated = Buffer.from([0x50, 0, 0, 0, 8, 0x61, 0x62, 0x63, 0x64]); // Parse without its NULs
    expect(() => decodeFrontend(0x50, truncated)).toThrow("unterminated string in message");
    expect(() => decodeFrontend(0x7a, Buffer.from([0x7a, 0, 0, 0, 4]))).toThrow('unknown message type "z"');
  });
});

describe("backend messages", () => {
  // RowDescription (https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-ROWDESCRIPTION)
  const field = (name: string, type: number, format: number, table = 0, column = 0) => {
    const tail = Buffer.alloc(18);
    tail.writeUInt32BE(table, 0);
    tail.writeInt16BE(column, 4);
    tail.writeInt32BE(type, 6);
    tail.writeInt16BE(-1, 10);
    tail.writeInt32BE(-1, 12);
    tail.writeInt16BE(format, 16);
    return Buffer.concat([Buffer.from(`${name}\0`), tail]);
  };
  const fields = Buffer.concat([Buffer.from([0, 2]), field("id", 23, 0, 3_000_000_000, 1), field("f", 25, 1)]);
  const header = Buffer.alloc(5);
  header[0] = 0x54;
  header.writeInt32BE(fields.length + 4, 1);
  const rowDescription = Buffer.concat([header, fields]);
  const row = encodeDataRow([Buffer.from("1"), null, Buffer.from("ann@example.com")]);
  const sequence = Buffer.concat([rowDescription, row, backend.readyForQuery("T"), backend.error({ severity: "ERROR", code: "42501", message: "no", hint: "ask" })]);

  it("frames the upstream stream identically at every split", () => {
    const collect = (chunks: Buffer[]) => {
      const reader = new BackendReader();
      const out: string[] = [];
      for (const chunk of chunks) reader.push(chunk, (type, frame) => out.push(`${type}:${frame.toString("hex")}`));
      return out;
    };
    const whole = collect([sequence]);
    expect(whole).toHaveLength(4);
    for (let split = 1; split < sequence.length; split++) expect(collect([sequence.subarray(0, split), sequence.subarray(split)])).toEqual(whole);
  });

  it("scans at every split and one byte at a time: the same messages, whole ones as slices of their chunk, a split one in its own buffer of exactly its bytes", () => {
    const scanned = (chunks: Buffer[]) => {
      const reader = new BackendReader();
      const out: string[] = [];
      for (const chunk of chunks) {
        reader.scan(chunk, (type, buffer, start, end) => {
          expect(buffer[start]).toBe(type);
          // A message whole in this chunk is a slice of it; one that straddled chunks has its own buffer.
          if (buffer !== chunk) expect([start, end]).toEqual([0, buffer.length]);
          out.push(`${type}:${buffer.subarray(start, end).toString("hex")}`);
        });
      }
      return out;
    };
    const whole = scanned([sequence]);
    expect(whole).toHaveLength(4);
    expect(whole.map((f) => f.slice(f.indexOf(":") + 1)).join("")).toBe(sequence.toString("hex"));
    for (let split = 1; split < sequence.length; split++) expect(scanned([sequence.subarray(0, split), sequence.subarray(split)])).toEqual(whole);
    for (let a = 1; a < sequence.length; a += 7) {
      for (let b = a + 1; b < sequence.length; b += 5) expect(scanned([sequence.subarray(0, a), sequence.subarray(a, b), sequence.subarray(b)])).toEqual(whole);
    }
    expect(scanned([...sequence].map((byte) => Buffer.from([byte])))).toEqual(whole);
    expect(() => scanned([Buffer.from([0x44, 0, 0, 0, 3])])).toThrow("invalid length 3");
  });

  it("decodes RowDescription, DataRow, ErrorResponse and command tags", () => {
    expect(decodeRowDescription(rowDescription)).toEqual([
      // A table OID above 2^31 is still an OID (unsigned), not a negative number.
      { name: "id", tableID: 3_000_000_000, columnID: 1, dataTypeID: 23, format: 0 },
      { name: "f", tableID: 0, columnID: 0, dataTypeID: 25, format: 1 },
    ]);
    expect(decodeDataRow(row)).toEqual([Buffer.from("1"), null, Buffer.from("ann@example.com")]);
    expect(decodeErrorFields(backend.error({ severity: "FATAL", code: "57P01", message: "access grant expired" }))).toEqual({
      S: "FATAL",
      V: "FATAL",
      C: "57P01",
      M: "access grant expired",
    });
    expect([rowsOfCommandTag("INSERT 0 5"), rowsOfCommandTag("SELECT 3"), rowsOfCommandTag("BEGIN")]).toEqual([5, 3, undefined]);
  });

  it("quotes the refusal message so it cannot break out of the DO block", () => {
    expect(refusalSql("42501", "it's $jitgate$ here")).toBe(
      "DO $jitgate$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'it''s  here'; END$jitgate$",
    );
  });
});

describe("SCRAM-SHA-256", () => {
  it("the server accepts the right secret against a stored verifier, and refuses a wrong one", async () => {
    const verifier = await makeVerifier("correct horse");
    for (const [password, ok] of [["correct horse", true], ["wrong", false]] as const) {
      const client = new ScramClient(password);
      const server = new ScramServer(verifier);
      const serverFirst = server.start(client.first());
      const clientFinal = client.final(serverFirst);
      if (ok) client.verify(server.finish(clientFinal));
      else expect(() => server.finish(clientFinal)).toThrow("invalid proof");
    }
  });

  it("md5 as PostgreSQL computes it", () => {
    expect(md5Password("u", "p", Buffer.from([1, 2, 3, 4]))).toMatch(/^md5[0-9a-f]{32}$/);
  });
});
