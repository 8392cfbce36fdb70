/**
 * Watches an SFTP stream (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks) in both
 * directions and reports file operations with their paths and sizes. Pure and read-only: the
 * relay forwards the bytes unchanged; this only looks at them. Data payloads are skipped, not
 * copied, so a large transfer costs a few header reads per packet.
 *
 * Packet: uint32 length, byte type, uint32 request-id, … (filexfer-02 §3).
 */

export interface SftpOperation {
  op: "read" | "write" | "remove" | "rename" | "mkdir" | "rmdir" | "symlink" | "setstat";
  path: string;
  /** rename / symlink: the second path. */
  to?: string;
  /** Bytes read or written through the handle (read / write). */
  bytes?: number;
  ok: boolean;
}

export class SftpProtocolError extends Error {}

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

/** OpenSSH caps its packets at 256 KiB (SFTP_MAX_MSG_LENGTH); anything far over it is not SFTP. */
export const MAX_SFTP_PACKET = 1024 * 1024;
/** What is read of a WRITE or DATA packet: its header, not its data. */
const HEADER_PREFIX = 4 + 1 + 4 + 4 + 256 + 8 + 4;

class Reader {
  offset = 0;
  constructor(readonly buffer: Buffer) {}
  u32(): number {
    if (this.offset + 4 > this.buffer.length) throw new SftpProtocolError("truncated SFTP packet");
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  bytes(): Buffer {
    const length = this.u32();
    if (this.offset + length > this.buffer.length) throw new SftpProtocolError("truncated SFTP string");
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
  string(): string {
    return this.bytes().toString("utf8");
  }
}

/** Splits one direction of the stream into packets, keeping only what is needed of each. */
class PacketScanner {
  #head: Buffer[] = [];
  #headLength = 0;
  #want = 4;
  #packetLength = -1;
  #skip = 0;

  constructor(private readonly onPacket: (type: number, packet: Buffer, fullLength: number) => void) {}

  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - offset);
        this.#skip -= n;
        offset += n;
        continue;
      }
      const n = Math.min(this.#want - this.#headLength, chunk.length - offset);
      this.#head.push(chunk.subarray(offset, offset + n));
      this.#headLength += n;
      offset += n;
      if (this.#headLength < this.#want) continue;
      const head = this.#head.length === 1 ? this.#head[0]! : Buffer.concat(this.#head, this.#headLength);
      if (this.#packetLength < 0) {
        this.#packetLength = head.readUInt32BE(0);
        if (this.#packetLength < 1 || this.#packetLength > MAX_SFTP_PACKET) {
          throw new SftpProtocolError(`SFTP packet of ${this.#packetLength} bytes is over the limit`);
        }
        this.#want = 5;
        this.#head = [head];
        continue;
      }
      if (this.#headLength === 5 && this.#want === 5) {
        const type = head[4]!;
        const total = 4 + this.#packetLength;
        this.#want = type === T.WRITE || type === T.DATA ? Math.min(total, HEADER_PREFIX) : total;
        this.#head = [head];
        if (this.#headLength < this.#want) continue;
      }
      const type = head[4]!;
      const total = 4 + this.#packetLength;
      this.#skip = total - this.#headLength;
      this.#head = [];
      this.#headLength = 0;
      this.#want = 4;
      const fullLength = this.#packetLength;
      this.#packetLength = -1;
      this.onPacket(type, head.subarray(5), fullLength);
    }
  }
}

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
  readonly #requests: PacketScanner;
  readonly #responses: PacketScanner;
  readonly #pending = new Map<number, Pending>();
  readonly #files = new Map<string, OpenFile>();
  /** Requests awaiting an answer are capped too: a client cannot grow this without bound. */
  static readonly MAX_PENDING = 10_000;

  constructor(private readonly onOperation: (operation: SftpOperation) => void) {
    this.#requests = new PacketScanner((type, body) => this.#request(type, body));
    this.#responses = new PacketScanner((type, body) => this.#response(type, body));
  }

  /** Bytes from the client (requests). Throws SftpProtocolError on a packet over the limit. */
  fromClient(chunk: Buffer): void {
    this.#requests.push(chunk);
  }

  /** Bytes from the server (responses). */
  fromServer(chunk: Buffer): void {
    this.#responses.push(chunk);
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
    const r = new Reader(body);
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
    const r = new Reader(body);
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
