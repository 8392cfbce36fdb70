/**
 * What the proxy says to a client in its own name (the "backend" messages of
 * https://www.postgresql.org/docs/current/protocol-message-formats.html), and the framing of what
 * the upstream server sends. No I/O.
 */

function message(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

const cstring = (text: string) => Buffer.from(`${text}\0`, "utf8");
const int32 = (value: number) => {
  const out = Buffer.allocUnsafe(4);
  out.writeInt32BE(value, 0);
  return out;
};

export const backend = {
  authenticationOk: () => message("R", int32(0)),
  authenticationCleartextPassword: () => message("R", int32(3)),
  authenticationSasl: (mechanisms: string[]) =>
    message("R", Buffer.concat([int32(10), ...mechanisms.map(cstring), Buffer.from([0])])),
  saslContinue: (data: string) => message("R", Buffer.concat([int32(11), Buffer.from(data, "utf8")])),
  saslFinal: (data: string) => message("R", Buffer.concat([int32(12), Buffer.from(data, "utf8")])),
  parameterStatus: (name: string, value: string) => message("S", Buffer.concat([cstring(name), cstring(value)])),
  backendKeyData: (processId: number, secretKey: number) => message("K", Buffer.concat([int32(processId), int32(secretKey)])),
  readyForQuery: (status: "I" | "T" | "E") => message("Z", Buffer.from(status, "ascii")),
  error: (fields: ErrorFields) => message("E", noticeBody(fields)),
  notice: (fields: ErrorFields) => message("N", noticeBody(fields)),
};

export interface ErrorFields {
  severity: "ERROR" | "FATAL" | "PANIC" | "WARNING" | "NOTICE" | "INFO";
  /** A real SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function noticeBody(fields: ErrorFields): Buffer {
  const parts = [
    Buffer.from("S"),
    cstring(fields.severity),
    Buffer.from("V"),
    cstring(fields.severity),
    Buffer.from("C"),
    cstring(fields.code),
    Buffer.from("M"),
    cstring(fields.message),
  ];
  if (fields.detail) parts.push(Buffer.from("D"), cstring(fields.detail));
  if (fields.hint) parts.push(Buffer.from("H"), cstring(fields.hint));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** Backend message types the proxy looks at (https://www.postgresql.org/docs/current/protocol-message-formats.html). */
export const BackendType = {
  Authentication: 0x52, // R
  ParameterStatus: 0x53, // S
  BackendKeyData: 0x4b, // K
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
  DataRow: 0x44, // D
  CommandComplete: 0x43, // C
  ErrorResponse: 0x45, // E
  NoticeResponse: 0x4e, // N
  ParseComplete: 0x31, // 1
  BindComplete: 0x32, // 2
  EmptyQueryResponse: 0x49, // I
  PortalSuspended: 0x73, // s
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  CopyBothResponse: 0x57, // W
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  NoData: 0x6e, // n
  ParameterDescription: 0x74, // t
} as const;

/**
 * Frames the upstream server's byte stream. The server is trusted more than a client, but a
 * length past the cap still ends the session rather than buffering without bound.
 */
export class BackendReader {
  #pending: Buffer = Buffer.alloc(0);
  constructor(readonly maxMessageLength = 1024 * 1024 * 1024) {}

  get pendingLength(): number {
    return this.#pending.length;
  }

  /** Calls `onFrame(type, frame)` for each complete message; `frame` includes the 5-byte header. */
  push(chunk: Buffer, onFrame: (type: number, frame: Buffer) => void): void {
    this.scan(chunk, (type, buffer, start, end) => onFrame(type, buffer.subarray(start, end)));
  }

  /**
   * Frames without cutting: calls `onFrame(type, buffer, start, end)` for each complete message,
   * `buffer.subarray(start, end)` being the message (header included). `buffer` is the chunk
   * itself, except for a message split across chunks: that one comes in a buffer of its own, made
   * of its earlier bytes and only as many of the chunk's as it needs. So a relay can pass runs of
   * messages it does not change as slices of the chunk, without a copy.
   */
  scan(chunk: Buffer, onFrame: (type: number, buffer: Buffer, start: number, end: number) => void): void {
    let offset = 0;
    if (this.#pending.length > 0) {
      let head = this.#pending;
      if (head.length < 5) {
        offset = Math.min(5 - head.length, chunk.length);
        head = Buffer.concat([head, chunk.subarray(0, offset)]);
        if (head.length < 5) {
          this.#pending = head;
          return;
        }
      }
      const total = this.#total(head, 0);
      const need = total - head.length;
      if (chunk.length - offset < need) {
        this.#pending = Buffer.concat([head, chunk.subarray(offset)]);
        return;
      }
      const frame = Buffer.concat([head, chunk.subarray(offset, offset + need)]);
      offset += need;
      this.#pending = EMPTY;
      onFrame(frame[0]!, frame, 0, total);
    }
    while (chunk.length - offset >= 5) {
      const total = this.#total(chunk, offset);
      if (chunk.length - offset < total) break;
      onFrame(chunk[offset]!, chunk, offset, offset + total);
      offset += total;
    }
    this.#pending = offset === chunk.length ? EMPTY : Buffer.from(chunk.subarray(offset));
  }

  #total(buffer: Buffer, offset: number): number {
    const length = buffer.readInt32BE(offset + 1);
    if (length < 4 || length > this.maxMessageLength) throw new Error(`upstream sent a message of invalid length ${length}`);
    return length + 1;
  }
}

const EMPTY = Buffer.alloc(0);

/** Field values of an ErrorResponse / NoticeResponse frame, by their one-letter codes. */
export function decodeErrorFields(frame: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  let offset = 5;
  while (offset < frame.length && frame[offset] !== 0) {
    const code = String.fromCharCode(frame[offset]!);
    const end = frame.indexOf(0, offset + 1);
    if (end < 0) break;
    fields[code] = frame.toString("utf8", offset + 1, end);
    offset = end + 1;
  }
  return fields;
}

export interface RowField {
  name: string;
  /** The OID of the table of a plain column reference, else 0; `columnID` its attribute number. */
  tableID: number;
  columnID: number;
  dataTypeID: number;
  format: 0 | 1;
}

export function decodeRowDescription(frame: Buffer): RowField[] {
  const count = frame.readInt16BE(5);
  const fields: RowField[] = [];
  let offset = 7;
  for (let i = 0; i < count; i++) {
    const end = frame.indexOf(0, offset);
    const name = frame.toString("utf8", offset, end);
    offset = end + 1;
    const tableID = frame.readUInt32BE(offset);
    const columnID = frame.readInt16BE(offset + 4);
    const dataTypeID = frame.readInt32BE(offset + 6);
    const format = frame.readInt16BE(offset + 16) === 1 ? 1 : 0;
    fields.push({ name, tableID, columnID, dataTypeID, format });
    offset += 18;
  }
  return fields;
}

export function decodeDataRow(frame: Buffer): (Buffer | null)[] {
  const count = frame.readInt16BE(5);
  const values: (Buffer | null)[] = new Array(count);
  let offset = 7;
  for (let i = 0; i < count; i++) {
    const length = frame.readInt32BE(offset);
    offset += 4;
    if (length < 0) values[i] = null;
    else {
      values[i] = frame.subarray(offset, offset + length);
      offset += length;
    }
  }
  return values;
}

export function encodeDataRow(values: (Buffer | null)[]): Buffer {
  let length = 4 + 2;
  for (const value of values) length += 4 + (value ? value.length : 0);
  const out = Buffer.allocUnsafe(1 + length);
  out[0] = BackendType.DataRow;
  out.writeInt32BE(length, 1);
  out.writeInt16BE(values.length, 5);
  let offset = 7;
  for (const value of values) {
    if (value === null) {
      out.writeInt32BE(-1, offset);
      offset += 4;
    } else {
      out.writeInt32BE(value.length, offset);
      value.copy(out, offset + 4);
      offset += 4 + value.length;
    }
  }
  return out;
}

/** `INSERT 0 5`, `SELECT 3`, `UPDATE 2` … → the row count at the end, if any. */
export function rowsOfCommandTag(tag: string): number | undefined {
  const match = /(\d+)$/.exec(tag);
  return match ? Number(match[1]) : undefined;
}

export function decodeCommandTag(frame: Buffer): string {
  return frame.toString("utf8", 5, frame.length - 1);
}
