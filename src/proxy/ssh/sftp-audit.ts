/**
 * Watches an SFTP stream (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks) in both
 * directions and reports file operations with their paths and sizes. Pure and read-only: the
 * relay forwards the bytes unchanged; this only looks at them. Data payloads are skipped, not
 * copied, so a large transfer costs a few header reads per packet.
 *
 * Packet: uint32 length, byte type, uint32 request-id, … (filexfer-02 §3).
 */

import { SftpPacketScanner, SftpProtocolError, SftpReader } from "./sftp-packets.js";

export { MAX_SFTP_PACKET, SftpProtocolError } from "./sftp-packets.js";

export interface SftpOperation {
  op: "read" | "write" | "remove" | "rename" | "mkdir" | "rmdir" | "symlink" | "setstat";
  path: string;
  /** rename / symlink: the second path. */
  to?: string;
  /** Bytes read or written through the handle (read / write). */
  bytes?: number;
  ok: boolean;
}

const T = {
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  SETSTAT: 9,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  RENAME: 18,
  SYMLINK: 20,
  EXTENDED: 200,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
} as const;

const SSH_FXF_WRITE = 0x02;
const SSH_FX_OK = 0;

interface OpenFile {
  path: string;
  write: boolean;
  bytes: number;
}

type Pending =
  | { kind: "open"; path: string; write: boolean }
  | { kind: "read"; handle: string }
  | { kind: "close"; handle: string }
  | { kind: "simple"; op: SftpOperation["op"]; path: string; to?: string };

export class SftpAudit {
  readonly #requests = new SftpPacketScanner((type) => type !== T.WRITE);
  readonly #responses = new SftpPacketScanner((type) => type !== T.DATA);
  readonly #pending = new Map<number, Pending>();
  readonly #files = new Map<string, OpenFile>();
  /** Requests awaiting an answer are capped too: a client cannot grow this without bound. */
  static readonly MAX_PENDING = 10_000;

  constructor(private readonly onOperation: (operation: SftpOperation) => void) {}

  /** Bytes from the client (requests). Throws SftpProtocolError on a packet over the limit. */
  fromClient(chunk: Buffer): void {
    for (const piece of this.#requests.push(chunk)) if (piece.kind === "head") this.request(piece.type, piece.head);
  }

  /** Bytes from the server (responses). */
  fromServer(chunk: Buffer): void {
    for (const piece of this.#responses.push(chunk)) if (piece.kind === "head") this.#response(piece.type, piece.head.subarray(5));
  }

  /**
   * One request, already cut from the stream by the caller: its head (the whole packet, or for a
   * WRITE at least its first HEADER_PREFIX bytes).
   */
  request(type: number, head: Buffer): void {
    this.#request(type, head.subarray(5));
  }

  /** The path a handle was opened for, while it is open. */
  pathOf(handle: string): string | undefined {
    return this.#files.get(handle)?.path;
  }

  /** The stream ended: files still open are reported as they stand. */
  end(): void {
    for (const file of this.#files.values()) this.#reportFile(file, true);
    this.#files.clear();
    this.#pending.clear();
  }

  #remember(id: number, pending: Pending): void {
    if (this.#pending.size >= SftpAudit.MAX_PENDING) throw new SftpProtocolError("too many SFTP requests in flight");
    this.#pending.set(id, pending);
  }

  #request(type: number, body: Buffer): void {
    const r = new SftpReader(body);
    switch (type) {
      case T.OPEN: {
        const id = r.u32();
        const path = r.string();
        const flags = r.u32();
        this.#remember(id, { kind: "open", path, write: (flags & SSH_FXF_WRITE) !== 0 });
        return;
      }
      case T.READ: {
        const id = r.u32();
        this.#remember(id, { kind: "read", handle: r.bytes().toString("hex") });
        return;
      }
      case T.WRITE: {
        r.u32();
        const handle = r.bytes().toString("hex");
        r.offset += 8; // uint64 offset
        const length = r.u32();
        const file = this.#files.get(handle);
        if (file) file.bytes += length;
        return;
      }
      case T.CLOSE: {
        const id = r.u32();
        this.#remember(id, { kind: "close", handle: r.bytes().toString("hex") });
        return;
      }
      case T.REMOVE:
      case T.MKDIR:
      case T.RMDIR:
      case T.SETSTAT: {
        const id = r.u32();
        const op = type === T.REMOVE ? "remove" : type === T.MKDIR ? "mkdir" : type === T.RMDIR ? "rmdir" : "setstat";
        this.#remember(id, { kind: "simple", op, path: r.string() });
        return;
      }
      case T.RENAME:
      case T.SYMLINK: {
        const id = r.u32();
        const path = r.string();
        const to = r.string();
        this.#remember(id, { kind: "simple", op: type === T.RENAME ? "rename" : "symlink", path, to });
        return;
      }
      case T.EXTENDED: {
        const id = r.u32();
        const name = r.string();
        if (name === "posix-rename@openssh.com") {
          const path = r.string();
          this.#remember(id, { kind: "simple", op: "rename", path, to: r.string() });
        }
        return;
      }
      default:
    }
  }

  #response(type: number, body: Buffer): void {
    if (type !== T.STATUS && type !== T.HANDLE && type !== T.DATA) {
      if (body.length >= 4) this.#pending.delete(body.readUInt32BE(0));
      return;
    }
    const r = new SftpReader(body);
    const id = r.u32();
    const pending = this.#pending.get(id);
    this.#pending.delete(id);
    if (!pending) return;
    if (type === T.HANDLE && pending.kind === "open") {
      this.#files.set(r.bytes().toString("hex"), { path: pending.path, write: pending.write, bytes: 0 });
      return;
    }
    if (type === T.DATA && pending.kind === "read") {
      const file = this.#files.get(pending.handle);
      if (file && !file.write) file.bytes += r.u32();
      return;
    }
    if (type !== T.STATUS) return;
    const ok = r.u32() === SSH_FX_OK;
    if (pending.kind === "close") {
      const file = this.#files.get(pending.handle);
      if (!file) return;
      this.#files.delete(pending.handle);
      this.#reportFile(file, ok);
    } else if (pending.kind === "open") {
      this.onOperation({ op: pending.write ? "write" : "read", path: pending.path, bytes: 0, ok: false });
    } else if (pending.kind === "simple") {
      this.onOperation({ op: pending.op, path: pending.path, ...(pending.to !== undefined ? { to: pending.to } : {}), ok });
    }
  }

  #reportFile(file: OpenFile, ok: boolean): void {
    this.onOperation({ op: file.write ? "write" : "read", path: file.path, bytes: file.bytes, ok });
  }
}
