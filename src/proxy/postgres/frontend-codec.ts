import { isUtf8 } from "node:buffer";

/**
 * Frames and decodes what a PostgreSQL client sends (the "frontend" messages of
 * https://www.postgresql.org/docs/current/protocol-message-formats.html). No I/O: bytes in, typed
 * messages out. Every length the client sends is checked against a cap before anything is
 * buffered for it (STYLE 3).
 */

export const PROTOCOL_3_0 = 196608;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** The startup packet has no type byte; libpq caps it at 10000 bytes and so do we. */
const MAX_STARTUP_LENGTH = 10_000;

export class ProtocolViolation extends Error {
  readonly code = "proxy_protocol_violation";
  /** SQLSTATE for the FATAL answer: 08P01 protocol_violation. */
  readonly sqlState = "08P01";
}

export type StartupMessage =
  | { type: "startup"; protocol: number; params: Record<string, string> }
  | { type: "ssl-request" }
  | { type: "gssenc-request" }
  | { type: "cancel"; processId: number; secretKey: number };

export type FrontendMessage =
  /** `invalidUtf8` when the statement's bytes are not UTF-8 (they were decoded with replacements). */
  | { type: "query"; sql: string; raw: Buffer; invalidUtf8?: true }
  | { type: "parse"; statement: string; sql: string; paramTypes: number[]; raw: Buffer; invalidUtf8?: true }
  | { type: "bind"; portal: string; statement: string; paramFormats: number[]; params: (Buffer | null)[]; raw: Buffer }
  | { type: "execute"; portal: string; maxRows: number; raw: Buffer }
  | { type: "describe"; target: "S" | "P"; name: string; raw: Buffer }
  | { type: "close"; target: "S" | "P"; name: string; raw: Buffer }
  | { type: "sync"; raw: Buffer }
  | { type: "flush"; raw: Buffer }
  | { type: "terminate"; raw: Buffer }
  | { type: "copy-data"; raw: Buffer }
  | { type: "copy-done"; raw: Buffer }
  | { type: "copy-fail"; message: string; raw: Buffer }
  /** 'p': PasswordMessage, SASLInitialResponse or SASLResponse, told apart by the auth state. */
  | { type: "auth"; body: Buffer; raw: Buffer }
  | { type: "function-call"; raw: Buffer };

class Cursor {
  offset = 0;
  constructor(private readonly buffer: Buffer) {}
  int16(): number {
    this.need(2);
    const value = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }
  int32(): number {
    this.need(4);
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  byte(): number {
    this.need(1);
    return this.buffer[this.offset++]!;
  }
  cstring(): string {
    const end = this.buffer.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolViolation("unterminated string in message");
    const value = this.buffer.toString("utf8", this.offset, end);
    this.#lastString = this.buffer.subarray(this.offset, end);
    this.offset = end + 1;
    return value;
  }
  #lastString: Buffer | undefined;
  /** The last string read was not valid UTF-8 (toString replaced what was not). */
  lastWasInvalidUtf8(): boolean {
    return this.#lastString !== undefined && !isUtf8(this.#lastString);
  }
  bytes(length: number): Buffer {
    this.need(length);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
  private need(length: number): void {
    if (this.offset + length > this.buffer.length) throw new ProtocolViolation("message shorter than its contents");
  }
}

export function decodeStartup(body: Buffer): StartupMessage {
  const cursor = new Cursor(body);
  const code = cursor.int32();
  if (code === SSL_REQUEST_CODE) return { type: "ssl-request" };
  if (code === GSSENC_REQUEST_CODE) return { type: "gssenc-request" };
  if (code === CANCEL_REQUEST_CODE) return { type: "cancel", processId: cursor.int32(), secretKey: cursor.int32() };
  if (code >> 16 !== 3) throw new ProtocolViolation(`unsupported frontend protocol ${code >> 16}.${code & 0xffff}`);
  const params: Record<string, string> = {};
  for (;;) {
    const key = cursor.cstring();
    if (key === "") break;
    params[key] = cursor.cstring();
  }
  return { type: "startup", protocol: code, params };
}

export function decodeFrontend(type: number, raw: Buffer): FrontendMessage {
  const cursor = new Cursor(raw);
  cursor.offset = 5;
  switch (type) {
    case 0x51 /* Q */: {
      const sql = cursor.cstring();
      return cursor.lastWasInvalidUtf8() ? { type: "query", sql, raw, invalidUtf8: true } : { type: "query", sql, raw };
    }
    case 0x50 /* P */: {
      const statement = cursor.cstring();
      const sql = cursor.cstring();
      const invalidUtf8 = cursor.lastWasInvalidUtf8();
      const count = cursor.int16();
      const paramTypes: number[] = [];
      for (let i = 0; i < count; i++) paramTypes.push(cursor.int32());
      return invalidUtf8 ? { type: "parse", statement, sql, paramTypes, raw, invalidUtf8 } : { type: "parse", statement, sql, paramTypes, raw };
    }
    case 0x42 /* B */: {
      const portal = cursor.cstring();
      const statement = cursor.cstring();
      const formatCount = cursor.int16();
      const paramFormats: number[] = [];
      for (let i = 0; i < formatCount; i++) paramFormats.push(cursor.int16());
      const paramCount = cursor.int16();
      const params: (Buffer | null)[] = [];
      for (let i = 0; i < paramCount; i++) {
        const length = cursor.int32();
        params.push(length < 0 ? null : cursor.bytes(length));
      }
      return { type: "bind", portal, statement, paramFormats, params, raw };
    }
    case 0x45 /* E */:
      return { type: "execute", portal: cursor.cstring(), maxRows: cursor.int32(), raw };
    case 0x44 /* D */:
    case 0x43 /* C */: {
      const target = String.fromCharCode(cursor.byte());
      if (target !== "S" && target !== "P") throw new ProtocolViolation(`invalid ${type === 0x44 ? "Describe" : "Close"} target`);
      return { type: type === 0x44 ? "describe" : "close", target, name: cursor.cstring(), raw };
    }
    case 0x53 /* S */:
      return { type: "sync", raw };
    case 0x48 /* H */:
      return { type: "flush", raw };
    case 0x58 /* X */:
      return { type: "terminate", raw };
    case 0x64 /* d */:
      return { type: "copy-data", raw };
    case 0x63 /* c */:
      return { type: "copy-done", raw };
    case 0x66 /* f */:
      return { type: "copy-fail", message: cursor.cstring(), raw };
    case 0x70 /* p */:
      return { type: "auth", body: raw.subarray(5), raw };
    case 0x46 /* F */:
      return { type: "function-call", raw };
    default:
      throw new ProtocolViolation(`unknown message type ${JSON.stringify(String.fromCharCode(type))}`);
  }
}

/**
 * Splits a byte stream into whole messages. In the startup phase a message is `int32 length`
 * then body; afterwards `byte type, int32 length` then body. Partial input is kept until the rest
 * arrives, whatever the split.
 */
export class FrontendReader {
  #pending: Buffer = Buffer.alloc(0);
  startupPhase = true;

  constructor(readonly maxMessageLength: number) {}

  /** Returns the raw frames now complete; throws ProtocolViolation on a bad or oversized length. */
  push(chunk: Buffer): Buffer[] {
    let buffer = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const frames: Buffer[] = [];
    let offset = 0;
    for (;;) {
      const headerLength = this.startupPhase ? 4 : 5;
      if (buffer.length - offset < headerLength) break;
      const length = buffer.readInt32BE(offset + headerLength - 4);
      const cap = this.startupPhase ? MAX_STARTUP_LENGTH : this.maxMessageLength;
      if (length < 4 || length > cap) {
        throw new ProtocolViolation(length < 4 ? `invalid message length ${length}` : `message of ${length} bytes is over the limit of ${cap}`);
      }
      const total = length + headerLength - 4;
      if (buffer.length - offset < total) break;
      frames.push(buffer.subarray(offset, offset + total));
      offset += total;
      // After a startup-phase frame the caller decides whether the phase ends (SSLRequest keeps it).
      if (this.startupPhase) break;
    }
    this.#pending = offset === buffer.length ? Buffer.alloc(0) : Buffer.from(buffer.subarray(offset));
    buffer = Buffer.alloc(0);
    return frames;
  }

  /** Bytes received but not yet framed (used after the startup phase changes). */
  drain(): Buffer[] {
    return this.push(Buffer.alloc(0));
  }
}
